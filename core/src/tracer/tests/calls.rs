//! Per-target call metrics: which target, which class, how long; sampled or not.

use super::*;
use crate::tracer::calls::{self, CallClass, CallRecord};

#[test]
fn call_records_by_target_and_class() {
    struct Row {
        cluster: Option<&'static str>,
        done: Completion,
        want: Option<(usize, CallClass)>,
        reason: &'static str,
    }
    let cfg =
        config(&GATEWAY.replacen('{', r#"{"call_metrics": true, "sampler": "always_off","#, 1));
    // GATEWAY's clusters in name order: auth, cart, products.
    assert_eq!(
        calls::targets(&cfg),
        ["AUTH_SERVICE", "CART_SERVICE", "PRODUCTS_SERVICE"]
    );
    #[rustfmt::skip]
    let rows = [
        Row { cluster: Some("products"), done: answered(200), want: Some((2, CallClass::Status2xx)), reason: "2xx, counted although not sampled" },
        Row { cluster: Some("auth"), done: answered(302), want: Some((0, CallClass::Status3xx)), reason: "3xx" },
        Row { cluster: Some("cart"), done: answered(404), want: Some((1, CallClass::Status4xx)), reason: "4xx" },
        Row { cluster: Some("products"), done: answered(503), want: Some((2, CallClass::Status5xx)), reason: "upstream 5xx" },
        Row { cluster: Some("products"), done: connection_failure(), want: Some((2, CallClass::Failed)), reason: "no response: failed" },
        Row { cluster: Some("unlisted"), done: answered(200), want: None, reason: "a cluster not in `clusters` has no metrics" },
        Row { cluster: None, done: local_reply(200, "direct_response"), want: None, reason: "no upstream call" },
        Row { cluster: Some("products"), done: local_reply(403, "rbac_access_denied"), want: None, reason: "stopped before the router" },
    ];
    for r in rows {
        let mut host = request("GET", "/api/products/p-1", r.cluster);
        let mut req = start(&cfg, &mut host, &MockStats::new());
        assert_eq!(
            req.wants_completion(&cfg),
            r.cluster.is_some(),
            "{}",
            r.reason
        );
        req.response_complete(START + 3_000_000);
        let done = Completion {
            end_ns: START + 9_000_000,
            ..r.done
        };
        let got = calls::record(&cfg, &req, &done);
        assert_eq!(
            got.map(|c: CallRecord| (c.target, c.class)),
            r.want,
            "{}",
            r.reason
        );
        if let Some(c) = got {
            assert_eq!(
                c.duration_ms, 3,
                "{}: the call ends with the response",
                r.reason
            );
        }
    }
    let off = config(GATEWAY);
    let mut host = request("GET", "/api/products/p-1", Some("products"));
    let req = start(&off, &mut host, &MockStats::new());
    assert_eq!(
        calls::record(&off, &req, &answered(200)),
        None,
        "off by default"
    );
}

#[test]
fn target_names_are_stat_safe() {
    let cfg = config(
        r#"{"clusters": {"a": {"service": "svc.v2 beta"}, "b": {"durable_object": {"name": "Cart/DO", "id": {"header": "x-id"}}}}, "exporter": {"cluster": "otel"}}"#,
    );
    assert_eq!(calls::targets(&cfg), ["svc_v2_beta", "Cart_DO"]);
}

#[test]
fn call_metric_names_are_prefix_target_and_suffix() {
    assert_eq!(
        calls::metric_name("CART_SERVICE", CallClass::Status5xx.suffix()),
        "gateway_tracing.call.CART_SERVICE.rq_5xx"
    );
    assert_eq!(
        calls::metric_name("CART_SERVICE", calls::DURATION_SUFFIX),
        "gateway_tracing.call.CART_SERVICE.duration_ms"
    );
}
