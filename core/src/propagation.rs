//! W3C Trace Context (https://www.w3.org/TR/trace-context/): extracting a parent from the
//! `traceparent` / `tracestate` request headers and producing the headers we send upstream.
//!
//! Carriers follow opentelemetry-rust's shape: an [`Extractor`] reads header values, an
//! [`Injector`] writes them. Parsing never fails the request: an invalid `traceparent`
//! means "no parent" (start a new trace) and its `tracestate` is dropped (§3.3.1.1 / §4.3).

use crate::ids::{SpanId, TraceId};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Sampled flag bit of `trace-flags` (§3.2.2.5.1).
pub const FLAG_SAMPLED: u8 = 0x01;
/// At most this many list-members in `tracestate` (§3.3.1.1).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Length of a version-00 `traceparent` (§3.2.2): 2+1+32+1+16+1+2.
const TRACEPARENT_LEN: usize = 55;

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
    pub flags: u8,
    /// Normalised `tracestate` (members joined by `,`), only when valid and non-empty.
    pub trace_state: Option<String>,
}

impl SpanContext {
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

/// Why an incoming `traceparent` was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceparentError {
    Duplicated,
    NotAscii,
    BadLength,
    BadVersion,
    VersionFF,
    BadDelimiter,
    BadTraceId,
    ZeroTraceId,
    BadParentId,
    ZeroParentId,
    BadFlags,
}

impl TraceparentError {
    /// A short, low-cardinality reason for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Duplicated => "multiple traceparent headers",
            Self::NotAscii => "non-ASCII value",
            Self::BadLength => "wrong length",
            Self::BadVersion => "version is not two lowercase hex digits",
            Self::VersionFF => "version ff is forbidden",
            Self::BadDelimiter => "fields not separated by '-'",
            Self::BadTraceId => "trace-id is not 32 lowercase hex digits",
            Self::ZeroTraceId => "trace-id is all zeros",
            Self::BadParentId => "parent-id is not 16 lowercase hex digits",
            Self::ZeroParentId => "parent-id is all zeros",
            Self::BadFlags => "trace-flags is not two lowercase hex digits",
        }
    }
}

/// What extraction found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extracted {
    /// No `traceparent` header: start a new trace.
    Missing,
    /// A valid parent. `tracestate_invalid` is true when a `tracestate` arrived but was dropped.
    Valid {
        parent: SpanContext,
        tracestate_invalid: bool,
    },
    /// A `traceparent` that does not parse: start a new trace, drop `tracestate`.
    Invalid(TraceparentError),
}

impl Extracted {
    pub fn parent(&self) -> Option<&SpanContext> {
        match self {
            Extracted::Valid { parent, .. } => Some(parent),
            _ => None,
        }
    }
}

/// Extracts the parent context from request headers.
pub fn extract(carrier: &dyn Extractor) -> Extracted {
    let values = carrier.get_all(TRACEPARENT);
    let value = match values.as_slice() {
        [] => return Extracted::Missing,
        [one] => *one,
        // §3.2 / test suite `test_traceparent_duplicated`: more than one header is invalid.
        _ => return Extracted::Invalid(TraceparentError::Duplicated),
    };
    let (trace_id, span_id, flags) = match parse_traceparent(value) {
        Ok(v) => v,
        Err(e) => return Extracted::Invalid(e),
    };
    let states = carrier.get_all(TRACESTATE);
    let (trace_state, tracestate_invalid) = if states.is_empty() {
        (None, false)
    } else {
        match parse_tracestate(&states) {
            Some(s) if s.is_empty() => (None, false),
            Some(s) => (Some(s), false),
            None => (None, true),
        }
    };
    Extracted::Valid {
        parent: SpanContext {
            trace_id,
            span_id,
            flags,
            trace_state,
        },
        tracestate_invalid,
    }
}

/// Writes exactly one `traceparent` for `ctx`, and `tracestate` when there is one; any
/// incoming `tracestate` that was not kept (invalid, or its `traceparent` was) is removed.
pub fn inject(ctx: &SpanContext, carrier: &mut dyn Injector) {
    carrier.set(TRACEPARENT, format_traceparent(ctx));
    match &ctx.trace_state {
        Some(ts) => carrier.set(TRACESTATE, ts.clone()),
        None => carrier.remove(TRACESTATE),
    }
}

/// `00-{trace-id}-{parent-id}-{flags}`: we always emit version 00 (§3.2.4: a vendor that
/// continues a higher version writes the version it supports).
pub fn format_traceparent(ctx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        ctx.trace_id,
        ctx.span_id,
        ctx.flags & FLAG_SAMPLED
    )
}

fn trim_ows(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| *c != b' ' && *c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .map_or(start, |e| e + 1);
    b.get(start..end).unwrap_or(&[])
}

fn hex_byte(b: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(b).ok()?;
    if s.len() != 2
        || !s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    u8::from_str_radix(s, 16).ok()
}

