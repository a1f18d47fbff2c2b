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

/// The log phase reads its attributes in one batch where Envoy has CEL, one by one where it
/// has not; both give the same completion.
#[test]
fn batched_and_one_by_one_reads_agree() {
    struct Row {
        code: Option<u64>,
        flags: u64,
        details: Option<&'static str>,
        upstream: Option<&'static str>,
        tls: Option<&'static str>,
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { code: Some(200), flags: 0, details: Some("via_upstream"), upstream: Some("10.0.0.7:8080"), tls: None, reason: "a plain upstream answer" },
        Row { code: Some(200), flags: 0, details: Some("via_upstream"), upstream: Some("10.0.0.7:8443"), tls: Some("TLSv1.3"), reason: "over TLS" },
        Row { code: Some(200), flags: 0x10000, details: Some("via_upstream"), upstream: Some("10.0.0.7:8080"), tls: None, reason: "a flag on a 200 (downstream went away)" },
        Row { code: Some(503), flags: 0x20, details: Some("upstream_reset_before_response_started{connection_failure}"), upstream: None, tls: None, reason: "no upstream connection" },
        Row { code: Some(404), flags: 0x10, details: Some("route_not_found"), upstream: None, tls: Some("TLSv1.3"), reason: "a local reply: no upstream, so no TLS either" },
        Row { code: None, flags: 0, details: None, upstream: None, tls: None, reason: "nothing was answered" },
    ];
    for Row {
        code,
        flags,
        details,
        upstream,
        tls,
        reason,
    } in rows
    {
        let mut host = MockHost::new()
            .header(":path", "/products/p-1?x=1")
            .header(":authority", "products.internal")
            .property_u64(&["response", "flags"], flags)
            .property(&["source", "address"], b"192.0.2.10:51234")
            .property(&["request", "protocol"], b"HTTP/1.1")
            .now(END);
        if let Some(c) = code {
            host = host.property_u64(&["response", "code"], c);
        }
        for (path, value) in [
            (&["response", "code_details"], details),
            (&["upstream", "address"], upstream),
            (&["upstream", "tls_version"], tls),
        ] {
            if let Some(v) = value {
                host = host.property(path, v.as_bytes());
            }
        }
        let cfg = config(GATEWAY);
        let one_by_one = host.clone().without_batches();
        let batched = Completion::read(&host, &cfg);
        let single = Completion::read(&one_by_one, &cfg);
        assert_eq!(batched, single, "{reason}");
        assert_eq!(
            (host.batch_reads.get(), host.property_reads.get()),
            (1, 0),
            "{reason}: one batch, no single reads"
        );
        assert_eq!(one_by_one.batch_reads.get(), 0, "{reason}");
        assert!(one_by_one.property_reads.get() >= 6, "{reason}");
        assert_eq!(batched.upstream_path.as_deref(), Some("/products/p-1?x=1"));
        assert_eq!(
            batched.upstream_tls,
            upstream.is_some() && tls.is_some(),
            "{reason}"
        );
    }
}

/// The CEL list Envoy compiles: each attribute guarded by `has()`, so a missing one reads as
/// "" instead of failing the list; and every batch sits at its id in `BATCHES`.
#[test]
fn log_batch_is_one_guarded_cel_list() {
    let expr = LOG_BATCH.expression();
    assert!(
        expr.starts_with(r#"[has(response.code) ? response.code : "", "#),
        "{expr}"
    );
    assert!(
        expr.ends_with(r#"has(request.protocol) ? request.protocol : ""]"#),
        "{expr}"
    );
    assert_eq!(expr.matches("has(").count(), LOG_BATCH.len());
    for (i, batch) in batches(&config(GATEWAY)).iter().enumerate() {
        assert_eq!(batch.id, i, "batch ids index the glue's token table");
    }
}

/// What Envoy 1.40 returned for the 8-attribute probe list (`make bench`'s `empty_expr1`
/// filter, first evaluation): a 200 from 127.0.0.1:21010 without TLS.
#[test]
fn decode_list_reads_envoys_serialisation() {
    let mut buf = vec![8, 0, 0, 0];
    let items: [&[u8]; 8] = [
        &200u64.to_le_bytes(),
        &0u64.to_le_bytes(),
        b"127.0.0.1:21010",
        b"",
        b"/bench",
        b"127.0.0.1:21000",
        b"127.0.0.1:52706",
        b"HTTP/1.1",
    ];
    for item in items {
        buf.extend_from_slice(&(item.len() as u32).to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
    }
    for item in items {
        buf.extend_from_slice(item);
        buf.extend_from_slice(&[0, 0]);
    }
    let values = crate::host::decode_list(buf);
    assert_eq!(values, items.map(<[u8]>::to_vec).to_vec());
    assert_eq!(crate::host::property_u64(&values[0]), Some(200));
    // Truncated input: what was read so far, never a panic.
    assert!(crate::host::decode_list(vec![8, 0, 0]).is_empty());
}
