use super::*;
use crate::config::*;
use crate::host::{HostError, HostErrorKind};
use crate::otlp::Span;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::cell::{Cell, RefCell};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// (cluster, headers, body) of one dispatched request.
type Sent = (String, Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
struct MockExportHost {
    sent: RefCell<Vec<Sent>>,
    ticks: RefCell<Vec<Duration>>,
    fail_dispatch: Cell<Option<HostErrorKind>>,
}
impl ExportHost for MockExportHost {
    fn dispatch(&self, req: &ExportRequest<'_>) -> Result<u32, HostError> {
        if let Some(kind) = self.fail_dispatch.get() {
            return Err(HostError::new("dispatch_http_call", kind));
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
impl MockExportHost {
    fn count(&self) -> usize {
        self.sent.borrow().len()
    }
    fn header(&self, i: usize, name: &str) -> Option<String> {
        self.sent.borrow()[i]
            .1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

#[derive(Default)]
struct MockStats {
    counters: RefCell<HashMap<Counter, u64>>,
    gauges: RefCell<HashMap<Gauge, u64>>,
    recorded: RefCell<Vec<u64>>,
}
impl Stats for MockStats {
    fn add(&self, c: Counter, n: u64) {
        *self.counters.borrow_mut().entry(c).or_default() += n;
    }
    fn set(&self, g: Gauge, v: u64) {
        self.gauges.borrow_mut().insert(g, v);
    }
    fn record(&self, _h: Histogram, v: u64) {
        self.recorded.borrow_mut().push(v);
    }
}
impl MockStats {
    fn get(&self, c: Counter) -> u64 {
        self.counters.borrow().get(&c).copied().unwrap_or(0)
    }
    fn gauge(&self, g: Gauge) -> u64 {
        self.gauges.borrow().get(&g).copied().unwrap_or(0)
    }
    fn dropped(&self) -> u64 {
        [
            Counter::SpansDroppedQueueFull,
            Counter::SpansDroppedExportFailed,
            Counter::SpansDroppedRetriesExhausted,
            Counter::SpansDroppedRejectedByCollector,
            Counter::SpansDroppedShutdown,
            Counter::SpansDroppedInternal,
        ]
        .iter()
        .map(|c| self.get(*c))
        .sum()
    }
    /// created = exported + dropped by reason + still held.
    fn assert_accounted(&self, e: &Exporter) {
        assert_eq!(
            self.get(Counter::SpansCreated),
            self.get(Counter::SpansExported) + self.dropped() + e.held_spans() as u64,
            "every span exported, dropped by reason, or held"
        );
    }
}

fn exporter(extra: &str) -> Exporter {
    let json = format!(
        r#"{{"service_name":"gw","exporter":{{"cluster":"otel","headers":{{"x-honeycomb-team":"secret"}}{extra}}}}}"#
    );
    let mut e = Exporter::new(&crate::config::parse(json.as_bytes(), &|_| None).unwrap());
    e.seed(42);
    e
}

/// `n` spans encoded back to back, as the tracer hands them over.
fn spans(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let span = Span {
            name: format!("s{:04}", i % 10_000),
            span_id: vec![1; 8],
            trace_id: vec![1; 16],
            start_time_unix_nano: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        crate::otlp::encode_span_field(&span, &mut out);
    }
    out
}

/// `n` requests of one span each.
fn push(e: &mut Exporter, n: usize, host: &MockExportHost, stats: &MockStats) {
    let one = spans(1);
    for _ in 0..n {
        e.push(&one, 1, host, stats);
    }
}

fn status(s: u16) -> ExportResponse<'static> {
    ExportResponse {
        status: Some(s),
        ..Default::default()
    }
}

fn decoded(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).unwrap()
}

fn span_count(body: &[u8]) -> usize {
    decoded(body).resource_spans[0].scope_spans[0].spans.len()
}

#[test]
fn named_defaults() {
    struct Row {
        got: u64,
        want: u64,
        reason: &'static str,
    }
    let c = crate::config::parse(br#"{"exporter":{"cluster":"otel"}}"#, &|_| None)
        .unwrap()
        .exporter;
    let rows = [
        Row {
            got: c.retry.initial_backoff.as_millis() as u64,
            want: DEFAULT_RETRY_INITIAL_BACKOFF_MS,
            reason: "initial backoff: a blip costs about a second",
        },
        Row {
            got: DEFAULT_RETRY_INITIAL_BACKOFF_MS,
            want: 1_000,
            reason: "initial backoff value",
        },
        Row {
            got: (c.retry.multiplier * 1000.0) as u64,
            want: (DEFAULT_RETRY_MULTIPLIER * 1000.0) as u64,
            reason: "multiplier default is used",
        },
        Row {
            got: (DEFAULT_RETRY_MULTIPLIER * 1000.0) as u64,
            want: 1_500,
            reason: "multiplier as OpenTelemetry's exporters",
        },
        Row {
            got: c.retry.max_backoff.as_millis() as u64,
            want: DEFAULT_RETRY_MAX_BACKOFF_MS,
            reason: "max interval default is used",
        },
        Row {
            got: DEFAULT_RETRY_MAX_BACKOFF_MS,
            want: 30_000,
            reason: "a dead collector sees one probe per 30 s per worker",
        },
        Row {
            got: c.retry.max_elapsed.as_millis() as u64,
            want: DEFAULT_RETRY_MAX_ELAPSED_MS,
            reason: "max elapsed default is used",
        },
        Row {
            got: DEFAULT_RETRY_MAX_ELAPSED_MS,
            want: 300_000,
            reason: "retries for 5 minutes, as OpenTelemetry's exporters",
        },
        Row {
            got: c.max_queue_bytes,
            want: DEFAULT_MAX_QUEUE_BYTES,
            reason: "queue bytes default is used",
        },
        Row {
            got: DEFAULT_MAX_QUEUE_BYTES,
            want: 32 << 20,
            reason: "32 MiB per worker",
        },
        Row {
            got: u64::from(c.retry.enabled),
            want: 1,
            reason: "retry on by default",
        },
        Row {
            got: u64::from(
                c.compression == DEFAULT_COMPRESSION && DEFAULT_COMPRESSION == Compression::None,
            ),
            want: 1,
            reason: "no compression by default (CPU on the worker; collector is near)",
        },
        Row {
            got: u64::from(
                c.encoding == DEFAULT_ENCODING && DEFAULT_ENCODING == Encoding::Protobuf,
            ),
            want: 1,
            reason: "protobuf by default",
        },
        Row {
            got: MAX_IN_FLIGHT as u64,
            want: 4,
            reason: "in flight while healthy",
        },
        Row {
            got: MAX_IN_FLIGHT_FAILING as u64,
            want: 1,
            reason: "one probe while failing",
        },
    ];
    for r in rows {
        assert_eq!(r.got, r.want, "{}", r.reason);
    }
}

#[test]
fn classify_outcomes() {
    struct Row {
        status: Option<u16>,
        body: &'static [u8],
        elapsed_ms: u64,
        want: Result<(), Failure>,
        retryable: bool,
        reason: &'static str,
    }
    let rows = [
        Row { status: Some(200), body: b"", elapsed_ms: 5, want: Ok(()), retryable: false, reason: "2xx is success" },
        Row { status: Some(204), body: b"", elapsed_ms: 5, want: Ok(()), retryable: false, reason: "any 2xx" },
        Row { status: Some(400), body: b"bad", elapsed_ms: 5, want: Err(Failure::Http(400)), retryable: false, reason: "400 is never retried" },
        Row { status: Some(401), body: b"", elapsed_ms: 5, want: Err(Failure::Http(401)), retryable: false, reason: "other 4xx not retried" },
        Row { status: Some(429), body: b"", elapsed_ms: 5, want: Err(Failure::Http(429)), retryable: true, reason: "429 retried" },
        Row { status: Some(500), body: b"", elapsed_ms: 5, want: Err(Failure::Http(500)), retryable: false, reason: "500 not in the OTLP retry list" },
        Row { status: Some(502), body: b"", elapsed_ms: 5, want: Err(Failure::Http(502)), retryable: true, reason: "502 retried" },
        Row { status: Some(503), body: b"", elapsed_ms: 5, want: Err(Failure::Http(503)), retryable: true, reason: "503 from the collector" },
        Row { status: Some(503), body: b"upstream connect error or disconnect/reset before headers. reset reason: connection failure", elapsed_ms: 5, want: Err(Failure::Connection), retryable: true, reason: "Envoy's router could not connect" },
        Row { status: Some(503), body: b"no healthy upstream", elapsed_ms: 5, want: Err(Failure::Connection), retryable: true, reason: "no endpoint" },
        Row { status: Some(504), body: b"upstream request timeout", elapsed_ms: 5000, want: Err(Failure::Timeout), retryable: true, reason: "Envoy's router timed out: a timeout, not an HTTP status" },
        Row { status: Some(504), body: b"", elapsed_ms: 5000, want: Err(Failure::Timeout), retryable: true, reason: "504 after the whole timeout" },
        Row { status: Some(504), body: b"gateway", elapsed_ms: 10, want: Err(Failure::Http(504)), retryable: true, reason: "a real 504 from a proxy" },
        Row { status: None, body: b"", elapsed_ms: 10, want: Err(Failure::Connection), retryable: true, reason: "reset" },
        Row { status: None, body: b"", elapsed_ms: 5000, want: Err(Failure::Timeout), retryable: true, reason: "no answer within the timeout" },
    ];
    for r in rows {
        let got = classify(
            r.status,
            r.body,
            Duration::from_millis(r.elapsed_ms),
            Duration::from_secs(5),
        );
        assert_eq!(got, r.want, "{}", r.reason);
        if let Err(f) = got {
            assert_eq!(f.is_retryable(), r.retryable, "{}", r.reason);
        }
    }
    assert!(
        !Failure::Dispatch(HostErrorKind::BadArgument).is_retryable(),
        "unknown cluster"
    );
    assert!(Failure::Dispatch(HostErrorKind::Internal).is_retryable());
}

#[test]
fn retry_after_parsing() {
    struct Row {
        value: &'static str,
        want: Option<Duration>,
        reason: &'static str,
    }
    // 2026-01-01T00:00:00Z
    let now = 1_767_225_600 * S;
    let rows = [
        Row {
            value: "1",
            want: Some(Duration::from_secs(1)),
            reason: "delay-seconds",
        },
        Row {
            value: " 120 ",
            want: Some(Duration::from_secs(120)),
            reason: "whitespace trimmed",
        },
        Row {
            value: "Thu, 01 Jan 2026 00:00:07 GMT",
            want: Some(Duration::from_secs(7)),
            reason: "IMF-fixdate",
        },
        Row {
            value: "Thursday, 01-Jan-26 00:00:03 GMT",
            want: Some(Duration::from_secs(3)),
            reason: "obsolete RFC 850 date",
        },
        Row {
            value: "Wed, 31 Dec 2025 23:59:00 GMT",
            want: Some(Duration::ZERO),
            reason: "a date in the past: now",
        },
        Row {
            value: "soon",
            want: None,
            reason: "garbage ignored",
        },
        Row {
            value: "-1",
            want: None,
            reason: "negative ignored",
        },
    ];
    for r in rows {
        assert_eq!(parse_retry_after(r.value.as_bytes(), now), r.want, "{}", r.reason);
    }
    // obs-text (RFC 9110 §5.5) is legal in a field value: bytes that are not UTF-8 are no hint.
    assert_eq!(parse_retry_after(b"\xff", now), None, "not UTF-8: ignored");
    assert_eq!(parse_retry_after(b"1\x80", now), None, "trailing obs-text: ignored");
}

#[test]
fn partial_success_decoding() {
    struct Row {
        body: Vec<u8>,
        want: Option<(u64, &'static str)>,
        reason: &'static str,
    }
    let pb = |n: i64, m: &str| {
        ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: n,
                error_message: m.into(),
            }),
        }
        .encode_to_vec()
    };
    let rows = [
        Row {
            body: vec![],
            want: None,
            reason: "empty body: full success",
        },
        Row {
            body: ExportTraceServiceResponse::default().encode_to_vec(),
            want: None,
            reason: "no partial_success",
        },
        Row {
            body: pb(3, "bad span"),
            want: Some((3, "bad span")),
            reason: "protobuf",
        },
        Row {
            body: pb(0, "warning only"),
            want: Some((0, "warning only")),
            reason: "a message without rejections",
        },
        Row {
            body: br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"too old"}}"#.to_vec(),
            want: Some((2, "too old")),
            reason: "JSON, int64 as string",
        },
        Row {
            body: br#"{"partialSuccess":{"rejectedSpans":5}}"#.to_vec(),
            want: Some((5, "")),
            reason: "JSON, number",
        },
        Row {
            body: br#"{}"#.to_vec(),
            want: None,
            reason: "JSON without partialSuccess",
        },
        Row {
            body: b"not protobuf \xff\xff".to_vec(),
            want: None,
            reason: "garbage ignored",
        },
    ];
    for r in rows {
        let got = partial_success(&r.body);
        assert_eq!(
            got.as_ref().map(|(n, m)| (*n, m.as_str())),
            r.want,
            "{}",
            r.reason
        );
    }
}

#[test]
fn tick_sends_batches_and_never_empty_requests() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_batch_size":2"#);
    e.on_tick(&host, &stats, 0);
    assert_eq!(host.count(), 0, "empty queue sends nothing");
    push(&mut e, 3, &host, &stats);
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
    assert_eq!(
        host.count(),
        1,
        "the fast tick sends the full batch, not a small request for the leftover span"
    );
    assert_eq!(
        stats.gauge(Gauge::ExportQueueSpans),
        3,
        "3 held: 2 in flight, 1 queued"
    );
    e.on_tick(&host, &stats, 0);
    assert_eq!(host.count(), 2, "the leftover goes at the flush interval");
    let sent = host.sent.borrow();
    let (cluster, _, body) = &sent[0];
    assert_eq!(cluster, "otel");
    for (k, v) in [
        (":method", "POST"),
        (":path", "/v1/traces"),
        (":authority", "otel"),
        ("content-type", "application/x-protobuf"),
        ("x-honeycomb-team", "secret"),
    ] {
        assert_eq!(host.header(0, k).as_deref(), Some(v), "{k}");
    }
    assert_eq!(host.header(0, "content-encoding"), None);
    assert!(host
        .header(0, "user-agent")
        .unwrap()
        .starts_with("OTel-OTLP-Exporter-Rust/"));
    assert_eq!(span_count(body), 2);
    assert_eq!(stats.get(Counter::SpansQueued), 3);
    assert_eq!(stats.gauge(Gauge::ExportInFlight), 2);
    assert_eq!(stats.gauge(Gauge::ExportQueueSpans), 3);
    assert!(stats.gauge(Gauge::ExportQueueBytes) > 0);
}

