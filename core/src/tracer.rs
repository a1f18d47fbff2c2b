//! The tracer: what happens to one HTTP request. At request headers it extracts the parent,
//! decides sampling, allocates span ids, picks the upstream cluster's target and injects
//! `traceparent`/`tracestate` upstream ([`start`]). At log time, when Envoy has the response
//! code, flags and upstream address, it builds the finished SERVER and CLIENT spans
//! ([`finish`]).
//!
//! Which spans exist depends on [`Mode`]: a gateway emits a SERVER span and a CLIENT child per
//! upstream call; an inbound sidecar only the SERVER span; an outbound sidecar only the CLIENT.

use crate::config::{ClusterTarget, Config, DurableObjectId, Mode, Sampler};
use crate::host::{header, property_string, property_u64, HeaderList, Host, HostInjector, Stats};
use crate::ids::{RequestIds, SpanId, TraceId};
use crate::metrics::Counter;
use crate::otlp::{kv_int, kv_str, Event, Span, SpanKind, Status, StatusCode};
use crate::propagation::{self, Extracted, SpanContext, FLAG_SAMPLED};
use crate::route::{strip_query, Params};
use crate::semconv as sc;
use crate::status;

/// Methods semconv knows; anything else is reported as `_OTHER` (and spans are named `HTTP`).
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Envoy's `response.code_details` when the response came from the upstream.
const VIA_UPSTREAM: &str = "via_upstream";

/// State kept between request headers and log for one request.
#[derive(Debug, Clone)]
pub struct ActiveRequest {
    pub recorded: bool,
    pub trace_id: TraceId,
    pub trace_state: Option<String>,
    pub parent_span_id: Option<SpanId>,
    /// The SERVER span (gateway, inbound sidecar).
    pub server_span_id: Option<SpanId>,
    /// The CLIENT span (gateway or outbound sidecar with an upstream cluster).
    pub client: Option<ClientCall>,
    pub start_ns: u64,
    /// When the last byte of the response passed this filter on its way back (see
    /// [`ActiveRequest::response_complete`]); ends the CLIENT span. `None` until then.
    pub response_end_ns: Option<u64>,
    method: Method,
    path: String,
    route: Option<usize>,
    scheme: String,
    authority: String,
    user_agent: Option<String>,
    client_address: Option<String>,
    protocol: Option<String>,
}

/// The upstream call a CLIENT span describes.
#[derive(Debug, Clone)]
pub struct ClientCall {
    pub span_id: SpanId,
    pub cluster: String,
    pub target: ClusterTarget,
    pub durable_object_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Method {
    /// Normalised value for `http.request.method` (`_OTHER` when unknown).
    value: String,
    /// The original when it was not a known method.
    original: Option<String>,
}

impl Method {
    fn parse(raw: &str) -> Method {
        if KNOWN_METHODS.contains(&raw) {
            Method {
                value: raw.to_string(),
                original: None,
            }
        } else {
            Method {
                value: sc::OTHER.to_string(),
                original: Some(raw.to_string()),
            }
        }
    }
    /// What goes into span names: `HTTP` for unknown methods (semconv).
    fn for_name(&self) -> &str {
        if self.original.is_some() {
            "HTTP"
        } else {
            &self.value
        }
    }
}

/// Request-headers phase. Never fails: at worst the request is traced as a new root.
pub fn start(config: &Config, host: &mut dyn Host, stats: &dyn Stats) -> ActiveRequest {
    let headers = host.request_headers();
    let extracted = propagation::extract(&HeaderList(&headers));
    match &extracted {
        Extracted::Invalid(reason) => {
            stats.add(Counter::TraceparentInvalid, 1);
            log::debug!(
                "invalid traceparent ({}); starting a new trace",
                reason.as_str()
            );
        }
        Extracted::Valid {
            tracestate_invalid: true,
            ..
        } => {
            stats.add(Counter::TracestateInvalid, 1);
            log::debug!("invalid tracestate dropped");
        }
        _ => {}
    }
    let parent = extracted.parent();
    let ids = RequestIds::from_random(host.random_bytes());
    let recorded = match config.sampler {
        Sampler::AlwaysOn => true,
        Sampler::AlwaysOff => false,
        Sampler::ParentBasedAlwaysOn => parent.is_none_or(SpanContext::is_sampled),
    };
    if !recorded {
        stats.add(Counter::RequestsNotSampled, 1);
    }
    let start_ns = host.now_nanos();

    let raw_method = header(&headers, ":method").unwrap_or("GET");
    let full_path = header(&headers, ":path").unwrap_or("/");
    let path = strip_query(full_path).to_string();
    let (route, params) = match config.routes.find_index(&path) {
        Some((i, p)) => (Some(i), p),
        None => (None, Params::new()),
    };

    let server_span_id = (config.mode != Mode::SidecarOutbound).then_some(ids.server_span_id);
    let cluster = match config.mode {
        Mode::SidecarInbound => None,
        _ => property_string(host.property(&["xds", "cluster_name"])),
    };
    let client = cluster.map(|cluster| {
        let target = config.cluster_target(&cluster);
        let durable_object_id = target.durable_object.as_ref().and_then(|d| match &d.id {
            DurableObjectId::RouteParam(p) => {
                params.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone())
            }
            DurableObjectId::Header(h) => header(&headers, h).map(str::to_string),
        });
        ClientCall {
            span_id: ids.client_span_id,
            cluster,
            target,
            durable_object_id,
        }
    });

    let req = ActiveRequest {
        recorded,
        trace_id: parent.map_or(ids.trace_id, |p| p.trace_id),
        trace_state: parent.and_then(|p| p.trace_state.clone()),
        parent_span_id: parent.map(|p| p.span_id),
        server_span_id,
        client,
        start_ns,
        response_end_ns: None,
        method: Method::parse(raw_method),
        path,
        route,
        scheme: header(&headers, ":scheme").unwrap_or("http").to_string(),
        authority: header(&headers, ":authority").unwrap_or("").to_string(),
        user_agent: header(&headers, "user-agent").map(str::to_string),
        client_address: property_string(host.property(&["source", "address"])),
        protocol: property_string(host.property(&["request", "protocol"])),
    };

    if let Some(root) = req
        .server_span_id
        .or(req.client.as_ref().map(|c| c.span_id))
    {
        log::debug!(
            "Span Context: {{ traceId: '{}', spanId: '{}' }}",
            req.trace_id,
            root
        );
    }
    // The span the upstream continues: our CLIENT span, or (inbound sidecar) our SERVER span.
    let propagate = match (&req.client, config.mode) {
        (Some(c), _) => Some((c.span_id, c.target.service_label().to_string())),
        (None, Mode::SidecarInbound) => {
            req.server_span_id.map(|s| (s, "local service".to_string()))
        }
        _ => None,
    };
    if let Some((span_id, to)) = propagate {
        let ctx = SpanContext {
            trace_id: req.trace_id,
            span_id,
            flags: if recorded { FLAG_SAMPLED } else { 0 },
            trace_state: req.trace_state.clone(),
        };
        let mut injector = HostInjector { host, failed: None };
        propagation::inject(&ctx, &mut injector);
        if let Some(e) = injector.failed {
            stats.add(Counter::InjectFailed, 1);
            log::warn!("could not write trace context to the upstream request: {e}");
        }
        log::debug!(
            "Propagating trace context to {to}: {{ traceId: '{}', spanId: '{}' }}",
            req.trace_id,
            span_id
        );
    }
    req
}

