//! End-to-end: both placements of the built `gateway_tracing.wasm` in the real Envoy
//! (`envoy/gateway-upstream-filter.yaml`): the downstream filter makes the SERVER span, the
//! upstream filter of each cluster one CLIENT span per attempt. A stub upstream that fails the
//! first attempt(s) with 503 and a `retry_on: 5xx` route show retries as separate spans.
mod common;

use common::{ports_lock, repo_root, send, split_traceparent, start_envoy};
use demo::collector::{Collector, RecordedSpan};
use std::time::Duration;
use support::{Stub, StubRequest};

const GATEWAY: &str = "127.0.0.1:10000";
const CONFIG: &str = "envoy/gateway-upstream-filter.yaml";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const STATUS_UNSET: i32 = 0;
const STATUS_ERROR: i32 = 2;
const WAIT: Duration = Duration::from_secs(10);

fn traceparents(reqs: &[StubRequest]) -> Vec<(String, String)> {
    reqs.iter()
        .map(|r| {
            let tps = r.header_values("traceparent");
            assert_eq!(tps.len(), 1, "exactly one traceparent per attempt: {tps:?}");
            split_traceparent(tps[0])
        })
        .collect()
}

/// Waits until the collector has `n` spans of the trace, then a flush interval more (so a
/// span too many would show), and returns them.
fn trace_spans(collector: &Collector, trace_id: &str, n: usize) -> Vec<RecordedSpan> {
    let id = trace_id.to_string();
    if let Err(all) = collector.wait_for(WAIT, |spans| {
        spans.iter().filter(|s| s.trace_id == id).count() >= n
    }) {
        panic!(
            "trace {trace_id}: wanted {n} spans, collector has {:?}",
            all.iter()
                .filter(|s| s.trace_id == trace_id)
                .map(|s| &s.name)
                .collect::<Vec<_>>()
        );
    }
    std::thread::sleep(Duration::from_millis(700));
    let spans = collector.trace(trace_id);
    assert_eq!(
        spans.len(),
        n,
        "trace {trace_id}: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    spans
}

fn s<'a>(span: &'a RecordedSpan, key: &str) -> &'a str {
    span.attr_str(key)
        .unwrap_or_else(|| panic!("{}: no string {key}: {:?}", span.name, span.attributes))
}

fn i(span: &RecordedSpan, key: &str) -> Option<i64> {
    span.attr(key).and_then(|v| v.as_int())
}

/// The SERVER span and the CLIENT spans of a trace, CLIENT spans in the order the upstream
/// received their attempts (matched by the span id each attempt carried).
fn split<'a>(
    spans: &'a [RecordedSpan],
    upstream_saw: &[(String, String)],
) -> (&'a RecordedSpan, Vec<&'a RecordedSpan>) {
    let servers: Vec<_> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert_eq!(servers.len(), 1, "one SERVER span");
    let clients: Vec<&RecordedSpan> = upstream_saw
        .iter()
        .map(|(_, id)| {
            spans
                .iter()
                .find(|s| s.kind == CLIENT && &s.span_id == id)
                .unwrap_or_else(|| panic!("no CLIENT span {id} (what the upstream saw)"))
        })
        .collect();
    assert_eq!(
        spans.iter().filter(|s| s.kind == CLIENT).count(),
        clients.len(),
        "one CLIENT span per attempt, no other"
    );
    (servers[0], clients)
}

