//! Span status, `error.type`, and the CLIENT span events.

use super::*;

#[test]
fn status_rows() {
    /// What a span's status says: UNSET, or ERROR with this `error.type`.
    #[derive(Clone, Copy)]
    enum Want {
        Unset,
        Error(&'static str),
    }
    use Want::{Error, Unset};
    impl Want {
        /// (is ERROR, `error.type`)
        fn parts(self) -> (bool, Option<&'static str>) {
            match self {
                Unset => (false, None),
                Error(ty) => (true, Some(ty)),
            }
        }
    }
    struct Row {
        cluster: Option<&'static str>,
        done: Completion,
        server: Want,
        /// `None`: no CLIENT span.
        client: Option<Want>,
        reason: &'static str,
    }
    let cfg = config(GATEWAY);
    let timeout = Completion {
        status: 504,
        flags: 0x4,
        code_details: "upstream_response_timeout".into(),
        upstream_address: Some("10.0.0.7:8080".into()),
        ..answered(504)
    };
    let downstream_gone = Completion {
        status: 0,
        flags: 0x4000,
        code_details: "downstream_remote_disconnect".into(),
        upstream_address: Some("10.0.0.7:8080".into()),
        ..answered(0)
    };
    let legacy_no_details = Completion {
        code_details: String::new(),
        ..answered(200)
    };
    #[rustfmt::skip]
    let rows = [
        Row { cluster: Some("products"), done: answered(200), server: Unset, client: Some(Unset), reason: "200 via upstream" },
        Row { cluster: Some("products"), done: answered(302), server: Unset, client: Some(Unset), reason: "redirect" },
        Row { cluster: Some("products"), done: answered(404), server: Unset, client: Some(Error("404")), reason: "404: client error only" },
        Row { cluster: Some("products"), done: answered(500), server: Error("500"), client: Some(Error("500")), reason: "500: both" },
        Row { cluster: Some("products"), done: connection_failure(), server: Error("503"), client: Some(Error("connection_failure")), reason: "connection failure" },
        Row { cluster: Some("products"), done: timeout, server: Error("504"), client: Some(Error("timeout")), reason: "upstream timeout" },
        Row { cluster: Some("products"), done: downstream_gone, server: Error("_OTHER"), client: Some(Error("_OTHER")), reason: "downstream left before the response" },
        Row { cluster: Some("products"), done: legacy_no_details, server: Unset, client: Some(Unset), reason: "no code_details: responded from address and status" },
        Row { cluster: Some("products"), done: local_reply(200, "direct_response"), server: Unset, client: None, reason: "cluster but never attempted" },
        Row { cluster: Some("products"), done: local_reply(403, "rbac_access_denied_matched_policy[none]"), server: Unset, client: None, reason: "denied before the router" },
        Row { cluster: None, done: local_reply(200, "direct_response"), server: Unset, client: None, reason: "no cluster: direct response" },
        Row { cluster: None, done: local_reply(503, "no_healthy_upstream"), server: Error("503"), client: None, reason: "no cluster, local 503" },
    ];
    for Row {
        cluster,
        done,
        server: want_server,
        client: want_client,
        reason,
    } in rows
    {
        let (server_error, server_type) = want_server.parts();
        let r = run(&cfg, request("GET", "/api/products/p-1", cluster), &done);
        let server = r.server_span();
        assert_eq!(
            is_error(server),
            server_error,
            "{reason}: server status {:?}",
            server.status
        );
        if !server_error {
            assert_eq!(server.status, None, "{reason}: server UNSET");
        }
        assert_eq!(
            error_type(server).as_deref(),
            server_type,
            "{reason}: server error.type"
        );
        match (r.client(), want_client.map(Want::parts)) {
            (None, None) => {}
            (Some(c), Some((err, ty))) => {
                assert_eq!(is_error(c), err, "{reason}: client status {:?}", c.status);
                if !err {
                    assert_eq!(c.status, None, "{reason}: client UNSET");
                }
                assert_eq!(error_type(c).as_deref(), ty, "{reason}: client error.type");
            }
            (got, want) => panic!(
                "{reason}: CLIENT span {:?}, wanted {}",
                got.map(|s| &s.name),
                if want.is_some() { "one" } else { "none" }
            ),
        }
    }
}

#[test]
fn connection_failure_is_explained_on_the_client_span() {
    let r = run(
        &config(GATEWAY),
        request("GET", "/api/products/p-1", Some("products")),
        &connection_failure(),
    );
    let client = r.client_span();
    let status = client.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert!(
        status.message.contains("connection_failure"),
        "{}",
        status.message
    );
    assert_eq!(error_type(client).as_deref(), Some("connection_failure"));
    assert_eq!(attr_str(client, sc::ENVOY_RESPONSE_FLAGS), "UF");
    assert_eq!(
        attr(client, sc::HTTP_RESPONSE_STATUS_CODE),
        None,
        "the upstream sent no status; 503 is Envoy's"
    );
    assert_eq!(event_names(client), vec!["call.start", "exception"]);
    let ex = event(client, sc::EVENT_EXCEPTION);
    assert_eq!(ex.time_unix_nano, END);
    assert_eq!(
        attr_in(&ex.attributes, sc::EXCEPTION_TYPE),
        Some(Val::str("connection_failure"))
    );
    assert_eq!(
        attr_in(&ex.attributes, sc::ENVOY_RESPONSE_FLAGS),
        Some(Val::str("UF"))
    );
    assert_eq!(
        attr_in(&ex.attributes, sc::ENVOY_RESPONSE_CODE_DETAILS),
        Some(Val::str(
            "upstream_reset_before_response_started{connection_failure}"
        ))
    );
    assert!(attr_in(&ex.attributes, sc::EXCEPTION_MESSAGE).is_some());

    let server = r.server_span();
    assert!(is_error(server));
    assert_eq!(error_type(server).as_deref(), Some("503"));
    assert_eq!(
        attr(server, sc::HTTP_RESPONSE_STATUS_CODE),
        Some(Val::Int(503))
    );
}

#[test]
fn no_cluster_means_server_only_and_nothing_injected() {
    let host = request("GET", "/healthz", None)
        .header("traceparent", PARENT)
        .header("tracestate", "congo=t61rcWkgMzE");
    let r = run(&config(GATEWAY), host, &local_reply(200, "direct_response"));
    assert_eq!(r.kinds(), vec![SpanKind::Server as i32]);
    assert!(r.req.client.is_none());
    assert!(
        r.host.set_calls.is_empty(),
        "no upstream, no injection: {:?}",
        r.host.set_calls
    );
    assert_eq!(
        r.host.header_values("traceparent"),
        vec![PARENT.to_string()],
        "headers untouched"
    );
    assert_eq!(hex(&r.server_span().parent_span_id), PARENT_SPAN);
}

#[test]
fn client_event_rows() {
    struct Row {
        done: Completion,
        events: &'static [&'static str],
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { done: answered(200), events: &["call.start", "call.complete"], reason: "answered" },
        Row { done: answered(404), events: &["call.start", "call.complete", "exception"], reason: "answered with an error" },
        Row { done: answered(503), events: &["call.start", "call.complete", "exception"], reason: "upstream's own 503" },
        Row { done: connection_failure(), events: &["call.start", "exception"], reason: "no answer" },
    ];
    for Row {
        done,
        events: want,
        reason,
    } in rows
    {
        let r = run(
            &config(GATEWAY),
            request("GET", "/api/products/p-1", Some("products")),
            &done,
        );
        let client = r.client_span();
        assert_eq!(event_names(client), want, "{reason}");
        let start_ev = event(client, sc::EVENT_CALL_START);
        assert_eq!(start_ev.time_unix_nano, START, "{reason}");
        assert_eq!(
            attr_in(&start_ev.attributes, sc::SERVICE_PEER_NAME),
            Some(Val::str("PRODUCTS_SERVICE")),
            "{reason}"
        );
        if want.contains(&"call.complete") {
            let done_ev = event(client, sc::EVENT_CALL_COMPLETE);
            assert_eq!(done_ev.time_unix_nano, END, "{reason}");
            assert_eq!(
                attr_in(&done_ev.attributes, sc::HTTP_RESPONSE_STATUS_CODE),
                Some(Val::Int(i64::from(done.status))),
                "{reason}"
            );
        }
        if want.contains(&"exception") {
            let ex = event(client, sc::EVENT_EXCEPTION);
            assert_eq!(
                attr_in(&ex.attributes, sc::EXCEPTION_TYPE).map(Some),
                Some(error_type(client).map(Val::Str)),
                "{reason}: exception.type == error.type"
            );
        }
        assert!(
            r.server_span().events.is_empty(),
            "{reason}: SERVER has no events"
        );
    }
}
