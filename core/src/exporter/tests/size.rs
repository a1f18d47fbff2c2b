//! Export bodies bounded in bytes (`exporter.max_export_bytes`), a 413 split down to one span,
//! and the small-interval flush.

use super::*;

/// One push of one span whose name is `len` bytes.
fn push_sized(e: &mut Exporter, len: usize, host: &MockExportHost, stats: &MockStats) {
    let span = Span {
        name: "x".repeat(len),
        span_id: vec![1; 8],
        trace_id: vec![1; 16],
        ..Default::default()
    };
    let mut out = Vec::new();
    crate::otlp::encode_span_field(&span, &mut out);
    e.push(&out, 1, host, stats);
}

#[test]
fn a_batch_is_cut_by_bytes_as_well_as_spans() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_export_bytes":8192,"max_export_batch_size":512"#);
    for _ in 0..20 {
        push_sized(&mut e, 1000, &host, &stats);
    }
    // The fast tick sends the full (by bytes) batches, the flush interval the rest.
    e.on_tick(&host, &stats, 0);
    e.on_tick(&host, &stats, S);
    let sent = host.sent.borrow();
    assert!(
        sent.len() >= 3,
        "20 KB in 8 KiB batches: {} requests",
        sent.len()
    );
    for (_, _, body) in sent.iter() {
        assert!(body.len() <= 8192 + 200, "body {} bytes", body.len());
    }
    let spans: usize = sent.iter().map(|(_, _, b)| span_count(b)).sum();
    assert_eq!(spans, 20, "every span in some request");
    drop(sent);
    // A single span bigger than the bound still goes, alone.
    push_sized(&mut e, 20_000, &host, &stats);
    e.on_tick(&host, &stats, 10 * S);
    let last = host.sent.borrow().last().map(|(_, _, b)| span_count(b));
    assert_eq!(last, Some(1));
}

/// Issue 17: 300 giant spans (~60 KiB paths) among 600 normal ones against a collector with a
/// body limit: before, whole batches were refused (413) and 1,024 of 1,200 normal spans lost.
/// Now a 413 splits the batch down to the single span that is too large: every normal span is
/// exported, only the giants that alone exceed the limit are dropped, as `too_large`.
#[test]
fn a_413_splits_the_batch_and_only_the_span_too_large_alone_is_dropped() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    // A large byte bound, so batches do reach the collector's limit.
    let mut e = exporter(r#","max_export_bytes":268435456"#);
    const LIMIT: usize = 100_000;
    for i in 0..900 {
        if i % 3 == 0 {
            // Two sizes of giant: fits alone, and does not.
            push_sized(
                &mut e,
                if i % 2 == 0 { 60_000 } else { 120_000 },
                &host,
                &stats,
            );
        } else {
            push_sized(&mut e, 200, &host, &stats);
        }
    }
    let mut now = 0;
    let mut answered = 0;
    e.on_tick(&host, &stats, now);
    while (e.held_spans() > 0 || answered < host.count()) && now < 600 * S {
        while answered < host.count() {
            let too_big = host.sent.borrow()[answered].2.len() > LIMIT;
            answered += 1;
            let resp = status(if too_big { 413 } else { 200 });
            e.on_response(answered as u32, &resp, &host, &stats, now);
        }
        now += 10 * MS;
        e.on_tick(&host, &stats, now);
    }
    assert_eq!(
        stats.get(Counter::SpansDroppedTooLarge),
        150,
        "only the 120 KB giants"
    );
    assert_eq!(
        stats.get(Counter::SpansExported),
        750,
        "600 normal + 150 giants that fit alone"
    );
    assert_eq!(stats.get(Counter::SpansDroppedExportFailed), 0);
    assert!(e.is_drained());
    stats.assert_accounted(&e);
}

#[test]
fn flush_interval_of_one_ms_sends_partial_batches() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","flush_interval_ms":1"#);
    push(&mut e, 3, &host, &stats);
    e.on_tick(&host, &stats, MS);
    assert_eq!(host.count(), 1, "a partial batch goes at the 1 ms tick");
    assert_eq!(span_count(&host.sent.borrow()[0].2), 3);
}

#[test]
fn room_again_is_noticed_by_the_tick_without_a_new_span() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","max_queue_bytes":65536"#);
    // Fill the queue until pushes are refused.
    while stats.get(Counter::SpansDroppedQueueFull) == 0 {
        push_sized(&mut e, 1000, &host, &stats);
    }
    assert!(e.queue.is_full());
    e.on_tick(&host, &stats, 0);
    let mut token = 1;
    while e.in_flight() > 0 {
        e.on_response(token, &status(200), &host, &stats, MS);
        token += 1;
    }
    assert!(e.queue.is_full(), "no push since: still marked full");
    e.on_tick(&host, &stats, 2 * MS);
    assert!(
        !e.queue.is_full(),
        "the tick closed the full spell (and logged it)"
    );
    stats.assert_accounted(&e);
}
