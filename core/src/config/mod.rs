//! Plugin configuration: the JSON Envoy hands the filter (`plugin_config.configuration`),
//! parsed strictly (unknown fields refused) into [`RawConfig`], then validated into the typed
//! [`Config`] the rest of the filter uses. Every default is a named constant below.
//!
//! `${VAR}` and `${VAR:-default}` in `service_name`, `resource_attributes` values and
//! `exporter.headers` values are expanded from the environment Envoy gives the VM
//! (`vm_config.environment_variables`). `$$` is a literal `$`. Exporter header values are
//! [`Secret`]s: they never appear in `Debug` output or error messages.
//!
//! One file per section: [`exporter`], [`clusters`], [`routes`]; [`env`] expands variables.
//! This file holds the top-level fields, the error type and [`parse`]/[`validate`].

pub mod clusters;
pub mod env;
pub mod exporter;
pub mod limits;
pub mod placement;
pub mod propagation;
pub mod routes;
#[cfg(test)]
mod tests;

pub use clusters::{ClusterTarget, DurableObject, DurableObjectId, RawCluster, RawDurableObject};
pub use env::expand;
pub use exporter::*;
pub use limits::{RawSpanLimits, SpanLimits};
pub use placement::ClientSpans;
pub use routes::RawRoute;

use crate::route::RouteTable;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub const DEFAULT_SERVICE_NAME: &str = "gateway-tracing";

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
    /// Upstream HTTP filter of a cluster: a CLIENT span per attempt (retries, hedges, shadows),
    /// child of the `traceparent` the downstream placement injected (see [`placement`]).
    UpstreamFilter,
}

pub use crate::sampler::{Ratio, Sampler};

/// Which attribute names spans carry, like `OTEL_SEMCONV_STABILITY_OPT_IN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Semconv {
    /// Stable HTTP semconv names only; no `span.kind` attribute; no status description where
    /// the status code says it all.
    Stable,
    /// The seed's legacy names only (`http.method`, `http.url`, `http.status_code`,
    /// `span.kind`), plus what has no legacy name.
    Legacy,
    /// Both, so the seed's queries keep working while dashboards move to stable names.
    #[default]
    Both,
}

impl Semconv {
    pub fn stable(self) -> bool {
        self != Semconv::Legacy
    }
    pub fn legacy(self) -> bool {
        self != Semconv::Stable
    }
}

/// Request headers recorded by default (`http.request.header.x-request-id`) when present.
pub const DEFAULT_REQUEST_HEADERS: [&str; 1] = ["x-request-id"];
/// Header values never recorded, even when allow-listed (their attribute says `REDACTED`).
pub const DEFAULT_REDACT_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-honeycomb-team",
];
/// What a redacted header value is replaced with.
pub const REDACTED: &str = "REDACTED";
/// At most this many header names per allowlist (each costs a lookup per recorded request).
pub const MAX_RECORDED_HEADERS: usize = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub client_spans: Option<ClientSpans>,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub sampler: Sampler,
    /// The probability of the `*traceidratio` samplers (`OTEL_TRACES_SAMPLER_ARG`).
    #[serde(default)]
    pub sampler_ratio: Option<f64>,
    /// Record a request that ends in 5xx or an upstream failure even when not sampled.
    #[serde(default)]
    pub sampler_keep_errors: bool,
    #[serde(default)]
    pub semconv: Semconv,
    #[serde(default)]
    pub request_headers: Option<Vec<String>>,
    #[serde(default)]
    pub response_headers: Vec<String>,
    #[serde(default)]
    pub redact_headers: Option<Vec<String>>,
    /// Put the request's trace and span ids in filter state for the access log.
    #[serde(default)]
    pub access_log_ids: bool,
    /// Per-target call counters and duration histograms (Envoy stats).
    #[serde(default)]
    pub call_metrics: bool,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub clusters: BTreeMap<String, RawCluster>,
    pub exporter: RawExporter,
    /// Trace context formats, extraction priority order (default `["tracecontext"]`).
    #[serde(default)]
    pub propagators: Option<Vec<String>>,
    #[serde(default)]
    pub trust: crate::propagation::Trust,
    /// `trust: untrusted` only: drop (default) or keep the client's `baggage`.
    #[serde(default)]
    pub untrusted_baggage: Option<crate::propagation::UntrustedBaggage>,
    #[serde(default)]
    pub response_trace_header: crate::propagation::ResponseTraceHeader,
    /// Span limits (attribute value length, counts, tracestate capture).
    #[serde(default)]
    pub span_limits: RawSpanLimits,
}

