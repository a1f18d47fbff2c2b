//! `exporter.protocol: grpc` in the built module under the scripted host: the export call is a
//! gRPC call (method path, `application/grpc`, `te: trailers`, a length-prefixed
//! `ExportTraceServiceRequest`), and the answer's `grpc-status` is read from the trailers or,
//! Trailers-Only, from the headers; hostile status bytes never trap.

use gateway_tracing_harness::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

const GRPC_CONFIG: &str = r#"{
  "service_name": "harness-gateway",
  "exporter": {
    "cluster": "otel_collector",
    "authority": "otel-collector",
    "protocol": "grpc",
    "flush_interval_ms": 500,
    "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 400, "max_elapsed_ms": 60000}
  }
}"#;

fn grpc_filter() -> Filter {
    let mut f = Filter::load().unwrap();
    f.set_upstream("products", 200);
    assert!(
        f.configure(GRPC_CONFIG.as_bytes()).unwrap(),
        "{:?}",
        f.host().logs
    );
    f
}

fn one_export(f: &mut Filter) -> HttpCall {
    f.request(get("/api/products"), status_headers("200"))
        .unwrap();
    f.tick_until_calls(None, 3)
        .unwrap()
        .pop()
        .unwrap_or_else(|| panic!("no export call at the flush interval"))
}

/// A gRPC length-prefixed message, uncompressed.
fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn grpc_ok() -> Pairs {
    pairs(&[("grpc-status", "0")])
}

fn headers_200() -> Pairs {
    pairs(&[(":status", "200"), ("content-type", "application/grpc")])
}

fn assert_accounted(f: &Filter) {
    assert_eq!(unaccounted(f.host()), None, "every span accounted for");
}

#[test]
fn the_export_call_is_a_grpc_call_and_ok_in_the_trailers_exports() {
    let mut f = grpc_filter();
    let call = one_export(&mut f);
    assert_eq!(
        call.header(":path").as_deref(),
        Some("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    );
    assert_eq!(call.header(":method").as_deref(), Some("POST"));
    assert_eq!(
        call.header("content-type").as_deref(),
        Some("application/grpc")
    );
    assert_eq!(call.header("te").as_deref(), Some("trailers"));
    assert_eq!(call.body[0], 0, "not compressed");
    let len = u32::from_be_bytes(call.body[1..5].try_into().unwrap()) as usize;
    assert_eq!(len + 5, call.body.len(), "one length-prefixed message");
    let req = ExportTraceServiceRequest::decode(&call.body[5..]).unwrap();
    assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 2);
    let body = frame(&ExportTraceServiceResponse::default().encode_to_vec());
    f.respond_with_trailers(call.token, headers_200(), &body, grpc_ok())
        .unwrap();
    assert_eq!(f.host().metric("spans_exported"), 2);
    assert_eq!(f.host().metric("export_requests_ok"), 1);
    assert_accounted(&f);
}

#[test]
fn partial_success_is_read_from_the_response_message() {
    let mut f = grpc_filter();
    let call = one_export(&mut f);
    let resp = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 1,
            error_message: "span too old".into(),
        }),
    };
    f.respond_with_trailers(
        call.token,
        headers_200(),
        &frame(&resp.encode_to_vec()),
        grpc_ok(),
    )
    .unwrap();
    assert_eq!(f.host().metric("spans_exported"), 1);
    assert_eq!(f.host().metric("spans_dropped_rejected_by_collector"), 1);
    assert_eq!(f.host().logged("span too old"), 1);
    assert_accounted(&f);
}

#[test]
fn answers_by_grpc_status_retry_or_drop_and_never_trap() {
    struct Row {
        /// Trailers-Only: the status fields in the headers (no trailers).
        fields: Pairs,
        retried: bool,
        logged: &'static str,
        reason: &'static str,
    }
    let rows = [
        Row {
            fields: pairs(&[
                ("grpc-status", "14"),
                ("grpc-message", "data refused due to high memory usage"),
            ]),
            retried: true,
            logged: "gRPC UNAVAILABLE (14): data refused due to high memory usage",
            reason: "the Collector's memory limiter: retried with backoff",
        },
        Row {
            fields: pairs(&[("grpc-status", "8"), ("grpc-message", "quota")]),
            retried: false,
            logged: "gRPC RESOURCE_EXHAUSTED (8): quota",
            reason: "RESOURCE_EXHAUSTED without RetryInfo: not retried",
        },
        Row {
            fields: pairs(&[
                ("grpc-status", "3"),
                ("grpc-message", "bad%0Aline\r\x1b[31m"),
            ]),
            retried: false,
            logged: "gRPC INVALID_ARGUMENT (3): bad line",
            reason: "grpc-message decoded and sanitised: no line break or escape reaches the log",
        },
        Row {
            fields: vec![
                (b"grpc-status".to_vec(), b"\xff".to_vec()),
                (b"grpc-message".to_vec(), b"\xff\xfe".to_vec()),
            ],
            retried: false,
            logged: "gRPC UNKNOWN (2)",
            reason: "a status that is not a number, a message that is not UTF-8: UNKNOWN, no trap",
        },
    ];
    for r in rows {
        let mut f = grpc_filter();
        let call = one_export(&mut f);
        let mut headers = headers_200();
        headers.extend(r.fields.clone());
        f.respond(call.token, headers, b"")
            .unwrap_or_else(|t| panic!("{}: {t}", r.reason));
        assert_eq!(f.host().metric("export_requests_failed"), 1, "{}", r.reason);
        assert_eq!(
            f.host().logged(r.logged),
            1,
            "{}: {:?}",
            r.reason,
            f.host().logs
        );
        assert!(
            f.host()
                .logs
                .iter()
                .all(|(_, l)| !l.contains('\n') && !l.contains('\x1b')),
            "{}",
            r.reason
        );
        if r.retried {
            let retry = f
                .tick_until_calls(Some(100), 20)
                .unwrap()
                .pop()
                .unwrap_or_else(|| panic!("{}: retried", r.reason));
            assert_eq!(retry.body, call.body, "{}: the same batch", r.reason);
            let ok = frame(&[]);
            f.respond_with_trailers(retry.token, headers_200(), &ok, grpc_ok())
                .unwrap();
            assert_eq!(f.host().metric("export_retries"), 1, "{}", r.reason);
            assert_eq!(f.host().metric("spans_exported"), 2, "{}", r.reason);
        } else {
            assert_eq!(
                f.host().metric("spans_dropped_export_failed"),
                2,
                "{}",
                r.reason
            );
        }
        assert_accounted(&f);
    }
}
