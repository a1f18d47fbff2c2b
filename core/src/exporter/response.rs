//! What a collector's answer means: success, or a [`Failure`] that is retried or not (OTLP/HTTP
//! exporter specification, "Failures" and "Retryable response codes"), and a 2xx answer's
//! `partial_success` (OTLP specification, "Partial Success").

use crate::config::{ExporterConfig, Protocol};
use crate::host::HostErrorKind;
use std::time::Duration;

/// The part of a response body the exporter reads (partial_success, error text).
pub const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Why an export attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The collector (or Envoy's router on its behalf) answered this status.
    Http(u16),
    /// The collector refused the body as too large: 413 Content Too Large (RFC 9110 §15.5.14),
    /// or the OpenTelemetry Collector's own answer to a body over its receiver's
    /// `max_request_body_size`, a 400 whose body says "request body too large" (confighttp,
    /// seen with v0.161.0).
    BodyTooLarge(u16),
    /// No answer within `exporter.timeout_ms` (Envoy's router answers 504 itself).
    Timeout,
    /// Envoy could not connect, or the connection broke before an answer.
    Connection,
    /// `dispatch_http_call` refused the request.
    Dispatch(HostErrorKind),
    /// The exporter could not build the request body.
    Encoding,
    /// An OTLP/gRPC answer with this `grpc-status` (not OK); `message` is the `grpc-message`,
    /// decoded and sanitised; `retry_info`: a `RetryInfo` came with it.
    Grpc {
        code: u32,
        message: String,
        retry_info: bool,
    },
}

impl Failure {
    /// Retried with backoff (OTLP/HTTP: 429, 502, 503, 504; transient network failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            Failure::Http(s) => matches!(s, 429 | 502 | 503 | 504),
            Failure::BodyTooLarge(_) => false,
            Failure::Timeout | Failure::Connection => true,
            Failure::Dispatch(_) => !self.is_unknown_cluster(),
            Failure::Encoding => false,
            Failure::Grpc {
                code, retry_info, ..
            } => super::grpc_status::is_retryable(*code, *retry_info),
        }
    }

    /// The collector refused the request as too large: HTTP 413 (or the Collector's 400 for a
    /// body over its limit), or gRPC RESOURCE_EXHAUSTED
    /// without `RetryInfo` for a message over its receive limit (grpc-go: "received message
    /// larger than max"). The batch is split, not dropped.
    pub fn is_too_large(&self) -> bool {
        match self {
            Failure::BodyTooLarge(_) => true,
            Failure::Grpc {
                code: super::grpc_status::code::RESOURCE_EXHAUSTED,
                message,
                retry_info: false,
            } => message.contains("larger than max"),
            _ => false,
        }
    }

    /// `dispatch_http_call` refused the cluster: a configuration error, not an outage.
    pub fn is_unknown_cluster(&self) -> bool {
        matches!(
            self,
            Failure::Dispatch(HostErrorKind::NotFound | HostErrorKind::BadArgument)
        )
    }

    /// A key for the per-kind log limiter.
    pub(super) fn kind(&self) -> String {
        match self {
            Failure::Http(s) => format!("http {s}"),
            Failure::Grpc { code, .. } => format!("grpc {code}"),
            other => format!("{other:?}"),
        }
    }

    /// One phrase for a log line (never a header value).
    pub fn describe(&self, cfg: &ExporterConfig) -> String {
        match self {
            Failure::Http(s) => format!("HTTP {s}"),
            Failure::BodyTooLarge(s) => format!("HTTP {s} (request body too large)"),
            Failure::Timeout => {
                format!("timeout (no answer within {} ms)", cfg.timeout.as_millis())
            }
            Failure::Connection => {
                "connection failure (refused, reset or no healthy upstream)".into()
            }
            Failure::Dispatch(HostErrorKind::NotFound | HostErrorKind::BadArgument) => format!(
                "exporter cluster '{}' is not defined in Envoy (dispatch_http_call refused it)",
                cfg.cluster
            ),
            Failure::Dispatch(k) => format!("dispatch_http_call failed: {k:?}"),
            Failure::Encoding => "the request body could not be encoded".into(),
            Failure::Grpc { code, message, .. } => format!(
                "gRPC {} ({code}){}{}",
                super::grpc_status::code_name(*code),
                if message.is_empty() { "" } else { ": " },
                message
            ),
        }
    }
}

/// Classifies an answer. Envoy's router answers for the collector when it cannot reach it:
/// 503 "upstream connect error or disconnect/reset before headers" or "no healthy upstream"
/// (connection failure) and 504 "upstream request timeout" (timeout); those are told apart by
/// their body, and a 504 that took the whole timeout is a timeout too.
pub fn classify(
    status: Option<u16>,
    body: &[u8],
    elapsed: Duration,
    timeout: Duration,
) -> Result<(), Failure> {
    match status {
        Some(200..=299) => Ok(()),
        None => Err(if elapsed >= timeout {
            Failure::Timeout
        } else {
            Failure::Connection
        }),
        Some(504) if body.starts_with(b"upstream request timeout") || elapsed >= timeout => {
            Err(Failure::Timeout)
        }
        Some(503)
            if body.starts_with(b"upstream connect error or disconnect/reset before headers")
                || body.starts_with(b"no healthy upstream") =>
        {
            Err(Failure::Connection)
        }
        Some(413) => Err(Failure::BodyTooLarge(413)),
        Some(400) if is_body_too_large(body) => Err(Failure::BodyTooLarge(400)),
        Some(s) => Err(Failure::Http(s)),
    }
}

/// The text Go's `http.MaxBytesReader` error carries, which the OpenTelemetry Collector's
/// OTLP/HTTP receiver answers (as a 400, in a JSON or protobuf `Status`) for a body over its
/// `max_request_body_size`.
const BODY_TOO_LARGE: &[u8] = b"request body too large";

fn is_body_too_large(body: &[u8]) -> bool {
    body.windows(BODY_TOO_LARGE.len())
        .any(|w| w == BODY_TOO_LARGE)
}

/// `partial_success` of a success answer for one protocol: over gRPC, read from the response
/// message inside its length prefix.
pub(super) fn partial_success_of(body: &[u8], protocol: Protocol) -> Option<(u64, String)> {
    match protocol {
        Protocol::Grpc => partial_success(&super::request::grpc_unframe(body)?),
        Protocol::HttpProtobuf | Protocol::HttpJson => partial_success(body),
    }
}

/// `partial_success.rejected_spans` and `error_message` of a 2xx answer, protobuf
/// (`ExportTraceServiceResponse`) or JSON (`{"partialSuccess":{"rejectedSpans":"3",...}}`).
pub fn partial_success(body: &[u8]) -> Option<(u64, String)> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    use prost::Message;
    if body.is_empty() {
        return None;
    }
    if body.first() == Some(&b'{') {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let ps = v
            .get("partialSuccess")
            .or_else(|| v.get("partial_success"))?;
        let rejected = ps
            .get("rejectedSpans")
            .or_else(|| ps.get("rejected_spans"))
            .and_then(|r| {
                r.as_u64()
                    .or_else(|| r.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(0);
        let msg = ps
            .get("errorMessage")
            .or_else(|| ps.get("error_message"))
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string();
        return Some((rejected, msg)).filter(|(r, m)| *r > 0 || !m.is_empty());
    }
    let resp = ExportTraceServiceResponse::decode(body).ok()?;
    let ps = resp.partial_success?;
    let rejected = u64::try_from(ps.rejected_spans).unwrap_or(0);
    Some((rejected, ps.error_message)).filter(|(r, m)| *r > 0 || !m.is_empty())
}
