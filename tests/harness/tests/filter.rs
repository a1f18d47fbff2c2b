//! The built `gateway_tracing.wasm` under the scripted host: configure, a request's callbacks,
//! export calls and their answers (hostile statuses and bytes included), ticks and drains.
//! Every case also asserts the module never trapped: a trap is a dead VM in Envoy.

use gateway_tracing_harness::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One sampled request through the filter, then a tick past the flush interval: returns the
/// one export call it made.
fn one_export(f: &mut Filter) -> HttpCall {
    f.request(get("/api/products"), status_headers("200"))
        .unwrap();
    let mut calls = f.tick_until_calls(None, 3).unwrap();
    assert_eq!(calls.len(), 1, "one export call at the flush interval");
    calls.remove(0)
}

fn assert_accounted(f: &Filter) {
    assert_eq!(
        unaccounted(f.host()),
        None,
        "created = exported + dropped + held"
    );
}

#[test]
fn configure_accepts_a_good_config_and_refuses_a_bad_one_naming_the_field() {
    let mut good = Filter::load().unwrap();
    assert!(good.configure(CONFIG.as_bytes()).unwrap());
    assert_eq!(
        good.host().tick_period_ms,
        Some(500),
        "the flush timer runs"
    );
    assert!(
        good.host()
            .metrics
            .iter()
            .any(|m| m.name == "gateway_tracing.spans_created"),
        "stats defined at configure"
    );

    struct Row {
        config: &'static [u8],
        log: &'static str,
        reason: &'static str,
    }
    let rows = [
        Row {
            config: br#"{"exporter": {"cluster": "c", "timeout_ms": 0}}"#,
            log: "exporter.timeout_ms",
            reason: "an out-of-range field is named",
        },
        Row {
            config: b"{\"service_name\": \"\xff\xfe\"}",
            log: "invalid gateway-tracing configuration",
            reason: "bytes that are not UTF-8 are refused, not a panic",
        },
        Row {
            config: b"",
            log: "invalid gateway-tracing configuration",
            reason: "an empty configuration is refused",
        },
    ];
    for r in rows {
        let mut f = Filter::load().unwrap();
        assert!(!f.configure(r.config).unwrap(), "{}: refused", r.reason);
        assert!(
            f.host().logged(r.log) > 0,
            "{}: {:?}",
            r.reason,
            f.host().logs
        );
        // A refused plugin passes requests through untouched.
        f.request(get("/x"), status_headers("200")).unwrap();
        assert!(f.host().writes.is_empty(), "{}", r.reason);
    }
}

