//! Request start: what the tracer decides at request headers, while headers can still be
//! changed. Extracts the parent, decides sampling, allocates span ids, picks the upstream
//! cluster's target and injects `traceparent`/`tracestate` upstream. Host reads here are the
//! request headers and `xds.cluster_name`; everything later waits for [`super::completion`].

use super::headers::capture_headers;
use crate::config::{ClientSpans, Config, DurableObjectId, Mode};
use crate::host::{
    property_string, ContextHeaders, HeaderList, HeaderMap, Host, HostInjector, Stats,
};
use crate::ids::{RequestIds, SpanId, TraceId};
use crate::metrics::Counter;
use crate::propagation::{self, Propagator, SpanContext, Trust};
use crate::route::Params;
use crate::sampler::Sampler;
use crate::url::strip_query;
use std::sync::Arc;

use super::request::{ActiveRequest, ClientCall, Method};

/// How request start reads the request headers.
enum StartHeaders {
    /// The whole map, before sampling: every recorded request needs it, and it is one host
    /// call however many headers the request has.
    Map(HeaderMap),
    /// `traceparent` and `tracestate` alone (two small host calls); the map follows only if
    /// the request is recorded. See [`lean_start`].
    Context(ContextHeaders),
}

impl propagation::Extractor for StartHeaders {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        match self {
            StartHeaders::Map(m) => m.get_all(name).collect(),
            StartHeaders::Context(c) => c.get_all(name),
        }
    }
}

/// True when request start reads only the trace context before sampling, and the header map
/// only for requests it records. The map read serialises every header into the VM (the most
/// expensive host call of the start, `make bench`'s `empty_maps2` row); an unrecorded request
/// needs nothing from it. Worth it where requests may go unrecorded (`always_off`, ratio
/// samplers, `parentbased_always_off`) and nothing else wants the request's details:
/// - not `always_on`/`parentbased_always_on`, which record (nearly) every request, so the
///   context reads would come on top of the map;
/// - not `sampler_keep_errors` (an unrecorded request may still become spans) nor
///   `call_metrics` (every call is counted by cluster);
/// - `propagators` is `tracecontext` alone (B3 reads and removes other headers);
/// - `trust` is `trusted` (an untrusted edge reads and removes every format);
/// - not the upstream-filter placement (an attempt is numbered from its headers), nor a
///   gateway that leaves its CLIENT spans to it (a client's `x-envoy-original-path` is removed,
///   see [`announce`]).
fn lean_start(config: &Config) -> bool {
    config.mode != Mode::UpstreamFilter
        && config.client_spans != ClientSpans::UpstreamFilter
        && config.propagation.trust == Trust::Trusted
        && !config.keep_errors
        && !config.call_metrics
        && config.propagation.propagators == [Propagator::TraceContext]
        && !matches!(
            config.sampler,
            Sampler::AlwaysOn | Sampler::ParentBasedAlwaysOn
        )
}

fn read_request_headers(host: &dyn Host) -> HeaderMap {
    host.request_headers().unwrap_or_else(|e| {
        // Unreadable headers: trace the request as a new root; never fail it.
        log::debug!("request headers unreadable ({e}); starting a new trace");
        HeaderMap::default()
    })
}

/// The route a path matches (first match wins) and its parameters.
fn match_route(config: &Config, path: &str) -> (Option<usize>, Params) {
    match config.routes.find_index(path) {
        Some((i, p)) => (Some(i), p),
        None => (None, Params::new()),
    }
}

