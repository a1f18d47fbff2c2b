//! Propagation conformance through the real Envoy (issue 9): the W3C Trace Context Level 2
//! edge cases, B3 single and multi, baggage, the optional response header, and the untrusted
//! edge with a spoofed `X-Forwarded-For` / `X-Forwarded-Proto`. Every assertion is on what
//! the stub upstream received, what the client got back, and what reached the collector.
//!
//! The collector here decodes OTLP itself (it needs span links, which the demo collector
//! does not keep).
mod common;

use common::{gateway_config_with, ports_lock, send, start_envoy, Response};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Stub, StubRequest};

const GATEWAY: &str = "127.0.0.1:10000";
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP protobuf receiver on the collector port that keeps whole spans.
struct Otlp {
    spans: Arc<Mutex<Vec<Span>>>,
    _server: demo::http::ServerHandle,
}

impl Otlp {
    fn start() -> Otlp {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let sink = Arc::clone(&spans);
        let server =
            demo::http::ServerHandle::spawn("127.0.0.1:4318", 2, "otlp", move |mut req| {
                let body = demo::http::read_body(&mut req).unwrap_or_default();
                if let Ok(export) = ExportTraceServiceRequest::decode(body.as_slice()) {
                    let mut all = sink.lock().unwrap();
                    for rs in export.resource_spans {
                        for ss in rs.scope_spans {
                            all.extend(ss.spans);
                        }
                    }
                }
                demo::http::respond_bytes(req, 200, "application/x-protobuf", Vec::new());
            })
            .expect("collector port 4318 free");
        Otlp {
            spans,
            _server: server,
        }
    }