fn default_service_name() -> String {
    DEFAULT_SERVICE_NAME.to_string()
}

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
pub struct Config {
    pub mode: Mode,
    pub client_spans: ClientSpans,
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: Sampler,
    /// The global ratio of the `*traceidratio` samplers (routes may override).
    pub ratio: Ratio,
    pub keep_errors: bool,
    pub semconv: Semconv,
    /// Lower-cased request header names recorded as `http.request.header.<name>`.
    pub request_headers: Vec<String>,
    /// Lower-cased response header names recorded as `http.response.header.<name>`.
    pub response_headers: Vec<String>,
    /// Lower-cased header names whose values are replaced with [`REDACTED`].
    pub redact_headers: Vec<String>,
    pub access_log_ids: bool,
    pub call_metrics: bool,
    pub routes: RouteTable,
    /// Shared with every request's CLIENT call (`Arc`: no copy of the target per request; `Arc`
    /// so the native build can share one config across worker threads).
    pub clusters: BTreeMap<String, Arc<ClusterTarget>>,
    pub exporter: ExporterConfig,
    /// `propagators`, `trust`, `response_trace_header`.
    pub propagation: crate::propagation::Settings,
    pub span_limits: SpanLimits,
}

impl Config {
    /// The target for a cluster: configured, or named after the cluster itself.
    pub fn cluster_target(&self, cluster: &str) -> Arc<ClusterTarget> {
        self.clusters.get(cluster).cloned().unwrap_or_else(|| {
            Arc::new(ClusterTarget {
                service: cluster.to_string(),
                durable_object: None,
                protocol_version: None,
            })
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

pub(crate) fn err(
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

pub(crate) fn structural(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
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
        let reason = e.inner().to_string();
        let reason = if is_secret_field(&field) {
            redact_quoted(&reason)
        } else {
            reason
        };
        structural(field, reason)
    })?;
    validate(raw, env)
}

/// Fields whose values are secrets (`exporter.headers` and every header under it): a parse
/// error there names the field, never the value.
fn is_secret_field(field: &str) -> bool {
    field == "exporter.headers" || field.starts_with("exporter.headers.")
}

/// A serde message with every value it quotes (`` `12345678` ``, `"abc"`) replaced by
/// `<redacted>`: "invalid type: integer `<redacted>`, expected a string".
fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut open: Option<char> = None;
    for c in msg.chars() {
        match open {
            Some(q) if c == q => {
                out.push_str("<redacted>");
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    open = Some(c);
                }
            }
        }
    }
    if open.is_some() {
        out.push_str("<redacted>");
    }
    out
}

/// Turns a parsed [`RawConfig`] into a [`Config`], checking every field.
/// Turns a parsed [`RawConfig`] into a [`Config`], checking every field, section by section.
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

    let client_spans = placement::validate(raw.mode, raw.client_spans)?;
    let ratio = match raw.sampler_ratio {
        None => Ratio::ALWAYS,
        Some(p) => {
            if !raw.sampler.uses_ratio() {
                return Err(err(
                    "sampler_ratio",
                    p.to_string(),
                    "only the traceidratio and parentbased_traceidratio samplers use a ratio",
                ));
            }
            Ratio::new(p)
                .ok_or_else(|| err("sampler_ratio", p.to_string(), "must be between 0 and 1"))?
        }
    };
    let request_headers = header_list(
        "request_headers",
        raw.request_headers
            .unwrap_or_else(|| DEFAULT_REQUEST_HEADERS.map(String::from).to_vec()),
    )?;
    let response_headers = header_list("response_headers", raw.response_headers)?;
    let redact_headers = header_list(
        "redact_headers",
        raw.redact_headers
            .unwrap_or_else(|| DEFAULT_REDACT_HEADERS.map(String::from).to_vec()),
    )?;
    let routes = routes::validate(&raw.routes, raw.sampler)?;
    let clusters = clusters::validate(raw.clusters, &routes)?;
    let exporter = exporter::validate(raw.exporter, env)?;
    let span_limits = limits::validate(raw.span_limits)?;
    let propagation = propagation::validate(
        raw.propagators,
        raw.trust,
        raw.untrusted_baggage,
        raw.response_trace_header,
    )?;

    Ok(Config {
        mode: raw.mode,
        client_spans,
        service_name,
        resource_attributes,
        sampler: raw.sampler,
        ratio,
        keep_errors: raw.sampler_keep_errors,
        semconv: raw.semconv,
        request_headers,
        response_headers,
        redact_headers,
        access_log_ids: raw.access_log_ids,
        call_metrics: raw.call_metrics,
        routes,
        clusters,
        exporter,
        propagation,
        span_limits,
    })
}

pub(crate) fn check_range(field: &str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(err(
            field,
            v.to_string(),
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// A header-name list: lower-cased (header names are case-insensitive), each a valid token,
/// no duplicates, at most [`MAX_RECORDED_HEADERS`].
fn header_list(field: &str, names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if names.len() > MAX_RECORDED_HEADERS {
        return Err(err(
            field,
            names.len().to_string(),
            format!("at most {MAX_RECORDED_HEADERS} header names"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let lower = name.to_ascii_lowercase();
        if !is_header_name(&lower) || lower.starts_with(':') {
            return Err(err(
                format!("{field}[{i}]"),
                name,
                "must be an HTTP header name",
            ));
        }
        if out.contains(&lower) {
            return Err(err(format!("{field}[{i}]"), name, "is listed twice"));
        }
        out.push(lower);
    }
    Ok(out)
}

pub(crate) fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
        })
}
