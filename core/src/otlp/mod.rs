//! OTLP data: building spans and attributes with the `opentelemetry-proto` types, the resource
//! and instrumentation scope this filter reports, and encoding an
//! `ExportTraceServiceRequest` as protobuf (OTLP/HTTP, `application/x-protobuf`).

use crate::config::Config;
use crate::semconv;

pub mod writer;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

pub use opentelemetry_proto::tonic::trace::v1::{
    span::Event, span::SpanKind, status::StatusCode, Span, SpanFlags, Status,
};

/// Instrumentation scope name and `telemetry.sdk.name`.
pub const SCOPE_NAME: &str = "gateway-tracing";
/// This crate's version: scope version and `telemetry.sdk.version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `user-agent` of export requests (OTLP exporter spec: identify exporter and version).
pub const USER_AGENT: &str = concat!(
    "OTel-OTLP-Exporter-Rust/",
    env!("CARGO_PKG_VERSION"),
    " gateway-tracing"
);
pub const CONTENT_TYPE_PROTOBUF: &str = "application/x-protobuf";
pub const CONTENT_TYPE_JSON: &str = "application/json";

pub fn kv_str(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

#[cfg(any(test, feature = "testing"))]
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The resource every span of this VM shares.
pub fn resource(config: &Config) -> Resource {
    let mut attributes = vec![
        kv_str(semconv::SERVICE_NAME, config.service_name.clone()),
        kv_str(semconv::TELEMETRY_SDK_NAME, SCOPE_NAME),
        kv_str(semconv::TELEMETRY_SDK_LANGUAGE, "rust"),
        kv_str(semconv::TELEMETRY_SDK_VERSION, VERSION),
    ];
    attributes.extend(
        config
            .resource_attributes
            .iter()
            .map(|(k, v)| kv_str(k, v.clone())),
    );
    Resource {
        attributes,
        ..Default::default()
    }
}

/// `ScopeSpans.spans` is field 2, length-delimited: tag `(2 << 3) | 2`.
const SCOPE_SPANS_SPANS_TAG: u8 = 0x12;

/// Appends `span` to `out` as one encoded `ScopeSpans.spans` field (tag, length, bytes). A run
/// of these is what the exporter queues; [`Framer::frame`] wraps a run into a request.
#[cfg(any(test, feature = "testing"))]
pub fn encode_span_field(span: &Span, out: &mut Vec<u8>) {
    out.push(SCOPE_SPANS_SPANS_TAG);
    prost::encoding::encode_varint(span.encoded_len() as u64, out);
    span.encode_raw(out);
}

/// Splits a run of [`encode_span_field`] outputs back into one slice per span field. A run
/// that does not parse (it always does when the tracer wrote it) is returned whole.
pub fn span_fields(run: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = run;
    while !rest.is_empty() {
        let parsed = (|| {
            let (tag, body) = rest.split_first()?;
            if *tag != SCOPE_SPANS_SPANS_TAG {
                return None;
            }
            let mut b = body;
            let len = usize::try_from(prost::encoding::decode_varint(&mut b).ok()?).ok()?;
            let head = rest.len() - b.len();
            let end = head.checked_add(len)?;
            (end <= rest.len()).then_some(end)
        })();
        let Some(end) = parsed else {
            return vec![run];
        };
        let (field, tail) = rest.split_at(end);
        out.push(field);
        rest = tail;
    }
    out
}

/// Frames queued span fields into an `ExportTraceServiceRequest` body with this VM's resource
/// and scope, encoded once at configure time. A flush copies the span bytes once and encodes
/// nothing else.
#[derive(Debug, Clone)]
pub struct Framer {
    /// `ResourceSpans.resource` (field 1), tag and length included.
    resource_field: Vec<u8>,
    /// `ScopeSpans.scope` (field 1), tag and length included.
    scope_field: Vec<u8>,
}

impl Framer {
    pub fn new(resource: &Resource) -> Framer {
        let scope = InstrumentationScope {
            name: SCOPE_NAME.into(),
            version: VERSION.into(),
            ..Default::default()
        };
        let mut resource_field = Vec::new();
        prost::encoding::message::encode(1, resource, &mut resource_field);
        let mut scope_field = Vec::new();
        prost::encoding::message::encode(1, &scope, &mut scope_field);
        Framer {
            resource_field,
            scope_field,
        }
    }

    /// One request body: `resource_spans { resource, scope_spans { scope, <span_fields> } }`.
    /// `span_fields` is a concatenation of [`encode_span_field`] outputs.
    pub fn frame<'a>(&self, span_fields: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
        use prost::encoding::{encode_varint, encoded_len_varint};
        let spans_len: usize = span_fields.clone().map(<[u8]>::len).sum();
        let scope_spans_len = self.scope_field.len() + spans_len;
        let resource_spans_len = self.resource_field.len()
            + 1
            + encoded_len_varint(scope_spans_len as u64)
            + scope_spans_len;
        let total = 1 + encoded_len_varint(resource_spans_len as u64) + resource_spans_len;
        let mut out = Vec::with_capacity(total);
        // ExportTraceServiceRequest.resource_spans = 1
        out.push(0x0a);
        encode_varint(resource_spans_len as u64, &mut out);
        out.extend_from_slice(&self.resource_field);
        // ResourceSpans.scope_spans = 2
        out.push(0x12);
        encode_varint(scope_spans_len as u64, &mut out);
        out.extend_from_slice(&self.scope_field);
        for f in span_fields {
            out.extend_from_slice(f);
        }
        out
    }
}

