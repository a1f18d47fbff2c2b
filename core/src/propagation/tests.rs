//! The composite: propagators in priority order, injection of every listed format, the trust
//! boundary, the response header; and property tests over every parser (no byte string
//! panics; parse∘format round-trips).

use super::testing::Headers;
use super::*;
use crate::ids::{SpanId, TraceId};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const B3_TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const B3_SPAN: &str = "e457b5a2e4d86bd1";
const B3_SINGLE: &str = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";

use Propagator::{B3Multi as P_B3M, TraceContext as P_TC, B3 as P_B3};

struct ExtractRow {
    propagators: Vec<Propagator>,
    headers: Vec<(&'static str, &'static str)>,
    /// Trace id of the context found, `None` for none.
    trace: Option<&'static str>,
    problems: usize,
    reason: &'static str,
}

#[test]
fn composite_extraction_rows() {
    for row in [
        ExtractRow {
            propagators: vec![P_TC],
            headers: vec![("b3", B3_SINGLE)],
            trace: None,
            problems: 0,
            reason: "default [tracecontext]: B3 is not read (today's behaviour)",
        },
        ExtractRow {
            propagators: vec![P_TC, P_B3],
            headers: vec![("b3", B3_SINGLE)],
            trace: Some(B3_TRACE),
            problems: 0,
            reason: "B3 single when tracecontext finds nothing",
        },
        ExtractRow {
            propagators: vec![P_TC, P_B3M],
            headers: vec![("x-b3-traceid", B3_TRACE), ("x-b3-spanid", B3_SPAN)],
            trace: Some(B3_TRACE),
            problems: 0,
            reason: "B3 multi",
        },
        ExtractRow {
            propagators: vec![P_TC, P_B3],
            headers: vec![("traceparent", TP), ("b3", B3_SINGLE)],
            trace: Some(TRACE),
            problems: 0,
            reason: "order is priority: tracecontext first",
        },
        ExtractRow {
            propagators: vec![P_B3, P_TC],
            headers: vec![("traceparent", TP), ("b3", B3_SINGLE)],
            trace: Some(B3_TRACE),
            problems: 0,
            reason: "order is priority: b3 first",
        },
        ExtractRow {
            propagators: vec![P_TC, P_B3],
            headers: vec![("traceparent", "garbage"), ("b3", B3_SINGLE)],
            trace: Some(B3_TRACE),
            problems: 1,
            reason: "an invalid traceparent falls through to b3, counted",
        },
        ExtractRow {
            propagators: vec![P_B3, P_TC],
            headers: vec![("traceparent", TP), ("b3", "bad")],
            trace: Some(TRACE),
            problems: 1,
            reason: "an invalid b3 falls through to tracecontext, counted",
        },
        ExtractRow {
            propagators: vec![P_TC, P_B3],
            headers: vec![("traceparent", "garbage"), ("b3", "bad")],
            trace: None,
            problems: 2,
            reason: "nothing valid: a new trace, both counted",
        },
        ExtractRow {
            propagators: vec![P_B3, P_TC],
            headers: vec![("b3", "1"), ("traceparent", TP)],
            trace: Some(TRACE),
            problems: 0,
            reason: "B3 Single Header: a sampling state alone carries no parent",
        },
    ] {
        let (found, problems) = extract(&row.propagators, &Headers::new(&row.headers));
        assert_eq!(
            found.map(|c| c.trace_id.to_string()).as_deref(),
            row.trace,
            "{}",
            row.reason
        );
        assert_eq!(problems.len(), row.problems, "{}: {problems:?}", row.reason);
    }
}

#[test]
fn tracestate_only_with_a_valid_traceparent() {
    // Level 2 §3.3.1.1 / §4.3: tracestate is interpreted only with a valid traceparent; a
    // parent from B3 has none.
    let h = Headers::new(&[
        ("traceparent", "garbage"),
        ("tracestate", "a=1"),
        ("b3", B3_SINGLE),
    ]);
    let (found, _) = extract(&[P_TC, P_B3], &h);
    assert_eq!(found.unwrap().trace_state, None);

    let h = Headers::new(&[("traceparent", TP), ("tracestate", "foo=1,foo=2,bar=3")]);
    let (found, problems) = extract(&[P_TC], &h);
    assert_eq!(
        found.unwrap().trace_state.as_deref(),
        Some("foo=1,bar=3"),
        "§3.3.1.1 duplicates dropped, rest kept"
    );
    assert_eq!(problems, vec![Problem::TracestateDuplicates(1)]);
    assert_eq!(
        problems[0].counter(),
        None,
        "a valid header is not counted invalid"
    );
}

