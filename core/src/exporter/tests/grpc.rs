//! OTLP/gRPC: the request's framing and headers, what each answer means (status codes as the
//! OTLP specification maps them, Envoy's own answers, RetryInfo), partial_success read from
//! the response message, and the exporter's retry and accounting over gRPC.

use super::*;
use crate::exporter::grpc::{Any, ProtoDuration, RetryInfo, RpcStatus, RETRY_INFO_TYPE};
use crate::host::GrpcFields;

const GRPC: &str = r#","protocol":"grpc""#;

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=c.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out // unpadded, as gRPC sends `-bin` values
}

/// A `grpc-status-details-bin` value carrying a RetryInfo of `secs` seconds.
fn retry_info(secs: i64) -> String {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: secs,
            nanos: 0,
        }),
    };
    let status = RpcStatus {
        details: vec![Any {
            type_url: RETRY_INFO_TYPE.into(),
            value: info.encode_to_vec(),
        }],
    };
    b64(&status.encode_to_vec())
}

fn answer<'a>(
    status: Option<u16>,
    grpc: Option<&'a str>,
    message: Option<&'a str>,
    details: Option<&'a str>,
    body: &'a [u8],
) -> ExportResponse<'a> {
    ExportResponse {
        status,
        retry_after: None,
        body,
        grpc: GrpcFields {
            status: grpc.map(str::as_bytes),
            message: message.map(str::as_bytes),
            details: details.map(str::as_bytes),
        },
    }
}

#[test]
fn the_request_is_a_grpc_call() {
    for (gzip, reason) in [(false, "plain"), (true, "grpc-encoding: gzip")] {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let extra = if gzip {
            r#","protocol":"grpc","compression":"gzip""#
        } else {
            GRPC
        };
        let mut e = exporter(extra);
        push(&mut e, 3, &host, &stats);
        e.on_tick(&host, &stats, 0);
        let h = |n| host.header(0, n);
        assert_eq!(h(":method").as_deref(), Some("POST"), "{reason}");
        assert_eq!(
            h(":path").as_deref(),
            Some(crate::config::GRPC_EXPORT_PATH),
            "{reason}"
        );
        assert_eq!(h("content-type").as_deref(), Some("application/grpc"));
        assert_eq!(h("te").as_deref(), Some("trailers"), "{reason}");
        assert_eq!(
            h("content-encoding"),
            None,
            "gRPC compresses the message: {reason}"
        );
        assert_eq!(
            h("grpc-encoding").as_deref(),
            gzip.then_some("gzip"),
            "{reason}"
        );
        let body = host.sent.borrow()[0].2.clone();
        assert_eq!(body[0], u8::from(gzip), "compressed flag: {reason}");
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, body.len() - 5, "big-endian length: {reason}");
        let message = grpc_unframe(&body).unwrap();
        assert_eq!(span_count(&message), 3, "{reason}");
    }
}

#[test]
fn every_status_code_is_retried_as_the_otlp_spec_says() {
    // (code, retryable without RetryInfo, with RetryInfo)
    let table = [
        (1, true, true, "CANCELLED: retryable"),
        (2, false, false, "UNKNOWN: not"),
        (3, false, false, "INVALID_ARGUMENT: the data is bad"),
        (4, true, true, "DEADLINE_EXCEEDED: retryable"),
        (5, false, false, "NOT_FOUND"),
        (6, false, false, "ALREADY_EXISTS"),
        (7, false, false, "PERMISSION_DENIED: a credential problem"),
        (
            8,
            false,
            true,
            "RESOURCE_EXHAUSTED: only when the server says it will recover",
        ),
        (9, false, false, "FAILED_PRECONDITION"),
        (10, true, true, "ABORTED: retryable"),
        (11, true, true, "OUT_OF_RANGE: retryable"),
        (12, false, false, "UNIMPLEMENTED: not a trace receiver"),
        (13, false, false, "INTERNAL"),
        (
            14,
            true,
            true,
            "UNAVAILABLE: the Collector's memory limiter, a restart",
        ),
        (15, true, true, "DATA_LOSS: retryable"),
        (16, false, false, "UNAUTHENTICATED"),
        (99, false, false, "a code this build does not know"),
    ];
    for (code, plain, with_info, reason) in table {
        let f = |retry_info| Failure::Grpc {
            code,
            message: String::new(),
            retry_info,
        };
        assert_eq!(f(false).is_retryable(), plain, "{reason}");
        assert_eq!(f(true).is_retryable(), with_info, "{reason} (RetryInfo)");
    }
}

