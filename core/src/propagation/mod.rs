//! Trace context in and out of request headers: W3C Trace Context Level 2
//! (https://www.w3.org/TR/trace-context-2/) and B3 (https://github.com/openzipkin/b3-propagation),
//! chosen by the `propagators` setting, and the edge trust boundary (`trust`).
//!
//! One noun per file: [`w3c`] (`traceparent`), [`tracestate`], [`b3`], [`trust`] (continue or
//! link an incoming context; where client facts come from), [`response`] (the optional
//! response header). This file holds the carriers, [`SpanContext`], the [`Propagator`] list
//! and the composite [`extract`] / [`inject`].
//!
//! Carriers follow opentelemetry-rust's shape: an [`Extractor`] reads header values, an
//! [`Injector`] writes them. Parsing never fails the request: an invalid incoming context
//! means "no parent" (start a new trace).

pub mod b3;
pub mod response;
pub mod tracestate;
pub mod trust;
pub mod w3c;

pub use b3::B3Error;
pub use response::ResponseTraceHeader;
pub use tracestate::{parse_tracestate, TracestateError, MAX_TRACESTATE_MEMBERS};
pub use trust::{incoming, Incoming, Problem, Trust};
pub use w3c::{format_traceparent, parse_traceparent, TraceparentError, TRACEPARENT, TRACESTATE};

use crate::ids::{SpanId, TraceId};

/// Sampled flag bit of `trace-flags` (Level 2 §3.2.2.5.1).
pub const FLAG_SAMPLED: u8 = 0x01;
/// Random trace-id flag bit of `trace-flags` (Level 2 §3.2.2.5.2).
pub const FLAG_RANDOM: u8 = 0x02;

/// Reads request headers. `get_all` returns every value of a (lower-case) header name, in
/// order, including duplicates.
pub trait Extractor {
    fn get_all(&self, name: &str) -> Vec<&[u8]>;
}

/// Writes request headers; `set` replaces every existing value of the header.
pub trait Injector {
    fn set(&mut self, name: &str, value: String);
    /// Removes every value of the header.
    fn remove(&mut self, name: &str);
}

/// A parent (or our own) span context as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// W3C trace-flags (B3's sampling state is mapped onto [`FLAG_SAMPLED`]).
    pub flags: u8,
    /// Normalised `tracestate` (members joined by `,`), only when valid and non-empty.
    pub trace_state: Option<String>,
}

impl SpanContext {
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
    pub fn is_random(&self) -> bool {
        self.flags & FLAG_RANDOM != 0
    }
}

/// A trace context format, by its `OTEL_PROPAGATORS` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagator {
    /// `tracecontext`: W3C `traceparent` + `tracestate`.
    TraceContext,
    /// `b3`: the single `b3` header.
    B3,
    /// `b3multi`: the `x-b3-*` headers.
    B3Multi,
}

impl Propagator {
    pub const ALL: [Propagator; 3] = [
        Propagator::TraceContext,
        Propagator::B3,
        Propagator::B3Multi,
    ];

    /// The `OTEL_PROPAGATORS` name.
    pub fn name(self) -> &'static str {
        match self {
            Propagator::TraceContext => "tracecontext",
            Propagator::B3 => "b3",
            Propagator::B3Multi => "b3multi",
        }
    }

    pub fn from_name(name: &str) -> Option<Propagator> {
        Propagator::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The propagation settings of one filter instance (top-level config fields `propagators`,
/// `trust`, `response_trace_header`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Extraction priority order; every one listed is injected.
    pub propagators: Vec<Propagator>,
    pub trust: Trust,
    pub response_trace_header: ResponseTraceHeader,
}

impl Default for Settings {
    /// Today's behaviour: W3C only, incoming context trusted, no response header.
    fn default() -> Self {
        Settings {
            propagators: vec![Propagator::TraceContext],
            trust: Trust::Trusted,
            response_trace_header: ResponseTraceHeader::Off,
        }
    }
}

/// What one propagator found in the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing of this format (or, for B3, a sampling state without ids).
    Nothing,
    /// A valid context; `problems` are about its `tracestate` (dropped, or duplicates dropped).
    Context {
        ctx: SpanContext,
        problems: Vec<Problem>,
    },
    /// Headers of this format that do not parse.
    Invalid(Problem),
}

/// Extracts with one propagator.
pub fn extract_one(p: Propagator, carrier: &dyn Extractor) -> Found {
    let b3 = |r: Result<Option<SpanContext>, B3Error>| match r {
        Ok(None) => Found::Nothing,
        Ok(Some(ctx)) => Found::Context {
            ctx,
            problems: Vec::new(),
        },
        Err(e) => Found::Invalid(Problem::B3(e)),
    };
    match p {
        Propagator::TraceContext => extract_tracecontext(carrier),
        Propagator::B3 => b3(b3::extract_single(carrier)),
        Propagator::B3Multi => b3(b3::extract_multi(carrier)),
    }
}

