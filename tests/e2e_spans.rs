//! End-to-end in the real Envoy: the span options a platform team turns on. Ratio sampling
//! that two hops (gateway and cart sidecar, two Envoys) agree on; failed requests kept when
//! the ratio said no; a request-header allowlist with redaction; per-target call metrics in
//! Envoy's stats; and trace ids in Envoy's access log matching the exported spans.

mod common;

use common::{ports_lock, repo_root, send, split_traceparent, start_envoy};
use demo::collector::Collector;
use std::path::PathBuf;
use std::time::Duration;
use support::Stub;

const WAIT: Duration = Duration::from_secs(10);
/// Randomness (low 56 bits of the trace id) ~0.81 of the range: sampled at ratio 0.5.
const HIGH: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// Randomness ~0.07: not sampled at ratio 0.5.
const LOW: &str = "0af7651916cd43dd8448eb211c80319c";

fn edited(file: &str, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut yaml = std::fs::read_to_string(repo_root().join(file)).unwrap();
    for (from, to) in edits {
        assert!(yaml.contains(from), "{file} no longer contains {from:?}");
        yaml = yaml.replacen(from, to, 1);
    }
    let dir =
        std::env::temp_dir().join(format!("gateway-tracing-e2e-spans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn span_options_in_real_envoy() {
    let _ports = ports_lock();
    let collector = Collector::start("127.0.0.1:4318").unwrap();
    let products = Stub::start_named("products", "127.0.0.1:18082").unwrap();
    let cart_service = Stub::start_named("cart-service", "127.0.0.1:18083").unwrap();
    let access_log =
        std::env::temp_dir().join(format!("gateway-tracing-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&access_log);

    let ratio = r#""sampler": "traceidratio", "sampler_ratio": 0.5,"#;
    let gateway = edited(
        "envoy/gateway.yaml",
        "gateway-spans.yaml",
        &[
            (
                r#""mode": "gateway","#,
                &format!(
                    r#""mode": "gateway", {ratio} "sampler_keep_errors": true,
                       "request_headers": ["x-request-id", "x-tenant", "authorization"],
                       "access_log_ids": true, "call_metrics": true,"#
                ),
            ),
            (
                "          stat_prefix: gateway\n",
                &format!(
                    "          stat_prefix: gateway\n          access_log:\n          - name: envoy.access_loggers.file\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n              path: {}\n              log_format:\n                text_format_source:\n                  inline_string: \"%REQ(X-TEST-ID)% %FILTER_STATE(wasm.gateway_tracing.trace_id:PLAIN)% %FILTER_STATE(wasm.gateway_tracing.span_id:PLAIN)% %RESPONSE_CODE%\\n\"\n",
                    access_log.display()
                ),
            ),
        ],
    );
    let sidecar = edited(
        "envoy/cart-sidecar.yaml",
        "sidecar-spans.yaml",
        &[(
            r#""mode": "sidecar_inbound","#,
            &format!(r#""mode": "sidecar_inbound", {ratio}"#),
        )],
    );
    let gw = start_envoy(&gateway, 9901, 210, vec![]);
    let _sc = start_envoy(&sidecar, 9902, 211, vec![]);

    // --- ratio sampling: both hops decide the same from the trace id ----------------------
    for (trace, incoming_flags, sampled) in [(HIGH, "00", true), (LOW, "01", false)] {
        let before = cart_service.requests().len();
        let tp = format!("00-{trace}-00f067aa0ba902b7-{incoming_flags}");
        let r = send(
            "127.0.0.1:10000",
            "POST",
            "/api/cart/c-7/add",
            &[("traceparent", tp.as_bytes()), ("x-test-id", b"ratio")],
            "",
        );
        assert_eq!(r.status, 200, "{trace}");
        let reqs = cart_service.requests();
        assert_eq!(reqs.len(), before + 1);
        let got = reqs.last().unwrap().header_values("traceparent");
        assert_eq!(got.len(), 1);
        let (got_trace, _) = split_traceparent(got[0]);
        assert_eq!(got_trace, trace, "one trace across both hops");
        assert!(
            got[0].ends_with(if sampled { "-01" } else { "-00" }),
            "{trace}: the service behind the sidecar gets {}",
            got[0]
        );
        if sampled {
            // gateway SERVER + CLIENT, sidecar SERVER
            let spans = collector.wait_for(WAIT, |s| {
                s.iter().filter(|s| s.trace_id == trace).count() >= 3
            });
            assert!(spans.is_ok(), "{trace}: all three spans from two Envoys");
        }
    }
    std::thread::sleep(Duration::from_millis(1_200)); // two flush intervals
    assert!(
        collector.trace(LOW).is_empty(),
        "neither hop recorded the unsampled trace"
    );

    // --- keep errors: a failed call the ratio dropped is still recorded ----------------------
    let tp = format!("00-{LOW}-00f067aa0ba902b8-01");
    let r = send(
        "127.0.0.1:10000",
        "GET",
        "/api/legacy/x",
        &[("traceparent", tp.as_bytes())],
        "",
    );
    assert_eq!(r.status, 503);
    let kept = collector.wait_for(WAIT, |s| {
        s.iter()
            .any(|s| s.trace_id == LOW && s.name.starts_with("LEGACY_SERVICE"))
    });
    assert!(kept.is_ok(), "the failed, unsampled call was kept");

    // --- header allowlist with redaction ------------------------------------------------------
    let tp = format!("00-{HIGH}-00f067aa0ba902b9-01");
    let r = send(
        "127.0.0.1:10000",
        "GET",
        "/api/products/p-1",
        &[
            ("traceparent", tp.as_bytes()),
            ("x-tenant", b"acme"),
            ("authorization", b"Bearer s3cret"),
            ("x-test-id", b"headers"),
        ],
        "",
    );
    assert_eq!(r.status, 200);
    let req = products.requests().last().cloned().unwrap();
    let (_, client_id) = split_traceparent(req.header_values("traceparent")[0]);
    let spans = collector
        .wait_for(WAIT, |s| s.iter().any(|s| s.span_id == client_id))
        .unwrap_or_else(|all| panic!("no CLIENT span {client_id}: {} spans", all.len()));
    let client = spans.iter().find(|s| s.span_id == client_id).unwrap();
    let server = spans
        .iter()
        .find(|s| s.span_id == client.parent_span_id)
        .unwrap();
    let attr = |k: &str| server.attr(k).map(|v| format!("{v:?}")).unwrap_or_default();
    assert!(
        attr("http.request.header.x-tenant").contains("acme"),
        "{:?}",
        server.attributes
    );
    assert!(attr("http.request.header.authorization").contains("REDACTED"));
    assert!(
        attr("http.request.header.x-request-id").len() > 10,
        "Envoy's x-request-id recorded by default"
    );
    let everything = format!("{:?}", collector.spans());
    assert!(
        !everything.contains("s3cret"),
        "the secret never reaches a span"
    );

    // --- per-target call metrics ----------------------------------------------------------------
    wait_until("call metrics", || {
        gw.stat("wasmcustom.gateway_tracing.call.PRODUCTS_SERVICE.rq_2xx")
            .ok()
            .flatten()
            == Some(1)
    });
    // The two cart calls were one sampled, one not: both counted, under the Durable Object's name.
    assert_eq!(
        gw.stat("wasmcustom.gateway_tracing.call.CartDurableObject.rq_2xx")
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        gw.stat("wasmcustom.gateway_tracing.call.LEGACY_SERVICE.failed")
            .unwrap(),
        Some(1)
    );
    let stats = gw.stats().unwrap();
    assert!(
        stats.contains("gateway_tracing.call.PRODUCTS_SERVICE.duration_ms"),
        "duration histogram defined"
    );

    // --- access-log correlation -------------------------------------------------------------------
    wait_until("access log", || {
        std::fs::read_to_string(&access_log).is_ok_and(|t| t.contains("headers "))
    });
    let log = std::fs::read_to_string(&access_log).unwrap();
    let line = log.lines().find(|l| l.starts_with("headers ")).unwrap();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(
        fields[1], HIGH,
        "access log trace id = exported trace id: {line}"
    );
    assert_eq!(
        fields[2], server.span_id,
        "access log span id = the SERVER span: {line}"
    );
    // Also for Envoy's local replies (no upstream call):
    let tp = format!("00-{HIGH}-00f067aa0ba902ba-01");
    send(
        "127.0.0.1:10000",
        "GET",
        "/healthz",
        &[("traceparent", tp.as_bytes()), ("x-test-id", b"local")],
        "",
    );
    wait_until("local reply logged", || {
        std::fs::read_to_string(&access_log).is_ok_and(|t| t.contains("local "))
    });
    let log = std::fs::read_to_string(&access_log).unwrap();
    let line = log.lines().find(|l| l.starts_with("local ")).unwrap();
    assert!(
        line.starts_with(&format!("local {HIGH} ")) && line.ends_with(" 200"),
        "{line}"
    );
}