#[test]
fn upstream_filter_makes_one_client_span_per_attempt() {
    let _lock = ports_lock();
    let collector = Collector::start("127.0.0.1:4318").expect("collector port 4318 free");
    let products = Stub::start_named("products", "127.0.0.1:18082").unwrap();
    let cart = Stub::start_named("cart", "127.0.0.1:10001").unwrap();
    let envoy = start_envoy(&repo_root().join(CONFIG), 9901, 0, vec![]);

    // --- first attempt 503, the retry 200: two CLIENT spans under one SERVER span -------------
    products.fail_next(1, 503);
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = send(
        GATEWAY,
        "GET",
        "/api/products/p-1",
        &[("traceparent", incoming.as_bytes())],
        "",
    );
    assert_eq!(r.status, 200, "the retry succeeded");
    let reqs = products.wait_for_requests(2, WAIT).expect("two attempts");
    assert_eq!(reqs.len(), 2);
    let saw = traceparents(&reqs);
    assert_eq!(saw[0].0, "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_eq!(saw[1].0, saw[0].0, "same trace on the retry");
    assert_ne!(saw[0].1, saw[1].1, "each attempt carries its own parent id");
    for (req, want) in reqs.iter().zip(["/products/p-1", "/products/p-1"]) {
        assert_eq!(req.path, want, "the rewritten path goes upstream");
    }

    let spans = trace_spans(&collector, &saw[0].0, 3);
    let (server, clients) = split(&spans, &saw);
    assert_eq!(server.name, "GET /api/products/:id");
    assert_eq!(
        server.parent_span_id, "00f067aa0ba902b7",
        "continues the caller"
    );
    assert_eq!(server.status_code, STATUS_UNSET, "the request succeeded");
    assert_eq!(i(server, "http.response.status_code"), Some(200));
    for c in &clients {
        assert_ne!(c.span_id, server.span_id);
        assert_ne!(c.span_id, "00f067aa0ba902b7");
        assert_eq!(
            c.parent_span_id, server.span_id,
            "{}: child of SERVER",
            c.name
        );
        assert_eq!(c.name, "PRODUCTS_SERVICE GET /products/:id");
        assert_eq!(s(c, "span.kind"), "client");
        assert_eq!(s(c, "service.name"), "PRODUCTS_SERVICE");
        assert_eq!(s(c, "envoy.cluster.name"), "products");
        assert_eq!(
            s(c, "http.route"),
            "/api/products/:id",
            "route of the original path"
        );
        assert_eq!(s(c, "url.template"), "/products/:id");
        // From the upstream side: Host unchanged by the route, so the upstream host it went to.
        assert_eq!(s(c, "url.full"), "http://127.0.0.1:18082/products/p-1");
        assert_eq!(s(c, "server.address"), "127.0.0.1");
        assert_eq!(i(c, "server.port"), Some(18082));
        assert_eq!(s(c, "network.peer.address"), "127.0.0.1");
        assert_eq!(i(c, "network.peer.port"), Some(18082));
        assert_eq!(s(c, "network.protocol.name"), "http");
        assert_eq!(
            s(c, "network.protocol.version"),
            "1.1",
            "clusters.products.protocol_version (Envoy does not tell a filter)"
        );
        assert_eq!(c.service(), Some("ecomm-ms-gateway"));
        assert!(
            server.start_ns <= c.start_ns && c.end_ns <= server.end_ns,
            "{}: attempt inside the SERVER span",
            c.name
        );
    }
    let (first, second) = (clients[0], clients[1]);
    assert_eq!(
        first.status_code, STATUS_ERROR,
        "the 503 attempt is an error"
    );
    assert_eq!(i(first, "http.response.status_code"), Some(503));
    assert_eq!(s(first, "error.type"), "503");
    assert!(
        first.attr("http.request.resend_count").is_none(),
        "first attempt: none"
    );
    assert_eq!(second.status_code, STATUS_UNSET);
    assert_eq!(i(second, "http.response.status_code"), Some(200));
    assert_eq!(i(second, "http.request.resend_count"), Some(1));
    assert!(
        first.end_ns <= second.start_ns,
        "the retry starts after the first attempt"
    );

    // --- every attempt fails: three CLIENT spans, resend counts 1 and 2 ------------------------
    products.clear();
    products.fail_next(3, 503);
    let r = send(GATEWAY, "GET", "/api/products", &[], "");
    assert_eq!(r.status, 503);
    let reqs = products.wait_for_requests(3, WAIT).expect("three attempts");
    let saw = traceparents(&reqs);
    let mut ids: Vec<_> = saw.iter().map(|(_, id)| id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "three different parent ids upstream");
    let spans = trace_spans(&collector, &saw[0].0, 4);
    let (server, clients) = split(&spans, &saw);
    assert_eq!(server.name, "GET /api/products");
    assert_eq!(server.status_code, STATUS_ERROR);
    let resend: Vec<_> = clients
        .iter()
        .map(|c| i(c, "http.request.resend_count"))
        .collect();
    assert_eq!(resend, [None, Some(1), Some(2)]);
    for c in &clients {
        assert_eq!(c.parent_span_id, server.span_id);
        assert_eq!(c.status_code, STATUS_ERROR);
        assert_eq!(c.name, "PRODUCTS_SERVICE GET /products");
    }

    // --- no retry: one CLIENT span, no resend count --------------------------------------------
    products.clear();
    let r = send(GATEWAY, "GET", "/api/products", &[], "");
    assert_eq!(r.status, 200);
    let reqs = products.wait_for_requests(1, WAIT).expect("one attempt");
    let saw = traceparents(&reqs);
    let spans = trace_spans(&collector, &saw[0].0, 2);
    let (server, clients) = split(&spans, &saw);
    assert_eq!(clients[0].parent_span_id, server.span_id);
    assert!(clients[0].attr("http.request.resend_count").is_none());
    assert_eq!(clients[0].status_code, STATUS_UNSET);

    // --- Durable Object naming from the original path (regex rewrite moves the id) -------------
    cart.fail_next(1, 503);
    let r = send(
        GATEWAY,
        "POST",
        "/api/cart/c-42/add",
        &[],
        r#"{"productId":"p-1"}"#,
    );
    assert_eq!(r.status, 200);
    let reqs = cart.wait_for_requests(2, WAIT).expect("two attempts");
    assert_eq!(reqs[1].path, "/cart/add?cartId=c-42");
    assert_eq!(
        reqs[1].body, r#"{"productId":"p-1"}"#,
        "the body is replayed on the retry"
    );
    let saw = traceparents(&reqs);
    let spans = trace_spans(&collector, &saw[0].0, 3);
    let (server, clients) = split(&spans, &saw);
    assert_eq!(server.name, "POST /api/cart/:cartId/add");
    for c in &clients {
        assert_eq!(c.name, "CartDurableObject POST /cart/add");
        assert_eq!(s(c, "durable_object.name"), "CartDurableObject");
        assert_eq!(s(c, "durable_object.id"), "c-42");
        assert_eq!(c.parent_span_id, server.span_id);
    }
    assert_eq!(i(clients[1], "http.request.resend_count"), Some(1));

    // --- every span counted as exported, none dropped -------------------------------------------
    std::thread::sleep(Duration::from_millis(700));
    let all = collector.spans();
    let stat = |n: &str| {
        envoy
            .stat(&format!("wasmcustom.gateway_tracing.{n}"))
            .unwrap()
            .unwrap_or(0)
    };
    assert_eq!(
        stat("spans_exported") as usize,
        all.len(),
        "both root contexts count"
    );
    assert_eq!(
        stat("spans_dropped_queue_full") + stat("spans_dropped_export_failed"),
        0
    );
}

/// What an attempt's CLIENT span covers when the request body arrives slowly: the first
/// attempt starts when the router starts it (at the request headers), so the upload is inside
/// it; a retry replays the buffered body and is short.
#[test]
fn first_attempt_covers_the_body_upload_and_a_retry_does_not() {
    use std::io::{Read, Write};
    let _lock = ports_lock();
    let collector = Collector::start("127.0.0.1:4318").expect("collector port 4318 free");
    let products = Stub::start_named("products", "127.0.0.1:18082").unwrap();
    let _envoy = start_envoy(&repo_root().join(CONFIG), 9901, 0, vec![]);

    products.fail_next(1, 503);
    let chunk = "x".repeat(20_000);
    let mut s = std::net::TcpStream::connect(GATEWAY).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /api/products HTTP/1.1\r\nhost: shop.local\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        3 * chunk.len()
    )
    .unwrap();
    let sent_at = std::time::Instant::now();
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1000));
        }
        s.write_all(chunk.as_bytes()).unwrap();
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    assert!(sent_at.elapsed() >= Duration::from_millis(2000));

    let reqs = products.wait_for_requests(2, WAIT).expect("two attempts");
    assert_eq!(reqs[1].body.len(), 60_000, "the retry gets the whole body");
    let saw = traceparents(&reqs);
    let spans = trace_spans(&collector, &saw[0].0, 3);
    let (server, clients) = split(&spans, &saw);
    let ms = |sp: &RecordedSpan| sp.duration_ms();
    eprintln!(
        "upload 60 kB at 20 kB/s: SERVER {:.0} ms, attempt 1 {:.0} ms, attempt 2 {:.0} ms, attempt 1 starts {:.1} ms after SERVER",
        ms(server),
        ms(clients[0]),
        ms(clients[1]),
        (clients[0].start_ns - server.start_ns) as f64 / 1e6
    );
    assert!(
        ms(clients[0]) >= 1900.0,
        "attempt 1 includes the upload: {:.0} ms",
        ms(clients[0])
    );
    assert!(
        ms(clients[1]) < 500.0,
        "the retry replays the buffered body: {:.0} ms",
        ms(clients[1])
    );
}

