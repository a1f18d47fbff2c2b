//! Span building, pure: an [`ActiveRequest`] and its [`Completion`] become the finished
//! SERVER and CLIENT spans ([`finish`]). No host access; names, attributes, events and status
//! are decided here.

use super::completion::Completion;
use super::start::{ActiveRequest, ClientCall};
use crate::config::Config;
use crate::ids::SpanId;
use crate::otlp::{kv_int, kv_str, Event, Span, SpanKind, Status, StatusCode};
use crate::propagation::{self, FLAG_SAMPLED};
use crate::semconv as sc;
use crate::status;
use crate::url::{split_host_port, strip_query};

/// Log phase: the finished spans of the request (none when not sampled).
pub fn finish(config: &Config, req: &ActiveRequest, done: &Completion) -> Vec<Span> {
    if !req.recorded {
        return Vec::new();
    }
    let mut spans = Vec::with_capacity(2);
    let route = req.route.and_then(|i| config.routes.routes.get(i));
    if let Some(server_id) = req.server_span_id {
        spans.push(server_span(
            req,
            done,
            server_id,
            route.map(|r| r.template.as_str()),
        ));
    }
    if let Some(call) = &req.client {
        // A CLIENT span only for a call that was attempted: the upstream answered, or it was
        // tried and failed. A request stopped before the router (say, by another filter) has none.
        let responded = done.responded();
        let attempted =
            responded || status::upstream_failed(done.flags) || done.upstream_address.is_some();
        if attempted {
            let parent = req.server_span_id.or(req.parent_span_id);
            spans.push(client_span(
                config, req, done, responded, call, parent, route,
            ));
        }
    }
    spans
}

fn base_span(
    req: &ActiveRequest,
    span_id: SpanId,
    parent: Option<SpanId>,
    name: String,
    kind: SpanKind,
    end_ns: u64,
) -> Span {
    Span {
        trace_id: req.trace_id.0.to_vec(),
        span_id: span_id.0.to_vec(),
        parent_span_id: parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        trace_state: req.trace_state.clone().unwrap_or_default(),
        name,
        kind: kind as i32,
        start_time_unix_nano: req.start_ns,
        end_time_unix_nano: end_ns.max(req.start_ns),
        // OTLP span flags: bits 0-7 the W3C trace-flags (every finished span is recorded,
        // so sampled); bit 8: the parent's remoteness is known (set by callers, bit 9).
        flags: 0x100 | u32::from(FLAG_SAMPLED | (req.trace_flags & propagation::FLAG_RANDOM)),
        ..Default::default()
    }
}

fn set_status(span: &mut Span, o: &status::Outcome) {
    if o.is_error {
        span.status = Some(Status {
            code: StatusCode::Error as i32,
            message: o.message.clone(),
        });
    }
}

fn method_attrs(
    req: &ActiveRequest,
    attrs: &mut Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
) {
    attrs.push(kv_str(sc::HTTP_REQUEST_METHOD, req.method.value.clone()));
    attrs.push(kv_str(
        sc::LEGACY_HTTP_METHOD,
        req.method
            .original
            .clone()
            .unwrap_or_else(|| req.method.value.clone()),
    ));
    if let Some(orig) = &req.method.original {
        attrs.push(kv_str(sc::HTTP_REQUEST_METHOD_ORIGINAL, orig.clone()));
    }
}

fn server_span(req: &ActiveRequest, done: &Completion, id: SpanId, route: Option<&str>) -> Span {
    let name = match route {
        Some(r) => format!("{} {}", req.method.for_name(), r),
        None => req.method.for_name().to_string(),
    };
    let mut span = base_span(
        req,
        id,
        req.parent_span_id,
        name,
        SpanKind::Server,
        done.end_ns,
    );
    // OTLP span flags: bit 8 "has remote-parent info", bit 9 "parent is remote".
    span.flags |= if req.parent_span_id.is_some() {
        0x200
    } else {
        0
    };
    span.links
        .extend(req.link.as_ref().map(propagation::trust::otlp_link));
    let a = &mut span.attributes;
    a.push(kv_str(sc::SPAN_KIND, sc::SPAN_KIND_SERVER));
    method_attrs(req, a);
    a.push(kv_str(sc::URL_PATH, req.path.clone()));
    a.push(kv_str(sc::URL_SCHEME, req.scheme.clone()));
    a.push(kv_str(
        sc::LEGACY_HTTP_URL,
        format!("{}://{}{}", req.scheme, req.authority, req.path),
    ));
    if let Some(r) = route {
        a.push(kv_str(sc::HTTP_ROUTE, r));
    }
    if !req.authority.is_empty() {
        let (h, p) = split_host_port(&req.authority);
        a.push(kv_str(sc::SERVER_ADDRESS, h));
        let default_port = if req.scheme == "https" { 443 } else { 80 };
        a.push(kv_int(sc::SERVER_PORT, p.unwrap_or(default_port)));
    }
    if let Some(ua) = &req.user_agent {
        a.push(kv_str(sc::USER_AGENT_ORIGINAL, ua.clone()));
    }
    if let Some(c) = &req.client_address {
        a.push(kv_str(sc::CLIENT_ADDRESS, split_host_port(c).0));
    }
    if let Some(v) = req
        .protocol
        .as_deref()
        .and_then(|p| p.strip_prefix("HTTP/"))
    {
        a.push(kv_str(sc::NETWORK_PROTOCOL_VERSION, v));
    }
    if done.status != 0 {
        a.push(kv_int(
            sc::HTTP_RESPONSE_STATUS_CODE,
            i64::from(done.status),
        ));
        a.push(kv_int(sc::LEGACY_HTTP_STATUS_CODE, i64::from(done.status)));
    }
    let outcome = status::server_outcome(done.status);
    if let Some(t) = &outcome.error_type {
        a.push(kv_str(sc::ERROR_TYPE, t.clone()));
    }
    set_status(&mut span, &outcome);
    span
}

