//! B3 propagation (https://github.com/openzipkin/b3-propagation), single-header (`b3`) and
//! multi-header (`x-b3-*`) forms: Zipkin, Istio's default, Kong's `header_type = b3`.
//! Sections cited are the headings of that README ("TraceId", "Sampling State", ...).
//!
//! B3 carries no `tracestate` and no random-trace-id flag: a parent taken from B3 goes on
//! with flag 02 clear (a 64-bit B3 trace id, left-padded with zeros, is not random).
//!
//! What the OpenTelemetry propagators specification ("B3 Requirements") asks, and where:
//! both forms are extracted whichever B3 propagator is configured, the single header first
//! ([`extract`]); a debug flag is kept and sent on ([`SpanContext::debug`], [`inject`]); a
//! missing sampling state ("defer") leaves the decision to this hop
//! ([`SpanContext::deferred`]); `X-B3-ParentSpanId` is never sent.

use super::w3c::trim_ows;
use super::{Extractor, Injector, SpanContext, FLAG_SAMPLED};
use crate::ids::{SpanId, TraceId};

pub const B3: &str = "b3";
pub const X_B3_TRACEID: &str = "x-b3-traceid";
pub const X_B3_SPANID: &str = "x-b3-spanid";
pub const X_B3_PARENTSPANID: &str = "x-b3-parentspanid";
pub const X_B3_SAMPLED: &str = "x-b3-sampled";
pub const X_B3_FLAGS: &str = "x-b3-flags";

/// Every header either form uses: removed before we write ours, so no stale copy goes on.
pub const ALL_HEADERS: [&str; 6] = [
    B3,
    X_B3_TRACEID,
    X_B3_SPANID,
    X_B3_PARENTSPANID,
    X_B3_SAMPLED,
    X_B3_FLAGS,
];

/// Why incoming B3 headers were not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3Error {
    Duplicated,
    NotAscii,
    /// Wrong number of `-`-separated fields in `b3`.
    BadFields,
    BadTraceId,
    ZeroTraceId,
    BadSpanId,
    ZeroSpanId,
    BadParentSpanId,
    BadSampled,
    /// `x-b3-traceid` without `x-b3-spanid` or the reverse.
    Incomplete,
}

impl B3Error {
    /// A short, low-cardinality reason for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Duplicated => "a B3 header appears more than once",
            Self::NotAscii => "non-ASCII value",
            Self::BadFields => {
                "b3 is not {trace}-{span}[-{sampled}[-{parent}]] or a sampling state"
            }
            Self::BadTraceId => "trace id is not 16 or 32 lowercase hex digits",
            Self::ZeroTraceId => "trace id is all zeros",
            Self::BadSpanId => "span id is not 16 lowercase hex digits",
            Self::ZeroSpanId => "span id is all zeros",
            Self::BadParentSpanId => "parent span id is not 16 lowercase hex digits",
            Self::BadSampled => "sampling state is not 0, 1 or d (x-b3-sampled: 0, 1, true, false)",
            Self::Incomplete => "x-b3-traceid and x-b3-spanid must come together",
        }
    }
}

/// "TraceId": 32 or 16 lower-hex characters; a 64-bit id is left-padded to 128 bits (as
/// OpenTelemetry's B3 propagator does), so the trace continues in W3C form.
fn trace_id(v: &[u8]) -> Result<TraceId, B3Error> {
    let s = std::str::from_utf8(v).map_err(|_| B3Error::NotAscii)?;
    let id = match s.len() {
        32 => TraceId::from_hex(s),
        16 => TraceId::from_hex(&format!("0000000000000000{s}")),
        _ => None,
    }
    .ok_or(B3Error::BadTraceId)?;
    if !id.is_valid() {
        return Err(B3Error::ZeroTraceId);
    }
    Ok(id)
}

/// "SpanId": 16 lower-hex characters, not all zeros.
fn span_id(v: &[u8]) -> Result<SpanId, B3Error> {
    let s = std::str::from_utf8(v).map_err(|_| B3Error::NotAscii)?;
    let id = SpanId::from_hex(s).ok_or(B3Error::BadSpanId)?;
    if !id.is_valid() {
        return Err(B3Error::ZeroSpanId);
    }
    Ok(id)
}

