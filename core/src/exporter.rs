//! The span exporter of one worker VM: a queue of encoded spans bounded in bytes, batching,
//! OTLP/HTTP requests (protobuf or JSON, optionally gzip) through the host's
//! `dispatch_http_call`, retry with exponential backoff and jitter, and accounting for every
//! span (exported, or dropped under exactly one reason).
//!
//! **Retry.** 429, 502, 503, 504, timeouts and connection failures are retried; 400 and every
//! other status are not (OTLP/HTTP exporter spec). `Retry-After` (seconds or HTTP-date) is
//! honoured. While the collector is failing the exporter backs off *as a whole*: at most one
//! request (a probe) is in flight, sent when the backoff interval has passed; when a probe
//! succeeds the backlog drains at full speed. A batch whose retries have lasted longer than
//! `retry.max_elapsed` is dropped (`spans_dropped_retries_exhausted`).
//!
//! **Queue.** Encoded span bytes held (queued, awaiting retry, in flight) never exceed
//! `max_queue_bytes`. When a push does not fit, the *newest* spans (that push) are refused
//! and counted (`spans_dropped_queue_full`): what is queued is older and already paid for.
//!
//! **Logs.** One line per state change: exporting → failing (with the reason) → recovered
//! (with what was dropped meanwhile, by reason); queue full → room again (with the count).
//! Non-retryable failures and partial successes are logged at most once per
//! [`FAILURE_LOG_INTERVAL_NS`] *per kind*, so one kind never hides another. Header values
//! are never logged.

use crate::config::{Compression, Config, Encoding, ExporterConfig};
use crate::host::{ExportHost, ExportRequest, ExportResponse, HostError, HostErrorKind, Stats};
use crate::metrics::{Counter, Gauge, Histogram};
use crate::otlp::{self, Framer};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// At most this many export requests in flight per VM while exporting normally.
pub const MAX_IN_FLIGHT: usize = 4;
/// While the collector is failing: one probe at a time.
pub const MAX_IN_FLIGHT_FAILING: usize = 1;
/// How often a failure of one kind may be logged (per VM).
pub const FAILURE_LOG_INTERVAL_NS: u64 = 10_000_000_000;
/// Tick period used to flush a full batch promptly from the root context.
pub const FAST_FLUSH_PERIOD: Duration = Duration::from_millis(1);
/// A full queue is reported as having room again once it holds at most 1/this of
/// `max_queue_bytes`.
pub const QUEUE_ROOM_AGAIN_DIVISOR: usize = 2;
/// Backoff delays are spread by ± this fraction (gRPC's and OpenTelemetry's 0.2 ~ 0.5).
pub const BACKOFF_JITTER: f64 = 0.2;
/// The part of a response body the exporter reads (partial_success, error text).
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// Collector-provided text in a log line is cut to this many characters.
const MAX_LOGGED_MESSAGE: usize = 200;
const NS_PER_MS: u64 = 1_000_000;

/// Why an export attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The collector (or Envoy's router on its behalf) answered this status.
    Http(u16),
    /// No answer within `exporter.timeout_ms` (Envoy's router answers 504 itself).
    Timeout,
    /// Envoy could not connect, or the connection broke before an answer.
    Connection,
    /// `dispatch_http_call` refused the request.
    Dispatch(HostErrorKind),
    /// The exporter could not build the request body.
    Encoding,
}

