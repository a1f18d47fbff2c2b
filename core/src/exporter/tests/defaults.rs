//! The exporter's named defaults and limits, each with its reason.

use super::*;

#[test]
fn named_defaults() {
    struct Row {
        got: u64,
        want: u64,
        reason: &'static str,
    }
    let c = crate::config::parse(br#"{"exporter":{"cluster":"otel"}}"#, &|_| None)
        .unwrap()
        .exporter;
    let rows = [
        Row {
            got: c.retry.initial_backoff.as_millis() as u64,
            want: DEFAULT_RETRY_INITIAL_BACKOFF_MS,
            reason: "initial backoff: a blip costs about a second",
        },
        Row {
            got: DEFAULT_RETRY_INITIAL_BACKOFF_MS,
            want: 1_000,
            reason: "initial backoff value",
        },
        Row {
            got: (c.retry.multiplier * 1000.0) as u64,
            want: (DEFAULT_RETRY_MULTIPLIER * 1000.0) as u64,
            reason: "multiplier default is used",
        },
        Row {
            got: (DEFAULT_RETRY_MULTIPLIER * 1000.0) as u64,
            want: 1_500,
            reason: "multiplier as OpenTelemetry's exporters",
        },
        Row {
            got: c.retry.max_backoff.as_millis() as u64,
            want: DEFAULT_RETRY_MAX_BACKOFF_MS,
            reason: "max interval default is used",
        },
        Row {
            got: DEFAULT_RETRY_MAX_BACKOFF_MS,
            want: 30_000,
            reason: "a dead collector sees one probe per 30 s per worker",
        },
        Row {
            got: c.retry.max_elapsed.as_millis() as u64,
            want: DEFAULT_RETRY_MAX_ELAPSED_MS,
            reason: "max elapsed default is used",
        },
        Row {
            got: DEFAULT_RETRY_MAX_ELAPSED_MS,
            want: 300_000,
            reason: "retries for 5 minutes, as OpenTelemetry's exporters",
        },
        Row {
            got: c.max_queue_bytes,
            want: DEFAULT_MAX_QUEUE_BYTES,
            reason: "queue bytes default is used",
        },
        Row {
            got: DEFAULT_MAX_QUEUE_BYTES,
            want: 32 << 20,
            reason: "32 MiB per worker",
        },
        Row {
            got: u64::from(c.retry.enabled),
            want: 1,
            reason: "retry on by default",
        },
        Row {
            got: u64::from(
                c.compression == DEFAULT_COMPRESSION && DEFAULT_COMPRESSION == Compression::None,
            ),
            want: 1,
            reason: "no compression by default (CPU on the worker; collector is near)",
        },
        Row {
            got: u64::from(
                c.encoding == DEFAULT_ENCODING && DEFAULT_ENCODING == Encoding::Protobuf,
            ),
            want: 1,
            reason: "protobuf by default",
        },
        Row {
            got: MAX_IN_FLIGHT as u64,
            want: 4,
            reason: "in flight while healthy",
        },
        Row {
            got: MAX_IN_FLIGHT_FAILING as u64,
            want: 1,
            reason: "one probe while failing",
        },
    ];
    for r in rows {
        assert_eq!(r.got, r.want, "{}", r.reason);
    }
}
