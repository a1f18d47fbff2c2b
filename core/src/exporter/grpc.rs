//! What an OTLP/gRPC answer means: its `grpc-status` (trailers, or headers for a Trailers-Only
//! answer), `grpc-message` and `grpc-status-details-bin` read into success or a [`Failure`],
//! retried as the OTLP specification says ("OTLP/gRPC Response", "Failures": UNAVAILABLE,
//! DEADLINE_EXCEEDED, ABORTED, CANCELLED, OUT_OF_RANGE, DATA_LOSS, and RESOURCE_EXHAUSTED only
//! with a `RetryInfo`, are retryable; every other code is not), and the delay a `RetryInfo`
//! asks for.

use super::grpc_status::code;
use super::response::{classify, Failure};
use crate::host::ExportResponse;
use std::time::Duration;

/// Classifies an OTLP/gRPC answer; on failure, also the `RetryInfo` delay, if one came.
///
/// - No HTTP answer (a reset): a connection failure, or a timeout when it took the timeout.
/// - `grpc-status: 0`: success. Another code: [`Failure::Grpc`], except Envoy's own answers
///   for an unreachable or slow collector (UNAVAILABLE "upstream connect error…", "no healthy
///   upstream", "upstream request timeout"), which are connection failures and timeouts as
///   over OTLP/HTTP.
/// - No `grpc-status` and an HTTP status other than 200: not a gRPC answer (a proxy's or
///   Envoy's HTTP reply): classified as OTLP/HTTP would be (the gRPC spec maps 429, 502, 503,
///   504 to UNAVAILABLE, the same retry set).
/// - No `grpc-status`, HTTP 200 and a complete response message: success. A host that does not
///   hand trailers over (Envoy's dynamic-module HTTP callout) shows a gRPC OK answer this way;
///   a failure comes Trailers-Only, its status in the headers, which every host hands over.
/// - No `grpc-status`, HTTP 200, no message: INTERNAL (a broken answer, not retried).
pub fn classify_grpc(
    resp: &ExportResponse<'_>,
    elapsed: Duration,
    timeout: Duration,
) -> Result<(), (Failure, Option<Duration>)> {
    let g = &resp.grpc;
    let Some(status) = resp.status else {
        return classify(None, resp.body, elapsed, timeout).map_err(|f| (f, None));
    };
    let Some(raw) = g.status else {
        if status != 200 {
            return classify(Some(status), resp.body, elapsed, timeout).map_err(|f| (f, None));
        }
        if super::request::grpc_unframe(resp.body).is_some() {
            return Ok(());
        }
        let failure = Failure::Grpc {
            code: code::INTERNAL,
            message: "the answer carried no grpc-status and no message".into(),
            retry_info: false,
        };
        return Err((failure, None));
    };
    let code = std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(code::UNKNOWN);
    if code == code::OK {
        return Ok(());
    }
    let message = g.message.map(percent_decode).unwrap_or_default();
    if code == code::UNAVAILABLE
        && (message.starts_with("upstream connect error or disconnect/reset before headers")
            || message.starts_with("no healthy upstream"))
    {
        return Err((Failure::Connection, None));
    }
    if message.starts_with("upstream request timeout")
        || (code == code::DEADLINE_EXCEEDED && elapsed >= timeout)
    {
        return Err((Failure::Timeout, None));
    }
    let retry_delay = g.details.and_then(retry_delay);
    let failure = Failure::Grpc {
        code,
        message: super::diagnostics::sanitize(&message),
        retry_info: retry_delay.is_some(),
    };
    Err((failure, retry_delay))
}

/// `grpc-message` is percent-encoded UTF-8 (gRPC over HTTP/2, "Responses"); a malformed
/// escape or byte is kept as is, lossily.
pub fn percent_decode(raw: &[u8]) -> String {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let escaped = (b == b'%')
            .then(|| Some((hex(*raw.get(i + 1)?)?, hex(*raw.get(i + 2)?)?)))
            .flatten();
        match escaped {
            Some((hi, lo)) => {
                out.push(hi << 4 | lo);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `google.rpc.Status` (only `details` is read).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RpcStatus {
    #[prost(message, repeated, tag = "3")]
    pub(super) details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Any {
    #[prost(string, tag = "1")]
    pub(super) type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(super) value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub(super) retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub(super) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(super) nanos: i32,
}

pub(super) const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The `RetryInfo.retry_delay` in a `grpc-status-details-bin` value (base64 of a
/// `google.rpc.Status`); `Some(ZERO)` for a `RetryInfo` without a delay, `None` without one.
pub fn retry_delay(details_bin: &[u8]) -> Option<Duration> {
    use prost::Message;
    let status = RpcStatus::decode(base64_decode(details_bin)?.as_slice()).ok()?;
    let info = status
        .details
        .iter()
        .find(|a| a.type_url == RETRY_INFO_TYPE)?;
    let info = RetryInfo::decode(info.value.as_slice()).ok()?;
    Some(info.retry_delay.map_or(Duration::ZERO, |d| {
        let secs = u64::try_from(d.seconds).unwrap_or(0);
        let nanos = u32::try_from(d.nanos).unwrap_or(0).min(999_999_999);
        Duration::new(secs, nanos)
    }))
}

/// Base64 as gRPC sends `-bin` values: standard alphabet, padding optional.
fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        }))
    };
    let s: Vec<u8> = s
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let s = s.strip_suffix(b"==").or(s.strip_suffix(b"=")).unwrap_or(&s);
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}
