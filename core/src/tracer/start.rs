//! Request start: what the tracer decides at request headers, while headers can still be
//! changed. Extracts the parent, decides sampling, allocates span ids, picks the upstream
//! cluster's target and injects `traceparent`/`tracestate` upstream. Host reads here are the
//! request headers and `xds.cluster_name`; everything later waits for [`super::completion`].

use super::headers::capture_headers;
use crate::config::ClusterTarget;
use crate::config::{ClientSpans, Config, DurableObjectId, Mode};
use crate::host::{
    property_string, ContextHeaders, HeaderList, HeaderMap, Host, HostInjector, Stats,
};
use crate::ids::{RequestIds, SpanId, TraceId};
use crate::metrics::Counter;
use crate::propagation::{self, Propagator, SpanContext, Trust};
use crate::route::Params;
use crate::sampler::Sampler;
use crate::semconv as sc;
use crate::url::strip_query;
use std::sync::Arc;

/// Methods semconv knows; anything else is reported as `_OTHER` (and spans are named `HTTP`).
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// State kept between request headers and log for one request.
#[derive(Debug, Clone)]
pub struct ActiveRequest {
    pub recorded: bool,
    pub trace_id: TraceId,
    pub trace_state: Option<String>,
    /// W3C trace-flags of this trace as we send and record them (sampled, random trace id).
    pub trace_flags: u8,
    /// `trust: untrusted`: the incoming context, linked from our first span, not continued.
    pub link: Option<SpanContext>,
    /// `response_trace_header`: (name, value, replace) for the response headers.
    pub response_header: Option<(&'static str, String, bool)>,
    pub parent_span_id: Option<SpanId>,
    /// The SERVER span (gateway, inbound sidecar).
    pub server_span_id: Option<SpanId>,
    /// The CLIENT span (gateway or outbound sidecar with an upstream cluster).
    pub client: Option<ClientCall>,
    pub start_ns: u64,
    /// When the last byte of the response passed this filter on its way back (see
    /// [`ActiveRequest::response_complete`]); ends the CLIENT span. `None` until then.
    pub response_end_ns: Option<u64>,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) route: Option<usize>,
    pub(super) scheme: String,
    pub(super) authority: String,
    pub(super) user_agent: Option<String>,
    /// Allow-listed request headers present on the request: (index in
    /// `config.request_headers`, values in order), redaction applied. Empty unless recorded
    /// (or kept for errors).
    pub(super) request_headers: Vec<(usize, Vec<String>)>,
}

/// The upstream call a CLIENT span describes.
#[derive(Debug, Clone)]
pub struct ClientCall {
    pub span_id: SpanId,
    pub cluster: String,
    pub target: Arc<ClusterTarget>,
    pub durable_object_id: Option<String>,
    /// Upstream-filter placement: which attempt of the request this is (1 = the first; see
    /// [`super::attempt`]). `None` in the other placements (the span covers every attempt).
    pub attempt: Option<super::placement::Attempt>,
}

