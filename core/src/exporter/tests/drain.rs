//! Stopping: drain and abandon.

use super::*;

#[test]
fn drain_sends_everything_at_once_and_retries_what_fails() {
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
    assert_eq!(
        host.count(),
        MAX_IN_FLIGHT + 1,
        "the 503'd batch waits for its backoff"
    );
    assert_eq!(stats.get(Counter::SpansDroppedShutdown), 0, "not dropped");
    // The others are answered 200: the collector is back, the retry goes at once.
    for token in 3..=(MAX_IN_FLIGHT as u32 + 1) {
        e.on_response(token, &status(200), &host, &stats, 0);
    }
    assert_eq!(host.count(), MAX_IN_FLIGHT + 2, "the failed batch retried");
    assert!(!e.is_drained());
    e.on_response(MAX_IN_FLIGHT as u32 + 2, &status(200), &host, &stats, 0);
    assert!(e.is_drained());
    assert_eq!(stats.get(Counter::SpansExported), MAX_IN_FLIGHT as u64 + 1);
    assert_eq!(
        stats.get(Counter::SpansDroppedShutdown),
        0,
        "an update loses nothing"
    );
    stats.assert_accounted(&e);
}

/// A collector that stays down: the drain backs off as a whole (not a loop), and after
/// `DRAIN_TIMEOUT` what is left is counted as a shutdown drop and the exporter is drained.
#[test]
fn a_drain_gives_up_after_the_drain_timeout() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_batch_size":1"#);
    push(&mut e, 6, &host, &stats);
    assert!(!e.drain(&host, &stats, 0));
    let mut now = 0;
    let mut answered = 0;
    while !e.is_drained() {
        while answered < host.count() {
            answered += 1;
            e.on_response(answered as u32, &status(503), &host, &stats, now);
        }
        now += 100 * MS;
        e.on_tick(&host, &stats, now);
        assert!(
            now <= DRAIN_TIMEOUT.as_nanos() as u64 + 5 * S,
            "never gave up"
        );
    }
    assert!(
        now >= DRAIN_TIMEOUT.as_nanos() as u64,
        "kept trying until the timeout"
    );
    assert!(
        host.count() < 6 + 20,
        "backed off while stopping: {} requests",
        host.count()
    );
    assert_eq!(stats.get(Counter::SpansDroppedShutdown), 6);
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
    assert!(failing(&e));
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

/// A drain whose dispatches are refused (the host answers an error) must not send the same
/// batch again and again within one call: the retry waits for its backoff.
#[test]
fn a_drain_with_refused_dispatches_ends() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_batch_size":1"#);
    push(&mut e, 3, &host, &stats);
    host.fail_dispatch.set(Some(HostErrorKind::Internal));
    assert!(!e.drain(&host, &stats, 0), "held, waiting for the backoff");
    assert_eq!(
        stats.get(Counter::ExportRequestsFailed),
        1,
        "one refusal, then backoff"
    );
    host.fail_dispatch.set(None);
    let mut now = 0;
    let mut token = 0;
    while !e.is_drained() {
        now += 100 * MS;
        e.on_tick(&host, &stats, now);
        while (token as usize) < host.count() {
            token += 1;
            e.on_response(token, &status(200), &host, &stats, now);
        }
        assert!(now < 10 * S);
    }
    assert_eq!(stats.get(Counter::SpansExported), 3);
    stats.assert_accounted(&e);
}
