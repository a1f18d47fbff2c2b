//! The `exporter` section: where and how spans are sent (cluster, path, headers, timeouts,
//! batching, queue bounds). Header values are [`Secret`]s.

use super::env::expand;
use super::{check_range, err, is_header_name, ConfigError, Secret};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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

/// Validates the `exporter` section.
pub(super) fn validate(
    e: RawExporter,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ExporterConfig, ConfigError> {
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
    Ok(ExporterConfig {
        cluster: e.cluster,
        authority,
        path: e.path,
        headers,
        timeout: Duration::from_millis(e.timeout_ms),
        flush_interval: Duration::from_millis(e.flush_interval_ms),
        max_export_batch_size: e.max_export_batch_size,
        max_queue_size: e.max_queue_size,
    })
}
