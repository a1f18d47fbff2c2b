//! Plugin configuration: the JSON Envoy hands the filter (`plugin_config.configuration`),
//! parsed strictly (unknown fields refused) into [`RawConfig`], then validated into the typed
//! [`Config`] the rest of the filter uses. Every default is a named constant below.
//!
//! `${VAR}` and `${VAR:-default}` in `service_name`, `resource_attributes` values and
//! `exporter.headers` values are expanded from the environment Envoy gives the VM
//! (`vm_config.environment_variables`). `$$` is a literal `$`. Exporter header values are
//! [`Secret`]s: they never appear in `Debug` output or error messages.

use crate::route::{Route, RouteTable, RouteTemplate};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub const DEFAULT_SERVICE_NAME: &str = "gateway-tracing";
pub const DEFAULT_EXPORTER_PATH: &str = "/v1/traces";
pub const DEFAULT_EXPORTER_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_MAX_EXPORT_BATCH_SIZE: usize = 512;
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 2_048;

pub const MAX_EXPORTER_TIMEOUT_MS: u64 = 60_000;
pub const MAX_FLUSH_INTERVAL_MS: u64 = 60_000;
pub const MAX_EXPORT_BATCH_SIZE: usize = 8_192;
pub const MAX_QUEUE_SIZE: usize = 1_000_000;

/// Headers the exporter sets itself; configuring them is refused.
const RESERVED_EXPORTER_HEADERS: [&str; 4] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

/// Which spans this filter instance produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Edge gateway: a SERVER span per request and a CLIENT child per upstream call.
    #[default]
    Gateway,
    /// Inbound sidecar in front of a service: a SERVER span only; the service gets its id.
    SidecarInbound,
    /// Outbound sidecar next to a service: a CLIENT span per call, child of what the app sent.
    SidecarOutbound,
}

/// Which requests are recorded. Non-recorded requests still propagate context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Follow the incoming sampled flag; record everything that starts here (OTel default).
    #[default]
    ParentBasedAlwaysOn,
    AlwaysOn,
    AlwaysOff,
}

/// Where a Durable Object's id comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DurableObjectId {
    /// A `:param` of the matched route template (`cartId`).
    RouteParam(String),
    /// A request header (`x-cart-id`).
    Header(String),
}

// ------------------------------------------------------------------------------ raw (serde) --

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub sampler: Sampler,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub clusters: BTreeMap<String, RawCluster>,
    pub exporter: RawExporter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub template: String,
    #[serde(default)]
    pub upstream_template: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub durable_object: Option<RawDurableObject>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDurableObject {
    pub name: String,
    pub id: DurableObjectId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExporter {
    pub cluster: String,
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default = "default_exporter_path")]
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_max_export_batch_size")]
    pub max_export_batch_size: usize,
    #[serde(default = "default_max_queue_size")]
    pub max_queue_size: usize,
}

impl fmt::Debug for RawExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawExporter")
            .field("cluster", &self.cluster)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn default_service_name() -> String {
    DEFAULT_SERVICE_NAME.to_string()
}
fn default_exporter_path() -> String {
    DEFAULT_EXPORTER_PATH.to_string()
}
fn default_timeout_ms() -> u64 {
    DEFAULT_EXPORTER_TIMEOUT_MS
}
fn default_flush_interval_ms() -> u64 {
    DEFAULT_FLUSH_INTERVAL_MS
}
fn default_max_export_batch_size() -> usize {
    DEFAULT_MAX_EXPORT_BATCH_SIZE
}
fn default_max_queue_size() -> usize {
    DEFAULT_MAX_QUEUE_SIZE
}

// ---------------------------------------------------------------------------- typed config --

/// A value that must never be printed (API keys in exporter headers).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurableObject {
    pub name: String,
    pub id: DurableObjectId,
}

/// What an upstream cluster is, for naming CLIENT spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTarget {
    /// `AUTH_SERVICE`; defaults to the cluster name.
    pub service: String,
    pub durable_object: Option<DurableObject>,
}