#[test]
fn a_push_of_several_spans_stays_in_one_batch() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_batch_size":3"#);
    e.push(&spans(2), 2, &host, &stats);
    e.push(&spans(2), 2, &host, &stats);
    e.on_tick(&host, &stats, 0); // fast tick: the first full-enough batch
    e.on_tick(&host, &stats, 0); // flush interval: the rest
    let sent = host.sent.borrow();
    let counts: Vec<usize> = sent.iter().map(|(_, _, b)| span_count(b)).collect();
    assert_eq!(
        counts,
        vec![2, 2],
        "a request's spans are not split across batches"
    );
}

#[test]
fn responses_are_counted_and_latency_recorded() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter("");
    push(&mut e, 2, &host, &stats);
    e.on_tick(&host, &stats, 0);
    push(&mut e, 3, &host, &stats);
    e.on_tick(&host, &stats, 0);
    e.on_response(1, &status(200), &host, &stats, 7 * MS);
    e.on_response(2, &status(400), &host, &stats, 9 * MS);
    e.on_response(99, &status(200), &host, &stats, 0);
    assert_eq!(stats.get(Counter::SpansExported), 2);
    assert_eq!(
        stats.get(Counter::SpansDroppedExportFailed),
        3,
        "400 is dropped, not retried"
    );
    assert_eq!(stats.get(Counter::ExportRequestsOk), 1);
    assert_eq!(stats.get(Counter::ExportRequestsFailed), 1);
    assert_eq!(*stats.recorded.borrow(), vec![7, 9], "latency in ms");
    assert_eq!(e.in_flight(), 0);
    assert!(!e.is_failing(), "a 400 is not the collector failing");
    e.on_tick(&host, &stats, 20 * S);
    assert_eq!(host.count(), 2, "no retry after 400");
    stats.assert_accounted(&e);
}

