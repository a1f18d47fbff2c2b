//! End-to-end tests of the OTLP collector over real HTTP (ureq).

use std::time::Duration;

use demo::{AttrValue, Collector};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

type R = Result<(), Box<dyn std::error::Error>>;

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn sample() -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: vec![
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ],
        span_id: vec![0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        parent_span_id: vec![],
        trace_state: "vendor=x".into(),
        name: "GET /products".into(),
        kind: 2,
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 1_012_300_000,
        attributes: vec![
            kv(
                "http.request.method",
                any_value::Value::StringValue("GET".into()),
            ),
            kv("http.response.status_code", any_value::Value::IntValue(200)),
        ],
        events: vec![span::Event {
            name: "retry".into(),
            time_unix_nano: 1_005_000_000,
            attributes: vec![kv("attempt", any_value::Value::IntValue(1))],
            ..Default::default()
        }],
        status: Some(Status {
            code: 1,
            message: String::new(),
        }),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("ecomm-ms-gateway".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "gateway-tracing".into(),
                    version: "0.1.0".into(),
                    ..Default::default()
                }),
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build()
}

fn post(url: &str, ctype: &str, body: &[u8]) -> Result<u16, Box<ureq::Error>> {
    match agent()
        .post(url)
        .set("content-type", ctype)
        .send_bytes(body)
    {
        Ok(r) => Ok(r.status()),
        Err(ureq::Error::Status(code, _)) => Ok(code),
        Err(e) => Err(Box::new(e)),
    }
}

#[test]
fn protobuf_export_is_recorded() -> R {
    let c = Collector::start("127.0.0.1:0")?;
    let resp = agent()
        .post(&c.traces_url())
        .set("content-type", "application/x-protobuf")
        .set("x-custom", "a")
        .send_bytes(&sample().encode_to_vec())?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.header("content-type"), Some("application/x-protobuf"));

    let spans = c
        .wait_for(Duration::from_secs(2), |s| !s.is_empty())
        .map_err(|_| "no spans")?;
    let s = &spans[0];
    assert_eq!(s.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(s.span_id, "00f067aa0ba902b7");
    assert_eq!(s.parent_span_id, "");
    assert_eq!(s.trace_state, "vendor=x");
    assert_eq!(s.kind, 2);
    assert_eq!(s.service(), Some("ecomm-ms-gateway"));
    assert_eq!(s.scope_name, "gateway-tracing");
    assert_eq!(s.scope_version, "0.1.0");
    assert_eq!(
        s.attr("http.request.method").and_then(AttrValue::as_str),
        Some("GET")
    );
    assert_eq!(
        s.attr("http.response.status_code")
            .and_then(AttrValue::as_int),
        Some(200)
    );
    assert_eq!(s.status_code, 1);
    assert!((s.duration_ms() - 12.3).abs() < 1e-6);
    assert_eq!(s.events.len(), 1);
    assert_eq!(
        s.events[0].attributes.get("attempt"),
        Some(&AttrValue::Int(1))
    );

    let reqs = c.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/traces");
    assert_eq!(reqs[0].span_count, 1);
    assert_eq!(reqs[0].decode_error, None);
    assert_eq!(reqs[0].header("x-custom"), Some("a"));
    assert!(reqs[0]
        .headers
        .iter()
        .all(|(k, _)| *k == k.to_ascii_lowercase()));

    assert_eq!(c.trace("4BF92F3577B34DA6A3CE929D0E0E4736").len(), 1);
    assert!(c.trace("00000000000000000000000000000001").is_empty());
    c.clear();
    assert!(c.spans().is_empty() && c.requests().is_empty());
    Ok(())
}

#[test]
fn json_export_is_recorded() -> R {
    let c = Collector::start(":0")?;
    let body = serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "cart-service"}}]},
            "scopeSpans": [{
                "scope": {"name": "sdk"},
                "spans": [{
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174",
                    "parentSpanId": "eee19b7ec3c1b173",
                    "name": "POST /cart/add",
                    "kind": 2,
                    "startTimeUnixNano": "1544712660000000000",
                    "endTimeUnixNano": "1544712661000000000",
                    "attributes": [{"key": "n", "value": {"intValue": "42"}}],
                    "status": {"code": 2, "message": "boom"}
                }]
            }]
        }]
    });
    assert_eq!(
        post(
            &c.traces_url(),
            "application/json",
            body.to_string().as_bytes()
        )?,
        200
    );
    let spans = c.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(spans[0].parent_span_id, "eee19b7ec3c1b173");
    assert_eq!(spans[0].attr("n").and_then(AttrValue::as_int), Some(42));
    assert_eq!(spans[0].status_code, 2);
    assert_eq!(spans[0].status_message, "boom");
    assert_eq!(spans[0].service(), Some("cart-service"));
    Ok(())
}

#[test]
fn bad_requests_are_recorded() -> R {
    let c = Collector::start(":0")?;
    assert_eq!(
        post(
            &c.traces_url(),
            "application/x-protobuf",
            b"\xff\xff\xff garbage"
        )?,
        400
    );
    assert_eq!(
        post(&c.traces_url(), "application/json", b"{not json")?,
        400
    );
    assert_eq!(post(&c.traces_url(), "text/plain", b"hi")?, 415);
    let reqs = c.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs
        .iter()
        .all(|r| r.decode_error.is_some() && r.span_count == 0));
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![400, 400, 415]
    );
    assert!(c.spans().is_empty());
    Ok(())
}

