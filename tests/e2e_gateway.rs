//! End-to-end: the built `gateway_tracing.wasm` in the real Envoy (`envoy/gateway.yaml`),
//! loopback stub upstreams on the config's ports, and an OTLP/HTTP collector that decodes the
//! protobuf Envoy sends. Every assertion is on what the collector received and what the stubs
//! received.
mod common;

use common::{ports_lock, repo_root, send, split_traceparent, start_envoy};
use demo::collector::{Collector, RecordedSpan};
use std::time::Duration;
use support::{Stub, StubRequest};

const GATEWAY: &str = "127.0.0.1:10000";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const STATUS_UNSET: i32 = 0;
const STATUS_ERROR: i32 = 2;
const WAIT: Duration = Duration::from_secs(10);

struct Upstreams {
    auth: Stub,
    products: Stub,
    cart: Stub,
    orders: Stub,
}

impl Upstreams {
    fn start() -> Upstreams {
        Upstreams {
            auth: Stub::start_named("auth", "127.0.0.1:18081").unwrap(),
            products: Stub::start_named("products", "127.0.0.1:18082").unwrap(),
            // The gateway's cart cluster points at the cart sidecar's inbound port.
            cart: Stub::start_named("cart", "127.0.0.1:10001").unwrap(),
            orders: Stub::start_named("orders", "127.0.0.1:18084").unwrap(),
        }
    }
}

/// The one request a stub received since `before`, with exactly one `traceparent`.
fn only_request(stub: &Stub, before: usize) -> StubRequest {
    let reqs = stub.requests();
    assert_eq!(
        reqs.len(),
        before + 1,
        "{} should have received exactly one request",
        stub.name()
    );
    reqs.into_iter().last().unwrap()
}

fn one_traceparent(req: &StubRequest) -> (String, String) {
    let tps = req.header_values("traceparent");
    assert_eq!(
        tps.len(),
        1,
        "exactly one traceparent upstream, got {tps:?}"
    );
    split_traceparent(tps[0])
}

fn trace_spans(collector: &Collector, trace_id: &str, n: usize) -> Vec<RecordedSpan> {
    let id = trace_id.to_string();
    match collector.wait_for(WAIT, |spans| {
        spans.iter().filter(|s| s.trace_id == id).count() >= n
    }) {
        Ok(all) => all.into_iter().filter(|s| s.trace_id == trace_id).collect(),
        Err(all) => panic!(
            "trace {trace_id}: wanted {n} spans, collector has {:?}",
            all.iter()
                .filter(|s| s.trace_id == trace_id)
                .map(|s| &s.name)
                .collect::<Vec<_>>()
        ),
    }
}

fn by_kind(spans: &[RecordedSpan], kind: i32) -> &RecordedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.kind == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "one span of kind {kind} in {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

fn s<'a>(span: &'a RecordedSpan, key: &str) -> &'a str {
    span.attr_str(key).unwrap_or_else(|| {
        panic!(
            "{}: missing string attribute {key}: {:?}",
            span.name, span.attributes
        )
    })
}

fn i(span: &RecordedSpan, key: &str) -> i64 {
    span.attr(key).and_then(|v| v.as_int()).unwrap_or_else(|| {
        panic!(
            "{}: missing int attribute {key}: {:?}",
            span.name, span.attributes
        )
    })
}

/// One request through the gateway to a stub upstream, and what it left behind.
struct Traced {
    status: u16,
    /// What the stub received (exactly one request).
    req: StubRequest,
    /// Trace id and span id of the one `traceparent` the stub received.
    trace: String,
    client_id: String,
    /// The collector's spans of that trace (at least two: SERVER and CLIENT).
    spans: Vec<RecordedSpan>,
}

fn traced(
    collector: &Collector,
    stub: &Stub,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &str,
) -> Traced {
    let before = stub.requests().len();
    let status = send(GATEWAY, method, path, headers, body).status;
    let req = only_request(stub, before);
    let (trace, client_id) = one_traceparent(&req);
    let spans = trace_spans(collector, &trace, 2);
    Traced {
        status,
        req,
        trace,
        client_id,
        spans,
    }
}

