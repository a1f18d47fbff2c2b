//! What request start reads from the host: the whole header map only when the request is
//! recorded or its details are wanted; otherwise the trace context alone (`lean_start`), with
//! the same outcome as reading the map.

use super::*;

fn sampler_config(fields: &str) -> Config {
    config(&GATEWAY.replacen('{', &format!("{{{fields},"), 1))
}

#[test]
fn read_budget_rows() {
    struct Row {
        fields: &'static str,
        incoming: Option<&'static str>,
        /// The host can batch (Envoy with CEL).
        batches: bool,
        recorded: bool,
        /// Whole request-header maps, joined single headers, single values (properties,
        /// headers by name) and batches read at start.
        reads: (usize, usize, usize, usize),
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { fields: r#""sampler": "always_off""#, incoming: None, batches: true, recorded: false, reads: (0, 2, 0, 0), reason: "unrecorded: traceparent and tracestate only, no cluster" },
        Row { fields: r#""sampler": "always_off""#, incoming: Some(PARENT), batches: true, recorded: false, reads: (0, 2, 0, 0), reason: "a sampled parent does not matter to always_off" },
        Row { fields: r#""sampler": "parentbased_traceidratio", "sampler_ratio": 0.0"#, incoming: None, batches: true, recorded: false, reads: (0, 2, 0, 0), reason: "ratio 0 root" },
        Row { fields: r#""sampler": "parentbased_always_off""#, incoming: Some(PARENT), batches: true, recorded: true, reads: (0, 2, 0, 1), reason: "recorded after the lean read: the start batch follows" },
        Row { fields: r#""sampler": "parentbased_always_off""#, incoming: Some(PARENT), batches: false, recorded: true, reads: (1, 2, 1, 0), reason: "recorded after the lean read, no batches: the map and the cluster follow" },
        Row { fields: r#""sampler": "always_on""#, incoming: None, batches: true, recorded: true, reads: (0, 0, 0, 1), reason: "always_on records everything: the start batch first" },
        Row { fields: r#""sampler": "always_on""#, incoming: None, batches: false, recorded: true, reads: (1, 0, 1, 0), reason: "no batches: the map and the cluster" },
        Row { fields: r#""sampler": "parentbased_always_on""#, incoming: Some(PARENT_UNSAMPLED), batches: true, recorded: false, reads: (0, 0, 0, 1), reason: "the default sampler records roots: the batch first" },
        Row { fields: r#""sampler": "always_off", "sampler_keep_errors": true"#, incoming: None, batches: true, recorded: false, reads: (0, 0, 0, 1), reason: "a failure may still be kept: details are read" },
        Row { fields: r#""sampler": "always_off", "call_metrics": true"#, incoming: None, batches: true, recorded: false, reads: (0, 0, 0, 1), reason: "calls are counted by cluster" },
        Row { fields: r#""sampler": "always_off", "propagators": ["tracecontext", "b3"]"#, incoming: None, batches: true, recorded: false, reads: (0, 0, 0, 1), reason: "B3 headers are read and removed: the batch holds them" },
        Row { fields: r#""mode": "upstream_filter""#, incoming: None, batches: true, recorded: true, reads: (1, 0, 1, 0), reason: "an attempt reads the map" },
    ];
    for Row {
        fields,
        incoming,
        batches,
        recorded,
        reads,
        reason,
    } in rows
    {
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        if !batches {
            host = host.without_batches();
        }
        if let Some(tp) = incoming {
            host = host.header("traceparent", tp);
        }
        let cfg = sampler_config(fields);
        let req = start(&cfg, &mut host, &MockStats::new());
        assert_eq!(req.recorded, recorded, "{reason}");
        assert_eq!(
            (
                host.map_reads.get(),
                host.joined_reads.get(),
                host.property_reads.get(),
                host.batch_reads.get(),
            ),
            reads,
            "(maps, joined headers, single values, batches): {reason}"
        );
        assert_eq!(
            host.single_header("traceparent").len(),
            55,
            "{reason}: a traceparent goes upstream either way"
        );
    }
}

/// The start batch and the header map give the same request: same trace context, the same
/// recorded details and spans, the same counters and headers written upstream. A joined value
/// with a comma in a header recorded value by value sends start to the map.
#[test]
fn start_batch_agrees_with_the_map() {
    struct Row {
        fields: &'static str,
        headers: &'static [(&'static str, &'static str)],
        /// The batch was enough (no fallback to the map).
        batched: bool,
        reason: &'static str,
    }
    const DO: &str = r#"{"clusters": {"products": {"durable_object": {"name": "D", "id": {"header": "x-object"}}}}, "exporter": {"cluster": "otel"}}"#;
    #[rustfmt::skip]
    let rows = [
        Row { fields: r#""sampler": "always_on""#, headers: &[], batched: true, reason: "a plain request" },
        Row { fields: r#""sampler": "always_on""#, headers: &[("traceparent", PARENT), ("tracestate", "a=1"), ("tracestate", "b=2")], batched: true, reason: "a parent, tracestate in two headers" },
        Row { fields: r#""sampler": "always_on""#, headers: &[("traceparent", PARENT), ("traceparent", PARENT)], batched: true, reason: "a duplicated traceparent restarts the trace either way" },
        Row { fields: r#""sampler": "always_on""#, headers: &[("traceparent", ""), ("tracestate", "")], batched: true, reason: "present but empty" },
        Row { fields: r#""sampler": "always_on""#, headers: &[("tracestate", "a=1")], batched: true, reason: "an orphan tracestate is removed" },
        Row { fields: r#""sampler": "always_on""#, headers: &[("x-request-id", "r-1")], batched: true, reason: "an allow-listed header" },
        Row { fields: r#""sampler": "always_on""#, headers: &[("x-request-id", "r-1"), ("x-request-id", "r-2")], batched: false, reason: "an allow-listed header twice: the map keeps both values" },
        Row { fields: r#""sampler": "always_on", "request_headers": ["accept"]"#, headers: &[("accept", "a/b, c/d")], batched: false, reason: "an allow-listed value with a comma: the map tells" },
        Row { fields: r#""sampler": "always_on", "request_headers": ["Authorization"]"#, headers: &[("authorization", "Bearer x")], batched: true, reason: "a redacted header" },
        Row { fields: r#""sampler": "always_on", "propagators": ["b3multi", "tracecontext"]"#, headers: &[("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"), ("x-b3-spanid", "e457b5a2e4d86bd1"), ("x-b3-sampled", "1")], batched: true, reason: "B3 multi" },
        Row { fields: r#""sampler": "always_on", "propagators": ["b3"]"#, headers: &[("b3", "0"), ("x-b3-flags", "1")], batched: true, reason: "B3 sampling-only; stale multi headers removed" },
        Row { fields: DO, headers: &[("x-object", "cart-7")], batched: true, reason: "a Durable Object id header" },
        Row { fields: DO, headers: &[("x-object", "cart-7"), ("x-object", "cart-8")], batched: false, reason: "a Durable Object id header twice: the first one, from the map" },
        Row { fields: r#""trust": "untrusted""#, headers: &[("traceparent", PARENT)], batched: true, reason: "untrusted: a link" },
    ];
    for Row {
        fields,
        headers,
        batched,
        reason,
    } in rows
    {
        let cfg = if fields.starts_with('{') {
            config(fields)
        } else {
            sampler_config(fields)
        };
        let outcome = |batches: bool| {
            let mut host = request("POST", "/api/products/p-1?q=1", Some("products"));
            if !batches {
                host = host.without_batches();
            }
            for (k, v) in headers {
                host = host.header(k, v);
            }
            let stats = MockStats::new();
            let req = start(&cfg, &mut host, &stats);
            let spans = finish_spans(&cfg, &req, &answered(200));
            let counted = [
                Counter::TraceparentInvalid,
                Counter::TracestateInvalid,
                Counter::B3Invalid,
                Counter::RequestsNotSampled,
                Counter::IncomingContextLinked,
                Counter::DurableObjectIdMissing,
            ]
            .map(|c| stats.get(c));
            let reads = (host.map_reads.get(), host.batch_reads.get());
            (format!("{req:?}"), spans, counted, host.set_calls, reads)
        };
        let (with, without) = (outcome(true), outcome(false));
        assert_eq!(with.0, without.0, "{reason}: the request");
        assert_eq!(with.1, without.1, "{reason}: the spans");
        assert_eq!(with.2, without.2, "{reason}: the counters");
        assert_eq!(with.3, without.3, "{reason}: the headers written");
        assert_eq!(
            with.4,
            (usize::from(!batched), 1),
            "{reason}: (maps, batches) read"
        );
        assert_eq!(without.4, (1, 0), "{reason}");
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
    let lean = sampler_config(r#""sampler": "parentbased_always_off""#);
    let map = sampler_config(r#""sampler": "parentbased_always_off", "call_metrics": true"#);
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
    let cfg = sampler_config(
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
        assert_eq!(host.map_reads.get(), 0, "{path}");
        assert_eq!(
            host.batch_reads.get(),
            usize::from(recorded),
            "{path}: batch once recorded"
        );
        if recorded {
            assert_eq!(req.route, Some(0), "{path}: route kept for the span");
        }
    }
}
