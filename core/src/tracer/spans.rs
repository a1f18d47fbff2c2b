//! Span building, pure: an [`ActiveRequest`] and its [`Completion`] become the finished
//! SERVER and CLIENT spans ([`finish`]), written straight into OTLP protobuf bytes with
//! [`SpanWriter`] (no intermediate structs; see `otlp::writer`). No host access; names,
//! attributes, events and status are decided here.

use super::completion::{Completion, VIA_UPSTREAM};

use super::request::{ActiveRequest, ClientCall};
use crate::config::limits::cap_tracestate;
use crate::config::{Config, Semconv};
use crate::host::Stats;
use crate::ids::SpanId;
use crate::metrics::Counter;
use crate::otlp::writer::{Attrs, Head, Kind, LimitHits, Limits, SpanWriter};
use crate::otlp::SpanFlags;
use crate::propagation::{SpanContext, FLAG_RANDOM, FLAG_SAMPLED};
use crate::route::Route;
use crate::semconv as sc;
use crate::status::{self, Outcome};
use crate::url::{client_url, split_host_port, strip_query};

/// OTLP span flags of every finished span: bits 0-7 the W3C trace-flags (a finished span was
/// recorded, so sampled; the random-trace-id flag as propagated, Level 2 §3.2.2.5.2) and bit 8,
/// "whether the parent is remote is known".
fn base_flags(req: &ActiveRequest) -> u32 {
    SpanFlags::ContextHasIsRemoteMask as u32
        | u32::from(FLAG_SAMPLED | (req.trace_flags & FLAG_RANDOM))
}

/// A span link to an incoming context that was not continued (`trust: untrusted`): its ids,
/// tracestate, sampled and random flags, and "the linked span is remote" (bits 8 and 9).
fn write_link(config: &Config, w: &mut SpanWriter<'_>, ctx: &SpanContext) {
    let flags = SpanFlags::ContextHasIsRemoteMask as u32
        | SpanFlags::ContextIsRemoteMask as u32
        | u32::from(ctx.flags & (FLAG_SAMPLED | FLAG_RANDOM));
    w.link(
        &ctx.trace_id.0,
        &ctx.span_id.0,
        cap_tracestate(
            ctx.trace_state.as_deref().unwrap_or(""),
            config.span_limits.tracestate_length,
        ),
        flags,
    );
}

/// `span_limits` as the span writer takes them.
fn writer_limits(config: &Config) -> Limits {
    let l = &config.span_limits;
    Limits {
        attribute_value_length: l.attribute_value_length,
        attribute_count: l.attribute_count,
        event_count: l.event_count,
        link_count: l.link_count,
    }
}

/// Counts what the span limits did to one span (`span_limits_applied`).
fn count_hits(stats: &dyn Stats, hits: LimitHits) {
    let n = u64::from(hits.truncated) + u64::from(hits.dropped);
    if n > 0 {
        stats.add(Counter::SpanLimitsApplied, n);
    }
}
/// Bit 9: the parent is remote (it came from another process).
const PARENT_IS_REMOTE: u32 = SpanFlags::ContextIsRemoteMask as u32;