#[test]
fn retryable_failures_back_off_as_a_whole_and_recover_at_full_speed() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_batch_size":1"#);
    push(&mut e, 10, &host, &stats);
    e.on_tick(&host, &stats, 0);
    assert_eq!(host.count(), MAX_IN_FLIGHT);
    // The first answer is a 503: the exporter fails as a whole.
    e.on_response(1, &status(503), &host, &stats, S);
    assert!(e.is_failing());
    assert_eq!(
        host.count(),
        MAX_IN_FLIGHT,
        "nothing more sent while backing off"
    );
    // The others in flight fail too: retried later, not dropped.
    for t in 2..=4 {
        e.on_response(t, &status(503), &host, &stats, S);
    }
    assert_eq!(stats.dropped(), 0, "nothing lost");
    // Ticks before the backoff ends send nothing.
    e.on_tick(&host, &stats, S + 700 * MS);
    assert_eq!(host.count(), 4);
    // Initial 1 s ± 20%: by 1.2 s after the failure, one probe, and only one.
    e.on_tick(&host, &stats, S + 1_250 * MS);
    e.on_tick(&host, &stats, S + 1_300 * MS);
    assert_eq!(host.count(), 5, "one probe at a time");
    assert_eq!(stats.get(Counter::ExportRetries), 1);
    // The probe succeeds: the backlog drains at full speed.
    e.on_response(5, &status(200), &host, &stats, S + 1_310 * MS);
    assert!(!e.is_failing());
    assert_eq!(
        host.count(),
        5 + MAX_IN_FLIGHT,
        "in-flight slots used at once after recovery"
    );
    let mut token = 6;
    while e.in_flight() > 0 {
        e.on_response(token, &status(200), &host, &stats, 2 * S);
        token += 1;
        e.on_tick(&host, &stats, 2 * S);
    }
    assert_eq!(
        stats.get(Counter::SpansExported),
        10,
        "the whole outage delivered"
    );
    assert!(e.is_drained());
    stats.assert_accounted(&e);
}