impl Failure {
    /// Retried with backoff (OTLP/HTTP: 429, 502, 503, 504; transient network failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::Http(s) => matches!(s, 429 | 502 | 503 | 504),
            Failure::Timeout | Failure::Connection => true,
            Failure::Dispatch(k) => {
                !matches!(k, HostErrorKind::NotFound | HostErrorKind::BadArgument)
            }
            Failure::Encoding => false,
        }
    }

    /// A key for the per-kind log limiter.
    fn kind(&self) -> String {
        match self {
            Failure::Http(s) => format!("http {s}"),
            other => format!("{other:?}"),
        }
    }

    fn describe(&self, cfg: &ExporterConfig) -> String {
        match self {
            Failure::Http(s) => format!("HTTP {s}"),
            Failure::Timeout => {
                format!("timeout (no answer within {} ms)", cfg.timeout.as_millis())
            }
            Failure::Connection => {
                "connection failure (refused, reset or no healthy upstream)".into()
            }
            Failure::Dispatch(HostErrorKind::NotFound | HostErrorKind::BadArgument) => format!(
                "exporter cluster '{}' is not defined in Envoy (dispatch_http_call refused it)",
                cfg.cluster
            ),
            Failure::Dispatch(k) => format!("dispatch_http_call failed: {k:?}"),
            Failure::Encoding => "the request body could not be encoded".into(),
        }
    }
}

