//! Attributes a user asks for (header allowlists, redaction, the semconv set), Envoy's
//! explanation on SERVER spans, a Durable Object call without an id, and the ids handed to
//! the access log.

use super::*;

#[test]
fn request_and_response_headers_are_recorded_as_arrays_with_redaction() {
    let cfg = config(
        r#"{"request_headers": ["x-request-id", "X-Tenant", "authorization"],
            "response_headers": ["x-cache", "set-cookie"],
            "exporter": {"cluster": "otel"}}"#,
    );
    assert_eq!(
        cfg.request_headers,
        ["x-request-id", "x-tenant", "authorization"],
        "names are lower-cased"
    );
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("x-request-id", "r-1")
        .header("X-Tenant", "a")
        .header("x-tenant", "b")
        .header("authorization", "Bearer secret");
    let done = Completion {
        response_headers: capture_response(&cfg, &[("x-cache", "HIT"), ("set-cookie", "sid=1")]),
        ..answered(200)
    };
    let r = run(&cfg, host, &done);
    let server = r.server_span();
    let array = |key: &str| -> Vec<String> {
        match attr(server, key) {
            Some(Val::Other(s)) => s
                .split('"')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect(),
            other => panic!("{key}: {other:?}"),
        }
    };
    assert_eq!(array("http.request.header.x-request-id"), ["r-1"]);
    assert_eq!(
        array("http.request.header.x-tenant"),
        ["a", "b"],
        "duplicates kept in order"
    );
    assert_eq!(
        array("http.request.header.authorization"),
        ["REDACTED"],
        "redacted by default"
    );
    assert_eq!(array("http.response.header.x-cache"), ["HIT"]);
    assert_eq!(array("http.response.header.set-cookie"), ["REDACTED"]);
    for s in &r.spans {
        let text = format!("{s:?}");
        assert!(
            !text.contains("Bearer secret") && !text.contains("sid=1"),
            "no secret in {}",
            s.name
        );
    }

    // Default: x-request-id only, when present.
    let r = run(
        &config(GATEWAY),
        request("GET", "/", None).header("x-request-id", "r-2"),
        &answered(200),
    );
    assert!(attr(r.server_span(), "http.request.header.x-request-id").is_some());
    let r = run(&config(GATEWAY), request("GET", "/", None), &answered(200));
    assert!(attr(r.server_span(), "http.request.header.x-request-id").is_none());
}

fn capture_response(cfg: &Config, headers: &[(&str, &str)]) -> Vec<(usize, Vec<String>)> {
    let mut host = MockHost::new();
    for (k, v) in headers {
        host = host.response_header(k, v);
    }
    Completion::read(&host, cfg).response_headers
}

