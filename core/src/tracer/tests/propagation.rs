//! Parents in, `traceparent`/`tracestate` out, and how SERVER and CLIENT link.

use super::*;
use crate::host::Host;

#[test]
fn client_span_ends_when_the_response_completed_server_span_at_log() {
    let cfg = config(GATEWAY);
    let mut host = request("GET", "/api/products/p-1", Some("products"));
    let stats = MockStats::new();
    let mut req = start(&cfg, &mut host, &stats);
    let upstream_done = START + 40;
    req.response_complete(upstream_done);
    req.response_complete(upstream_done + 5); // a later signal does not move it
    let spans = finish_spans(&cfg, &req, &answered(200));
    let server = one_of_kind(&spans, SpanKind::Server).unwrap();
    let client = one_of_kind(&spans, SpanKind::Client).unwrap();
    assert_eq!(
        client.end_time_unix_nano, upstream_done,
        "CLIENT ends with the upstream response"
    );
    assert_eq!(server.end_time_unix_nano, END, "SERVER ends at log");
    let complete = client
        .events
        .iter()
        .find(|e| e.name == sc::EVENT_CALL_COMPLETE)
        .unwrap();
    assert_eq!(complete.time_unix_nano, upstream_done);

    // A completion signal after log time cannot push the CLIENT span past its parent.
    let mut host = request("GET", "/api/products/p-1", Some("products"));
    let mut req = start(&cfg, &mut host, &stats);
    req.response_complete(END + 1_000);
    let spans = finish_spans(&cfg, &req, &answered(200));
    assert_eq!(
        one_of_kind(&spans, SpanKind::Client)
            .unwrap()
            .end_time_unix_nano,
        END
    );
}

#[test]
fn gateway_without_parent_starts_a_trace_with_linked_server_and_client() {
    let r = run(
        &config(GATEWAY),
        request("POST", "/api/cart/c-42/add", Some("cart")),
        &answered(200),
    );
    assert_eq!(
        r.kinds(),
        vec![SpanKind::Server as i32, SpanKind::Client as i32]
    );
    let (server, client) = (r.server_span(), r.client_span());

    assert_eq!(
        hex(&server.trace_id),
        NEW_TRACE,
        "new trace from host randomness"
    );
    assert_eq!(client.trace_id, server.trace_id, "one trace");
    assert_eq!(hex(&server.span_id), SERVER_ID);
    assert_eq!(hex(&client.span_id), CLIENT_ID);
    assert!(server.parent_span_id.is_empty(), "SERVER is the root");
    assert_eq!(
        client.parent_span_id, server.span_id,
        "CLIENT is a child of SERVER"
    );
    assert_eq!(
        server.flags, 0x103,
        "root: parent known to be not remote; sampled, random trace id"
    );
    assert_eq!(client.flags, 0x103, "CLIENT's parent is local");
    assert_eq!(server.trace_state, "");

    assert_eq!(server.name, "POST /api/cart/:cartId/add");
    assert_eq!(client.name, "CART_SERVICE POST /cart/:cartId/add");
    assert_eq!(attr_str(server, sc::HTTP_ROUTE), "/api/cart/:cartId/add");
    assert_eq!(attr_str(server, sc::URL_PATH), "/api/cart/c-42/add");
    assert_eq!(
        attr_str(server, sc::LEGACY_HTTP_URL),
        "https://shop.example/api/cart/c-42/add"
    );
    assert_eq!(attr_str(server, sc::SPAN_KIND), sc::SPAN_KIND_SERVER);
    assert_eq!(attr_str(server, sc::USER_AGENT_ORIGINAL), "curl/8.5");
    assert_eq!(attr_str(client, sc::SPAN_KIND), sc::SPAN_KIND_CLIENT);
    assert_eq!(attr_str(client, sc::URL_TEMPLATE), "/cart/:cartId/add");
    assert_eq!(attr_str(client, sc::SERVICE_NAME), "CART_SERVICE");
    assert_eq!(attr_str(client, sc::SERVICE_PEER_NAME), "CART_SERVICE");
    assert_eq!(attr_str(client, sc::ENVOY_CLUSTER), "cart");
    assert_eq!(
        attr_str(client, sc::URL_FULL),
        "http://10.0.0.7:8080/api/cart/c-42/add",
        "the upstream's scheme and address, not the gateway's https://shop.example"
    );
    assert_eq!(attr_str(client, sc::SERVER_ADDRESS), "10.0.0.7");

    for s in [server, client] {
        assert_eq!(s.start_time_unix_nano, START, "{}", s.name);
        assert_eq!(s.end_time_unix_nano, END, "{}", s.name);
    }

    assert_eq!(
        r.traceparent(),
        format!("00-{NEW_TRACE}-{CLIENT_ID}-03"),
        "upstream continues the CLIENT span"
    );
    assert!(r.host.header_values("tracestate").is_empty());
    assert_eq!(r.stats.total(), 0, "nothing to count: {:?}", r.stats);
    assert!(r.req.recorded);
}