/// "ParentSpanId": 16 lower-hex characters (checked, not used: our span's parent is the
/// span named by the span id).
fn parent_span_id(v: &[u8]) -> Result<(), B3Error> {
    let s = std::str::from_utf8(v).map_err(|_| B3Error::BadParentSpanId)?;
    SpanId::from_hex(s)
        .filter(SpanId::is_valid)
        .map(|_| ())
        .ok_or(B3Error::BadParentSpanId)
}

/// A B3 "Sampling State", with the "Debug Flag" folded in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// `1` (`true`): accept.
    Accept,
    /// `0` (`false`): deny.
    Deny,
    /// `d`, or `X-B3-Flags: 1`: debug, which implies accept.
    Debug,
    /// Absent: the caller defers the decision to the receiver.
    Defer,
}

impl Sampling {
    /// The W3C flags and B3 extras of a context with this state.
    fn context(self, trace_id: TraceId, span_id: SpanId) -> SpanContext {
        let sampled = matches!(self, Sampling::Accept | Sampling::Debug);
        SpanContext {
            debug: self == Sampling::Debug,
            deferred: self == Sampling::Defer,
            ..SpanContext::new(
                trace_id,
                span_id,
                if sampled { FLAG_SAMPLED } else { 0 },
                None,
            )
        }
    }
}

/// "Sampling State" / "Debug Flag" in the single header: `1` accept, `0` deny, `d` debug
/// (which implies accept).
fn single_sampled(v: &[u8]) -> Result<Sampling, B3Error> {
    match v {
        b"1" => Ok(Sampling::Accept),
        b"d" => Ok(Sampling::Debug),
        b"0" => Ok(Sampling::Deny),
        _ => Err(B3Error::BadSampled),
    }
}

/// The one value of a header, or `None`; two values are an error ("Multiple Headers": each
/// header has one value).
fn single<'a>(carrier: &'a dyn Extractor, name: &str) -> Result<Option<&'a [u8]>, B3Error> {
    match carrier.get_all(name).as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(trim_ows(one))),
        _ => Err(B3Error::Duplicated),
    }
}

/// Extracts from the single `b3` header ("Single Header"):
/// `{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`. `Ok(None)` when the header is
/// absent or only carries a sampling state (`b3: 0`): no parent either way. A sampling
/// state left out ("defer") gives a [`SpanContext::deferred`] context: this hop decides.
pub fn extract_single(carrier: &dyn Extractor) -> Result<Option<SpanContext>, B3Error> {
    let Some(v) = single(carrier, B3)? else {
        return Ok(None);
    };
    if !v.is_ascii() {
        return Err(B3Error::NotAscii);
    }
    let fields: Vec<&[u8]> = v.split(|c| *c == b'-').collect();
    let (t, s, sampled, parent) = match fields.as_slice() {
        // "Single Header": a sampling state alone (`0`, `1`, `d`) carries no ids.
        [only] => {
            single_sampled(only)?;
            return Ok(None);
        }
        [t, s] => (*t, *s, None, None),
        [t, s, sampled] => (*t, *s, Some(*sampled), None),
        [t, s, sampled, parent] => (*t, *s, Some(*sampled), Some(*parent)),
        _ => return Err(B3Error::BadFields),
    };
    let trace_id = trace_id(t)?;
    let span_id = span_id(s)?;
    let sampling = sampled
        .map(single_sampled)
        .transpose()?
        .unwrap_or(Sampling::Defer);
    if let Some(p) = parent {
        parent_span_id(p)?;
    }
    Ok(Some(sampling.context(trace_id, span_id)))
}

/// Extracts B3 in either form (OTel propagators spec, "B3 Extract": "MUST attempt to extract
/// B3 encoded using single and multi-header formats. The single-header variant takes
/// precedence"): the single header's context when it has a valid one, else the multi
/// headers'. Also returns the first error met (an invalid `b3` next to valid `x-b3-*` is
/// still counted invalid).
pub fn extract(carrier: &dyn Extractor) -> (Option<SpanContext>, Option<B3Error>) {
    let mut error = None;
    match extract_single(carrier) {
        Ok(Some(ctx)) => return (Some(ctx), None),
        Ok(None) => {}
        Err(e) => error = Some(e),
    }
    match extract_multi(carrier) {
        Ok(Some(ctx)) => (Some(ctx), error),
        Ok(None) => (None, error),
        Err(e) => (None, error.or(Some(e))),
    }
}

