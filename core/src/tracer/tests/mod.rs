//! The tracer's tests, by topic: [`naming`] (span names and attributes), [`status`] (status,
//! `error.type` and events), [`sampling`], [`propagation`] (parents, traceparent/tracestate in
//! and out, span linkage), [`modes`] (gateway and sidecars), [`completion`] (log-phase reads
//! and span timing), [`attempts`] (per-attempt CLIENT spans of the upstream-filter placement). Shared fixtures live here.
#![allow(dead_code)]

mod attempts;
mod attributes;
mod calls;
mod completion;
mod modes;
mod naming;
mod propagation;
mod reads;
mod sampling;
mod status;
mod stream;

pub(super) use super::completion::VIA_UPSTREAM;
pub(super) use super::*;
pub(super) use crate::config::Config;
pub(super) use crate::metrics::Counter;
pub(super) use crate::otlp::{Span, SpanKind, StatusCode};
pub(super) use crate::semconv as sc;
pub(super) use crate::url::strip_query;

pub(super) use crate::testing::{
    attr, attr_in, attr_str, config, event, event_names, hex, MockHost, MockStats, Val,
};

/// Host randomness: trace id 10..1f, SERVER span id 20..27, CLIENT span id 30..37.
pub(super) const RANDOM: [u8; 32] = {
    let mut r = [0u8; 32];
    let mut i = 0;
    while i < 16 {
        r[i] = 0x10 + i as u8;
        i += 1;
    }
    while i < 24 {
        r[i] = 0x20 + (i - 16) as u8;
        i += 1;
    }
    while i < 32 {
        r[i] = 0x30 + (i - 24) as u8;
        i += 1;
    }
    r
};
pub(super) const NEW_TRACE: &str = "101112131415161718191a1b1c1d1e1f";
pub(super) const SERVER_ID: &str = "2021222324252627";
pub(super) const CLIENT_ID: &str = "3031323334353637";

pub(super) const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub(super) const PARENT_SPAN: &str = "00f067aa0ba902b7";
pub(super) const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
pub(super) const PARENT_UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

pub(super) const START: u64 = 1_000;
pub(super) const END: u64 = 5_000;

pub(super) const GATEWAY: &str = r#"{
  "routes": [
    {"template": "/api/cart/:cartId/add", "upstream_template": "/cart/:cartId/add"},
    {"template": "/api/products/:id"},
    {"template": "/products/:id"}
  ],
  "clusters": {
    "auth": {"service": "AUTH_SERVICE"},
    "cart": {"service": "CART_SERVICE"},
    "products": {"service": "PRODUCTS_SERVICE"}
  },
  "exporter": {"cluster": "otel"}
}"#;

pub(super) const DO_ROUTE_PARAM: &str = r#"{
  "routes": [{"template": "/api/cart/:cartId/add", "upstream_template": "/cart/add"}],
  "clusters": {"cart": {"durable_object": {"name": "CartDurableObject", "id": {"route_param": "cartId"}}}},
  "exporter": {"cluster": "otel"}
}"#;

pub(super) const DO_HEADER: &str = r#"{
  "routes": [{"template": "/api/cart/:cartId/add", "upstream_template": "/cart/add"}],
  "clusters": {"cart": {"durable_object": {"name": "CartDurableObject", "id": {"header": "x-cart-id"}}}},
  "exporter": {"cluster": "otel"}
}"#;

