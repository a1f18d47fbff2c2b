//! Config parsing and validation: every refusal names its field and value.
use super::*;
use std::time::Duration;

fn env(name: &str) -> Option<String> {
    match name {
        "HONEYCOMB_API_KEY" => Some("hc-secret-123".into()),
        "SERVICE_NAME" => Some("from-env".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

fn parse_str(s: &str) -> Result<Config, ConfigError> {
    parse(s.as_bytes(), &env)
}

const MINIMAL: &str = r#"{"exporter": {"cluster": "otel"}}"#;

#[test]
fn defaults_are_the_named_constants() {
    let c = parse_str(MINIMAL).unwrap();
    assert_eq!(c.mode, Mode::Gateway);
    assert_eq!(c.sampler, Sampler::ParentBasedAlwaysOn);
    assert_eq!(c.service_name, DEFAULT_SERVICE_NAME);
    assert_eq!(c.exporter.path, DEFAULT_EXPORTER_PATH);
    assert_eq!(
        c.exporter.authority, "otel",
        "authority defaults to the cluster name"
    );
    assert_eq!(
        c.exporter.timeout,
        Duration::from_millis(DEFAULT_EXPORTER_TIMEOUT_MS)
    );
    assert_eq!(
        c.exporter.flush_interval,
        Duration::from_millis(DEFAULT_FLUSH_INTERVAL_MS)
    );
    assert_eq!(
        c.exporter.max_export_batch_size,
        DEFAULT_MAX_EXPORT_BATCH_SIZE
    );
    assert_eq!(c.exporter.max_queue_bytes, DEFAULT_MAX_QUEUE_BYTES);
    assert_eq!(c.exporter.retry, RetryConfig::default());
    assert_eq!(c.exporter.compression, DEFAULT_COMPRESSION);
    assert_eq!(c.exporter.encoding, DEFAULT_ENCODING);
    assert!(c.routes.routes.is_empty());
    assert_eq!(
        c.cluster_target("auth").service,
        "auth",
        "unmapped cluster is named after itself"
    );
}

#[test]
fn propagation_defaults_keep_todays_behaviour() {
    let c = parse_str(MINIMAL).unwrap();
    assert_eq!(c.propagation, crate::propagation::Settings::default());
    assert_eq!(
        c.propagation.propagators,
        vec![crate::propagation::Propagator::TraceContext]
    );
    assert_eq!(c.propagation.trust, crate::propagation::Trust::Trusted);
    assert_eq!(
        c.propagation.response_trace_header,
        crate::propagation::ResponseTraceHeader::Off
    );
    let c = parse_str(
        r#"{"propagators": ["b3multi", "tracecontext", "b3"], "trust": "untrusted",
            "response_trace_header": "server_timing", "exporter": {"cluster": "otel"}}"#,
    )
    .unwrap();
    use crate::propagation::Propagator::*;
    assert_eq!(c.propagation.propagators, vec![B3Multi, TraceContext, B3]);
    assert_eq!(c.propagation.trust, crate::propagation::Trust::Untrusted);
    assert_eq!(
        c.propagation.response_trace_header,
        crate::propagation::ResponseTraceHeader::ServerTiming
    );
}

#[test]
fn full_config() {
    let c = parse_str(
        r#"{
          "mode": "sidecar_outbound",
          "service_name": "${SERVICE_NAME:-x}",
          "resource_attributes": {"deployment.environment.name": "${DEPLOY_ENV:-demo}"},
          "sampler": "always_on",
          "routes": [{"template": "/api/cart/:cartId/add", "upstream_template": "/cart/add"}],
          "clusters": {
            "auth": {"service": "AUTH_SERVICE"},
            "cart": {"durable_object": {"name": "CartDurableObject", "id": {"route_param": "cartId"}}}
          },
          "exporter": {"cluster": "otel", "authority": "collector", "path": "/otlp/v1/traces",
                       "headers": {"x-honeycomb-team": "${HONEYCOMB_API_KEY}"},
                       "timeout_ms": 100, "flush_interval_ms": 50, "max_export_batch_size": 10, "max_queue_bytes": 100000,
                       "compression": "gzip", "encoding": "json",
                       "retry": {"initial_backoff_ms": 10, "multiplier": 2.5, "max_backoff_ms": 20, "max_elapsed_ms": 30}}
        }"#,
    )
    .unwrap();
    assert_eq!(c.mode, Mode::SidecarOutbound);
    assert_eq!(c.exporter.max_queue_bytes, 100_000);
    assert_eq!(c.exporter.compression, Compression::Gzip);
    assert_eq!(c.exporter.encoding, Encoding::Json);
    assert_eq!(
        c.exporter.retry,
        RetryConfig {
            enabled: true,
            initial_backoff: Duration::from_millis(10),
            multiplier: 2.5,
            max_backoff: Duration::from_millis(20),
            max_elapsed: Duration::from_millis(30),
        }
    );
    assert_eq!(c.service_name, "from-env");
    assert_eq!(
        c.resource_attributes,
        vec![("deployment.environment.name".into(), "demo".into())]
    );
    assert_eq!(c.cluster_target("auth").service, "AUTH_SERVICE");
    let cart = c.cluster_target("cart");
    assert_eq!(
        cart.durable_object.clone().unwrap().id,
        DurableObjectId::RouteParam("cartId".into())
    );
    assert_eq!(c.exporter.headers[0].1.expose(), "hc-secret-123");
    assert!(
        !format!("{c:?}").contains("hc-secret-123"),
        "secret leaked through Debug"
    );
}

#[test]
fn error_messages() {
    let mut failures = Vec::new();
    for (json, want, reason) in [
        ("", "invalid gateway-tracing configuration: configuration: is empty; at least {\"exporter\": {\"cluster\": \"...\"}} is required", "empty"),
        ("{}", "invalid gateway-tracing configuration: configuration: missing field `exporter` at line 1 column 2", "no exporter"),
        (r#"{"exporter":{"cluster":"otel"},"colour":"red"}"#, "invalid gateway-tracing configuration: colour: unknown field `colour`, expected one of `mode`, `client_spans`, `service_name`, `resource_attributes`, `sampler`, `sampler_ratio`, `sampler_keep_errors`, `semconv`, `request_headers`, `response_headers`, `redact_headers`, `access_log_ids`, `call_metrics`, `routes`, `clusters`, `exporter`, `propagators`, `trust`, `untrusted_baggage`, `response_trace_header`, `span_limits` at line 1 column 39", "unknown top-level field"),
        (r#"{"exporter":{"cluster":"otel","timeout":5}}"#, "invalid gateway-tracing configuration: exporter.timeout: unknown field `timeout`, expected one of `cluster`, `authority`, `path`, `headers`, `timeout_ms`, `flush_interval_ms`, `max_export_batch_size`, `max_export_bytes`, `max_queue_bytes`, `max_queue_size`, `retry`, `compression`, `encoding` at line 1 column 39", "unknown exporter field"),
        (r#"{"mode":"edge","exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: mode: unknown variant `edge`, expected one of `gateway`, `sidecar_inbound`, `sidecar_outbound`, `upstream_filter` at line 1 column 14", "bad mode"),
        (r#"{"exporter":{"cluster":"otel","timeout_ms":"5s"}}"#, "invalid gateway-tracing configuration: exporter.timeout_ms: invalid type: string \"5s\", expected u64 at line 1 column 47", "wrong type"),
        (r#"{"exporter":{"cluster":""}}"#, "invalid gateway-tracing configuration: exporter.cluster = \"\": must name the Envoy cluster of the OTLP/HTTP collector", "empty cluster"),
        (r#"{"exporter":{"cluster":"otel","path":"v1/traces"}}"#, "invalid gateway-tracing configuration: exporter.path = \"v1/traces\": must start with '/'", "relative path"),
        (r#"{"exporter":{"cluster":"otel","timeout_ms":0}}"#, "invalid gateway-tracing configuration: exporter.timeout_ms = \"0\": must be between 1 and 60000", "zero timeout"),
        (r#"{"exporter":{"cluster":"otel","flush_interval_ms":60001}}"#, "invalid gateway-tracing configuration: exporter.flush_interval_ms = \"60001\": must be between 1 and 60000", "flush too slow"),
        (r#"{"exporter":{"cluster":"otel","max_export_batch_size":0}}"#, "invalid gateway-tracing configuration: exporter.max_export_batch_size = \"0\": must be between 1 and 8192", "zero batch"),
        (r#"{"exporter":{"cluster":"otel","max_queue_size":2048}}"#, "invalid gateway-tracing configuration: exporter.max_queue_size = \"2048\": is replaced by exporter.max_queue_bytes (the queue is bounded in bytes)", "old field refused, naming the new one"),
        (r#"{"exporter":{"cluster":"otel","max_queue_bytes":1000}}"#, "invalid gateway-tracing configuration: exporter.max_queue_bytes = \"1000\": must be between 65536 and 1073741824", "queue too small"),
        (r#"{"exporter":{"cluster":"otel","compression":"zstd"}}"#, "invalid gateway-tracing configuration: exporter.compression: unknown variant `zstd`, expected `none` or `gzip` at line 1 column 50", "unknown compression"),
        (r#"{"exporter":{"cluster":"otel","encoding":"xml"}}"#, "invalid gateway-tracing configuration: exporter.encoding: unknown variant `xml`, expected `protobuf` or `json` at line 1 column 46", "unknown encoding"),
        (r#"{"exporter":{"cluster":"otel","retry":{"initial_backoff_ms":0}}}"#, "invalid gateway-tracing configuration: exporter.retry.initial_backoff_ms = \"0\": must be between 1 and 600000", "zero backoff"),
        (r#"{"exporter":{"cluster":"otel","retry":{"initial_backoff_ms":5000,"max_backoff_ms":1000}}}"#, "invalid gateway-tracing configuration: exporter.retry.max_backoff_ms = \"1000\": must be between 5000 and 600000", "max below initial"),
        (r#"{"exporter":{"cluster":"otel","retry":{"multiplier":0.5}}}"#, "invalid gateway-tracing configuration: exporter.retry.multiplier = \"0.5\": must be between 1 and 10", "shrinking backoff"),
        (r#"{"exporter":{"cluster":"otel","retry":{"max_elapsed_ms":0}}}"#, "invalid gateway-tracing configuration: exporter.retry.max_elapsed_ms = \"0\": must be between 1 and 3600000", "zero elapsed"),
        (r#"{"exporter":{"cluster":"otel","retry":{"jitter":1}}}"#, "invalid gateway-tracing configuration: exporter.retry.jitter: unknown field `jitter`, expected one of `enabled`, `initial_backoff_ms`, `multiplier`, `max_backoff_ms`, `max_elapsed_ms` at line 1 column 47", "unknown retry field"),
        (r#"{"exporter":{"cluster":"otel","headers":{"content-encoding":"br"}}}"#, "invalid gateway-tracing configuration: exporter.headers.content-encoding = \"<redacted>\": is set by the exporter itself", "content-encoding is the exporter's"),
        (r#"{"exporter":{"cluster":"otel","authority":""}}"#, "invalid gateway-tracing configuration: exporter.authority = \"\": must not be empty", "empty authority"),
        (r#"{"exporter":{"cluster":"otel","headers":{"X Key":"v"}}}"#, "invalid gateway-tracing configuration: exporter.headers.X Key = \"<redacted>\": header name must be token characters", "space in a header name"),
        (r#"{"exporter":{"cluster":"otel","headers":{"X-Key":"v","x-key":"w"}}}"#, "invalid gateway-tracing configuration: exporter.headers.x-key = \"<redacted>\": is listed twice (names are case-insensitive)", "the same header in two cases"),
        (r#"{"exporter":{"cluster":"otel","headers":{"content-type":"v"}}}"#, "invalid gateway-tracing configuration: exporter.headers.content-type = \"<redacted>\": is set by the exporter itself", "reserved header"),
        (r#"{"exporter":{"cluster":"otel","headers":{"x-honeycomb-team":"${MISSING_KEY}"}}}"#, "invalid gateway-tracing configuration: exporter.headers.x-honeycomb-team = \"<redacted>\": environment variable MISSING_KEY is not set (pass it with vm_config.environment_variables, or write ${MISSING_KEY:-default})", "unset secret variable"),
        (r#"{"exporter":{"cluster":"otel","headers":{"x-api-key":12345678}}}"#, "invalid gateway-tracing configuration: exporter.headers.x-api-key: invalid type: integer `<redacted>`, expected a string at line 1 column 61", "a mistyped secret: the field named, the value never echoed"),
        (r#"{"exporter":{"cluster":"otel","headers":"x-api-key=s3cr3t"}}"#, "invalid gateway-tracing configuration: exporter.headers: invalid type: string \"<redacted>\", expected a map at line 1 column 58", "headers as a string: never echoed"),
        (r#"{"exporter":{"cluster":"otel","headers":{"x-a":"line\nbreak"}}}"#, "invalid gateway-tracing configuration: exporter.headers.x-a = \"<redacted>\": value contains CR, LF or NUL", "header injection"),
        (r#"{"service_name":"","exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: service_name = \"\": must not be empty", "empty service name"),
        (r#"{"service_name":"${EMPTY}","exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: service_name = \"${EMPTY}\": environment variable EMPTY is not set (pass it with vm_config.environment_variables, or write ${EMPTY:-default})", "empty variable counts as unset"),
        (r#"{"service_name":"${1X}","exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: service_name = \"${1X}\": '${1X}' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)", "bad variable name"),
        (r#"{"service_name":"${OPEN","exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: service_name = \"${OPEN\": unterminated '${' (write '$$' for a literal '$')", "unterminated"),
        (r#"{"resource_attributes":{"service.name":"x"},"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: resource_attributes.service.name = \"x\": set service.name with the service_name field", "service.name via attributes"),
        (r#"{"routes":[{"template":"api"}],"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: routes[0].template = \"api\": must start with '/'", "bad template"),
        (r#"{"routes":[{"template":"/a","upstream_template":"/b/:"}],"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: routes[0].upstream_template = \"/b/:\": parameter ':' is not a name ([A-Za-z_][A-Za-z0-9_]*)", "bad upstream template"),
        (r#"{"clusters":{"auth":{"service":" "}},"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: clusters.auth.service = \" \": must not be empty", "blank service"),
        (r#"{"clusters":{"cart":{"durable_object":{"name":"Cart","id":{"route_param":"cartId"}}}},"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: clusters.cart.durable_object.id.route_param = \"cartId\": no route template has this :param", "DO param not in any route"),
        (r#"{"clusters":{"cart":{"durable_object":{"name":"Cart","id":{"header":"x cart"}}}},"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: clusters.cart.durable_object.id.header = \"x cart\": must be an HTTP header name (token characters)", "DO header with a space"),
        (r#"{"clusters":{"cart":{"durable_object":{"name":"","id":{"header":"x-cart"}}}},"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: clusters.cart.durable_object.name = \"\": must not be empty", "DO without name"),
        (r#"{"propagators":["tracecontext","jaeger"],"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: propagators[1] = \"jaeger\": unknown propagator; expected tracecontext, b3 or b3multi", "unknown propagator"),
        (r#"{"propagators":["b3","b3"],"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: propagators[1] = \"b3\": listed twice", "duplicate propagator"),
        (r#"{"propagators":[],"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: propagators: must not be empty (leave it out for the default [\"tracecontext\"])", "empty propagators"),
        (r#"{"trust":"partly","exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: trust: unknown variant `partly`, expected `trusted` or `untrusted` at line 1 column 17", "unknown trust"),
        (r#"{"response_trace_header":"traceparent","exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: response_trace_header: unknown variant `traceparent`, expected one of `off`, `traceresponse`, `server_timing` at line 1 column 38", "unknown response header"),
        (r#"{"clusters":{"cart":{"durable_object":{"name":"C","id":{"cookie":"x"}}}},"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: clusters.cart.durable_object.id: unknown variant `cookie`, expected `route_param` or `header` at line 1 column 64", "DO id source unknown"),
    ] {
        let got = parse_str(json).map(|_| ()).unwrap_err().to_string();
        assert!(!got.contains("hc-secret-123"), "{reason}: secret in error");
        if got != want {
            failures.push(format!("{reason}:\n  got:  {got}\n  want: {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn expansion_rows() {
    for (input, want, reason) in [
        ("plain", "plain", "no variables"),
        ("${SERVICE_NAME}", "from-env", "set variable"),
        ("${NOPE:-fallback}", "fallback", "default used"),
        (
            "${SERVICE_NAME:-fallback}",
            "from-env",
            "default ignored when set",
        ),
        ("${NOPE:-}", "", "empty default"),
        ("a$$b", "a$b", "escaped dollar"),
        ("cost $5", "cost $5", "lone dollar kept"),
        ("${SERVICE_NAME}-${NOPE:-x}", "from-env-x", "two variables"),
    ] {
        assert_eq!(expand(input, &env).unwrap(), want, "{reason}");
    }
}

/// `mode` × `client_spans`: which placements combine, and the refusals naming field and value.
#[test]
fn placement_rows() {
    struct Row {
        json: &'static str,
        want: Result<(Mode, ClientSpans), &'static str>,
        reason: &'static str,
    }
    let rows = [
        Row {
            json: r#"{"exporter":{"cluster":"otel"}}"#,
            want: Ok((Mode::Gateway, ClientSpans::PerCall)),
            reason: "default: the gateway makes its CLIENT spans, one per call",
        },
        Row {
            json: r#"{"client_spans":"upstream_filter","exporter":{"cluster":"otel"}}"#,
            want: Ok((Mode::Gateway, ClientSpans::UpstreamFilter)),
            reason: "gateway leaves CLIENT spans to the upstream filter",
        },
        Row {
            json: r#"{"mode":"gateway","client_spans":"per_call","exporter":{"cluster":"otel"}}"#,
            want: Ok((Mode::Gateway, ClientSpans::PerCall)),
            reason: "the default, spelled out",
        },
        Row {
            json: r#"{"mode":"upstream_filter","exporter":{"cluster":"otel"}}"#,
            want: Ok((Mode::UpstreamFilter, ClientSpans::PerCall)),
            reason: "the upstream placement",
        },
        Row {
            json: r#"{"mode":"upstream_filter","client_spans":"upstream_filter","exporter":{"cluster":"otel"}}"#,
            want: Err("invalid gateway-tracing configuration: client_spans = \"upstream_filter\": only for mode \"gateway\" (mode \"upstream_filter\" makes one CLIENT span per attempt itself)"),
            reason: "the upstream filter cannot delegate to itself",
        },
        Row {
            json: r#"{"mode":"sidecar_inbound","client_spans":"per_call","exporter":{"cluster":"otel"}}"#,
            want: Err("invalid gateway-tracing configuration: client_spans = \"per_call\": only for mode \"gateway\" (mode is \"sidecar_inbound\")"),
            reason: "an inbound sidecar makes no CLIENT span",
        },
        Row {
            json: r#"{"mode":"sidecar_outbound","client_spans":"upstream_filter","exporter":{"cluster":"otel"}}"#,
            want: Err("invalid gateway-tracing configuration: client_spans = \"upstream_filter\": only for mode \"gateway\" (mode is \"sidecar_outbound\")"),
            reason: "an outbound sidecar would then make no span at all",
        },
        Row {
            json: r#"{"client_spans":"per_attempt","exporter":{"cluster":"otel"}}"#,
            want: Err("invalid gateway-tracing configuration: client_spans: unknown variant `per_attempt`, expected `per_call` or `upstream_filter` at line 1 column 29"),
            reason: "unknown value names the accepted ones",
        },
        Row {
            json: r#"{"mode":"upstream_filter","clusters":{"h2":{"protocol_version":"HTTP/2"}},"exporter":{"cluster":"otel"}}"#,
            want: Err("invalid gateway-tracing configuration: clusters.h2.protocol_version = \"HTTP/2\": must be one of 1.0, 1.1, 2, 3 (2 for h2 and h2c)"),
            reason: "protocol version in semconv's spelling",
        },
        Row {
            json: r#"{"mode":"upstream_filter","clusters":{"h2":{"protocol_version":"2"}},"exporter":{"cluster":"otel"}}"#,
            want: Ok((Mode::UpstreamFilter, ClientSpans::PerCall)),
            reason: "an h2c cluster",
        },
    ];
    let mut failures = Vec::new();
    for row in rows {
        let got = parse_str(row.json)
            .map(|c| (c.mode, c.client_spans))
            .map_err(|e| e.to_string());
        let want = row.want.map_err(str::to_string);
        if got != want {
            failures.push(format!(
                "{}:\n  got:  {got:?}\n  want: {want:?}",
                row.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn header_names_in_config_are_case_insensitive() {
    let c = crate::config::parse(
        br#"{"clusters":{"cart":{"durable_object":{"name":"Cart","id":{"header":"X-Cart-Id"}}}},
             "exporter":{"cluster":"otel","headers":{"X-Honeycomb-Team":"k"}}}"#,
        &|_| None,
    )
    .unwrap();
    assert_eq!(
        c.cluster_target("cart").durable_object.clone().unwrap().id,
        DurableObjectId::Header("x-cart-id".into()),
        "lower-cased, not refused"
    );
    assert_eq!(c.exporter.headers[0].0, "x-honeycomb-team");
}
