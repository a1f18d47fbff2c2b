//! In-process OTLP/HTTP trace receiver.
//!
//! This module owns the [`Collector`]: a tiny_http server that accepts
//! `POST /v1/traces` (OTLP protobuf or OTLP/JSON), decodes each
//! `ExportTraceServiceRequest`, and keeps every request ([`RecordedRequest`])
//! and every span, flattened with its resource and scope ([`RecordedSpan`]),
//! for tests and for the `otel-collector` demo binary. It also serves
//! `GET /traces` (all spans as a JSON array), `GET /healthz`, and the trace viewer
//! ([`crate::viewer`]): the page at `GET /` and its JSON at `GET /api/traces[/{id}]`. The
//! span model itself is [`crate::span`].
//!
//! Failure injection: [`Collector::fail_next`] makes the next N exports fail
//! with a chosen status (they are recorded as requests but their spans are
//! not stored).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::{Deserialize, Serialize};
use tiny_http::{Method, Request};

use crate::http::{self, ServerHandle};
use crate::span::flatten;
pub use crate::span::{AttrValue, RecordedEvent, RecordedSpan};

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
    /// Also send every accepted export to this OTLP/HTTP URL ([`Collector::forward_to`]).
    forward: Option<String>,
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

    /// Also sends every export it accepts, as received, to the OTLP/HTTP traces URL `url`
    /// (`make run JAEGER=1`: Jaeger's `/v1/traces`), from a background thread; a failed
    /// forward is logged to stderr and not retried.
    pub fn forward_to(&self, url: &str) {
        lock(&self.state).forward = Some(url.to_string());
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
            if let Some(url) = st.forward.clone() {
                forward(url, ctype.clone(), body);
            }
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

/// Posts one export body to `url` from a background thread.
fn forward(url: String, ctype: String, body: Vec<u8>) {
    std::thread::spawn(move || {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        if let Err(e) = agent
            .post(&url)
            .set("content-type", &ctype)
            .send_bytes(&body)
        {
            eprintln!("collector: forwarding to {url} failed: {e}");
        }
    });
}
