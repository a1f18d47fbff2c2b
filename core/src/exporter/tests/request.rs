//! Request bodies: gzip, OTLP/JSON.

use super::*;

#[test]
fn gzip_and_json_bodies() {
    struct Row {
        extra: &'static str,
        content_type: &'static str,
        content_encoding: Option<&'static str>,
        reason: &'static str,
    }
    let rows = [
        Row {
            extra: r#","compression":"gzip""#,
            content_type: "application/x-protobuf",
            content_encoding: Some("gzip"),
            reason: "gzip protobuf",
        },
        Row {
            extra: r#","encoding":"json""#,
            content_type: "application/json",
            content_encoding: None,
            reason: "plain JSON",
        },
        Row {
            extra: r#","encoding":"json","compression":"gzip""#,
            content_type: "application/json",
            content_encoding: Some("gzip"),
            reason: "gzip JSON",
        },
    ];
    for r in rows {
        let host = MockExportHost::default();
        let stats = MockStats::default();
        let mut e = exporter(r.extra);
        push(&mut e, 2, &host, &stats);
        e.on_tick(&host, &stats, 0);
        assert_eq!(
            host.header(0, "content-type").as_deref(),
            Some(r.content_type),
            "{}",
            r.reason
        );
        assert_eq!(
            host.header(0, "content-encoding").as_deref(),
            r.content_encoding,
            "{}",
            r.reason
        );
        let mut body = host.sent.borrow()[0].2.clone();
        if r.content_encoding.is_some() {
            use std::io::Read;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body.as_slice())
                .read_to_end(&mut out)
                .unwrap();
            body = out;
        }
        let req: ExportTraceServiceRequest = if r.content_type == "application/json" {
            serde_json::from_slice(&body).unwrap()
        } else {
            decoded(&body)
        };
        assert_eq!(
            req.resource_spans[0].scope_spans[0].spans.len(),
            2,
            "{}",
            r.reason
        );
    }
}

#[test]
fn json_follows_the_otlp_json_mapping() {
    let span = Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
        parent_span_id: vec![],
        name: "GET /x".into(),
        kind: crate::otlp::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_123_456_789,
        end_time_unix_nano: 1_700_000_000_223_456_789,
        attributes: vec![crate::otlp::kv_int("http.response.status_code", 200)],
        status: Some(crate::otlp::Status {
            code: crate::otlp::StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    };
    let mut fields = Vec::new();
    crate::otlp::encode_span_field(&span, &mut fields);
    let config = crate::config::parse(
        br#"{"service_name":"gw","exporter":{"cluster":"otel"}}"#,
        &|_| None,
    )
    .unwrap();
    let framed =
        Framer::new(&crate::otlp::resource(&config)).frame(std::iter::once(fields.as_slice()));
    let json: serde_json::Value =
        serde_json::from_slice(&crate::otlp::to_json(&framed).unwrap()).unwrap();
    let s = &json["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(
        s["traceId"], "abababababababababababababababab",
        "hex trace id"
    );
    assert_eq!(s["spanId"], "0102030405060708", "hex span id");
    assert_eq!(s["kind"], 2, "enum as integer");
    assert_eq!(
        s["startTimeUnixNano"], "1700000000123456789",
        "64-bit as string"
    );
    assert_eq!(
        s["attributes"][0]["value"]["intValue"], "200",
        "int64 attribute as string"
    );
    assert_eq!(s["status"]["code"], 2, "status code as integer");
    assert_eq!(
        json["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "gw"
    );
    assert_eq!(
        json["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"],
        "gateway-tracing"
    );
}

#[test]
#[ignore = "a measurement, not a check"]
fn encoding_cost() {
    use crate::otlp::{kv_int, kv_str};
    let mut fields = Vec::new();
    for i in 0..512u64 {
        let span = Span {
            trace_id: (0..16).map(|b| (b as u64 * 31 + i * 7) as u8).collect(),
            span_id: (0..8).map(|b| (b as u64 * 17 + i * 13) as u8).collect(),
            parent_span_id: (0..8).map(|b| (b as u64 * 5 + i * 3) as u8).collect(),
            name: "AUTH_SERVICE POST /auth/login".into(),
            kind: crate::otlp::SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_234_567,
            end_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_234_567 + 2_345_678,
            attributes: vec![
                kv_str("http.request.method", "POST"),
                kv_str("url.full", format!("http://auth/auth/login?i={i}")),
                kv_str("url.template", "/auth/login"),
                kv_str("http.route", "/api/auth/login"),
                kv_str("server.address", "127.0.0.1"),
                kv_int("server.port", 18081),
                kv_int("http.response.status_code", 200),
                kv_str("service.peer.name", "AUTH_SERVICE"),
                kv_str("user_agent.original", "e2e-test/1"),
                kv_str("network.protocol.version", "1.1"),
            ],
            ..Default::default()
        };
        crate::otlp::encode_span_field(&span, &mut fields);
    }
    let config = crate::config::parse(
        br#"{"service_name":"gw","exporter":{"cluster":"otel"}}"#,
        &|_| None,
    )
    .unwrap();
    let framed =
        Framer::new(&crate::otlp::resource(&config)).frame(std::iter::once(fields.as_slice()));
    for (enc, comp) in [
        (Encoding::Protobuf, Compression::None),
        (Encoding::Protobuf, Compression::Gzip),
        (Encoding::Json, Compression::None),
        (Encoding::Json, Compression::Gzip),
    ] {
        let n = 50;
        let t = std::time::Instant::now();
        let mut size = 0;
        for _ in 0..n {
            size = encode_body(framed.clone(), enc, comp).len();
        }
        let per_span_ns = t.elapsed().as_nanos() / (n * 512);
        eprintln!(
            "{enc:?}/{comp:?}: {} bytes/span, {per_span_ns} ns/span",
            size / 512
        );
    }
}