impl ClusterTarget {
    /// The name CLIENT spans lead with: the Durable Object class, else the service.
    pub fn service_label(&self) -> &str {
        self.durable_object
            .as_ref()
            .map_or(&self.service, |d| &d.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub headers: Vec<(String, Secret)>,
    pub timeout: Duration,
    pub flush_interval: Duration,
    pub max_export_batch_size: usize,
    pub max_queue_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: Sampler,
    pub routes: RouteTable,
    pub clusters: BTreeMap<String, ClusterTarget>,
    pub exporter: ExporterConfig,
}

impl Config {
    /// The target for a cluster: configured, or named after the cluster itself.
    pub fn cluster_target(&self, cluster: &str) -> ClusterTarget {
        self.clusters
            .get(cluster)
            .cloned()
            .unwrap_or_else(|| ClusterTarget {
                service: cluster.to_string(),
                durable_object: None,
            })
    }
}

/// A configuration error: which field, which value, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    /// The offending value, already redacted for secrets; `None` for structural errors.
    pub value: Option<String>,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            None => write!(
                f,
                "invalid gateway-tracing configuration: {}: {}",
                self.field, self.reason
            ),
            Some(v) => write!(
                f,
                "invalid gateway-tracing configuration: {} = {:?}: {}",
                self.field, v, self.reason
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

fn err(
    field: impl Into<String>,
    value: impl Into<String>,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError {
        field: field.into(),
        value: Some(value.into()),
        reason: reason.into(),
    }
}

fn structural(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        value: None,
        reason: reason.into(),
    }
}

/// Parses and validates the plugin configuration. `env` looks up environment variables.
pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    if json.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(structural(
            "configuration",
            "is empty; at least {\"exporter\": {\"cluster\": \"...\"}} is required",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "configuration".to_string()
        } else {
            path
        };
        structural(field, e.inner().to_string())
    })?;
    validate(raw, env)
}