/// Parses one `traceparent` value (§3.2.2).
pub fn parse_traceparent(raw: &[u8]) -> Result<(TraceId, SpanId, u8), TraceparentError> {
    let v = trim_ows(raw);
    if !v.is_ascii() {
        return Err(TraceparentError::NotAscii);
    }
    if v.len() < TRACEPARENT_LEN {
        return Err(TraceparentError::BadLength);
    }
    // §3.2.2.1 version: 2 HEXDIGLC; "ff" is forbidden.
    let version = hex_byte(v.get(0..2).unwrap_or(&[])).ok_or(TraceparentError::BadVersion)?;
    if version == 0xff {
        return Err(TraceparentError::VersionFF);
    }
    // §3.2.2.1 / §3.2.4: version 00 is exactly 55 chars; a higher version may be longer, but
    // only with a '-' after the flags, and we read the version-00 fields from its prefix.
    if version == 0 && v.len() != TRACEPARENT_LEN {
        return Err(TraceparentError::BadLength);
    }
    if v.len() > TRACEPARENT_LEN && v.get(TRACEPARENT_LEN) != Some(&b'-') {
        return Err(TraceparentError::BadDelimiter);
    }
    if v.get(2) != Some(&b'-') || v.get(35) != Some(&b'-') || v.get(52) != Some(&b'-') {
        return Err(TraceparentError::BadDelimiter);
    }
    let as_str = |r: std::ops::Range<usize>| {
        v.get(r)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    };
    // §3.2.2.3 trace-id: 32 HEXDIGLC, not all zeros.
    let trace_id = TraceId::from_hex(as_str(3..35)).ok_or(TraceparentError::BadTraceId)?;
    if !trace_id.is_valid() {
        return Err(TraceparentError::ZeroTraceId);
    }
    // §3.2.2.4 parent-id: 16 HEXDIGLC, not all zeros.
    let span_id = SpanId::from_hex(as_str(36..52)).ok_or(TraceparentError::BadParentId)?;
    if !span_id.is_valid() {
        return Err(TraceparentError::ZeroParentId);
    }
    // §3.2.2.5 trace-flags: 2 HEXDIGLC.
    let flags = hex_byte(v.get(53..55).unwrap_or(&[])).ok_or(TraceparentError::BadFlags)?;
    Ok((trace_id, span_id, flags))
}

/// Parses and normalises `tracestate` (§3.3). Multiple header values are one list joined by
/// commas (§3.3.1.1). Returns `None` when the list is invalid as a whole: a bad member, a
/// duplicate key, or more than 32 members. Empty members (`a=1,,b=2`) are allowed and dropped.
pub fn parse_tracestate(values: &[&[u8]]) -> Option<String> {
    let mut out = String::new();
    let mut keys: Vec<&str> = Vec::new();
    for value in values {
        let value = std::str::from_utf8(value).ok()?;
        for member in value.split(',') {
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            if member.is_empty() {
                continue;
            }
            let (key, val) = member.split_once('=')?;
            if !valid_tracestate_key(key) || !valid_tracestate_value(val) {
                return None;
            }
            if keys.contains(&key) {
                return None;
            }
            keys.push(key);
            if keys.len() > MAX_TRACESTATE_MEMBERS {
                return None;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member);
        }
    }
    Some(out)
}

/// §3.3.1.3.1 key = simple-key / multi-tenant-key
///   simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
///   multi-tenant-key = tenant-id "@" system-id
///   tenant-id = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
///   system-id = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
fn valid_tracestate_key(key: &str) -> bool {
    fn rest_ok(s: &str) -> bool {
        s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'*' | b'/')
        })
    }
    let first = |s: &str, digit_ok: bool| {
        s.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || (digit_ok && c.is_ascii_digit()))
    };
    match key.split_once('@') {
        None => !key.is_empty() && key.len() <= 256 && first(key, false) && rest_ok(key),
        Some((tenant, system)) => {
            !tenant.is_empty()
                && tenant.len() <= 241
                && first(tenant, true)
                && rest_ok(tenant)
                && !system.is_empty()
                && system.len() <= 14
                && first(system, false)
                && rest_ok(system)
        }
    }
}

