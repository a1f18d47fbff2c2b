//! Accounting under mixed faults, and the per-kind log limiter.

use super::*;

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
            e.log.warn(r.at_s * S, r.kind, "x"),
            r.logged,
            "{}",
            r.reason
        );
    }
}