    /// The spans of `trace`, waiting until there are `n`.
    fn trace(&self, trace: &str, n: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got: Vec<Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| hex(&s.trace_id) == trace)
                .cloned()
                .collect();
            if got.len() >= n || Instant::now() > deadline {
                assert!(got.len() >= n, "trace {trace}: {} of {n} spans", got.len());
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Otlp {
    /// The SERVER span of the call whose upstream `traceparent` was `t` (its CLIENT span is
    /// the one the upstream was told about).
    fn server_of(&self, t: &[String; 3]) -> Span {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.spans.lock().unwrap().clone();
            let client = all
                .iter()
                .find(|s| s.kind == CLIENT && hex(&s.span_id) == t[1]);
            if let Some(server) = client.and_then(|c| {
                all.iter()
                    .find(|s| s.kind == SERVER && s.span_id == c.parent_span_id)
            }) {
                return server.clone();
            }
            assert!(Instant::now() < deadline, "no SERVER span for {t:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn kind(spans: &[Span], kind: i32) -> &Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind).collect();
    assert_eq!(found.len(), 1, "one span of kind {kind}");
    found[0]
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            other => format!("{other:?}"),
        })
}

/// Sends one request to the products route and returns the response, the one request the
/// stub received, and the traceparent it got split into (trace, span, flags).
fn call(stub: &Stub, headers: &[(&str, &[u8])]) -> (Response, StubRequest, [String; 3]) {
    let before = stub.requests().len();
    let resp = send(GATEWAY, "GET", "/api/products/p-1", headers, "");
    assert_eq!(resp.status, 200, "never a 5xx for propagation headers");
    let reqs = stub.requests();
    assert_eq!(reqs.len(), before + 1);
    let req = reqs.into_iter().last().unwrap();
    let tps = req.header_values("traceparent");
    assert_eq!(tps.len(), 1, "exactly one traceparent upstream: {tps:?}");
    let parts: Vec<String> = tps[0].split('-').map(str::to_string).collect();
    assert_eq!(parts.len(), 4, "{}", tps[0]);
    assert_eq!(parts[0], "00");
    let tp = [parts[1].clone(), parts[2].clone(), parts[3].clone()];
    (resp, req, tp)
}

fn tp(flags: &str) -> String {
    format!("00-{TRACE}-{SPAN}-{flags}")
}

#[test]
fn w3c_level2_b3_baggage_and_response_header_through_envoy() {
    let _lock = ports_lock();
    let otlp = Otlp::start();
    let products = Stub::start_named("products", "127.0.0.1:18082").unwrap();
    let config = gateway_config_with(
        "propagation-trusted.yaml",
        &[(
            r#""mode": "gateway","#,
            r#""mode": "gateway", "propagators": ["tracecontext", "b3", "b3multi"], "response_trace_header": "traceresponse","#,
        )],
    );
    let _envoy = start_envoy(&config, 9901, 0, vec![]);

    // --- deviation 1: Level 2 tracestate keys pass (§3.3.1.3.1) --------------------------------
    let long_tenant = format!("{}@x=1", "a".repeat(242));
    for (ts, want) in [
        ("foo@=1,bar=2", "foo@=1,bar=2"),
        ("foo@@bar=1", "foo@@bar=1"),
        ("foo@bar@baz=1", "foo@bar@baz=1"),
        (long_tenant.as_str(), long_tenant.as_str()),
    ] {
        let (_, req, _) = call(
            &products,
            &[
                ("traceparent", tp("01").as_bytes()),
                ("tracestate", ts.as_bytes()),
            ],
        );
        assert_eq!(
            req.header_values("tracestate"),
            [want],
            "Level 2 key {ts:?} kept"
        );
    }
    for ts in ["@foo=1", "Foo=1", &format!("{}=1", "a".repeat(257))] {
        let (_, req, _) = call(
            &products,
            &[
                ("traceparent", tp("01").as_bytes()),
                ("tracestate", ts.as_bytes()),
            ],
        );
        assert!(
            req.header_values("tracestate").is_empty(),
            "Level 2 still refuses {ts:?}"
        );
    }

    // --- deviation 2: duplicate keys: first kept, the rest passed on (§3.3.1.1) ----------------
    let (_, req, _) = call(
        &products,
        &[
            ("traceparent", tp("01").as_bytes()),
            ("tracestate", b"foo=1,foo=2"),
        ],
    );
    assert_eq!(req.header_values("tracestate"), ["foo=1"]);
    let (_, req, trace_of_dup) = call(
        &products,
        &[
            ("traceparent", tp("01").as_bytes()),
            ("tracestate", b"foo=1"),
            ("tracestate", b"foo=2,bar=3"),
        ],
    );
    assert_eq!(
        req.header_values("tracestate"),
        ["foo=1,bar=3"],
        "split across two headers"
    );
    assert_eq!(otlp.server_of(&trace_of_dup).trace_state, "foo=1,bar=3");

    // --- deviation 3: the random trace-id flag (§3.2.2.5.2) ------------------------------------
    let (_, _, t) = call(&products, &[("traceparent", tp("03").as_bytes())]);
    assert_eq!(
        (t[0].as_str(), t[2].as_str()),
        (TRACE, "03"),
        "-03 stays -03"
    );
    let (_, _, t) = call(&products, &[("traceparent", tp("02").as_bytes())]);
    assert_eq!(
        (t[0].as_str(), t[2].as_str()),
        (TRACE, "02"),
        "-02 stays -02 (not sampled)"
    );
    let (resp, _, new) = call(&products, &[]);
    assert_eq!(new[2], "03", "a trace we start has a random id: -03");
    let spans = otlp.trace(&new[0], 2);
    for s in &spans {
        assert_eq!(
            s.flags & 0xff,
            0x03,
            "{}: OTLP flags carry the W3C flags",
            s.name
        );
    }
    let server = kind(&spans, SERVER);
    let client = kind(&spans, CLIENT);

    // --- response_trace_header: traceresponse names our SERVER span ------------------------------
    assert_eq!(
        resp.header_values("traceresponse"),
        [format!("00-{}-{}-03", new[0], hex(&server.span_id))]
    );

    // --- CLIENT url.full from the upstream side ---------------------------------------------------
    assert_eq!(
        attr(client, "url.full").as_deref(),
        Some("http://127.0.0.1:18082/products/p-1")
    );
    assert_eq!(attr(client, "server.address").as_deref(), Some("127.0.0.1"));

    // --- B3 single and multi are continued and written with our span ---------------------------
    let b3_trace = "80f198ee56343ba864fe8b2a57d3eff7";
    for (headers, form) in [
        (
            vec![("b3", format!("{b3_trace}-e457b5a2e4d86bd1-1"))],
            "single",
        ),
        (
            vec![
                ("x-b3-traceid", b3_trace.to_string()),
                ("x-b3-spanid", "e457b5a2e4d86bd1".to_string()),
                ("x-b3-sampled", "1".to_string()),
            ],
            "multi",
        ),
    ] {
        let h: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        let (_, req, t) = call(&products, &h);
        assert_eq!(t[0], b3_trace, "B3 {form}: the trace continues");
        assert_eq!(
            req.header_values("b3"),
            [format!("{b3_trace}-{}-1", t[1])],
            "B3 {form}: b3 written with our span"
        );
        assert_eq!(req.header_values("x-b3-traceid"), [b3_trace], "B3 {form}");
        assert_eq!(
            req.header_values("x-b3-spanid"),
            [t[1].as_str()],
            "B3 {form}: our span, not the caller's"
        );
        assert_eq!(req.header_values("x-b3-sampled"), ["1"], "B3 {form}");
        let spans = otlp.trace(b3_trace, 2);
        let server = spans.iter().rev().find(|s| s.kind == SERVER).unwrap();
        assert_eq!(
            hex(&server.parent_span_id),
            "e457b5a2e4d86bd1",
            "B3 {form}: SERVER is the caller's child"
        );
        otlp.spans
            .lock()
            .unwrap()
            .retain(|s| hex(&s.trace_id) != b3_trace);
    }

    // --- B3 sampling state without ids: b3: 0 is a deny that goes on ---------------------------
    let (_, req, t) = call(&products, &[("b3", b"0")]);
    assert_eq!(t[2], "02", "not sampled, our random trace id");
    assert_eq!(req.header_values("b3"), [format!("{}-{}-0", t[0], t[1])]);

    // --- baggage passes through untouched ------------------------------------------------------
    let (_, req, _) = call(
        &products,
        &[
            ("traceparent", tp("01").as_bytes()),
            ("baggage", b"userId=alice,isProduction=false"),
        ],
    );
    assert_eq!(
        req.header_values("baggage"),
        ["userId=alice,isProduction=false"]
    );

    // --- spoofed XFF / XFP with the shipped edge settings (use_remote_address: true) ------------
    let (_, req, t) = call(
        &products,
        &[
            ("x-forwarded-for", b"203.0.113.7"),
            ("x-forwarded-proto", b"https"),
        ],
    );
    let spans = otlp.trace(&t[0], 2);
    let server = kind(&spans, SERVER);
    assert_eq!(
        attr(server, "client.address").as_deref(),
        Some("127.0.0.1"),
        "the peer, not the client's XFF"
    );
    eprintln!(
        "trusted, use_remote_address: true, spoofed XFP https: url.scheme={:?} server.port={:?}; upstream x-forwarded-proto={:?} x-forwarded-for={:?}",
        attr(server, "url.scheme"),
        attr(server, "server.port"),
        req.header_values("x-forwarded-proto"),
        req.header_values("x-forwarded-for"),
    );
}

#[test]
fn untrusted_edge_links_instead_of_continuing_and_ignores_spoofed_forwarding_headers() {
    let _lock = ports_lock();
    let otlp = Otlp::start();
    let products = Stub::start_named("products", "127.0.0.1:18082").unwrap();
    let config = gateway_config_with(
        "propagation-untrusted.yaml",
        &[(
            r#""mode": "gateway","#,
            r#""mode": "gateway", "trust": "untrusted","#,
        )],
    );
    let _envoy = start_envoy(&config, 9901, 0, vec![]);

    let (_, req, t) = call(
        &products,
        &[
            ("traceparent", tp("01").as_bytes()),
            ("tracestate", b"congo=t61rcWkgMzE"),
            ("x-forwarded-for", b"203.0.113.7"),
            ("x-forwarded-proto", b"https"),
        ],
    );
    assert_ne!(t[0], TRACE, "a new trace at the untrusted edge");
    assert_eq!(
        t[2], "03",
        "our own random trace id, recorded by our sampler"
    );
    assert!(
        req.header_values("tracestate").is_empty(),
        "the caller's tracestate stays with its trace"
    );
    let spans = otlp.trace(&t[0], 2);
    let server = kind(&spans, SERVER);
    let client = kind(&spans, CLIENT);
    assert!(server.parent_span_id.is_empty(), "SERVER is a root");
    assert_eq!(
        server.links.len(),
        1,
        "the incoming context is kept as a link"
    );
    let link = &server.links[0];
    assert_eq!(
        (hex(&link.trace_id), hex(&link.span_id)),
        (TRACE.to_string(), SPAN.to_string())
    );
    assert_eq!(link.trace_state, "congo=t61rcWkgMzE");
    assert!(client.links.is_empty());
    assert_eq!(
        attr(server, "client.address").as_deref(),
        Some("127.0.0.1"),
        "client.address is the peer"
    );
    assert_eq!(
        attr(server, "url.scheme").as_deref(),
        Some("http"),
        "the plaintext listener, not XFP"
    );
    assert_eq!(attr(server, "server.port").as_deref(), Some("80"));

    // A client forcing -00 does not switch recording off either.
    let (_, _, t) = call(&products, &[("traceparent", tp("00").as_bytes())]);
    assert_eq!(t[2], "03");
    otlp.trace(&t[0], 2);
}

/// Pins the README's claim: with Envoy's defaults (no `use_remote_address`), a client-written
/// X-Forwarded-For becomes `source.address`, so `client.address` is attacker input.
#[test]
fn envoy_defaults_take_client_address_from_a_spoofed_xff() {
    let _lock = ports_lock();
    let otlp = Otlp::start();
    let products = Stub::start_named("products", "127.0.0.1:18082").unwrap();
    let config = gateway_config_with(
        "propagation-envoy-defaults.yaml",
        &[(
            "          use_remote_address: true\n          xff_num_trusted_hops: 0\n",
            "",
        )],
    );
    let _envoy = start_envoy(&config, 9901, 0, vec![]);
    let (_, _, t) = call(
        &products,
        &[
            ("x-forwarded-for", b"203.0.113.7"),
            ("x-forwarded-proto", b"https"),
        ],
    );
    let spans = otlp.trace(&t[0], 2);
    let server = kind(&spans, SERVER);
    eprintln!(
        "Envoy defaults, spoofed XFF/XFP: client.address={:?} url.scheme={:?} server.port={:?}",
        attr(server, "client.address"),
        attr(server, "url.scheme"),
        attr(server, "server.port")
    );
    assert_eq!(
        attr(server, "client.address").as_deref(),
        Some("203.0.113.7")
    );
}

/// Unrecorded requests take the lean start (`parentbased_always_off` here): Envoy's
/// `request.headers.<name>` attribute gives `traceparent` and `tracestate`, duplicates joined
/// with a comma, and the header map is read only once a request is recorded. The outcome must
/// be what the map gives (the unit test `lean_read_agrees_with_the_map`), here in the real Envoy.
#[test]
fn lean_start_reads_the_trace_context_alone_for_unrecorded_requests() {
    let _lock = ports_lock();
    let otlp = Otlp::start();
    let products = Stub::start_named("products", "127.0.0.1:18082").unwrap();
    let config = gateway_config_with(
        "propagation-lean.yaml",
        &[(
            r#""mode": "gateway","#,
            r#""mode": "gateway", "sampler": "parentbased_always_off","#,
        )],
    );
    let _envoy = start_envoy(&config, 9901, 0, vec![]);

    // No parent: a new trace, not sampled, random flag; nothing recorded.
    let (_, _, root) = call(&products, &[]);
    assert_ne!(root[0], TRACE);
    assert_eq!(root[2], "02", "our random trace id, not sampled");

    // An unsampled parent continues, tracestate (two headers, joined by Envoy) goes on.
    let (_, req, t) = call(
        &products,
        &[
            ("traceparent", tp("00").as_bytes()),
            ("tracestate", b"foo=1"),
            ("tracestate", b"bar=2"),
        ],
    );
    assert_eq!((t[0].as_str(), t[2].as_str()), (TRACE, "00"));
    assert_ne!(t[1], SPAN, "our CLIENT span id, not the caller's");
    assert_eq!(req.header_values("tracestate"), ["foo=1,bar=2"]);

    // A duplicated traceparent restarts the trace: Envoy's joined value shows both.
    let (_, req, t) = call(
        &products,
        &[
            ("traceparent", tp("00").as_bytes()),
            ("traceparent", tp("00").as_bytes()),
            ("tracestate", b"foo=1"),
        ],
    );
    assert_ne!(t[0], TRACE, "duplicated traceparent: a new trace");
    assert!(
        req.header_values("tracestate").is_empty(),
        "the old tracestate does not follow a new trace"
    );

    // An orphan tracestate is removed.
    let (_, req, _) = call(&products, &[("tracestate", b"foo=1")]);
    assert!(req.header_values("tracestate").is_empty());

    // A sampled parent is recorded: the header map is read after the lean read, and the spans
    // carry the request's details.
    let (_, _, t) = call(&products, &[("traceparent", tp("01").as_bytes())]);
    assert_eq!((t[0].as_str(), t[2].as_str()), (TRACE, "01"));
    let spans = otlp.trace(TRACE, 2);
    let server = kind(&spans, SERVER);
    assert_eq!(hex(&server.parent_span_id), SPAN);
    assert_eq!(
        attr(server, "user_agent.original").as_deref(),
        Some("e2e-test/1")
    );
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(server, "url.path").as_deref(),
        Some("/api/products/p-1")
    );
    let client = kind(&spans, CLIENT);
    assert_eq!(
        hex(&client.span_id),
        t[1],
        "the CLIENT span is the one sent upstream"
    );
    assert_eq!(
        otlp.spans.lock().unwrap().len(),
        2,
        "only the sampled request made spans"
    );
}