#[test]
fn answers_are_classified() {
    let ok_body = grpc_frame(Vec::new(), Compression::None);
    let info = retry_info(7);
    let t = Duration::from_secs(5);
    let short = Duration::from_millis(20);
    let g = |code, message: &str, info| {
        Err(Failure::Grpc {
            code,
            message: message.into(),
            retry_info: info,
        })
    };
    let rows: Vec<(ExportResponse<'_>, Duration, Result<(), Failure>, &str)> = vec![
        (answer(Some(200), Some("0"), None, None, &ok_body), short, Ok(()), "OK in the trailers"),
        (answer(Some(200), Some("0"), None, None, b""), short, Ok(()), "OK with no message is still OK"),
        (answer(Some(200), None, None, None, &ok_body), short, Ok(()), "no trailers handed over (native callout) but a complete message: OK"),
        (answer(Some(200), None, None, None, b"\x00\x00\x00"), short, g(13, "the answer carried no grpc-status and no message", false), "no status, a cut message: broken"),
        (answer(Some(200), Some("14"), Some("data refused due to high memory usage"), None, b""), short, g(14, "data refused due to high memory usage", false), "the memory limiter (Trailers-Only)"),
        (answer(Some(200), Some("3"), Some("bad%20span%0Aid"), None, b""), short, g(3, "bad span id", false), "grpc-message percent-decoded, then sanitised (LF)"),
        (answer(Some(200), Some("8"), Some("slow down"), Some(&info), b""), short, g(8, "slow down", true), "RESOURCE_EXHAUSTED with RetryInfo"),
        (answer(Some(200), Some("8"), Some("quota"), Some("!!"), b""), short, g(8, "quota", false), "undecodable details: no RetryInfo"),
        (answer(Some(200), Some("x"), None, None, b""), short, g(2, "", false), "an unreadable status is UNKNOWN"),
        (answer(Some(200), Some("14"), Some("upstream connect error or disconnect/reset before headers. reset reason: connection failure"), None, b""), short, Err(Failure::Connection), "Envoy: the collector unreachable"),
        (answer(Some(200), Some("14"), Some("no healthy upstream"), None, b""), short, Err(Failure::Connection), "Envoy: no healthy host"),
        (answer(Some(200), Some("4"), Some("upstream request timeout"), None, b""), t, Err(Failure::Timeout), "Envoy: the route timeout"),
        (answer(Some(200), Some("4"), Some("deadline"), None, b""), t, Err(Failure::Timeout), "DEADLINE_EXCEEDED after the whole timeout"),
        (answer(None, None, None, None, b""), short, Err(Failure::Connection), "a reset: no answer"),
        (answer(None, None, None, None, b""), t, Err(Failure::Timeout), "no answer within the timeout"),
        (answer(Some(503), None, None, None, b"no healthy upstream"), short, Err(Failure::Connection), "an HTTP answer (not gRPC): as over OTLP/HTTP"),
        (answer(Some(429), None, None, None, b""), short, Err(Failure::Http(429)), "an HTTP 429 from a proxy"),
    ];
    for (resp, elapsed, want, reason) in rows {
        let got = classify_grpc(&resp, elapsed, t).map_err(|(f, _)| f);
        assert_eq!(got, want, "{reason}");
    }
    let delay = classify_grpc(
        &answer(Some(200), Some("8"), None, Some(&info), b""),
        short,
        t,
    );
    assert_eq!(
        delay.map_err(|(_, d)| d),
        Err(Some(Duration::from_secs(7))),
        "the RetryInfo delay is handed to the backoff"
    );
}

