//! Gateway, inbound sidecar and outbound sidecar: which spans exist and what goes upstream.

use super::*;

#[test]
fn sidecar_inbound_emits_server_only_and_hands_its_id_to_the_service() {
    let host = request("GET", "/api/products/p-1", Some("local_app")).header("traceparent", PARENT);
    let r = run(&with_mode("sidecar_inbound"), host, &answered(200));
    assert_eq!(r.kinds(), vec![SpanKind::Server as i32]);
    let server = r.server_span();
    assert_eq!(hex(&server.span_id), SERVER_ID);
    assert_eq!(hex(&server.parent_span_id), PARENT_SPAN);
    assert_eq!(r.traceparent(), format!("00-{PARENT_TRACE}-{SERVER_ID}-01"));

    let r = run(
        &with_mode("sidecar_inbound"),
        request("GET", "/api/products/p-1", None),
        &answered(200),
    );
    assert_eq!(
        r.traceparent(),
        format!("00-{NEW_TRACE}-{SERVER_ID}-03"),
        "no parent"
    );
}

#[test]
fn sidecar_outbound_emits_client_only_as_child_of_the_app() {
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("traceparent", PARENT)
        .header("tracestate", "congo=t61rcWkgMzE");
    let r = run(&with_mode("sidecar_outbound"), host, &answered(200));
    assert_eq!(r.kinds(), vec![SpanKind::Client as i32]);
    let client = r.client_span();
    assert_eq!(hex(&client.trace_id), PARENT_TRACE);
    assert_eq!(
        hex(&client.parent_span_id),
        PARENT_SPAN,
        "parent is the app's span"
    );
    assert_eq!(hex(&client.span_id), CLIENT_ID);
    assert_eq!(client.flags, 0x301, "remote parent");
    assert_eq!(client.trace_state, "congo=t61rcWkgMzE");
    assert_eq!(r.traceparent(), format!("00-{PARENT_TRACE}-{CLIENT_ID}-01"));
    assert_eq!(r.host.single_header("tracestate"), "congo=t61rcWkgMzE");

    let r = run(
        &with_mode("sidecar_outbound"),
        request("GET", "/api/products/p-1", Some("products")),
        &answered(200),
    );
    let client = r.client_span();
    assert!(
        client.parent_span_id.is_empty(),
        "no parent: CLIENT is the root"
    );
    assert_eq!(client.flags, 0x103, "root of our own random trace id");
    assert_eq!(r.traceparent(), format!("00-{NEW_TRACE}-{CLIENT_ID}-03"));
}