#[test]
fn fail_next_rejects_then_recovers() -> R {
    let c = Collector::start(":0")?;
    c.fail_next(2, 503);
    let body = sample().encode_to_vec();
    assert_eq!(post(&c.traces_url(), "application/x-protobuf", &body)?, 503);
    assert_eq!(post(&c.traces_url(), "application/x-protobuf", &body)?, 503);
    assert!(c.spans().is_empty());
    assert_eq!(post(&c.traces_url(), "application/x-protobuf", &body)?, 200);
    assert_eq!(c.spans().len(), 1);
    let reqs = c.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[0].rejected && reqs[1].rejected && !reqs[2].rejected);
    assert_eq!(reqs[0].status, 503);
    Ok(())
}

#[test]
fn query_endpoints_and_jsonl() -> R {
    let dir = std::env::temp_dir().join(format!("mesh-jsonl-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("spans.jsonl");
    let _ = std::fs::remove_file(&file);
    let c = Collector::start(":0")?.with_jsonl(&file)?;
    assert_eq!(
        post(
            &c.traces_url(),
            "application/x-protobuf",
            &sample().encode_to_vec()
        )?,
        200
    );

    let health = agent()
        .get(&format!("http://{}/healthz", c.addr()))
        .call()?;
    assert_eq!(health.status(), 200);
    let all: Vec<demo::RecordedSpan> = serde_json::from_str(
        &agent()
            .get(&format!("http://{}/traces", c.addr()))
            .call()?
            .into_string()?,
    )?;
    assert_eq!(all, c.spans());
    assert!(
        c.requests().iter().all(|r| r.path == "/v1/traces"),
        "query endpoints are not recorded"
    );

    let text = std::fs::read_to_string(&file)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1);
    let v: serde_json::Value = serde_json::from_str(lines[0])?;
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn wait_for_times_out_with_current_spans() -> R {
    let c = Collector::start(":0")?;
    let res = c.wait_for(Duration::from_millis(100), |s| s.len() > 5);
    assert_eq!(res, Err(vec![]));
    Ok(())
}

#[test]
fn viewer_page_and_its_json() -> R {
    let c = Collector::start(":0")?;
    let base = format!("http://{}", c.addr());
    let get = |path: &str| -> Result<(u16, String, String), Box<dyn std::error::Error>> {
        match agent().get(&format!("{base}{path}")).call() {
            Ok(r) => {
                let ctype = r.content_type().to_string();
                Ok((r.status(), ctype, r.into_string()?))
            }
            Err(ureq::Error::Status(code, r)) => Ok((code, String::new(), r.into_string()?)),
            Err(e) => Err(Box::new(e)),
        }
    };
    let (status, ctype, page) = get("/")?;
    assert_eq!((status, ctype.as_str()), (200, "text/html"));
    assert!(page.contains("<title>gateway-tracing"));
    assert_eq!(c.viewer_url(), format!("{base}/"));

    let (_, _, empty) = get("/api/traces")?;
    assert_eq!(empty, "[]");
    assert_eq!(
        post(
            &c.traces_url(),
            "application/x-protobuf",
            &sample().encode_to_vec()
        )?,
        200
    );
    let (status, _, list) = get("/api/traces")?;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_str(&list)?;
    assert_eq!(list[0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(list[0]["root_name"], "GET /products");
    assert_eq!(list[0]["span_count"], 1);
    assert_eq!(list[0]["error_count"], 0);
    assert_eq!(list[0]["services"][0], "ecomm-ms-gateway");
    assert_eq!(c.viewer_polls(), 2);

    let (status, _, one) = get("/api/traces/4BF92F3577B34DA6A3CE929D0E0E4736")?;
    assert_eq!(status, 200);
    let one: serde_json::Value = serde_json::from_str(&one)?;
    let span = &one["spans"][0];
    assert_eq!(span["name"], "GET /products");
    assert_eq!(span["kind"], "SERVER");
    assert_eq!(span["status"], "OK");
    assert_eq!(span["offset_ms"], 0.0);
    assert_eq!(span["duration_ms"], 12.3);
    assert_eq!(span["events"][0]["offset_ms"], 5.0);
    assert_eq!(span["resource"]["service.name"], "ecomm-ms-gateway");

    assert_eq!(get("/api/traces/0123")?.0, 404);
    assert_eq!(get("/favicon.ico")?.0, 204);
    assert!(
        c.requests().iter().all(|r| r.path == "/v1/traces"),
        "viewer requests are not recorded: {:?}",
        c.requests()
    );
    Ok(())
}

/// `make run JAEGER=1`: every accepted export also goes, as received, to the forward URL.
#[test]
fn forward_to_sends_every_accepted_export_on() -> R {
    let sink = Collector::start(":0")?;
    let c = Collector::start(":0")?;
    c.forward_to(&format!("http://{}/v1/traces", sink.addr()));
    let body = sample().encode_to_vec();
    assert_eq!(
        post(
            &format!("http://{}/v1/traces", c.addr()),
            "application/x-protobuf",
            &body
        )?,
        200
    );
    let got = sink
        .wait_for(Duration::from_secs(5), |s| s.len() >= c.spans().len())
        .map_err(|s| format!("forwarded {} spans", s.len()))?;
    assert_eq!(got, c.spans(), "the same spans, decoded by the receiver");
    // A refused export is not forwarded.
    c.fail_next(1, 503);
    let _ = post(
        &format!("http://{}/v1/traces", c.addr()),
        "application/x-protobuf",
        &body,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.spans().len(), got.len());
    Ok(())
}