/// Log phase: appends the finished spans of the request to `out` as encoded
/// `ScopeSpans.spans` fields; returns how many (none when not sampled, unless the request
/// failed and `sampler_keep_errors` is on).
pub fn finish(
    config: &Config,
    req: &ActiveRequest,
    done: &Completion,
    stats: &dyn Stats,
    out: &mut Vec<u8>,
) -> usize {
    if !req.recorded {
        // With `sampler_keep_errors` the decision is final only now: a request is counted
        // once, as kept or as not sampled (start leaves the count to here).
        if !(config.keep_errors && done.is_failure()) {
            if config.keep_errors {
                stats.add(Counter::RequestsNotSampled, 1);
            }
            return 0;
        }
        stats.add(Counter::RequestsKeptForError, 1);
    }
    let mut n = 0;
    let route = req.route.and_then(|i| config.routes.routes.get(i));
    if let Some(server_id) = req.server_span_id {
        let hits = server_span(
            config,
            req,
            done,
            server_id,
            route.map(|r| r.template.as_str()),
            out,
        );
        count_hits(stats, hits);
        n += 1;
    }
    if let Some(call) = &req.client {
        // A CLIENT span only for a call that was attempted: the upstream answered, or it was
        // tried and failed. A request stopped before the router (say, by another filter) has none.
        let responded = done.responded();
        let attempted =
            responded || status::upstream_failed(done.flags) || done.upstream_address.is_some();
        if attempted {
            let parent = req.server_span_id.or(req.parent_span_id);
            let hits = client_span(config, req, done, responded, call, parent, route, out);
            count_hits(stats, hits);
            n += 1;
        }
    }
    n
}

fn method_attrs(config: &Config, req: &ActiveRequest, a: &mut Attrs<'_>) {
    if config.semconv.stable() {
        a.str(sc::HTTP_REQUEST_METHOD, &req.method.value);
    }
    if config.semconv.legacy() {
        a.str(
            sc::LEGACY_HTTP_METHOD,
            req.method.original.as_deref().unwrap_or(&req.method.value),
        );
    }
    if let Some(orig) = &req.method.original {
        if config.semconv.stable() {
            a.str(sc::HTTP_REQUEST_METHOD_ORIGINAL, orig);
        }
    }
}

/// `http.response.status_code` and/or the legacy `http.status_code`.
fn status_attrs(config: &Config, status: u16, a: &mut Attrs<'_>) {
    if config.semconv.stable() {
        a.int(sc::HTTP_RESPONSE_STATUS_CODE, i64::from(status));
    }
    if config.semconv.legacy() {
        a.int(sc::LEGACY_HTTP_STATUS_CODE, i64::from(status));
    }
}

/// `http.{request,response}.header.<name>` as string arrays (semconv).
fn header_attrs(
    prefix: &str,
    names: &[String],
    captured: &[(usize, Vec<String>)],
    a: &mut Attrs<'_>,
) {
    for (i, values) in captured {
        if let Some(name) = names.get(*i) {
            let values: Vec<&str> = values.iter().map(String::as_str).collect();
            a.str_array_key(&[prefix, name], &values);
        }
    }
}

/// Envoy's explanation of a response it made or changed: response flags, and code details
/// other than `via_upstream`.
fn envoy_attrs(done: &Completion, flags: &str, a: &mut Attrs<'_>) {
    if !flags.is_empty() {
        a.str(sc::ENVOY_RESPONSE_FLAGS, flags);
    }
    if !done.code_details.is_empty() && done.code_details != VIA_UPSTREAM {
        a.str(sc::ENVOY_RESPONSE_CODE_DETAILS, &done.code_details);
    }
}

