//! Backing off while the collector fails: intervals, jitter, `Retry-After`, `max_elapsed`.

use super::*;

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
            want: None,
            reason: "a date in the past is no hint (the collector's clock may be behind ours)",
        },
        Row {
            value: "Thu, 01 Jan 2026 00:00:00 GMT",
            want: None,
            reason: "a date equal to now is no hint either",
        },
        Row {
            value: "0",
            want: Some(Duration::ZERO),
            reason: "delay-seconds 0 parses (the backoff floor applies later)",
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
        assert_eq!(
            parse_retry_after(r.value.as_bytes(), now),
            r.want,
            "{}",
            r.reason
        );
    }
    // obs-text (RFC 9110 §5.5) is legal in a field value: bytes that are not UTF-8 are no hint.
    assert_eq!(parse_retry_after(b"\xff", now), None, "not UTF-8: ignored");
    assert_eq!(
        parse_retry_after(b"1\x80", now),
        None,
        "trailing obs-text: ignored"
    );
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
    assert!(failing(&e));
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
    assert!(!failing(&e));
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
fn retry_after_is_honoured_in_seconds_and_dates_above_the_backoff_floor() {
    struct Row {
        retry_after: &'static str,
        /// The wait, in ms: at least, at most.
        want_ms: (u64, u64),
        reason: &'static str,
    }
    let rows = [
        Row {
            retry_after: "3",
            want_ms: (3000, 3000),
            reason: "seconds, longer than the 1 s backoff: honoured",
        },
        Row {
            retry_after: "0",
            want_ms: (1000, 1200),
            reason: "zero: the backoff (1 s + jitter), never below initial_backoff",
        },
        Row {
            retry_after: "Thu, 01 Jan 2026 00:00:02 GMT",
            want_ms: (2000, 2000),
            reason: "HTTP-date",
        },
        Row {
            retry_after: "Wed, 31 Dec 2025 23:00:00 GMT",
            want_ms: (1000, 1200),
            reason: "HTTP-date in the past: no hint, the backoff",
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
        let waited = (now - t0) / MS;
        assert!(
            (r.want_ms.0..=r.want_ms.1 + 10).contains(&waited),
            "{}: waited {waited} ms",
            r.reason
        );
    }
}

/// Issue 17: a 429 with `Retry-After: 0` for 10 s drew 9,351 POSTs from one worker. Now the
/// backoff floor and its growth apply: a handful.
#[test]
fn retry_after_zero_for_ten_seconds_is_no_tight_loop() {
    for value in ["0", "Wed, 31 Dec 2025 23:00:00 GMT"] {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter("");
        push(&mut e, 1, &host, &stats);
        let t0 = 1_767_225_600 * S;
        let mut now = t0;
        e.on_tick(&host, &stats, now);
        let mut answered = 0;
        while now < t0 + 10 * S {
            // Every request is answered 429 + Retry-After at once; ticks every 1 ms.
            while answered < host.count() {
                answered += 1;
                let resp = ExportResponse {
                    status: Some(429),
                    retry_after: Some(value.as_bytes()),
                    body: b"",
                };
                e.on_response(answered as u32, &resp, &host, &stats, now);
            }
            now += MS;
            e.on_tick(&host, &stats, now);
        }
        // 1 s, 1.5 s, 2.25 s, 3.4 s (± 20%) after the first: at most 5 requests in 10 s.
        assert!(
            (4..=6).contains(&host.count()),
            "Retry-After {value}: {} POSTs in 10 s",
            host.count()
        );
        stats.assert_accounted(&e);
    }
}

/// A wall clock stepped back (NTP, an operator) must not stop the probes for as long as the
/// step: the deadline keeps its remaining wait.
#[test]
fn a_wall_clock_stepped_back_does_not_stall_the_backoff() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(r#","retry":{"initial_backoff_ms":1000,"max_backoff_ms":1000}"#);
    push(&mut e, 1, &host, &stats);
    let t0 = 1_767_225_600 * S;
    e.on_tick(&host, &stats, t0);
    e.on_response(1, &status(503), &host, &stats, t0);
    // 500 ms later the wall clock steps back one hour.
    let back = t0 + 500 * MS - 3_600 * S;
    e.on_tick(&host, &stats, back);
    assert_eq!(host.count(), 1, "not yet");
    let mut now = back;
    while host.count() == 1 {
        now += 10 * MS;
        e.on_tick(&host, &stats, now);
        assert!(now - back < 5 * S, "stalled by the clock step");
    }
    // The 500 ms between the last reading before the step and the first after it cannot be
    // told from the step itself: at most that much is added to the wait.
    let waited = (now - back) / MS + 500;
    assert!(
        (1000..=1220 + 500).contains(&waited),
        "the probe went after its backoff, {waited} ms in all"
    );
    // The clock itself: never backwards, and moving on with the wall clock after a step.
    let mut c = Clock::default();
    assert_eq!(c.now(100), 100);
    assert_eq!(c.now(40), 100, "a step back: time stands still");
    assert_eq!(c.now(50), 110, "then moves with the wall clock");
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