/// Extracts the incoming context: the propagators in order, the first that finds a valid
/// context wins (unlike OpenTelemetry's composite propagator, where the last one wins: here
/// the list is a priority). Problems of every propagator tried are returned.
pub fn extract(
    propagators: &[Propagator],
    carrier: &dyn Extractor,
) -> (Option<SpanContext>, Vec<Problem>) {
    let mut problems = Vec::new();
    for p in propagators {
        match extract_one(*p, carrier) {
            Found::Nothing => {}
            Found::Invalid(problem) => problems.push(problem),
            Found::Context {
                ctx,
                problems: more,
            } => {
                problems.extend(more);
                return (Some(ctx), problems);
            }
        }
    }
    (None, problems)
}

/// W3C: `traceparent` (exactly one header, Level 2 §3.2 / test suite
/// `test_traceparent_duplicated`) and its `tracestate` (§3.3), which is only read when the
/// `traceparent` is valid (§3.3.1.1 / §3.5 / §4.3).
fn extract_tracecontext(carrier: &dyn Extractor) -> Found {
    let values = carrier.get_all(TRACEPARENT);
    let value = match values.as_slice() {
        [] => return Found::Nothing,
        [one] => *one,
        _ => return Found::Invalid(Problem::Traceparent(TraceparentError::Duplicated)),
    };
    let (trace_id, span_id, flags) = match parse_traceparent(value) {
        Ok(v) => v,
        Err(e) => return Found::Invalid(Problem::Traceparent(e)),
    };
    let states = carrier.get_all(TRACESTATE);
    let mut problems = Vec::new();
    let trace_state = if states.is_empty() {
        None
    } else {
        match parse_tracestate(&states) {
            Ok(ts) => {
                if ts.duplicates_dropped > 0 {
                    problems.push(Problem::TracestateDuplicates(ts.duplicates_dropped));
                }
                Some(ts.value).filter(|v| !v.is_empty())
            }
            Err(e) => {
                problems.push(Problem::Tracestate(e));
                None
            }
        }
    };
    Found::Context {
        ctx: SpanContext {
            trace_id,
            span_id,
            flags,
            trace_state,
        },
        problems,
    }
}

/// Writes `ctx` in every listed format. W3C: exactly one `traceparent`, and `tracestate`
/// when there is one (any incoming `tracestate` not kept is removed). B3: every stale B3
/// header (both forms) is removed, then the listed forms are written. Formats not listed
/// are left as they came.
pub fn inject(propagators: &[Propagator], ctx: &SpanContext, carrier: &mut dyn Injector) {
    if propagators.contains(&Propagator::TraceContext) {
        carrier.set(TRACEPARENT, format_traceparent(ctx));
        match &ctx.trace_state {
            Some(ts) => carrier.set(TRACESTATE, ts.clone()),
            None => carrier.remove(TRACESTATE),
        }
    }
    let single = propagators.contains(&Propagator::B3);
    let multi = propagators.contains(&Propagator::B3Multi);
    if single || multi {
        b3::inject(ctx, single, multi, carrier);
    }
}

/// The trace-flags we send and record for a trace: sampled when `recorded`; random trace id
/// (Level 2 §3.2.2.5.2) when the parent's trace id was flagged random (MUST keep it), or when
/// the trace id is ours (SHOULD set it: ours come from the host's random source).
pub fn outgoing_flags(parent: Option<&SpanContext>, recorded: bool) -> u8 {
    let random = parent.is_none_or(SpanContext::is_random);
    (if recorded { FLAG_SAMPLED } else { 0 }) | (if random { FLAG_RANDOM } else { 0 })
}

#[cfg(test)]
pub(crate) mod testing {
    use super::{Extractor, Injector};

    /// Request headers for extraction tests, duplicates kept, names matched exactly.
    pub struct Headers(pub Vec<(String, Vec<u8>)>);

    impl Headers {
        pub fn new(h: &[(&str, &str)]) -> Headers {
            Headers(
                h.iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            )
        }
    }

    impl Extractor for Headers {
        fn get_all(&self, name: &str) -> Vec<&[u8]> {
            self.0
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.as_slice())
                .collect()
        }
    }

    impl Injector for Headers {
        fn set(&mut self, name: &str, value: String) {
            self.remove(name);
            self.0.push((name.to_string(), value.into_bytes()));
        }
        fn remove(&mut self, name: &str) {
            self.0.retain(|(k, _)| k != name);
        }
    }
}

#[cfg(test)]
mod tests;
