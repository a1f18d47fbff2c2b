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
pub mod propagation;
pub mod routes;
#[cfg(test)]
mod tests;

pub use clusters::{ClusterTarget, DurableObject, DurableObjectId, RawCluster, RawDurableObject};
pub use env::expand;
pub use exporter::*;
pub use routes::RawRoute;

use crate::route::RouteTable;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

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
    /// Trace context formats, extraction priority order (default `["tracecontext"]`).
    #[serde(default)]
    pub propagators: Option<Vec<String>>,
    #[serde(default)]
    pub trust: crate::propagation::Trust,
    #[serde(default)]
    pub response_trace_header: crate::propagation::ResponseTraceHeader,
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
    pub service_name: String,
    pub resource_attributes: Vec<(String, String)>,
    pub sampler: Sampler,
    pub routes: RouteTable,
    pub clusters: BTreeMap<String, ClusterTarget>,
    pub exporter: ExporterConfig,
    /// `propagators`, `trust`, `response_trace_header`.
    pub propagation: crate::propagation::Settings,
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
        structural(field, e.inner().to_string())
    })?;
    validate(raw, env)
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

    let routes = routes::validate(&raw.routes)?;
    let clusters = clusters::validate(raw.clusters, &routes)?;
    let exporter = exporter::validate(raw.exporter, env)?;
    let propagation = propagation::validate(raw.propagators, raw.trust, raw.response_trace_header)?;

    Ok(Config {
        mode: raw.mode,
        service_name,
        resource_attributes,
        sampler: raw.sampler,
        routes,
        clusters,
        exporter,
        propagation,
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

pub(crate) fn is_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c)
        })
}
