//! The state of one request between request headers and its end: [`ActiveRequest`] (trace
//! context in and out, the recording decision, span ids, what the spans will say of the
//! request) and [`ClientCall`] (the upstream call a CLIENT span describes). Built by
//! [`super::start`](mod@super::start), read by [`super::spans`] and [`super::completion`].

use crate::config::{ClusterTarget, Config};
use crate::ids::{SpanId, TraceId};
use crate::propagation::{self, SpanContext};
use crate::semconv as sc;
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
    /// `trust: untrusted`: the incoming contexts, linked from our first span, not continued.
    pub links: Vec<SpanContext>,
    /// The B3 debug flag goes on upstream ([`propagation::outgoing_debug`]).
    pub debug: bool,
    /// `response_trace_header`: (name, value, replace) for the response headers, as decided
    /// at start; see [`ActiveRequest::response_header_for`].
    pub response_header: Option<(&'static str, String, bool)>,
    /// The span the response header names (SERVER, else CLIENT).
    pub(super) hop_span_id: Option<SpanId>,
    /// The filter's own export request (upstream-filter placement): never traced or counted.
    pub(super) own_export: bool,
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
    pub(super) fn parse(raw: &str) -> Method {
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

impl ActiveRequest {
    /// What start knows of a request before its details: the trace context in and out, the
    /// recording decision, the SERVER span id. The rest is empty (all an unrecorded request
    /// of the lean start keeps).
    pub(super) fn traced(
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
            links: incoming.links.clone(),
            debug: propagation::outgoing_debug(parent, recorded),
            response_header: None,
            hop_span_id: None,
            own_export: false,
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

    /// A request the filter leaves alone (its own export request): unrecorded, nothing
    /// injected or announced, no spans.
    pub(super) fn passthrough() -> ActiveRequest {
        let none = propagation::Incoming {
            parent: None,
            links: Vec::new(),
            sampling_hint: None,
            problems: Vec::new(),
        };
        ActiveRequest {
            own_export: true,
            ..ActiveRequest::traced(false, TraceId::default(), &none, None)
        }
    }

    /// The response trace header to write once the response status is known: the one decided
    /// at start, except that a request `sampler_keep_errors` will keep (a 5xx) says so
    /// (`-01`), as its exported spans do.
    pub fn response_header_for(
        &self,
        config: &Config,
        status: Option<u16>,
    ) -> Option<(&'static str, String, bool)> {
        match (self.may_be_kept(config), status, self.hop_span_id) {
            (true, Some(500..), Some(span_id)) => {
                let ctx = SpanContext::new(
                    self.trace_id,
                    span_id,
                    self.trace_flags | propagation::FLAG_SAMPLED,
                    None,
                );
                propagation::response::header(config.propagation.response_trace_header, &ctx)
            }
            _ => self.response_header.clone(),
        }
    }

    /// Unrecorded, but `sampler_keep_errors` records it if it fails.
    pub fn may_be_kept(&self, config: &Config) -> bool {
        !self.recorded && config.keep_errors && !self.own_export
    }

    /// True when the log phase must read Envoy's completion: the request was sampled, it may
    /// still be kept because it failed (`sampler_keep_errors`), or its call is counted
    /// (`call_metrics`).
    pub fn wants_completion(&self, config: &Config) -> bool {
        !self.own_export
            && (self.recorded
                || config.keep_errors
                || (config.call_metrics && self.client.is_some()))
    }

    /// The response's end of stream reached this filter: the upstream call is over. The CLIENT
    /// span ends here; the SERVER span ends when Envoy has finished the whole stream (log).
    pub fn response_complete(&mut self, now_ns: u64) {
        self.response_end_ns.get_or_insert(now_ns);
    }
}
