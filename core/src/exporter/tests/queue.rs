//! The queue: batching, ticks, the byte budget and its hysteresis.

use super::*;

/// A host that wakes the exporter itself for a full batch (the native worker's scheduler
/// commit) is asked once per batch, gets no fast tick period, and the tick it runs is a fast
/// one: the full batch goes, the leftover waits for the flush interval.
#[test]
fn a_host_that_wakes_the_exporter_itself_is_asked_once_and_gets_a_fast_tick() {
    let host = MockExportHost::default();
    host.wakes_itself.set(true);
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_batch_size":2"#);
    push(&mut e, 3, &host, &stats);
    assert_eq!(host.wakes.get(), 1, "one wake while the batch waits");
    assert!(
        host.ticks.borrow().is_empty(),
        "no fast tick period asked for"
    );
    e.on_tick(&host, &stats, 0);
    assert_eq!(host.count(), 1, "the woken tick sends the full batch only");
    push(&mut e, 1, &host, &stats);
    assert_eq!(host.wakes.get(), 2, "the next full batch wakes again");
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
    assert!(!failing(&e), "a 400 is not the collector failing");
    e.on_tick(&host, &stats, 20 * S);
    assert_eq!(host.count(), 2, "no retry after 400");
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
    assert!(!e.queue.is_full(), "below half: the full state ends");
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
    assert!(e.queue.is_full());
    // Answers free one span's room at a time; pushes refill it: still the same full state.
    e.on_tick(&host, &stats, 0);
    for token in 1..=3 {
        e.on_response(token, &status(200), &host, &stats, 0);
        push(&mut e, 1, &host, &stats);
        assert!(e.queue.is_full(), "no 'room again' at {token}");
    }
    stats.assert_accounted(&e);
}
