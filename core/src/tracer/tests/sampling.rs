//! Samplers and what an unsampled request still propagates.

use super::*;

#[test]
fn sampling_rows() {
    struct Row {
        sampler: &'static str,
        /// The incoming `traceparent`, if any.
        incoming: Option<&'static str>,
        recorded: bool,
        /// The trace-flags of the `traceparent` sent upstream.
        flags: &'static str,
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { sampler: "parent_based_always_on", incoming: None, recorded: true, flags: "03", reason: "root is recorded; Level 2 §3.2.2.5.2 our trace id is random" },
        Row { sampler: "parent_based_always_on", incoming: Some(PARENT), recorded: true, flags: "01", reason: "sampled parent" },
        Row { sampler: "parent_based_always_on", incoming: Some(PARENT_UNSAMPLED), recorded: false, flags: "00", reason: "unsampled parent" },
        Row { sampler: "always_on", incoming: Some(PARENT_UNSAMPLED), recorded: true, flags: "01", reason: "always_on overrides the parent" },
        Row { sampler: "always_off", incoming: Some(PARENT), recorded: false, flags: "00", reason: "always_off overrides the parent" },
        Row { sampler: "always_off", incoming: None, recorded: false, flags: "02", reason: "always_off root: not sampled, random trace id" },
    ];
    for Row {
        sampler,
        incoming,
        recorded,
        flags,
        reason,
    } in rows
    {
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        if let Some(tp) = incoming {
            host = host.header("traceparent", tp);
        }
        let r = run(&with_sampler(sampler), host, &answered(200));
        let trace = if incoming.is_some() {
            PARENT_TRACE
        } else {
            NEW_TRACE
        };
        assert_eq!(r.req.recorded, recorded, "{reason}");
        assert_eq!(r.spans.len(), if recorded { 2 } else { 0 }, "{reason}");
        assert_eq!(
            r.stats.get(Counter::RequestsNotSampled),
            u64::from(!recorded),
            "{reason}"
        );
        assert_eq!(
            r.traceparent(),
            format!("00-{trace}-{CLIENT_ID}-{flags}"),
            "{reason}: context is propagated either way"
        );
    }
}

/// `traceidratio` decides by the trace id's 56 random bits, so every hop with the same ratio
/// agrees. NEW_TRACE's randomness is about 0.098 of the range, PARENT_TRACE's about 0.807:
/// a ratio p samples a trace when its randomness is at least 1 - p.
#[test]
fn ratio_sampling_rows() {
    struct Row {
        config: &'static str,
        path: &'static str,
        incoming: Option<&'static str>,
        recorded: bool,
        reason: &'static str,
    }
    const RATIO_50: &str = r#"{"sampler": "traceidratio", "sampler_ratio": 0.5,
        "routes": [{"template": "/api/products/:id", "sampler_ratio": 0.95}, {"template": "/api/cart/:id", "sampler_ratio": 0.0}],
        "exporter": {"cluster": "otel"}}"#;
    const PB_RATIO_50: &str = r#"{"sampler": "parentbased_traceidratio", "sampler_ratio": 0.5, "exporter": {"cluster": "otel"}}"#;
    #[rustfmt::skip]
    let rows = [
        Row { config: RATIO_50, path: "/other", incoming: None, recorded: false, reason: "new trace, randomness 0.098 < 1 - 0.5" },
        Row { config: RATIO_50, path: "/other", incoming: Some(PARENT_UNSAMPLED), recorded: true, reason: "traceidratio ignores the parent's flag: randomness 0.807 >= 0.5" },
        Row { config: RATIO_50, path: "/api/products/p-1", incoming: None, recorded: true, reason: "the route's 0.95 overrides: 0.098 >= 0.05" },
        Row { config: RATIO_50, path: "/api/cart/c-1", incoming: Some(PARENT), recorded: false, reason: "the route's 0 samples nothing" },
        Row { config: PB_RATIO_50, path: "/other", incoming: None, recorded: false, reason: "root: by ratio" },
        Row { config: PB_RATIO_50, path: "/other", incoming: Some(PARENT), recorded: true, reason: "follows a sampled parent" },
        Row { config: PB_RATIO_50, path: "/other", incoming: Some(PARENT_UNSAMPLED), recorded: false, reason: "follows an unsampled parent" },
    ];
    for r in rows {
        let mut host = request("GET", r.path, None);
        if let Some(tp) = r.incoming {
            host = host.header("traceparent", tp);
        }
        let run = run(&config(r.config), host, &answered(200));
        assert_eq!(run.req.recorded, r.recorded, "{}", r.reason);
        assert_eq!(run.spans.is_empty(), !r.recorded, "{}", r.reason);
    }
}

