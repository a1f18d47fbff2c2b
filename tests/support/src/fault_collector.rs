//! A fault-injecting OTLP/HTTP collector for the exporter's end-to-end tests.
//!
//! [`FaultCollector`] is a small HTTP/1.1 server on raw TCP (so it can stop listening, and
//! hold a request without answering) that fails the way real collectors do, as [`Mode`]
//! says: refuse connections ([`Mode::Down`]: the listening socket is closed), accept and never
//! answer ([`Mode::Hang`]), answer a status with an optional `Retry-After`
//! ([`Mode::Status`]), accept with an OTLP `partial_success` ([`Mode::PartialSuccess`]), or
//! accept only bodies up to a size and answer 413 above it, as the OpenTelemetry Collector's
//! `confighttp` `max_request_body_size` (default 20 MiB) does ([`Mode::BodyLimit`]).
//!
//! Every request body is decoded strictly: `content-encoding: gzip` must be valid gzip;
//! `application/x-protobuf` must decode as an `ExportTraceServiceRequest`;
//! `application/json` must follow the OTLP JSON mapping (lowerCamelCase, hex ids of the
//! right length, 64-bit integers as strings, enums as integers). A body that fails is
//! answered 400 and recorded with its error, so a test can assert there were none.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

/// How the collector answers from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// 200 with an empty `ExportTraceServiceResponse`; spans stored.
    Ok,
    /// Not listening: connections are refused; open connections are closed.
    Down,
    /// Reads the request, never answers (until the mode changes; then closes).
    Hang,
    /// Answers this status (spans not stored), with `Retry-After` if given: raw bytes, any
    /// of them (obs-text such as `\xff` is legal in a field value and passes through Envoy).
    Status {
        status: u16,
        retry_after: Option<Vec<u8>>,
    },
    /// 200 with `partial_success.rejected_spans = rejected` (the first `rejected` spans of
    /// each request are not stored).
    PartialSuccess { rejected: usize, message: String },
    /// As [`Mode::Ok`] for bodies of at most `max_bytes` on the wire; a larger one is answered
    /// 413 (Content Too Large) and its spans are not stored.
    BodyLimit { max_bytes: usize },
}

/// The OpenTelemetry Collector's default `confighttp` `max_request_body_size`: 20 MiB.
pub const COLLECTOR_DEFAULT_MAX_BODY: usize = 20 * 1024 * 1024;

/// One request the collector read.
#[derive(Debug, Clone)]
pub struct Received {
    /// Since the collector started.
    pub at: Duration,
    /// The mode it was answered in.
    pub mode: Mode,
    pub content_type: String,
    pub content_encoding: Option<String>,
    /// Spans in the request (0 when it did not decode).
    pub spans: usize,
    /// (trace id, span id), hex, of every span in the request.
    pub span_ids: Vec<(String, String)>,
    /// Why the body did not decode, if it did not.
    pub decode_error: Option<String>,
    /// Bytes on the wire, and after gzip.
    pub wire_bytes: usize,
    pub decoded_bytes: usize,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// (trace id, span id) of every span accepted.
    stored: Vec<(String, String)>,
}

