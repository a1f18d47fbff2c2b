//! Stopping: drain and abandon.

use super::*;

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
