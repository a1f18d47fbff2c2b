//! The span model the demo records and shows: [`RecordedSpan`] (a received OTLP span, flattened
//! with its resource and scope), its attributes ([`AttrValue`]), events, kinds and status
//! codes, and [`flatten`], which turns an `ExportTraceServiceRequest` into it. The collector
//! fills it; the tree printer and the viewer read it.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use serde::{Deserialize, Serialize};

/// OTLP `SpanKind` values, and their names (the one table the tree printer and the viewer
/// share).
pub mod kind {
    pub const UNSPECIFIED: i32 = 0;
    pub const INTERNAL: i32 = 1;
    pub const SERVER: i32 = 2;
    pub const CLIENT: i32 = 3;
    pub const PRODUCER: i32 = 4;
    pub const CONSUMER: i32 = 5;

    /// The name of a span kind, as OTLP spells it (`SPAN_KIND_` dropped).
    pub fn name(k: i32) -> &'static str {
        match k {
            INTERNAL => "INTERNAL",
            SERVER => "SERVER",
            CLIENT => "CLIENT",
            PRODUCER => "PRODUCER",
            CONSUMER => "CONSUMER",
            _ => "UNSPECIFIED",
        }
    }
}

/// OTLP `Status.code` values.
pub mod status {
    pub const UNSET: i32 = 0;
    pub const OK: i32 = 1;
    pub const ERROR: i32 = 2;
}

/// A flattened OTLP attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Bool(bool),
    Double(f64),
    /// Arrays, key-value lists and bytes, rendered as JSON-ish text.
    Other(String),
}

impl AttrValue {
    /// The string, for `Str` values.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, for `Int` values.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, for `Bool` values.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The float, for `Double` values.
    pub fn as_double(&self) -> Option<f64> {
        match self {
            AttrValue::Double(d) => Some(*d),
            _ => None,
        }
    }
}

impl std::fmt::Display for AttrValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Str(s) | AttrValue::Other(s) => f.write_str(s),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Double(d) => write!(f, "{d}"),
        }
    }
}

/// A span event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub name: String,
    pub time_ns: u64,
    pub attributes: BTreeMap<String, AttrValue>,
}

/// One received span, flattened with its resource and scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedSpan {
    /// Lowercase hex, 32 chars (whatever length was received, hex-encoded).
    pub trace_id: String,
    /// Lowercase hex, 16 chars.
    pub span_id: String,
    /// Lowercase hex, or empty for a root span.
    pub parent_span_id: String,
    pub trace_state: String,
    pub name: String,
    /// OTLP `SpanKind` (see [`kind`]).
    pub kind: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: BTreeMap<String, AttrValue>,
    pub events: Vec<RecordedEvent>,
    /// OTLP status code (see [`status`]).
    pub status_code: i32,
    pub status_message: String,
    pub resource: BTreeMap<String, AttrValue>,
    pub scope_name: String,
    pub scope_version: String,
}

impl RecordedSpan {
    /// Span attribute `key`.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    /// String span attribute `key`.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    /// Resource attribute `service.name`.
    pub fn service(&self) -> Option<&str> {
        self.resource
            .get("service.name")
            .and_then(AttrValue::as_str)
    }

    /// `end - start` in milliseconds (0 if end precedes start).
    pub fn duration_ms(&self) -> f64 {
        self.end_ns.saturating_sub(self.start_ns) as f64 / 1_000_000.0
    }

    /// True when the span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn any_to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        None => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(d)) => J::from(*d),
        Some(any_value::Value::BytesValue(b)) => J::String(hex(b)),
        Some(any_value::Value::ArrayValue(a)) => {
            J::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map(any_to_json).unwrap_or(J::Null),
                    )
                })
                .collect(),
        ),
        Some(other) => J::String(format!("{other:?}")),
    }
}

/// Converts an OTLP `AnyValue` to an [`AttrValue`].
pub fn attr_value(v: Option<&AnyValue>) -> AttrValue {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
        Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
        Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
        Some(_) => AttrValue::Other(v.map(any_to_json).unwrap_or_default().to_string()),
        None => AttrValue::Other(String::new()),
    }
}

/// Converts OTLP key-values to a sorted map (last value wins on duplicates).
pub fn attr_map(kvs: &[KeyValue]) -> BTreeMap<String, AttrValue> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), attr_value(kv.value.as_ref())))
        .collect()
}

/// Flattens an export request into one [`RecordedSpan`] per span.
pub fn flatten(export: &ExportTraceServiceRequest) -> Vec<RecordedSpan> {
    let mut out = Vec::new();
    for rs in &export.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attr_map(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) = ss
                .scope
                .as_ref()
                .map(|s| (s.name.clone(), s.version.clone()))
                .unwrap_or_default();
            for span in &ss.spans {
                let (status_code, status_message) = span
                    .status
                    .as_ref()
                    .map(|s| (s.code, s.message.clone()))
                    .unwrap_or_default();
                out.push(RecordedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    trace_state: span.trace_state.clone(),
                    name: span.name.clone(),
                    kind: span.kind,
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    attributes: attr_map(&span.attributes),
                    events: span
                        .events
                        .iter()
                        .map(|e| RecordedEvent {
                            name: e.name.clone(),
                            time_ns: e.time_unix_nano,
                            attributes: attr_map(&e.attributes),
                        })
                        .collect(),
                    status_code,
                    status_message,
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase() {
        assert_eq!(hex(&[0xAB, 0x01, 0xff]), "ab01ff");
        assert_eq!(hex(&[]), "");
    }

    #[test]
    fn attr_values_convert() {
        let s = AnyValue {
            value: Some(any_value::Value::StringValue("x".into())),
        };
        let i = AnyValue {
            value: Some(any_value::Value::IntValue(7)),
        };
        assert_eq!(attr_value(Some(&s)).as_str(), Some("x"));
        assert_eq!(attr_value(Some(&i)).as_int(), Some(7));
        assert_eq!(attr_value(None), AttrValue::Other(String::new()));
    }

    #[test]
    fn attr_value_json_is_untagged() -> Result<(), serde_json::Error> {
        let m: BTreeMap<String, AttrValue> = [
            ("a".to_string(), AttrValue::Int(3)),
            ("b".to_string(), AttrValue::Str("s".into())),
        ]
        .into();
        let text = serde_json::to_string(&m)?;
        assert_eq!(text, r#"{"a":3,"b":"s"}"#);
        let back: BTreeMap<String, AttrValue> = serde_json::from_str(&text)?;
        assert_eq!(back, m);
        Ok(())
    }
}
