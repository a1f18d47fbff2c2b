//! In-process OTLP/HTTP trace receiver.
//!
//! This module owns the [`Collector`]: a tiny_http server that accepts
//! `POST /v1/traces` (OTLP protobuf or OTLP/JSON), decodes each
//! `ExportTraceServiceRequest`, and keeps every request ([`RecordedRequest`])
//! and every span, flattened with its resource and scope ([`RecordedSpan`]),
//! for tests and for the `otel-collector` demo binary. It also serves
//! `GET /traces` (all spans as a JSON array), `GET /healthz`, and the trace viewer
//! ([`crate::viewer`]): the page at `GET /` and its JSON at `GET /api/traces[/{id}]`.
//!
//! Failure injection: [`Collector::fail_next`] makes the next N exports fail
//! with a chosen status (they are recorded as requests but their spans are
//! not stored).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde::{Deserialize, Serialize};
use tiny_http::{Method, Request};

use crate::http::{self, ServerHandle};

/// OTLP `SpanKind` values.
pub mod kind {
    pub const UNSPECIFIED: i32 = 0;
    pub const INTERNAL: i32 = 1;
    pub const SERVER: i32 = 2;
    pub const CLIENT: i32 = 3;
    pub const PRODUCER: i32 = 4;
    pub const CONSUMER: i32 = 5;
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

/// One HTTP request the collector received (exports and anything else,
/// except the `GET /traces` and `GET /healthz` query endpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Lower-cased names, arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Spans stored from this request (0 when rejected or undecodable).
    pub span_count: usize,
    /// Why the body could not be decoded, or why the request was refused.
    pub decode_error: Option<String>,
    /// The HTTP status the collector answered with.
    pub status: u16,
    /// Set when [`Collector::fail_next`] made the collector reject it.
    pub rejected: bool,
}

impl RecordedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }
}

#[derive(Default)]
struct State {
    spans: Vec<RecordedSpan>,
    requests: Vec<RecordedRequest>,
    fail_remaining: usize,
    fail_status: u16,
    jsonl: Option<File>,
    /// `GET /api/traces` requests served (the viewer page polls it).
    viewer_polls: usize,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A panic in another thread while holding the lock leaves the data usable.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// An OTLP/HTTP receiver running on a background thread. Stops on drop.
pub struct Collector {
    state: Shared,
    server: ServerHandle,
}

impl Collector {
    /// Binds `addr` (`"127.0.0.1:0"` or `":0"` for an ephemeral port) and
    /// starts serving.
    pub fn start(addr: &str) -> io::Result<Collector> {
        let state: Shared = Arc::new(Mutex::new(State {
            fail_status: 503,
            ..State::default()
        }));
        let handler_state = Arc::clone(&state);
        let server = ServerHandle::spawn(addr, 4, "otlp-collector", move |req| {
            handle(&handler_state, req)
        })?;
        Ok(Collector { state, server })
    }