fn ctx(flags: u8, trace_state: Option<&str>) -> SpanContext {
    SpanContext::new(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex(SPAN).unwrap(),
        flags,
        trace_state.map(str::to_string),
    )
}

struct InjectRow {
    propagators: Vec<Propagator>,
    incoming: Vec<(&'static str, &'static str)>,
    want: Vec<(&'static str, String)>,
    reason: &'static str,
}

#[test]
fn injection_rows() {
    let tp = format!("00-{TRACE}-{SPAN}-03");
    let stale = vec![
        ("b3", "stale"),
        ("x-b3-traceid", "stale"),
        ("x-b3-spanid", "stale"),
        ("x-b3-parentspanid", "stale"),
        ("x-b3-sampled", "0"),
        ("x-b3-flags", "1"),
        ("baggage", "k=v"),
    ];
    for row in [
        InjectRow {
            propagators: vec![P_TC],
            incoming: stale.clone(),
            want: vec![
                ("b3", "stale".into()),
                ("x-b3-traceid", "stale".into()),
                ("x-b3-spanid", "stale".into()),
                ("x-b3-parentspanid", "stale".into()),
                ("x-b3-sampled", "0".into()),
                ("x-b3-flags", "1".into()),
                ("baggage", "k=v".into()),
                ("traceparent", tp.clone()),
                ("tracestate", "a=1".into()),
            ],
            reason: "default: only W3C written; B3 and baggage untouched (today's behaviour)",
        },
        InjectRow {
            propagators: vec![P_TC, P_B3],
            incoming: stale.clone(),
            want: vec![
                ("baggage", "k=v".into()),
                ("traceparent", tp.clone()),
                ("tracestate", "a=1".into()),
                ("b3", format!("{TRACE}-{SPAN}-1")),
            ],
            reason:
                "b3: every stale B3 header removed, our single header written; baggage untouched",
        },
        InjectRow {
            propagators: vec![P_B3M],
            incoming: stale.clone(),
            want: vec![
                ("baggage", "k=v".into()),
                ("x-b3-traceid", TRACE.into()),
                ("x-b3-spanid", SPAN.into()),
                ("x-b3-sampled", "1".into()),
            ],
            reason: "b3multi alone: x-b3-* with our span id; W3C not written when not listed",
        },
    ] {
        let mut h = Headers::new(&row.incoming);
        inject(&row.propagators, &ctx(0x03, Some("a=1")), &mut h);
        let got: Vec<(String, String)> =
            h.0.iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
        let want: Vec<(String, String)> = row
            .want
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got, want, "{}", row.reason);
    }
}

/// `outgoing` at an untrusted edge: every context header the client sent is gone, whatever
/// `propagators` lists; `baggage` per `untrusted_baggage`.
#[test]
fn untrusted_outgoing_rows() {
    let client = vec![
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "evil=1"),
        ("b3", "0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"),
        ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
        ("x-b3-spanid", "b7ad6b7169203331"),
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "1"),
        ("baggage", "k=v"),
        ("x-other", "kept"),
    ];
    let tp = format!("00-{TRACE}-{SPAN}-03");
    #[allow(clippy::type_complexity)]
    let rows: Vec<(Vec<Propagator>, UntrustedBaggage, Vec<(&str, String)>, &str)> = vec![
        (
            vec![P_TC],
            UntrustedBaggage::Drop,
            vec![("x-other", "kept".into()), ("traceparent", tp.clone())],
            "tracecontext only: both B3 forms and baggage removed too",
        ),
        (
            vec![P_B3],
            UntrustedBaggage::Drop,
            vec![
                ("x-other", "kept".into()),
                ("b3", format!("{TRACE}-{SPAN}-1")),
            ],
            "b3 only: traceparent and tracestate removed, not passed through",
        ),
        (
            vec![P_TC, P_B3M],
            UntrustedBaggage::Keep,
            vec![
                ("baggage", "k=v".into()),
                ("x-other", "kept".into()),
                ("traceparent", tp.clone()),
                ("x-b3-traceid", TRACE.into()),
                ("x-b3-spanid", SPAN.into()),
                ("x-b3-sampled", "1".into()),
            ],
            "untrusted_baggage: keep passes baggage on; the client's debug flag is gone",
        ),
    ];
    for (propagators, baggage, want, reason) in rows {
        let settings = Settings {
            propagators,
            trust: Trust::Untrusted,
            untrusted_baggage: baggage,
            ..Settings::default()
        };
        let mut h = Headers::new(&client);
        outgoing(&settings, &ctx(0x03, None), &mut h);
        let got: Vec<(String, String)> =
            h.0.iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        assert_eq!(got, want, "{reason}");
    }
}

