//! Any bytes as a `traceparent` value: no panic; a value that parses formats to a version-00
//! value that parses to the same ids and the known flags.
#![no_main]
use gateway_tracing_core::propagation::{format_traceparent, parse_traceparent, SpanContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((trace_id, span_id, flags)) = parse_traceparent(data) {
        let ctx = SpanContext::new(trace_id, span_id, flags, None);
        let out = format_traceparent(&ctx);
        assert_eq!(out.len(), 55);
        assert_eq!(parse_traceparent(out.as_bytes()), Ok((trace_id, span_id, flags & 0x03)));
    }
});
