//! Parents in, `traceparent`/`tracestate` out, and how SERVER and CLIENT link.

use super::*;

#[test]
fn client_span_ends_when_the_response_completed_server_span_at_log() {
    let cfg = config(GATEWAY);
    let mut host = request("GET", "/api/products/p-1", Some("products"));
    let stats = MockStats::new();
    let mut req = start(&cfg, &mut host, &stats);
    let upstream_done = START + 40;
    req.response_complete(upstream_done);
    req.response_complete(upstream_done + 5); // a later signal does not move it
    let spans = finish(&cfg, &req, &answered(200));
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
    let spans = finish(&cfg, &req, &answered(200));
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
    assert_eq!(attr_str(client, sc::PEER_SERVICE), "CART_SERVICE");
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