#[test]
fn backoff_grows_by_the_multiplier_with_jitter_up_to_the_max() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(
        r#","retry":{"initial_backoff_ms":1000,"multiplier":2,"max_backoff_ms":5000,"max_elapsed_ms":3600000}"#,
    );
    push(&mut e, 1, &host, &stats);
    e.on_tick(&host, &stats, 0);
    let mut now = 0;
    let mut gaps = Vec::new();
    for token in 1..=7u32 {
        e.on_response(token, &ExportResponse::default(), &host, &stats, now);
        let failed_at = now;
        // Step in 10 ms ticks until the next probe goes out.
        while host.count() == token as usize {
            now += 10 * MS;
            e.on_tick(&host, &stats, now);
        }
        gaps.push((now - failed_at) / MS);
    }
    let nominal = [1000, 2000, 4000, 5000, 5000, 5000, 5000];
    for (gap, n) in gaps.iter().zip(nominal) {
        let (lo, hi) = (n * 8 / 10, n * 12 / 10 + 10);
        assert!(
            (lo..=hi).contains(gap),
            "gap {gap} ms, nominal {n} ms: {gaps:?}"
        );
    }
    assert!(gaps.windows(2).any(|w| w[0] != w[1]), "jittered: {gaps:?}");
}

#[test]
fn retry_after_is_honoured_in_seconds_and_dates() {
    struct Row {
        retry_after: &'static str,
        want_ms: u64,
        reason: &'static str,
    }
    let rows = [
        Row {
            retry_after: "3",
            want_ms: 3000,
            reason: "seconds, longer than the 1 s backoff",
        },
        Row {
            retry_after: "0",
            want_ms: 0,
            reason: "zero: at once",
        },
        Row {
            retry_after: "Thu, 01 Jan 2026 00:00:02 GMT",
            want_ms: 2000,
            reason: "HTTP-date",
        },
    ];
    for r in rows {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter("");
        push(&mut e, 1, &host, &stats);
        let t0 = 1_767_225_600 * S;
        e.on_tick(&host, &stats, t0);
        let resp = ExportResponse {
            status: Some(429),
            retry_after: Some(r.retry_after.as_bytes()),
            body: b"",
        };
        e.on_response(1, &resp, &host, &stats, t0);
        let mut now = t0;
        while host.count() == 1 {
            now += 10 * MS;
            e.on_tick(&host, &stats, now);
            assert!(now - t0 < 10 * S, "{}: never retried", r.reason);
        }
        assert_eq!((now - t0) / MS, r.want_ms, "{}", r.reason);
    }
}