#[test]
fn grpc_message_decoding_never_panics() {
    for (raw, want, reason) in [
        ("plain", "plain", "nothing to decode"),
        ("a%20b", "a b", "an escape"),
        ("%E2%9C%93", "✓", "UTF-8 in escapes"),
        ("100%", "100%", "a trailing percent"),
        ("%zz", "%zz", "not hex: kept"),
        ("%", "%", "a lone percent"),
    ] {
        assert_eq!(percent_decode(raw.as_bytes()), want, "{reason}");
    }
    assert_eq!(percent_decode(b"%FF"), "\u{fffd}", "not UTF-8: lossy");
    assert_eq!(retry_delay(b""), None, "empty details");
    assert_eq!(retry_delay(b"A"), None, "one base64 char is no byte");
    assert_eq!(
        retry_delay(retry_info(2).as_bytes()),
        Some(Duration::from_secs(2))
    );
}

#[test]
fn unavailable_is_retried_with_backoff_and_counted() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(GRPC);
    push(&mut e, 2, &host, &stats);
    e.on_tick(&host, &stats, 0);
    let refused = answer(
        Some(200),
        Some("14"),
        Some("data refused due to high memory usage"),
        None,
        b"",
    );
    e.on_response(1, &refused, &host, &stats, 10 * MS);
    assert!(failing(&e), "UNAVAILABLE backs off");
    assert_eq!(stats.get(Counter::ExportRequestsFailed), 1);
    e.on_tick(&host, &stats, 3 * S);
    assert_eq!(host.count(), 2, "retried after the backoff");
    assert_eq!(stats.get(Counter::ExportRetries), 1);
    let ok = grpc_frame(Vec::new(), Compression::None);
    e.on_response(
        2,
        &answer(Some(200), Some("0"), None, None, &ok),
        &host,
        &stats,
        3 * S,
    );
    assert!(!failing(&e), "recovered");
    assert_eq!(stats.get(Counter::SpansExported), 2);
    stats.assert_accounted(&e);
}

#[test]
fn not_retryable_codes_drop_and_partial_success_is_read_from_the_message() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(GRPC);
    push(&mut e, 4, &host, &stats);
    e.on_tick(&host, &stats, 0);
    let bad = answer(Some(200), Some("3"), Some("invalid"), None, b"");
    e.on_response(1, &bad, &host, &stats, MS);
    assert!(!failing(&e), "INVALID_ARGUMENT is not retried");
    assert_eq!(stats.get(Counter::SpansDroppedExportFailed), 4);

    push(&mut e, 4, &host, &stats);
    e.on_tick(&host, &stats, 2 * S);
    let resp = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "one span too old".into(),
        }),
    };
    let body = grpc_frame(resp.encode_to_vec(), Compression::Gzip);
    let ok = answer(Some(200), Some("0"), None, None, &body);
    e.on_response(2, &ok, &host, &stats, 2 * S);
    assert_eq!(
        stats.get(Counter::SpansDroppedRejectedByCollector),
        1,
        "gzip message read"
    );
    assert_eq!(stats.get(Counter::SpansExported), 3);
    stats.assert_accounted(&e);
}

#[test]
fn a_message_over_the_receivers_limit_is_split() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(GRPC);
    push(&mut e, 4, &host, &stats);
    e.on_tick(&host, &stats, 0);
    let msg = "grpc: received message larger than max (5000000 vs. 4194304)";
    let too_big = answer(Some(200), Some("8"), Some(msg), None, b"");
    e.on_response(1, &too_big, &host, &stats, MS);
    assert_eq!(host.count(), 3, "two halves sent at once");
    assert!(!failing(&e), "the collector is up: no backoff");
    stats.assert_accounted(&e);
}

#[test]
fn a_retry_info_delay_is_honoured_like_retry_after() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter(GRPC);
    push(&mut e, 2, &host, &stats);
    e.on_tick(&host, &stats, 0);
    let info = retry_info(7);
    let slow_down = answer(Some(200), Some("8"), Some("slow down"), Some(&info), b"");
    e.on_response(1, &slow_down, &host, &stats, MS);
    assert!(failing(&e), "RESOURCE_EXHAUSTED with RetryInfo is retried");
    e.on_tick(&host, &stats, 5 * S);
    assert_eq!(
        host.count(),
        1,
        "not before the 7 s the collector asked for"
    );
    e.on_tick(&host, &stats, 8 * S);
    assert_eq!(host.count(), 2, "retried after it");
    stats.assert_accounted(&e);
}