fn client_span(
    config: &Config,
    req: &ActiveRequest,
    done: &Completion,
    responded: bool,
    call: &ClientCall,
    parent: Option<SpanId>,
    route: Option<&crate::route::Route>,
) -> Span {
    let label = call.target.service_label();
    let upstream_path = done.upstream_path.as_deref().map(strip_query);
    let template = config.routes.upstream_template(route, upstream_path);
    let name = match template {
        Some(t) => format!("{label} {} {}", req.method.for_name(), t.as_str()),
        None => format!("{label} {}", req.method.for_name()),
    };
    // Never later than the SERVER span's end, so the CLIENT span nests inside it.
    let end_ns = req
        .response_end_ns
        .map_or(done.end_ns, |t| t.min(done.end_ns));
    let mut span = base_span(req, call.span_id, parent, name, SpanKind::Client, end_ns);
    span.flags |= if req.server_span_id.is_none() && parent.is_some() {
        0x200
    } else {
        0
    };
    if req.server_span_id.is_none() {
        span.links
            .extend(req.link.as_ref().map(propagation::trust::otlp_link));
    }
    let outcome = status::client_outcome(done.status, responded, done.flags, &done.code_details);
    let a = &mut span.attributes;
    a.push(kv_str(sc::SPAN_KIND, sc::SPAN_KIND_CLIENT));
    a.push(kv_str(sc::SERVICE_NAME, call.target.service.clone()));
    a.push(kv_str(sc::PEER_SERVICE, call.target.service.clone()));
    a.push(kv_str(sc::ENVOY_CLUSTER, call.cluster.clone()));
    method_attrs(req, a);
    let url = crate::url::client_url(
        done.upstream_tls,
        done.upstream_authority.as_deref(),
        &req.authority,
        done.upstream_address.as_deref(),
        done.upstream_path.as_deref().unwrap_or(&req.path),
    );
    a.push(kv_str(sc::URL_FULL, url.clone()));
    a.push(kv_str(sc::LEGACY_HTTP_URL, url));
    if let Some(t) = template {
        a.push(kv_str(sc::URL_TEMPLATE, t.as_str()));
    }
    if let Some(r) = route {
        a.push(kv_str(sc::HTTP_ROUTE, r.template.as_str()));
    }
    if let Some(addr) = &done.upstream_address {
        let (h, p) = split_host_port(addr);
        a.push(kv_str(sc::SERVER_ADDRESS, h));
        a.push(kv_str(sc::NETWORK_PEER_ADDRESS, h));
        if let Some(p) = p {
            a.push(kv_int(sc::SERVER_PORT, p));
            a.push(kv_int(sc::NETWORK_PEER_PORT, p));
        }
    }
    if let Some(d) = &call.target.durable_object {
        a.push(kv_str(sc::DURABLE_OBJECT_NAME, d.name.clone()));
        if let Some(id) = &call.durable_object_id {
            a.push(kv_str(sc::DURABLE_OBJECT_ID, id.clone()));
        }
    }
    if responded {
        a.push(kv_int(
            sc::HTTP_RESPONSE_STATUS_CODE,
            i64::from(done.status),
        ));
        a.push(kv_int(sc::LEGACY_HTTP_STATUS_CODE, i64::from(done.status)));
    }
    let flags = status::flags_to_string(done.flags);
    if !flags.is_empty() {
        a.push(kv_str(sc::ENVOY_RESPONSE_FLAGS, flags.clone()));
    }
    if let Some(t) = &outcome.error_type {
        a.push(kv_str(sc::ERROR_TYPE, t.clone()));
    }

    span.events.push(Event {
        time_unix_nano: req.start_ns,
        name: sc::EVENT_CALL_START.into(),
        attributes: vec![kv_str(sc::PEER_SERVICE, call.target.service.clone())],
        ..Default::default()
    });
    if responded {
        span.events.push(Event {
            time_unix_nano: span.end_time_unix_nano,
            name: sc::EVENT_CALL_COMPLETE.into(),
            attributes: vec![kv_int(
                sc::HTTP_RESPONSE_STATUS_CODE,
                i64::from(done.status),
            )],
            ..Default::default()
        });
    }
    if outcome.is_error {
        let mut attrs = vec![
            kv_str(
                sc::EXCEPTION_TYPE,
                outcome.error_type.clone().unwrap_or_default(),
            ),
            kv_str(sc::EXCEPTION_MESSAGE, outcome.message.clone()),
        ];
        if !flags.is_empty() {
            attrs.push(kv_str(sc::ENVOY_RESPONSE_FLAGS, flags));
        }
        if !done.code_details.is_empty() {
            attrs.push(kv_str(
                sc::ENVOY_RESPONSE_CODE_DETAILS,
                done.code_details.clone(),
            ));
        }
        span.events.push(Event {
            time_unix_nano: span.end_time_unix_nano,
            name: sc::EVENT_EXCEPTION.into(),
            attributes: attrs,
            ..Default::default()
        });
    }
    set_status(&mut span, &outcome);
    span
}