#[test]
fn retries_stop_after_max_elapsed() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(
        r#","retry":{"initial_backoff_ms":1000,"max_backoff_ms":1000,"max_elapsed_ms":3500}"#,
    );
    push(&mut e, 2, &host, &stats);
    e.on_tick(&host, &stats, 0);
    let mut now = 0;
    let mut token = 1;
    while stats.get(Counter::SpansDroppedRetriesExhausted) == 0 && now < 20 * S {
        if e.in_flight() > 0 {
            e.on_response(token, &status(503), &host, &stats, now);
            token += 1;
        }
        now += 100 * MS;
        e.on_tick(&host, &stats, now);
    }
    assert_eq!(stats.get(Counter::SpansDroppedRetriesExhausted), 2);
    assert!(
        (3..=5).contains(&host.count()),
        "tried for about 3.5 s: {} sends",
        host.count()
    );
    assert!(e.is_drained());
    stats.assert_accounted(&e);
}

#[test]
fn retry_disabled_drops_at_the_first_failure() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","retry":{"enabled":false}"#);
    push(&mut e, 2, &host, &stats);
    e.on_tick(&host, &stats, 0);
    e.on_response(1, &status(503), &host, &stats, 0);
    assert_eq!(stats.get(Counter::SpansDroppedExportFailed), 2);
    stats.assert_accounted(&e);
}

