//! Per-attempt CLIENT spans: the downstream placement handing its SERVER span to the upstream
//! filter (`client_spans: "upstream_filter"`), and the upstream filter (`mode:
//! "upstream_filter"`) making one CLIENT span per attempt, parent and attempt number settled
//! through the per-VM [`AttemptBook`].

use super::*;

const UPSTREAM: &str = r#"{
  "mode": "upstream_filter",
  "routes": [
    {"template": "/api/products/:id", "upstream_template": "/products/:id"},
    {"template": "/api/cart/:cartId/add", "upstream_template": "/cart/add"}
  ],
  "clusters": {
    "products": {"service": "PRODUCTS_SERVICE"},
    "cart": {"durable_object": {"name": "CartDurableObject", "id": {"route_param": "cartId"}}}
  },
  "exporter": {"cluster": "otel"}
}"#;

/// The SERVER span id the downstream placement put in `traceparent`.
const SERVER_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-5a152ff658ce2776-01";
const SERVER_PARENT_ID: &str = "5a152ff658ce2776";

/// Randomness of the n-th attempt: CLIENT span id `n0 n1 .. n7` (distinct per attempt).
fn attempt_random(n: u8) -> [u8; 32] {
    let mut r = RANDOM;
    for (i, b) in r.iter_mut().skip(24).enumerate() {
        *b = (n << 4) | i as u8;
    }
    r
}

/// An attempt's request headers as the upstream filter sees them: the rewritten path, the
/// original in `x-envoy-original-path`, the `traceparent` as it is now.
fn attempt(n: u8, traceparent: &str, attempt_count: Option<u64>) -> MockHost {
    let host = MockHost::new()
        .header(":method", "GET")
        .header(":path", "/products/p-1?x=1")
        .header(":scheme", "http")
        .header(":authority", "shop.example")
        .header("x-envoy-original-path", "/api/products/p-1?x=1")
        .header("traceparent", traceparent)
        .property(&["xds", "cluster_name"], b"products")
        .property(&["upstream", "address"], b"10.0.0.7:8080")
        .now(START + u64::from(n) * 100)
        .random(attempt_random(n));
    match attempt_count {
        Some(c) => host.property_u64(&["upstream", "request_attempt_count"], c),
        None => host,
    }
}

struct Attempted {
    host: MockHost,
    req: ActiveRequest,
    spans: Vec<Span>,
}

impl Attempted {
    fn client(&self) -> &Span {
        assert_eq!(self.spans.len(), 1, "one CLIENT span per attempt");
        &self.spans[0]
    }
}

fn run_attempt(
    cfg: &Config,
    mut host: MockHost,
    book: &mut AttemptBook,
    status: Option<u16>,
) -> Attempted {
    let stats = MockStats::new();
    let req = start_attempt(cfg, &mut host, &stats, book);
    host.set_now(START + 10_000);
    let done = attempt_completion(&host, &req, status);
    let spans = finish_spans(cfg, &req, &done);
    Attempted { host, req, spans }
}