/// §3.3.1.3.2 value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr;
/// nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
fn valid_tracestate_value(val: &str) -> bool {
    let nblk = |c: u8| matches!(c, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    !val.is_empty()
        && val.len() <= 256
        && val.bytes().all(|c| c == 0x20 || nblk(c))
        && val.bytes().last().is_some_and(nblk)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Headers(Vec<(&'static str, &'static str)>);
    impl Extractor for Headers {
        fn get_all(&self, name: &str) -> Vec<&[u8]> {
            self.0
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.as_bytes())
                .collect()
        }
    }
    #[derive(Default)]
    struct Out(Vec<(String, String)>);
    impl Injector for Out {
        fn set(&mut self, name: &str, value: String) {
            self.0.retain(|(k, _)| k != name);
            self.0.push((name.to_string(), value));
        }
        fn remove(&mut self, name: &str) {
            self.0.retain(|(k, _)| k != name);
        }
    }

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_valid_rows() {
        for (input, sampled, reason) in [
            (VALID, true, "spec example, sampled"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                false,
                "not sampled",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
                true,
                "unknown flag bits ignored",
            ),
            (
                " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t",
                true,
                "surrounding OWS",
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
                "future version, same length",
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
                true,
                "future version with extra fields",
            ),
        ] {
            let (t, s, f) =
                parse_traceparent(input.as_bytes()).unwrap_or_else(|e| panic!("{reason}: {e:?}"));
            assert_eq!(
                t.to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{reason}"
            );
            assert_eq!(s.to_string(), "00f067aa0ba902b7", "{reason}");
            assert_eq!(f & FLAG_SAMPLED != 0, sampled, "{reason}");
        }
    }

    #[test]
    fn traceparent_invalid_rows() {
        use TraceparentError::*;
        for (input, want, reason) in [
            ("", BadLength, "empty"),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                BadTraceId,
                "upper case trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                BadParentId,
                "upper case parent id",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroTraceId,
                "all-zero trace id",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroParentId,
                "all-zero parent id",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                VersionFF,
                "version ff",
            ),
            (
                "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                BadVersion,
                "version not hex",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                BadLength,
                "version 00 with trailing data",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                BadLength,
                "trace id too short",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
                BadDelimiter,
                "delimiter moved",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                BadDelimiter,
                "wrong delimiter",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                BadFlags,
                "flags not hex",
            ),
            (
                "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what",
                BadDelimiter,
                "future version, no '-' after flags",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
                NotAscii,
                "non-ascii",
            ),
        ] {
            assert_eq!(parse_traceparent(input.as_bytes()), Err(want), "{reason}");
        }
    }

    #[test]
    fn duplicate_traceparent_restarts() {
        let h = Headers(vec![(TRACEPARENT, VALID), (TRACEPARENT, VALID)]);
        assert_eq!(
            extract(&h),
            Extracted::Invalid(TraceparentError::Duplicated)
        );
    }

    #[test]
    fn missing_traceparent() {
        assert_eq!(
            extract(&Headers(vec![(TRACESTATE, "a=b")])),
            Extracted::Missing
        );
    }

    #[test]
    fn tracestate_rows() {
        for (values, want, reason) in [
            (
                vec!["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                "spec example",
            ),
            (
                vec!["rojo=1", "congo=2"],
                Some("rojo=1,congo=2"),
                "multiple headers are one list",
            ),
            (
                vec!["rojo=1 ,\t, congo=2"],
                Some("rojo=1,congo=2"),
                "OWS and empty members",
            ),
            (
                vec!["fw529a3039@dt=1"],
                Some("fw529a3039@dt=1"),
                "multi-tenant key",
            ),
            (
                vec!["1tenant@sys=1"],
                Some("1tenant@sys=1"),
                "tenant may start with a digit",
            ),
            (vec!["Rojo=1"], None, "upper case key"),
            (vec!["1rojo=1"], None, "simple key starting with digit"),
            (vec!["rojo=1,rojo=2"], None, "duplicate key"),
            (vec!["rojo"], None, "member without '='"),
            (vec!["rojo=a,b"], None, "second member without '='"),
            (vec!["rojo=val=ue"], None, "'=' inside value"),
            (vec!["rojo="], None, "empty value"),
            (vec!["rojo=a b"], Some("rojo=a b"), "inner space allowed"),
            (vec!["rojo=a\u{7f}"], None, "DEL not allowed in value"),
            (vec!["t@toolongsystemid=1"], None, "system id over 14 chars"),
        ] {
            let v: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(parse_tracestate(&v).as_deref(), want, "{reason}");
        }
    }

    #[test]
    fn tracestate_member_limit() {
        let ok: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        let ok = ok.join(",");
        assert!(
            parse_tracestate(&[ok.as_bytes()]).is_some(),
            "32 members allowed"
        );
        let too_many = format!("{ok},k32=v");
        assert!(
            parse_tracestate(&[too_many.as_bytes()]).is_none(),
            "33 members invalid"
        );
    }

    #[test]
    fn invalid_tracestate_is_dropped_but_parent_kept() {
        let h = Headers(vec![(TRACEPARENT, VALID), (TRACESTATE, "BAD KEY=1")]);
        match extract(&h) {
            Extracted::Valid {
                parent,
                tracestate_invalid,
            } => {
                assert!(tracestate_invalid);
                assert_eq!(parent.trace_state, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn inject_writes_both_headers() {
        let ctx = SpanContext {
            trace_id: TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            span_id: SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            flags: 0x09,
            trace_state: Some("rojo=1".into()),
        };
        let mut out = Out::default();
        inject(&ctx, &mut out);
        assert_eq!(out.0[0], (TRACEPARENT.into(), VALID.into()));
        assert_eq!(out.0[1], (TRACESTATE.into(), "rojo=1".into()));
        let mut out = Out(vec![(TRACESTATE.into(), "stale=1".into())]);
        inject(
            &SpanContext {
                trace_state: None,
                ..ctx
            },
            &mut out,
        );
        assert_eq!(
            out.0,
            vec![(TRACEPARENT.into(), VALID.into())],
            "stale tracestate removed"
        );
    }
}
