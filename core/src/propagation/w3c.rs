//! W3C Trace Context `traceparent` (Level 2, https://www.w3.org/TR/trace-context-2/ §3.2):
//! parsing one header value and formatting ours. Section numbers below are Level 2's.

use super::{SpanContext, FLAG_RANDOM, FLAG_SAMPLED};
use crate::ids::{SpanId, TraceId};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// Length of a version-00 `traceparent` (§3.2.2): 2+1+32+1+16+1+2.
const TRACEPARENT_LEN: usize = 55;

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

/// `00-{trace-id}-{parent-id}-{flags}`. We always emit version 00 (§3.2.4: a vendor that
/// continues a higher version writes the version it supports). Only the flags we know are
/// written: sampled (§3.2.2.5.1) and random trace id (§3.2.2.5.2); §3.2.2.5 says unknown
/// flags MUST be zero when we write.
pub fn format_traceparent(ctx: &SpanContext) -> String {
    // Written by hand, not `format!`: one allocation of the exact size, on every recorded
    // request (format_rows below pins the output).
    let mut out = Vec::with_capacity(TRACEPARENT_LEN);
    out.extend_from_slice(b"00-");
    crate::ids::push_hex(&mut out, &ctx.trace_id.0);
    out.push(b'-');
    crate::ids::push_hex(&mut out, &ctx.span_id.0);
    out.push(b'-');
    crate::ids::push_hex(&mut out, &[ctx.flags & (FLAG_SAMPLED | FLAG_RANDOM)]);
    // Hex digits and dashes only: always UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

pub(super) fn trim_ows(b: &[u8]) -> &[u8] {
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

/// Parses one `traceparent` value (§3.2.2). Returns the ids and the trace-flags as received
/// (unknown bits included; [`format_traceparent`] drops them).
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

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    struct Valid {
        input: &'static str,
        flags: u8,
        reason: &'static str,
    }

    #[test]
    fn traceparent_valid_rows() {
        for row in [
            Valid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                flags: 0x01,
                reason: "§3.2.2 spec example, sampled",
            },
            Valid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                flags: 0x00,
                reason: "§3.2.2.5.1 not sampled",
            },
            Valid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
                flags: 0x02,
                reason: "§3.2.2.5.2 random trace id, not sampled",
            },
            Valid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
                flags: 0x03,
                reason: "§3.2.2.5.2 random trace id, sampled",
            },
            Valid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09",
                flags: 0x09,
                reason: "§3.2.2.5 unknown flag bits are accepted (and not passed on)",
            },
            Valid {
                input: " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t",
                flags: 0x01,
                reason: "RFC 9110 §5.5 surrounding OWS is not part of the value",
            },
            Valid {
                input: "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                flags: 0x01,
                reason: "§3.2.4 future version, same length",
            },
            Valid {
                input:
                    "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
                flags: 0x01,
                reason: "§3.2.4 future version with extra fields",
            },
        ] {
            let (t, s, f) = parse_traceparent(row.input.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {e:?}", row.reason));
            assert_eq!(t.to_string(), TRACE, "{}", row.reason);
            assert_eq!(s.to_string(), SPAN, "{}", row.reason);
            assert_eq!(f, row.flags, "{}", row.reason);
        }
    }

    struct Invalid {
        input: &'static str,
        want: TraceparentError,
        reason: &'static str,
    }

    #[test]
    fn traceparent_invalid_rows() {
        use TraceparentError::*;
        for row in [
            Invalid {
                input: "",
                want: BadLength,
                reason: "§3.2.2 empty value",
            },
            Invalid {
                input: "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                want: BadTraceId,
                reason: "§3.2.2.3 trace-id is HEXDIGLC: upper case refused",
            },
            Invalid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
                want: BadParentId,
                reason: "§3.2.2.4 parent-id is HEXDIGLC: upper case refused",
            },
            Invalid {
                input: "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                want: ZeroTraceId,
                reason: "§3.2.2.3 all-zero trace-id is invalid",
            },
            Invalid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                want: ZeroParentId,
                reason: "§3.2.2.4 all-zero parent-id is invalid",
            },
            Invalid {
                input: "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                want: VersionFF,
                reason: "§3.2.2.1 version ff is forbidden",
            },
            Invalid {
                input: "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                want: BadVersion,
                reason: "§3.2.2.1 version is HEXDIGLC",
            },
            Invalid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                want: BadLength,
                reason: "§3.2.2.1 version 00 has exactly four fields",
            },
            Invalid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                want: BadLength,
                reason: "§3.2.2.3 trace-id is 32 digits",
            },
            Invalid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01",
                want: BadDelimiter,
                reason: "§3.2.2 fields at fixed offsets",
            },
            Invalid {
                input: "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                want: BadDelimiter,
                reason: "§3.2.2 fields separated by '-'",
            },
            Invalid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
                want: BadFlags,
                reason: "§3.2.2.5 trace-flags is HEXDIGLC",
            },
            Invalid {
                input: "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what",
                want: BadDelimiter,
                reason: "§3.2.4 future version: '-' after the flags",
            },
            Invalid {
                input: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-é",
                want: NotAscii,
                reason: "§3.2.2 the value is ASCII",
            },
        ] {
            assert_eq!(
                parse_traceparent(row.input.as_bytes()),
                Err(row.want),
                "{}",
                row.reason
            );
        }
    }

    struct Format {
        flags: u8,
        want: &'static str,
        reason: &'static str,
    }

    #[test]
    fn format_rows() {
        for row in [
            Format {
                flags: 0x01,
                want: "01",
                reason: "§3.2.2.5.1 sampled",
            },
            Format {
                flags: 0x03,
                want: "03",
                reason: "§3.2.2.5.2 random flag MUST be passed on with the trace id",
            },
            Format {
                flags: 0x02,
                want: "02",
                reason: "§3.2.2.5.2 random without sampled",
            },
            Format {
                flags: 0xff,
                want: "03",
                reason: "§3.2.2.5 unknown flags are written as zero",
            },
        ] {
            let ctx = SpanContext::new(
                TraceId::from_hex(TRACE).unwrap(),
                SpanId::from_hex(SPAN).unwrap(),
                row.flags,
                None,
            );
            assert_eq!(
                format_traceparent(&ctx),
                format!("00-{TRACE}-{SPAN}-{}", row.want),
                "{}",
                row.reason
            );
        }
    }
}
