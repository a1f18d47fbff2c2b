//! The span exporter of one worker VM: a queue of encoded spans bounded in bytes, batching,
//! OTLP/HTTP requests (protobuf or JSON, optionally gzip) or OTLP/gRPC requests (the same HTTP
//! call to an HTTP/2 cluster) through the host's `dispatch_http_call`, retry with exponential backoff and jitter, and accounting for every
//! span (exported, or dropped under exactly one reason).
//!
//! This file is the state machine over an [`ExportCtx`] (host, stats, clock); one noun per
//! file, as in Envoy's `tracers/opentelemetry`:
//! - [`queue`](mod@queue): the byte-bounded queue, batches, retries awaiting their turn;
//! - [`backoff`](mod@backoff): the failing state, exponential backoff with jitter, `Retry-After`;
//! - [`response`](mod@response): what an answer means ([`classify`], [`Failure`],
//!   [`partial_success`]);
//! - [`grpc`](mod@grpc): what an OTLP/gRPC answer means (`grpc-status`, `RetryInfo`);
//! - [`request`](mod@request): framing, encoding, compression and headers of a request;
//! - [`diagnostics`](mod@diagnostics): the state-change lines and the per-kind log limiter;
//! - [`drain`](mod@drain): stopping (configuration update, exit): drain within
//!   [`DRAIN_TIMEOUT`], abandon;
//! - [`drops`](mod@drops): batches dropped for good (not retryable, retries exhausted, a span
//!   too large alone) and the 413 split.
//!
//! **Retry.** 429, 502, 503, 504, timeouts and connection failures are retried; 400 and every
//! other status are not (OTLP/HTTP exporter spec); over gRPC, the codes the OTLP spec lists
//! ([`grpc`](mod@grpc)). `Retry-After` (seconds or HTTP-date), or gRPC's `RetryInfo`, is
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

mod backoff;
mod diagnostics;
mod drain;
mod drops;
mod grpc;
mod grpc_status;
mod queue;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use backoff::{parse_retry_after, Clock, BACKOFF_JITTER};
pub use diagnostics::FAILURE_LOG_INTERVAL_NS;
pub use grpc::{classify_grpc, percent_decode, retry_delay};
pub use grpc_status::{code as grpc_code, code_name};
pub use queue::QUEUE_ROOM_AGAIN_DIVISOR;
pub use request::{encode_body, grpc_frame, grpc_unframe, gzip, CONTENT_TYPE_GRPC};
pub use response::{classify, partial_success, Failure, MAX_RESPONSE_BODY};

use crate::config::{Config, ExporterConfig, Protocol};
use crate::host::{ExportHost, ExportRequest, ExportResponse, Stats};
use crate::metrics::{Counter, Gauge, Histogram};
use backoff::{Backoff, Step};
use diagnostics::{log_room_again, sanitize, Dropped, LogLimiter};
use queue::{Admitted, Batch, Queue};
use request::RequestBuilder;
use std::collections::HashMap;
use std::time::Duration;

/// At most this many export requests in flight per VM while exporting normally.
pub const MAX_IN_FLIGHT: usize = 4;
/// While the collector is failing: one probe at a time.
pub const MAX_IN_FLIGHT_FAILING: usize = 1;
/// How long a stopping exporter (configuration update) keeps retrying what the collector
/// failed to take, backing off as usual, before what is left is counted as
/// `spans_dropped_shutdown`.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Tick period used to flush a full batch promptly from the root context.
pub const FAST_FLUSH_PERIOD: Duration = Duration::from_millis(1);
const NS_PER_MS: u64 = 1_000_000;

/// What every step of the exporter works with: the host (dispatch, timer), the stats and the
/// clock of this callback.
#[derive(Clone, Copy)]
pub struct ExportCtx<'a> {
    pub host: &'a dyn ExportHost,
    pub stats: &'a dyn Stats,
    pub now_ns: u64,
}