/// Request-headers phase. Never fails: at worst the request is traced as a new root.
///
/// Typed stages, each its own function: [`own_export`] (the filter's own export requests pass
/// untouched) → [`incoming_context`] (extract, trust) → [`decide`] (sampling) →
/// [`RequestFacts::read`] (method, path, route, scheme, captured headers) →
/// [`upstream_call`] (cluster target, Durable Object id, attempt) → [`announce`] (inject,
/// access-log ids, response trace header).
pub fn start(config: &Config, host: &mut dyn Host, stats: &dyn Stats) -> ActiveRequest {
    let cluster = match own_export(config, host) {
        Upstream::OwnExport => return ActiveRequest::passthrough(),
        Upstream::Cluster(c) => Some(c),
        Upstream::Later => None,
    };
    let read = if lean_start(config) {
        StartHeaders::Context(ContextHeaders::read(host))
    } else {
        StartHeaders::Map(read_request_headers(host))
    };
    let incoming = incoming_context(config, &read, stats);
    let ids = RequestIds::from_random(host.random_bytes());
    let trace_id = incoming
        .parent
        .as_ref()
        .map_or(ids.trace_id, |p| p.trace_id);
    let early_route = early_route(config, host, &read);
    let recorded = decide(config, &incoming, &trace_id, early_route.as_ref(), stats);
    let headers = match read {
        StartHeaders::Map(h) => h,
        StartHeaders::Context(context) if !recorded => {
            return unrecorded(config, host, stats, &incoming, &ids, trace_id, &context);
        }
        StartHeaders::Context(_) => read_request_headers(host),
    };
    let start_ns = host.now_nanos();
    let facts = RequestFacts::read(config, host, &headers, early_route, recorded);
    let cluster = cluster.or_else(|| upstream_cluster(config, host));
    let client = upstream_call(
        config,
        &headers,
        &facts.params,
        ids.client_span_id,
        cluster,
        stats,
    );
    let server_span_id = config.mode.has_server_span().then_some(ids.server_span_id);
    let mut req = ActiveRequest {
        client,
        start_ns,
        method: facts.method,
        path: facts.path,
        route: facts.route,
        scheme: facts.scheme,
        authority: facts.authority,
        user_agent: facts.user_agent,
        request_headers: facts.request_headers,
        ..ActiveRequest::traced(recorded, trace_id, &incoming, server_span_id)
    };
    // The span the upstream continues: our CLIENT span, or (inbound sidecar) our SERVER span.
    let client_target = req
        .client
        .as_ref()
        .map(|c| (c.span_id, Arc::clone(&c.target)));
    let propagate = propagated(
        config,
        req.server_span_id,
        client_target
            .as_ref()
            .map(|(span_id, target)| (*span_id, target.service_label())),
    );
    let hop = req
        .server_span_id
        .or(req.client.as_ref().map(|c| c.span_id));
    announce(
        config,
        host,
        stats,
        &mut req,
        hop,
        propagate,
        &HeaderList(&headers),
    );
    req
}

/// What [`own_export`] learnt of the upstream cluster.
#[derive(Debug, PartialEq, Eq)]
enum Upstream {
    /// The request goes to the exporter's own cluster: the filter's export request.
    OwnExport,
    /// The cluster, read up front (upstream-filter placement).
    Cluster(String),
    /// Read later, only where the request turns out to have a CLIENT span.
    Later,
}

/// Stage 0. In the upstream-filter placement the filter also sees its own export requests,
/// should the exporter's cluster carry it: they are known by their cluster before anything is
/// read, counted or injected, and pass untouched (tracing them would export a span per
/// export, forever). Elsewhere export requests never pass the filter chain.
fn own_export(config: &Config, host: &dyn Host) -> Upstream {
    if config.mode != Mode::UpstreamFilter {
        return Upstream::Later;
    }
    match upstream_cluster(config, host) {
        Some(c) if c == config.exporter.cluster => Upstream::OwnExport,
        Some(c) => Upstream::Cluster(c),
        None => Upstream::Later,
    }
}

/// Stage 1: the incoming trace context, by the configured propagators and the edge's trust
/// (rules in [`crate::propagation`]); problems counted and logged at debug.
fn incoming_context(
    config: &Config,
    read: &dyn propagation::Extractor,
    stats: &dyn Stats,
) -> propagation::Incoming {
    let settings = &config.propagation;
    let incoming = propagation::incoming(&settings.propagators, settings.trust, read);
    for problem in &incoming.problems {
        if let Some(c) = problem.counter() {
            stats.add(c, 1);
        }
        log::debug!("{problem}");
    }
    if !incoming.links.is_empty() {
        stats.add(Counter::IncomingContextLinked, incoming.links.len() as u64);
    }
    incoming
}

/// A per-route ratio needs the route before sampling: from the map, or (lean start) from
/// `:path` alone when some route has a ratio. `None`: matched later, if recorded.
fn early_route(
    config: &Config,
    host: &dyn Host,
    read: &StartHeaders,
) -> Option<(Option<usize>, Params)> {
    match read {
        StartHeaders::Map(h) => Some(match_route(
            config,
            strip_query(super::placement::downstream_path(config.mode, h)),
        )),
        StartHeaders::Context(_) if config.routes.has_ratios() => {
            let path = property_string(host.request_header(":path"));
            Some(match_route(
                config,
                strip_query(path.as_deref().unwrap_or("/")),
            ))
        }
        StartHeaders::Context(_) => None,
    }
}