fn server_span(
    config: &Config,
    req: &ActiveRequest,
    done: &Completion,
    id: SpanId,
    route: Option<&str>,
    out: &mut Vec<u8>,
) -> LimitHits {
    let method = req.method.for_name();
    let name: &[&str] = match route {
        Some(r) => &[method, r],
        None => &[method],
    };
    let mut w = SpanWriter::begin(
        out,
        &Head {
            trace_id: &req.trace_id.0,
            span_id: &id.0,
            trace_state: cap_tracestate(
                req.trace_state.as_deref().unwrap_or(""),
                config.span_limits.tracestate_length,
            ),
            parent_span_id: req.parent_span_id.as_ref().map(|p| &p.0),
            name,
            kind: Kind::Server,
            start_ns: req.start_ns,
            end_ns: done.end_ns.max(req.start_ns),
        },
    )
    .with_limits(writer_limits(config));
    let outcome = status::server_outcome(done.status);
    let flags = status::flags_to_string(done.flags);
    let mut a = w.attrs();
    if config.semconv.legacy() {
        a.str(sc::SPAN_KIND, sc::SPAN_KIND_SERVER);
    }
    method_attrs(config, req, &mut a);
    if config.semconv.stable() {
        a.str(sc::URL_PATH, &req.path);
        a.str(sc::URL_SCHEME, &req.scheme);
    }
    if config.semconv.legacy() {
        a.str_parts(
            sc::LEGACY_HTTP_URL,
            &[&req.scheme, "://", &req.authority, &req.path],
        );
    }
    if let Some(r) = route {
        a.str(sc::HTTP_ROUTE, r);
    }
    if !req.authority.is_empty() {
        let (h, p) = split_host_port(&req.authority);
        a.str(sc::SERVER_ADDRESS, h);
        let default_port = if req.scheme == "https" { 443 } else { 80 };
        a.int(sc::SERVER_PORT, p.unwrap_or(default_port));
    }
    if let Some(ua) = &req.user_agent {
        a.str(sc::USER_AGENT_ORIGINAL, ua);
    }
    if let Some(c) = &done.client_address {
        a.str(sc::CLIENT_ADDRESS, split_host_port(c).0);
    }
    if let Some(v) = done
        .protocol
        .as_deref()
        .and_then(|p| p.strip_prefix("HTTP/"))
    {
        a.str(sc::NETWORK_PROTOCOL_VERSION, v);
    }
    if done.status != 0 {
        status_attrs(config, done.status, &mut a);
    }
    header_attrs(
        sc::HTTP_REQUEST_HEADER_PREFIX,
        &config.request_headers,
        &req.request_headers,
        &mut a,
    );
    header_attrs(
        sc::HTTP_RESPONSE_HEADER_PREFIX,
        &config.response_headers,
        &done.response_headers,
        &mut a,
    );
    envoy_attrs(done, &flags, &mut a);
    if let Some(t) = &outcome.error_type {
        a.str(sc::ERROR_TYPE, t);
    }
    for link in &req.links {
        write_link(config, &mut w, link);
    }
    finish_status(config, &mut w, &outcome, done.status != 0);
    w.finish(
        base_flags(req)
            | if req.parent_span_id.is_some() {
                PARENT_IS_REMOTE
            } else {
                0
            },
    )
}

/// ERROR status with its description; under `semconv: stable` the description stays empty
/// when an HTTP status code on the span already says it all (semconv).
fn finish_status(config: &Config, w: &mut SpanWriter<'_>, o: &Outcome, has_status_code: bool) {
    if o.is_error {
        let says_it_all = has_status_code && config.semconv == Semconv::Stable;
        w.error_status(if says_it_all { "" } else { &o.message });
    }
}