/// A failed export attempt, as the retry decision needs it.
struct Attempt {
    failure: Failure,
    retry_after: Option<Duration>,
    /// When the failed request went out: one sent before the failing began does not move the
    /// backoff on.
    sent_ns: u64,
}

struct InFlight {
    batch: Batch,
    sent_ns: u64,
}

pub struct Exporter {
    config: ExporterConfig,
    request: RequestBuilder,
    queue: Queue,
    in_flight: HashMap<u32, InFlight>,
    backoff: Backoff,
    /// Drops by reason, for the "recovered" line.
    dropped: Dropped,
    log: LogLimiter,
    unknown_cluster_logged: bool,
    /// The tick period last asked of the host.
    tick_period: Duration,
    /// Set once the plugin is stopping: every response sends more of what is queued; a
    /// retryable failure backs off and retries until `drain_deadline_ns`.
    draining: bool,
    /// When a stopping exporter gives up (`DRAIN_TIMEOUT` after the drain began).
    drain_deadline_ns: u64,
    /// The drain's first pass: everything goes at once, backoff or not (at a server exit it is
    /// the only chance).
    burst: bool,
    /// Exporter time: the host's wall clock made monotonic (see [`Clock`]).
    clock: Clock,
}

impl Exporter {
    pub fn new(config: &Config) -> Exporter {
        let c = &config.exporter;
        Exporter {
            config: c.clone(),
            request: RequestBuilder::new(config),
            queue: Queue::new(
                c.max_queue_bytes,
                c.max_export_batch_size,
                c.max_export_bytes,
            ),
            in_flight: HashMap::new(),
            backoff: Backoff::new(c.retry.clone()),
            dropped: Dropped::default(),
            log: LogLimiter::default(),
            unknown_cluster_logged: false,
            tick_period: c.flush_interval,
            draining: false,
            drain_deadline_ns: u64::MAX,
            burst: false,
            clock: Clock::default(),
        }
    }

    /// Seeds the backoff jitter (the glue passes host randomness; tests a fixed value).
    pub fn seed(&mut self, seed: u64) {
        self.backoff.seed(seed);
    }

    /// Spans waiting in the queue (not yet in a batch).
    pub fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// Spans held in any state: queued, awaiting retry, in flight.
    pub fn held_spans(&self) -> usize {
        self.queue.held_spans()
    }

    /// Encoded span bytes held in any state.
    pub fn held_bytes(&self) -> usize {
        self.queue.held_bytes()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The collector's failure, described, while the exporter backs off.
    fn failing_reason(&self) -> Option<String> {
        self.backoff
            .failing()
            .map(|f| f.reason.describe(&self.config))
    }

    /// Queues finished spans: `span_fields` is 1..n complete `ScopeSpans.spans` fields back to
    /// back ([`crate::otlp::SpanWriter`]), `spans` their count. When they do not fit in
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
        match self.queue.admit(span_fields, spans) {
            Admitted::Refused { first } => {
                stats.add(Counter::SpansDroppedQueueFull, spans as u64);
                self.dropped.queue_full += spans as u64;
                if first {
                    log::warn!(
                        "export queue full ({} bytes, {} spans held, limit exporter.max_queue_bytes = {}): dropping new spans{}",
                        self.queue.held_bytes(),
                        self.queue.held_spans(),
                        self.config.max_queue_bytes,
                        self.failing_reason()
                            .map(|r| format!(" while the collector is failing ({r})"))
                            .unwrap_or_default()
                    );
                }
                return;
            }
            Admitted::Queued { room_again } => {
                if let Some(n) = room_again {
                    log_room_again(n);
                }
            }
        }
        stats.add(Counter::SpansQueued, spans as u64);
        if self.backoff.failing().is_none()
            && self.queue.has_full_batch()
            && self.in_flight.len() < MAX_IN_FLIGHT
        {
            self.wake_for_full_batch(host);
        }
    }

