//! The `exporter` section: where and how spans are sent (cluster, path, headers, timeouts,
//! batching, the byte-bounded queue, retry with backoff, compression and encoding). Header
//! values are [`Secret`]s.

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
/// Encoded span bytes per export request at most: well under the OpenTelemetry Collector's
/// default body limit (confighttp `max_request_body_size`, 20 MiB), with room for the JSON
/// encoding's growth, so a batch of giant spans is not refused whole (413).
pub const DEFAULT_MAX_EXPORT_BYTES: u64 = 4 * 1024 * 1024;
/// Per worker VM: about 100k spans of ~330 bytes, i.e. ~3 s of the bench's 36k spans/s on one
/// worker, or a 60 s outage at 1.7k spans/s. See README "Sizing the queue".
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 32 * 1024 * 1024;
/// First retry delay after a failed export (OpenTelemetry's exporters: 5 s; shorter here so a
/// blip costs a second, not five).
pub const DEFAULT_RETRY_INITIAL_BACKOFF_MS: u64 = 1_000;
/// Each further failure multiplies the delay by this (OpenTelemetry's exporters: 1.5).
pub const DEFAULT_RETRY_MULTIPLIER: f64 = 1.5;
/// The delay grows to at most this (OpenTelemetry's exporters: 30 s): a dead collector sees
/// about one probe per 30 s per worker.
pub const DEFAULT_RETRY_MAX_BACKOFF_MS: u64 = 30_000;
/// A batch whose retries have lasted this long is dropped (`spans_dropped_retries_exhausted`)
/// (OpenTelemetry's exporters: 300 s).
pub const DEFAULT_RETRY_MAX_ELAPSED_MS: u64 = 300_000;
/// Request compression by default: none (see README "Compression and encoding" for the
/// measurements behind it).
pub const DEFAULT_COMPRESSION: Compression = Compression::None;
pub const DEFAULT_ENCODING: Encoding = Encoding::Protobuf;

pub const MAX_EXPORTER_TIMEOUT_MS: u64 = 60_000;
pub const MAX_FLUSH_INTERVAL_MS: u64 = 60_000;
pub const MAX_EXPORT_BATCH_SIZE: usize = 8_192;
pub const MIN_EXPORT_BYTES: u64 = 4 * 1024;
pub const MAX_EXPORT_BYTES: u64 = 256 * 1024 * 1024;
pub const MIN_QUEUE_BYTES: u64 = 64 * 1024;
pub const MAX_QUEUE_BYTES: u64 = 1024 * 1024 * 1024;
pub const MAX_RETRY_BACKOFF_MS: u64 = 600_000;
pub const MAX_RETRY_ELAPSED_MS: u64 = 3_600_000;
pub const MAX_RETRY_MULTIPLIER: f64 = 10.0;

/// Request body compression (`exporter.compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
}

/// Request body encoding (`exporter.encoding`): OTLP/HTTP protobuf or OTLP/HTTP JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Protobuf,
    Json,
}

/// `exporter.retry`: exponential backoff with jitter for 429, 502, 503, 504, timeouts and
/// connection failures.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    #[serde(default = "default_max_elapsed_ms")]
    pub max_elapsed_ms: u64,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            enabled: true,
            initial_backoff_ms: DEFAULT_RETRY_INITIAL_BACKOFF_MS,
            multiplier: DEFAULT_RETRY_MULTIPLIER,
            max_backoff_ms: DEFAULT_RETRY_MAX_BACKOFF_MS,
            max_elapsed_ms: DEFAULT_RETRY_MAX_ELAPSED_MS,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_initial_backoff_ms() -> u64 {
    DEFAULT_RETRY_INITIAL_BACKOFF_MS
}
fn default_multiplier() -> f64 {
    DEFAULT_RETRY_MULTIPLIER
}
fn default_max_backoff_ms() -> u64 {
    DEFAULT_RETRY_MAX_BACKOFF_MS
}
fn default_max_elapsed_ms() -> u64 {
    DEFAULT_RETRY_MAX_ELAPSED_MS
}
fn default_max_queue_bytes() -> u64 {
    DEFAULT_MAX_QUEUE_BYTES
}
fn default_compression() -> Compression {
    DEFAULT_COMPRESSION
}
fn default_encoding() -> Encoding {
    DEFAULT_ENCODING
}

