//! The edge trust boundary (`trust`): whether an incoming trace context is continued, or, at
//! an untrusted public edge, only recorded as a span link; and where the client facts of a
//! SERVER span (`url.scheme`) come from.
//!
//! At a public edge the caller's `traceparent` is attacker input: it could join our spans to
//! someone else's trace, and its sampled flag forces (or suppresses) recording. `untrusted`
//! starts a new trace every time, ignores the incoming sampled flag, and keeps the incoming
//! context as a link (OTel spec, "Links between spans": a new trace started from an
//! untrusted parent is the example), so nothing is lost. Sidecars keep `trusted`.

use super::{extract, Extractor, Propagator, SpanContext};
use crate::metrics::Counter;

/// Whether incoming trace context is continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trust {
    /// Continue the incoming context (today's behaviour; meshes, internal hops).
    #[default]
    Trusted,
    /// A public edge: new trace, incoming context as a span link, its sampled flag ignored;
    /// `url.scheme` from the downstream connection (TLS or not), never from headers.
    Untrusted,
}

/// Something wrong (or dropped) in the incoming headers; never fails the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Traceparent(super::TraceparentError),
    Tracestate(super::TracestateError),
    /// Later members of `tracestate` with a key already seen: dropped, the rest kept.
    TracestateDuplicates(usize),
    B3(super::B3Error),
}

impl Problem {
    /// The counter this problem increments, if any (dropped duplicates are legal input).
    pub fn counter(&self) -> Option<Counter> {
        match self {
            Problem::Traceparent(_) => Some(Counter::TraceparentInvalid),
            Problem::Tracestate(_) => Some(Counter::TracestateInvalid),
            Problem::TracestateDuplicates(_) => None,
            Problem::B3(_) => Some(Counter::B3Invalid),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Traceparent(e) => {
                write!(
                    f,
                    "invalid traceparent ({}); starting a new trace",
                    e.as_str()
                )
            }
            Problem::Tracestate(e) => write!(f, "invalid tracestate dropped ({})", e.as_str()),
            Problem::TracestateDuplicates(n) => {
                write!(
                    f,
                    "tracestate: {n} duplicate key(s) dropped, first occurrence kept"
                )
            }
            Problem::B3(e) => write!(f, "invalid B3 headers ({}); ignored", e.as_str()),
        }
    }
}

/// The request start's view of the incoming headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The context to continue: `None` starts a new trace.
    pub parent: Option<SpanContext>,
    /// At an untrusted edge, the valid incoming context, to record as a span link.
    pub link: Option<SpanContext>,
    /// Trusted, no context found: a B3 sampling decision sent without ids (`b3: 0`).
    pub sampling_hint: Option<bool>,
    pub problems: Vec<Problem>,
}

impl Incoming {
    /// The caller's sampling decision for a parent-based sampler: the parent's sampled flag,
    /// else a B3 sampling-only header; `None` when the caller decided nothing.
    pub fn caller_sampled(&self) -> Option<bool> {
        self.parent
            .as_ref()
            .map(SpanContext::is_sampled)
            .or(self.sampling_hint)
    }
}

/// Extracts with `propagators` and applies `trust`.
pub fn incoming(propagators: &[Propagator], trust: Trust, carrier: &dyn Extractor) -> Incoming {
    let (found, problems) = extract(propagators, carrier);
    match trust {
        Trust::Trusted => {
            // B3 "Sampling State" without ids: only when no context was found.
            let sampling_hint = found.is_none().then(|| {
                super::b3::sampling_only(
                    carrier,
                    propagators.contains(&Propagator::B3),
                    propagators.contains(&Propagator::B3Multi),
                )
            });
            Incoming {
                parent: found,
                link: None,
                sampling_hint: sampling_hint.flatten(),
                problems,
            }
        }
        // At an untrusted edge the caller decides nothing about sampling.
        Trust::Untrusted => Incoming {
            parent: None,
            link: found,
            sampling_hint: None,
            problems,
        },
    }
}

/// `url.scheme` of the SERVER span. Trusted: the request's `:scheme` (which Envoy may have
/// taken from `x-forwarded-proto`). Untrusted: the downstream connection's, `https` exactly
/// when Envoy reports a TLS version for it (`connection.tls_version`).
pub fn server_scheme(
    trust: Trust,
    header_scheme: Option<&str>,
    tls_version: Option<&str>,
) -> String {
    match trust {
        Trust::Trusted => header_scheme.unwrap_or("http").to_string(),
        Trust::Untrusted => if tls_version.is_some() {
            "https"
        } else {
            "http"
        }
        .to_string(),
    }
}
