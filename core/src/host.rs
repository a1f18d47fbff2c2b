//! The host boundary: everything the core needs from Envoy, as small traits. The wasm module
//! implements them once over proxy-wasm host calls (`filter::proxy_host`); tests implement
//! them with in-memory mocks. Nothing outside `filter` names `proxy_wasm`.

use crate::metrics::Counter;
use std::time::Duration;

/// Per-request host access (one HTTP stream).
pub trait Host {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
    /// 32 random bytes (WASI randomness in Envoy).
    fn random_bytes(&self) -> [u8; 32];
    /// An Envoy attribute (`["xds", "cluster_name"]`), raw bytes as Envoy serialises them;
    /// `Ok(None)` when Envoy has no value for it.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError>;
    /// All request headers, in order, duplicates kept, values as bytes.
    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError>;
    /// Replaces every value of a request header with `value`; `None` removes the header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    /// Adds a response header (response-headers phase only); with `replace`, every existing
    /// value of it is removed first.
    fn add_response_header(
        &mut self,
        name: &str,
        value: &str,
        replace: bool,
    ) -> Result<(), HostError>;
}

/// Sending an export request (`dispatch_http_call`) and steering the flush timer.
pub trait ExportHost {
    /// Starts an HTTP call; returns the host's token for the response callback.
    fn dispatch(&self, req: &ExportRequest<'_>) -> Result<u32, HostError>;
    /// Asks for `on_tick` after `period` (used to flush a full batch promptly).
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError>;
}

/// Envoy stats for the filter's self-metrics.
pub trait Stats {
    fn add(&self, counter: Counter, n: u64);
}

/// One OTLP/HTTP request, ready for the wire. Deliberately not `Debug`: header values may be
/// secrets.
pub struct ExportRequest<'a> {
    pub cluster: &'a str,
    /// Pseudo-headers included (`:method`, `:path`, `:authority`); values may be secrets.
    pub headers: Vec<(&'a str, &'a str)>,
    pub body: &'a [u8],
    pub timeout: Duration,
}

/// What went wrong in a host call: the proxy-wasm ABI's status codes (`proxy_status_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostErrorKind {
    /// `NotFound`: e.g. `dispatch_http_call` to a cluster Envoy does not know.
    NotFound,
    /// `BadArgument`: e.g. a missing `:authority` on an HTTP call, or an unknown cluster.
    BadArgument,
    /// `SerializationFailure` / `ParseFailure`: the host could not hand the value over.
    Serialization,
    /// `Empty`: nothing there (a header map that does not exist in this phase).
    Empty,
    /// `InternalFailure`: the host refused for a reason of its own (e.g. headers already sent).
    Internal,
    /// `Unimplemented`, or any code this crate does not know.
    Other,
}

/// A failed host call: which call, and the kind the host reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    /// The host call, as a short name (`"dispatch_http_call"`).
    pub call: &'static str,
    pub kind: HostErrorKind,
}

impl HostError {
    pub fn new(call: &'static str, kind: HostErrorKind) -> HostError {
        HostError { call, kind }
    }
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}", self.call, self.kind)
    }
}

impl std::error::Error for HostError {}

/// Envoy serialises integer attributes as 8 little-endian bytes.
pub fn property_u64(bytes: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = bytes.try_into().ok()?;
    Some(u64::from_le_bytes(arr))
}

/// A string attribute; `None` when absent, empty, not UTF-8, or when the host call failed
/// (a failed read degrades the span, never the request; the error is logged at debug).
pub fn property_string(read: Result<Option<Vec<u8>>, HostError>) -> Option<String> {
    property_bytes(read)
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| !s.is_empty())
}

/// The bytes of an attribute, logging a failed read at debug level.
pub fn property_bytes(read: Result<Option<Vec<u8>>, HostError>) -> Option<Vec<u8>> {
    match read {
        Ok(v) => v,
        Err(e) => {
            log::debug!("attribute read failed: {e}");
            None
        }
    }
}

/// Helper views over a header list.
pub fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Adapts a header list to the propagation [`Extractor`](crate::propagation::Extractor).
pub struct HeaderList<'a>(pub &'a [(String, Vec<u8>)]);

impl crate::propagation::Extractor for HeaderList<'_> {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }
}

/// Adapts a [`Host`] to the propagation [`Injector`](crate::propagation::Injector). Failures
/// are remembered, not raised: tracing never fails a request.
pub struct HostInjector<'a> {
    pub host: &'a mut dyn Host,
    pub failed: Option<HostError>,
}

impl crate::propagation::Injector for HostInjector<'_> {
    fn set(&mut self, name: &str, value: String) {
        if let Err(e) = self.host.set_request_header(name, Some(&value)) {
            self.failed = Some(e);
        }
    }
    fn remove(&mut self, name: &str) {
        if let Err(e) = self.host.set_request_header(name, None) {
            self.failed = Some(e);
        }
    }
}