/// A sampling decision sent without ids ("Single Header": `b3: 0`, `1` or `d`; "Multiple
/// Headers": `x-b3-sampled` / `x-b3-flags` without `x-b3-traceid`/`x-b3-spanid`): the caller
/// asks that the trace we start be (not) sampled. `None` when there is no such decision, or
/// when ids are present (then the context carries it) or a header is malformed.
/// Both forms are read (as [`extract`]), the single header first.
pub fn sampling_only(carrier: &dyn Extractor) -> Option<bool> {
    if let Ok(Some(v)) = single(carrier, B3) {
        if let Ok(sampling) = single_sampled(v) {
            return Some(sampling != Sampling::Deny);
        }
    }
    let ids = single(carrier, X_B3_TRACEID).ok()?.is_some()
        || single(carrier, X_B3_SPANID).ok()?.is_some();
    if ids {
        return None;
    }
    match multi_sampling(carrier).ok()? {
        Sampling::Defer => None,
        s => Some(s != Sampling::Deny),
    }
}

/// "Sampling State" and "Debug Flag" of the multi-header form: `X-B3-Flags: 1` is debug
/// (and wins over `X-B3-Sampled`: "Debug implies an accept decision"); `X-B3-Flags: 0` or any
/// other value is not ("Absent or any other value can be ignored"); `X-B3-Sampled` is `1`/`0`
/// (and, as "Sampling State" asks receivers to accept, `true`/`false`); neither is "defer".
fn multi_sampling(carrier: &dyn Extractor) -> Result<Sampling, B3Error> {
    let sampled = single(carrier, X_B3_SAMPLED)?;
    if let Some(b"1") = single(carrier, X_B3_FLAGS)? {
        return Ok(Sampling::Debug);
    }
    match sampled {
        None => Ok(Sampling::Defer),
        Some(b"1" | b"true") => Ok(Sampling::Accept),
        Some(b"0" | b"false") => Ok(Sampling::Deny),
        Some(_) => Err(B3Error::BadSampled),
    }
}

/// Extracts from `x-b3-*` ("Multiple Headers"); sampling as [`multi_sampling`] reads it.
/// `Ok(None)` when neither id header is present.
pub fn extract_multi(carrier: &dyn Extractor) -> Result<Option<SpanContext>, B3Error> {
    let t = single(carrier, X_B3_TRACEID)?;
    let s = single(carrier, X_B3_SPANID)?;
    let parent = single(carrier, X_B3_PARENTSPANID)?;
    let (t, s) = match (t, s) {
        (None, None) => return Ok(None),
        (Some(t), Some(s)) => (t, s),
        _ => return Err(B3Error::Incomplete),
    };
    let trace_id = trace_id(t)?;
    let span_id = span_id(s)?;
    let sampling = multi_sampling(carrier)?;
    if let Some(p) = parent {
        parent_span_id(p)?;
    }
    Ok(Some(sampling.context(trace_id, span_id)))
}

/// What this hop sends: debug when the context is sampled and debug, else accept or deny
/// (a decision is always sent: ours, when the caller deferred).
fn outgoing(ctx: &SpanContext) -> Sampling {
    match (ctx.is_sampled(), ctx.debug) {
        (true, true) => Sampling::Debug,
        (true, false) => Sampling::Accept,
        (false, _) => Sampling::Deny,
    }
}

/// `{TraceId}-{SpanId}-{SamplingState}`: 32-digit trace id, our span id, `1`, `0` or `d`. The
/// parent span id is optional in "Single Header" and never sent (OTel spec, "B3 Inject": "MUST
/// NOT propagate X-B3-ParentSpanId").
pub fn format_single(ctx: &SpanContext) -> String {
    let state = match outgoing(ctx) {
        Sampling::Debug => 'd',
        Sampling::Accept => '1',
        Sampling::Deny | Sampling::Defer => '0',
    };
    format!("{}-{}-{state}", ctx.trace_id, ctx.span_id)
}

