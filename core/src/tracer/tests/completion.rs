//! Log-phase reads and span timing.

use super::*;

#[test]
fn completion_is_read_from_envoy_attributes() {
    let host = MockHost::new()
        .header(":path", "/products/p-1?x=1")
        .header(":authority", "products.internal")
        .property_u64(&["response", "code"], 503)
        .property_u64(&["response", "flags"], 0x20)
        .property(
            &["response", "code_details"],
            b"upstream_reset_before_response_started{connection_failure}",
        )
        .property(&["upstream", "address"], b"10.0.0.7:8080")
        .property(&["source", "address"], b"192.0.2.10:51234")
        .property(&["request", "protocol"], b"HTTP/2")
        .now(END);
    let done = Completion::read(&host, &config(GATEWAY));
    assert_eq!(done.client_address.as_deref(), Some("192.0.2.10:51234"));
    assert_eq!(done.protocol.as_deref(), Some("HTTP/2"));
    assert_eq!(done.end_ns, END);
    assert_eq!(done.status, 503);
    assert_eq!(done.flags, 0x20);
    assert_eq!(
        done.code_details,
        "upstream_reset_before_response_started{connection_failure}"
    );
    assert_eq!(done.upstream_address.as_deref(), Some("10.0.0.7:8080"));
    assert_eq!(done.upstream_path.as_deref(), Some("/products/p-1?x=1"));
    assert_eq!(
        done.upstream_authority.as_deref(),
        Some("products.internal")
    );
    assert!(!done.responded());

    let empty = Completion::read(&MockHost::new(), &config(GATEWAY));
    assert_eq!(
        (empty.status, empty.flags, empty.code_details.as_str()),
        (0, 0, "")
    );
    assert_eq!(empty.upstream_address, None);
}

#[test]
fn end_before_start_is_clamped() {
    let done = Completion {
        end_ns: START - 1,
        ..answered(200)
    };
    let r = run(
        &config(GATEWAY),
        request("GET", "/api/products/p-1", Some("products")),
        &done,
    );
    for s in &r.spans {
        assert_eq!(s.end_time_unix_nano, START, "{}", s.name);
    }
}

#[test]
fn exported_span_flags_carry_the_w3c_sampled_flag() {
    // OTLP `Span.flags`: bits 0-7 are the W3C trace-flags of the span, bits 8-9 its
    // parent's remoteness. Every exported span is recorded, hence sampled: the low byte
    // must say so, matching the flags we propagate (`-01` for these parents; `-03` for a trace
    // we start, whose id is random, Level 2 §3.2.2.5.2).
    struct Row {
        sampler: &'static str,
        mode: &'static str,
        /// The incoming `traceparent`, if any.
        incoming: Option<&'static str>,
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { sampler: "parent_based_always_on", mode: "gateway", incoming: None, reason: "gateway root" },
        Row { sampler: "parent_based_always_on", mode: "gateway", incoming: Some(PARENT), reason: "gateway child" },
        Row { sampler: "always_on", mode: "gateway", incoming: Some(PARENT_UNSAMPLED), reason: "always_on over an unsampled parent" },
        Row { sampler: "parent_based_always_on", mode: "sidecar_inbound", incoming: Some(PARENT), reason: "inbound sidecar" },
        Row { sampler: "parent_based_always_on", mode: "sidecar_outbound", incoming: Some(PARENT), reason: "outbound sidecar" },
    ];
    for Row {
        sampler,
        mode,
        incoming,
        reason,
    } in rows
    {
        let json = GATEWAY.replacen(
            '{',
            &format!(r#"{{"sampler": "{sampler}", "mode": "{mode}","#),
            1,
        );
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        if let Some(tp) = incoming {
            host = host.header("traceparent", tp);
        }
        let r = run(&config(&json), host, &answered(200));
        assert!(!r.spans.is_empty(), "{reason}");
        let want: u32 = if incoming.is_some() { 0x01 } else { 0x03 };
        assert!(
            r.traceparent().ends_with(&format!("-{want:02x}")),
            "{reason}"
        );
        for s in &r.spans {
            assert_eq!(
                s.flags & 0xff,
                want,
                "{reason}: {} flags {:#x}",
                s.name,
                s.flags
            );
            assert_eq!(s.flags & !0x3ff, 0, "{reason}: high bits must be zero");
        }
    }
}

/// A plain upstream answer needs no `response.code_details` read (it could only say
/// `via_upstream`); anything else reads it.
#[test]
fn code_details_are_read_only_when_they_can_say_something() {
    let host = MockHost::new()
        .property_u64(&["response", "code"], 200)
        .property(&["upstream", "address"], b"10.0.0.7:8080")
        .property(&["response", "code_details"], b"would-be-read");
    let done = Completion::read(&host, &config(GATEWAY));
    assert_eq!(
        done.code_details, VIA_UPSTREAM,
        "not read: implied by the upstream's 200"
    );
    assert!(done.responded());

    let local = MockHost::new()
        .property_u64(&["response", "code"], 200)
        .property(&["response", "code_details"], b"direct_response");
    let done = Completion::read(&local, &config(GATEWAY));
    assert_eq!(done.code_details, "direct_response", "no upstream: read");
    assert!(!done.responded());

    let flagged = MockHost::new()
        .property_u64(&["response", "code"], 200)
        .property_u64(
            &["response", "flags"],
            crate::status::flag::UPSTREAM_RETRY_LIMIT_EXCEEDED,
        )
        .property(&["upstream", "address"], b"10.0.0.7:8080")
        .property(&["response", "code_details"], b"via_upstream");
    assert_eq!(
        Completion::read(&flagged, &config(GATEWAY)).code_details,
        "via_upstream",
        "flags set: read"
    );
}