/// Classifies an answer. Envoy's router answers for the collector when it cannot reach it:
/// 503 "upstream connect error or disconnect/reset before headers" or "no healthy upstream"
/// (connection failure) and 504 "upstream request timeout" (timeout); those are told apart by
/// their body, and a 504 that took the whole timeout is a timeout too.
pub fn classify(
    status: Option<u16>,
    body: &[u8],
    elapsed: Duration,
    timeout: Duration,
) -> Result<(), Failure> {
    match status {
        Some(200..=299) => Ok(()),
        None => Err(if elapsed >= timeout {
            Failure::Timeout
        } else {
            Failure::Connection
        }),
        Some(504) if body.starts_with(b"upstream request timeout") || elapsed >= timeout => {
            Err(Failure::Timeout)
        }
        Some(503)
            if body.starts_with(b"upstream connect error or disconnect/reset before headers")
                || body.starts_with(b"no healthy upstream") =>
        {
            Err(Failure::Connection)
        }
        Some(s) => Err(Failure::Http(s)),
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), as a delay from `now_ns`.
/// A date in the past is a zero delay; anything unparsable (not UTF-8 included: obs-text is
/// legal in a field value) is ignored.
pub fn parse_retry_after(value: &[u8], now_ns: u64) -> Option<Duration> {
    let v = std::str::from_utf8(value).ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_ns = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let delta = at_ns.saturating_sub(u128::from(now_ns));
    Some(Duration::from_nanos(
        u64::try_from(delta).unwrap_or(u64::MAX),
    ))
}

/// `partial_success.rejected_spans` and `error_message` of a 2xx answer, protobuf
/// (`ExportTraceServiceResponse`) or JSON (`{"partialSuccess":{"rejectedSpans":"3",...}}`).
pub fn partial_success(body: &[u8]) -> Option<(u64, String)> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;
    if body.is_empty() {
        return None;
    }
    if body.first() == Some(&b'{') {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let ps = v
            .get("partialSuccess")
            .or_else(|| v.get("partial_success"))?;
        let rejected = ps
            .get("rejectedSpans")
            .or_else(|| ps.get("rejected_spans"))
            .and_then(|r| {
                r.as_u64()
                    .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0);
        let msg = ps
            .get("errorMessage")
            .or_else(|| ps.get("error_message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        return Some((rejected, msg)).filter(|(r, m)| *r > 0 || !m.is_empty());
    }
    let resp = ExportTraceServiceResponse::decode(body).ok()?;
    let ps = resp.partial_success?;
    let rejected = u64::try_from(ps.rejected_spans).unwrap_or(0);
    Some((rejected, ps.error_message)).filter(|(r, m)| *r > 0 || !m.is_empty())
}

/// Collector text made safe for one log line: printable, short.
fn sanitize(msg: &str) -> String {
    let mut out: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_LOGGED_MESSAGE)
        .collect();
    if msg.chars().count() > MAX_LOGGED_MESSAGE {
        out.push('…');
    }
    out
}

/// A run of encoded spans on its way to the collector.
struct Batch {
    /// The request body as sent (framed, encoded, compressed).
    body: Vec<u8>,
    spans: usize,
    /// Encoded span bytes (what the queue budget counts).
    bytes: usize,
    /// When it was first sent; retries stop `retry.max_elapsed` after this.
    first_sent_ns: Option<u64>,
}

struct InFlight {
    batch: Batch,
    sent_ns: u64,
}

/// Drops by reason while the exporter was failing, for the "recovered" line.
#[derive(Default, Debug, Clone, Copy)]
struct Dropped {
    queue_full: u64,
    export_failed: u64,
    retries_exhausted: u64,
}

/// The collector is failing: when the next probe may go, and the backoff so far.
struct Failing {
    since_ns: u64,
    reason: Failure,
    next_attempt_ns: u64,
    /// The next backoff interval before jitter.
    interval: Duration,
    probes: u64,
    dropped_before: Dropped,
}

pub struct Exporter {
    config: ExporterConfig,
    framer: Framer,
    /// Encoded span runs awaiting export, with their span counts.
    queue: VecDeque<(Vec<u8>, usize)>,
    queued_spans: usize,
    /// Batches that failed retryably, oldest first; sent before the queue.
    retry: VecDeque<Batch>,
    in_flight: HashMap<u32, InFlight>,
    /// Encoded span bytes held: queue + retry + in flight.
    held_bytes: usize,
    held_spans: usize,
    failing: Option<Failing>,
    /// Spans refused since the queue became full; `Some` while full.
    queue_full: Option<u64>,
    dropped: Dropped,
    /// The tick period last asked of the host.
    tick_period: Duration,
    /// Set once the plugin is stopping: every response sends more of what is queued, no
    /// retries.
    draining: bool,
    unknown_cluster_logged: bool,
    /// Per failure kind: when last logged, and how many since.
    log_limiter: HashMap<String, (u64, u64)>,
    rng: u64,
}

impl Exporter {
    pub fn new(config: &Config) -> Exporter {
        Exporter {
            config: config.exporter.clone(),
            framer: Framer::new(&otlp::resource(config)),
            queue: VecDeque::new(),
            queued_spans: 0,
            retry: VecDeque::new(),
            in_flight: HashMap::new(),
            held_bytes: 0,
            held_spans: 0,
            failing: None,
            queue_full: None,
            dropped: Dropped::default(),
            tick_period: config.exporter.flush_interval,
            draining: false,
            unknown_cluster_logged: false,
            log_limiter: HashMap::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Seeds the backoff jitter (the glue passes host randomness; tests a fixed value).
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    /// Spans waiting in the queue (not yet in a batch).
    pub fn queued(&self) -> usize {
        self.queued_spans
    }

    /// Spans held in any state: queued, awaiting retry, in flight.
    pub fn held_spans(&self) -> usize {
        self.held_spans
    }

    /// Encoded span bytes held in any state.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The collector is failing and the exporter is backing off.
    pub fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// Queues finished spans: `span_fields` is 1..n complete `ScopeSpans.spans` fields back to
    /// back ([`otlp::encode_span_field`]), `spans` their count. When they do not fit in
    /// `max_queue_bytes`, they are refused and counted (the newest are dropped). When a full
    /// batch is waiting, arms a fast tick so the root context flushes it now.
    pub fn push(
        &mut self,
        span_fields: &[u8],
        spans: usize,
        host: &dyn ExportHost,
        stats: &dyn Stats,
    ) {
        if spans == 0 || span_fields.is_empty() {
            return;
        }
        stats.add(Counter::SpansCreated, spans as u64);
        let budget = usize::try_from(self.config.max_queue_bytes).unwrap_or(usize::MAX);
        if self.held_bytes.saturating_add(span_fields.len()) > budget {
            stats.add(Counter::SpansDroppedQueueFull, spans as u64);
            self.dropped.queue_full += spans as u64;
            match &mut self.queue_full {
                Some(n) => *n += spans as u64,
                None => {
                    log::warn!(
                        "export queue full ({} bytes, {} spans held, limit exporter.max_queue_bytes = {}): dropping new spans{}",
                        self.held_bytes,
                        self.held_spans,
                        self.config.max_queue_bytes,
                        match &self.failing {
                            Some(f) => format!(" while the collector is failing ({})", f.reason.describe(&self.config)),
                            None => String::new(),
                        }
                    );
                    self.queue_full = Some(spans as u64);
                }
            }
            return;
        }
        self.queue.push_back((span_fields.to_vec(), spans));
        self.queued_spans += spans;
        self.held_bytes += span_fields.len();
        self.held_spans += spans;
        // Hysteresis: "room again" once the queue is down to half, not at every push that
        // happens to fit (which would log twice per export answer under steady overload).
        if self.queue_full.is_some() && self.held_bytes <= budget / QUEUE_ROOM_AGAIN_DIVISOR {
            if let Some(n) = self.queue_full.take() {
                log::info!("export queue has room again; {n} spans were dropped while it was full");
            }
        }
        stats.add(Counter::SpansQueued, spans as u64);
        if self.failing.is_none()
            && self.queued_spans >= self.config.max_export_batch_size
            && self.in_flight.len() < MAX_IN_FLIGHT
        {
            self.set_tick(host, FAST_FLUSH_PERIOD);
        }
    }

    fn set_tick(&mut self, host: &dyn ExportHost, period: Duration) {
        if period == self.tick_period {
            return;
        }
        match host.set_tick_period(period) {
            Ok(()) => self.tick_period = period,
            Err(e) => log::debug!("could not set the tick period: {e}"),
        }
    }

    /// The timer fired: send what may be sent, then set the next tick (the flush interval, or
    /// sooner when a backoff ends before it).
    pub fn on_tick(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64) {
        // The fast tick is for full batches; what is left over waits for the flush interval
        // (or the next full batch), as OTel's batch span processor does: not a small export
        // request behind every full one. A failing exporter's probe may be partial.
        let partial = self.tick_period != FAST_FLUSH_PERIOD || self.failing.is_some();
        self.flush(host, stats, now_ns, partial);
        let mut period = self.config.flush_interval;
        if let Some(f) = &self.failing {
            let wait = Duration::from_nanos(f.next_attempt_ns.saturating_sub(now_ns));
            if wait < period {
                period = wait.max(FAST_FLUSH_PERIOD);
            }
        }
        self.set_tick(host, period);
        self.report(stats);
    }

    /// Gauges: bytes, spans and requests held.
    pub fn report(&self, stats: &dyn Stats) {
        stats.set(Gauge::ExportQueueBytes, self.held_bytes as u64);
        stats.set(Gauge::ExportQueueSpans, self.held_spans as u64);
        stats.set(Gauge::ExportInFlight, self.in_flight.len() as u64);
    }

    /// Sends batches while in-flight slots are free: retries first, then the queue (a batch
    /// short of `max_export_batch_size` only with `partial`). While failing, only one probe,
    /// and only once the backoff has passed. Never sends an empty request.
    pub fn flush(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64, partial: bool) {
        loop {
            let limit = if self.failing.is_some() && !self.draining {
                MAX_IN_FLIGHT_FAILING
            } else {
                MAX_IN_FLIGHT
            };
            if self.in_flight.len() >= limit {
                break;
            }
            if let Some(f) = &self.failing {
                if now_ns < f.next_attempt_ns && !self.draining {
                    break;
                }
            }
            let (batch, is_retry) = match self.retry.pop_front() {
                Some(b) => (b, true),
                None => match self.next_batch(partial) {
                    Some(b) => (b, false),
                    None => break,
                },
            };
            if let Some(batch) = self.expire(batch, stats, now_ns) {
                self.send(batch, is_retry, host, stats, now_ns);
            }
        }
    }

    /// Drops a retried batch whose retries have lasted `retry.max_elapsed`.
    fn expire(&mut self, batch: Batch, stats: &dyn Stats, now_ns: u64) -> Option<Batch> {
        let max = u64::try_from(self.config.retry.max_elapsed.as_nanos()).unwrap_or(u64::MAX);
        match batch.first_sent_ns {
            Some(t) if now_ns.saturating_sub(t) >= max => {
                let why = format!(
                    "after retrying for {} s",
                    self.config.retry.max_elapsed.as_secs()
                );
                self.drop_exhausted(&batch, &why, stats, now_ns);
                None
            }
            _ => Some(batch),
        }
    }

    /// Drops a batch whose retries ran out of `retry.max_elapsed`: counted, released, logged.
    fn drop_exhausted(&mut self, batch: &Batch, why: &str, stats: &dyn Stats, now_ns: u64) {
        stats.add(Counter::SpansDroppedRetriesExhausted, batch.spans as u64);
        self.dropped.retries_exhausted += batch.spans as u64;
        self.release(batch);
        let what = format!(
            "export to cluster '{}': {} spans dropped, {why} (exporter.retry.max_elapsed_ms)",
            self.config.cluster, batch.spans
        );
        self.log_limited(now_ns, "retries exhausted", &what);
    }

    fn release(&mut self, batch: &Batch) {
        self.held_bytes = self.held_bytes.saturating_sub(batch.bytes);
        self.held_spans = self.held_spans.saturating_sub(batch.spans);
    }

    /// Takes up to `max_export_batch_size` spans from the queue and builds the request body;
    /// `None` when the queue is empty, or holds less than a full batch and `partial` is false.
    fn next_batch(&mut self, partial: bool) -> Option<Batch> {
        if !partial && self.queued_spans < self.config.max_export_batch_size {
            return None;
        }
        let mut n = 0;
        let mut spans = 0;
        for (_, s) in &self.queue {
            if n > 0 && spans + s > self.config.max_export_batch_size {
                break;
            }
            n += 1;
            spans += s;
        }
        if n == 0 {
            return None;
        }
        let framed = self
            .framer
            .frame(self.queue.range(..n).map(|(b, _)| b.as_slice()));
        let bytes = self.queue.drain(..n).map(|(b, _)| b.len()).sum();
        self.queued_spans = self.queued_spans.saturating_sub(spans);
        let body = encode_body(framed, self.config.encoding, self.config.compression);
        Some(Batch {
            body,
            spans,
            bytes,
            first_sent_ns: None,
        })
    }

    fn send(
        &mut self,
        mut batch: Batch,
        is_retry: bool,
        host: &dyn ExportHost,
        stats: &dyn Stats,
        now_ns: u64,
    ) {
        if batch.body.is_empty() {
            self.fail(batch, Failure::Encoding, None, now_ns, host, stats, now_ns);
            return;
        }
        let content_type = match self.config.encoding {
            Encoding::Protobuf => otlp::CONTENT_TYPE_PROTOBUF,
            Encoding::Json => otlp::CONTENT_TYPE_JSON,
        };
        let mut headers: Vec<(&str, &str)> = vec![
            (":method", "POST"),
            (":path", &self.config.path),
            (":authority", &self.config.authority),
            ("content-type", content_type),
            ("user-agent", otlp::USER_AGENT),
        ];
        if self.config.compression == Compression::Gzip {
            headers.push(("content-encoding", "gzip"));
        }
        headers.extend(
            self.config
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose())),
        );
        let req = ExportRequest {
            cluster: &self.config.cluster,
            headers,
            body: &batch.body,
            timeout: self.config.timeout,
        };
        let sent: Result<u32, HostError> = host.dispatch(&req);
        match sent {
            Ok(token) => {
                if is_retry {
                    stats.add(Counter::ExportRetries, 1);
                }
                batch.first_sent_ns.get_or_insert(now_ns);
                self.in_flight.insert(
                    token,
                    InFlight {
                        batch,
                        sent_ns: now_ns,
                    },
                );
            }
            Err(e) => {
                batch.first_sent_ns.get_or_insert(now_ns);
                self.fail(
                    batch,
                    Failure::Dispatch(e.kind),
                    None,
                    now_ns,
                    host,
                    stats,
                    now_ns,
                );
            }
        }
    }

    /// The plugin is stopping (config update, VM shutdown): send everything queued without
    /// waiting for the timer or a backoff, each batch once. Returns true when nothing is left
    /// to send or await; otherwise the remaining spans go out as responses free up in-flight
    /// slots.
    pub fn drain(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64) -> bool {
        if !self.draining && self.held_spans > 0 {
            // Envoy gives no way to tell a config update (the sends below complete) from a
            // server exit (the VM is destroyed right after this call and they are lost; README
            // "Shutdown"): say how many are at stake, once.
            log::info!(
                "stopping: {} spans held ({} bytes), sending them now; if Envoy is exiting rather than replacing this configuration they are lost (drain first: README \"Graceful shutdown\"){}",
                self.held_spans,
                self.held_bytes,
                match &self.failing {
                    Some(f) => format!(
                        "; the collector is failing ({})",
                        f.reason.describe(&self.config)
                    ),
                    None => String::new(),
                }
            );
        }
        self.draining = true;
        self.flush(host, stats, now_ns, true);
        self.report(stats);
        self.is_drained()
    }

    /// Nothing queued, awaiting retry or in flight.
    pub fn is_drained(&self) -> bool {
        self.queue.is_empty() && self.retry.is_empty() && self.in_flight.is_empty()
    }

    /// The VM is going away with spans still held: count them as dropped at shutdown and
    /// say so in one line. Returns how many.
    pub fn abandon(&mut self, stats: &dyn Stats) -> usize {
        let n = self.held_spans;
        if n > 0 {
            stats.add(Counter::SpansDroppedShutdown, n as u64);
            log::warn!(
                "stopping: {n} spans still queued or in flight are lost (collector {})",
                match &self.failing {
                    Some(f) => format!("failing: {}", f.reason.describe(&self.config)),
                    None => "did not answer in time".into(),
                }
            );
        }
        self.queue.clear();
        self.retry.clear();
        self.in_flight.clear();
        self.queued_spans = 0;
        self.held_bytes = 0;
        self.held_spans = 0;
        self.report(stats);
        n
    }

    /// The collector answered token's request (`status` `None`: Envoy reported a failure).
    pub fn on_response(
        &mut self,
        token: u32,
        resp: &ExportResponse<'_>,
        host: &dyn ExportHost,
        stats: &dyn Stats,
        now_ns: u64,
    ) {
        let Some(InFlight { batch, sent_ns }) = self.in_flight.remove(&token) else {
            return;
        };
        let elapsed = Duration::from_nanos(now_ns.saturating_sub(sent_ns));
        stats.record(
            Histogram::ExportLatencyMs,
            now_ns.saturating_sub(sent_ns) / NS_PER_MS,
        );
        match classify(resp.status, resp.body, elapsed, self.config.timeout) {
            Ok(()) => {
                stats.add(Counter::ExportRequestsOk, 1);
                let (rejected, msg) = partial_success(resp.body).unwrap_or_default();
                let rejected = usize::try_from(rejected)
                    .unwrap_or(usize::MAX)
                    .min(batch.spans);
                stats.add(Counter::SpansExported, (batch.spans - rejected) as u64);
                if rejected > 0 || !msg.is_empty() {
                    stats.add(Counter::SpansDroppedRejectedByCollector, rejected as u64);
                    self.log_limited(
                        now_ns,
                        "partial_success",
                        &format!(
                            "collector rejected {rejected} of {} spans (partial_success, not retried): {}",
                            batch.spans,
                            sanitize(&msg)
                        ),
                    );
                }
                self.release(&batch);
                self.unknown_cluster_logged = false;
                if let Some(f) = self.failing.take() {
                    let d = self.dropped;
                    log::info!(
                        "export to cluster '{}' recovered after {} s and {} probes; while failing, spans dropped: queue_full={}, retries_exhausted={}, export_failed={}; {} spans held drain now",
                        self.config.cluster,
                        now_ns.saturating_sub(f.since_ns) / 1_000_000_000,
                        f.probes,
                        d.queue_full - f.dropped_before.queue_full,
                        d.retries_exhausted - f.dropped_before.retries_exhausted,
                        d.export_failed - f.dropped_before.export_failed,
                        self.held_spans
                    );
                }
            }
            Err(failure) => {
                let retry_after = resp.retry_after.and_then(|v| parse_retry_after(v, now_ns));
                self.fail(batch, failure, retry_after, sent_ns, host, stats, now_ns);
            }
        }
        // A slot freed up: send the full batches that waited for it (everything when draining;
        // a partial batch waits for the next tick).
        if self.draining
            || self.queued_spans >= self.config.max_export_batch_size
            || !self.retry.is_empty()
        {
            self.flush(host, stats, now_ns, self.draining);
        }
        self.report(stats);
    }

    /// A failed attempt: retry with backoff, or drop and count.
    /// `sent_ns` is when the failed request went out: a request that was already in flight
    /// when the failing began fails without moving the backoff on.
    #[allow(clippy::too_many_arguments)]
    fn fail(
        &mut self,
        batch: Batch,
        failure: Failure,
        retry_after: Option<Duration>,
        sent_ns: u64,
        host: &dyn ExportHost,
        stats: &dyn Stats,
        now_ns: u64,
    ) {
        stats.add(Counter::ExportRequestsFailed, 1);
        let retryable = failure.is_retryable() && self.config.retry.enabled;
        if self.draining {
            stats.add(Counter::SpansDroppedShutdown, batch.spans as u64);
            self.release(&batch);
            self.log_limited(
                now_ns,
                "shutdown",
                &format!(
                    "stopping: export to cluster '{}' failed ({}); {} spans lost",
                    self.config.cluster,
                    failure.describe(&self.config),
                    batch.spans
                ),
            );
            return;
        }
        if !retryable {
            stats.add(Counter::SpansDroppedExportFailed, batch.spans as u64);
            self.dropped.export_failed += batch.spans as u64;
            self.release(&batch);
            let what = failure.describe(&self.config);
            if matches!(
                failure,
                Failure::Dispatch(HostErrorKind::NotFound | HostErrorKind::BadArgument)
            ) {
                if !self.unknown_cluster_logged {
                    log::error!(
                        "{what}; spans are dropped until it is (spans_dropped_export_failed)"
                    );
                    self.unknown_cluster_logged = true;
                }
                return;
            }
            self.log_limited(
                now_ns,
                &failure.kind(),
                &format!(
                    "export to cluster '{}' failed: {what}, not retryable; {} spans dropped",
                    self.config.cluster, batch.spans
                ),
            );
            return;
        }
        // Retryable: back off as a whole.
        let probe = self.failing.as_ref().is_none_or(|f| sent_ns >= f.since_ns);
        let delay = if probe {
            self.next_delay(retry_after)
        } else {
            Duration::ZERO
        };
        let max = self.config.retry.max_elapsed;
        let started = batch.first_sent_ns.unwrap_or(now_ns);
        let age = Duration::from_nanos(now_ns.saturating_sub(started));
        let next_attempt_ns =
            now_ns.saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX));
        match &mut self.failing {
            Some(_) if !probe => {}
            None => {
                log::warn!(
                    "export to cluster '{}' failing: {}; retrying in {} ms{}, backing off while it fails ({} spans held)",
                    self.config.cluster,
                    failure.describe(&self.config),
                    delay.as_millis(),
                    if retry_after.is_some() { " (Retry-After)" } else { "" },
                    self.held_spans
                );
                let r = &self.config.retry;
                self.failing = Some(Failing {
                    since_ns: now_ns,
                    reason: failure.clone(),
                    next_attempt_ns,
                    // The next interval grows from the initial one.
                    interval: r.initial_backoff.mul_f64(r.multiplier).min(r.max_backoff),
                    probes: 0,
                    dropped_before: self.dropped,
                });
            }
            Some(f) => {
                f.probes += 1;
                f.next_attempt_ns = next_attempt_ns;
                if f.reason != failure {
                    let was = f.reason.describe(&self.config);
                    f.reason = failure.clone();
                    self.log_limited(
                        now_ns,
                        &format!("still failing: {}", failure.kind()),
                        &format!(
                            "export to cluster '{}' still failing, now: {} (was: {was})",
                            self.config.cluster,
                            failure.describe(&self.config)
                        ),
                    );
                }
            }
        }
        if probe && age + delay > max {
            let why = format!("retries would exceed {} ms", max.as_millis());
            self.drop_exhausted(&batch, &why, stats, now_ns);
        } else {
            // Oldest first: a batch that was sent earlier goes back to the front.
            let pos = self
                .retry
                .iter()
                .position(|b| b.first_sent_ns > batch.first_sent_ns)
                .unwrap_or(self.retry.len());
            self.retry.insert(pos, batch);
        }
        if let Some(f) = &self.failing {
            let wait = Duration::from_nanos(f.next_attempt_ns.saturating_sub(now_ns))
                .max(FAST_FLUSH_PERIOD);
            if wait < self.config.flush_interval {
                self.set_tick(host, wait);
            } else {
                let p = self.config.flush_interval;
                self.set_tick(host, p);
            }
        }
    }

    /// The delay before the next probe: `Retry-After` when the collector sent one (capped at
    /// `retry.max_elapsed`), otherwise the current interval ± jitter; the interval then grows
    /// by the multiplier up to `retry.max_backoff`.
    fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let r = self.config.retry.clone();
        let interval = self
            .failing
            .as_ref()
            .map_or(r.initial_backoff, |f| f.interval);
        let jittered = interval.mul_f64(1.0 + BACKOFF_JITTER * (2.0 * self.random_unit() - 1.0));
        if let Some(f) = &mut self.failing {
            f.interval = interval.mul_f64(r.multiplier).min(r.max_backoff);
        }
        match retry_after {
            Some(d) => d.min(r.max_elapsed),
            None => jittered,
        }
    }

    /// A uniform value in [0, 1) (xorshift64*).
    fn random_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Logs `what` unless a line of the same `kind` was logged in the last
    /// [`FAILURE_LOG_INTERVAL_NS`]; returns whether it logged.
    fn log_limited(&mut self, now_ns: u64, kind: &str, what: &str) -> bool {
        let entry = self.log_limiter.entry(kind.to_string()).or_insert((0, 0));
        let due = entry.0 == 0 || now_ns.saturating_sub(entry.0) >= FAILURE_LOG_INTERVAL_NS;
        if due {
            if entry.1 > 0 {
                log::warn!("{what} ({} more like this since the last report)", entry.1);
            } else {
                log::warn!("{what}");
            }
            *entry = (now_ns.max(1), 0);
        } else {
            entry.1 += 1;
        }
        due
    }
}

/// The request body for a framed protobuf request: re-encoded as OTLP/JSON if asked, then
/// gzip-compressed if asked. Empty when encoding failed (the batch is then dropped).
pub fn encode_body(framed: Vec<u8>, encoding: Encoding, compression: Compression) -> Vec<u8> {
    let body = match encoding {
        Encoding::Protobuf => framed,
        Encoding::Json => match otlp::to_json(&framed) {
            Some(j) => j,
            None => return Vec::new(),
        },
    };
    match compression {
        Compression::None => body,
        Compression::Gzip => gzip(&body).unwrap_or_default(),
    }
}

/// gzip with the pure-Rust deflate (miniz_oxide), default level.
pub fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::default(),
    );
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

#[cfg(test)]
mod tests;