#[test]
fn the_queue_is_bounded_in_bytes_and_refuses_the_newest() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let one = spans(1).len();
    let budget = MIN_QUEUE_BYTES as usize;
    let fit = budget / one;
    let mut e = exporter(&format!(
        r#","max_queue_bytes":{budget},"max_export_batch_size":8192"#
    ));
    push(&mut e, fit, &host, &stats);
    assert_eq!(e.held_bytes(), fit * one);
    push(&mut e, 1, &host, &stats);
    push(&mut e, 2, &host, &stats);
    assert_eq!(
        stats.get(Counter::SpansDroppedQueueFull),
        3,
        "newest refused"
    );
    assert_eq!(e.queued(), fit, "what was queued stays");
    assert!(e.held_bytes() <= budget);
    // A sent batch still counts until answered; an answer makes room.
    e.on_tick(&host, &stats, 0);
    push(&mut e, 1, &host, &stats);
    assert_eq!(
        stats.get(Counter::SpansDroppedQueueFull),
        4,
        "in flight still counts"
    );
    e.on_response(1, &status(200), &host, &stats, 0);
    push(&mut e, 1, &host, &stats);
    assert_eq!(stats.get(Counter::SpansDroppedQueueFull), 4, "room again");
    assert!(e.queue_full.is_none(), "below half: the full state ends");
    stats.assert_accounted(&e);
}

#[test]
fn a_queue_that_stays_nearly_full_does_not_flap() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let one = spans(1).len();
    let budget = MIN_QUEUE_BYTES as usize;
    let mut e = exporter(&format!(
        r#","max_queue_bytes":{budget},"max_export_batch_size":1"#
    ));
    push(&mut e, budget / one + 1, &host, &stats);
    assert!(e.queue_full.is_some());
    // Answers free one span's room at a time; pushes refill it: still the same full state.
    e.on_tick(&host, &stats, 0);
    for token in 1..=3 {
        e.on_response(token, &status(200), &host, &stats, 0);
        push(&mut e, 1, &host, &stats);
        assert!(e.queue_full.is_some(), "no 'room again' at {token}");
    }
    stats.assert_accounted(&e);
}

#[test]
fn an_unknown_cluster_is_dropped_and_counted() {
    let host = MockExportHost::default();
    host.fail_dispatch.set(Some(HostErrorKind::BadArgument));
    let stats = MockStats::default();
    let mut e = exporter("");
    push(&mut e, 2, &host, &stats);
    e.on_tick(&host, &stats, 0);
    push(&mut e, 1, &host, &stats);
    e.on_tick(&host, &stats, S);
    assert_eq!(stats.get(Counter::SpansDroppedExportFailed), 3);
    assert!(!e.is_failing(), "a config error is not a backoff");
    assert!(e.is_drained());
    stats.assert_accounted(&e);
    assert_eq!(
        Failure::Dispatch(HostErrorKind::NotFound).describe(&e.config),
        "exporter cluster 'otel' is not defined in Envoy (dispatch_http_call refused it)"
    );
}

#[test]
fn partial_success_counts_rejected_spans_without_retry() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter("");
    push(&mut e, 5, &host, &stats);
    e.on_tick(&host, &stats, 0);
    let body = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "span too old\n(injected)".into(),
        }),
    }
    .encode_to_vec();
    let resp = ExportResponse {
        status: Some(200),
        retry_after: None,
        body: &body,
    };
    e.on_response(1, &resp, &host, &stats, 0);
    assert_eq!(stats.get(Counter::SpansExported), 3);
    assert_eq!(stats.get(Counter::SpansDroppedRejectedByCollector), 2);
    e.on_tick(&host, &stats, 10 * S);
    assert_eq!(host.count(), 1, "not retried");
    stats.assert_accounted(&e);
    assert_eq!(sanitize("a\nb"), "a b");
    assert_eq!(sanitize(&"x".repeat(500)).chars().count(), 201);
}

#[test]
fn drain_sends_everything_once_and_counts_what_fails_as_shutdown() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_batch_size":1"#);
    assert!(
        e.drain(&host, &stats, 0),
        "an empty exporter is drained at once"
    );
    push(&mut e, MAX_IN_FLIGHT + 1, &host, &stats);
    assert!(!e.drain(&host, &stats, 0), "requests in flight");
    assert_eq!(host.count(), MAX_IN_FLIGHT);
    e.on_response(1, &status(200), &host, &stats, 0);
    assert_eq!(
        host.count(),
        MAX_IN_FLIGHT + 1,
        "the rest goes out as slots free up"
    );
    e.on_response(2, &status(503), &host, &stats, 0);
    for token in 3..=(MAX_IN_FLIGHT as u32 + 1) {
        assert!(!e.is_drained());
        e.on_response(token, &status(200), &host, &stats, 0);
    }
    assert!(e.is_drained());
    assert_eq!(stats.get(Counter::SpansExported), MAX_IN_FLIGHT as u64);
    assert_eq!(
        stats.get(Counter::SpansDroppedShutdown),
        1,
        "no retries while stopping"
    );
    stats.assert_accounted(&e);
}

