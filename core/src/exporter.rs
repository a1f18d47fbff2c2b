//! The span exporter of one worker VM: a bounded queue of finished spans, batching, OTLP/HTTP
//! protobuf requests through the host's `dispatch_http_call`, and accounting for every span
//! (exported, or dropped with a reason). Failures are logged at most once per
//! [`FAILURE_LOG_INTERVAL_NS`], without header values.

use crate::config::{Config, ExporterConfig};
use crate::host::{ExportHost, ExportRequest, Stats};
use crate::metrics::Counter;
use crate::otlp::{self, Framer};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// At most this many export requests in flight per VM; further spans wait in the queue.
pub const MAX_IN_FLIGHT: usize = 4;
/// How often a failed export may be logged (per VM).
pub const FAILURE_LOG_INTERVAL_NS: u64 = 10_000_000_000;
/// Tick period used to flush a full batch promptly from the root context.
pub const FAST_FLUSH_PERIOD: Duration = Duration::from_millis(1);

pub struct Exporter {
    config: ExporterConfig,
    framer: Framer,
    /// Encoded spans awaiting export, one `ScopeSpans.spans` field each.
    queue: VecDeque<Vec<u8>>,
    in_flight: HashMap<u32, usize>,
    fast_flush_armed: bool,
    /// Set once the plugin is stopping: every response then sends more of what is queued.
    draining: bool,
    last_failure_log_ns: Option<u64>,
    suppressed_failures: u64,
}