impl ActiveRequest {
    /// The response's end of stream reached this filter: the upstream call is over. The CLIENT
    /// span ends here; the SERVER span ends when Envoy has finished the whole stream (log).
    pub fn response_complete(&mut self, now_ns: u64) {
        self.response_end_ns.get_or_insert(now_ns);
    }
}

impl ClusterTarget {
    /// The name CLIENT spans lead with: the Durable Object class, else the service.
    pub fn service_label(&self) -> &str {
        self.durable_object
            .as_ref()
            .map_or(&self.service, |d| &d.name)
    }
}

/// What Envoy knows at log time.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub end_ns: u64,
    /// `response.code`; 0 when no response was sent.
    pub status: u16,
    pub flags: u64,
    pub code_details: String,
    pub upstream_address: Option<String>,
    /// `:path` and `:authority` of the request as routed (after Envoy's rewrites).
    pub upstream_path: Option<String>,
    pub upstream_authority: Option<String>,
}

impl Completion {
    /// Reads the completion from the host in the log phase.
    pub fn read(host: &dyn Host) -> Completion {
        let headers = host.request_headers();
        let u64_prop = |path: &[&str]| host.property(path).and_then(|b| property_u64(&b));
        Completion {
            end_ns: host.now_nanos(),
            status: u64_prop(&["response", "code"])
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
            flags: u64_prop(&["response", "flags"]).unwrap_or(0),
            code_details: property_string(host.property(&["response", "code_details"]))
                .unwrap_or_default(),
            upstream_address: property_string(host.property(&["upstream", "address"])),
            upstream_path: header(&headers, ":path").map(str::to_string),
            upstream_authority: header(&headers, ":authority").map(str::to_string),
        }
    }

    fn responded(&self) -> bool {
        if self.code_details.is_empty() {
            self.upstream_address.is_some()
                && !status::upstream_failed(self.flags)
                && self.status != 0
        } else {
            self.code_details == VIA_UPSTREAM
        }
    }
}

/// Log phase: the finished spans of the request (none when not sampled).
pub fn finish(config: &Config, req: &ActiveRequest, done: &Completion) -> Vec<Span> {
    if !req.recorded {
        return Vec::new();
    }
    let mut spans = Vec::with_capacity(2);
    let route = req.route.and_then(|i| config.routes.routes.get(i));
    if let Some(server_id) = req.server_span_id {
        spans.push(server_span(
            req,
            done,
            server_id,
            route.map(|r| r.template.as_str()),
        ));
    }
    if let Some(call) = &req.client {
        // A CLIENT span only for a call that was attempted: the upstream answered, or it was
        // tried and failed. A request stopped before the router (say, by another filter) has none.
        let responded = done.responded();
        let attempted =
            responded || status::upstream_failed(done.flags) || done.upstream_address.is_some();
        if attempted {
            let parent = req.server_span_id.or(req.parent_span_id);
            spans.push(client_span(
                config, req, done, responded, call, parent, route,
            ));
        }
    }
    spans
}

fn base_span(
    req: &ActiveRequest,
    span_id: SpanId,
    parent: Option<SpanId>,
    name: String,
    kind: SpanKind,
    end_ns: u64,
) -> Span {
    Span {
        trace_id: req.trace_id.0.to_vec(),
        span_id: span_id.0.to_vec(),
        parent_span_id: parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        trace_state: req.trace_state.clone().unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: req.start_ns,
        end_time_unix_nano: end_ns.max(req.start_ns),
        // OTLP span flags: bits 0-7 the W3C trace-flags (every finished span is recorded,
        // so sampled); bit 8: the parent's remoteness is known (set by callers, bit 9).
        flags: 0x100 | u32::from(FLAG_SAMPLED),
        ..Default::default()
    }
}

fn set_status(span: &mut Span, o: &status::Outcome) {
    if o.is_error {
        span.status = Some(Status {
            code: StatusCode::Error as i32,
            message: o.message.clone(),
        });
    }
}

fn method_attrs(
    req: &ActiveRequest,
    attrs: &mut Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
) {
    attrs.push(kv_str(sc::HTTP_REQUEST_METHOD, req.method.value.clone()));
    attrs.push(kv_str(
        sc::LEGACY_HTTP_METHOD,
        req.method
            .original
            .clone()
            .unwrap_or_else(|| req.method.value.clone()),
    ));
    if let Some(orig) = &req.method.original {
        attrs.push(kv_str(sc::HTTP_REQUEST_METHOD_ORIGINAL, orig.clone()));
    }
}

fn split_host_port(s: &str) -> (&str, Option<i64>) {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().ok(),
            )
        }
        _ => (s, None),
    }
}

fn server_span(req: &ActiveRequest, done: &Completion, id: SpanId, route: Option<&str>) -> Span {
    let name = match route {
        Some(r) => format!("{} {}", req.method.for_name(), r),
        None => req.method.for_name().to_string(),
    };
    let mut span = base_span(
        req,
        id,
        req.parent_span_id,
        name,
        SpanKind::Server,
        done.end_ns,
    );
    // OTLP span flags: bit 8 "has remote-parent info", bit 9 "parent is remote".
    span.flags |= if req.parent_span_id.is_some() {
        0x200
    } else {
        0
    };
    let a = &mut span.attributes;
    a.push(kv_str(sc::SPAN_KIND, sc::SPAN_KIND_SERVER));
    method_attrs(req, a);
    a.push(kv_str(sc::URL_PATH, req.path.clone()));
    a.push(kv_str(sc::URL_SCHEME, req.scheme.clone()));
    a.push(kv_str(
        sc::LEGACY_HTTP_URL,
        format!("{}://{}{}", req.scheme, req.authority, req.path),
    ));
    if let Some(r) = route {
        a.push(kv_str(sc::HTTP_ROUTE, r));
    }
    if !req.authority.is_empty() {
        let (h, p) = split_host_port(&req.authority);
        a.push(kv_str(sc::SERVER_ADDRESS, h));
        let default_port = if req.scheme == "https" { 443 } else { 80 };
        a.push(kv_int(sc::SERVER_PORT, p.unwrap_or(default_port)));
    }
    if let Some(ua) = &req.user_agent {
        a.push(kv_str(sc::USER_AGENT_ORIGINAL, ua.clone()));
    }
    if let Some(c) = &req.client_address {
        a.push(kv_str(sc::CLIENT_ADDRESS, split_host_port(c).0));
    }
    if let Some(v) = req
        .protocol
        .as_deref()
        .and_then(|p| p.strip_prefix("HTTP/"))
    {
        a.push(kv_str(sc::NETWORK_PROTOCOL_VERSION, v));
    }
    if done.status != 0 {
        a.push(kv_int(
            sc::HTTP_RESPONSE_STATUS_CODE,
            i64::from(done.status),
        ));
        a.push(kv_int(sc::LEGACY_HTTP_STATUS_CODE, i64::from(done.status)));
    }
    let outcome = status::server_outcome(done.status);
    if let Some(t) = &outcome.error_type {
        a.push(kv_str(sc::ERROR_TYPE, t.clone()));
    }
    set_status(&mut span, &outcome);
    span
}