/// Removes every B3 header, then writes the single form when `single`, the multi form when
/// `multi`. Multi: debug is `X-B3-Flags: 1` without `X-B3-Sampled` ("Debug implies an accept
/// decision, so don't also send the X-B3-Sampled header").
pub fn inject(ctx: &SpanContext, single: bool, multi: bool, carrier: &mut dyn Injector) {
    for h in ALL_HEADERS {
        carrier.remove(h);
    }
    if single {
        carrier.set(B3, format_single(ctx));
    }
    if multi {
        carrier.set(X_B3_TRACEID, ctx.trace_id.to_string());
        carrier.set(X_B3_SPANID, ctx.span_id.to_string());
        match outgoing(ctx) {
            Sampling::Debug => carrier.set(X_B3_FLAGS, "1".to_string()),
            Sampling::Accept => carrier.set(X_B3_SAMPLED, "1".to_string()),
            Sampling::Deny | Sampling::Defer => carrier.set(X_B3_SAMPLED, "0".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::testing::Headers;

    const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const SPAN: &str = "e457b5a2e4d86bd1";
    const PARENT: &str = "05e3ac9a4f6e3b90";

    /// What a row should extract: `Some((trace, span, sampling))`, `None` for no parent, or
    /// the error.
    type Want = Result<Option<(&'static str, &'static str, Sampling)>, B3Error>;

    struct Row {
        headers: Vec<(&'static str, &'static str)>,
        want: Want,
        reason: &'static str,
    }

    /// The sampling state a context carries (and checks the flags agree with it).
    fn sampling_of(c: &SpanContext) -> Sampling {
        let s = match (c.deferred, c.debug, c.is_sampled()) {
            (true, _, _) => Sampling::Defer,
            (false, true, _) => Sampling::Debug,
            (false, false, true) => Sampling::Accept,
            (false, false, false) => Sampling::Deny,
        };
        assert_eq!(
            c.is_sampled(),
            matches!(s, Sampling::Accept | Sampling::Debug),
            "debug sets the sampled flag; defer leaves it clear"
        );
        s
    }

    fn got(
        r: Result<Option<SpanContext>, B3Error>,
    ) -> Result<Option<(String, String, Sampling)>, B3Error> {
        r.map(|o| {
            o.map(|c| {
                (
                    c.trace_id.to_string(),
                    c.span_id.to_string(),
                    sampling_of(&c),
                )
            })
        })
    }

    fn want(w: Want) -> Result<Option<(String, String, Sampling)>, B3Error> {
        w.map(|o| o.map(|(t, s, b)| (t.to_string(), s.to_string(), b)))
    }

    #[test]
    fn b3_single_rows() {
        use B3Error::*;
        use Sampling::*;
        let full = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
        for row in [
            Row {
                headers: vec![(B3, full)],
                want: Ok(Some((TRACE, SPAN, Accept))),
                reason: "Single Header: all four fields",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")],
                want: Ok(Some((TRACE, SPAN, Deny))),
                reason: "Sampling State: 0 is deny",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d")],
                want: Ok(Some((TRACE, SPAN, Debug))),
                reason: "Debug Flag: d implies accept",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1")],
                want: Ok(Some((TRACE, SPAN, Defer))),
                reason: "Sampling State: absent is defer, this hop's sampler decides",
            },
            Row {
                headers: vec![(B3, "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
                want: Ok(Some(("000000000000000064fe8b2a57d3eff7", SPAN, Accept))),
                reason: "TraceId: 64-bit id left-padded",
            },
            Row {
                headers: vec![(B3, "0")],
                want: Ok(None),
                reason: "Single Header: a sampling state alone has no ids",
            },
            Row {
                headers: vec![],
                want: Ok(None),
                reason: "absent",
            },
            Row {
                headers: vec![(B3, "80F198EE56343BA864FE8B2A57D3EFF7-e457b5a2e4d86bd1-1")],
                want: Err(BadTraceId),
                reason: "TraceId: lower-hex",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff-e457b5a2e4d86bd1-1")],
                want: Err(BadTraceId),
                reason: "TraceId: 16 or 32 characters",
            },
            Row {
                headers: vec![(B3, "00000000000000000000000000000000-e457b5a2e4d86bd1-1")],
                want: Err(ZeroTraceId),
                reason: "TraceId: all zeros is invalid",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1")],
                want: Err(ZeroSpanId),
                reason: "SpanId: all zeros is invalid",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd-1")],
                want: Err(BadSpanId),
                reason: "SpanId: 16 characters",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-2")],
                want: Err(BadSampled),
                reason: "Sampling State: 0, 1 or d",
            },
            Row {
                headers: vec![(
                    B3,
                    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-xyz",
                )],
                want: Err(BadParentSpanId),
                reason: "ParentSpanId: 16 lower-hex",
            },
            Row {
                headers: vec![(
                    B3,
                    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-x",
                )],
                want: Err(BadFields),
                reason: "Single Header: at most four fields",
            },
            Row {
                headers: vec![(B3, "2")],
                want: Err(BadSampled),
                reason: "Single Header: a lone field is a sampling state",
            },
            Row {
                headers: vec![(B3, full), (B3, full)],
                want: Err(Duplicated),
                reason: "Single Header: one header",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-é-1")],
                want: Err(NotAscii),
                reason: "Single Header: ASCII",
            },
        ] {
            let h = Headers::new(&row.headers);
            assert_eq!(got(extract_single(&h)), want(row.want), "{}", row.reason);
        }
    }

    #[test]
    fn b3_multi_rows() {
        use B3Error::*;
        use Sampling::*;
        for row in [
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "1"),
                    (X_B3_PARENTSPANID, PARENT),
                ],
                want: Ok(Some((TRACE, SPAN, Accept))),
                reason: "Multiple Headers: all of them",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "0"),
                ],
                want: Ok(Some((TRACE, SPAN, Deny))),
                reason: "Sampling State: 0 is deny",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "false"),
                ],
                want: Ok(Some((TRACE, SPAN, Deny))),
                reason: "Sampling State: accept false from older tracers",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "true"),
                ],
                want: Ok(Some((TRACE, SPAN, Accept))),
                reason: "Sampling State: accept true from older tracers",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_FLAGS, "1"),
                ],
                want: Ok(Some((TRACE, SPAN, Debug))),
                reason: "Debug Flag: X-B3-Flags 1 implies accept",
            },
            Row {
                headers: vec![(X_B3_TRACEID, TRACE), (X_B3_SPANID, SPAN)],
                want: Ok(Some((TRACE, SPAN, Defer))),
                reason: "Sampling State: absent is defer, this hop's sampler decides",
            },
            Row {
                headers: vec![(X_B3_SAMPLED, "0")],
                want: Ok(None),
                reason: "Multiple Headers: a sampling state alone has no ids",
            },
            Row {
                headers: vec![(X_B3_TRACEID, TRACE)],
                want: Err(Incomplete),
                reason: "Multiple Headers: TraceId needs SpanId",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "yes"),
                ],
                want: Err(BadSampled),
                reason: "Sampling State: 1 or 0",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_FLAGS, "2"),
                ],
                want: Ok(Some((TRACE, SPAN, Defer))),
                reason: "Debug Flag: any value but 1 can be ignored",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "1"),
                    (X_B3_FLAGS, "0"),
                ],
                want: Ok(Some((TRACE, SPAN, Accept))),
                reason: "Debug Flag: X-B3-Flags 0 is accepted (not debug)",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "0"),
                    (X_B3_FLAGS, "1"),
                ],
                want: Ok(Some((TRACE, SPAN, Debug))),
                reason: "Debug Flag: debug implies accept, over X-B3-Sampled: 0",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                ],
                want: Err(Duplicated),
                reason: "Multiple Headers: one value each",
            },
            Row {
                headers: vec![(X_B3_TRACEID, "xyz"), (X_B3_SPANID, SPAN)],
                want: Err(BadTraceId),
                reason: "TraceId: lower-hex",
            },
        ] {
            let h = Headers::new(&row.headers);
            assert_eq!(got(extract_multi(&h)), want(row.want), "{}", row.reason);
        }
    }

    /// `extract`: both forms, whichever propagator is listed; the single header first.
    #[test]
    fn b3_either_form_rows() {
        use Sampling::*;
        let other = "0af7651916cd43dd8448eb211c80319c";
        let single = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            Vec<(&str, &str)>,
            Option<(&str, Sampling)>,
            Option<B3Error>,
            &str,
        )> = vec![
            (
                vec![(B3, single)],
                Some((TRACE, Accept)),
                None,
                "single alone",
            ),
            (
                vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_FLAGS, "1"),
                ],
                Some((TRACE, Debug)),
                None,
                "multi alone (the b3 propagator reads it too)",
            ),
            (
                vec![(B3, single), (X_B3_TRACEID, other), (X_B3_SPANID, SPAN)],
                Some((TRACE, Accept)),
                None,
                "B3 Extract: the single-header variant takes precedence",
            ),
            (
                vec![
                    (B3, "garbage-x"),
                    (X_B3_TRACEID, other),
                    (X_B3_SPANID, SPAN),
                ],
                Some((other, Defer)),
                Some(B3Error::BadTraceId),
                "an invalid single header falls back to the multi headers, and is counted",
            ),
            (
                vec![(B3, "0")],
                None,
                None,
                "sampling state alone: no context",
            ),
            (vec![], None, None, "nothing"),
        ];
        for (headers, want, error, reason) in rows {
            let h = Headers::new(&headers);
            let (ctx, e) = extract(&h);
            let got = ctx.map(|c| (c.trace_id.to_string(), sampling_of(&c)));
            assert_eq!(got, want.map(|(t, s)| (t.to_string(), s)), "{reason}");
            assert_eq!(e, error, "{reason}");
        }
    }

    /// `inject`: what goes out for each outgoing state, in each form.
    #[test]
    fn b3_inject_rows() {
        let trace = crate::ids::TraceId::from_hex(TRACE).unwrap();
        let span = SpanId::from_hex(SPAN).unwrap();
        let ctx = |flags: u8, debug: bool| SpanContext {
            debug,
            ..SpanContext::new(trace, span, flags, None)
        };
        #[allow(clippy::type_complexity)]
        let rows: Vec<(SpanContext, &str, Vec<(&str, &str)>, &str)> = vec![
            (ctx(1, false), "1", vec![(X_B3_SAMPLED, "1")], "accept"),
            (ctx(0, false), "0", vec![(X_B3_SAMPLED, "0")], "deny"),
            (
                ctx(1, true),
                "d",
                vec![(X_B3_FLAGS, "1")],
                "B3 Extract: MUST preserve a debug flag; multi: X-B3-Flags without X-B3-Sampled",
            ),
            (
                ctx(0, true),
                "0",
                vec![(X_B3_SAMPLED, "0")],
                "debug but not recorded here: the decision sent is ours (as in traceparent)",
            ),
        ];
        for (c, state, multi, reason) in rows {
            let mut h = Headers::new(&[(X_B3_PARENTSPANID, PARENT), (X_B3_FLAGS, "1")]);
            inject(&c, true, true, &mut h);
            assert_eq!(
                h.0.iter()
                    .find(|(k, _)| k == B3)
                    .map(|(_, v)| String::from_utf8_lossy(v).to_string()),
                Some(format!("{TRACE}-{SPAN}-{state}")),
                "{reason}"
            );
            let mut want = vec![(X_B3_TRACEID, TRACE), (X_B3_SPANID, SPAN)];
            want.extend(multi);
            let mut got: Vec<(String, String)> =
                h.0.iter()
                    .filter(|(k, _)| k != B3)
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).to_string()))
                    .collect();
            got.sort();
            let mut want: Vec<(String, String)> = want
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            want.sort();
            assert_eq!(got, want, "{reason}: no parent span id, no stale flags");
        }
    }

    struct SamplingRow {
        headers: Vec<(&'static str, &'static str)>,
        want: Option<bool>,
        reason: &'static str,
    }

    #[test]
    fn b3_sampling_only_rows() {
        for row in [
            SamplingRow {
                headers: vec![(B3, "0")],
                want: Some(false),
                reason: "Single Header: b3: 0 is deny without ids",
            },
            SamplingRow {
                headers: vec![(B3, "1")],
                want: Some(true),
                reason: "Single Header: b3: 1 is accept",
            },
            SamplingRow {
                headers: vec![(B3, "d")],
                want: Some(true),
                reason: "Debug Flag: b3: d",
            },
            SamplingRow {
                headers: vec![(X_B3_SAMPLED, "0")],
                want: Some(false),
                reason: "Multiple Headers: X-B3-Sampled alone",
            },
            SamplingRow {
                headers: vec![(X_B3_FLAGS, "1")],
                want: Some(true),
                reason: "Debug Flag: X-B3-Flags alone",
            },
            SamplingRow {
                headers: vec![(X_B3_FLAGS, "0")],
                want: None,
                reason: "Debug Flag: X-B3-Flags 0 alone decides nothing",
            },
            SamplingRow {
                headers: vec![(X_B3_SAMPLED, "0"), (X_B3_TRACEID, TRACE)],
                want: None,
                reason: "Multiple Headers: ids present, not sampling-only",
            },
            SamplingRow {
                headers: vec![(B3, "x")],
                want: None,
                reason: "Single Header: malformed",
            },
            SamplingRow {
                headers: vec![],
                want: None,
                reason: "nothing",
            },
        ] {
            let h = Headers::new(&row.headers);
            assert_eq!(sampling_only(&h), row.want, "{}", row.reason);
        }
    }
}