#[test]
fn drain_while_failing_ignores_the_backoff_and_abandon_counts_the_rest() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_batch_size":1"#);
    push(&mut e, 3, &host, &stats);
    e.on_tick(&host, &stats, 0);
    for t in 1..=3 {
        e.on_response(t, &ExportResponse::default(), &host, &stats, 0);
    }
    assert!(e.is_failing());
    push(&mut e, 2, &host, &stats);
    assert!(!e.drain(&host, &stats, 0));
    assert_eq!(
        host.count(),
        3 + MAX_IN_FLIGHT,
        "sent at once, backoff or not"
    );
    assert_eq!(e.abandon(&stats), 5, "the VM goes away with 5 spans held");
    assert_eq!(stats.get(Counter::SpansDroppedShutdown), 5);
    assert_eq!(stats.gauge(Gauge::ExportQueueBytes), 0);
    stats.assert_accounted(&e);
}

#[test]
fn gzip_and_json_bodies() {
    struct Row {
        extra: &'static str,
        content_type: &'static str,
        content_encoding: Option<&'static str>,
        reason: &'static str,
    }
    let rows = [
        Row {
            extra: r#","compression":"gzip""#,
            content_type: "application/x-protobuf",
            content_encoding: Some("gzip"),
            reason: "gzip protobuf",
        },
        Row {
            extra: r#","encoding":"json""#,
            content_type: "application/json",
            content_encoding: None,
            reason: "plain JSON",
        },
        Row {
            extra: r#","encoding":"json","compression":"gzip""#,
            content_type: "application/json",
            content_encoding: Some("gzip"),
            reason: "gzip JSON",
        },
    ];
    for r in rows {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter(r.extra);
        push(&mut e, 2, &host, &stats);
        e.on_tick(&host, &stats, 0);
        assert_eq!(
            host.header(0, "content-type").as_deref(),
            Some(r.content_type),
            "{}",
            r.reason
        );
        assert_eq!(
            host.header(0, "content-encoding").as_deref(),
            r.content_encoding,
            "{}",
            r.reason
        );
        let mut body = host.sent.borrow()[0].2.clone();
        if r.content_encoding.is_some() {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice())
                .read_to_end(&mut out)
                .unwrap();
            body = out;
        }
        let req: ExportTraceServiceRequest = if r.content_type == "application/json" {
            serde_json::from_slice(&body).unwrap()
        } else {
            decoded(&body)
        };
        assert_eq!(
            req.resource_spans[0].scope_spans[0].spans.len(),
            2,
            "{}",
            r.reason
        );
    }
}