    /// Also appends every stored span as one JSON object per line to `path`
    /// (created or appended to).
    pub fn with_jsonl(self, path: impl AsRef<Path>) -> io::Result<Collector> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        lock(&self.state).jsonl = Some(file);
        Ok(self)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://ADDR/v1/traces`.
    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.addr())
    }

    /// All spans received so far, in arrival order.
    pub fn spans(&self) -> Vec<RecordedSpan> {
        lock(&self.state).spans.clone()
    }

    /// All requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Spans of one trace (trace id compared case-insensitively).
    pub fn trace(&self, trace_id: &str) -> Vec<RecordedSpan> {
        let want = trace_id.to_ascii_lowercase();
        lock(&self.state)
            .spans
            .iter()
            .filter(|s| s.trace_id == want)
            .cloned()
            .collect()
    }

    /// How many times the trace list (`GET /api/traces`, what the viewer page polls) was
    /// served.
    pub fn viewer_polls(&self) -> usize {
        lock(&self.state).viewer_polls
    }

    /// The trace viewer page: `http://ADDR/`.
    pub fn viewer_url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    /// Forgets all spans and requests (and any pending `fail_next`).
    pub fn clear(&self) {
        let mut st = lock(&self.state);
        st.spans.clear();
        st.requests.clear();
        st.fail_remaining = 0;
    }

    /// Answers the next `n` export requests with `status` instead of storing them.
    pub fn fail_next(&self, n: usize, status: u16) {
        let mut st = lock(&self.state);
        st.fail_remaining = n;
        st.fail_status = status;
    }

    /// Polls every 20 ms until `pred(spans)` holds (`Ok(spans)`) or `timeout`
    /// passes (`Err(spans)` with what was there at the end).
    pub fn wait_for<F: Fn(&[RecordedSpan]) -> bool>(
        &self,
        timeout: Duration,
        pred: F,
    ) -> Result<Vec<RecordedSpan>, Vec<RecordedSpan>> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if pred(&spans) {
                return Ok(spans);
            }
            if Instant::now() >= deadline {
                return Err(spans);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until at least `n` spans have arrived.
    pub fn wait_for_spans(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedSpan>, Vec<RecordedSpan>> {
        self.wait_for(timeout, |s| s.len() >= n)
    }
}

fn handle(state: &Shared, mut req: Request) {
    let method = req.method().clone();
    let url = req.url().to_string();
    let path = url.split('?').next().unwrap_or("").to_string();

    if method == Method::Get && path == "/healthz" {
        http::respond_text(req, 200, "ok\n");
        return;
    }
    if method == Method::Get && path == "/traces" {
        let body = serde_json::to_vec(&lock(state).spans).unwrap_or_else(|_| b"[]".to_vec());
        http::respond_bytes(req, 200, "application/json", body);
        return;
    }
    if method == Method::Get {
        if let Some((status, ctype, body)) = viewer_get(state, &path) {
            http::respond_bytes(req, status, ctype, body);
            return;
        }
    }

    let headers = http::headers_of(&req);
    let mut record = RecordedRequest {
        method: method.to_string(),
        path: url.clone(),
        headers: headers.clone(),
        span_count: 0,
        decode_error: None,
        status: 200,
        rejected: false,
    };

    if path != "/v1/traces" {
        record.status = 404;
        record.decode_error = Some(format!("unknown path {path}"));
        lock(state).requests.push(record);
        http::respond_text(req, 404, "not found\n");
        return;
    }
    if method != Method::Post {
        record.status = 405;
        record.decode_error = Some(format!("method {method} not allowed"));
        lock(state).requests.push(record);
        http::respond_text(req, 405, "method not allowed\n");
        return;
    }

    let body = match http::read_body(&mut req) {
        Ok(b) => b,
        Err(e) => {
            record.status = 400;
            record.decode_error = Some(format!("reading body: {e}"));
            lock(state).requests.push(record);
            http::respond_text(req, 400, "cannot read body\n");
            return;
        }
    };

    {
        let mut st = lock(state);
        if st.fail_remaining > 0 {
            st.fail_remaining -= 1;
            record.status = st.fail_status;
            record.rejected = true;
            let status = st.fail_status;
            st.requests.push(record);
            drop(st);
            http::respond_text(req, status, "injected failure\n");
            return;
        }
    }

    let ctype = http::header(&headers, "content-type")
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let encoding = http::header(&headers, "content-encoding")
        .unwrap_or("identity")
        .to_ascii_lowercase();
    let json = ctype == "application/json";

    let decoded = if encoding != "identity" && !encoding.is_empty() {
        Err((415, format!("unsupported content-encoding {encoding:?}")))
    } else if ctype == "application/x-protobuf" {
        ExportTraceServiceRequest::decode(body.as_slice())
            .map_err(|e| (400, format!("protobuf: {e}")))
    } else if json {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body)
            .map_err(|e| (400, format!("json: {e}")))
    } else {
        Err((415, format!("unsupported content-type {ctype:?}")))
    };

    match decoded {
        Ok(export) => {
            let spans = flatten(&export);
            let mut st = lock(state);
            record.span_count = spans.len();
            if let Some(f) = st.jsonl.as_mut() {
                for s in &spans {
                    if let Ok(line) = serde_json::to_string(s) {
                        let _ = writeln!(f, "{line}");
                    }
                }
                let _ = f.flush();
            }
            st.spans.extend(spans);
            st.requests.push(record);
            drop(st);
            if json {
                http::respond_bytes(req, 200, "application/json", b"{}".to_vec());
            } else {
                let resp = ExportTraceServiceResponse::default().encode_to_vec();
                http::respond_bytes(req, 200, "application/x-protobuf", resp);
            }
        }
        Err((status, msg)) => {
            record.status = status;
            record.decode_error = Some(msg.clone());
            lock(state).requests.push(record);
            http::respond_text(req, status, &format!("{msg}\n"));
        }
    }
}

/// The trace viewer's page and JSON endpoints (see [`crate::viewer`]): `Some((status,
/// content type, body))` for a viewer path, `None` for anything else.
fn viewer_get(state: &Shared, path: &str) -> Option<(u16, &'static str, Vec<u8>)> {
    let json = |v: Result<Vec<u8>, serde_json::Error>| match v {
        Ok(body) => (200, "application/json", body),
        Err(e) => (500, "text/plain", format!("{e}\n").into_bytes()),
    };
    match path {
        "/" | "/index.html" => Some((
            200,
            "text/html; charset=utf-8",
            crate::viewer::PAGE.as_bytes().to_vec(),
        )),
        "/favicon.ico" => Some((204, "image/x-icon", Vec::new())),
        "/api/traces" | "/api/traces/" => {
            let mut st = lock(state);
            st.viewer_polls += 1;
            let list = crate::viewer::summaries(&st.spans);
            drop(st);
            Some(json(serde_json::to_vec(&list)))
        }
        _ => {
            let id = path.strip_prefix("/api/traces/")?;
            let view = crate::viewer::trace_view(&lock(state).spans, id);
            Some(match view {
                Some(v) => json(serde_json::to_vec(&v)),
                None => (404, "text/plain", b"no such trace\n".to_vec()),
            })
        }
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