/// Two hops with the same ratio agree on a trace: the second sees the first's decision in
/// the sampled flag and, under `traceidratio`, computes the same one from the same id.
#[test]
fn ratio_decision_agrees_across_hops() {
    let cfg = config(
        r#"{"sampler": "traceidratio", "sampler_ratio": 0.5, "exporter": {"cluster": "otel"}}"#,
    );
    for incoming in [PARENT, PARENT_UNSAMPLED] {
        let first = run(
            &cfg,
            request("GET", "/", Some("products")).header("traceparent", incoming),
            &answered(200),
        );
        let second = run(
            &cfg,
            request("GET", "/", Some("products")).header("traceparent", &first.traceparent()),
            &answered(200),
        );
        assert_eq!(first.req.recorded, second.req.recorded, "from {incoming}");
        assert!(first
            .traceparent()
            .ends_with(if first.req.recorded { "-01" } else { "-00" }));
    }
}

#[test]
fn keep_errors_records_failed_requests_the_ratio_dropped() {
    struct Row {
        done: Completion,
        /// The response status the filter sees at response headers (none: no response).
        status: Option<u16>,
        kept: bool,
        reason: &'static str,
    }
    let cfg = config(
        r#"{"sampler": "always_off", "sampler_keep_errors": true, "response_trace_header": "traceresponse", "exporter": {"cluster": "otel"}}"#,
    );
    let client_reset = Completion {
        flags: crate::status::flag::DOWNSTREAM_REMOTE_RESET,
        ..local_reply(0, "")
    };
    let client_closed = Completion {
        flags: crate::status::flag::DOWNSTREAM_CONNECTION_TERMINATION
            | crate::status::flag::UPSTREAM_REMOTE_RESET,
        ..local_reply(0, "")
    };
    #[rustfmt::skip]
    let rows = [
        Row { done: answered(200), status: Some(200), kept: false, reason: "success stays unrecorded" },
        Row { done: answered(404), status: Some(404), kept: false, reason: "a 4xx is the client's error, not kept" },
        Row { done: answered(503), status: Some(503), kept: true, reason: "an upstream 5xx is kept" },
        Row { done: connection_failure(), status: Some(503), kept: true, reason: "a connection failure is kept" },
        Row { done: local_reply(0, ""), status: None, kept: true, reason: "no response at all is kept" },
        Row { done: client_reset, status: None, kept: false, reason: "a client that reset its stream is not an error of ours" },
        Row { done: client_closed, status: None, kept: false, reason: "a client that closed its connection: the upstream reset is its doing" },
    ];
    for r in rows {
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        let stats = MockStats::new();
        let req = start(&cfg, &mut host, &stats);
        assert!(!req.recorded, "{}", r.reason);
        assert!(
            req.wants_completion(&cfg),
            "the log phase still reads the completion"
        );
        let header = req.response_header_for(&cfg, r.status).map(|(_, v, _)| v);
        let mut out = Vec::new();
        let n = finish(&cfg, &req, &r.done, &stats, &mut out);
        assert_eq!(n > 0, r.kept, "{}", r.reason);
        assert_eq!(
            stats.get(Counter::RequestsKeptForError),
            u64::from(r.kept),
            "{}",
            r.reason
        );
        assert_eq!(
            stats.get(Counter::RequestsNotSampled),
            u64::from(!r.kept),
            "{}: a request is counted once, kept or not sampled",
            r.reason
        );
        assert!(
            host.single_header("traceparent").ends_with("-02"),
            "{}: propagated unsampled (a new, random trace id: -02)",
            r.reason
        );
        if r.status.is_some() {
            let want = if r.kept { "-03" } else { "-02" };
            assert!(
                header.as_deref().is_some_and(|h| h.ends_with(want)),
                "{}: traceresponse {header:?} carries the kept decision ({want})",
                r.reason
            );
        }
    }
    let off = with_sampler("always_off");
    let stats = MockStats::new();
    let req = start(&off, &mut request("GET", "/", None), &stats);
    assert!(
        !req.wants_completion(&off),
        "without keep_errors an unsampled request skips the log-phase reads"
    );
    assert_eq!(
        stats.get(Counter::RequestsNotSampled),
        1,
        "without keep_errors: counted at start"
    );
}