    /// A full batch is ready: the host wakes the exporter itself, or the fast tick does. Either
    /// way the tick that follows is a fast one (full batches only), and this asks once until it
    /// has run.
    fn wake_for_full_batch(&mut self, host: &dyn ExportHost) {
        if self.tick_period == FAST_FLUSH_PERIOD {
            return;
        }
        match host.wake_for_full_batch() {
            Ok(true) => self.tick_period = FAST_FLUSH_PERIOD,
            Ok(false) => self.set_tick(host, FAST_FLUSH_PERIOD),
            Err(e) => log::debug!("could not wake the exporter for a full batch: {e}"),
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

    /// The tick period for now: the flush interval, or sooner when a backoff ends before it.
    fn next_tick(&self, now_ns: u64) -> Duration {
        let period = self.config.flush_interval;
        match self.backoff.wait(now_ns) {
            Some(wait) if wait < period => wait.max(FAST_FLUSH_PERIOD),
            _ => period,
        }
    }

    /// The timer fired: send what may be sent, then set the next tick (the flush interval, or
    /// sooner when a backoff ends before it).
    pub fn on_tick(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64) {
        let now_ns = self.clock.now(now_ns);
        let ctx = ExportCtx {
            host,
            stats,
            now_ns,
        };
        // The fast tick is for full batches; what is left over waits for the flush interval
        // (or the next full batch), as OTel's batch span processor does: not a small export
        // request behind every full one. A failing exporter's probe may be partial.
        // `flush_interval_ms: 1` is the fast tick's period too: every tick of it is a flush.
        let partial = self.tick_period != FAST_FLUSH_PERIOD
            || self.config.flush_interval <= FAST_FLUSH_PERIOD
            || self.backoff.failing().is_some()
            || self.draining;
        if self.draining && now_ns >= self.drain_deadline_ns {
            self.give_up_draining(&ctx);
        }
        self.send_ready(&ctx, partial);
        let period = self.next_tick(now_ns);
        self.set_tick(host, period);
        self.report(stats);
        // Lines that must not wait for the next span or failure to be written.
        if let Some(n) = self.queue.room_again() {
            log_room_again(n);
        }
        self.log.flush(now_ns, false);
    }

    /// Gauges: bytes, spans and requests held.
    pub fn report(&self, stats: &dyn Stats) {
        stats.set(Gauge::ExportQueueBytes, self.queue.held_bytes() as u64);
        stats.set(Gauge::ExportQueueSpans, self.queue.held_spans() as u64);
        stats.set(Gauge::ExportInFlight, self.in_flight.len() as u64);
    }

    /// Sends batches while in-flight slots are free: retries first, then the queue (a batch
    /// short of `max_export_batch_size` only with `partial`). While failing, only one probe,
    /// and only once the backoff has passed. Never sends an empty request.
    pub fn flush(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64, partial: bool) {
        let now_ns = self.clock.now(now_ns);
        let ctx = ExportCtx {
            host,
            stats,
            now_ns,
        };
        self.send_ready(&ctx, partial);
    }

    fn send_ready(&mut self, ctx: &ExportCtx<'_>, partial: bool) {
        loop {
            let failing = self.backoff.failing().is_some() && !self.burst;
            let limit = if failing {
                MAX_IN_FLIGHT_FAILING
            } else {
                MAX_IN_FLIGHT
            };
            if self.in_flight.len() >= limit || (failing && !self.backoff.may_send(ctx.now_ns)) {
                break;
            }
            let (batch, is_retry) = match self.queue.pop_retry() {
                Some(b) => (b, true),
                None => match self.next_batch(partial) {
                    Some(b) => (b, false),
                    None => break,
                },
            };
            if let Some(batch) = self.expire(batch, ctx) {
                self.send(batch, is_retry, ctx);
            }
        }
    }

    /// The next batch from the queue.
    fn next_batch(&mut self, partial: bool) -> Option<Batch> {
        self.queue.take(partial)
    }

    /// Drops a retried batch whose retries have lasted `retry.max_elapsed`.
    fn expire(&mut self, batch: Batch, ctx: &ExportCtx<'_>) -> Option<Batch> {
        let max = u64::try_from(self.config.retry.max_elapsed.as_nanos()).unwrap_or(u64::MAX);
        match batch.first_sent_ns {
            Some(t) if ctx.now_ns.saturating_sub(t) >= max => {
                let why = format!(
                    "after retrying for {} s",
                    self.config.retry.max_elapsed.as_secs()
                );
                self.drop_exhausted(&batch, &why, ctx);
                None
            }
            _ => Some(batch),
        }
    }

    fn send(&mut self, mut batch: Batch, is_retry: bool, ctx: &ExportCtx<'_>) {
        batch.first_sent_ns.get_or_insert(ctx.now_ns);
        let body = self
            .request
            .body(batch.runs.iter().map(|(r, _)| r.as_slice()), &self.config);
        if body.is_empty() {
            let attempt = Attempt {
                failure: Failure::Encoding,
                retry_after: None,
                sent_ns: ctx.now_ns,
            };
            self.fail(batch, attempt, ctx);
            return;
        }
        let req = ExportRequest {
            cluster: &self.config.cluster,
            headers: request::headers(&self.config),
            body: &body,
            timeout: self.config.timeout,
        };
        match ctx.host.dispatch(&req) {
            Ok(token) => {
                if is_retry {
                    ctx.stats.add(Counter::ExportRetries, 1);
                }
                let sent_ns = ctx.now_ns;
                self.in_flight.insert(token, InFlight { batch, sent_ns });
            }
            Err(e) => {
                let attempt = Attempt {
                    failure: Failure::Dispatch(e.kind),
                    retry_after: None,
                    sent_ns: ctx.now_ns,
                };
                self.fail(batch, attempt, ctx);
            }
        }
    }

    /// Nothing queued, awaiting retry or in flight.
    pub fn is_drained(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
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
        let wall_ns = now_ns;
        let now_ns = self.clock.now(now_ns);
        let ctx = ExportCtx {
            host,
            stats,
            now_ns,
        };
        let Some(InFlight { batch, sent_ns }) = self.in_flight.remove(&token) else {
            return;
        };
        let elapsed_ns = now_ns.saturating_sub(sent_ns);
        stats.record(Histogram::ExportLatencyMs, elapsed_ns / NS_PER_MS);
        let elapsed = Duration::from_nanos(elapsed_ns);
        let (protocol, timeout) = (self.config.protocol, self.config.timeout);
        match judge(resp, protocol, elapsed, timeout, wall_ns) {
            Ok(()) => self.exported(batch, resp.body, &ctx),
            Err((failure, retry_after)) => {
                let attempt = Attempt {
                    failure,
                    retry_after,
                    sent_ns,
                };
                self.fail(batch, attempt, &ctx);
            }
        }
        // A slot freed up: send the full batches that waited for it (everything when draining;
        // a partial batch waits for the next tick).
        if self.draining || self.queue.has_full_batch() || self.queue.has_retry() {
            self.send_ready(&ctx, self.draining);
        }
        self.report(stats);
    }

    /// A 2xx answer: the batch is exported, less what `partial_success` rejected; a failing
    /// exporter has recovered.
    fn exported(&mut self, batch: Batch, body: &[u8], ctx: &ExportCtx<'_>) {
        let stats = ctx.stats;
        stats.add(Counter::ExportRequestsOk, 1);
        let (rejected, msg) =
            response::partial_success_of(body, self.config.protocol).unwrap_or_default();
        let rejected = usize::try_from(rejected)
            .unwrap_or(usize::MAX)
            .min(batch.spans);
        stats.add(Counter::SpansExported, (batch.spans - rejected) as u64);
        if rejected > 0 || !msg.is_empty() {
            stats.add(Counter::SpansDroppedRejectedByCollector, rejected as u64);
            self.log.warn(
                ctx.now_ns,
                "partial_success",
                &format!(
                    "collector rejected {rejected} of {} spans (partial_success, not retried): {}",
                    batch.spans,
                    sanitize(&msg)
                ),
            );
        }
        self.queue.release(&batch);
        self.unknown_cluster_logged = false;
        if let Some(f) = self.backoff.recover() {
            log::info!(
                "export to cluster '{}' recovered after {} s and {} probes; while failing, spans dropped: {}; {} spans held drain now",
                self.config.cluster,
                ctx.now_ns.saturating_sub(f.since_ns) / 1_000_000_000,
                f.probes,
                self.dropped.since(&f.dropped_before),
                self.queue.held_spans()
            );
        }
    }

    /// A failed attempt: retry with backoff, or drop and count.
    fn fail(&mut self, batch: Batch, attempt: Attempt, ctx: &ExportCtx<'_>) {
        let stats = ctx.stats;
        stats.add(Counter::ExportRequestsFailed, 1);
        let failure = attempt.failure;
        if failure.is_too_large() {
            self.too_large(batch, ctx);
            return;
        }
        // A failure within the drain's first pass (a refused dispatch) ends the pass: what is
        // retried waits for its backoff, or the pass would send it again forever.
        self.burst = false;
        let retryable = failure.is_retryable() && self.config.retry.enabled;
        if self.draining && !(retryable && ctx.now_ns < self.drain_deadline_ns) {
            stats.add(Counter::SpansDroppedShutdown, batch.spans as u64);
            self.queue.release(&batch);
            self.log.warn(
                ctx.now_ns,
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
        if !(failure.is_retryable() && self.config.retry.enabled) {
            self.drop_failed(&batch, &failure, ctx);
            return;
        }
        // Retryable: back off as a whole.
        let step = self.backoff.on_failure(
            &failure,
            attempt.retry_after,
            attempt.sent_ns,
            ctx.now_ns,
            self.dropped,
        );
        let delay = match step {
            Step::Began { delay } => {
                log::warn!(
                    "export to cluster '{}' failing: {}; retrying in {} ms{}, backing off while it fails ({} spans held)",
                    self.config.cluster,
                    failure.describe(&self.config),
                    delay.as_millis(),
                    if attempt.retry_after.is_some() { " (Retry-After)" } else { "" },
                    self.queue.held_spans()
                );
                Some(delay)
            }
            Step::Probed { delay, was } => {
                if let Some(was) = was {
                    self.log.warn(
                        ctx.now_ns,
                        &format!("still failing: {}", failure.kind()),
                        &format!(
                            "export to cluster '{}' still failing, now: {} (was: {})",
                            self.config.cluster,
                            failure.describe(&self.config),
                            was.describe(&self.config)
                        ),
                    );
                }
                Some(delay)
            }
            Step::Straggler => None,
        };
        let age = Duration::from_nanos(
            ctx.now_ns
                .saturating_sub(batch.first_sent_ns.unwrap_or(ctx.now_ns)),
        );
        match delay {
            Some(delay) if age + delay > self.config.retry.max_elapsed => {
                let why = format!(
                    "retries would exceed {} ms",
                    self.config.retry.max_elapsed.as_millis()
                );
                self.drop_exhausted(&batch, &why, ctx);
            }
            _ => self.queue.push_retry(batch),
        }
        let period = self.next_tick(ctx.now_ns);
        self.set_tick(ctx.host, period);
    }
}

/// What a collector's answer means for one protocol: success, or the failure and the delay the
/// collector asked for (`Retry-After` over HTTP, `RetryInfo` over gRPC). `wall_ns`: the host's
/// wall clock (an HTTP-date is wall-clock time).
fn judge(
    resp: &ExportResponse<'_>,
    protocol: Protocol,
    elapsed: Duration,
    timeout: Duration,
    wall_ns: u64,
) -> Result<(), (Failure, Option<Duration>)> {
    match protocol {
        Protocol::Grpc => grpc::classify_grpc(resp, elapsed, timeout),
        Protocol::HttpProtobuf | Protocol::HttpJson => {
            response::classify(resp.status, resp.body, elapsed, timeout).map_err(|f| {
                let retry_after = resp.retry_after.and_then(|v| parse_retry_after(v, wall_ns));
                (f, retry_after)
            })
        }
    }
}
