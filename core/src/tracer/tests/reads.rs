//! What request start reads from the host: the whole header map only when the request is
//! recorded or its details are wanted; otherwise the trace context alone (`lean_start`), with
//! the same outcome as reading the map.

use super::*;

#[test]
fn read_budget_rows() {
    struct Row {
        fields: &'static str,
        incoming: Option<&'static str>,
        recorded: bool,
        /// Whole request-header maps, single joined headers, properties read at start.
        maps: usize,
        joined: usize,
        properties: usize,
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { fields: r#""sampler": "always_off""#, incoming: None, recorded: false, maps: 0, joined: 2, properties: 0, reason: "unrecorded: traceparent and tracestate only, no cluster" },
        Row { fields: r#""sampler": "always_off""#, incoming: Some(PARENT), recorded: false, maps: 0, joined: 2, properties: 0, reason: "a sampled parent does not matter to always_off" },
        Row { fields: r#""sampler": "parentbased_traceidratio", "sampler_ratio": 0.0"#, incoming: None, recorded: false, maps: 0, joined: 2, properties: 0, reason: "ratio 0 root" },
        Row { fields: r#""sampler": "parentbased_always_off""#, incoming: Some(PARENT), recorded: true, maps: 1, joined: 2, properties: 1, reason: "recorded after the lean read: the map and the cluster follow" },
        Row { fields: r#""sampler": "always_on""#, incoming: None, recorded: true, maps: 1, joined: 0, properties: 1, reason: "always_on records everything: the map first" },
        Row { fields: r#""sampler": "parentbased_always_on""#, incoming: Some(PARENT_UNSAMPLED), recorded: false, maps: 1, joined: 0, properties: 1, reason: "the default sampler records roots: the map first" },
        Row { fields: r#""sampler": "always_off", "sampler_keep_errors": true"#, incoming: None, recorded: false, maps: 1, joined: 0, properties: 1, reason: "a failure may still be kept: details are read" },
        Row { fields: r#""sampler": "always_off", "call_metrics": true"#, incoming: None, recorded: false, maps: 1, joined: 0, properties: 1, reason: "calls are counted by cluster" },
        Row { fields: r#""sampler": "always_off", "propagators": ["tracecontext", "b3"]"#, incoming: None, recorded: false, maps: 1, joined: 0, properties: 1, reason: "B3 headers are read and removed: the map" },
    ];
    for Row {
        fields,
        incoming,
        recorded,
        maps,
        joined,
        properties,
        reason,
    } in rows
    {
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        if let Some(tp) = incoming {
            host = host.header("traceparent", tp);
        }
        let cfg = with_fields(fields);
        let req = start(&cfg, &mut host, &MockStats::new());
        assert_eq!(req.recorded, recorded, "{reason}");
        assert_eq!(
            (
                host.map_reads.get(),
                host.joined_reads.get(),
                host.property_reads.get()
            ),
            (maps, joined, properties),
            "(maps, joined headers, properties): {reason}"
        );
        assert_eq!(
            host.single_header("traceparent").len(),
            55,
            "{reason}: a traceparent goes upstream either way"
        );
    }
}

/// The lean read and the map read see the same trace context: same parent, same recording
/// decision, same counters and the same headers written upstream, header case by case.
#[test]
fn lean_read_agrees_with_the_map() {
    struct Row {
        headers: &'static [(&'static str, &'static str)],
        reason: &'static str,
    }
    const TS_A: (&str, &str) = ("tracestate", "a=1");
    #[rustfmt::skip]
    let rows = [
        Row { headers: &[], reason: "no context: a new trace" },
        Row { headers: &[("traceparent", PARENT)], reason: "sampled parent" },
        Row { headers: &[("traceparent", PARENT_UNSAMPLED)], reason: "unsampled parent" },
        Row { headers: &[("traceparent", PARENT), TS_A], reason: "tracestate is kept" },
        Row { headers: &[("traceparent", PARENT), TS_A, ("tracestate", "b=2,c=3")], reason: "several tracestate headers are one list (§3.3.1.1)" },
        Row { headers: &[("traceparent", PARENT), ("tracestate", "a=1, b=2")], reason: "optional whitespace inside one tracestate" },
        Row { headers: &[("traceparent", PARENT), ("tracestate", "a=1,a=2")], reason: "a duplicated tracestate key" },
        Row { headers: &[("traceparent", PARENT), ("tracestate", "A=1")], reason: "an invalid tracestate is dropped, the parent kept" },
        Row { headers: &[("traceparent", PARENT), ("traceparent", PARENT)], reason: "a duplicated traceparent restarts the trace" },
        Row { headers: &[("traceparent", PARENT), ("traceparent", PARENT_UNSAMPLED)], reason: "two different traceparents restart the trace" },
        Row { headers: &[("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")], reason: "upper-case hex is invalid" },
        Row { headers: &[("traceparent", "garbage"), TS_A], reason: "an invalid traceparent drops its tracestate upstream" },
        Row { headers: &[TS_A], reason: "a tracestate without traceparent is removed upstream" },
        Row { headers: &[("traceparent", ""), TS_A], reason: "an empty traceparent" },
    ];
    // Same sampler; `call_metrics` only makes start read the map (see read_budget_rows).
    let lean = with_fields(r#""sampler": "parentbased_always_off""#);
    let map = with_fields(r#""sampler": "parentbased_always_off", "call_metrics": true"#);
    for Row { headers, reason } in rows {
        let outcome = |cfg: &Config| {
            let mut host = request("GET", "/api/products/p-1", Some("products"));
            for (k, v) in headers {
                host = host.header(k, v);
            }
            let stats = MockStats::new();
            let req = start(cfg, &mut host, &stats);
            (
                req.recorded,
                req.trace_id,
                req.parent_span_id,
                req.trace_state.clone(),
                [
                    Counter::TraceparentInvalid,
                    Counter::TracestateInvalid,
                    Counter::RequestsNotSampled,
                ]
                .map(|c| stats.get(c)),
                host.set_calls.clone(),
            )
        };
        let (lean, map) = (outcome(&lean), outcome(&map));
        assert_eq!(lean, map, "{reason}");
    }
}

/// Unrecorded, the lean start still writes what a recorded request would: the CLIENT span id
/// upstream, the trace ids for the access log, the response trace header.
#[test]
fn unrecorded_lean_start_still_announces_the_hop() {
    let cfg = with_fields(
        r#""sampler": "always_off", "access_log_ids": true, "response_trace_header": "traceresponse""#,
    );
    let mut host = request("GET", "/api/products/p-1", Some("products"));
    let req = start(&cfg, &mut host, &MockStats::new());
    assert!(!req.recorded);
    assert_eq!(host.map_reads.get(), 0);
    assert_eq!(
        host.single_header("traceparent"),
        format!("00-{NEW_TRACE}-{CLIENT_ID}-02")
    );
    assert!(host.filter_state.contains(&(
        super::super::start::FILTER_STATE_SPAN_ID.to_string(),
        SERVER_ID.to_string()
    )));
    let (name, value, _) = req.response_header.clone().expect("traceresponse decided");
    assert_eq!(
        (name, value.as_str()),
        (
            "traceresponse",
            format!("00-{NEW_TRACE}-{SERVER_ID}-02").as_str()
        )
    );
    assert!(!req.wants_completion(&cfg), "nothing is read at log");
}

/// A per-route ratio needs the route before sampling: the lean start reads `:path` alone.
#[test]
fn lean_start_reads_the_path_for_per_route_ratios() {
    let cfg = config(
        r#"{
  "sampler": "parentbased_traceidratio",
  "sampler_ratio": 0.0,
  "routes": [{"template": "/api/checkout", "sampler_ratio": 1.0}, {"template": "/api/products/:id"}],
  "exporter": {"cluster": "otel"}
}"#,
    );
    for (path, recorded) in [("/api/checkout?x=1", true), ("/api/products/p-1", false)] {
        let mut host = request("POST", path, Some("checkout"));
        let req = start(&cfg, &mut host, &MockStats::new());
        assert_eq!(req.recorded, recorded, "{path}");
        assert_eq!(host.map_reads.get(), usize::from(recorded), "{path}");
        if recorded {
            assert_eq!(req.route, Some(0), "{path}: route kept for the span");
        }
    }
}