#[test]
fn a_sampled_request_is_exported_as_otlp_with_its_server_span() {
    let mut f = Filter::configured().unwrap();
    let call = one_export(&mut f);
    assert_eq!(call.cluster, "otel_collector");
    assert_eq!(call.header(":method").as_deref(), Some("POST"));
    assert_eq!(call.header(":path").as_deref(), Some("/v1/traces"));
    assert_eq!(call.header(":authority").as_deref(), Some("otel-collector"));
    assert_eq!(
        call.header("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    let req = ExportTraceServiceRequest::decode(call.body.as_slice()).expect("OTLP protobuf");
    let spans: Vec<_> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a SERVER span");
    assert_eq!(
        hex(&server.trace_id),
        TRACE_ID_HEX,
        "the incoming trace continued"
    );
    assert_eq!(hex(&server.parent_span_id), "b7ad6b7169203331");
    assert!(
        spans.iter().any(|s| s.kind == SpanKind::Client as i32),
        "and the CLIENT span to the upstream cluster"
    );
    // The upstream request carries the trace on.
    let tp: Vec<_> = f
        .host()
        .writes
        .iter()
        .filter(|w| w.name == b"traceparent" && w.map == REQUEST_HEADERS)
        .collect();
    assert_eq!(tp.len(), 1, "traceparent written once");
    assert!(String::from_utf8_lossy(&tp[0].value).contains(TRACE_ID_HEX));

    f.respond_status(call.token, b"200", vec![], b"").unwrap();
    assert_eq!(f.host().metric("spans_exported"), spans.len() as i64);
    assert_eq!(f.host().metric("export_in_flight"), 0);
    assert_accounted(&f);
    assert!(f.trapped().is_none());
}

#[test]
fn export_answers_200_503_429_with_a_raw_0xff_retry_after_never_trap() {
    struct Row {
        status: &'static [u8],
        retry_after: Option<&'static [u8]>,
        retried: bool,
        reason: &'static str,
    }
    let rows = [
        Row {
            status: b"200",
            retry_after: None,
            retried: false,
            reason: "accepted",
        },
        Row {
            status: b"503",
            retry_after: Some(b"\xff"),
            retried: true,
            reason: "503 with obs-text Retry-After: retried on the backoff, no hint",
        },
        Row {
            status: b"429",
            retry_after: Some(b"\xff"),
            retried: true,
            reason: "429 with obs-text Retry-After: retried on the backoff, no hint",
        },
        Row {
            status: b"503",
            retry_after: Some(b"1\x80"),
            retried: true,
            reason: "digits then obs-text: no hint",
        },
    ];
    for r in rows {
        let mut f = Filter::configured().unwrap();
        let call = one_export(&mut f);
        let extra = r
            .retry_after
            .map(|v| vec![(b"retry-after".to_vec(), v.to_vec())])
            .unwrap_or_default();
        f.respond_status(call.token, r.status, extra, b"")
            .unwrap_or_else(|t| {
                panic!("{}: {t}", r.reason);
            });
        if r.retried {
            assert_eq!(f.host().metric("export_requests_failed"), 1, "{}", r.reason);
            assert!(
                f.host().logged("(Retry-After)") == 0,
                "{}: an unparseable Retry-After is no hint",
                r.reason
            );
            // The retry goes out after the backoff, and a 200 then exports the spans.
            let retry = f
                .tick_until_calls(Some(100), 20)
                .unwrap()
                .pop()
                .unwrap_or_else(|| panic!("{}: retried", r.reason));
            assert_eq!(retry.body, call.body, "{}: the same batch", r.reason);
            f.respond_status(retry.token, b"200", vec![], b"").unwrap();
            assert_eq!(f.host().metric("export_retries"), 1, "{}", r.reason);
        }
        assert_eq!(f.host().metric("spans_exported"), 2, "{}", r.reason);
        // Tracing keeps working afterwards.
        let next = one_export(&mut f);
        f.respond_status(next.token, b"200", vec![], b"").unwrap();
        assert_eq!(f.host().metric("spans_exported"), 4, "{}", r.reason);
        assert_accounted(&f);
    }
}

#[test]
fn a_status_that_is_not_a_number_or_not_utf8_is_a_failed_export_not_a_trap() {
    for status in [&b"abc"[..], b"\xff\xfe", b"", b"99999", b"2\x0000"] {
        let mut f = Filter::configured().unwrap();
        let call = one_export(&mut f);
        f.respond_status(call.token, status, vec![], b"garbage \xff")
            .unwrap_or_else(|t| panic!("{status:?}: {t}"));
        assert_eq!(f.host().metric("export_requests_failed"), 1, "{status:?}");
        assert_eq!(
            f.host().metric("export_in_flight"),
            0,
            "{status:?}: slot released"
        );
        assert_accounted(&f);
    }
    // No `:status` at all (Envoy's answer for a reset).
    let mut f = Filter::configured().unwrap();
    let call = one_export(&mut f);
    f.respond(call.token, pairs(&[("x", "\u{7f}")]), b"")
        .unwrap();
    assert_eq!(f.host().metric("export_requests_failed"), 1);
}

#[test]
fn an_unreadable_answer_body_is_an_empty_body() {
    let mut f = Filter::configured().unwrap();
    let call = one_export(&mut f);
    f.host_mut().fail("proxy_get_buffer_bytes", status::UNKNOWN);
    f.respond_status(
        call.token,
        b"200",
        vec![],
        b"\x0a\x05garbage partial success",
    )
    .unwrap();
    f.host_mut().heal();
    assert_eq!(f.host().metric("spans_exported"), 2);
    assert_eq!(f.host().metric("export_in_flight"), 0);
    // The answer header reads failing too: a failure without a status, retried.
    let call = one_export(&mut f);
    f.host_mut()
        .fail("proxy_get_header_map_value", status::INTERNAL_FAILURE);
    f.respond_status(call.token, b"200", vec![], b"").unwrap();
    f.host_mut().heal();
    assert_eq!(f.host().metric("export_requests_failed"), 1);
    assert_accounted(&f);
}

/// Every host call the module makes, one at a time, answering a status the SDK does not know
/// (and then a few it does), through a full cycle: configure, requests, tick, export answers,
/// drain. The module must never trap.
#[test]
fn any_host_call_answering_an_unknown_status_never_traps() {
    let imports = [
        "proxy_log",
        "proxy_get_log_level",
        "proxy_get_current_time_nanoseconds",
        "proxy_set_tick_period_milliseconds",
        "proxy_get_buffer_bytes",
        "proxy_get_header_map_pairs",
        "proxy_get_header_map_value",
        "proxy_replace_header_map_value",
        "proxy_add_header_map_value",
        "proxy_remove_header_map_value",
        "proxy_get_property",
        "proxy_set_property",
        "proxy_http_call",
        "proxy_define_metric",
        "proxy_increment_metric",
        "proxy_record_metric",
        "proxy_done",
    ];
    for import in imports {
        for s in [
            status::UNKNOWN,
            status::UNIMPLEMENTED,
            status::EMPTY,
            status::NOT_FOUND,
            status::BAD_ARGUMENT,
        ] {
            let what = format!("{import} answering {s}");
            let mut f = Filter::load().unwrap();
            f.set_upstream("products", 503);
            f.host_mut().fail(import, s);
            let configured = f
                .configure(CONFIG.as_bytes())
                .unwrap_or_else(|t| panic!("{what}: {t}"));
            let cycle = |f: &mut Filter| -> Result<(), Trap> {
                let mut req = get("/api/products");
                req.push((b"b3".to_vec(), b"\xff".to_vec()));
                req.push((b"tracestate".to_vec(), b"a=1".to_vec()));
                f.request(req, status_headers("503"))?;
                f.tick(600)?;
                for c in f.take_calls() {
                    f.respond_status(c.token, b"429", pairs(&[("retry-after", b"\xff")]), b"")?;
                }
                f.tick(600)?;
                for c in f.take_calls() {
                    f.respond_status(c.token, b"200", vec![], b"")?;
                }
                if !f.drain()? {
                    for c in f.take_calls() {
                        f.respond_status(c.token, b"200", vec![], b"")?;
                    }
                }
                f.delete(ROOT)
            };
            cycle(&mut f).unwrap_or_else(|t| panic!("{what} (configured: {configured}): {t}"));
            assert!(f.trapped().is_none(), "{what}");
            assert!(
                f.host().logged("panicked") == 0,
                "{what}: {:?}",
                f.host().logs
            );
        }
    }
}

#[test]
fn the_tick_sends_a_partial_batch_after_the_flush_interval_and_nothing_when_empty() {
    let mut f = Filter::configured().unwrap();
    f.tick(600).unwrap();
    assert!(f.take_calls().is_empty(), "nothing queued: no export call");
    f.request(get("/a"), status_headers("200")).unwrap();
    assert!(
        f.take_calls().is_empty(),
        "a partial batch waits for the timer"
    );
    f.tick(600).unwrap();
    assert_eq!(f.take_calls().len(), 1);
}

#[test]
fn a_drain_sends_what_is_queued_and_calls_proxy_done_when_answered() {
    let mut f = Filter::configured().unwrap();
    f.request(get("/a"), status_headers("200")).unwrap();
    f.request(get("/b"), status_headers("200")).unwrap();
    assert!(
        !f.drain().unwrap(),
        "in flight: the root stays until answered"
    );
    let calls = f.take_calls();
    assert_eq!(calls.len(), 1, "the queue is sent at once");
    assert_eq!(f.host().done_calls, 0);
    f.respond_status(calls[0].token, b"200", vec![], b"")
        .unwrap();
    assert_eq!(f.host().done_calls, 1, "proxy_done once drained");
    assert_eq!(f.host().metric("spans_exported"), 4);
    f.delete(ROOT).unwrap();
    assert_accounted(&f);
    assert_eq!(f.host().metric("spans_dropped_shutdown"), 0);
}

#[test]
fn a_root_deleted_with_spans_in_flight_counts_them_as_shutdown_drops() {
    let mut f = Filter::configured().unwrap();
    let _call = one_export(&mut f);
    f.delete(ROOT).unwrap();
    assert_eq!(f.host().metric("spans_dropped_shutdown"), 2);
    assert_accounted(&f);
}

#[test]
fn an_answer_for_an_unknown_token_or_context_is_ignored() {
    let mut f = Filter::configured().unwrap();
    f.respond_status(4242, b"200", vec![], b"").unwrap();
    f.log(777).unwrap();
    f.response_headers(778, status_headers("200"), true)
        .unwrap();
    assert!(!f.done(779).unwrap_or(false) || f.trapped().is_none());
    assert!(f.trapped().is_none());
    let call = one_export(&mut f);
    f.respond_status(call.token, b"200", vec![], b"").unwrap();
    assert_eq!(f.host().metric("spans_exported"), 2);
}

#[test]
fn configuring_the_same_root_again_counts_what_the_old_exporter_held() {
    let mut f = Filter::configured().unwrap();
    f.request(get("/a"), status_headers("200")).unwrap();
    assert!(f.configure(CONFIG.as_bytes()).unwrap());
    assert_eq!(f.host().metric("spans_dropped_shutdown"), 2);
    // A bad configuration leaves the running one in place.
    f.request(get("/b"), status_headers("200")).unwrap();
    assert!(!f.configure(b"{").unwrap());
    let call = one_export(&mut f);
    f.respond_status(call.token, b"200", vec![], b"").unwrap();
    assert_eq!(f.host().metric("spans_exported"), 4);
    assert_accounted(&f);
}

#[test]
fn a_response_that_ends_in_its_body_or_trailers_is_traced_like_one_that_ends_in_headers() {
    let mut f = Filter::configured().unwrap();
    // Ends in the body.
    let id = f.new_stream().unwrap();
    f.request_headers(id, get("/api/products"), false).unwrap();
    f.response_headers(id, status_headers("200"), false)
        .unwrap();
    f.response_body(id, 10, false).unwrap();
    f.response_body(id, 0, true).unwrap();
    f.log(id).unwrap();
    assert!(f.done(id).unwrap());
    f.delete(id).unwrap();
    // Ends in trailers.
    let id = f.new_stream().unwrap();
    f.request_headers(id, get("/api/products"), true).unwrap();
    f.response_headers(id, status_headers("200"), false)
        .unwrap();
    f.response_body(id, 10, false).unwrap();
    f.response_trailers(id).unwrap();
    f.log(id).unwrap();
    f.done(id).unwrap();
    f.delete(id).unwrap();
    f.tick(500).unwrap();
    let calls = f.take_calls();
    assert_eq!(calls.len(), 1);
    let req = ExportTraceServiceRequest::decode(calls[0].body.as_slice()).unwrap();
    let kinds: Vec<i32> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == SpanKind::Server as i32)
            .count(),
        2
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == SpanKind::Client as i32)
            .count(),
        2
    );
}