/// Re-encodes a framed protobuf request ([`Framer::frame`]) as OTLP/JSON: the OTLP JSON
/// mapping (lowerCamelCase names, trace and span ids as hex, enums as integers, 64-bit
/// integers as strings), by `opentelemetry-proto`'s serde support. `None` when `framed` does
/// not decode (it always does when it came from the framer).
pub fn to_json(framed: &[u8]) -> Option<Vec<u8>> {
    let req = ExportTraceServiceRequest::decode(framed).ok()?;
    serde_json::to_vec(&req).ok()
}

/// Encodes one export request for `spans` under `resource` with prost's own message encoder:
/// the reference that [`Framer`] and the span encoder are tested against.
#[cfg(any(test, feature = "testing"))]
pub fn encode(resource: &Resource, spans: Vec<Span>) -> Vec<u8> {
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    version: VERSION.into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_fields_split_a_run_back_into_its_spans() {
        let mut run = Vec::new();
        for name in ["a", "bb", &"c".repeat(300)] {
            let span = Span {
                name: name.to_string(),
                ..Default::default()
            };
            encode_span_field(&span, &mut run);
        }
        let fields = span_fields(&run);
        assert_eq!(
            fields.len(),
            3,
            "one slice per span, a 2-byte length included"
        );
        assert_eq!(fields.concat(), run);
        assert_eq!(
            span_fields(&run[..run.len() - 1]),
            vec![&run[..run.len() - 1]],
            "malformed: whole"
        );
        assert!(span_fields(&[]).is_empty());
    }

    #[test]
    fn encode_decodes_back() {
        let config = crate::config::parse(
            br#"{"service_name":"gw","resource_attributes":{"deployment.environment.name":"test"},"exporter":{"cluster":"otel"}}"#,
            &|_| None,
        )
        .unwrap();
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /api/products".into(),
            kind: SpanKind::Server as i32,
            attributes: vec![kv_int(semconv::HTTP_RESPONSE_STATUS_CODE, 200)],
            ..Default::default()
        };
        let bytes = encode(&resource(&config), vec![span.clone()]);
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let rs = &back.resource_spans[0];
        let attrs = &rs.resource.as_ref().unwrap().attributes;
        let get = |k: &str| {
            attrs
                .iter()
                .find(|a| a.key == k)
                .and_then(|a| a.value.clone())
                .and_then(|v| v.value)
        };
        assert_eq!(
            get("service.name"),
            Some(any_value::Value::StringValue("gw".into()))
        );
        assert_eq!(
            get("telemetry.sdk.name"),
            Some(any_value::Value::StringValue("gateway-tracing".into()))
        );
        assert_eq!(
            get("telemetry.sdk.language"),
            Some(any_value::Value::StringValue("rust".into()))
        );
        assert_eq!(
            get("deployment.environment.name"),
            Some(any_value::Value::StringValue("test".into()))
        );
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            (SCOPE_NAME, VERSION)
        );
        assert_eq!(rs.scope_spans[0].spans, vec![span]);
    }

    #[test]
    fn framed_span_fields_are_byte_identical_to_prost_encoding() {
        let config = crate::config::parse(
            br#"{"service_name":"gw","exporter":{"cluster":"otel"}}"#,
            &|_| None,
        )
        .unwrap();
        let spans: Vec<Span> = (0..3u8)
            .map(|i| Span {
                trace_id: vec![i + 1; 16],
                span_id: vec![i + 2; 8],
                name: format!("GET /{i}"),
                kind: SpanKind::Client as i32,
                attributes: vec![kv_str("k", "v".repeat(200 * usize::from(i)))],
                ..Default::default()
            })
            .collect();
        let fields: Vec<Vec<u8>> = spans
            .iter()
            .map(|s| {
                let mut out = Vec::new();
                encode_span_field(s, &mut out);
                out
            })
            .collect();
        let res = resource(&config);
        let framed = Framer::new(&res).frame(fields.iter().map(Vec::as_slice));
        assert_eq!(framed, encode(&res, spans));
        let empty = Framer::new(&res).frame(std::iter::empty());
        assert_eq!(empty, encode(&res, Vec::new()));
    }
}