struct FlagsRow {
    parent_flags: Option<u8>,
    recorded: bool,
    want: u8,
    reason: &'static str,
}

#[test]
fn outgoing_flag_rows() {
    for row in [
        FlagsRow {
            parent_flags: None,
            recorded: true,
            want: 0x03,
            reason: "§3.2.2.5.2 SHOULD set random on a trace id we generate: -03",
        },
        FlagsRow {
            parent_flags: None,
            recorded: false,
            want: 0x02,
            reason: "§3.2.2.5.2 our trace id, not sampled: -02",
        },
        FlagsRow {
            parent_flags: Some(0x03),
            recorded: true,
            want: 0x03,
            reason: "§3.2.2.5.2 MUST keep random when the trace id is kept: -03 stays -03",
        },
        FlagsRow {
            parent_flags: Some(0x02),
            recorded: false,
            want: 0x02,
            reason: "§3.2.2.5.2 -02 stays -02",
        },
        FlagsRow {
            parent_flags: Some(0x01),
            recorded: true,
            want: 0x01,
            reason: "§3.2.2.5.2 a parent without the flag: not claimed random",
        },
        FlagsRow {
            parent_flags: Some(0x09),
            recorded: true,
            want: 0x01,
            reason: "§3.2.2.5 unknown bits are not passed on",
        },
    ] {
        let parent = row.parent_flags.map(|f| ctx(f, None));
        assert_eq!(
            outgoing_flags(parent.as_ref(), row.recorded),
            row.want,
            "{}",
            row.reason
        );
    }
}

struct TrustRow {
    trust: Trust,
    headers: Vec<(&'static str, &'static str)>,
    parent: bool,
    links: usize,
    reason: &'static str,
}