impl Exporter {
    pub fn new(config: &Config) -> Exporter {
        Exporter {
            config: config.exporter.clone(),
            framer: Framer::new(&otlp::resource(config)),
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            fast_flush_armed: false,
            draining: false,
            last_failure_log_ns: None,
            suppressed_failures: 0,
        }
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues finished spans, each already encoded as a `ScopeSpans.spans` field
    /// ([`otlp::encode_span_field`]); spans beyond `max_queue_size` are dropped and counted.
    /// When a full batch is waiting, arms a fast tick so the root context flushes it now.
    pub fn push(&mut self, spans: Vec<Vec<u8>>, host: &dyn ExportHost, stats: &dyn Stats) {
        if spans.is_empty() {
            return;
        }
        let room = self.config.max_queue_size.saturating_sub(self.queue.len());
        let n = spans.len();
        let dropped = n.saturating_sub(room);
        self.queue.extend(spans.into_iter().take(room));
        stats.add(Counter::SpansQueued, (n - dropped) as u64);
        if dropped > 0 {
            stats.add(Counter::SpansDroppedQueueFull, dropped as u64);
        }
        if self.queue.len() >= self.config.max_export_batch_size && !self.fast_flush_armed {
            match host.set_tick_period(FAST_FLUSH_PERIOD) {
                Ok(()) => self.fast_flush_armed = true,
                Err(e) => log::debug!("could not arm fast flush: {e}"),
            }
        }
    }

    /// The timer fired: send everything queued (in batches), then restore the normal period.
    pub fn on_tick(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64) {
        if self.fast_flush_armed {
            self.fast_flush_armed = false;
            if let Err(e) = host.set_tick_period(self.config.flush_interval) {
                log::debug!("could not restore the flush period: {e}");
            }
        }
        self.flush(host, stats, now_ns);
    }

    /// Sends queued spans in batches of at most `max_export_batch_size`, while fewer than
    /// [`MAX_IN_FLIGHT`] requests are outstanding. Never sends an empty request.
    pub fn flush(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64) {
        while !self.queue.is_empty() && self.in_flight.len() < MAX_IN_FLIGHT {
            let n = self.queue.len().min(self.config.max_export_batch_size);
            let body = self.framer.frame(self.queue.range(..n).map(Vec::as_slice));
            self.queue.drain(..n);
            let mut headers: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":path", &self.config.path),
                (":authority", &self.config.authority),
                ("content-type", otlp::CONTENT_TYPE_PROTOBUF),
                ("user-agent", otlp::USER_AGENT),
            ];
            headers.extend(
                self.config
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.expose())),
            );
            let req = ExportRequest {
                cluster: &self.config.cluster,
                headers,
                body: &body,
                timeout: self.config.timeout,
            };
            match host.dispatch(&req) {
                Ok(token) => {
                    self.in_flight.insert(token, n);
                }
                Err(e) => {
                    stats.add(Counter::ExportRequestsFailed, 1);
                    stats.add(Counter::SpansDroppedExportFailed, n as u64);
                    let cluster = self.config.cluster.clone();
                    self.log_failure(
                        now_ns,
                        &format!("could not dispatch to cluster '{cluster}': {e}"),
                        n,
                    );
                }
            }
        }
    }

    /// The plugin is stopping (config update, VM shutdown): send everything queued without
    /// waiting for the timer. Returns true when nothing is left to send or await; otherwise
    /// the remaining spans go out as responses free up in-flight slots.
    pub fn drain(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64) -> bool {
        self.draining = true;
        self.flush(host, stats, now_ns);
        self.is_drained()
    }

    /// Nothing queued and nothing in flight.
    pub fn is_drained(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    /// The collector answered (`status` is the HTTP status, `None` for timeout / reset).
    pub fn on_response(
        &mut self,
        token: u32,
        status: Option<u16>,
        host: &dyn ExportHost,
        stats: &dyn Stats,
        now_ns: u64,
    ) {
        let Some(n) = self.in_flight.remove(&token) else {
            return;
        };
        match status {
            Some(200..=299) => {
                stats.add(Counter::ExportRequestsOk, 1);
                stats.add(Counter::SpansExported, n as u64);
            }
            other => {
                stats.add(Counter::ExportRequestsFailed, 1);
                stats.add(Counter::SpansDroppedExportFailed, n as u64);
                let what = match other {
                    Some(s) => format!("HTTP {s}"),
                    None => "no response (timeout or connection failure)".to_string(),
                };
                let cluster = self.config.cluster.clone();
                self.log_failure(
                    now_ns,
                    &format!("export to cluster '{cluster}' failed: {what}"),
                    n,
                );
            }
        }
        // A slot freed up: send what waited for it (everything, when draining).
        if self.draining || self.queue.len() >= self.config.max_export_batch_size {
            self.flush(host, stats, now_ns);
        }
    }

    fn log_failure(&mut self, now_ns: u64, what: &str, spans: usize) {
        let due = self
            .last_failure_log_ns
            .is_none_or(|t| now_ns.saturating_sub(t) >= FAILURE_LOG_INTERVAL_NS);
        if due {
            log::warn!(
                "{what}; {spans} spans dropped ({} similar failures since the last report)",
                self.suppressed_failures
            );
            self.last_failure_log_ns = Some(now_ns);
            self.suppressed_failures = 0;
        } else {
            self.suppressed_failures += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{HostError, HostErrorKind};
    use crate::otlp::Span;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::cell::RefCell;

    /// (cluster, headers, body) of one dispatched request.
    type Sent = (String, Vec<(String, String)>, Vec<u8>);

    #[derive(Default)]
    struct MockExportHost {
        sent: RefCell<Vec<Sent>>,
        ticks: RefCell<Vec<Duration>>,
        fail_dispatch: bool,
    }
    impl ExportHost for MockExportHost {
        fn dispatch(&self, req: &ExportRequest<'_>) -> Result<u32, HostError> {
            if self.fail_dispatch {
                return Err(HostError::new(
                    "dispatch_http_call",
                    HostErrorKind::BadArgument,
                ));
            }
            let mut sent = self.sent.borrow_mut();
            sent.push((
                req.cluster.to_string(),
                req.headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                req.body.to_vec(),
            ));
            Ok(sent.len() as u32)
        }
        fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
            self.ticks.borrow_mut().push(period);
            Ok(())
        }
    }
    #[derive(Default)]
    struct MockStats(RefCell<HashMap<Counter, u64>>);
    impl Stats for MockStats {
        fn add(&self, c: Counter, n: u64) {
            *self.0.borrow_mut().entry(c).or_default() += n;
        }
    }
    impl MockStats {
        fn get(&self, c: Counter) -> u64 {
            self.0.borrow().get(&c).copied().unwrap_or(0)
        }
    }

    fn exporter(extra: &str) -> Exporter {
        let json = format!(
            r#"{{"service_name":"gw","exporter":{{"cluster":"otel","headers":{{"x-honeycomb-team":"secret"}}{extra}}}}}"#
        );
        Exporter::new(&crate::config::parse(json.as_bytes(), &|_| None).unwrap())
    }

    fn spans(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let span = Span {
                    name: format!("s{i}"),
                    span_id: vec![1; 8],
                    trace_id: vec![1; 16],
                    ..Default::default()
                };
                let mut out = Vec::new();
                crate::otlp::encode_span_field(&span, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn tick_sends_batches_and_never_empty_requests() {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter(r#","max_export_batch_size":2"#);
        e.on_tick(&host, &stats, 0);
        assert!(host.sent.borrow().is_empty(), "empty queue sends nothing");
        e.push(spans(3), &host, &stats);
        assert_eq!(
            *host.ticks.borrow(),
            vec![FAST_FLUSH_PERIOD],
            "full batch arms a fast tick"
        );
        e.on_tick(&host, &stats, 0);
        assert_eq!(
            host.ticks.borrow().last(),
            Some(&Duration::from_millis(1000)),
            "period restored"
        );
        let sent = host.sent.borrow();
        assert_eq!(sent.len(), 2);
        let (cluster, headers, body) = &sent[0];
        assert_eq!(cluster, "otel");
        let h = |k: &str| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h(":method"), Some("POST"));
        assert_eq!(h(":path"), Some("/v1/traces"));
        assert_eq!(h(":authority"), Some("otel"));
        assert_eq!(h("content-type"), Some("application/x-protobuf"));
        assert!(h("user-agent")
            .unwrap()
            .starts_with("OTel-OTLP-Exporter-Rust/"));
        assert_eq!(h("x-honeycomb-team"), Some("secret"));
        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(stats.get(Counter::SpansQueued), 3);
    }

    #[test]
    fn responses_are_counted() {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter("");
        e.push(spans(2), &host, &stats);
        e.on_tick(&host, &stats, 0);
        e.push(spans(3), &host, &stats);
        e.on_tick(&host, &stats, 0);
        e.on_response(1, Some(200), &host, &stats, 0);
        e.on_response(2, None, &host, &stats, 0);
        e.on_response(99, Some(200), &host, &stats, 0);
        assert_eq!(stats.get(Counter::SpansExported), 2);
        assert_eq!(stats.get(Counter::SpansDroppedExportFailed), 3);
        assert_eq!(stats.get(Counter::ExportRequestsOk), 1);
        assert_eq!(stats.get(Counter::ExportRequestsFailed), 1);
        assert_eq!(e.in_flight(), 0);
    }

    #[test]
    fn drain_sends_everything_and_reports_when_done() {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter(r#","max_export_batch_size":1"#);
        assert!(
            e.drain(&host, &stats, 0),
            "an empty exporter is drained at once"
        );
        e.push(spans(MAX_IN_FLIGHT + 1), &host, &stats);
        assert!(!e.drain(&host, &stats, 0), "requests in flight");
        assert_eq!(host.sent.borrow().len(), MAX_IN_FLIGHT);
        e.on_response(1, Some(200), &host, &stats, 0);
        assert_eq!(
            host.sent.borrow().len(),
            MAX_IN_FLIGHT + 1,
            "the rest goes out as slots free up"
        );
        for token in 2..=(MAX_IN_FLIGHT as u32 + 1) {
            assert!(!e.is_drained());
            e.on_response(token, Some(200), &host, &stats, 0);
        }
        assert!(e.is_drained());
        assert_eq!(stats.get(Counter::SpansExported), MAX_IN_FLIGHT as u64 + 1);
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter(r#","max_export_batch_size":2,"max_queue_size":4"#);
        e.push(spans(3), &host, &stats);
        e.push(spans(3), &host, &stats);
        assert_eq!(e.queued(), 4);
        assert_eq!(stats.get(Counter::SpansDroppedQueueFull), 2);
        assert_eq!(stats.get(Counter::SpansQueued), 4);
    }

    #[test]
    fn in_flight_is_bounded_and_dispatch_errors_count() {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter(r#","max_export_batch_size":1"#);
        e.push(spans(MAX_IN_FLIGHT + 2), &host, &stats);
        e.on_tick(&host, &stats, 0);
        assert_eq!(host.sent.borrow().len(), MAX_IN_FLIGHT);
        assert_eq!(e.queued(), 2);
        e.on_response(1, Some(204), &host, &stats, 0);
        assert_eq!(
            host.sent.borrow().len(),
            MAX_IN_FLIGHT + 1,
            "freed slot is used"
        );

        let failing = MockExportHost {
            fail_dispatch: true,
            ..Default::default()
        };
        let mut e = exporter("");
        e.push(spans(2), &failing, &stats);
        e.on_tick(&failing, &stats, 0);
        assert_eq!(stats.get(Counter::SpansDroppedExportFailed), 2);
        assert_eq!(e.queued(), 0);
    }
}