/// Checks a gateway SERVER + CLIENT pair and returns them.
fn assert_pair<'a>(
    t: &'a Traced,
    server_name: &str,
    client_name: &str,
) -> (&'a RecordedSpan, &'a RecordedSpan) {
    let (spans, client_span_id_upstream) = (&t.spans, &t.client_id);
    assert_eq!(
        spans.len(),
        2,
        "{server_name}: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let server = by_kind(spans, SERVER);
    let client = by_kind(spans, CLIENT);
    assert_eq!(server.name, server_name);
    assert_eq!(client.name, client_name);
    assert_eq!(
        client.parent_span_id, server.span_id,
        "CLIENT is the SERVER's child"
    );
    assert_eq!(
        &client.span_id, client_span_id_upstream,
        "the upstream's traceparent names the CLIENT span"
    );
    assert!(
        server.start_ns <= client.start_ns && client.end_ns <= server.end_ns,
        "CLIENT inside SERVER"
    );
    assert_eq!(s(server, "span.kind"), "server");
    assert_eq!(s(client, "span.kind"), "client");
    for span in [server, client] {
        assert_eq!(span.service(), Some("ecomm-ms-gateway"));
        assert_eq!(
            span.resource
                .get("telemetry.sdk.name")
                .and_then(|v| v.as_str()),
            Some("gateway-tracing")
        );
        assert_eq!(
            span.resource
                .get("telemetry.sdk.language")
                .and_then(|v| v.as_str()),
            Some("rust")
        );
        assert_eq!(
            span.resource
                .get("deployment.environment.name")
                .and_then(|v| v.as_str()),
            Some("demo")
        );
        assert_eq!(span.scope_name, "gateway-tracing");
        assert!(!span.scope_version.is_empty());
    }
    (server, client)
}

#[test]
fn gateway_traces_every_request_in_real_envoy() {
    let _lock = ports_lock();
    let collector = Collector::start("127.0.0.1:4318").expect("collector port 4318 free");
    let up = Upstreams::start();
    let envoy = start_envoy(&repo_root().join("envoy/gateway.yaml"), 9901, 0, vec![]);

    // --- GET /api/products: new trace, root + PRODUCTS_SERVICE child ----------------------------
    let t = traced(&collector, &up.products, "GET", "/api/products", &[], "");
    assert_eq!(t.status, 200);
    assert_eq!(
        t.req.path, "/products",
        "the service receives the rewritten path"
    );
    assert!(
        t.req.header_values("tracestate").is_empty(),
        "no tracestate invented"
    );
    let (server, client) = assert_pair(&t, "GET /api/products", "PRODUCTS_SERVICE GET /products");
    assert_eq!(server.parent_span_id, "", "a new trace has a root");
    for (key, want) in [
        ("http.request.method", "GET"),
        ("http.method", "GET"),
        ("http.route", "/api/products"),
        ("url.path", "/api/products"),
        ("url.scheme", "http"),
        ("http.url", "http://shop.local/api/products"),
        ("server.address", "shop.local"),
        ("user_agent.original", "e2e-test/1"),
    ] {
        assert_eq!(s(server, key), want, "SERVER {key}");
    }
    assert_eq!(i(server, "server.port"), 80);
    assert_eq!(i(server, "http.response.status_code"), 200);
    assert_eq!(i(server, "http.status_code"), 200);
    assert_eq!(server.status_code, STATUS_UNSET);
    for (key, want) in [
        ("service.name", "PRODUCTS_SERVICE"),
        ("http.route", "/api/products"),
        // The upstream's scheme and address, not the gateway's own Host (shop.local).
        ("url.full", "http://127.0.0.1:18082/products"),
        ("http.url", "http://127.0.0.1:18082/products"),
        ("server.address", "127.0.0.1"),
    ] {
        assert_eq!(s(client, key), want, "CLIENT {key}");
    }
    assert_eq!(i(client, "server.port"), 18082);
    assert_eq!(i(client, "http.response.status_code"), 200);
    assert_eq!(client.status_code, STATUS_UNSET);
    let events: Vec<&str> = client.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["call.start", "call.complete"]);

    // --- POST /api/auth/login ------------------------------------------------------------------
    let t = traced(
        &collector,
        &up.auth,
        "POST",
        "/api/auth/login",
        &[],
        r#"{"user":"demo"}"#,
    );
    assert_eq!(t.status, 200);
    assert_eq!(
        (t.req.method.as_str(), t.req.path.as_str()),
        ("POST", "/auth/login")
    );
    let (_, client) = assert_pair(&t, "POST /api/auth/login", "AUTH_SERVICE POST /auth/login");
    assert_eq!(s(client, "http.request.method"), "POST");

    // --- POST /api/cart/c-42/add: the Durable Object target --------------------------------------
    let t = traced(
        &collector,
        &up.cart,
        "POST",
        "/api/cart/c-42/add",
        &[],
        r#"{"productId":"p-1"}"#,
    );
    assert_eq!(t.status, 200);
    assert_eq!(t.req.path, "/cart/add?cartId=c-42");
    let (server, client) = assert_pair(
        &t,
        "POST /api/cart/:cartId/add",
        "CartDurableObject POST /cart/add",
    );
    assert_eq!(s(server, "http.route"), "/api/cart/:cartId/add");
    assert_eq!(
        s(server, "url.path"),
        "/api/cart/c-42/add",
        "the raw path is an attribute, never a name"
    );
    assert_eq!(s(client, "durable_object.name"), "CartDurableObject");
    assert_eq!(s(client, "durable_object.id"), "c-42");

    // --- a valid incoming traceparent + tracestate is continued --------------------------------
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{incoming_trace}-00f067aa0ba902b7-01");
    let ts = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    let headers: &[(&str, &[u8])] = &[
        ("traceparent", tp.as_bytes()),
        ("tracestate", ts.as_bytes()),
    ];
    let t = traced(
        &collector,
        &up.products,
        "GET",
        "/api/products/p-2",
        headers,
        "",
    );
    assert_eq!(t.status, 200);
    assert_eq!(t.req.path, "/products/p-2");
    assert_eq!(t.trace, incoming_trace, "same trace id upstream");
    assert_ne!(
        t.client_id, "00f067aa0ba902b7",
        "upstream sees our CLIENT span, not the caller's"
    );
    assert_eq!(
        t.req.header_values("tracestate"),
        [ts],
        "tracestate carried unchanged"
    );
    let (server, client) = assert_pair(
        &t,
        "GET /api/products/:id",
        "PRODUCTS_SERVICE GET /products/:id",
    );
    assert_eq!(
        server.parent_span_id, "00f067aa0ba902b7",
        "SERVER continues the caller's span"
    );
    assert_eq!(server.trace_state, ts);
    assert_eq!(client.trace_state, ts);

    // --- a malformed traceparent restarts the trace and drops tracestate -----------------------
    let bad = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
    let headers: &[(&str, &[u8])] = &[("traceparent", bad.as_bytes()), ("tracestate", b"rojo=1")];
    let t = traced(
        &collector,
        &up.products,
        "GET",
        "/api/products",
        headers,
        "",
    );
    assert_eq!(t.status, 200);
    assert_ne!(t.trace, incoming_trace);
    assert!(
        t.req.header_values("tracestate").is_empty(),
        "tracestate of an invalid traceparent is dropped"
    );
    let (server, _) = assert_pair(&t, "GET /api/products", "PRODUCTS_SERVICE GET /products");
    assert_eq!(server.parent_span_id, "");

    // --- two traceparent headers: invalid, restart, and exactly one goes upstream --------------
    let headers: &[(&str, &[u8])] = &[
        ("traceparent", tp.as_bytes()),
        ("traceparent", tp.as_bytes()),
    ];
    let t = traced(
        &collector,
        &up.products,
        "GET",
        "/api/products",
        headers,
        "",
    );
    assert_eq!(t.status, 200);
    assert_ne!(
        t.trace, incoming_trace,
        "duplicated traceparent restarts the trace"
    );
    let (server, _) = assert_pair(&t, "GET /api/products", "PRODUCTS_SERVICE GET /products");
    assert_eq!(server.parent_span_id, "");

    // --- hostile header bytes never fail the request ---------------------------------------------
    // (NUL, CR and LF are refused by Envoy's HTTP codec before any filter runs.)
    let headers: &[(&str, &[u8])] = &[
        ("traceparent", b"00-\xff\xfegarbage-\x80-01"),
        ("tracestate", b"\xff=\xff"),
    ];
    let t = traced(
        &collector,
        &up.products,
        "GET",
        "/api/products",
        headers,
        "",
    );
    assert_eq!(t.status, 200, "hostile traceparent must not cause an error");
    assert!(t.req.header_values("tracestate").is_empty());
    assert_pair(&t, "GET /api/products", "PRODUCTS_SERVICE GET /products");

    // --- upstream answers 5xx: both spans ERROR --------------------------------------------------
    let t = traced(
        &collector,
        &up.orders,
        "POST",
        "/api/orders",
        &[("x-stub-status", b"500")],
        "{}",
    );
    assert_eq!(t.status, 500);
    let (server, client) = assert_pair(&t, "POST /api/orders", "ORDER_SERVICE POST /orders");
    assert_eq!(
        (server.status_code, client.status_code),
        (STATUS_ERROR, STATUS_ERROR)
    );
    assert_eq!(s(server, "error.type"), "500");
    assert_eq!(s(client, "error.type"), "500");
    assert_eq!(i(client, "http.response.status_code"), 500);
    assert!(client.events.iter().any(|e| e.name == "exception"));

    // --- upstream answers 4xx: CLIENT ERROR, SERVER not -------------------------------------------
    let t = traced(
        &collector,
        &up.orders,
        "POST",
        "/api/orders",
        &[("x-stub-status", b"404")],
        "{}",
    );
    assert_eq!(t.status, 404);
    let (server, client) = assert_pair(&t, "POST /api/orders", "ORDER_SERVICE POST /orders");
    assert_eq!(
        server.status_code, STATUS_UNSET,
        "a 4xx is not the server's error"
    );
    assert_eq!(client.status_code, STATUS_ERROR);
    assert_eq!(s(client, "error.type"), "404");

    // --- connection refused: no upstream response, Envoy answers 503 -----------------------------
    let tp_legacy = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = send(
        GATEWAY,
        "GET",
        "/api/legacy/report",
        &[("traceparent", tp_legacy.as_bytes())],
        "",
    );
    assert_eq!(r.status, 503);
    let spans = trace_spans(&collector, "0af7651916cd43dd8448eb211c80319c", 2);
    let server = by_kind(&spans, SERVER);
    let client = by_kind(&spans, CLIENT);
    assert_eq!(server.name, "GET /api/legacy/*");
    assert_eq!(client.name, "LEGACY_SERVICE GET /legacy/*");
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(
        (server.status_code, client.status_code),
        (STATUS_ERROR, STATUS_ERROR)
    );
    assert_eq!(s(server, "error.type"), "503");
    assert_eq!(s(client, "error.type"), "connection_failure");
    assert!(
        client.attr("http.response.status_code").is_none(),
        "no upstream status: there was no response"
    );
    assert_eq!(s(client, "envoy.response_flags"), "UF");
    let exc = client
        .events
        .iter()
        .find(|e| e.name == "exception")
        .expect("exception event");
    assert_eq!(
        exc.attributes
            .get("exception.type")
            .and_then(|v| v.as_str()),
        Some("connection_failure")
    );
    assert_eq!(
        exc.attributes
            .get("envoy.response_flags")
            .and_then(|v| v.as_str()),
        Some("UF")
    );
    assert!(exc
        .attributes
        .get("envoy.response_code_details")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .contains("connection"));
    assert!(
        client.status_message.contains("UF"),
        "{}",
        client.status_message
    );

    // --- answered locally: a SERVER span only ----------------------------------------------------
    let tp_local = "00-11111111111111111111111111111111-2222222222222222-01";
    let r = send(
        GATEWAY,
        "GET",
        "/healthz",
        &[("traceparent", tp_local.as_bytes())],
        "",
    );
    assert_eq!(r.status, 200);
    let spans = trace_spans(&collector, "11111111111111111111111111111111", 1);
    std::thread::sleep(Duration::from_millis(1200)); // a flush interval and more: nothing else arrives
    let spans_later = collector.trace("11111111111111111111111111111111");
    assert_eq!(
        spans_later.len(),
        1,
        "no CLIENT span without an upstream: {:?}",
        spans_later.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(spans[0].name, "GET /healthz");
    assert_eq!(spans[0].kind, SERVER);

    // --- the exporter's requests -----------------------------------------------------------------
    let exports = collector.requests();
    assert!(!exports.is_empty());
    for e in &exports {
        assert_eq!(e.path, "/v1/traces");
        assert_eq!(e.header("content-type"), Some("application/x-protobuf"));
        assert!(
            e.header("user-agent")
                .unwrap_or("")
                .starts_with("OTel-OTLP-Exporter-Rust/"),
            "{:?}",
            e.header("user-agent")
        );
        assert!(e.span_count > 0, "never an empty export request");
        assert!(e.decode_error.is_none());
    }
    // Every span in the collector is unique (no double export).
    let all = collector.spans();
    let mut ids: Vec<_> = all.iter().map(|s| s.span_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "a span was exported twice");

    // --- self-metrics in Envoy's stats -----------------------------------------------------------
    let stat = |n: &str| {
        envoy
            .stat(&format!("wasmcustom.gateway_tracing.{n}"))
            .unwrap()
            .unwrap_or(0)
    };
    assert!(
        stat("traceparent_invalid") >= 3,
        "malformed, duplicated and hostile traceparents counted"
    );
    assert_eq!(
        stat("spans_exported") as usize,
        all.len(),
        "every received span counted as exported"
    );
    assert_eq!(
        stat("spans_dropped_queue_full") + stat("spans_dropped_export_failed"),
        0
    );

    // --- the seed's debug log lines -------------------------------------------------------------
    let log = envoy.log();
    assert!(
        log.contains("Span Context: { traceId: '"),
        "root span context logged"
    );
    assert!(
        log.contains("Propagating trace context to AUTH_SERVICE: { traceId: '"),
        "propagation logged"
    );
    assert!(log.contains("Propagating trace context to CartDurableObject: "));
}
