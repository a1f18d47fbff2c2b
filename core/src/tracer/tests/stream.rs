//! [`Stream`]: the callbacks a host glue forwards, in Envoy's order, for each [`Placement`]:
//! a downstream request ends in the log phase, an upstream attempt when it is destroyed.

use super::*;
use crate::tracer::{AttemptBook, Placement, Stream, SPANS_BUFFER_CAPACITY};
use std::cell::RefCell;

const UPSTREAM: &str = r#"{
  "mode": "upstream_filter",
  "clusters": {"products": {"service": "PRODUCTS_SERVICE"}},
  "exporter": {"cluster": "otel"}
}"#;

/// `out` decoded back into spans.
fn decode(out: &[u8]) -> Vec<Span> {
    use prost::Message;
    opentelemetry_proto::tonic::trace::v1::ScopeSpans::decode(out)
        .expect("valid protobuf")
        .spans
}

#[test]
fn placement_rows() {
    struct Row {
        mode: &'static str,
        want: Placement,
        reason: &'static str,
    }
    let rows = [
        Row {
            mode: "gateway",
            want: Placement::Downstream,
            reason: "HCM filter chain",
        },
        Row {
            mode: "sidecar_inbound",
            want: Placement::Downstream,
            reason: "HCM filter chain",
        },
        Row {
            mode: "sidecar_outbound",
            want: Placement::Downstream,
            reason: "HCM filter chain",
        },
        Row {
            mode: "upstream_filter",
            want: Placement::UpstreamAttempt,
            reason: "a cluster's filter chain: one attempt per stream",
        },
    ];
    for r in rows {
        assert_eq!(Placement::of(&with_mode(r.mode)), r.want, "{}", r.reason);
    }
}

