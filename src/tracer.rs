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
    let found = config.routes.find(&path);
    let (route, params) = match found {
        Some((r, p)) => (
            config.routes.routes.iter().position(|x| std::ptr::eq(x, r)),
            p,
        ),
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
        let attempted = done.responded()
            || status::upstream_failed(done.flags)
            || done.upstream_address.is_some();
        if attempted {
            let parent = req.server_span_id.or(req.parent_span_id);
            spans.push(client_span(config, req, done, call, parent, route));
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
        // OTLP span flags bit 8: the parent's remoteness is known (set by callers, bit 9).
        flags: 0x100,
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
    span.flags = 0x100
        | if req.parent_span_id.is_some() {
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
    let mut span = base_span(
        req,
        call.span_id,
        parent,
        name,
        SpanKind::Client,
        done.end_ns,
    );
    span.flags = 0x100
        | if req.server_span_id.is_none() && parent.is_some() {
            0x200
        } else {
            0
        };
    let responded = done.responded();
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
        attributes: vec![kv_str(sc::PEER_SERVICE, label)],
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
