//! The upstream-filter placement (`mode: "upstream_filter"`): one CLIENT span per attempt.
//!
//! What Envoy 1.40 gives an upstream HTTP filter (verified in the real Envoy, see
//! `tests/e2e_attempts.rs` and README "Placements"):
//! - request headers once per attempt, with the route's rewrite applied (`:path` is what the
//!   upstream gets) and the original path in `x-envoy-original-path`;
//! - `upstream.request_attempt_count` (1, 2, …), `upstream.address` and `xds.cluster_name`
//!   already at request headers (the host is picked before the upstream filter chain runs);
//! - header changes made by the upstream filter **persist into the next attempt**: attempt 2
//!   sees the `traceparent` attempt 1 injected. [`AttemptBook`] remembers which span ids this
//!   VM injected, so attempt 2 still names the SERVER span as its parent;
//! - the attempt's response headers (`:status`), but `response.*` attributes describe the
//!   downstream response, not the attempt, and `request.protocol` is the downstream protocol;
//! - no `on_log`: the attempt ends in `on_done`, when Envoy destroys the upstream request.

use super::completion::{Completion, VIA_UPSTREAM};
use super::request::{ActiveRequest, ClientCall};
use super::start::start;
use crate::config::Config;
use crate::host::{property_bytes, property_string, property_u64, Host, Stats};
use crate::ids::SpanId;
use crate::otlp::writer::Attrs;
use crate::semconv as sc;
use std::collections::{HashMap, VecDeque};

/// How many injected span ids a VM remembers. An entry is needed only until the next attempt
/// of the same request starts (a retry back-off, a hedge's per-try timeout), so this covers
/// thousands of attempts on one worker in between.
pub const DEFAULT_BOOK_CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Injected {
    /// The parent the attempt had: the SERVER span of the downstream placement.
    parent: Option<SpanId>,
    number: u32,
}

/// Per-VM memory of the CLIENT span ids the upstream filter injected, oldest evicted first.
#[derive(Debug)]
pub struct AttemptBook {
    by_id: HashMap<SpanId, Injected>,
    order: VecDeque<SpanId>,
    capacity: usize,
}

impl Default for AttemptBook {
    fn default() -> Self {
        AttemptBook::with_capacity(DEFAULT_BOOK_CAPACITY)
    }
}

impl AttemptBook {
    pub fn with_capacity(capacity: usize) -> AttemptBook {
        AttemptBook {
            by_id: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    fn remember(&mut self, id: SpanId, entry: Injected) {
        while self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.by_id.remove(&old);
            }
        }
        if self.by_id.insert(id, entry).is_none() {
            self.order.push_back(id);
        }
    }
}

/// Request headers of one attempt (upstream-filter placement): [`start`], then the parent and
/// attempt number settled. The `traceparent` this attempt received names the SERVER span on
/// the first attempt and, because Envoy keeps the upstream filter's header changes, the
/// previous attempt's CLIENT span on a retry: the book maps it back to the SERVER span.
pub fn start_attempt(
    config: &Config,
    host: &mut dyn Host,
    stats: &dyn Stats,
    book: &mut AttemptBook,
) -> ActiveRequest {
    let mut req = start(config, host, stats);
    // Only the upstream-filter placement has attempts (`Attempt` is set by `start` there); the
    // filter's own export requests have no call (`start` passed them untouched).
    let Some(call) = req.client.as_mut().filter(|c| c.attempt.is_some()) else {
        return req;
    };
    let previous = req.parent_span_id.and_then(|p| book.by_id.get(&p).copied());
    if let Some(prev) = previous {
        req.parent_span_id = prev.parent;
    }
    let counted = property_bytes(host.property(&["upstream", "request_attempt_count"]))
        .and_then(|b| property_u64(&b))
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n >= 1);
    let number = counted.unwrap_or_else(|| previous.map_or(1, |p| p.number.saturating_add(1)));
    if let Some(a) = call.attempt.as_mut() {
        a.number = number;
    }
    book.remember(
        call.span_id,
        Injected {
            parent: req.parent_span_id,
            number,
        },
    );
    req
}

/// The end of an attempt (`on_done`): its own response status (`:status` seen by the upstream
/// filter; `None` when no response arrived: reset, refused connection, per-try timeout) and
/// the host it went to. Envoy's `response.*` attributes describe the downstream response, so
/// they are not read here.
pub fn attempt_completion(host: &dyn Host, req: &ActiveRequest, status: Option<u16>) -> Completion {
    let attempt = req.client.as_ref().and_then(|c| c.attempt.as_ref());
    Completion {
        end_ns: host.now_nanos(),
        status: status.unwrap_or(0),
        flags: 0,
        code_details: match status {
            Some(_) => VIA_UPSTREAM.to_string(),
            None => property_string(host.property(&["upstream", "transport_failure_reason"]))
                .unwrap_or_else(|| NO_RESPONSE.to_string()),
        },
        upstream_address: property_string(host.property(&["upstream", "address"])),
        upstream_path: attempt.map(|a| a.path.clone()),
        upstream_authority: attempt.map(|a| a.authority.clone()),
        client_address: None,
        protocol: None,
        response_headers: Vec::new(),
        upstream_tls: property_string(host.property(&["upstream", "tls_version"])).is_some(),
    }
}

/// `code_details` of an attempt that ended without a response and without a transport
/// failure reason (reset, per-try timeout, cancelled hedge).
pub const NO_RESPONSE: &str = "attempt_ended_without_response";

/// The attempt's own attributes on its CLIENT span: `http.request.resend_count` from the
/// second attempt on (semconv: the first attempt has none), and the protocol. The version
/// comes only from `clusters.<name>.protocol_version`: Envoy does not tell a filter which
/// protocol the upstream connection speaks (`request.protocol` in an upstream filter is the
/// downstream's), and a guess would make an h2c upstream look like HTTP/1.1.
pub(super) fn write_attrs(call: &ClientCall, a: &mut Attrs<'_>) {
    if let Some(n) = call.attempt.as_ref().map(|t| t.number).filter(|n| *n >= 2) {
        a.int(sc::HTTP_REQUEST_RESEND_COUNT, i64::from(n - 1));
    }
    let version = call.target.protocol_version.as_deref();
    if call.attempt.is_some() || version.is_some() {
        a.str(sc::NETWORK_PROTOCOL_NAME, sc::NETWORK_PROTOCOL_HTTP);
    }
    if let Some(v) = version {
        a.str(sc::NETWORK_PROTOCOL_VERSION, v);
    }
}