#[test]
fn two_incoming_traceparents_leave_exactly_one_upstream() {
    let host = request("POST", "/api/cart/c-42/add", Some("cart"))
        .header("traceparent", PARENT)
        .header("traceparent", PARENT);
    let r = run(&config(GATEWAY), host, &answered(200));
    assert_eq!(
        r.host.header_values("traceparent"),
        vec![format!("00-{NEW_TRACE}-{CLIENT_ID}-03")],
        "duplicates replaced by our one value"
    );
    assert_eq!(r.stats.get(Counter::TraceparentInvalid), 1);
    assert_eq!(hex(&r.server_span().trace_id), NEW_TRACE);
}

#[test]
fn upper_case_traceparent_header_name_is_replaced_too() {
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("Traceparent", PARENT)
        .header("TraceState", "vendor=x");
    let r = run(&config(GATEWAY), host, &answered(200));
    assert_eq!(
        r.traceparent(),
        format!("00-{PARENT_TRACE}-{CLIENT_ID}-01"),
        "header names are case-insensitive"
    );
    assert_eq!(r.host.single_header("tracestate"), "vendor=x");
}

#[test]
fn valid_parent_and_tracestate_are_continued() {
    let host = request("POST", "/api/cart/c-42/add", Some("cart"))
        .header("traceparent", PARENT)
        .header("tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7");
    let r = run(&config(GATEWAY), host, &answered(200));
    let (server, client) = (r.server_span(), r.client_span());
    let want_state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

    assert_eq!(hex(&server.trace_id), PARENT_TRACE, "trace id kept");
    assert_eq!(hex(&client.trace_id), PARENT_TRACE);
    assert_eq!(
        hex(&server.parent_span_id),
        PARENT_SPAN,
        "SERVER is the remote parent's child"
    );
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(server.flags, 0x301, "remote parent");
    assert_eq!(client.flags, 0x101, "local parent");
    assert_eq!(server.trace_state, want_state);
    assert_eq!(client.trace_state, want_state);

    assert_eq!(r.traceparent(), format!("00-{PARENT_TRACE}-{CLIENT_ID}-01"));
    assert_eq!(r.host.single_header("tracestate"), want_state);
    assert_eq!(r.stats.total(), 0);
}

