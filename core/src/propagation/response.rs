//! The optional response header (`response_trace_header`) that tells the client which trace
//! its request joined: `traceresponse` (W3C Trace Context Level 2, §5 "Trace Context HTTP
//! Response Headers Format", a draft section) or `server-timing` with a `traceparent` entry
//! (the convention browser instrumentation reads, over W3C Server Timing §3).

use super::{format_traceparent, SpanContext};

/// Which response header names the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseTraceHeader {
    /// None (default).
    #[default]
    Off,
    /// `traceresponse: 00-{trace-id}-{child-id}-{flags}`; replaces an upstream's copy, which
    /// names a span the client never called.
    Traceresponse,
    /// `server-timing: traceparent;desc="00-{trace-id}-{span-id}-{flags}"`, added next to
    /// any `server-timing` the upstream sent.
    ServerTiming,
}

/// The header to add: `(name, value, replace)`. `ctx` names our span the client called
/// (the SERVER span; the CLIENT span in `sidecar_outbound` mode).
pub fn header(
    kind: ResponseTraceHeader,
    ctx: &SpanContext,
) -> Option<(&'static str, String, bool)> {
    match kind {
        ResponseTraceHeader::Off => None,
        ResponseTraceHeader::Traceresponse => {
            Some(("traceresponse", format_traceparent(ctx), true))
        }
        ResponseTraceHeader::ServerTiming => Some((
            "server-timing",
            format!("traceparent;desc=\"{}\"", format_traceparent(ctx)),
            false,
        )),
    }
}