/// Validated `exporter.retry`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub enabled: bool,
    pub initial_backoff: Duration,
    /// Finite, 1 to [`MAX_RETRY_MULTIPLIER`] (validated), so `Eq` holds.
    pub multiplier: f64,
    pub max_backoff: Duration,
    pub max_elapsed: Duration,
}

impl Eq for RetryConfig {}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_backoff: Duration::from_millis(DEFAULT_RETRY_INITIAL_BACKOFF_MS),
            multiplier: DEFAULT_RETRY_MULTIPLIER,
            max_backoff: Duration::from_millis(DEFAULT_RETRY_MAX_BACKOFF_MS),
            max_elapsed: Duration::from_millis(DEFAULT_RETRY_MAX_ELAPSED_MS),
        }
    }
}

/// Headers the exporter sets itself; configuring them is refused.
const RESERVED_EXPORTER_HEADERS: [&str; 5] = [
    "content-type",
    "content-encoding",
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
    #[serde(default = "default_max_export_bytes")]
    pub max_export_bytes: u64,
    #[serde(default = "default_max_queue_bytes")]
    pub max_queue_bytes: u64,
    /// Replaced by `max_queue_bytes`: accepted by the parser only to be refused by name.
    #[serde(default)]
    pub max_queue_size: Option<serde_json::Value>,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default = "default_compression")]
    pub compression: Compression,
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
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
fn default_max_export_bytes() -> u64 {
    DEFAULT_MAX_EXPORT_BYTES
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
    /// Encoded span bytes per export request at most (a single larger span goes alone).
    pub max_export_bytes: u64,
    pub max_queue_bytes: u64,
    pub retry: RetryConfig,
    pub compression: Compression,
    pub encoding: Encoding,
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
        "exporter.max_export_bytes",
        e.max_export_bytes,
        MIN_EXPORT_BYTES,
        MAX_EXPORT_BYTES,
    )?;
    if let Some(v) = &e.max_queue_size {
        return Err(err(
            "exporter.max_queue_size",
            v.to_string(),
            "is replaced by exporter.max_queue_bytes (the queue is bounded in bytes)",
        ));
    }
    check_range(
        "exporter.max_queue_bytes",
        e.max_queue_bytes,
        MIN_QUEUE_BYTES,
        MAX_QUEUE_BYTES,
    )?;
    let r = &e.retry;
    check_range(
        "exporter.retry.initial_backoff_ms",
        r.initial_backoff_ms,
        1,
        MAX_RETRY_BACKOFF_MS,
    )?;
    check_range(
        "exporter.retry.max_backoff_ms",
        r.max_backoff_ms,
        r.initial_backoff_ms,
        MAX_RETRY_BACKOFF_MS,
    )?;
    check_range(
        "exporter.retry.max_elapsed_ms",
        r.max_elapsed_ms,
        1,
        MAX_RETRY_ELAPSED_MS,
    )?;
    if !(1.0..=MAX_RETRY_MULTIPLIER).contains(&r.multiplier) {
        return Err(err(
            "exporter.retry.multiplier",
            r.multiplier.to_string(),
            format!("must be between 1 and {MAX_RETRY_MULTIPLIER}"),
        ));
    }
    let retry = RetryConfig {
        enabled: r.enabled,
        initial_backoff: Duration::from_millis(r.initial_backoff_ms),
        multiplier: r.multiplier,
        max_backoff: Duration::from_millis(r.max_backoff_ms),
        max_elapsed: Duration::from_millis(r.max_elapsed_ms),
    };
    let mut headers = Vec::new();
    for (raw_name, value) in &e.headers {
        let field = format!("exporter.headers.{raw_name}");
        // Header names are case-insensitive: lower-case them rather than refuse.
        let name = raw_name.to_ascii_lowercase();
        if !is_header_name(&name) {
            return Err(err(
                field,
                "<redacted>",
                "header name must be token characters",
            ));
        }
        if headers.iter().any(|(n, _): &(String, Secret)| *n == name) {
            return Err(err(
                field,
                "<redacted>",
                "is listed twice (names are case-insensitive)",
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
        headers.push((name, Secret(v)));
    }
    Ok(ExporterConfig {
        cluster: e.cluster,
        authority,
        path: e.path,
        headers,
        timeout: Duration::from_millis(e.timeout_ms),
        flush_interval: Duration::from_millis(e.flush_interval_ms),
        max_export_batch_size: e.max_export_batch_size,
        max_export_bytes: e.max_export_bytes,
        max_queue_bytes: e.max_queue_bytes,
        retry,
        compression: e.compression,
        encoding: e.encoding,
    })
}