/// Stage 2: the sampling decision, by the sampler with the route's ratio (else the global
/// one) and the caller's decision; an unrecorded request is counted (with
/// `sampler_keep_errors`, at log instead: it may still be kept, and is counted once).
fn decide(
    config: &Config,
    incoming: &propagation::Incoming,
    trace_id: &TraceId,
    route: Option<&(Option<usize>, Params)>,
    stats: &dyn Stats,
) -> bool {
    let ratio = route
        .and_then(|(i, _)| i.and_then(|i| config.routes.routes.get(i)))
        .and_then(|r| r.ratio)
        .unwrap_or(config.ratio);
    let recorded = config
        .sampler
        .should_sample(incoming.caller_sampled(), trace_id, ratio);
    if !recorded && !config.keep_errors {
        stats.add(Counter::RequestsNotSampled, 1);
    }
    recorded
}

/// Stage 3: what a recorded request's spans say about the request itself.
struct RequestFacts {
    method: Method,
    path: String,
    route: Option<usize>,
    params: Params,
    scheme: String,
    authority: String,
    user_agent: Option<String>,
    request_headers: Vec<(usize, Vec<String>)>,
}

impl RequestFacts {
    fn read(
        config: &Config,
        host: &dyn Host,
        headers: &HeaderMap,
        early_route: Option<(Option<usize>, Params)>,
        recorded: bool,
    ) -> RequestFacts {
        let settings = &config.propagation;
        let path = strip_query(super::placement::downstream_path(config.mode, headers)).to_string();
        let (route, params) = early_route.unwrap_or_else(|| match_route(config, &path));
        RequestFacts {
            method: Method::parse(headers.get(":method").unwrap_or("GET")),
            path,
            route,
            params,
            scheme: propagation::trust::server_scheme(
                settings.trust,
                headers.get(":scheme"),
                match settings.trust {
                    Trust::Trusted => None,
                    Trust::Untrusted => {
                        property_string(host.property(&["connection", "tls_version"]))
                    }
                }
                .as_deref(),
            ),
            authority: headers.get(":authority").unwrap_or("").to_string(),
            user_agent: headers.get("user-agent").map(str::to_string),
            request_headers: if recorded || config.keep_errors {
                capture_headers(config, &config.request_headers, headers)
            } else {
                Vec::new()
            },
        }
    }
}

/// The upstream cluster of a placement that makes a CLIENT span at request start: `None` for
/// an inbound sidecar, and for a gateway whose CLIENT spans come from the upstream filter.
fn upstream_cluster(config: &Config, host: &dyn Host) -> Option<String> {
    match config.mode {
        Mode::SidecarInbound => None,
        Mode::Gateway if config.client_spans == ClientSpans::UpstreamFilter => None,
        _ => property_string(host.property(&["xds", "cluster_name"])),
    }
}

/// Stage 4: the upstream call the CLIENT span describes: the cluster's target, the Durable
/// Object id (route param or header; a missing one counted), the attempt (upstream-filter
/// placement).
fn upstream_call(
    config: &Config,
    headers: &HeaderMap,
    params: &Params,
    span_id: SpanId,
    cluster: Option<String>,
    stats: &dyn Stats,
) -> Option<ClientCall> {
    let cluster = cluster?;
    let target = config.cluster_target(&cluster);
    let durable_object_id = target.durable_object.as_ref().and_then(|d| match &d.id {
        DurableObjectId::RouteParam(p) => {
            params.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone())
        }
        DurableObjectId::Header(h) => headers.get(h).map(str::to_string),
    });
    if target.durable_object.is_some() && durable_object_id.is_none() {
        stats.add(Counter::DurableObjectIdMissing, 1);
        log::debug!(
            "Durable Object call to cluster '{cluster}' without an id (route param or header missing)"
        );
    }
    Some(ClientCall {
        span_id,
        cluster,
        target,
        durable_object_id,
        attempt: super::placement::at_start(config.mode, headers),
    })
}

/// A request [`lean_start`] found unrecorded: nothing will be written for it, so nothing more
/// is read (no header map, no cluster, no clock). Only the trace context goes on upstream, with
/// the span id a recorded request would have sent.
fn unrecorded(
    config: &Config,
    host: &mut dyn Host,
    stats: &dyn Stats,
    incoming: &propagation::Incoming,
    ids: &RequestIds,
    trace_id: TraceId,
    present: &ContextHeaders,
) -> ActiveRequest {
    let server_span_id = config.mode.has_server_span().then_some(ids.server_span_id);
    // What `start` propagates, less the cluster check: an unrecorded request's CLIENT span id
    // is sent even when the route has no upstream (then nobody reads it).
    let propagate = propagated(
        config,
        server_span_id,
        Some((ids.client_span_id, "the upstream")),
    );
    let mut req = ActiveRequest::traced(false, trace_id, incoming, server_span_id);
    let hop = server_span_id.or(propagate.map(|(s, _)| s));
    announce(config, host, stats, &mut req, hop, propagate, present);
    req
}

