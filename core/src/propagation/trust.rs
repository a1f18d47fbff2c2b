//! The edge trust boundary (`trust`): whether an incoming trace context is continued, or, at
//! an untrusted public edge, only recorded as a span link; and where the client facts of a
//! SERVER span (`url.scheme`) come from.
//!
//! At a public edge the caller's `traceparent` is attacker input: it could join our spans to
//! someone else's trace, and its sampled flag forces (or suppresses) recording. `untrusted`
//! starts a new trace every time, ignores the incoming sampled flag, and keeps each valid
//! incoming context (any format, listed or not) as a link (OTel spec, "Links between spans":
//! a new trace started from an untrusted parent is the example), so nothing is lost. It also
//! removes every context header the client sent before ours are written ([`strip`]): a
//! service behind the edge that speaks another format must not continue the client's trace
//! or its forced sampling. Sidecars keep `trusted`.

use super::{b3, extract, extract_one, Extractor, Found, Injector, Propagator, SpanContext};
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

/// W3C Baggage (https://www.w3.org/TR/baggage/): the header a client may use to push
/// key-values into every service behind the edge.
pub const BAGGAGE: &str = "baggage";

/// `untrusted_baggage`: what an untrusted edge does with the client's `baggage` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UntrustedBaggage {
    /// Removed before the request goes upstream (the default: a client writes no baggage
    /// into services behind the edge).
    #[default]
    Drop,
    /// Passed on untouched (for an edge whose clients are meant to send baggage).
    Keep,
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
    /// At an untrusted edge, every valid incoming context (one per format the client sent;
    /// the same context in two formats once), to record as span links.
    pub links: Vec<SpanContext>,
    /// Trusted, no context found: a B3 sampling decision sent without ids (`b3: 0`).
    pub sampling_hint: Option<bool>,
    pub problems: Vec<Problem>,
}

impl Incoming {
    /// The caller's sampling decision for a parent-based sampler: the parent's sampled flag,
    /// else a B3 sampling-only header; `None` when the caller decided nothing.
    pub fn caller_sampled(&self) -> Option<bool> {
        match &self.parent {
            // B3 "defer": the caller decided nothing.
            Some(p) => p.caller_decision(),
            None => self.sampling_hint,
        }
    }
}

/// Extracts with `propagators` and applies `trust`.
pub fn incoming(propagators: &[Propagator], trust: Trust, carrier: &dyn Extractor) -> Incoming {
    match trust {
        Trust::Trusted => {
            let (found, problems) = extract(propagators, carrier);
            // B3 "Sampling State" without ids: only when no context was found.
            let b3_listed = propagators
                .iter()
                .any(|p| matches!(p, Propagator::B3 | Propagator::B3Multi));
            let sampling_hint = (found.is_none() && b3_listed)
                .then(|| b3::sampling_only(carrier))
                .flatten();
            Incoming {
                parent: found,
                links: Vec::new(),
                sampling_hint,
                problems,
            }
        }
        // At an untrusted edge the caller decides nothing about sampling, and every format
        // is read (listed or not: all of them are removed, so each valid one is linked).
        Trust::Untrusted => {
            let mut links: Vec<SpanContext> = Vec::new();
            let mut problems = Vec::new();
            let mut add = |found: Found| match found {
                Found::Nothing => {}
                Found::Invalid(p) => problems.push(p),
                Found::Context { ctx, problems: p } => {
                    problems.extend(p);
                    if !links
                        .iter()
                        .any(|l| l.trace_id == ctx.trace_id && l.span_id == ctx.span_id)
                    {
                        links.push(ctx);
                    }
                }
            };
            add(extract_one(Propagator::TraceContext, carrier));
            for form in [b3::extract_single(carrier), b3::extract_multi(carrier)] {
                add(match form {
                    Ok(None) => Found::Nothing,
                    Ok(Some(ctx)) => Found::Context {
                        ctx,
                        problems: Vec::new(),
                    },
                    Err(e) => Found::Invalid(Problem::B3(e)),
                });
            }
            Incoming {
                parent: None,
                links,
                sampling_hint: None,
                problems,
            }
        }
    }
}

/// Untrusted edge: removes every trace context header the client sent that the listed
/// formats will not overwrite ([`super::inject`] replaces `traceparent` and `tracestate`, and
/// removes both B3 forms, when it writes them): `traceparent`/`tracestate` when
/// `tracecontext` is not listed, both B3 forms when no B3 propagator is, and `baggage`
/// unless `untrusted_baggage: keep`.
pub fn strip(carrier: &mut dyn Injector, propagators: &[Propagator], baggage: UntrustedBaggage) {
    if !propagators.contains(&Propagator::TraceContext) {
        carrier.remove(super::TRACEPARENT);
        carrier.remove(super::TRACESTATE);
    }
    if !propagators
        .iter()
        .any(|p| matches!(p, Propagator::B3 | Propagator::B3Multi))
    {
        for h in b3::ALL_HEADERS {
            carrier.remove(h);
        }
    }
    if baggage == UntrustedBaggage::Drop {
        carrier.remove(BAGGAGE);
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
