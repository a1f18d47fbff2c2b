//! End-to-end: the demo mesh headless. The real gateway Envoy and the cart's sidecar Envoy
//! both run gateway_tracing.wasm; the shop services are real HTTP servers; the flow of
//! `make run` (login, list products, add to cart, place order) must produce the seed's span
//! hierarchy, across the two proxies, under one trace id per request.
mod common;

use common::ports_lock;
use demo::collector::RecordedSpan;
use demo::mesh::{Mesh, FLOW};
use std::time::Duration;

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn span<'a>(spans: &'a [RecordedSpan], name: &str) -> &'a RecordedSpan {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name:?} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

fn attr<'a>(s: &'a RecordedSpan, key: &str) -> &'a str {
    s.attr_str(key)
        .unwrap_or_else(|| panic!("{}: no {key}: {:?}", s.name, s.attributes))
}

#[test]
fn shop_flow_produces_the_seed_hierarchy_across_gateway_and_sidecar() {
    let _lock = ports_lock();
    common::wasm_path();
    let root = common::repo_root();
    let mesh = Mesh::start(&root, None, Some("debug")).unwrap_or_else(|e| panic!("{e}"));

    let mut results = Vec::new();
    for step in &FLOW {
        let r = mesh.run_step(step, Duration::from_secs(10));
        assert!(
            r.problems.is_empty(),
            "{} {}: {:?}\n{}",
            step.method,
            step.path,
            r.problems,
            demo::tree::render(&r.spans)
        );
        results.push(r);
    }
    // One trace per request, all distinct.
    let mut ids: Vec<_> = results
        .iter()
        .map(|r| r.trace_id.clone().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), FLOW.len());

    // The add-to-cart trace: gateway -> CartDurableObject -> cart sidecar -> products, fulfillment.
    let cart = &results[2].spans;
    assert_eq!(cart.len(), 5);
    let trace = &cart[0].trace_id;
    assert!(cart.iter().all(|s| &s.trace_id == trace), "one trace id");

    let gw_root = span(cart, "POST /api/cart/:cartId/add");
    let do_call = span(cart, "CartDurableObject POST /cart/add");
    let cart_server = span(cart, "POST /cart/add");
    let products = span(cart, "PRODUCTS_SERVICE GET /products/:id");
    let fulfillment = span(cart, "FULFILLMENT_SERVICE GET /shipping-options");

    assert_eq!(
        (
            gw_root.kind,
            do_call.kind,
            cart_server.kind,
            products.kind,
            fulfillment.kind
        ),
        (SERVER, CLIENT, SERVER, CLIENT, CLIENT)
    );
    assert_eq!(gw_root.parent_span_id, "");
    assert_eq!(do_call.parent_span_id, gw_root.span_id);
    assert_eq!(
        cart_server.parent_span_id, do_call.span_id,
        "the sidecar continues the gateway's CLIENT span"
    );
    assert_eq!(
        products.parent_span_id, cart_server.span_id,
        "outbound calls are children of the cart's SERVER span"
    );
    assert_eq!(fulfillment.parent_span_id, cart_server.span_id);

    // Who reported what.
    for s in [gw_root, do_call] {
        assert_eq!(s.service(), Some("ecomm-ms-gateway"));
    }
    for s in [cart_server, products, fulfillment] {
        assert_eq!(s.service(), Some("cart-service"));
    }

    // Durable Object attributes on the gateway's CLIENT span.
    assert_eq!(attr(do_call, "durable_object.name"), "CartDurableObject");
    assert_eq!(attr(do_call, "durable_object.id"), "c-42");
    // url.full names the upstream that was called (the cart sidecar), not the gateway's Host.
    assert_eq!(attr(do_call, "url.full"), "http://127.0.0.1:10001/cart/add");
    assert_eq!(attr(do_call, "span.kind"), "client");
    assert_eq!(attr(gw_root, "http.route"), "/api/cart/:cartId/add");

    // The sidecar's spans carry what the cart service and its dependencies saw.
    assert_eq!(attr(cart_server, "http.route"), "/cart/add");
    assert_eq!(attr(cart_server, "url.path"), "/cart/add");
    assert_eq!(attr(products, "service.name"), "PRODUCTS_SERVICE");
    assert_eq!(
        attr(products, "url.full"),
        "http://127.0.0.1:18082/products/p-2",
        "the products service, not the sidecar's own listener the app called"
    );
    assert_eq!(
        products
            .attr("http.response.status_code")
            .and_then(|v| v.as_int()),
        Some(200)
    );
    assert_eq!(attr(fulfillment, "service.name"), "FULFILLMENT_SERVICE");

    // Timing nests: each child within its parent.
    for (child, parent) in [
        (do_call, gw_root),
        (cart_server, do_call),
        (products, cart_server),
        (fulfillment, cart_server),
    ] {
        assert!(
            parent.start_ns <= child.start_ns && child.end_ns <= parent.end_ns,
            "{} inside {}",
            child.name,
            parent.name
        );
    }
    // All OK: no span is an error.
    assert!(results
        .iter()
        .flat_map(|r| &r.spans)
        .all(|s| s.status_code == 0));

    // Both proxies counted what they exported.
    let stat = |e: &demo::Envoy| {
        e.stat("wasmcustom.gateway_tracing.spans_exported")
            .unwrap()
            .unwrap_or(0)
    };
    assert_eq!(
        stat(&mesh.gateway),
        2 + 2 + 2 + 2,
        "gateway: SERVER + CLIENT per request"
    );
    assert_eq!(
        stat(&mesh.sidecar),
        3,
        "sidecar: cart SERVER + two CLIENT spans"
    );
}