fn client_span(
    config: &Config,
    req: &ActiveRequest,
    done: &Completion,
    responded: bool,
    call: &ClientCall,
    parent: Option<SpanId>,
    route: Option<&crate::route::Route>,
) -> Span {
    let label = call.target.service_label();
    let upstream_path = done.upstream_path.as_deref().map(strip_query);
    let template = config.routes.upstream_template(route, upstream_path);
    let name = match template {
        Some(t) => format!("{label} {} {}", req.method.for_name(), t.as_str()),
        None => format!("{label} {}", req.method.for_name()),
    };
    // Never later than the SERVER span's end, so the CLIENT span nests inside it.
    let end_ns = req
        .response_end_ns
        .map_or(done.end_ns, |t| t.min(done.end_ns));
    let mut span = base_span(req, call.span_id, parent, name, SpanKind::Client, end_ns);
    span.flags |= if req.server_span_id.is_none() && parent.is_some() {
        0x200
    } else {
        0
    };
    let outcome = status::client_outcome(done.status, responded, done.flags, &done.code_details);
    let a = &mut span.attributes;
    a.push(kv_str(sc::SPAN_KIND, sc::SPAN_KIND_CLIENT));
    a.push(kv_str(sc::SERVICE_NAME, call.target.service.clone()));
    a.push(kv_str(sc::PEER_SERVICE, call.target.service.clone()));
    a.push(kv_str(sc::ENVOY_CLUSTER, call.cluster.clone()));
    method_attrs(req, a);
    let authority = done.upstream_authority.as_deref().unwrap_or(&req.authority);
    let path = done.upstream_path.as_deref().unwrap_or(&req.path);
    let url = format!("{}://{}{}", req.scheme, authority, strip_query(path));
    a.push(kv_str(sc::URL_FULL, url.clone()));
    a.push(kv_str(sc::LEGACY_HTTP_URL, url));
    if let Some(t) = template {
        a.push(kv_str(sc::URL_TEMPLATE, t.as_str()));
    }
    if let Some(r) = route {
        a.push(kv_str(sc::HTTP_ROUTE, r.template.as_str()));
    }
    if let Some(addr) = &done.upstream_address {
        let (h, p) = split_host_port(addr);
        a.push(kv_str(sc::SERVER_ADDRESS, h));
        a.push(kv_str(sc::NETWORK_PEER_ADDRESS, h));
        if let Some(p) = p {
            a.push(kv_int(sc::SERVER_PORT, p));
            a.push(kv_int(sc::NETWORK_PEER_PORT, p));
        }
    }
    if let Some(d) = &call.target.durable_object {
        a.push(kv_str(sc::DURABLE_OBJECT_NAME, d.name.clone()));
        if let Some(id) = &call.durable_object_id {
            a.push(kv_str(sc::DURABLE_OBJECT_ID, id.clone()));
        }
    }
    if responded {
        a.push(kv_int(
            sc::HTTP_RESPONSE_STATUS_CODE,
            i64::from(done.status),
        ));
        a.push(kv_int(sc::LEGACY_HTTP_STATUS_CODE, i64::from(done.status)));
    }
    let flags = status::flags_to_string(done.flags);
    if !flags.is_empty() {
        a.push(kv_str(sc::ENVOY_RESPONSE_FLAGS, flags.clone()));
    }
    if let Some(t) = &outcome.error_type {
        a.push(kv_str(sc::ERROR_TYPE, t.clone()));
    }

    span.events.push(Event {
        time_unix_nano: req.start_ns,
        name: sc::EVENT_CALL_START.into(),
        attributes: vec![kv_str(sc::PEER_SERVICE, call.target.service.clone())],
        ..Default::default()
    });
    if responded {
        span.events.push(Event {
            time_unix_nano: span.end_time_unix_nano,
            name: sc::EVENT_CALL_COMPLETE.into(),
            attributes: vec![kv_int(
                sc::HTTP_RESPONSE_STATUS_CODE,
                i64::from(done.status),
            )],
            ..Default::default()
        });
    }
    if outcome.is_error {
        let mut attrs = vec![
            kv_str(
                sc::EXCEPTION_TYPE,
                outcome.error_type.clone().unwrap_or_default(),
            ),
            kv_str(sc::EXCEPTION_MESSAGE, outcome.message.clone()),
        ];
        if !flags.is_empty() {
            attrs.push(kv_str(sc::ENVOY_RESPONSE_FLAGS, flags));
        }
        if !done.code_details.is_empty() {
            attrs.push(kv_str(
                sc::ENVOY_RESPONSE_CODE_DETAILS,
                done.code_details.clone(),
            ));
        }
        span.events.push(Event {
            time_unix_nano: span.end_time_unix_nano,
            name: sc::EVENT_EXCEPTION.into(),
            attributes: attrs,
            ..Default::default()
        });
    }
    set_status(&mut span, &outcome);
    span
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        attr, attr_in, attr_str, config, event, event_names, hex, MockHost, MockStats, Val,
    };

    // ---------------------------------------------------------------------------- fixtures --

    /// Host randomness: trace id 10..1f, SERVER span id 20..27, CLIENT span id 30..37.
    const RANDOM: [u8; 32] = {
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
    const NEW_TRACE: &str = "101112131415161718191a1b1c1d1e1f";
    const SERVER_ID: &str = "2021222324252627";
    const CLIENT_ID: &str = "3031323334353637";

    const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT_SPAN: &str = "00f067aa0ba902b7";
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const PARENT_UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    const START: u64 = 1_000;
    const END: u64 = 5_000;

    const GATEWAY: &str = r#"{
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

    const DO_ROUTE_PARAM: &str = r#"{
      "routes": [{"template": "/api/cart/:cartId/add", "upstream_template": "/cart/add"}],
      "clusters": {"cart": {"durable_object": {"name": "CartDurableObject", "id": {"route_param": "cartId"}}}},
      "exporter": {"cluster": "otel"}
    }"#;

    const DO_HEADER: &str = r#"{
      "routes": [{"template": "/api/cart/:cartId/add", "upstream_template": "/cart/add"}],
      "clusters": {"cart": {"durable_object": {"name": "CartDurableObject", "id": {"header": "x-cart-id"}}}},
      "exporter": {"cluster": "otel"}
    }"#;

    fn with_mode(mode: &str) -> Config {
        config(&GATEWAY.replacen('{', &format!(r#"{{"mode": "{mode}","#), 1))
    }

    fn with_sampler(sampler: &str) -> Config {
        config(&GATEWAY.replacen('{', &format!(r#"{{"sampler": "{sampler}","#), 1))
    }

    /// A request as the gateway sees it at request headers, routed to `cluster` (if any).
    fn request(method: &str, path: &str, cluster: Option<&str>) -> MockHost {
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
    fn answered(status: u16) -> Completion {
        Completion {
            end_ns: END,
            status,
            flags: 0,
            code_details: VIA_UPSTREAM.into(),
            upstream_address: Some("10.0.0.7:8080".into()),
            upstream_path: None,
            upstream_authority: None,
        }
    }

    /// Envoy could not connect to the upstream (UF) and answered 503 itself.
    fn connection_failure() -> Completion {
        Completion {
            end_ns: END,
            status: 503,
            flags: 0x20,
            code_details: "upstream_reset_before_response_started{connection_failure}".into(),
            upstream_address: None,
            upstream_path: None,
            upstream_authority: None,
        }
    }

    /// Envoy answered itself before any upstream attempt.
    fn local_reply(status: u16, details: &str) -> Completion {
        Completion {
            end_ns: END,
            status,
            flags: 0,
            code_details: details.into(),
            upstream_address: None,
            upstream_path: None,
            upstream_authority: None,
        }
    }

    struct Run {
        host: MockHost,
        stats: MockStats,
        req: ActiveRequest,
        spans: Vec<Span>,
    }

    impl Run {
        fn server(&self) -> Option<&Span> {
            one_of_kind(&self.spans, SpanKind::Server)
        }
        fn client(&self) -> Option<&Span> {
            one_of_kind(&self.spans, SpanKind::Client)
        }
        fn server_span(&self) -> &Span {
            self.server().expect("no SERVER span")
        }
        fn client_span(&self) -> &Span {
            self.client().expect("no CLIENT span")
        }
        fn kinds(&self) -> Vec<i32> {
            self.spans.iter().map(|s| s.kind).collect()
        }
        /// The single `traceparent` the upstream receives.
        fn traceparent(&self) -> String {
            self.host.single_header("traceparent")
        }
    }

    fn one_of_kind(spans: &[Span], kind: SpanKind) -> Option<&Span> {
        let found: Vec<&Span> = spans.iter().filter(|s| s.kind == kind as i32).collect();
        assert!(found.len() <= 1, "more than one {kind:?} span");
        found.first().copied()
    }

    fn run(cfg: &Config, mut host: MockHost, done: &Completion) -> Run {
        let stats = MockStats::new();
        let req = start(cfg, &mut host, &stats);
        let spans = finish(cfg, &req, done);
        Run {
            host,
            stats,
            req,
            spans,
        }
    }

    fn is_error(span: &Span) -> bool {
        span.status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32)
    }

    fn error_type(span: &Span) -> Option<String> {
        attr(span, sc::ERROR_TYPE).map(|v| match v {
            Val::Str(s) => s,
            other => panic!("error.type is {other:?}"),
        })
    }

    // ---------------------------------------------------------------------- gateway basics --

    #[test]
    fn client_span_ends_when_the_response_completed_server_span_at_log() {
        let cfg = config(GATEWAY);
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        let stats = MockStats::new();
        let mut req = start(&cfg, &mut host, &stats);
        let upstream_done = START + 40;
        req.response_complete(upstream_done);
        req.response_complete(upstream_done + 5); // a later signal does not move it
        let spans = finish(&cfg, &req, &answered(200));
        let server = one_of_kind(&spans, SpanKind::Server).unwrap();
        let client = one_of_kind(&spans, SpanKind::Client).unwrap();
        assert_eq!(
            client.end_time_unix_nano, upstream_done,
            "CLIENT ends with the upstream response"
        );
        assert_eq!(server.end_time_unix_nano, END, "SERVER ends at log");
        let complete = client
            .events
            .iter()
            .find(|e| e.name == sc::EVENT_CALL_COMPLETE)
            .unwrap();
        assert_eq!(complete.time_unix_nano, upstream_done);

        // A completion signal after log time cannot push the CLIENT span past its parent.
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        let mut req = start(&cfg, &mut host, &stats);
        req.response_complete(END + 1_000);
        let spans = finish(&cfg, &req, &answered(200));
        assert_eq!(
            one_of_kind(&spans, SpanKind::Client)
                .unwrap()
                .end_time_unix_nano,
            END
        );
    }

    #[test]
    fn gateway_without_parent_starts_a_trace_with_linked_server_and_client() {
        let r = run(
            &config(GATEWAY),
            request("POST", "/api/cart/c-42/add", Some("cart")),
            &answered(200),
        );
        assert_eq!(
            r.kinds(),
            vec![SpanKind::Server as i32, SpanKind::Client as i32]
        );
        let (server, client) = (r.server_span(), r.client_span());

        assert_eq!(
            hex(&server.trace_id),
            NEW_TRACE,
            "new trace from host randomness"
        );
        assert_eq!(client.trace_id, server.trace_id, "one trace");
        assert_eq!(hex(&server.span_id), SERVER_ID);
        assert_eq!(hex(&client.span_id), CLIENT_ID);
        assert!(server.parent_span_id.is_empty(), "SERVER is the root");
        assert_eq!(
            client.parent_span_id, server.span_id,
            "CLIENT is a child of SERVER"
        );
        assert_eq!(server.flags, 0x101, "root: parent known to be not remote");
        assert_eq!(client.flags, 0x101, "CLIENT's parent is local");
        assert_eq!(server.trace_state, "");

        assert_eq!(server.name, "POST /api/cart/:cartId/add");
        assert_eq!(client.name, "CART_SERVICE POST /cart/:cartId/add");
        assert_eq!(attr_str(server, sc::HTTP_ROUTE), "/api/cart/:cartId/add");
        assert_eq!(attr_str(server, sc::URL_PATH), "/api/cart/c-42/add");
        assert_eq!(
            attr_str(server, sc::LEGACY_HTTP_URL),
            "https://shop.example/api/cart/c-42/add"
        );
        assert_eq!(attr_str(server, sc::SPAN_KIND), sc::SPAN_KIND_SERVER);
        assert_eq!(attr_str(server, sc::USER_AGENT_ORIGINAL), "curl/8.5");
        assert_eq!(attr_str(client, sc::SPAN_KIND), sc::SPAN_KIND_CLIENT);
        assert_eq!(attr_str(client, sc::URL_TEMPLATE), "/cart/:cartId/add");
        assert_eq!(attr_str(client, sc::SERVICE_NAME), "CART_SERVICE");
        assert_eq!(attr_str(client, sc::PEER_SERVICE), "CART_SERVICE");
        assert_eq!(attr_str(client, sc::ENVOY_CLUSTER), "cart");
        assert_eq!(
            attr_str(client, sc::URL_FULL),
            "https://shop.example/api/cart/c-42/add"
        );
        assert_eq!(attr_str(client, sc::SERVER_ADDRESS), "10.0.0.7");

        for s in [server, client] {
            assert_eq!(s.start_time_unix_nano, START, "{}", s.name);
            assert_eq!(s.end_time_unix_nano, END, "{}", s.name);
        }

        assert_eq!(
            r.traceparent(),
            format!("00-{NEW_TRACE}-{CLIENT_ID}-01"),
            "upstream continues the CLIENT span"
        );
        assert!(r.host.header_values("tracestate").is_empty());
        assert_eq!(r.stats.total(), 0, "nothing to count: {:?}", r.stats);
        assert!(r.req.recorded);
    }

    #[test]
    fn two_incoming_traceparents_leave_exactly_one_upstream() {
        let host = request("POST", "/api/cart/c-42/add", Some("cart"))
            .header("traceparent", PARENT)
            .header("traceparent", PARENT);
        let r = run(&config(GATEWAY), host, &answered(200));
        assert_eq!(
            r.host.header_values("traceparent"),
            vec![format!("00-{NEW_TRACE}-{CLIENT_ID}-01")],
            "duplicates replaced by our one value"
        );
        assert_eq!(r.stats.get(Counter::TraceparentInvalid), 1);
        assert_eq!(hex(&r.server_span().trace_id), NEW_TRACE);
    }

    #[test]
    fn upper_case_traceparent_header_name_is_replaced_too() {
        let host = request("GET", "/api/products/p-1", Some("products"))
            .header("Traceparent", PARENT)
            .header("TraceState", "vendor=x");
        let r = run(&config(GATEWAY), host, &answered(200));
        assert_eq!(
            r.traceparent(),
            format!("00-{PARENT_TRACE}-{CLIENT_ID}-01"),
            "header names are case-insensitive"
        );
        assert_eq!(r.host.single_header("tracestate"), "vendor=x");
    }

    #[test]
    fn valid_parent_and_tracestate_are_continued() {
        let host = request("POST", "/api/cart/c-42/add", Some("cart"))
            .header("traceparent", PARENT)
            .header("tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7");
        let r = run(&config(GATEWAY), host, &answered(200));
        let (server, client) = (r.server_span(), r.client_span());
        let want_state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

        assert_eq!(hex(&server.trace_id), PARENT_TRACE, "trace id kept");
        assert_eq!(hex(&client.trace_id), PARENT_TRACE);
        assert_eq!(
            hex(&server.parent_span_id),
            PARENT_SPAN,
            "SERVER is the remote parent's child"
        );
        assert_eq!(client.parent_span_id, server.span_id);
        assert_eq!(server.flags, 0x301, "remote parent");
        assert_eq!(client.flags, 0x101, "local parent");
        assert_eq!(server.trace_state, want_state);
        assert_eq!(client.trace_state, want_state);

        assert_eq!(r.traceparent(), format!("00-{PARENT_TRACE}-{CLIENT_ID}-01"));
        assert_eq!(r.host.single_header("tracestate"), want_state);
        assert_eq!(r.stats.total(), 0);
    }

    #[test]
    fn invalid_traceparent_rows() {
        for (traceparent, reason) in [
            (
                vec!["00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"],
                "upper case",
            ),
            (
                vec!["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
                "all-zero trace id",
            ),
            (
                vec!["00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
                "all-zero parent id",
            ),
            (
                vec!["ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
                "version ff",
            ),
            (vec![PARENT, PARENT], "duplicated header"),
            (vec!["garbage"], "garbage"),
            (vec![""], "empty value"),
        ] {
            let mut host = request("GET", "/api/products/p-1", Some("products"))
                .header("tracestate", "congo=t61rcWkgMzE");
            for tp in &traceparent {
                host = host.header("traceparent", tp);
            }
            let r = run(&config(GATEWAY), host, &answered(200));
            let server = r.server_span();
            assert_eq!(hex(&server.trace_id), NEW_TRACE, "{reason}: new trace");
            assert!(server.parent_span_id.is_empty(), "{reason}: no parent");
            assert_eq!(server.flags, 0x101, "{reason}: not a remote child");
            assert_eq!(server.trace_state, "", "{reason}: tracestate dropped");
            assert_eq!(
                r.traceparent(),
                format!("00-{NEW_TRACE}-{CLIENT_ID}-01"),
                "{reason}"
            );
            assert!(
                r.host.header_values("tracestate").is_empty(),
                "{reason}: incoming tracestate must not reach the upstream: {:?}",
                r.host.headers()
            );
            assert_eq!(r.stats.get(Counter::TraceparentInvalid), 1, "{reason}");
            assert_eq!(r.stats.get(Counter::RequestsNotSampled), 0, "{reason}");
        }
    }

    #[test]
    fn invalid_tracestate_is_dropped_and_counted_but_parent_kept() {
        let host = request("GET", "/api/products/p-1", Some("products"))
            .header("traceparent", PARENT)
            .header("tracestate", "a=1,a=2");
        let r = run(&config(GATEWAY), host, &answered(200));
        assert_eq!(hex(&r.server_span().trace_id), PARENT_TRACE);
        assert_eq!(r.server_span().trace_state, "");
        assert!(r.host.header_values("tracestate").is_empty());
        assert_eq!(r.stats.get(Counter::TracestateInvalid), 1);
        assert_eq!(r.stats.get(Counter::TraceparentInvalid), 0);
    }

    #[test]
    fn tracestate_without_traceparent_is_not_forwarded() {
        let host = request("GET", "/api/products/p-1", Some("products"))
            .header("tracestate", "congo=t61rcWkgMzE");
        let r = run(&config(GATEWAY), host, &answered(200));
        assert_eq!(hex(&r.server_span().trace_id), NEW_TRACE);
        assert_eq!(r.server_span().trace_state, "");
        assert!(r.host.header_values("tracestate").is_empty());
        assert_eq!(r.stats.total(), 0, "a missing traceparent is not invalid");
    }

    #[test]
    fn inject_failure_is_counted_and_the_request_still_traced() {
        let host = request("GET", "/api/products/p-1", Some("products")).failing_set_header();
        let r = run(&config(GATEWAY), host, &answered(200));
        assert_eq!(r.stats.get(Counter::InjectFailed), 1);
        assert_eq!(r.spans.len(), 2);
        assert!(!r.host.set_calls.is_empty(), "injection was attempted");
    }

    // ------------------------------------------------------------------------ span naming --

    #[test]
    fn span_naming_rows() {
        let gateway = config(GATEWAY);
        let do_param = config(DO_ROUTE_PARAM);
        let do_header = config(DO_HEADER);
        // (config, method, path, cluster, extra header, rewritten upstream :path,
        //  server name, client name, reason)
        type Row<'a> = (
            &'a Config,
            &'a str,
            &'a str,
            &'a str,
            Option<(&'a str, &'a str)>,
            Option<&'a str>,
            &'a str,
            &'a str,
            &'a str,
        );
        let rows: [Row; 12] = [
            (
                &gateway,
                "GET",
                "/healthz",
                "auth",
                None,
                None,
                "GET",
                "AUTH_SERVICE GET",
                "unmatched path",
            ),
            (
                &gateway,
                "GET",
                "/api/products/p-1?ref=home",
                "products",
                None,
                None,
                "GET /api/products/:id",
                "PRODUCTS_SERVICE GET /api/products/:id",
                "query ignored; no rewrite: route's own template",
            ),
            (
                &gateway,
                "FOO",
                "/healthz",
                "auth",
                None,
                None,
                "HTTP",
                "AUTH_SERVICE HTTP",
                "unknown method",
            ),
            (
                &gateway,
                "FOO",
                "/api/products/p-1",
                "products",
                None,
                None,
                "HTTP /api/products/:id",
                "PRODUCTS_SERVICE HTTP /api/products/:id",
                "unknown method, matched route",
            ),
            (
                &gateway,
                "get",
                "/healthz",
                "auth",
                None,
                None,
                "HTTP",
                "AUTH_SERVICE HTTP",
                "methods are case-sensitive",
            ),
            (
                &gateway,
                "GET",
                "/healthz",
                "inventory",
                None,
                None,
                "GET",
                "inventory GET",
                "unmapped cluster is named after itself",
            ),
            (
                &do_param,
                "POST",
                "/api/cart/c-42/add",
                "cart",
                None,
                None,
                "POST /api/cart/:cartId/add",
                "CartDurableObject POST /cart/add",
                "Durable Object, id from route param",
            ),
            (
                &do_header,
                "POST",
                "/api/cart/c-42/add",
                "cart",
                Some(("x-cart-id", "c-99")),
                None,
                "POST /api/cart/:cartId/add",
                "CartDurableObject POST /cart/add",
                "Durable Object, id from header",
            ),
            (
                &gateway,
                "GET",
                "/api/products/p-1",
                "products",
                None,
                Some("/products/p-1?x=1"),
                "GET /api/products/:id",
                "PRODUCTS_SERVICE GET /products/:id",
                "upstream template from the rewritten :path",
            ),
            (
                &gateway,
                "GET",
                "/api/products/p-1",
                "products",
                None,
                Some("/internal/p-1"),
                "GET /api/products/:id",
                "PRODUCTS_SERVICE GET /api/products/:id",
                "rewritten path matches no route: route's own",
            ),
            (
                &gateway,
                "POST",
                "/api/cart/c-42/add",
                "cart",
                None,
                Some("/products/p-1"),
                "POST /api/cart/:cartId/add",
                "CART_SERVICE POST /cart/:cartId/add",
                "configured upstream_template wins over the rewritten path",
            ),
            (
                &gateway,
                "GET",
                "/healthz",
                "auth",
                None,
                Some("/products/p-1"),
                "GET",
                "AUTH_SERVICE GET /products/:id",
                "unmatched downstream, rewritten path matches",
            ),
        ];
        for (cfg, method, path, cluster, extra, upstream_path, want_server, want_client, reason) in
            rows
        {
            let mut host = request(method, path, Some(cluster));
            if let Some((k, v)) = extra {
                host = host.header(k, v);
            }
            let done = Completion {
                upstream_path: upstream_path.map(str::to_string),
                ..answered(200)
            };
            let r = run(cfg, host, &done);
            assert_eq!(r.server_span().name, want_server, "{reason}");
            assert_eq!(r.client_span().name, want_client, "{reason}");
            match cfg.routes.find(strip_query(path)) {
                Some(_) => assert!(attr(r.server_span(), sc::HTTP_ROUTE).is_some(), "{reason}"),
                None => assert_eq!(attr(r.server_span(), sc::HTTP_ROUTE), None, "{reason}"),
            }
        }
    }

    #[test]
    fn unknown_method_is_other_with_the_original_kept() {
        let r = run(
            &config(GATEWAY),
            request("FOO", "/healthz", Some("auth")),
            &answered(200),
        );
        for s in [r.server_span(), r.client_span()] {
            assert_eq!(attr_str(s, sc::HTTP_REQUEST_METHOD), "_OTHER", "{}", s.name);
            assert_eq!(
                attr_str(s, sc::HTTP_REQUEST_METHOD_ORIGINAL),
                "FOO",
                "{}",
                s.name
            );
            assert_eq!(attr_str(s, sc::LEGACY_HTTP_METHOD), "FOO", "{}", s.name);
        }
        let r = run(
            &config(GATEWAY),
            request("GET", "/healthz", Some("auth")),
            &answered(200),
        );
        assert_eq!(attr_str(r.server_span(), sc::HTTP_REQUEST_METHOD), "GET");
        assert_eq!(
            attr(r.server_span(), sc::HTTP_REQUEST_METHOD_ORIGINAL),
            None
        );
    }

    #[test]
    fn durable_object_attributes() {
        // (config, path, header, want id, reason)
        for (json, path, extra, want_id, reason) in [
            (
                DO_ROUTE_PARAM,
                "/api/cart/c-42/add",
                None,
                Some("c-42"),
                "route param",
            ),
            (
                DO_ROUTE_PARAM,
                "/cart/c-42",
                None,
                None,
                "route not matched: no id",
            ),
            (
                DO_HEADER,
                "/api/cart/c-42/add",
                Some(("x-cart-id", "c-99")),
                Some("c-99"),
                "header",
            ),
            (
                DO_HEADER,
                "/api/cart/c-42/add",
                Some(("X-Cart-Id", "c-77")),
                Some("c-77"),
                "header name case-insensitive",
            ),
            (
                DO_HEADER,
                "/api/cart/c-42/add",
                None,
                None,
                "header absent: no id",
            ),
        ] {
            let mut host = request("POST", path, Some("cart"));
            if let Some((k, v)) = extra {
                host = host.header(k, v);
            }
            let r = run(&config(json), host, &answered(200));
            let client = r.client_span();
            assert_eq!(
                attr_str(client, sc::DURABLE_OBJECT_NAME),
                "CartDurableObject",
                "{reason}"
            );
            assert_eq!(
                attr(client, sc::DURABLE_OBJECT_ID),
                want_id.map(Val::str),
                "{reason}"
            );
            assert_eq!(
                attr_str(client, sc::SERVICE_NAME),
                "cart",
                "{reason}: service defaults to the cluster"
            );
            assert_eq!(
                attr_in(
                    &event(client, sc::EVENT_CALL_START).attributes,
                    sc::PEER_SERVICE
                ),
                Some(Val::str("cart")),
                "{reason}: the event names the same peer.service as the span"
            );
            assert_eq!(
                attr(r.server_span(), sc::DURABLE_OBJECT_NAME),
                None,
                "{reason}: only on CLIENT"
            );
        }
    }

    // ------------------------------------------------------------------------------ status --

    #[test]
    fn status_rows() {
        struct Want {
            server_error: bool,
            server_type: Option<&'static str>,
            /// `None`: no CLIENT span. `Some((is_error, error.type))`.
            client: Option<(bool, Option<&'static str>)>,
        }
        let cfg = config(GATEWAY);
        let timeout = Completion {
            status: 504,
            flags: 0x4,
            code_details: "upstream_response_timeout".into(),
            upstream_address: Some("10.0.0.7:8080".into()),
            ..answered(504)
        };
        let downstream_gone = Completion {
            status: 0,
            flags: 0x4000,
            code_details: "downstream_remote_disconnect".into(),
            upstream_address: Some("10.0.0.7:8080".into()),
            ..answered(0)
        };
        let legacy_no_details = Completion {
            code_details: String::new(),
            ..answered(200)
        };
        for (cluster, done, want, reason) in [
            (
                Some("products"),
                answered(200),
                Want {
                    server_error: false,
                    server_type: None,
                    client: Some((false, None)),
                },
                "200 via upstream",
            ),
            (
                Some("products"),
                answered(302),
                Want {
                    server_error: false,
                    server_type: None,
                    client: Some((false, None)),
                },
                "redirect",
            ),
            (
                Some("products"),
                answered(404),
                Want {
                    server_error: false,
                    server_type: None,
                    client: Some((true, Some("404"))),
                },
                "404: client error only",
            ),
            (
                Some("products"),
                answered(500),
                Want {
                    server_error: true,
                    server_type: Some("500"),
                    client: Some((true, Some("500"))),
                },
                "500: both",
            ),
            (
                Some("products"),
                connection_failure(),
                Want {
                    server_error: true,
                    server_type: Some("503"),
                    client: Some((true, Some("connection_failure"))),
                },
                "connection failure",
            ),
            (
                Some("products"),
                timeout,
                Want {
                    server_error: true,
                    server_type: Some("504"),
                    client: Some((true, Some("timeout"))),
                },
                "upstream timeout",
            ),
            (
                Some("products"),
                downstream_gone,
                Want {
                    server_error: true,
                    server_type: Some("_OTHER"),
                    client: Some((true, Some("_OTHER"))),
                },
                "downstream left before the response",
            ),
            (
                Some("products"),
                legacy_no_details,
                Want {
                    server_error: false,
                    server_type: None,
                    client: Some((false, None)),
                },
                "no code_details: responded from address and status",
            ),
            (
                Some("products"),
                local_reply(200, "direct_response"),
                Want {
                    server_error: false,
                    server_type: None,
                    client: None,
                },
                "cluster but never attempted",
            ),
            (
                Some("products"),
                local_reply(403, "rbac_access_denied_matched_policy[none]"),
                Want {
                    server_error: false,
                    server_type: None,
                    client: None,
                },
                "denied before the router",
            ),
            (
                None,
                local_reply(200, "direct_response"),
                Want {
                    server_error: false,
                    server_type: None,
                    client: None,
                },
                "no cluster: direct response",
            ),
            (
                None,
                local_reply(503, "no_healthy_upstream"),
                Want {
                    server_error: true,
                    server_type: Some("503"),
                    client: None,
                },
                "no cluster, local 503",
            ),
        ] {
            let r = run(&cfg, request("GET", "/api/products/p-1", cluster), &done);
            let server = r.server_span();
            assert_eq!(
                is_error(server),
                want.server_error,
                "{reason}: server status {:?}",
                server.status
            );
            if !want.server_error {
                assert_eq!(server.status, None, "{reason}: server UNSET");
            }
            assert_eq!(
                error_type(server).as_deref(),
                want.server_type,
                "{reason}: server error.type"
            );
            match (r.client(), want.client) {
                (None, None) => {}
                (Some(c), Some((err, ty))) => {
                    assert_eq!(is_error(c), err, "{reason}: client status {:?}", c.status);
                    if !err {
                        assert_eq!(c.status, None, "{reason}: client UNSET");
                    }
                    assert_eq!(error_type(c).as_deref(), ty, "{reason}: client error.type");
                }
                (got, want) => panic!(
                    "{reason}: CLIENT span {:?}, wanted {}",
                    got.map(|s| &s.name),
                    if want.is_some() { "one" } else { "none" }
                ),
            }
        }
    }

    #[test]
    fn connection_failure_is_explained_on_the_client_span() {
        let r = run(
            &config(GATEWAY),
            request("GET", "/api/products/p-1", Some("products")),
            &connection_failure(),
        );
        let client = r.client_span();
        let status = client.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert!(
            status.message.contains("connection_failure"),
            "{}",
            status.message
        );
        assert_eq!(error_type(client).as_deref(), Some("connection_failure"));
        assert_eq!(attr_str(client, sc::ENVOY_RESPONSE_FLAGS), "UF");
        assert_eq!(
            attr(client, sc::HTTP_RESPONSE_STATUS_CODE),
            None,
            "the upstream sent no status; 503 is Envoy's"
        );
        assert_eq!(event_names(client), vec!["call.start", "exception"]);
        let ex = event(client, sc::EVENT_EXCEPTION);
        assert_eq!(ex.time_unix_nano, END);
        assert_eq!(
            attr_in(&ex.attributes, sc::EXCEPTION_TYPE),
            Some(Val::str("connection_failure"))
        );
        assert_eq!(
            attr_in(&ex.attributes, sc::ENVOY_RESPONSE_FLAGS),
            Some(Val::str("UF"))
        );
        assert_eq!(
            attr_in(&ex.attributes, sc::ENVOY_RESPONSE_CODE_DETAILS),
            Some(Val::str(
                "upstream_reset_before_response_started{connection_failure}"
            ))
        );
        assert!(attr_in(&ex.attributes, sc::EXCEPTION_MESSAGE).is_some());

        let server = r.server_span();
        assert!(is_error(server));
        assert_eq!(error_type(server).as_deref(), Some("503"));
        assert_eq!(
            attr(server, sc::HTTP_RESPONSE_STATUS_CODE),
            Some(Val::Int(503))
        );
    }

    #[test]
    fn no_cluster_means_server_only_and_nothing_injected() {
        let host = request("GET", "/healthz", None)
            .header("traceparent", PARENT)
            .header("tracestate", "congo=t61rcWkgMzE");
        let r = run(&config(GATEWAY), host, &local_reply(200, "direct_response"));
        assert_eq!(r.kinds(), vec![SpanKind::Server as i32]);
        assert!(r.req.client.is_none());
        assert!(
            r.host.set_calls.is_empty(),
            "no upstream, no injection: {:?}",
            r.host.set_calls
        );
        assert_eq!(
            r.host.header_values("traceparent"),
            vec![PARENT.to_string()],
            "headers untouched"
        );
        assert_eq!(hex(&r.server_span().parent_span_id), PARENT_SPAN);
    }

    // ------------------------------------------------------------------------------ events --

    #[test]
    fn client_event_rows() {
        for (done, want, reason) in [
            (
                answered(200),
                vec!["call.start", "call.complete"],
                "answered",
            ),
            (
                answered(404),
                vec!["call.start", "call.complete", "exception"],
                "answered with an error",
            ),
            (
                answered(503),
                vec!["call.start", "call.complete", "exception"],
                "upstream's own 503",
            ),
            (
                connection_failure(),
                vec!["call.start", "exception"],
                "no answer",
            ),
        ] {
            let r = run(
                &config(GATEWAY),
                request("GET", "/api/products/p-1", Some("products")),
                &done,
            );
            let client = r.client_span();
            assert_eq!(event_names(client), want, "{reason}");
            let start_ev = event(client, sc::EVENT_CALL_START);
            assert_eq!(start_ev.time_unix_nano, START, "{reason}");
            assert_eq!(
                attr_in(&start_ev.attributes, sc::PEER_SERVICE),
                Some(Val::str("PRODUCTS_SERVICE")),
                "{reason}"
            );
            if want.contains(&"call.complete") {
                let done_ev = event(client, sc::EVENT_CALL_COMPLETE);
                assert_eq!(done_ev.time_unix_nano, END, "{reason}");
                assert_eq!(
                    attr_in(&done_ev.attributes, sc::HTTP_RESPONSE_STATUS_CODE),
                    Some(Val::Int(i64::from(done.status))),
                    "{reason}"
                );
            }
            if want.contains(&"exception") {
                let ex = event(client, sc::EVENT_EXCEPTION);
                assert_eq!(
                    attr_in(&ex.attributes, sc::EXCEPTION_TYPE).map(Some),
                    Some(error_type(client).map(Val::Str)),
                    "{reason}: exception.type == error.type"
                );
            }
            assert!(
                r.server_span().events.is_empty(),
                "{reason}: SERVER has no events"
            );
        }
    }

    // ------------------------------------------------------------------------------- modes --

    #[test]
    fn sidecar_inbound_emits_server_only_and_hands_its_id_to_the_service() {
        let host =
            request("GET", "/api/products/p-1", Some("local_app")).header("traceparent", PARENT);
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
            format!("00-{NEW_TRACE}-{SERVER_ID}-01"),
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
        assert_eq!(client.flags, 0x101);
        assert_eq!(r.traceparent(), format!("00-{NEW_TRACE}-{CLIENT_ID}-01"));
    }

    // ---------------------------------------------------------------------------- sampling --

    #[test]
    fn sampling_rows() {
        // (sampler, incoming traceparent, recorded, injected flags, reason)
        for (sampler, incoming, recorded, flags, reason) in [
            (
                "parent_based_always_on",
                None,
                true,
                "01",
                "root is recorded",
            ),
            (
                "parent_based_always_on",
                Some(PARENT),
                true,
                "01",
                "sampled parent",
            ),
            (
                "parent_based_always_on",
                Some(PARENT_UNSAMPLED),
                false,
                "00",
                "unsampled parent",
            ),
            (
                "always_on",
                Some(PARENT_UNSAMPLED),
                true,
                "01",
                "always_on overrides the parent",
            ),
            (
                "always_off",
                Some(PARENT),
                false,
                "00",
                "always_off overrides the parent",
            ),
            ("always_off", None, false, "00", "always_off root"),
        ] {
            let mut host = request("GET", "/api/products/p-1", Some("products"));
            if let Some(tp) = incoming {
                host = host.header("traceparent", tp);
            }
            let r = run(&with_sampler(sampler), host, &answered(200));
            let trace = if incoming.is_some() {
                PARENT_TRACE
            } else {
                NEW_TRACE
            };
            assert_eq!(r.req.recorded, recorded, "{reason}");
            assert_eq!(r.spans.len(), if recorded { 2 } else { 0 }, "{reason}");
            assert_eq!(
                r.stats.get(Counter::RequestsNotSampled),
                u64::from(!recorded),
                "{reason}"
            );
            assert_eq!(
                r.traceparent(),
                format!("00-{trace}-{CLIENT_ID}-{flags}"),
                "{reason}: context is propagated either way"
            );
        }
    }

    // ---------------------------------------------------------------------------- attributes --

    #[test]
    fn numeric_attributes_are_ints() {
        let host = MockHost::new()
            .header(":method", "GET")
            .header(":path", "/api/products/p-1")
            .header(":scheme", "https")
            .header(":authority", "shop.example:8443")
            .property(&["xds", "cluster_name"], b"products")
            .property(&["source", "address"], b"192.0.2.10:51234")
            .property(&["request", "protocol"], b"HTTP/1.1")
            .now(START)
            .random(RANDOM);
        let r = run(&config(GATEWAY), host, &answered(201));
        let (server, client) = (r.server_span(), r.client_span());
        for s in [server, client] {
            assert_eq!(
                attr(s, sc::HTTP_RESPONSE_STATUS_CODE),
                Some(Val::Int(201)),
                "{}",
                s.name
            );
            assert_eq!(
                attr(s, sc::LEGACY_HTTP_STATUS_CODE),
                Some(Val::Int(201)),
                "{}",
                s.name
            );
        }
        assert_eq!(attr(server, sc::SERVER_PORT), Some(Val::Int(8443)));
        assert_eq!(
            attr(server, sc::SERVER_ADDRESS),
            Some(Val::str("shop.example"))
        );
        assert_eq!(
            attr(server, sc::CLIENT_ADDRESS),
            Some(Val::str("192.0.2.10"))
        );
        assert_eq!(
            attr(server, sc::NETWORK_PROTOCOL_VERSION),
            Some(Val::str("1.1"))
        );
        assert_eq!(attr(client, sc::SERVER_PORT), Some(Val::Int(8080)));
        assert_eq!(attr(client, sc::NETWORK_PEER_PORT), Some(Val::Int(8080)));
        assert_eq!(
            attr(client, sc::NETWORK_PEER_ADDRESS),
            Some(Val::str("10.0.0.7"))
        );

        // No port in :authority: the scheme's default, still an int.
        let r = run(
            &config(GATEWAY),
            request("GET", "/api/products/p-1", Some("products")),
            &answered(200),
        );
        assert_eq!(attr(r.server_span(), sc::SERVER_PORT), Some(Val::Int(443)));
    }

    // -------------------------------------------------------------------------- completion --

    #[test]
    fn completion_is_read_from_envoy_attributes() {
        let host = MockHost::new()
            .header(":path", "/products/p-1?x=1")
            .header(":authority", "products.internal")
            .property_u64(&["response", "code"], 503)
            .property_u64(&["response", "flags"], 0x20)
            .property(
                &["response", "code_details"],
                b"upstream_reset_before_response_started{connection_failure}",
            )
            .property(&["upstream", "address"], b"10.0.0.7:8080")
            .now(END);
        let done = Completion::read(&host);
        assert_eq!(done.end_ns, END);
        assert_eq!(done.status, 503);
        assert_eq!(done.flags, 0x20);
        assert_eq!(
            done.code_details,
            "upstream_reset_before_response_started{connection_failure}"
        );
        assert_eq!(done.upstream_address.as_deref(), Some("10.0.0.7:8080"));
        assert_eq!(done.upstream_path.as_deref(), Some("/products/p-1?x=1"));
        assert_eq!(
            done.upstream_authority.as_deref(),
            Some("products.internal")
        );
        assert!(!done.responded());

        let empty = Completion::read(&MockHost::new());
        assert_eq!(
            (empty.status, empty.flags, empty.code_details.as_str()),
            (0, 0, "")
        );
        assert_eq!(empty.upstream_address, None);
    }

    #[test]
    fn end_before_start_is_clamped() {
        let done = Completion {
            end_ns: START - 1,
            ..answered(200)
        };
        let r = run(
            &config(GATEWAY),
            request("GET", "/api/products/p-1", Some("products")),
            &done,
        );
        for s in &r.spans {
            assert_eq!(s.end_time_unix_nano, START, "{}", s.name);
        }
    }

    #[test]
    fn exported_span_flags_carry_the_w3c_sampled_flag() {
        // OTLP `Span.flags`: bits 0-7 are the W3C trace-flags of the span, bits 8-9 its
        // parent's remoteness. Every exported span is recorded, hence sampled: the low byte
        // must say so, matching the `-01` we propagate.
        for (sampler, mode, incoming, reason) in [
            ("parent_based_always_on", "gateway", None, "gateway root"),
            (
                "parent_based_always_on",
                "gateway",
                Some(PARENT),
                "gateway child",
            ),
            (
                "always_on",
                "gateway",
                Some(PARENT_UNSAMPLED),
                "always_on over an unsampled parent",
            ),
            (
                "parent_based_always_on",
                "sidecar_inbound",
                Some(PARENT),
                "inbound sidecar",
            ),
            (
                "parent_based_always_on",
                "sidecar_outbound",
                Some(PARENT),
                "outbound sidecar",
            ),
        ] {
            let json = GATEWAY.replacen(
                '{',
                &format!(r#"{{"sampler": "{sampler}", "mode": "{mode}","#),
                1,
            );
            let mut host = request("GET", "/api/products/p-1", Some("products"));
            if let Some(tp) = incoming {
                host = host.header("traceparent", tp);
            }
            let r = run(&config(&json), host, &answered(200));
            assert!(!r.spans.is_empty(), "{reason}");
            assert!(r.traceparent().ends_with("-01"), "{reason}");
            for s in &r.spans {
                assert_eq!(
                    s.flags & 0xff,
                    0x01,
                    "{reason}: {} flags {:#x}",
                    s.name,
                    s.flags
                );
                assert_eq!(s.flags & !0x3ff, 0, "{reason}: high bits must be zero");
            }
        }
    }
}