/// Hedging: the first attempt is slow, a hedge starts at the per-try timeout and wins; the
/// first attempt is abandoned. Two overlapping CLIENT spans, both under the SERVER span.
#[test]
fn a_hedged_request_has_overlapping_attempt_spans() {
    let _lock = ports_lock();
    let mut yaml = std::fs::read_to_string(repo_root().join(CONFIG)).unwrap();
    let from = "retry_policy: { retry_on: 5xx, num_retries: 2 }";
    assert_eq!(yaml.matches(from).count(), 1, "{CONFIG} drifted");
    yaml = yaml.replacen(
        from,
        "retry_policy: { retry_on: 5xx, num_retries: 1, per_try_timeout: 0.3s }\n                  hedge_policy: { hedge_on_per_try_timeout: true }",
        1,
    );
    let dir = std::env::temp_dir().join(format!("gateway-tracing-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("hedged.yaml");
    std::fs::write(&config, yaml).unwrap();

    let collector = Collector::start("127.0.0.1:4318").expect("collector port 4318 free");
    let products = Stub::start_named("products", "127.0.0.1:18082").unwrap();
    let _envoy = start_envoy(&config, 9901, 0, vec![]);

    products.delay_next(1, 1500);
    let r = send(GATEWAY, "GET", "/api/products/p-9", &[], "");
    assert_eq!(r.status, 200, "the hedge answered");
    let reqs = products.wait_for_requests(2, WAIT).expect("two attempts");
    let saw = traceparents(&reqs);
    assert_ne!(saw[0].1, saw[1].1, "each attempt carries its own parent id");
    let spans = trace_spans(&collector, &saw[0].0, 3);
    let (server, clients) = split(&spans, &saw);
    let (slow, hedge) = (clients[0], clients[1]);
    for c in [slow, hedge] {
        assert_eq!(
            c.parent_span_id, server.span_id,
            "{}: child of SERVER",
            c.name
        );
        assert_eq!(c.name, "PRODUCTS_SERVICE GET /products/:id");
    }
    assert_eq!(i(hedge, "http.request.resend_count"), Some(1));
    assert_eq!(hedge.status_code, STATUS_UNSET);
    assert_eq!(i(hedge, "http.response.status_code"), Some(200));
    assert!(hedge.start_ns < slow.end_ns, "the attempts overlap");
    eprintln!(
        "hedged: slow attempt {:.0} ms status {} {:?}, hedge {:.0} ms",
        slow.duration_ms(),
        slow.status_code,
        slow.status_message,
        hedge.duration_ms()
    );
    assert_eq!(
        slow.status_code, STATUS_ERROR,
        "the abandoned attempt had no response"
    );
    assert!(slow.attr("http.response.status_code").is_none());
    assert!(slow.end_ns <= server.end_ns);
}