#[derive(Debug, Clone)]
pub(super) struct Method {
    /// Normalised value for `http.request.method` (`_OTHER` when unknown).
    pub(super) value: String,
    /// The original when it was not a known method.
    pub(super) original: Option<String>,
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
    pub(super) fn for_name(&self) -> &str {
        if self.original.is_some() {
            "HTTP"
        } else {
            &self.value
        }
    }
}

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
/// - not the upstream-filter placement (an attempt is numbered from its headers).
fn lean_start(config: &Config) -> bool {
    config.mode != Mode::UpstreamFilter
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
pub fn start(config: &Config, host: &mut dyn Host, stats: &dyn Stats) -> ActiveRequest {
    let read = if lean_start(config) {
        StartHeaders::Context(ContextHeaders::read(host))
    } else {
        StartHeaders::Map(read_request_headers(host))
    };
    // --- propagation (rules in crate::propagation) ---
    let settings = &config.propagation;
    let incoming = propagation::incoming(&settings.propagators, settings.trust, &read);
    for problem in &incoming.problems {
        if let Some(c) = problem.counter() {
            stats.add(c, 1);
        }
        log::debug!("{problem}");
    }
    if incoming.link.is_some() {
        stats.add(Counter::IncomingContextLinked, 1);
    }
    let parent = incoming.parent.as_ref();
    // --- end propagation ---
    let ids = RequestIds::from_random(host.random_bytes());
    let trace_id = parent.map_or(ids.trace_id, |p| p.trace_id);

    // A per-route ratio needs the route before sampling: from the map, or (lean start) from
    // `:path` alone when some route has a ratio.
    let early_route = match &read {
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
    };
    let ratio = early_route
        .as_ref()
        .and_then(|(i, _)| i.and_then(|i| config.routes.routes.get(i)))
        .and_then(|r| r.ratio)
        .unwrap_or(config.ratio);
    let recorded = config
        .sampler
        .should_sample(incoming.caller_sampled(), &trace_id, ratio);
    if !recorded {
        stats.add(Counter::RequestsNotSampled, 1);
    }
    let headers = match read {
        StartHeaders::Map(h) => h,
        StartHeaders::Context(context) if !recorded => {
            return unrecorded(config, host, stats, &incoming, &ids, trace_id, &context);
        }
        StartHeaders::Context(_) => read_request_headers(host),
    };
    let start_ns = host.now_nanos();

    let raw_method = headers.get(":method").unwrap_or("GET");
    let full_path = super::placement::downstream_path(config.mode, &headers);
    let path = strip_query(full_path).to_string();
    let (route, params) = early_route.unwrap_or_else(|| match_route(config, &path));

    let server_span_id = config.mode.has_server_span().then_some(ids.server_span_id);
    let cluster = match config.mode {
        Mode::SidecarInbound => None,
        // The upstream-filter placement makes the CLIENT spans, one per attempt.
        Mode::Gateway if config.client_spans == ClientSpans::UpstreamFilter => None,
        _ => property_string(host.property(&["xds", "cluster_name"])),
    };
    let client = cluster.map(|cluster| {
        let target = config.cluster_target(&cluster);
        let durable_object_id = target.durable_object.as_ref().and_then(|d| match &d.id {
            DurableObjectId::RouteParam(p) => {
                params.iter().find(|(k, _)| k == p).map(|(_, v)| v.clone())
            }
            DurableObjectId::Header(h) => headers.get(h).map(str::to_string),
        });
        ClientCall {
            span_id: ids.client_span_id,
            cluster,
            target,
            durable_object_id,
            attempt: super::placement::at_start(config.mode, &headers),
        }
    });

    let mut req = ActiveRequest {
        client,
        start_ns,
        method: Method::parse(raw_method),
        path,
        route,
        scheme: propagation::trust::server_scheme(
            settings.trust,
            headers.get(":scheme"),
            match settings.trust {
                Trust::Trusted => None,
                Trust::Untrusted => property_string(host.property(&["connection", "tls_version"])),
            }
            .as_deref(),
        ),
        authority: headers.get(":authority").unwrap_or("").to_string(),
        user_agent: headers.get("user-agent").map(str::to_string),
        request_headers: if recorded || config.keep_errors {
            capture_headers(config, &config.request_headers, &headers)
        } else {
            Vec::new()
        },
        ..ActiveRequest::traced(recorded, trace_id, &incoming, server_span_id)
    };
    if let Some(c) = &req.client {
        if c.target.durable_object.is_some() && c.durable_object_id.is_none() {
            stats.add(Counter::DurableObjectIdMissing, 1);
            log::debug!(
                "Durable Object call to cluster '{}' without an id (route param or header missing)",
                c.cluster
            );
        }
    }
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
    if let Some(root) = hop {
        log::debug!(
            "Span Context: {{ traceId: '{}', spanId: '{}' }}",
            req.trace_id,
            root
        );
    }
    if let Some((span_id, to)) = propagate {
        let ctx = SpanContext {
            trace_id: req.trace_id,
            span_id,
            flags: req.trace_flags,
            trace_state: req.trace_state.clone(),
        };
        let mut injector = HostInjector {
            host,
            failed: None,
            present,
        };
        propagation::inject(&settings.propagators, &ctx, &mut injector);
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
    if let Some(span_id) = hop {
        let ctx = SpanContext {
            trace_id: req.trace_id,
            span_id,
            flags: req.trace_flags,
            trace_state: None,
        };
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

impl ActiveRequest {
    /// What start knows of a request before its details: the trace context in and out, the
    /// recording decision, the SERVER span id. The rest is empty (all an unrecorded request
    /// of the lean start keeps).
    fn traced(
        recorded: bool,
        trace_id: TraceId,
        incoming: &propagation::Incoming,
        server_span_id: Option<SpanId>,
    ) -> ActiveRequest {
        let parent = incoming.parent.as_ref();
        ActiveRequest {
            recorded,
            trace_id,
            trace_state: parent.and_then(|p| p.trace_state.clone()),
            trace_flags: propagation::outgoing_flags(parent, recorded),
            link: incoming.link.clone(),
            response_header: None,
            parent_span_id: parent.map(|p| p.span_id),
            server_span_id,
            client: None,
            start_ns: 0,
            response_end_ns: None,
            method: Method {
                value: String::new(),
                original: None,
            },
            path: String::new(),
            route: None,
            scheme: String::new(),
            authority: String::new(),
            user_agent: None,
            request_headers: Vec::new(),
        }
    }

    /// True when the log phase must read Envoy's completion: the request was sampled, it may
    /// still be kept because it failed (`sampler_keep_errors`), or its call is counted
    /// (`call_metrics`).
    pub fn wants_completion(&self, config: &Config) -> bool {
        self.recorded || config.keep_errors || (config.call_metrics && self.client.is_some())
    }

    /// The response's end of stream reached this filter: the upstream call is over. The CLIENT
    /// span ends here; the SERVER span ends when Envoy has finished the whole stream (log).
    pub fn response_complete(&mut self, now_ns: u64) {
        self.response_end_ns.get_or_insert(now_ns);
    }
}