/// Every value the module reads, hostile: header names and values that are not UTF-8, Envoy
/// attributes of the wrong length or encoding. The request is traced (a new trace), nothing traps.
#[test]
fn hostile_bytes_in_every_header_and_attribute_never_trap() {
    let mut f = Filter::configured().unwrap();
    for (path, value) in [
        ("xds.cluster_name", &b"\xff\xfe"[..]),
        ("upstream.address", b"\xff:\x80"),
        ("response.code", b"\x01\x02\x03"),
        ("response.flags", b"\xff"),
        ("response.code_details", b"via_\xffupstream"),
        ("request.protocol", b"\xc3"),
        ("source.address", b"\xff"),
        ("connection.tls_version", b"\xff"),
    ] {
        f.host_mut().properties.insert(path.into(), value.to_vec());
    }
    let request = pairs(&[
        (&b":method"[..], &b"G\xffT"[..]),
        (b":path", b"/api/\xff\xfe?q=\x80"),
        (b":authority", b"\xff"),
        (b"traceparent", b"00-\xff\xff-\x80-01"),
        (b"tracestate", b"a=\xff"),
        (b"\xff\xfe", b"\x00\x01"),
        (b"user-agent", b"\xff"),
        (b"", b""),
    ]);
    let response = pairs(&[(&b":status"[..], &b"\xff"[..]), (b"\xff", b"\xff")]);
    f.request(request, response).unwrap();
    let call = one_export(&mut f);
    let req = ExportTraceServiceRequest::decode(call.body.as_slice()).unwrap();
    let servers: Vec<String> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .filter(|s| s.kind == SpanKind::Server as i32)
        .map(|s| hex(&s.trace_id))
        .collect();
    assert_eq!(
        servers.len(),
        2,
        "the hostile request and the next one: {servers:?}"
    );
    assert!(
        servers.iter().any(|t| t != TRACE_ID_HEX),
        "an invalid traceparent restarts the trace: {servers:?}"
    );
    f.respond_status(call.token, b"200", vec![], b"").unwrap();
    assert_accounted(&f);
    assert!(f.trapped().is_none());
}

/// A host that answers an export call inside `dispatch_http_call` (re-entering the module while
/// the root context runs): the answer is kept and handed over at the root's next callback,
/// never dropped (a dropped answer would hold its in-flight slot for ever).
#[test]
fn an_answer_delivered_while_the_root_is_running_is_kept_not_dropped() {
    let mut f = Filter::configured().unwrap();
    f.host_mut().answer_inline = Some(b"200".to_vec());
    f.request(get("/a"), status_headers("200")).unwrap();
    f.tick(600).unwrap();
    assert_eq!(f.take_calls().len(), 1);
    assert!(f.trapped().is_none());
    assert_eq!(
        f.host().metric("spans_exported"),
        0,
        "not yet: the root was busy"
    );
    f.host_mut().answer_inline = None;
    f.tick(100).unwrap();
    assert_eq!(
        f.host().metric("spans_exported"),
        2,
        "handed over at the next tick"
    );
    assert_eq!(
        f.host().metric("export_in_flight"),
        0,
        "the slot is free again"
    );
    assert_accounted(&f);
}