#[allow(clippy::too_many_arguments)]
fn client_span(
    config: &Config,
    req: &ActiveRequest,
    done: &Completion,
    responded: bool,
    call: &ClientCall,
    parent: Option<SpanId>,
    route: Option<&Route>,
    out: &mut Vec<u8>,
) -> LimitHits {
    let label = call.target.service_label();
    let upstream_path = done.upstream_path.as_deref().map(strip_query);
    let template = config.routes.upstream_template(route, upstream_path);
    let method = req.method.for_name();
    let name: &[&str] = match template {
        Some(t) => &[label, method, t.as_str()],
        None => &[label, method],
    };
    // Never later than the SERVER span's end, so the CLIENT span nests inside it.
    let end_ns = req
        .response_end_ns
        .map_or(done.end_ns, |t| t.min(done.end_ns))
        .max(req.start_ns);
    let mut w = SpanWriter::begin(
        out,
        &Head {
            trace_id: &req.trace_id.0,
            span_id: &call.span_id.0,
            trace_state: cap_tracestate(
                req.trace_state.as_deref().unwrap_or(""),
                config.span_limits.tracestate_length,
            ),
            parent_span_id: parent.as_ref().map(|p| &p.0),
            name,
            kind: Kind::Client,
            start_ns: req.start_ns,
            end_ns,
        },
    )
    .with_limits(writer_limits(config));
    let outcome = status::client_outcome(done.status, responded, done.flags, &done.code_details);
    let flags = status::flags_to_string(done.flags);
    let service = call.target.service.as_str();
    let mut a = w.attrs();
    if config.semconv.legacy() {
        a.str(sc::SPAN_KIND, sc::SPAN_KIND_CLIENT);
        // The seed's CLIENT spans name their target service in `service.name`.
        a.str(sc::SERVICE_NAME, service);
    }
    a.str(sc::SERVICE_PEER_NAME, service);
    a.str(sc::ENVOY_CLUSTER, &call.cluster);
    method_attrs(config, req, &mut a);
    // From the upstream side (scheme of the upstream connection, authority as called), not
    // the downstream Host and X-Forwarded-Proto.
    let url = client_url(
        done.upstream_tls,
        done.upstream_authority.as_deref(),
        &req.authority,
        done.upstream_address.as_deref(),
        done.upstream_path.as_deref().unwrap_or(&req.path),
    );
    if config.semconv.stable() {
        a.str(sc::URL_FULL, &url);
    }
    if config.semconv.legacy() {
        a.str(sc::LEGACY_HTTP_URL, &url);
    }
    if let Some(t) = template {
        a.str(sc::URL_TEMPLATE, t.as_str());
    }
    if let Some(r) = route {
        a.str(sc::HTTP_ROUTE, r.template.as_str());
    }
    if let Some(addr) = &done.upstream_address {
        let (h, p) = split_host_port(addr);
        a.str(sc::SERVER_ADDRESS, h);
        a.str(sc::NETWORK_PEER_ADDRESS, h);
        if let Some(p) = p {
            a.int(sc::SERVER_PORT, p);
            a.int(sc::NETWORK_PEER_PORT, p);
        }
    }
    if let Some(d) = &call.target.durable_object {
        a.str(sc::DURABLE_OBJECT_NAME, &d.name);
        match &call.durable_object_id {
            Some(id) => a.str(sc::DURABLE_OBJECT_ID, id),
            // Say so on the span (and in `durable_object_id_missing`), not just leave it out.
            None => a.bool(sc::DURABLE_OBJECT_ID_MISSING, true),
        }
    }
    super::attempt::write_attrs(call, &mut a);
    if responded {
        status_attrs(config, done.status, &mut a);
    }
    if !flags.is_empty() {
        a.str(sc::ENVOY_RESPONSE_FLAGS, &flags);
    }
    if let Some(t) = &outcome.error_type {
        a.str(sc::ERROR_TYPE, t);
    }

    w.event(req.start_ns, sc::EVENT_CALL_START, |a| {
        a.str(sc::SERVICE_PEER_NAME, service)
    });
    if responded {
        w.event(end_ns, sc::EVENT_CALL_COMPLETE, |a| {
            a.int(sc::HTTP_RESPONSE_STATUS_CODE, i64::from(done.status))
        });
    }
    if outcome.is_error {
        w.event(end_ns, sc::EVENT_EXCEPTION, |a| {
            a.str(
                sc::EXCEPTION_TYPE,
                outcome.error_type.as_deref().unwrap_or_default(),
            );
            a.str(sc::EXCEPTION_MESSAGE, &outcome.message);
            if !flags.is_empty() {
                a.str(sc::ENVOY_RESPONSE_FLAGS, &flags);
            }
            if !done.code_details.is_empty() {
                a.str(sc::ENVOY_RESPONSE_CODE_DETAILS, &done.code_details);
            }
        });
    }
    if req.server_span_id.is_none() {
        for link in &req.links {
            write_link(config, &mut w, link);
        }
    }
    finish_status(config, &mut w, &outcome, responded);
    w.finish(
        base_flags(req)
            | if req.server_span_id.is_none() && parent.is_some() {
                PARENT_IS_REMOTE
            } else {
                0
            },
    )
}