/// Turns a parsed [`RawConfig`] into a [`Config`], checking every field.
pub fn validate(
    raw: RawConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let service_name = expand(&raw.service_name, env)
        .map_err(|reason| err("service_name", raw.service_name.clone(), reason))?;
    if service_name.trim().is_empty() {
        return Err(err(
            "service_name",
            raw.service_name.clone(),
            "must not be empty",
        ));
    }

    let mut resource_attributes = Vec::new();
    for (k, v) in &raw.resource_attributes {
        let field = format!("resource_attributes.{k}");
        if k.is_empty() {
            return Err(structural(
                "resource_attributes",
                "attribute names must not be empty",
            ));
        }
        if k == crate::semconv::SERVICE_NAME {
            return Err(err(
                field,
                v.clone(),
                "set service.name with the service_name field",
            ));
        }
        let v = expand(v, env).map_err(|reason| err(field.clone(), v.clone(), reason))?;
        resource_attributes.push((k.clone(), v));
    }

    let mut routes = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let template = RouteTemplate::parse(&r.template)
            .map_err(|reason| err(format!("routes[{i}].template"), r.template.clone(), reason))?;
        let upstream_template = match &r.upstream_template {
            None => None,
            Some(u) => Some(RouteTemplate::parse(u).map_err(|reason| {
                err(format!("routes[{i}].upstream_template"), u.clone(), reason)
            })?),
        };
        routes.push(Route {
            template,
            upstream_template,
        });
    }
    let routes = RouteTable { routes };

    let mut clusters = BTreeMap::new();
    for (name, c) in raw.clusters {
        let field = format!("clusters.{name}");
        if name.is_empty() {
            return Err(structural("clusters", "cluster names must not be empty"));
        }
        let service = match c.service {
            Some(s) if s.trim().is_empty() => {
                return Err(err(format!("{field}.service"), s, "must not be empty"))
            }
            Some(s) => s,
            None => name.clone(),
        };
        let durable_object = match c.durable_object {
            None => None,
            Some(d) => {
                if d.name.trim().is_empty() {
                    return Err(err(
                        format!("{field}.durable_object.name"),
                        d.name,
                        "must not be empty",
                    ));
                }
                match &d.id {
                    DurableObjectId::RouteParam(p) => {
                        if !routes.routes.iter().any(|r| r.template.has_param(p)) {
                            return Err(err(
                                format!("{field}.durable_object.id.route_param"),
                                p.clone(),
                                "no route template has this :param",
                            ));
                        }
                    }
                    DurableObjectId::Header(h) => {
                        if !is_header_name(h) {
                            return Err(err(
                                format!("{field}.durable_object.id.header"),
                                h.clone(),
                                "must be a lower-case HTTP header name",
                            ));
                        }
                    }
                }
                Some(DurableObject {
                    name: d.name,
                    id: d.id,
                })
            }
        };
        clusters.insert(
            name,
            ClusterTarget {
                service,
                durable_object,
            },
        );
    }

    let e = raw.exporter;
    if e.cluster.trim().is_empty() {
        return Err(err(
            "exporter.cluster",
            e.cluster,
            "must name the Envoy cluster of the OTLP/HTTP collector",
        ));
    }
    if !e.path.starts_with('/') {
        return Err(err("exporter.path", e.path, "must start with '/'"));
    }
    let authority = e.authority.unwrap_or_else(|| e.cluster.clone());
    if authority.is_empty() {
        return Err(err("exporter.authority", authority, "must not be empty"));
    }
    check_range(
        "exporter.timeout_ms",
        e.timeout_ms,
        1,
        MAX_EXPORTER_TIMEOUT_MS,
    )?;
    check_range(
        "exporter.flush_interval_ms",
        e.flush_interval_ms,
        1,
        MAX_FLUSH_INTERVAL_MS,
    )?;
    check_range(
        "exporter.max_export_batch_size",
        e.max_export_batch_size as u64,
        1,
        MAX_EXPORT_BATCH_SIZE as u64,
    )?;
    check_range(
        "exporter.max_queue_size",
        e.max_queue_size as u64,
        1,
        MAX_QUEUE_SIZE as u64,
    )?;
    if e.max_queue_size < e.max_export_batch_size {
        return Err(err(
            "exporter.max_queue_size",
            e.max_queue_size.to_string(),
            format!(
                "must be at least exporter.max_export_batch_size ({})",
                e.max_export_batch_size
            ),
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in &e.headers {
        let field = format!("exporter.headers.{name}");
        if !is_header_name(name) {
            return Err(err(
                field,
                "<redacted>",
                "header name must be lower-case token characters",
            ));
        }
        if RESERVED_EXPORTER_HEADERS.contains(&name.as_str()) {
            return Err(err(field, "<redacted>", "is set by the exporter itself"));
        }
        // The expansion error names the variable, never the value.
        let v = expand(value, env).map_err(|reason| err(field.clone(), "<redacted>", reason))?;
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(err(field, "<redacted>", "value contains CR, LF or NUL"));
        }
        headers.push((name.clone(), Secret(v)));
    }
    let exporter = ExporterConfig {
        cluster: e.cluster,
        authority,
        path: e.path,
        headers,
        timeout: Duration::from_millis(e.timeout_ms),
        flush_interval: Duration::from_millis(e.flush_interval_ms),
        max_export_batch_size: e.max_export_batch_size,
        max_queue_size: e.max_queue_size,
    };

    Ok(Config {
        mode: raw.mode,
        service_name,
        resource_attributes,
        sampler: raw.sampler,
        routes,
        clusters,
        exporter,
    })
}

fn check_range(field: &str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(err(
            field,
            v.to_string(),
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
        })
}

/// Expands `${VAR}`, `${VAR:-default}` and `$$`. An unset variable without a default is an
/// error naming the variable (never its value).
pub fn expand(input: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(rest.get(..pos).unwrap_or(""));
        let after = rest.get(pos + 1..).unwrap_or("");
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err("unterminated '${' (write '$$' for a literal '$')".into());
        };
        let body = body_start.get(..end).unwrap_or("");
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if !crate::route::is_name(name) {
            return Err(format!(
                "'${{{name}}}' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
            ));
        }
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (pass it with vm_config.environment_variables, or write ${{{name}:-default}})"
                ))
            }
        }
        rest = body_start.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.exporter.max_queue_size, DEFAULT_MAX_QUEUE_SIZE);
        assert!(c.routes.routes.is_empty());
        assert_eq!(
            c.cluster_target("auth").service,
            "auth",
            "unmapped cluster is named after itself"
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
                           "timeout_ms": 100, "flush_interval_ms": 50, "max_export_batch_size": 10, "max_queue_size": 10}
            }"#,
        )
        .unwrap();
        assert_eq!(c.mode, Mode::SidecarOutbound);
        assert_eq!(c.service_name, "from-env");
        assert_eq!(
            c.resource_attributes,
            vec![("deployment.environment.name".into(), "demo".into())]
        );
        assert_eq!(c.cluster_target("auth").service, "AUTH_SERVICE");
        let cart = c.cluster_target("cart");
        assert_eq!(
            cart.durable_object.unwrap().id,
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
            (r#"{"exporter":{"cluster":"otel"},"colour":"red"}"#, "invalid gateway-tracing configuration: colour: unknown field `colour`, expected one of `mode`, `service_name`, `resource_attributes`, `sampler`, `routes`, `clusters`, `exporter` at line 1 column 39", "unknown top-level field"),
            (r#"{"exporter":{"cluster":"otel","timeout":5}}"#, "invalid gateway-tracing configuration: exporter.timeout: unknown field `timeout`, expected one of `cluster`, `authority`, `path`, `headers`, `timeout_ms`, `flush_interval_ms`, `max_export_batch_size`, `max_queue_size` at line 1 column 39", "unknown exporter field"),
            (r#"{"mode":"edge","exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: mode: unknown variant `edge`, expected one of `gateway`, `sidecar_inbound`, `sidecar_outbound` at line 1 column 14", "bad mode"),
            (r#"{"exporter":{"cluster":"otel","timeout_ms":"5s"}}"#, "invalid gateway-tracing configuration: exporter.timeout_ms: invalid type: string \"5s\", expected u64 at line 1 column 47", "wrong type"),
            (r#"{"exporter":{"cluster":""}}"#, "invalid gateway-tracing configuration: exporter.cluster = \"\": must name the Envoy cluster of the OTLP/HTTP collector", "empty cluster"),
            (r#"{"exporter":{"cluster":"otel","path":"v1/traces"}}"#, "invalid gateway-tracing configuration: exporter.path = \"v1/traces\": must start with '/'", "relative path"),
            (r#"{"exporter":{"cluster":"otel","timeout_ms":0}}"#, "invalid gateway-tracing configuration: exporter.timeout_ms = \"0\": must be between 1 and 60000", "zero timeout"),
            (r#"{"exporter":{"cluster":"otel","flush_interval_ms":60001}}"#, "invalid gateway-tracing configuration: exporter.flush_interval_ms = \"60001\": must be between 1 and 60000", "flush too slow"),
            (r#"{"exporter":{"cluster":"otel","max_export_batch_size":0}}"#, "invalid gateway-tracing configuration: exporter.max_export_batch_size = \"0\": must be between 1 and 8192", "zero batch"),
            (r#"{"exporter":{"cluster":"otel","max_queue_size":0}}"#, "invalid gateway-tracing configuration: exporter.max_queue_size = \"0\": must be between 1 and 1000000", "zero queue"),
            (r#"{"exporter":{"cluster":"otel","max_queue_size":10,"max_export_batch_size":20}}"#, "invalid gateway-tracing configuration: exporter.max_queue_size = \"10\": must be at least exporter.max_export_batch_size (20)", "queue smaller than batch"),
            (r#"{"exporter":{"cluster":"otel","authority":""}}"#, "invalid gateway-tracing configuration: exporter.authority = \"\": must not be empty", "empty authority"),
            (r#"{"exporter":{"cluster":"otel","headers":{"X-Key":"v"}}}"#, "invalid gateway-tracing configuration: exporter.headers.X-Key = \"<redacted>\": header name must be lower-case token characters", "upper-case header"),
            (r#"{"exporter":{"cluster":"otel","headers":{"content-type":"v"}}}"#, "invalid gateway-tracing configuration: exporter.headers.content-type = \"<redacted>\": is set by the exporter itself", "reserved header"),
            (r#"{"exporter":{"cluster":"otel","headers":{"x-honeycomb-team":"${MISSING_KEY}"}}}"#, "invalid gateway-tracing configuration: exporter.headers.x-honeycomb-team = \"<redacted>\": environment variable MISSING_KEY is not set (pass it with vm_config.environment_variables, or write ${MISSING_KEY:-default})", "unset secret variable"),
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
            (r#"{"clusters":{"cart":{"durable_object":{"name":"Cart","id":{"header":"X-Cart"}}}},"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: clusters.cart.durable_object.id.header = \"X-Cart\": must be a lower-case HTTP header name", "DO header upper case"),
            (r#"{"clusters":{"cart":{"durable_object":{"name":"","id":{"header":"x-cart"}}}},"exporter":{"cluster":"otel"}}"#, "invalid gateway-tracing configuration: clusters.cart.durable_object.name = \"\": must not be empty", "DO without name"),
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
}
