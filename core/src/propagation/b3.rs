//! B3 propagation (https://github.com/openzipkin/b3-propagation), single-header (`b3`) and
//! multi-header (`x-b3-*`) forms: Zipkin, Istio's default, Kong's `header_type = b3`.
//! Sections cited are the headings of that README ("TraceId", "Sampling State", ...).
//!
//! B3 carries no `tracestate` and no random-trace-id flag: a parent taken from B3 goes on
//! with flag 02 clear (a 64-bit B3 trace id, left-padded with zeros, is not random).

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
    BadFlags,
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
            Self::BadFlags => "x-b3-flags is not 1",
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

/// "Sampling State" / "Debug Flag" in the single header: `1` accept, `0` deny, `d` debug
/// (which implies accept).
fn single_sampled(v: &[u8]) -> Result<bool, B3Error> {
    match v {
        b"1" | b"d" => Ok(true),
        b"0" => Ok(false),
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
/// state left out ("defer") is decided here, as for a new trace: sampled.
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
    let sampled = sampled.map(single_sampled).transpose()?.unwrap_or(true);
    if let Some(p) = parent {
        parent_span_id(p)?;
    }
    Ok(Some(SpanContext {
        trace_id,
        span_id,
        flags: if sampled { FLAG_SAMPLED } else { 0 },
        trace_state: None,
    }))
}

/// A sampling decision sent without ids ("Single Header": `b3: 0`, `1` or `d`; "Multiple
/// Headers": `x-b3-sampled` / `x-b3-flags` without `x-b3-traceid`/`x-b3-spanid`): the caller
/// asks that the trace we start be (not) sampled. `None` when there is no such decision, or
/// when ids are present (then the context carries it) or a header is malformed.
pub fn sampling_only(carrier: &dyn Extractor, single_form: bool, multi_form: bool) -> Option<bool> {
    if single_form {
        if let Ok(Some(v)) = single(carrier, B3) {
            if let Ok(sampled) = single_sampled(v) {
                return Some(sampled);
            }
        }
    }
    if multi_form {
        let ids = single(carrier, X_B3_TRACEID).ok()?.is_some()
            || single(carrier, X_B3_SPANID).ok()?.is_some();
        if ids {
            return None;
        }
        if let Some(b"1") = single(carrier, X_B3_FLAGS).ok()? {
            return Some(true);
        }
        return match single(carrier, X_B3_SAMPLED).ok()? {
            Some(b"1" | b"true") => Some(true),
            Some(b"0" | b"false") => Some(false),
            _ => None,
        };
    }
    None
}

/// Extracts from `x-b3-*` ("Multiple Headers"). `X-B3-Sampled` is `1`/`0` (and, as the
/// README's "Sampling State" asks receivers to accept, `true`/`false`); `X-B3-Flags: 1`
/// ("Debug Flag") means sampled. `Ok(None)` when neither id header is present.
pub fn extract_multi(carrier: &dyn Extractor) -> Result<Option<SpanContext>, B3Error> {
    let t = single(carrier, X_B3_TRACEID)?;
    let s = single(carrier, X_B3_SPANID)?;
    let sampled = single(carrier, X_B3_SAMPLED)?;
    let flags = single(carrier, X_B3_FLAGS)?;
    let parent = single(carrier, X_B3_PARENTSPANID)?;
    let (t, s) = match (t, s) {
        (None, None) => return Ok(None),
        (Some(t), Some(s)) => (t, s),
        _ => return Err(B3Error::Incomplete),
    };
    let trace_id = trace_id(t)?;
    let span_id = span_id(s)?;
    let debug = match flags {
        None => false,
        Some(b"1") => true,
        Some(_) => return Err(B3Error::BadFlags),
    };
    let sampled = match sampled {
        None => true,
        Some(b"1" | b"true") => true,
        Some(b"0" | b"false") => false,
        Some(_) => return Err(B3Error::BadSampled),
    };
    if let Some(p) = parent {
        parent_span_id(p)?;
    }
    Ok(Some(SpanContext {
        trace_id,
        span_id,
        flags: if sampled || debug { FLAG_SAMPLED } else { 0 },
        trace_state: None,
    }))
}

/// `{TraceId}-{SpanId}-{SamplingState}`: 32-digit trace id, our span id, `1` or `0`. The
/// parent span id is optional in "Single Header" and left out (it is ours to know).
pub fn format_single(ctx: &SpanContext) -> String {
    format!(
        "{}-{}-{}",
        ctx.trace_id,
        ctx.span_id,
        if ctx.is_sampled() { '1' } else { '0' }
    )
}

/// Removes every B3 header, then writes the single form when `single`, the multi form when
/// `multi`.
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
        carrier.set(
            X_B3_SAMPLED,
            if ctx.is_sampled() { "1" } else { "0" }.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::propagation::testing::Headers;

    const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const SPAN: &str = "e457b5a2e4d86bd1";
    const PARENT: &str = "05e3ac9a4f6e3b90";

    /// What a row should extract: `Some((trace, span, sampled))`, `None` for no parent, or
    /// the error.
    type Want = Result<Option<(&'static str, &'static str, bool)>, B3Error>;

    struct Row {
        headers: Vec<(&'static str, &'static str)>,
        want: Want,
        reason: &'static str,
    }

    fn got(
        r: Result<Option<SpanContext>, B3Error>,
    ) -> Result<Option<(String, String, bool)>, B3Error> {
        r.map(|o| {
            o.map(|c| {
                (
                    c.trace_id.to_string(),
                    c.span_id.to_string(),
                    c.is_sampled(),
                )
            })
        })
    }

    fn want(w: Want) -> Result<Option<(String, String, bool)>, B3Error> {
        w.map(|o| o.map(|(t, s, b)| (t.to_string(), s.to_string(), b)))
    }

    #[test]
    fn b3_single_rows() {
        use B3Error::*;
        let full = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90";
        for row in [
            Row {
                headers: vec![(B3, full)],
                want: Ok(Some((TRACE, SPAN, true))),
                reason: "Single Header: all four fields",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")],
                want: Ok(Some((TRACE, SPAN, false))),
                reason: "Sampling State: 0 is deny",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d")],
                want: Ok(Some((TRACE, SPAN, true))),
                reason: "Debug Flag: d implies accept",
            },
            Row {
                headers: vec![(B3, "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1")],
                want: Ok(Some((TRACE, SPAN, true))),
                reason: "Sampling State: absent is defer, decided here as a new trace",
            },
            Row {
                headers: vec![(B3, "64fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
                want: Ok(Some(("000000000000000064fe8b2a57d3eff7", SPAN, true))),
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
        for row in [
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "1"),
                    (X_B3_PARENTSPANID, PARENT),
                ],
                want: Ok(Some((TRACE, SPAN, true))),
                reason: "Multiple Headers: all of them",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "0"),
                ],
                want: Ok(Some((TRACE, SPAN, false))),
                reason: "Sampling State: 0 is deny",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "false"),
                ],
                want: Ok(Some((TRACE, SPAN, false))),
                reason: "Sampling State: accept false from older tracers",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_SAMPLED, "true"),
                ],
                want: Ok(Some((TRACE, SPAN, true))),
                reason: "Sampling State: accept true from older tracers",
            },
            Row {
                headers: vec![
                    (X_B3_TRACEID, TRACE),
                    (X_B3_SPANID, SPAN),
                    (X_B3_FLAGS, "1"),
                ],
                want: Ok(Some((TRACE, SPAN, true))),
                reason: "Debug Flag: X-B3-Flags 1 implies accept",
            },
            Row {
                headers: vec![(X_B3_TRACEID, TRACE), (X_B3_SPANID, SPAN)],
                want: Ok(Some((TRACE, SPAN, true))),
                reason: "Sampling State: absent is defer",
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
                want: Err(BadFlags),
                reason: "Debug Flag: only 1",
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
            assert_eq!(sampling_only(&h, true, true), row.want, "{}", row.reason);
        }
    }
}