/// The span the upstream continues, and whom it is sent to (for the debug log): our SERVER
/// span where this hop makes no CLIENT span (inbound sidecar; a gateway whose CLIENT spans come
/// from the upstream filter), else the CLIENT span (`client`), if there is one.
fn propagated<'a>(
    config: &Config,
    server_span_id: Option<SpanId>,
    client: Option<(SpanId, &'a str)>,
) -> Option<(SpanId, &'a str)> {
    match config.mode {
        Mode::SidecarInbound => server_span_id.map(|s| (s, "local service")),
        Mode::Gateway if config.client_spans == ClientSpans::UpstreamFilter => {
            server_span_id.map(|s| (s, "the upstream filter"))
        }
        _ => client,
    }
}

/// The end of request start, for every request: trace ids into filter state (for the access
/// log), the trace context injected upstream, the response trace header decided. `hop` is this
/// hop's own span (SERVER, else CLIENT); `propagate` the span the upstream continues.
fn announce(
    config: &Config,
    host: &mut dyn Host,
    stats: &dyn Stats,
    req: &mut ActiveRequest,
    hop: Option<SpanId>,
    propagate: Option<(SpanId, &str)>,
    present: &dyn propagation::Extractor,
) {
    let settings = &config.propagation;
    if config.access_log_ids {
        expose_ids(host, req.trace_id, hop);
    }
    // The upstream-filter placement takes the route (and a Durable Object id) from
    // `x-envoy-original-path`. Envoy's router sets it when a route rewrites the path, but on a
    // route without a rewrite a client's own copy reaches the upstream filters unchanged
    // (measured with Envoy 1.40 unless `use_remote_address: true`, which strips it). The
    // gateway runs before the router: it removes the client's, so what the upstream filter
    // reads is Envoy's or nothing.
    if config.mode == Mode::Gateway
        && config.client_spans == ClientSpans::UpstreamFilter
        && !present
            .get_all(super::placement::ORIGINAL_PATH_HEADER)
            .is_empty()
    {
        if let Err(e) = host.set_request_header(super::placement::ORIGINAL_PATH_HEADER, None) {
            stats.add(Counter::InjectFailed, 1);
            log::warn!("could not remove a client's x-envoy-original-path: {e}");
        }
    }
    if let Some(root) = hop {
        log::debug!(
            "Span Context: {{ traceId: '{}', spanId: '{}' }}",
            req.trace_id,
            root
        );
    }
    if let Some((span_id, to)) = propagate {
        let ctx = SpanContext {
            debug: req.debug,
            ..SpanContext::new(
                req.trace_id,
                span_id,
                req.trace_flags,
                req.trace_state.clone(),
            )
        };
        let mut injector = HostInjector {
            host,
            failed: None,
            present,
        };
        propagation::outgoing(settings, &ctx, &mut injector);
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
    // The span the client called: SERVER, or CLIENT when there is no SERVER span.
    req.hop_span_id = hop;
    if let Some(span_id) = hop {
        let ctx = SpanContext::new(req.trace_id, span_id, req.trace_flags, None);
        req.response_header = propagation::response::header(settings.response_trace_header, &ctx);
    }
}

/// Filter-state keys for the access log (`%FILTER_STATE(wasm.gateway_tracing.trace_id:PLAIN)%`;
/// Envoy prefixes what a wasm filter sets with `wasm.`).
pub const FILTER_STATE_TRACE_ID: &str = "gateway_tracing.trace_id";
pub const FILTER_STATE_SPAN_ID: &str = "gateway_tracing.span_id";

/// Puts the trace id and this hop's span id (SERVER, else CLIENT) in filter state, so Envoy's
/// access log can print them, also for local replies.
fn expose_ids(host: &mut dyn Host, trace_id: TraceId, span: Option<SpanId>) {
    let mut result = host.set_filter_state(FILTER_STATE_TRACE_ID, trace_id.to_string().as_bytes());
    if let Some(span) = span {
        result =
            result.and(host.set_filter_state(FILTER_STATE_SPAN_ID, span.to_string().as_bytes()));
    }
    if let Err(e) = result {
        log::debug!("could not put trace ids in filter state: {e}");
    }
}