#[test]
fn invalid_traceparent_rows() {
    for (traceparent, reason) in [
        (
            vec!["00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"],
            "upper case",
        ),
        (
            vec!["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
            "all-zero trace id",
        ),
        (
            vec!["00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
            "all-zero parent id",
        ),
        (
            vec!["ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
            "version ff",
        ),
        (vec![PARENT, PARENT], "duplicated header"),
        (vec!["garbage"], "garbage"),
        (vec![""], "empty value"),
    ] {
        let mut host = request("GET", "/api/products/p-1", Some("products"))
            .header("tracestate", "congo=t61rcWkgMzE");
        for tp in &traceparent {
            host = host.header("traceparent", tp);
        }
        let r = run(&config(GATEWAY), host, &answered(200));
        let server = r.server_span();
        assert_eq!(hex(&server.trace_id), NEW_TRACE, "{reason}: new trace");
        assert!(server.parent_span_id.is_empty(), "{reason}: no parent");
        assert_eq!(server.flags, 0x103, "{reason}: not a remote child");
        assert_eq!(server.trace_state, "", "{reason}: tracestate dropped");
        assert_eq!(
            r.traceparent(),
            format!("00-{NEW_TRACE}-{CLIENT_ID}-03"),
            "{reason}"
        );
        assert!(
            r.host.header_values("tracestate").is_empty(),
            "{reason}: incoming tracestate must not reach the upstream: {:?}",
            r.host.headers()
        );
        assert_eq!(r.stats.get(Counter::TraceparentInvalid), 1, "{reason}");
        assert_eq!(r.stats.get(Counter::RequestsNotSampled), 0, "{reason}");
    }
}

#[test]
fn invalid_tracestate_is_dropped_and_counted_but_parent_kept() {
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("traceparent", PARENT)
        .header("tracestate", "a=1,A=2");
    let r = run(&config(GATEWAY), host, &answered(200));
    assert_eq!(hex(&r.server_span().trace_id), PARENT_TRACE);
    assert_eq!(r.server_span().trace_state, "");
    assert!(r.host.header_values("tracestate").is_empty());
    assert_eq!(r.stats.get(Counter::TracestateInvalid), 1);
    assert_eq!(r.stats.get(Counter::TraceparentInvalid), 0);
}

#[test]
fn tracestate_without_traceparent_is_not_forwarded() {
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("tracestate", "congo=t61rcWkgMzE");
    let r = run(&config(GATEWAY), host, &answered(200));
    assert_eq!(hex(&r.server_span().trace_id), NEW_TRACE);
    assert_eq!(r.server_span().trace_state, "");
    assert!(r.host.header_values("tracestate").is_empty());
    assert_eq!(r.stats.total(), 0, "a missing traceparent is not invalid");
}

#[test]
fn inject_failure_is_counted_and_the_request_still_traced() {
    let host = request("GET", "/api/products/p-1", Some("products")).failing_set_header();
    let r = run(&config(GATEWAY), host, &answered(200));
    assert_eq!(r.stats.get(Counter::InjectFailed), 1);
    assert_eq!(r.spans.len(), 2);
    assert!(!r.host.set_calls.is_empty(), "injection was attempted");
}

// --- W3C Level 2, B3, trust, response header (issue 9) ------------------------------------

#[test]
fn random_trace_id_flag_is_kept_from_the_parent() {
    struct Row {
        incoming: &'static str,
        sent: &'static str,
        reason: &'static str,
    }
    for row in [
        Row {
            incoming: "03",
            sent: "03",
            reason: "Level 2 §3.2.2.5.2: -03 in, trace id kept: -03 out (MUST)",
        },
        Row {
            incoming: "02",
            sent: "02",
            reason: "Level 2 §3.2.2.5.2: -02 in (not sampled): -02 out",
        },
        Row {
            incoming: "01",
            sent: "01",
            reason: "Level 2 §3.2.2.5.2: no random flag in, none claimed",
        },
    ] {
        let tp = format!("00-{PARENT_TRACE}-{PARENT_SPAN}-{}", row.incoming);
        let host = request("GET", "/api/products/p-1", Some("products")).header("traceparent", &tp);
        let r = run(&config(GATEWAY), host, &answered(200));
        assert_eq!(
            r.traceparent(),
            format!("00-{PARENT_TRACE}-{CLIENT_ID}-{}", row.sent),
            "{}",
            row.reason
        );
    }
}

#[test]
fn duplicate_tracestate_keys_keep_the_first_and_the_rest_of_the_list() {
    // Level 2 §3.3.1.1: duplicates may be discarded; keys we did not create SHOULD NOT be.
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("traceparent", PARENT)
        .header("tracestate", "foo=1,bar=2")
        .header("tracestate", "foo=3");
    let r = run(&config(GATEWAY), host, &answered(200));
    assert_eq!(r.host.single_header("tracestate"), "foo=1,bar=2");
    assert_eq!(r.server_span().trace_state, "foo=1,bar=2");
    assert_eq!(
        r.stats.get(Counter::TracestateInvalid),
        0,
        "the header was valid"
    );
}

#[test]
fn b3_parent_is_continued_and_b3_goes_upstream_with_our_span() {
    let b3_trace = "80f198ee56343ba864fe8b2a57d3eff7";
    for (propagators, headers, reason) in [
        (
            r#""propagators": ["tracecontext", "b3"]"#,
            vec![("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
            "b3 single",
        ),
        (
            r#""propagators": ["tracecontext", "b3multi"]"#,
            vec![
                ("x-b3-traceid", b3_trace),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", "1"),
            ],
            "b3 multi",
        ),
    ] {
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        for (k, v) in &headers {
            host = host.header(k, v);
        }
        let r = run(&with_fields(propagators), host, &answered(200));
        let server = r.server_span();
        assert_eq!(
            hex(&server.trace_id),
            b3_trace,
            "{reason}: B3 trace continued"
        );
        assert_eq!(hex(&server.parent_span_id), "e457b5a2e4d86bd1", "{reason}");
        assert_eq!(
            r.traceparent(),
            format!("00-{b3_trace}-{CLIENT_ID}-01"),
            "{reason}: W3C too, no random flag from B3"
        );
        if reason == "b3 single" {
            assert_eq!(
                r.host.single_header("b3"),
                format!("{b3_trace}-{CLIENT_ID}-1"),
                "{reason}"
            );
        } else {
            assert_eq!(r.host.single_header("x-b3-spanid"), CLIENT_ID, "{reason}");
            assert_eq!(r.host.single_header("x-b3-traceid"), b3_trace, "{reason}");
            assert_eq!(r.host.single_header("x-b3-sampled"), "1", "{reason}");
        }
    }
}

#[test]
fn default_propagators_ignore_b3_as_before() {
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1");
    let r = run(&config(GATEWAY), host, &answered(200));
    assert_eq!(hex(&r.server_span().trace_id), NEW_TRACE);
    assert_eq!(
        r.host.single_header("b3"),
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        "untouched when b3 is not configured"
    );
}

#[test]
fn baggage_passes_a_trusted_hop_and_is_dropped_at_an_untrusted_edge_by_default() {
    let both = vec!["userId=alice,serverNode=DF%2028;p=1", "isProduction=false"];
    for (fields, want, reason) in [
        (
            "",
            both.clone(),
            "trusted: W3C Baggage is not ours to change",
        ),
        (
            r#", "trust": "untrusted""#,
            vec![],
            "untrusted: a client writes no baggage into services behind the edge",
        ),
        (
            r#", "trust": "untrusted", "untrusted_baggage": "keep""#,
            both.clone(),
            "untrusted_baggage: keep passes it on untouched",
        ),
    ] {
        let host = request("GET", "/api/products/p-1", Some("products"))
            .header("traceparent", PARENT)
            .header("baggage", "userId=alice,serverNode=DF%2028;p=1")
            .header("baggage", "isProduction=false");
        let r = run(
            &with_fields(&format!(r#""propagators": ["tracecontext", "b3"]{fields}"#)),
            host,
            &answered(200),
        );
        assert_eq!(r.host.header_values("baggage"), want, "{reason}");
        assert!(
            r.host
                .set_calls
                .iter()
                .all(|(k, v)| k != "baggage" || v.is_none()),
            "{reason}: never rewritten"
        );
    }
}

#[test]
fn untrusted_edge_links_the_incoming_context_and_starts_a_new_trace() {
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("traceparent", PARENT_UNSAMPLED)
        .header("tracestate", "congo=t61rcWkgMzE");
    let r = run(
        &with_fields(r#""trust": "untrusted""#),
        host,
        &answered(200),
    );
    let (server, client) = (r.server_span(), r.client_span());
    assert!(
        r.req.recorded,
        "the incoming -00 does not suppress recording"
    );
    assert_eq!(hex(&server.trace_id), NEW_TRACE, "a new trace");
    assert!(server.parent_span_id.is_empty());
    assert_eq!(
        server.trace_state, "",
        "the caller's tracestate belongs to its trace"
    );
    assert_eq!(server.links.len(), 1);
    let link = &server.links[0];
    assert_eq!(hex(&link.trace_id), PARENT_TRACE);
    assert_eq!(hex(&link.span_id), PARENT_SPAN);
    assert_eq!(link.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(link.flags, 0x300, "remote link, flags as received");
    assert!(client.links.is_empty(), "linked once, from the SERVER span");
    assert_eq!(r.traceparent(), format!("00-{NEW_TRACE}-{CLIENT_ID}-03"));
    assert!(r.host.header_values("tracestate").is_empty());
    assert_eq!(r.stats.get(Counter::IncomingContextLinked), 1);

    // A forced -01 at the edge does not force recording when the sampler says no.
    let host = request("GET", "/api/products/p-1", Some("products")).header("traceparent", PARENT);
    let r = run(
        &with_fields(r#""trust": "untrusted", "sampler": "always_off""#),
        host,
        &answered(200),
    );
    assert!(!r.req.recorded);
    assert_eq!(r.traceparent(), format!("00-{NEW_TRACE}-{CLIENT_ID}-02"));
}

#[test]
fn untrusted_edge_takes_the_scheme_from_the_connection() {
    // Envoy derives :scheme from a client's x-forwarded-proto unless configured otherwise.
    let host =
        request("GET", "/api/products/p-1", Some("products")).header("x-forwarded-proto", "https");
    let r = run(
        &with_fields(r#""trust": "untrusted""#),
        host,
        &answered(200),
    );
    let server = r.server_span();
    assert_eq!(
        attr_str(server, sc::URL_SCHEME),
        "http",
        "plaintext connection"
    );
    assert_eq!(attr(server, sc::SERVER_PORT), Some(Val::Int(80)));

    let host = request("GET", "/api/products/p-1", Some("products"))
        .property(&["connection", "tls_version"], b"TLSv1.3");
    let r = run(
        &with_fields(r#""trust": "untrusted""#),
        host,
        &answered(200),
    );
    assert_eq!(
        attr_str(r.server_span(), sc::URL_SCHEME),
        "https",
        "TLS connection"
    );

    let r = run(
        &config(GATEWAY),
        request("GET", "/api/products/p-1", Some("products")),
        &answered(200),
    );
    assert_eq!(
        attr_str(r.server_span(), sc::URL_SCHEME),
        "https",
        "trusted: :scheme as before"
    );
}

#[test]
fn outbound_sidecar_untrusted_links_from_the_client_span() {
    let host = request("GET", "/api/products/p-1", Some("products")).header("traceparent", PARENT);
    let r = run(
        &with_fields(r#""trust": "untrusted", "mode": "sidecar_outbound""#),
        host,
        &answered(200),
    );
    let client = r.client_span();
    assert!(client.parent_span_id.is_empty());
    assert_eq!(client.links.len(), 1);
    assert_eq!(hex(&client.links[0].span_id), PARENT_SPAN);
    assert_eq!(
        client.links[0].flags, 0x301,
        "remote link, the sampled flag as received (the writer the filter runs)"
    );
}

#[test]
fn response_trace_header_rows() {
    struct Row {
        setting: &'static str,
        mode: &'static str,
        want: Vec<(&'static str, String)>,
        reason: &'static str,
    }
    for row in [
        Row {
            setting: "off",
            mode: "gateway",
            want: vec![],
            reason: "off by default",
        },
        Row {
            setting: "traceresponse",
            mode: "gateway",
            want: vec![("traceresponse", format!("00-{PARENT_TRACE}-{SERVER_ID}-01"))],
            reason: "Level 2 §5 traceresponse names our SERVER span",
        },
        Row {
            setting: "server_timing",
            mode: "gateway",
            want: vec![(
                "server-timing",
                format!("traceparent;desc=\"00-{PARENT_TRACE}-{SERVER_ID}-01\""),
            )],
            reason: "Server-Timing traceparent entry",
        },
        Row {
            setting: "traceresponse",
            mode: "sidecar_outbound",
            want: vec![("traceresponse", format!("00-{PARENT_TRACE}-{CLIENT_ID}-01"))],
            reason: "no SERVER span: the CLIENT span",
        },
    ] {
        let host =
            request("GET", "/api/products/p-1", Some("products")).header("traceparent", PARENT);
        let cfg = with_fields(&format!(
            r#""response_trace_header": "{}", "mode": "{}""#,
            row.setting, row.mode
        ));
        let mut r = run(&cfg, host, &answered(200));
        if let Some((name, value, replace)) = &r.req.response_header {
            r.host.add_response_header(name, value, *replace).unwrap();
        }
        let got: Vec<(&str, String)> = r
            .host
            .added_response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        assert_eq!(got, row.want, "{}", row.reason);
    }
}

#[test]
fn b3_sampling_only_deny_is_honoured_when_b3_is_trusted() {
    struct Row {
        extra: &'static str,
        recorded: bool,
        reason: &'static str,
    }
    for row in [
        Row {
            extra: r#""propagators": ["tracecontext", "b3"]"#,
            recorded: false,
            reason: "B3 Sampling State: b3: 0 asks for no sampling",
        },
        Row {
            extra: r#""propagators": ["tracecontext"]"#,
            recorded: true,
            reason: "default: B3 not read",
        },
        Row {
            extra: r#""propagators": ["tracecontext", "b3"], "trust": "untrusted""#,
            recorded: true,
            reason: "untrusted edge: the caller decides nothing",
        },
    ] {
        let host = request("GET", "/api/products/p-1", Some("products")).header("b3", "0");
        let r = run(&with_fields(row.extra), host, &answered(200));
        assert_eq!(r.req.recorded, row.recorded, "{}", row.reason);
        assert_eq!(
            hex(&r.server().map(|s| s.trace_id.clone()).unwrap_or_default()).is_empty(),
            !row.recorded,
            "{}",
            row.reason
        );
    }
    let host = request("GET", "/api/products/p-1", Some("products")).header("b3", "0");
    let r = run(
        &with_fields(r#""propagators": ["tracecontext", "b3"]"#),
        host,
        &answered(200),
    );
    assert_eq!(
        r.traceparent(),
        format!("00-{NEW_TRACE}-{CLIENT_ID}-02"),
        "the deny goes on"
    );
    assert_eq!(
        r.host.single_header("b3"),
        format!("{NEW_TRACE}-{CLIENT_ID}-0")
    );
}

/// Removing a header the request does not have costs a host call for nothing: a request
/// without `tracestate` gets exactly one header write (the `traceparent`).
#[test]
fn absent_headers_are_not_removed() {
    let r = run(
        &config(GATEWAY),
        request("GET", "/api/products/p-1", Some("products")),
        &answered(200),
    );
    assert_eq!(
        r.host
            .set_calls
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["traceparent"]
    );
    let r = run(
        &config(GATEWAY),
        request("GET", "/api/products/p-1", Some("products")).header("tracestate", "k=v"),
        &answered(200),
    );
    assert!(
        r.host.set_calls.contains(&("tracestate".to_string(), None)),
        "a tracestate without a valid traceparent is still removed: {:?}",
        r.host.set_calls
    );
}

/// The B3 rows of issue 17, through the tracer: defer is this hop's decision, debug goes on as
/// debug, both forms are read whichever B3 propagator is listed, the listed form is written.
#[test]
fn b3_specification_rows() {
    const T: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const S: &str = "e457b5a2e4d86bd1";
    struct Row {
        fields: &'static str,
        incoming: Vec<(&'static str, String)>,
        recorded: bool,
        /// Every B3 header upstream, sorted.
        b3_out: Vec<(&'static str, String)>,
        reason: &'static str,
    }
    let ratio0 = r#""sampler": "parentbased_traceidratio", "sampler_ratio": 0"#;
    let single_out = |state: &str| vec![("b3", format!("{T}-{CLIENT_ID}-{state}"))];
    let multi_out = |k: &'static str, v: &str| {
        let mut m = vec![
            (k, v.to_string()),
            ("x-b3-spanid", CLIENT_ID.to_string()),
            ("x-b3-traceid", T.to_string()),
        ];
        m.sort();
        m
    };
    let rows = [
        Row {
            fields: ratio0,
            incoming: vec![("b3", format!("{T}-{S}"))],
            recorded: false,
            b3_out: single_out("0"),
            reason: "defer (no sampling state): the ratio decides, a trace it drops is dropped",
        },
        Row {
            fields: r#""sampler": "parentbased_traceidratio", "sampler_ratio": 1"#,
            incoming: vec![("b3", format!("{T}-{S}"))],
            recorded: true,
            b3_out: single_out("1"),
            reason: "defer: the ratio decides, a trace it keeps is kept",
        },
        Row {
            fields: ratio0,
            incoming: vec![("b3", format!("{T}-{S}-d"))],
            recorded: true,
            b3_out: single_out("d"),
            reason: "debug: sampled (a parent-based sampler follows it), -d in is -d out",
        },
        Row {
            fields: ratio0,
            incoming: vec![
                ("x-b3-traceid", T.into()),
                ("x-b3-spanid", S.into()),
                ("x-b3-flags", "1".into()),
            ],
            recorded: true,
            b3_out: multi_out("x-b3-flags", "1"),
            reason: "debug: x-b3-flags: 1 in is x-b3-flags: 1 out, without x-b3-sampled",
        },
        Row {
            fields: "",
            incoming: vec![
                ("x-b3-traceid", T.into()),
                ("x-b3-spanid", S.into()),
                ("x-b3-sampled", "1".into()),
                ("x-b3-flags", "0".into()),
            ],
            recorded: true,
            b3_out: multi_out("x-b3-sampled", "1"),
            reason: "x-b3-flags: 0 is accepted (not debug)",
        },
    ];
    for (propagator, row) in rows
        .iter()
        .filter(|r| r.b3_out[0].0 == "b3")
        .map(|r| ("b3", r))
        .chain(
            rows.iter()
                .filter(|r| r.b3_out[0].0 != "b3")
                .map(|r| ("b3multi", r)),
        )
    {
        let fields = format!(
            r#""propagators": ["tracecontext", "{propagator}"]{}{}"#,
            if row.fields.is_empty() { "" } else { ", " },
            row.fields
        );
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        for (k, v) in &row.incoming {
            host = host.header(k, v);
        }
        let r = run(&with_fields(&fields), host, &answered(200));
        assert_eq!(r.req.recorded, row.recorded, "{}", row.reason);
        assert_eq!(r.req.trace_id.to_string(), T, "{}: continued", row.reason);
        let mut got: Vec<(&str, String)> = crate::propagation::b3::ALL_HEADERS
            .iter()
            .flat_map(|h| r.host.header_values(h).into_iter().map(move |v| (*h, v)))
            .collect();
        got.sort();
        assert_eq!(got, row.b3_out, "{}", row.reason);
        let sampled = if row.recorded { "01" } else { "00" };
        assert_eq!(
            r.traceparent(),
            format!("00-{T}-{CLIENT_ID}-{sampled}"),
            "{}: traceparent tells the same decision",
            row.reason
        );
    }
    // Both forms are read whichever B3 propagator is listed; the listed form is written.
    for (propagator, incoming, out, reason) in [
        (
            "b3",
            vec![
                ("x-b3-traceid", T),
                ("x-b3-spanid", S),
                ("x-b3-sampled", "1"),
            ],
            "b3",
            "b3 reads the multi headers too; only the single header goes on",
        ),
        (
            "b3multi",
            vec![("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
            "x-b3-traceid",
            "b3multi reads the single header too; only the multi headers go on",
        ),
    ] {
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        for (k, v) in &incoming {
            host = host.header(k, v);
        }
        let r = run(
            &with_fields(&format!(r#""propagators": ["{propagator}"]"#)),
            host,
            &answered(200),
        );
        assert_eq!(
            r.req.trace_id.to_string(),
            T,
            "{reason}: continued, not restarted"
        );
        assert_eq!(hex(&r.server_span().parent_span_id), S, "{reason}");
        let present: Vec<&str> = crate::propagation::b3::ALL_HEADERS
            .into_iter()
            .filter(|h| !r.host.header_values(h).is_empty())
            .collect();
        let want: Vec<&str> = if out == "b3" {
            vec!["b3"]
        } else {
            vec!["x-b3-traceid", "x-b3-spanid", "x-b3-sampled"]
        };
        assert_eq!(present, want, "{reason}");
    }
}

/// Issue 17's untrusted-edge row: a client's B3 (both forms), baggage and a traceparent
/// naming another trace: nothing of them reaches the upstream, each valid one is a link.
#[test]
fn untrusted_edge_removes_every_client_context_and_links_each() {
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("traceparent", PARENT)
        .header("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7")
        .header("x-b3-spanid", "e457b5a2e4d86bd1")
        .header("x-b3-sampled", "1")
        .header("b3", "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1")
        .header("baggage", "k=v");
    let r = run(
        &with_fields(r#""trust": "untrusted", "sampler": "always_off""#),
        host,
        &answered(200),
    );
    assert!(!r.req.recorded, "no client format forces sampling");
    assert_eq!(r.traceparent(), format!("00-{NEW_TRACE}-{CLIENT_ID}-02"));
    for h in crate::propagation::b3::ALL_HEADERS
        .into_iter()
        .chain(["baggage", "tracestate"])
    {
        assert!(r.host.header_values(h).is_empty(), "{h} removed");
    }
    assert_eq!(r.stats.get(Counter::IncomingContextLinked), 3);

    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("traceparent", PARENT)
        .header("b3", "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1");
    let r = run(
        &with_fields(r#""trust": "untrusted""#),
        host,
        &answered(200),
    );
    let links: Vec<String> = r
        .server_span()
        .links
        .iter()
        .map(|l| hex(&l.trace_id))
        .collect();
    assert_eq!(
        links,
        vec![
            PARENT_TRACE.to_string(),
            "0af7651916cd43dd8448eb211c80319c".to_string()
        ],
        "each valid context linked from the SERVER span"
    );
}