#[test]
fn semconv_sets() {
    struct Row {
        semconv: &'static str,
        present: &'static [&'static str],
        absent: &'static [&'static str],
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { semconv: "both", present: &["http.request.method", "http.method", "http.response.status_code", "http.status_code", "url.full", "http.url", "span.kind"], absent: &[], reason: "default: both, the seed's queries keep working" },
        Row { semconv: "stable", present: &["http.request.method", "http.response.status_code", "url.full"], absent: &["http.method", "http.status_code", "http.url", "span.kind", "service.name"], reason: "stable only, no redundant span.kind" },
        Row { semconv: "legacy", present: &["http.method", "http.status_code", "http.url", "span.kind"], absent: &["http.request.method", "http.response.status_code", "url.full"], reason: "the seed's names only" },
    ];
    for r in rows {
        let cfg = config(&GATEWAY.replacen('{', &format!(r#"{{"semconv": "{}","#, r.semconv), 1));
        let run = run(
            &cfg,
            request("GET", "/api/products/p-1", Some("products")),
            &answered(503),
        );
        let client = run.client_span();
        for k in r.present {
            assert!(attr(client, k).is_some(), "{}: {k} missing", r.reason);
        }
        for k in r.absent {
            assert!(attr(client, k).is_none(), "{}: {k} present", r.reason);
        }
        let message = client.status.as_ref().map(|s| s.message.as_str());
        let want = if r.semconv == "stable" {
            ""
        } else {
            "HTTP 503"
        };
        assert_eq!(message, Some(want), "{}: status description", r.reason);
    }
}

#[test]
fn server_span_explains_envoy_local_replies() {
    let r = run(
        &config(GATEWAY),
        request("GET", "/nowhere", None),
        &Completion {
            flags: crate::status::flag::NO_ROUTE_FOUND,
            ..local_reply(404, "route_not_found")
        },
    );
    let server = r.server_span();
    assert_eq!(attr(server, sc::ENVOY_RESPONSE_FLAGS), Some(Val::str("NR")));
    assert_eq!(
        attr(server, sc::ENVOY_RESPONSE_CODE_DETAILS),
        Some(Val::str("route_not_found"))
    );
    let r = run(
        &config(GATEWAY),
        request("GET", "/api/products/p-1", Some("products")),
        &answered(200),
    );
    assert!(
        attr(r.server_span(), sc::ENVOY_RESPONSE_FLAGS).is_none(),
        "nothing to explain"
    );
    assert!(
        attr(r.server_span(), sc::ENVOY_RESPONSE_CODE_DETAILS).is_none(),
        "via_upstream is not news"
    );
}

#[test]
fn durable_object_call_without_id_is_counted_and_marked() {
    let r = run(
        &config(DO_HEADER),
        request("POST", "/api/cart/c-42/add", Some("cart")),
        &answered(200),
    );
    let client = r.client_span();
    assert_eq!(client.name, "CartDurableObject POST /cart/add");
    assert!(attr(client, sc::DURABLE_OBJECT_ID).is_none());
    assert!(
        matches!(attr(client, sc::DURABLE_OBJECT_ID_MISSING), Some(Val::Other(s)) if s.contains("BoolValue(true)"))
    );
    assert_eq!(r.stats.get(Counter::DurableObjectIdMissing), 1);

    let r = run(
        &config(DO_HEADER),
        request("POST", "/api/cart/c-42/add", Some("cart")).header("x-cart-id", "c-42"),
        &answered(200),
    );
    assert_eq!(
        attr(r.client_span(), sc::DURABLE_OBJECT_ID),
        Some(Val::str("c-42"))
    );
    assert!(attr(r.client_span(), sc::DURABLE_OBJECT_ID_MISSING).is_none());
    assert_eq!(r.stats.get(Counter::DurableObjectIdMissing), 0);
}

#[test]
fn access_log_ids_go_to_filter_state() {
    let cfg = config(&GATEWAY.replacen('{', r#"{"access_log_ids": true,"#, 1));
    let r = run(
        &cfg,
        request("GET", "/api/products/p-1", Some("products")),
        &answered(200),
    );
    assert_eq!(
        r.host.filter_state,
        [
            (
                "gateway_tracing.trace_id".to_string(),
                NEW_TRACE.to_string()
            ),
            ("gateway_tracing.span_id".to_string(), SERVER_ID.to_string()),
        ]
    );
    let r = run(&config(GATEWAY), request("GET", "/", None), &answered(200));
    assert!(
        r.host.filter_state.is_empty(),
        "off by default: no host calls"
    );
}

/// Issue 17: a ~60 KiB path written four times (`semconv: both`) made 123 KB spans. Span
/// limits cut each value to `attribute_value_length_limit` (4 KiB by default), count it, and
/// a configured limit applies.
#[test]
fn span_limits_cut_a_giant_path() {
    let path = format!("/api/products/{}", "p".repeat(60 * 1024));
    for (cfg, limit) in [
        (config(GATEWAY), 4096usize),
        (
            with_fields(r#""span_limits": {"attribute_value_length_limit": 100}"#),
            100,
        ),
    ] {
        let host = request("GET", &path, Some("products"));
        let r = run(&cfg, host, &answered(200));
        let server = r.server_span();
        let url_path = attr_str(server, sc::URL_PATH);
        assert_eq!(url_path.len(), limit);
        assert!(path.starts_with(&url_path));
        let client = r.client_span();
        assert!(attr_str(client, sc::URL_FULL).len() <= limit);
        let total: usize = [server, client]
            .iter()
            .map(|s| prost::Message::encoded_len(*s))
            .sum();
        assert!(total < 8 * limit + 4096, "both spans {total} bytes");
        let stats = MockStats::new();
        let mut out = Vec::new();
        finish(&cfg, &r.req, &answered(200), &stats, &mut out);
        assert!(stats.get(Counter::SpanLimitsApplied) >= 3, "counted");
    }
}
