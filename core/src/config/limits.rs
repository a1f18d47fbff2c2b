//! The `span_limits` section: the OpenTelemetry SDK's span limits (the
//! `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` family, same names without the prefix), each with a
//! safe default, so a hostile or huge request cannot make a huge span.

use super::{check_range, ConfigError};
use serde::Deserialize;

/// `attribute_value_length_limit`: string attribute values longer than this many bytes are cut
/// (on a UTF-8 boundary). OpenTelemetry's default is unlimited; a 60 KiB path written four
/// times (`semconv: both`) made 123 KB spans. 4 KiB keeps any real URL whole.
pub const DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT: u64 = 4096;
/// `attribute_count_limit` (per span, and per event): OpenTelemetry's default.
pub const DEFAULT_ATTRIBUTE_COUNT_LIMIT: u64 = 128;
/// `event_count_limit`: OpenTelemetry's default.
pub const DEFAULT_EVENT_COUNT_LIMIT: u64 = 128;
/// `link_count_limit`: OpenTelemetry's default.
pub const DEFAULT_LINK_COUNT_LIMIT: u64 = 128;
/// `tracestate_length_limit`: the `tracestate` recorded on spans and links is cut to this
/// many bytes at a list-member boundary (W3C Trace Context §3.3.1.5: 512 is what a vendor
/// should at least pass on). What is propagated is not cut.
pub const DEFAULT_TRACESTATE_LENGTH_LIMIT: u64 = 512;

pub const MIN_ATTRIBUTE_VALUE_LENGTH_LIMIT: u64 = 16;
pub const MAX_ATTRIBUTE_VALUE_LENGTH_LIMIT: u64 = 1024 * 1024;
pub const MAX_COUNT_LIMIT: u64 = 4096;
pub const MAX_TRACESTATE_LENGTH_LIMIT: u64 = 32 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpanLimits {
    #[serde(default = "d_value_length")]
    pub attribute_value_length_limit: u64,
    #[serde(default = "d_attribute_count")]
    pub attribute_count_limit: u64,
    #[serde(default = "d_event_count")]
    pub event_count_limit: u64,
    #[serde(default = "d_link_count")]
    pub link_count_limit: u64,
    #[serde(default = "d_tracestate_length")]
    pub tracestate_length_limit: u64,
}

impl Default for RawSpanLimits {
    fn default() -> Self {
        RawSpanLimits {
            attribute_value_length_limit: DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT,
            attribute_count_limit: DEFAULT_ATTRIBUTE_COUNT_LIMIT,
            event_count_limit: DEFAULT_EVENT_COUNT_LIMIT,
            link_count_limit: DEFAULT_LINK_COUNT_LIMIT,
            tracestate_length_limit: DEFAULT_TRACESTATE_LENGTH_LIMIT,
        }
    }
}

fn d_value_length() -> u64 {
    DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT
}
fn d_attribute_count() -> u64 {
    DEFAULT_ATTRIBUTE_COUNT_LIMIT
}
fn d_event_count() -> u64 {
    DEFAULT_EVENT_COUNT_LIMIT
}
fn d_link_count() -> u64 {
    DEFAULT_LINK_COUNT_LIMIT
}
fn d_tracestate_length() -> u64 {
    DEFAULT_TRACESTATE_LENGTH_LIMIT
}

/// Validated `span_limits` (the span writer takes them as `otlp::writer::Limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanLimits {
    pub attribute_value_length: usize,
    pub attribute_count: u32,
    pub event_count: u32,
    pub link_count: u32,
    pub tracestate_length: usize,
}

impl Default for SpanLimits {
    fn default() -> Self {
        // The defaults are in range by construction (tested).
        validate(RawSpanLimits::default()).unwrap_or(SpanLimits {
            attribute_value_length: usize::MAX,
            attribute_count: u32::MAX,
            event_count: u32::MAX,
            link_count: u32::MAX,
            tracestate_length: usize::MAX,
        })
    }
}

pub(super) fn validate(r: RawSpanLimits) -> Result<SpanLimits, ConfigError> {
    check_range(
        "span_limits.attribute_value_length_limit",
        r.attribute_value_length_limit,
        MIN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
        MAX_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    )?;
    for (field, v) in [
        ("span_limits.attribute_count_limit", r.attribute_count_limit),
        ("span_limits.event_count_limit", r.event_count_limit),
        ("span_limits.link_count_limit", r.link_count_limit),
    ] {
        check_range(field, v, 0, MAX_COUNT_LIMIT)?;
    }
    check_range(
        "span_limits.tracestate_length_limit",
        r.tracestate_length_limit,
        0,
        MAX_TRACESTATE_LENGTH_LIMIT,
    )?;
    let n = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(SpanLimits {
        attribute_value_length: usize::try_from(r.attribute_value_length_limit)
            .unwrap_or(usize::MAX),
        attribute_count: n(r.attribute_count_limit),
        event_count: n(r.event_count_limit),
        link_count: n(r.link_count_limit),
        tracestate_length: usize::try_from(r.tracestate_length_limit).unwrap_or(usize::MAX),
    })
}

/// `tracestate` as recorded: whole when it fits `max` bytes, else the leading list members
/// that fit (never a member cut in two).
pub fn cap_tracestate(ts: &str, max: usize) -> &str {
    if ts.len() <= max {
        return ts;
    }
    let mut end = 0;
    for (i, c) in ts.char_indices() {
        if i > max {
            break;
        }
        if c == ',' {
            end = i;
        }
    }
    ts.get(..end).unwrap_or("").trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_defaults_are_valid_and_as_documented() {
        let l = SpanLimits::default();
        assert_eq!(
            l.attribute_value_length, 4096,
            "4 KiB keeps real URLs whole"
        );
        assert_eq!(l.attribute_count, 128, "OpenTelemetry's default");
        assert_eq!(l.event_count, 128, "OpenTelemetry's default");
        assert_eq!(l.link_count, 128, "OpenTelemetry's default");
        assert_eq!(l.tracestate_length, 512, "W3C: at least 512 passed on");
    }

    #[test]
    fn tracestate_cap_rows() {
        for (ts, max, want, reason) in [
            ("a=1,b=2", 100, "a=1,b=2", "fits: whole"),
            ("a=1,b=2,c=3", 8, "a=1,b=2", "cut at a member boundary"),
            (
                "a=1,b=2,c=3",
                7,
                "a=1,b=2",
                "a boundary exactly at the limit",
            ),
            ("abcdef=1", 4, "", "one member too long: nothing"),
        ] {
            assert_eq!(cap_tracestate(ts, max), want, "{reason}");
        }
    }
}