#[test]
fn json_follows_the_otlp_json_mapping() {
    let span = Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
        parent_span_id: vec![],
        name: "GET /x".into(),
        kind: crate::otlp::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_000_223_456_789,
        attributes: vec![crate::otlp::kv_int("http.response.status_code", 200)],
        status: Some(crate::otlp::Status {
            code: crate::otlp::StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    let mut fields = Vec::new();
    crate::otlp::encode_span_field(&span, &mut fields);
    let config = crate::config::parse(
        br#"{"service_name":"gw","exporter":{"cluster":"otel"}}"#,
        &|_| None,
    )
    .unwrap();
    let framed =
        Framer::new(&crate::otlp::resource(&config)).frame(std::iter::once(fields.as_slice()));
    let json: serde_json::Value =
        serde_json::from_slice(&crate::otlp::to_json(&framed).unwrap()).unwrap();
    let s = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(
        s["traceId"], "abababababababababababababababab",
        "hex trace id"
    );
    assert_eq!(s["spanId"], "0102030405060708", "hex span id");
    assert_eq!(s["kind"], 2, "enum as integer");
    assert_eq!(
        s["startTimeUnixNano"], "1700000000123456789",
        "64-bit as string"
    );
    assert_eq!(
        s["attributes"][0]["value"]["intValue"], "200",
        "int64 attribute as string"
    );
    assert_eq!(s["status"]["code"], 2, "status code as integer");
    assert_eq!(
        json["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "gw"
    );
    assert_eq!(
        json["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"],
        "gateway-tracing"
    );
}

#[test]
fn every_span_is_accounted_for_under_a_mixed_fault_sequence() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(&format!(
        r#","max_export_batch_size":3,"max_queue_bytes":{},"retry":{{"initial_backoff_ms":100,"max_backoff_ms":400,"max_elapsed_ms":1500}}"#,
        MIN_QUEUE_BYTES
    ));
    let answers: [ExportResponse<'static>; 7] = [
        status(200),
        status(503),
        status(400),
        ExportResponse::default(),
        status(429),
        status(200),
        status(500),
    ];
    let mut now = 0;
    let mut answered = 0usize;
    for step in 0..2_000usize {
        let n = 1 + step % 3;
        e.push(&spans(n), n, &host, &stats);
        now += 10 * MS;
        e.on_tick(&host, &stats, now);
        while answered < host.count() {
            answered += 1;
            let r = &answers[(answered * 7 + step) % answers.len()];
            e.on_response(answered as u32, r, &host, &stats, now);
        }
        stats.assert_accounted(&e);
        assert!(e.held_bytes() <= MIN_QUEUE_BYTES as usize);
    }
    assert!(stats.get(Counter::SpansExported) > 0);
    assert!(stats.get(Counter::ExportRetries) > 0);
}

/// Cost of the body encodings per span, natively (V8 runs the wasm 1.5-3x slower):
/// `cargo test -p gateway-tracing-core --release -- --ignored --nocapture encoding_cost`.
#[test]
#[ignore = "a measurement, not a check"]
fn encoding_cost() {
    use crate::otlp::{kv_int, kv_str};
    let mut fields = Vec::new();
    for i in 0..512u64 {
        let span = Span {
            trace_id: (0..16).map(|b| (b as u64 * 31 + i * 7) as u8).collect(),
            span_id: (0..8).map(|b| (b as u64 * 17 + i * 13) as u8).collect(),
            parent_span_id: (0..8).map(|b| (b as u64 * 5 + i * 3) as u8).collect(),
            name: "AUTH_SERVICE POST /auth/login".into(),
            kind: crate::otlp::SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_234_567,
            end_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_234_567 + 2_345_678,
            attributes: vec![
                kv_str("http.request.method", "POST"),
                kv_str("url.full", format!("http://auth/auth/login?i={i}")),
                kv_str("url.template", "/auth/login"),
                kv_str("http.route", "/api/auth/login"),
                kv_str("server.address", "127.0.0.1"),
                kv_int("server.port", 18081),
                kv_int("http.response.status_code", 200),
                kv_str("service.peer.name", "AUTH_SERVICE"),
                kv_str("user_agent.original", "e2e-test/1"),
                kv_str("network.protocol.version", "1.1"),
            ],
            ..Default::default()
        };
        crate::otlp::encode_span_field(&span, &mut fields);
    }
    let config = crate::config::parse(
        br#"{"service_name":"gw","exporter":{"cluster":"otel"}}"#,
        &|_| None,
    )
    .unwrap();
    let framed =
        Framer::new(&crate::otlp::resource(&config)).frame(std::iter::once(fields.as_slice()));
    for (enc, comp) in [
        (Encoding::Protobuf, Compression::None),
        (Encoding::Protobuf, Compression::Gzip),
        (Encoding::Json, Compression::None),
        (Encoding::Json, Compression::Gzip),
    ] {
        let n = 50;
        let t = std::time::Instant::now();
        let mut size = 0;
        for _ in 0..n {
            size = encode_body(framed.clone(), enc, comp).len();
        }
        let per_span_ns = t.elapsed().as_nanos() / (n * 512);
        eprintln!(
            "{enc:?}/{comp:?}: {} bytes/span, {per_span_ns} ns/span",
            size / 512
        );
    }
}

#[test]
fn the_log_limiter_is_per_kind() {
    struct Row {
        at_s: u64,
        kind: &'static str,
        logged: bool,
        reason: &'static str,
    }
    let rows = [
        Row {
            at_s: 1,
            kind: "http 503",
            logged: true,
            reason: "first of its kind",
        },
        Row {
            at_s: 2,
            kind: "http 401",
            logged: true,
            reason: "another kind is not hidden by the 503",
        },
        Row {
            at_s: 3,
            kind: "http 401",
            logged: false,
            reason: "the same kind within 10 s",
        },
        Row {
            at_s: 4,
            kind: "partial_success",
            logged: true,
            reason: "a third kind",
        },
        Row {
            at_s: 12,
            kind: "http 401",
            logged: true,
            reason: "10 s later",
        },
        Row {
            at_s: 12,
            kind: "http 503",
            logged: true,
            reason: "503 too, 11 s after its last line",
        },
    ];
    let mut e = exporter("");
    for r in rows {
        assert_eq!(
            e.log_limited(r.at_s * S, r.kind, "x"),
            r.logged,
            "{}",
            r.reason
        );
    }
}
