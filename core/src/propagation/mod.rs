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
pub use trust::{incoming, Incoming, Problem, Trust, UntrustedBaggage};
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
    /// B3 "Debug Flag" (`b3: …-d`, `x-b3-flags: 1`): implies sampled ([`FLAG_SAMPLED`] is set
    /// with it, OTel propagators spec "B3 Extract": "MUST set the sampled trace flag when the
    /// debug flag is set") and is sent on as debug ("MUST preserve a debug trace flag").
    pub debug: bool,
    /// B3 "Sampling State" left out ("defer"): the caller decided nothing, the sampled bit of
    /// `flags` means nothing, and this hop's sampler decides as for a trace it starts.
    pub deferred: bool,
}

impl SpanContext {
    /// A context with W3C `flags` and no B3 sampling extras (not debug, not deferred).
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        flags: u8,
        trace_state: Option<String>,
    ) -> SpanContext {
        SpanContext {
            trace_id,
            span_id,
            flags,
            trace_state,
            debug: false,
            deferred: false,
        }
    }

    /// The caller's sampling decision: `None` when it deferred it to us (B3 without a
    /// sampling state).
    pub fn caller_decision(&self) -> Option<bool> {
        (!self.deferred).then(|| self.is_sampled())
    }

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
    /// `b3`: B3, written as the single `b3` header (both B3 forms are read).
    B3,
    /// `b3multi`: B3, written as the `x-b3-*` headers (both B3 forms are read).
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
    /// `untrusted_baggage` (meaningful with `trust: untrusted` only).
    pub untrusted_baggage: UntrustedBaggage,
    pub response_trace_header: ResponseTraceHeader,
}

impl Default for Settings {
    /// Today's behaviour: W3C only, incoming context trusted, no response header.
    fn default() -> Self {
        Settings {
            propagators: vec![Propagator::TraceContext],
            trust: Trust::Trusted,
            untrusted_baggage: UntrustedBaggage::Drop,
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
    match p {
        Propagator::TraceContext => extract_tracecontext(carrier),
        // OTel propagators spec, "B3 Extract": "MUST attempt to extract B3 encoded using
        // single and multi-header formats", whichever B3 propagator is configured.
        Propagator::B3 | Propagator::B3Multi => match b3::extract(carrier) {
            (Some(ctx), _) => Found::Context {
                ctx,
                problems: Vec::new(),
            },
            (None, Some(e)) => Found::Invalid(Problem::B3(e)),
            (None, None) => Found::Nothing,
        },
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
    let mut b3_tried = false;
    for p in propagators {
        // `b3` and `b3multi` read the same headers (both forms): tried once, where the first
        // of them is listed.
        if matches!(p, Propagator::B3 | Propagator::B3Multi) {
            if b3_tried {
                continue;
            }
            b3_tried = true;
        }
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
        ctx: SpanContext::new(trace_id, span_id, flags, trace_state),
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

/// Writes this hop's context upstream per `settings`: at an untrusted edge every context
/// header the client sent is removed first ([`trust::strip`]), then the listed formats are
/// written ([`inject`]).
pub fn outgoing(settings: &Settings, ctx: &SpanContext, carrier: &mut dyn Injector) {
    if settings.trust == Trust::Untrusted {
        trust::strip(carrier, &settings.propagators, settings.untrusted_baggage);
    }
    inject(&settings.propagators, ctx, carrier);
}

/// Whether the B3 debug flag goes on with this hop's context: when the caller sent it and the
/// trace is recorded here (debug means "sampled"; a sampler that ignores callers, such as
/// `always_off` or `traceidratio`, may still say no, and then `0` goes out, as in
/// `traceparent`). At an untrusted edge there is no parent, so never.
pub fn outgoing_debug(parent: Option<&SpanContext>, recorded: bool) -> bool {
    recorded && parent.is_some_and(|p| p.debug)
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