pub(super) fn with_mode(mode: &str) -> Config {
    config(&GATEWAY.replacen('{', &format!(r#"{{"mode": "{mode}","#), 1))
}

/// The gateway config with extra top-level fields (`"sampler": "always_off"`, …).
pub(super) fn with_fields(fields: &str) -> Config {
    config(&GATEWAY.replacen('{', &format!("{{{fields},"), 1))
}

pub(super) fn with_sampler(sampler: &str) -> Config {
    config(&GATEWAY.replacen('{', &format!(r#"{{"sampler": "{sampler}","#), 1))
}

/// A request as the gateway sees it at request headers, routed to `cluster` (if any).
pub(super) fn request(method: &str, path: &str, cluster: Option<&str>) -> MockHost {
    let host = MockHost::new()
        .header(":method", method)
        .header(":path", path)
        .header(":scheme", "https")
        .header(":authority", "shop.example")
        .header("user-agent", "curl/8.5")
        .now(START)
        .random(RANDOM);
    match cluster {
        Some(c) => host.property(&["xds", "cluster_name"], c.as_bytes()),
        None => host,
    }
}

/// The upstream answered with `status`.
pub(super) fn answered(status: u16) -> Completion {
    Completion {
        end_ns: END,
        status,
        flags: 0,
        code_details: VIA_UPSTREAM.into(),
        upstream_address: Some("10.0.0.7:8080".into()),
        upstream_path: None,
        upstream_authority: None,
        ..Default::default()
    }
}

/// Envoy could not connect to the upstream (UF) and answered 503 itself.
pub(super) fn connection_failure() -> Completion {
    Completion {
        end_ns: END,
        status: 503,
        flags: 0x20,
        code_details: "upstream_reset_before_response_started{connection_failure}".into(),
        upstream_address: None,
        upstream_path: None,
        upstream_authority: None,
        ..Default::default()
    }
}

/// Envoy answered itself before any upstream attempt.
pub(super) fn local_reply(status: u16, details: &str) -> Completion {
    Completion {
        end_ns: END,
        status,
        flags: 0,
        code_details: details.into(),
        upstream_address: None,
        upstream_path: None,
        upstream_authority: None,
        ..Default::default()
    }
}

pub(super) struct Run {
    pub(super) host: MockHost,
    pub(super) stats: MockStats,
    pub(super) req: ActiveRequest,
    pub(super) spans: Vec<Span>,
}

impl Run {
    pub(super) fn server(&self) -> Option<&Span> {
        one_of_kind(&self.spans, SpanKind::Server)
    }
    pub(super) fn client(&self) -> Option<&Span> {
        one_of_kind(&self.spans, SpanKind::Client)
    }
    pub(super) fn server_span(&self) -> &Span {
        self.server().expect("no SERVER span")
    }
    pub(super) fn client_span(&self) -> &Span {
        self.client().expect("no CLIENT span")
    }
    pub(super) fn kinds(&self) -> Vec<i32> {
        self.spans.iter().map(|s| s.kind).collect()
    }
    /// The single `traceparent` the upstream receives.
    pub(super) fn traceparent(&self) -> String {
        self.host.single_header("traceparent")
    }
}

pub(super) fn one_of_kind(spans: &[Span], kind: SpanKind) -> Option<&Span> {
    let found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind as i32).collect();
    assert!(found.len() <= 1, "more than one {kind:?} span");
    found.first().copied()
}

/// [`finish`], decoded back into `opentelemetry-proto` spans: every tracer test reads what
/// the span writer produced through prost.
pub(super) fn finish_spans(cfg: &Config, req: &ActiveRequest, done: &Completion) -> Vec<Span> {
    use prost::Message;
    let mut fields = Vec::new();
    let n = finish(cfg, req, done, &MockStats::new(), &mut fields);
    // A run of `ScopeSpans.spans` fields is a valid `ScopeSpans` message by itself.
    let spans = opentelemetry_proto::tonic::trace::v1::ScopeSpans::decode(fields.as_slice())
        .expect("finish wrote invalid protobuf")
        .spans;
    assert_eq!(spans.len(), n, "finish's count matches what it wrote");
    spans
}

pub(super) fn run(cfg: &Config, mut host: MockHost, done: &Completion) -> Run {
    let stats = MockStats::new();
    let req = start(cfg, &mut host, &stats);
    let spans = finish_spans(cfg, &req, done);
    Run {
        host,
        stats,
        req,
        spans,
    }
}

pub(super) fn is_error(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
}

pub(super) fn error_type(span: &Span) -> Option<String> {
    attr(span, sc::ERROR_TYPE).map(|v| match v {
        Val::Str(s) => s,
        other => panic!("error.type is {other:?}"),
    })
}
