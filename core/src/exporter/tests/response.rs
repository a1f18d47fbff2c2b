//! What an answer means: classification, `partial_success`, an unknown cluster.

use super::*;

#[test]
fn classify_outcomes() {
    struct Row {
        status: Option<u16>,
        body: &'static [u8],
        elapsed_ms: u64,
        want: Result<(), Failure>,
        retryable: bool,
        reason: &'static str,
    }
    let rows = [
        Row { status: Some(200), body: b"", elapsed_ms: 5, want: Ok(()), retryable: false, reason: "2xx is success" },
        Row { status: Some(204), body: b"", elapsed_ms: 5, want: Ok(()), retryable: false, reason: "any 2xx" },
        Row { status: Some(400), body: b"bad", elapsed_ms: 5, want: Err(Failure::Http(400)), retryable: false, reason: "400 is never retried" },
        Row { status: Some(401), body: b"", elapsed_ms: 5, want: Err(Failure::Http(401)), retryable: false, reason: "other 4xx not retried" },
        Row { status: Some(413), body: b"", elapsed_ms: 5, want: Err(Failure::BodyTooLarge(413)), retryable: false, reason: "413: too large, split rather than retried or dropped" },
        Row { status: Some(400), body: br#"{"code":3,"message":"http: request body too large"}"#, elapsed_ms: 5, want: Err(Failure::BodyTooLarge(400)), retryable: false, reason: "the OpenTelemetry Collector's answer to a body over max_request_body_size (v0.161.0): too large, not a bad request" },
        Row { status: Some(429), body: b"", elapsed_ms: 5, want: Err(Failure::Http(429)), retryable: true, reason: "429 retried" },
        Row { status: Some(500), body: b"", elapsed_ms: 5, want: Err(Failure::Http(500)), retryable: false, reason: "500 not in the OTLP retry list" },
        Row { status: Some(502), body: b"", elapsed_ms: 5, want: Err(Failure::Http(502)), retryable: true, reason: "502 retried" },
        Row { status: Some(503), body: b"", elapsed_ms: 5, want: Err(Failure::Http(503)), retryable: true, reason: "503 from the collector" },
        Row { status: Some(503), body: b"upstream connect error or disconnect/reset before headers. reset reason: connection failure", elapsed_ms: 5, want: Err(Failure::Connection), retryable: true, reason: "Envoy's router could not connect" },
        Row { status: Some(503), body: b"no healthy upstream", elapsed_ms: 5, want: Err(Failure::Connection), retryable: true, reason: "no endpoint" },
        Row { status: Some(504), body: b"upstream request timeout", elapsed_ms: 5000, want: Err(Failure::Timeout), retryable: true, reason: "Envoy's router timed out: a timeout, not an HTTP status" },
        Row { status: Some(504), body: b"", elapsed_ms: 5000, want: Err(Failure::Timeout), retryable: true, reason: "504 after the whole timeout" },
        Row { status: Some(504), body: b"gateway", elapsed_ms: 10, want: Err(Failure::Http(504)), retryable: true, reason: "a real 504 from a proxy" },
        Row { status: None, body: b"", elapsed_ms: 10, want: Err(Failure::Connection), retryable: true, reason: "reset" },
        Row { status: None, body: b"", elapsed_ms: 5000, want: Err(Failure::Timeout), retryable: true, reason: "no answer within the timeout" },
    ];
    for r in rows {
        let got = classify(
            r.status,
            r.body,
            Duration::from_millis(r.elapsed_ms),
            Duration::from_secs(5),
        );
        assert_eq!(got, r.want, "{}", r.reason);
        if let Err(f) = got {
            assert_eq!(f.is_retryable(), r.retryable, "{}", r.reason);
        }
    }
    assert!(
        !Failure::Dispatch(HostErrorKind::BadArgument).is_retryable(),
        "unknown cluster"
    );
    assert!(Failure::Dispatch(HostErrorKind::Internal).is_retryable());
}

#[test]
fn partial_success_decoding() {
    struct Row {
        body: Vec<u8>,
        want: Option<(u64, &'static str)>,
        reason: &'static str,
    }
    let pb = |n: i64, m: &str| {
        ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: n,
                error_message: m.into(),
            }),
        }
        .encode_to_vec()
    };
    let rows = [
        Row {
            body: vec![],
            want: None,
            reason: "empty body: full success",
        },
        Row {
            body: ExportTraceServiceResponse::default().encode_to_vec(),
            want: None,
            reason: "no partial_success",
        },
        Row {
            body: pb(3, "bad span"),
            want: Some((3, "bad span")),
            reason: "protobuf",
        },
        Row {
            body: pb(0, "warning only"),
            want: Some((0, "warning only")),
            reason: "a message without rejections",
        },
        Row {
            body: br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"too old"}}"#.to_vec(),
            want: Some((2, "too old")),
            reason: "JSON, int64 as string",
        },
        Row {
            body: br#"{"partialSuccess":{"rejectedSpans":5}}"#.to_vec(),
            want: Some((5, "")),
            reason: "JSON, number",
        },
        Row {
            body: br#"{}"#.to_vec(),
            want: None,
            reason: "JSON without partialSuccess",
        },
        Row {
            body: b"not protobuf \xff\xff".to_vec(),
            want: None,
            reason: "garbage ignored",
        },
    ];
    for r in rows {
        let got = partial_success(&r.body);
        assert_eq!(
            got.as_ref().map(|(n, m)| (*n, m.as_str())),
            r.want,
            "{}",
            r.reason
        );
    }
}

#[test]
fn partial_success_counts_rejected_spans_without_retry() {
    let host = MockExportHost::default();
    let stats = MockStats::default();
    let mut e = exporter("");
    push(&mut e, 5, &host, &stats);
    e.on_tick(&host, &stats, 0);
    let body = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 2,
            error_message: "span too old\n(injected)".into(),
        }),
    }
    .encode_to_vec();
    let resp = ExportResponse {
        status: Some(200),
        retry_after: None,
        body: &body,
        ..Default::default()
    };
    e.on_response(1, &resp, &host, &stats, 0);
    assert_eq!(stats.get(Counter::SpansExported), 3);
    assert_eq!(stats.get(Counter::SpansDroppedRejectedByCollector), 2);
    e.on_tick(&host, &stats, 10 * S);
    assert_eq!(host.count(), 1, "not retried");
    stats.assert_accounted(&e);
    assert_eq!(sanitize("a\nb"), "a b");
    assert_eq!(sanitize(&"x".repeat(500)).chars().count(), 201);
}

#[test]
fn an_unknown_cluster_is_dropped_and_counted() {
    let host = MockExportHost::default();
    host.fail_dispatch.set(Some(HostErrorKind::BadArgument));
    let stats = MockStats::default();
    let mut e = exporter("");
    push(&mut e, 2, &host, &stats);
    e.on_tick(&host, &stats, 0);
    push(&mut e, 1, &host, &stats);
    e.on_tick(&host, &stats, S);
    assert_eq!(stats.get(Counter::SpansDroppedExportFailed), 3);
    assert!(!failing(&e), "a config error is not a backoff");
    assert!(e.is_drained());
    stats.assert_accounted(&e);
    assert_eq!(
        Failure::Dispatch(HostErrorKind::NotFound).describe(&e.config),
        "exporter cluster 'otel' is not defined in Envoy (dispatch_http_call refused it)"
    );
}