#[test]
fn gateway_leaves_client_spans_to_the_upstream_filter() {
    let cfg = config(&GATEWAY.replacen('{', r#"{"client_spans": "upstream_filter","#, 1));
    let host = request("GET", "/api/products/p-1", Some("products")).header("traceparent", PARENT);
    let r = run(&cfg, host, &answered(200));
    assert_eq!(
        r.kinds(),
        vec![SpanKind::Server as i32],
        "SERVER span only, even with a cluster"
    );
    assert!(r.req.client.is_none());
    assert_eq!(
        r.traceparent(),
        format!("00-{PARENT_TRACE}-{SERVER_ID}-01"),
        "the upstream filter gets the SERVER span as parent"
    );
}

#[test]
fn retry_gets_its_own_span_under_the_server_span() {
    let cfg = config(UPSTREAM);
    let mut book = AttemptBook::default();

    let first = run_attempt(
        &cfg,
        attempt(1, SERVER_PARENT, Some(1)),
        &mut book,
        Some(503),
    );
    let c1 = first.client();
    assert_eq!(hex(&c1.parent_span_id), SERVER_PARENT_ID);
    assert_eq!(hex(&c1.trace_id), PARENT_TRACE);
    assert_eq!(c1.name, "PRODUCTS_SERVICE GET /products/:id");
    assert_eq!(
        attr_str(c1, sc::HTTP_ROUTE),
        "/api/products/:id",
        "from the original path"
    );
    assert_eq!(
        attr_str(c1, sc::URL_FULL),
        "http://10.0.0.7:8080/products/p-1"
    );
    assert_eq!(attr_str(c1, sc::SERVER_ADDRESS), "10.0.0.7");
    assert_eq!(attr_str(c1, sc::NETWORK_PROTOCOL_NAME), "http");
    assert_eq!(attr(c1, sc::NETWORK_PROTOCOL_VERSION), None, "no guess");
    assert_eq!(attr(c1, sc::HTTP_REQUEST_RESEND_COUNT), None);
    assert_eq!(attr(c1, sc::HTTP_RESPONSE_STATUS_CODE), Some(Val::Int(503)));
    assert!(is_error(c1), "a 503 attempt is an error");
    assert_eq!(error_type(c1).as_deref(), Some("503"));
    let injected1 = first.host.single_header("traceparent");
    assert_eq!(
        injected1,
        format!("00-{PARENT_TRACE}-{}-01", hex(&c1.span_id)),
        "the upstream sees this attempt's span"
    );

    // Envoy keeps the upstream filter's header change: the retry carries attempt 1's id.
    let second = run_attempt(&cfg, attempt(2, &injected1, Some(2)), &mut book, Some(200));
    let c2 = second.client();
    assert_eq!(
        hex(&c2.parent_span_id),
        SERVER_PARENT_ID,
        "parent is the SERVER span, not attempt 1"
    );
    assert_ne!(c2.span_id, c1.span_id);
    assert_eq!(attr(c2, sc::HTTP_REQUEST_RESEND_COUNT), Some(Val::Int(1)));
    assert!(!is_error(c2));
    assert_eq!(
        second.host.single_header("traceparent"),
        format!("00-{PARENT_TRACE}-{}-01", hex(&c2.span_id))
    );
    assert_eq!(
        second.req.parent_span_id.map(|p| p.to_string()).as_deref(),
        Some(SERVER_PARENT_ID)
    );
}

#[test]
fn attempt_number_rows() {
    struct Row {
        /// `upstream.request_attempt_count` of each attempt (`None`: Envoy gave none).
        counts: [Option<u64>; 3],
        /// Whether each attempt sees the previous attempt's `traceparent` (Envoy 1.40) or the
        /// SERVER span's again.
        headers_persist: bool,
        want_resend: [Option<i64>; 3],
        reason: &'static str,
    }
    let rows = [
        Row {
            counts: [Some(1), Some(2), Some(3)],
            headers_persist: true,
            want_resend: [None, Some(1), Some(2)],
            reason: "Envoy's attempt count",
        },
        Row {
            counts: [None, None, None],
            headers_persist: true,
            want_resend: [None, Some(1), Some(2)],
            reason: "no attribute: counted along the injected ids",
        },
        Row {
            counts: [Some(1), Some(2), Some(3)],
            headers_persist: false,
            want_resend: [None, Some(1), Some(2)],
            reason: "headers restored per attempt: the attribute still counts",
        },
        Row {
            counts: [None, None, None],
            headers_persist: false,
            want_resend: [None, None, None],
            reason: "nothing to count with: every attempt looks like a first one",
        },
    ];
    let cfg = config(UPSTREAM);
    for row in rows {
        let mut book = AttemptBook::default();
        let mut tp = SERVER_PARENT.to_string();
        for (n, (count, want)) in row.counts.iter().zip(row.want_resend).enumerate() {
            let a = run_attempt(
                &cfg,
                attempt(n as u8 + 1, &tp, *count),
                &mut book,
                Some(503),
            );
            let c = a.client();
            assert_eq!(
                attr(c, sc::HTTP_REQUEST_RESEND_COUNT),
                want.map(Val::Int),
                "{}: attempt {}",
                row.reason,
                n + 1
            );
            assert_eq!(hex(&c.parent_span_id), SERVER_PARENT_ID, "{}", row.reason);
            if row.headers_persist {
                tp = a.host.single_header("traceparent");
            }
        }
    }
}

#[test]
fn attempt_outcome_rows() {
    struct Row {
        status: Option<u16>,
        transport_failure: Option<&'static str>,
        want_error_type: Option<&'static str>,
        want_status_attr: Option<i64>,
        want_details_in_message: Option<&'static str>,
        reason: &'static str,
    }
    let rows = [
        Row {
            status: Some(200),
            transport_failure: None,
            want_error_type: None,
            want_status_attr: Some(200),
            want_details_in_message: None,
            reason: "answered",
        },
        Row {
            status: Some(503),
            transport_failure: None,
            want_error_type: Some("503"),
            want_status_attr: Some(503),
            want_details_in_message: None,
            reason: "a 503 attempt (retried)",
        },
        Row {
            status: None,
            transport_failure: Some("delayed_connect_error:_Connection_refused"),
            want_error_type: Some(sc::OTHER),
            want_status_attr: None,
            want_details_in_message: Some("delayed_connect_error:_Connection_refused"),
            reason: "refused connection: Envoy's transport failure reason",
        },
        Row {
            status: None,
            transport_failure: None,
            want_error_type: Some(sc::OTHER),
            want_status_attr: None,
            want_details_in_message: Some(super::super::attempt::NO_RESPONSE),
            reason: "reset, per-try timeout, cancelled hedge",
        },
    ];
    let cfg = config(UPSTREAM);
    for row in rows {
        let mut host = attempt(1, SERVER_PARENT, Some(1));
        if let Some(t) = row.transport_failure {
            host = host.property(&["upstream", "transport_failure_reason"], t.as_bytes());
        }
        let a = run_attempt(&cfg, host, &mut AttemptBook::default(), row.status);
        let c = a.client();
        assert_eq!(
            error_type(c).as_deref(),
            row.want_error_type,
            "{}",
            row.reason
        );
        assert_eq!(is_error(c), row.want_error_type.is_some(), "{}", row.reason);
        assert_eq!(
            attr(c, sc::HTTP_RESPONSE_STATUS_CODE),
            row.want_status_attr.map(Val::Int),
            "{}",
            row.reason
        );
        if let Some(d) = row.want_details_in_message {
            let msg = c
                .status
                .as_ref()
                .map(|s| s.message.clone())
                .unwrap_or_default();
            assert!(msg.contains(d), "{}: {msg}", row.reason);
        }
    }
}

#[test]
fn durable_object_id_from_the_original_path() {
    let cfg = config(UPSTREAM);
    let mut host = MockHost::new()
        .header(":method", "POST")
        .header(":path", "/cart/add?cartId=c-42")
        .header(":authority", "shop.example")
        .header("x-envoy-original-path", "/api/cart/c-42/add")
        .header("traceparent", SERVER_PARENT)
        .property(&["xds", "cluster_name"], b"cart")
        .now(START)
        .random(attempt_random(1));
    let stats = MockStats::new();
    let req = start_attempt(&cfg, &mut host, &stats, &mut AttemptBook::default());
    let done = attempt_completion(&host, &req, Some(200));
    let spans = finish_spans(&cfg, &req, &done);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "CartDurableObject POST /cart/add");
    assert_eq!(attr_str(&spans[0], sc::DURABLE_OBJECT_ID), "c-42");
}

#[test]
fn unsampled_attempts_propagate_and_record_nothing() {
    let cfg = config(UPSTREAM);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-5a152ff658ce2776-00";
    let a = run_attempt(
        &cfg,
        attempt(1, tp, Some(1)),
        &mut AttemptBook::default(),
        Some(200),
    );
    assert!(a.spans.is_empty());
    assert!(a.host.single_header("traceparent").ends_with("-00"));
}

#[test]
fn book_forgets_the_oldest_beyond_its_capacity() {
    let cfg = config(UPSTREAM);
    let mut book = AttemptBook::with_capacity(2);
    let mut injected = Vec::new();
    for n in 1..=3u8 {
        let a = run_attempt(&cfg, attempt(n, SERVER_PARENT, None), &mut book, Some(503));
        injected.push(a.host.single_header("traceparent"));
    }
    assert_eq!(book.len(), 2);
    // A retry of the first (forgotten) attempt: its parent can only be what the header says.
    let late = run_attempt(&cfg, attempt(4, &injected[0], None), &mut book, Some(200));
    assert_ne!(hex(&late.client().parent_span_id), SERVER_PARENT_ID);
    // A retry of the third (remembered) one still finds the SERVER span.
    let ok = run_attempt(&cfg, attempt(5, &injected[2], None), &mut book, Some(200));
    assert_eq!(hex(&ok.client().parent_span_id), SERVER_PARENT_ID);
    assert_eq!(
        attr(ok.client(), sc::HTTP_REQUEST_RESEND_COUNT),
        Some(Val::Int(1))
    );
}

#[test]
fn protocol_rows() {
    struct Row {
        mode: &'static str,
        protocol_version: Option<&'static str>,
        want_name: Option<&'static str>,
        want_version: Option<&'static str>,
        reason: &'static str,
    }
    let rows = [
        Row {
            mode: "upstream_filter",
            protocol_version: None,
            want_name: Some("http"),
            want_version: None,
            reason: "unknown version: left out, never guessed",
        },
        Row {
            mode: "upstream_filter",
            protocol_version: Some("2"),
            want_name: Some("http"),
            want_version: Some("2"),
            reason: "an h2c cluster, as configured",
        },
        Row {
            mode: "gateway",
            protocol_version: Some("1.1"),
            want_name: Some("http"),
            want_version: Some("1.1"),
            reason: "the downstream placement's CLIENT span too",
        },
        Row {
            mode: "gateway",
            protocol_version: None,
            want_name: None,
            want_version: None,
            reason: "downstream placement, nothing configured: as before",
        },
    ];
    for row in rows {
        let cluster = match row.protocol_version {
            Some(v) => format!(r#"{{"service": "PRODUCTS_SERVICE", "protocol_version": "{v}"}}"#),
            None => r#"{"service": "PRODUCTS_SERVICE"}"#.to_string(),
        };
        let cfg = config(&format!(
            r#"{{"mode": "{}", "clusters": {{"products": {cluster}}}, "exporter": {{"cluster": "otel"}}}}"#,
            row.mode
        ));
        let mut host = attempt(1, SERVER_PARENT, Some(1));
        let stats = MockStats::new();
        let req = start_attempt(&cfg, &mut host, &stats, &mut AttemptBook::default());
        let done = attempt_completion(&host, &req, Some(200));
        let spans = finish_spans(&cfg, &req, &done);
        let client = one_of_kind(&spans, SpanKind::Client).expect("CLIENT span");
        let got = |k| match attr(client, k) {
            Some(Val::Str(s)) => Some(s),
            _ => None,
        };
        assert_eq!(
            got(sc::NETWORK_PROTOCOL_NAME).as_deref(),
            row.want_name,
            "{}",
            row.reason
        );
        assert_eq!(
            got(sc::NETWORK_PROTOCOL_VERSION).as_deref(),
            row.want_version,
            "{}",
            row.reason
        );
    }
}

#[test]
fn exports_through_an_upstream_filter_are_not_traced() {
    let cfg = config(UPSTREAM);
    let host = attempt(1, SERVER_PARENT, Some(1)).property(&["xds", "cluster_name"], b"otel");
    let a = run_attempt(&cfg, host, &mut AttemptBook::default(), Some(200));
    assert!(
        a.spans.is_empty(),
        "no span for an export request: it would be exported, and traced again"
    );
    assert!(
        a.host.set_calls.is_empty() && a.host.filter_state.is_empty(),
        "known before anything is injected: the export request passes untouched ({:?})",
        a.host.set_calls
    );
    assert!(!a.req.recorded && a.req.client.is_none());
}

/// A client's `x-envoy-original-path` would name the route (and Durable Object id) of the
/// upstream filter's spans on a route Envoy does not rewrite (Envoy 1.40 passes it on unless
/// `use_remote_address: true`). The gateway that hands CLIENT spans to the upstream filter
/// removes it before the router runs; other placements leave it alone.
#[test]
fn a_clients_original_path_header_is_removed_before_the_upstream_filter_reads_it() {
    let cfg = config(&GATEWAY.replacen('{', r#"{"client_spans": "upstream_filter","#, 1));
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("x-envoy-original-path", "/api/cart/evil/add");
    let r = run(&cfg, host, &answered(200));
    assert!(
        r.host.header_values("x-envoy-original-path").is_empty(),
        "removed"
    );
    let host = request("GET", "/api/products/p-1", Some("products"))
        .header("x-envoy-original-path", "/api/cart/evil/add");
    let r = run(&config(GATEWAY), host, &answered(200));
    assert_eq!(
        r.host.header_values("x-envoy-original-path"),
        vec!["/api/cart/evil/add"],
        "the per-call gateway does not read it: untouched"
    );
}