#[test]
fn trust_rows() {
    for row in [
        TrustRow {
            trust: Trust::Trusted,
            headers: vec![("traceparent", TP)],
            parent: true,
            links: 0,
            reason: "trusted: continue the incoming context",
        },
        TrustRow {
            trust: Trust::Untrusted,
            headers: vec![("traceparent", TP)],
            parent: false,
            links: 1,
            reason: "untrusted: new trace, incoming context as a link",
        },
        TrustRow {
            trust: Trust::Untrusted,
            headers: vec![("traceparent", "garbage")],
            parent: false,
            links: 0,
            reason: "untrusted: an invalid context is not even linked",
        },
        TrustRow {
            trust: Trust::Untrusted,
            headers: vec![],
            parent: false,
            links: 0,
            reason: "untrusted: nothing incoming",
        },
        TrustRow {
            trust: Trust::Untrusted,
            headers: vec![
                ("traceparent", TP),
                ("b3", "0af7651916cd43dd8448eb211c80319c-e457b5a2e4d86bd1-1"),
                ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
                ("x-b3-sampled", "1"),
            ],
            parent: false,
            links: 3,
            reason: "untrusted: every format is read (B3 not listed too), each valid one linked",
        },
        TrustRow {
            trust: Trust::Untrusted,
            headers: vec![
                ("b3", "0af7651916cd43dd8448eb211c80319c-e457b5a2e4d86bd1-1"),
                ("x-b3-traceid", "0af7651916cd43dd8448eb211c80319c"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ],
            parent: false,
            links: 1,
            reason: "untrusted: the same context in both B3 forms is one link",
        },
    ] {
        let got = incoming(&[P_TC], row.trust, &Headers::new(&row.headers));
        assert_eq!(got.parent.is_some(), row.parent, "{}", row.reason);
        assert_eq!(got.links.len(), row.links, "{}", row.reason);
        if row.trust == Trust::Untrusted {
            assert_eq!(
                got.caller_sampled(),
                None,
                "{}: the caller decides nothing",
                row.reason
            );
        }
    }
}

#[test]
fn server_scheme_rows() {
    use trust::server_scheme;
    assert_eq!(
        server_scheme(Trust::Trusted, Some("https"), None),
        "https",
        "trusted: :scheme"
    );
    assert_eq!(
        server_scheme(Trust::Untrusted, Some("https"), None),
        "http",
        "untrusted: a plaintext connection is http whatever XFP said"
    );
    assert_eq!(
        server_scheme(Trust::Untrusted, Some("http"), Some("TLSv1.3")),
        "https",
        "untrusted: TLS connection"
    );
}

#[test]
fn response_header_rows() {
    use response::{header, ResponseTraceHeader::*};
    let c = ctx(0x03, Some("a=1"));
    assert_eq!(header(Off, &c), None);
    assert_eq!(
        header(Traceresponse, &c),
        Some(("traceresponse", format!("00-{TRACE}-{SPAN}-03"), true)),
        "Level 2 §5 traceresponse: traceparent's form, our span as child-id"
    );
    assert_eq!(
        header(ServerTiming, &c),
        Some((
            "server-timing",
            format!("traceparent;desc=\"00-{TRACE}-{SPAN}-03\""),
            false
        ))
    );
}

mod properties {
    use super::super::*;
    use super::testing::Headers;
    use proptest::prelude::*;

    /// Small case counts in `make test`; `make fuzz` runs these far longer (PROPTEST_CASES).
    fn cases() -> ProptestConfig {
        ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
        )
    }

    fn hex(n: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), n)
            .prop_map(|v| String::from_utf8(v).unwrap_or_default())
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn no_bytes_panic_any_parser(a in proptest::collection::vec(any::<u8>(), 0..300),
                                     b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_traceparent(&a);
            let _ = parse_tracestate(&[&a, &b]);
            let h = Headers(vec![
                ("traceparent".into(), a.clone()), ("tracestate".into(), b.clone()),
                ("b3".into(), a.clone()), ("x-b3-traceid".into(), a.clone()),
                ("x-b3-spanid".into(), b.clone()), ("x-b3-sampled".into(), b.clone()),
            ]);
            let _ = extract(&Propagator::ALL, &h);
            let _ = incoming(&Propagator::ALL, Trust::Trusted, &h);
            let _ = b3::sampling_only(&h);
            let _ = incoming(&Propagator::ALL, Trust::Untrusted, &h);
        }

        #[test]
        fn traceparent_parse_format_round_trips(t in hex(32), s in hex(16), flags in any::<u8>()) {
            let v = format!("00-{t}-{s}-{flags:02x}");
            if let Ok((trace_id, span_id, f)) = parse_traceparent(v.as_bytes()) {
                prop_assert_eq!(f, flags);
                let ctx = SpanContext::new(trace_id, span_id, f, None);
                let out = format_traceparent(&ctx);
                prop_assert_eq!(parse_traceparent(out.as_bytes()), Ok((trace_id, span_id, f & 0x03)));
                prop_assert_eq!(out, format!("00-{t}-{s}-{:02x}", flags & 0x03));
            } else {
                prop_assert!(t.bytes().all(|c| c == b'0') || s.bytes().all(|c| c == b'0'));
            }
        }

        #[test]
        fn tracestate_normalised_form_is_a_fixed_point(
            members in proptest::collection::vec(("[a-z0-9][a-z0-9_*/@-]{0,20}", "[!-+--<>-~]([ !-+--<>-~]{0,10}[!-+--<>-~])?"), 0..40)
        ) {
            let v: Vec<String> = members.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let joined = v.join(" , ");
            if let Ok(ts) = parse_tracestate(&[joined.as_bytes()]) {
                let again = parse_tracestate(&[ts.value.as_bytes()]);
                prop_assert_eq!(again, Ok(tracestate::Tracestate { value: ts.value.clone(), duplicates_dropped: 0 }));
            }
        }

        #[test]
        fn b3_format_extract_round_trips(t in hex(32), s in hex(16), sampled in any::<bool>()) {
            let c = SpanContext::new(
                crate::ids::TraceId::from_hex(&t).unwrap_or_default(),
                crate::ids::SpanId::from_hex(&s).unwrap_or_default(),
                u8::from(sampled),
                None,
            );
            prop_assume!(c.trace_id.is_valid() && c.span_id.is_valid());
            let mut h = Headers(Vec::new());
            b3::inject(&c, true, true, &mut h);
            prop_assert_eq!(b3::extract_single(&h), Ok(Some(c.clone())));
            prop_assert_eq!(b3::extract_multi(&h), Ok(Some(c)));
        }
    }
}