#[test]
fn a_downstream_request_ends_in_the_log_phase() {
    let cfg = with_fields(r#""response_trace_header": "traceresponse", "call_metrics": true"#);
    let mut host = request("GET", "/api/products/p-1", Some("products"))
        .property_u64(&["response", "code"], 200)
        .property(&["response", "code_details"], VIA_UPSTREAM.as_bytes())
        .property(&["upstream", "address"], b"10.0.0.7:8080");
    let stats = MockStats::new();
    let book = RefCell::new(AttemptBook::default());
    let mut stream = Stream::start(&cfg, &mut host, &stats, &book);
    stream.response_headers(&mut host, false);
    assert_eq!(
        host.added_response_headers.len(),
        1,
        "the response trace header is added at response headers"
    );
    assert_eq!(host.added_response_headers[0].0, "traceresponse");
    stream.response_end(END);
    let mut out = Vec::new();
    let done = stream.done(&cfg, &host, &stats, &mut out);
    assert_eq!(
        (done.spans, out.len()),
        (0, 0),
        "a downstream stream ends in log, not done"
    );
    let finished = stream.log(&cfg, &host, &stats, &mut out);
    assert_eq!(finished.spans, 2, "SERVER and CLIENT");
    assert_eq!(decode(&out).len(), 2);
    assert!(
        finished.call.is_some(),
        "call_metrics: the call is recorded"
    );
    let again = stream.log(&cfg, &host, &stats, &mut out);
    assert_eq!(again.spans, 0, "a stream ends once");
    assert!(book.borrow().is_empty(), "no attempts downstream");
}

#[test]
fn an_upstream_attempt_ends_when_destroyed_with_its_own_status() {
    let cfg = config(UPSTREAM);
    let mut host = MockHost::new()
        .header(":method", "GET")
        .header(":path", "/products/p-1")
        .header(":authority", "shop.example")
        .property(&["xds", "cluster_name"], b"products")
        .response_header(":status", "503")
        .now(START)
        .random(RANDOM);
    let stats = MockStats::new();
    let book = RefCell::new(AttemptBook::default());
    let mut stream = Stream::start(&cfg, &mut host, &stats, &book);
    assert_eq!(book.borrow().len(), 1, "the injected span id is remembered");
    stream.response_headers(&mut host, true);
    let mut out = Vec::new();
    let finished = stream.done(&cfg, &host, &stats, &mut out);
    let spans = decode(&out);
    assert_eq!(
        (finished.spans, spans.len()),
        (1, 1),
        "one CLIENT span per attempt"
    );
    assert_eq!(
        attr(&spans[0], sc::HTTP_RESPONSE_STATUS_CODE),
        Some(Val::Int(503)),
        "the attempt's own :status"
    );
    assert!(finished.call.is_none());
}

#[test]
fn a_busy_attempt_book_still_traces_the_attempt() {
    let cfg = config(UPSTREAM);
    let mut host = MockHost::new()
        .header(":method", "GET")
        .header(":path", "/products/p-1")
        .property(&["xds", "cluster_name"], b"products")
        .now(START)
        .random(RANDOM);
    let stats = MockStats::new();
    let book = RefCell::new(AttemptBook::default());
    let held = book.borrow_mut();
    let stream = Stream::start(&cfg, &mut host, &stats, &book);
    drop(held);
    assert!(stream.request().is_some_and(|r| r.recorded));
    assert!(
        book.borrow().is_empty(),
        "not remembered, but not lost either"
    );
}

#[test]
fn the_filters_own_export_request_passes_an_upstream_filter_untouched() {
    let cfg = config(UPSTREAM);
    let mut host = MockHost::new()
        .header(":method", "POST")
        .header(":path", "/v1/traces")
        .property(&["xds", "cluster_name"], b"otel")
        .response_header(":status", "200")
        .now(START)
        .random(RANDOM);
    let stats = MockStats::new();
    let book = RefCell::new(AttemptBook::default());
    let mut stream = Stream::start(&cfg, &mut host, &stats, &book);
    stream.response_headers(&mut host, true);
    let mut out = Vec::new();
    let finished = stream.done(&cfg, &host, &stats, &mut out);
    assert_eq!(finished.spans, 0);
    assert!(
        host.set_calls.is_empty(),
        "nothing injected: {:?}",
        host.set_calls
    );
    assert_eq!(stats.total(), 0, "nothing counted (not even as unsampled)");
    assert!(book.borrow().is_empty());
}

/// Issue 17 item 8: with `sampler_keep_errors`, the response trace header is written when the
/// status is known and carries the decision the exported spans carry: a 5xx is kept (`-03`:
/// sampled, random trace id), anything else stays `-02`; the request is counted once.
#[test]
fn a_kept_error_says_so_in_the_response_trace_header() {
    let cfg = with_fields(
        r#""sampler": "always_off", "sampler_keep_errors": true, "response_trace_header": "traceresponse""#,
    );
    for (status, flags, kept) in [(503u16, "-03", 1u64), (200, "-02", 0)] {
        let mut host = request("GET", "/api/products/p-1", Some("products"))
            .response_header(":status", &status.to_string())
            .property_u64(&["response", "code"], u64::from(status))
            .property(&["upstream", "address"], b"10.0.0.7:8080");
        let stats = MockStats::new();
        let book = RefCell::new(AttemptBook::default());
        let mut stream = Stream::start(&cfg, &mut host, &stats, &book);
        stream.response_headers(&mut host, true);
        let (name, value) = &host.added_response_headers[0];
        assert_eq!(name, "traceresponse");
        assert!(value.ends_with(flags), "{status}: {value}");
        let mut out = Vec::new();
        let finished = stream.log(&cfg, &host, &stats, &mut out);
        assert_eq!(finished.spans > 0, kept == 1, "{status}");
        assert_eq!(stats.get(Counter::RequestsKeptForError), kept, "{status}");
        assert_eq!(
            stats.get(Counter::RequestsNotSampled),
            1 - kept,
            "{status}: counted once"
        );
    }
}

/// A routed request's two spans, default attributes plus a long user agent and a few
/// captured headers, fit in the glues' span buffer, so writing them never reallocates.
#[test]
fn a_routed_requests_spans_fit_in_the_span_buffer() {
    let cfg = with_fields(r#""request_headers": ["x-request-id", "user-agent"]"#);
    let host = request("POST", "/api/cart/c-123/add?utm_source=a-long-campaign-name", Some("cart"))
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36")
        .header("x-request-id", "0d3c9f5e-1b2a-4c8d-9e7f-6a5b4c3d2e1f");
    let stats = MockStats::new();
    let mut h = host;
    let req = start(&cfg, &mut h, &stats);
    let mut out = Vec::with_capacity(SPANS_BUFFER_CAPACITY);
    let n = finish(&cfg, &req, &answered(200), &stats, &mut out);
    assert_eq!(n, 2, "SERVER and CLIENT");
    assert!(
        out.len() <= SPANS_BUFFER_CAPACITY && out.capacity() == SPANS_BUFFER_CAPACITY,
        "{} bytes written into a {SPANS_BUFFER_CAPACITY}-byte buffer",
        out.len()
    );
}