struct Inner {
    addr: SocketAddr,
    started: Instant,
    mode: Mutex<Mode>,
    state: Mutex<State>,
    stop: AtomicBool,
    /// Bumped at every mode change: hung and idle connections notice it and close.
    epoch: AtomicU64,
    connections: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fault collector. Stops on drop.
pub struct FaultCollector {
    inner: Arc<Inner>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultCollector {
    /// Listens on `addr` (e.g. `127.0.0.1:4318`) in [`Mode::Ok`].
    pub fn start(addr: &str) -> io::Result<FaultCollector> {
        let listener = TcpListener::bind(addr)?;
        let inner = Arc::new(Inner {
            addr: listener.local_addr()?,
            started: Instant::now(),
            mode: Mutex::new(Mode::Ok),
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let acc = Arc::clone(&inner);
        let acceptor = std::thread::Builder::new()
            .name("fault-collector".into())
            .spawn(move || accept_loop(acc, Some(listener)))?;
        Ok(FaultCollector {
            inner,
            acceptor: Some(acceptor),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Changes how the collector answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.inner.mode) = mode;
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        // Let the acceptor close or reopen the socket before the caller goes on.
        std::thread::sleep(Duration::from_millis(60));
    }

    /// Every request read so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.inner.state).received.clone()
    }

    /// (trace id, span id) of every span accepted (stored), in arrival order.
    pub fn stored(&self) -> Vec<(String, String)> {
        lock(&self.inner.state).stored.clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::SeqCst)
    }

    /// Time since the collector started (the clock of [`Received::at`]).
    pub fn elapsed(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Polls until at least `n` spans are stored; `Err(stored)` after `timeout`.
    pub fn wait_for_stored(&self, n: usize, timeout: Duration) -> Result<usize, usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = lock(&self.inner.state).stored.len();
            if got >= n {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Err(got);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Spans stored more than once (a retry of something already accepted).
    pub fn duplicates(&self) -> usize {
        let stored = self.stored();
        let unique: HashSet<&(String, String)> = stored.iter().collect();
        stored.len() - unique.len()
    }
}

impl Drop for FaultCollector {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn accept_loop(inner: Arc<Inner>, mut listener: Option<TcpListener>) {
    while !inner.stop.load(Ordering::SeqCst) {
        let down = *lock(&inner.mode) == Mode::Down;
        if down {
            listener = None;
        } else if listener.is_none() {
            listener = TcpListener::bind(inner.addr).ok();
        }
        let Some(l) = &listener else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = l.set_nonblocking(true);
        match l.accept() {
            Ok((stream, _)) => {
                inner.connections.fetch_add(1, Ordering::SeqCst);
                let c = Arc::clone(&inner);
                let _ = std::thread::Builder::new()
                    .name("fault-collector-conn".into())
                    .spawn(move || {
                        let _ = serve(&c, stream);
                    });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Serves one keep-alive connection until the peer closes, the mode goes `Down`, or a hung
/// request is released.
fn serve(inner: &Inner, stream: TcpStream) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        // Wait for a request line, closing when the collector goes down or stops.
        let mut line = String::new();
        loop {
            if inner.stop.load(Ordering::SeqCst) || *lock(&inner.mode) == Mode::Down {
                return Ok(());
            }
            match reader.read_line(&mut line) {
                Ok(0) => return Ok(()),
                Ok(_) if line.ends_with('\n') => break,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        stream_timeout(&out, Some(Duration::from_secs(5)))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        stream_timeout(&out, Some(Duration::from_millis(50)))?;

        let mode = lock(&inner.mode).clone();
        let content_type = header("content-type").unwrap_or_default();
        let content_encoding = header("content-encoding");
        let decoded = decode(&content_type, content_encoding.as_deref(), &body);
        let (req, decoded_bytes, decode_error) = match decoded {
            Ok((r, n)) => (Some(r), n, None),
            Err(e) => (None, 0, Some(e)),
        };
        let span_ids: Vec<(String, String)> = req
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| (hex(&s.trace_id), hex(&s.span_id)))
            .collect();
        let record = Received {
            at: inner.started.elapsed(),
            mode: mode.clone(),
            content_type: content_type.clone(),
            content_encoding,
            spans: span_ids.len(),
            span_ids: span_ids.clone(),
            decode_error: decode_error.clone(),
            wire_bytes: body.len(),
            decoded_bytes,
        };
        lock(&inner.state).received.push(record);
        let json = content_type.starts_with("application/json");
        if decode_error.is_some() {
            respond(&mut out, 400, &[], b"bad request body")?;
            continue;
        }
        match mode {
            Mode::Down => return Ok(()),
            Mode::Hang => {
                let epoch = inner.epoch.load(Ordering::SeqCst);
                while inner.epoch.load(Ordering::SeqCst) == epoch {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return Ok(());
            }
            Mode::BodyLimit { max_bytes } if body.len() > max_bytes => {
                respond(
                    &mut out,
                    413,
                    &[("content-type", b"text/plain")],
                    b"request body too large",
                )?;
            }
            Mode::Ok | Mode::BodyLimit { .. } => {
                lock(&inner.state).stored.extend(span_ids);
                let body = if json {
                    b"{}".to_vec()
                } else {
                    ExportTraceServiceResponse::default().encode_to_vec()
                };
                respond(
                    &mut out,
                    200,
                    &[("content-type", ctype(json).as_bytes())],
                    &body,
                )?;
            }
            Mode::PartialSuccess { rejected, message } => {
                let rejected = rejected.min(span_ids.len());
                lock(&inner.state)
                    .stored
                    .extend(span_ids.into_iter().skip(rejected));
                let body = if json {
                    serde_json::json!({"partialSuccess": {"rejectedSpans": rejected.to_string(), "errorMessage": message}})
                        .to_string()
                        .into_bytes()
                } else {
                    ExportTraceServiceResponse {
                        partial_success: Some(ExportTracePartialSuccess {
                            rejected_spans: rejected as i64,
                            error_message: message,
                        }),
                    }
                    .encode_to_vec()
                };
                respond(
                    &mut out,
                    200,
                    &[("content-type", ctype(json).as_bytes())],
                    &body,
                )?;
            }
            Mode::Status {
                status,
                retry_after,
            } => {
                let mut h: Vec<(&str, &[u8])> = vec![("content-type", b"text/plain")];
                if let Some(r) = &retry_after {
                    h.push(("retry-after", r));
                }
                respond(&mut out, status, &h, b"injected failure")?;
            }
        }
    }
}

fn stream_timeout(s: &TcpStream, t: Option<Duration>) -> io::Result<()> {
    s.set_read_timeout(t)
}

fn ctype(json: bool) -> &'static str {
    if json {
        "application/json"
    } else {
        "application/x-protobuf"
    }
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> io::Result<()> {
    let mut head =
        format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    for (k, v) in headers {
        head.extend_from_slice(k.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    out.write_all(&head)?;
    out.write_all(body)?;
    out.flush()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Decodes a request body strictly; returns the request and the decompressed size.
pub fn decode(
    content_type: &str,
    content_encoding: Option<&str>,
    body: &[u8],
) -> Result<(ExportTraceServiceRequest, usize), String> {
    let raw = match content_encoding {
        None | Some("identity") => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|e| format!("bad gzip: {e}"))?;
            out
        }
        Some(other) => return Err(format!("unsupported content-encoding {other}")),
    };
    let req = match content_type {
        "application/x-protobuf" => ExportTraceServiceRequest::decode(raw.as_slice())
            .map_err(|e| format!("bad protobuf: {e}"))?,
        "application/json" => {
            check_json(&raw)?;
            serde_json::from_slice(&raw).map_err(|e| format!("bad OTLP/JSON: {e}"))?
        }
        other => return Err(format!("unexpected content-type {other:?}")),
    };
    if req.resource_spans.is_empty() {
        return Err("empty request".into());
    }
    Ok((req, raw.len()))
}

/// The OTLP JSON mapping, checked on the raw JSON (serde would accept some deviations).
fn check_json(raw: &[u8]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
    let rs = v["resourceSpans"]
        .as_array()
        .ok_or("no resourceSpans array (lowerCamelCase)")?;
    for r in rs {
        for ss in r["scopeSpans"].as_array().ok_or("no scopeSpans array")? {
            for s in ss["spans"].as_array().ok_or("no spans array")? {
                let is_hex = |x: &serde_json::Value, n: usize| {
                    x.as_str().is_some_and(|h| {
                        h.len() == n
                            && h.bytes()
                                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    })
                };
                if !is_hex(&s["traceId"], 32) {
                    return Err(format!("traceId not 32 lower-case hex: {}", s["traceId"]));
                }
                if !is_hex(&s["spanId"], 16) {
                    return Err(format!("spanId not 16 lower-case hex: {}", s["spanId"]));
                }
                if !s["parentSpanId"].is_null()
                    && s["parentSpanId"] != ""
                    && !is_hex(&s["parentSpanId"], 16)
                {
                    return Err(format!("parentSpanId not hex: {}", s["parentSpanId"]));
                }
                for t in ["startTimeUnixNano", "endTimeUnixNano"] {
                    if s[t].as_str().is_none_or(|x| x.parse::<u64>().is_err()) {
                        return Err(format!("{t} not a decimal string: {}", s[t]));
                    }
                }
                if !s["kind"].is_i64() {
                    return Err(format!("kind not an integer: {}", s["kind"]));
                }
                for a in s["attributes"].as_array().into_iter().flatten() {
                    let iv = &a["value"]["intValue"];
                    if !iv.is_null() && !iv.is_string() {
                        return Err(format!("intValue not a string: {iv}"));
                    }
                }
                if s.get("trace_id").is_some() || s.get("span_id").is_some() {
                    return Err("snake_case field names".into());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_json_checks() {
        struct Row {
            json: &'static str,
            ok: bool,
            reason: &'static str,
        }
        let good = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0123456789abcdef0123456789abcdef","spanId":"0123456789abcdef","startTimeUnixNano":"1","endTimeUnixNano":"2","kind":2,"attributes":[{"key":"a","value":{"intValue":"3"}}]}]}]}]}"#;
        let rows = [
            Row {
                json: good,
                ok: true,
                reason: "the mapping",
            },
            Row {
                json: r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"AQID","spanId":"0123456789abcdef","startTimeUnixNano":"1","endTimeUnixNano":"2","kind":2}]}]}]}"#,
                ok: false,
                reason: "base64 id",
            },
            Row {
                json: r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0123456789abcdef0123456789abcdef","spanId":"0123456789abcdef","startTimeUnixNano":1,"endTimeUnixNano":"2","kind":2}]}]}]}"#,
                ok: false,
                reason: "time as number",
            },
            Row {
                json: r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0123456789abcdef0123456789abcdef","spanId":"0123456789abcdef","startTimeUnixNano":"1","endTimeUnixNano":"2","kind":"SPAN_KIND_SERVER"}]}]}]}"#,
                ok: false,
                reason: "enum as name",
            },
            Row {
                json: r#"{"resource_spans":[]}"#,
                ok: false,
                reason: "snake_case",
            },
        ];
        for r in rows {
            assert_eq!(check_json(r.json.as_bytes()).is_ok(), r.ok, "{}", r.reason);
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // ureq's error type, in a test
    fn modes_answer_as_configured() {
        let c = FaultCollector::start("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", c.addr());
        let body = ExportTraceServiceRequest {
            resource_spans: vec![Default::default()],
        }
        .encode_to_vec();
        let post = || {
            ureq::post(&url)
                .set("content-type", "application/x-protobuf")
                .timeout(Duration::from_millis(500))
                .send_bytes(&body)
        };
        assert_eq!(post().unwrap().status(), 200);
        c.set_mode(Mode::Status {
            status: 503,
            retry_after: Some("1".into()),
        });
        match post() {
            Err(ureq::Error::Status(503, r)) => assert_eq!(r.header("retry-after"), Some("1")),
            other => panic!("{other:?}"),
        }
        c.set_mode(Mode::Down);
        assert!(matches!(post(), Err(ureq::Error::Transport(_))), "refused");
        c.set_mode(Mode::Hang);
        assert!(
            matches!(post(), Err(ureq::Error::Transport(_))),
            "timed out"
        );
        c.set_mode(Mode::Ok);
        assert_eq!(post().unwrap().status(), 200);
        assert_eq!(
            c.received().len(),
            4,
            "refused connections are not requests"
        );
    }
}
