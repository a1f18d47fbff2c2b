//! The host boundary: everything the core needs from Envoy, as small traits. Each glue crate
//! implements them once: the wasm filter over proxy-wasm host calls (`src/proxy_host.rs` at
//! the repository root); tests with in-memory mocks (`testing.rs`). The core itself
//! never names `proxy_wasm`.

use crate::metrics::{Counter, Gauge, Histogram};
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
    /// The first value of one request header (`Ok(None)` when absent): one small host call,
    /// where the whole map would serialise every header.
    fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Every value of one request header joined with `,` (`Ok(None)` when absent): Envoy's
    /// `request.headers.<name>` attribute. One small host call, like [`Host::request_header`],
    /// but a duplicated header still shows (two values, one comma).
    fn request_header_joined(&self, name: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// All request headers, in order, duplicates kept, values as bytes.
    fn request_headers(&self) -> Result<HeaderMap, HostError>;
    /// Replaces every value of a request header with `value`; `None` removes the header.
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError>;
    /// All response headers (log phase), in order, duplicates kept.
    fn response_headers(&self) -> Result<HeaderMap, HostError>;
    /// Sets a filter-state value for this stream (Envoy stores it as `wasm.<key>`).
    fn set_filter_state(&mut self, key: &str, value: &[u8]) -> Result<(), HostError>;
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
    /// A push completed a full batch and the exporter wants `on_tick` soon. A host that can
    /// wake its exporter at once (the native build's worker commits the main thread's tick)
    /// does so and returns `Ok(true)`; the default returns `Ok(false)` and the exporter asks
    /// for its fast tick period instead.
    fn wake_for_full_batch(&self) -> Result<bool, HostError> {
        Ok(false)
    }
}

/// Envoy stats for the filter's self-metrics.
pub trait Stats {
    fn add(&self, counter: Counter, n: u64);
    /// Sets this VM's value of a gauge (Envoy shows the sum over VMs). Default: ignored.
    fn set(&self, _gauge: Gauge, _value: u64) {}
    /// Records one value in a histogram. Default: ignored.
    fn record(&self, _histogram: Histogram, _value: u64) {}
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

/// What came back for an export request, as the exporter needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportResponse<'a> {
    /// The HTTP status; `None` when Envoy reports a failure without one (reset).
    pub status: Option<u16>,
    /// The `retry-after` header as raw bytes, if any: a field value may hold any octet
    /// (RFC 9110 §5.5 obs-text), so it is not assumed to be UTF-8.
    pub retry_after: Option<&'a [u8]>,
    /// The response body (possibly truncated by the host glue).
    pub body: &'a [u8],
    /// The gRPC status fields (OTLP/gRPC), from the trailers or, for a Trailers-Only answer,
    /// the headers.
    pub grpc: GrpcFields<'a>,
}

/// The gRPC fields of an answer, raw, as the host handed them over: trailers first, headers
/// for a Trailers-Only answer. Names: [`GRPC_STATUS`], [`GRPC_MESSAGE`], [`GRPC_STATUS_DETAILS`].
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcFields<'a> {
    pub status: Option<&'a [u8]>,
    pub message: Option<&'a [u8]>,
    pub details: Option<&'a [u8]>,
}

pub const GRPC_STATUS: &str = "grpc-status";
pub const GRPC_MESSAGE: &str = "grpc-message";
pub const GRPC_STATUS_DETAILS: &str = "grpc-status-details-bin";

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

/// Adapts a header map to the propagation [`Extractor`](crate::propagation::Extractor).
pub struct HeaderList<'a>(pub &'a HeaderMap);

impl crate::propagation::Extractor for HeaderList<'_> {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.0.get_all(name).collect()
    }
}

/// The W3C trace-context headers alone (`traceparent`, `tracestate`), read one by one with
/// [`Host::request_header_joined`] instead of the whole header map: what request start needs to
/// decide sampling (see `tracer::start`). Envoy joins duplicates with `,`, so a value is split
/// back at commas: a duplicated `traceparent` is two values here as in the map (a `traceparent`
/// carries no comma), and `tracestate` list members are the same list either way
/// (Level 2 §3.3.1.1: several `tracestate` headers are one list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextHeaders {
    traceparent: Option<Vec<u8>>,
    tracestate: Option<Vec<u8>>,
}

impl ContextHeaders {
    /// Two host calls; an unreadable header counts as absent (a new trace, never a failure).
    pub fn read(host: &dyn Host) -> ContextHeaders {
        let read = |name: &str| {
            host.request_header_joined(name).unwrap_or_else(|e| {
                log::debug!("request header {name} unreadable ({e}); taken as absent");
                None
            })
        };
        ContextHeaders {
            traceparent: read(crate::propagation::TRACEPARENT),
            tracestate: read(crate::propagation::TRACESTATE),
        }
    }
}

impl crate::propagation::Extractor for ContextHeaders {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        let value = match name {
            crate::propagation::TRACEPARENT => &self.traceparent,
            crate::propagation::TRACESTATE => &self.tracestate,
            _ => &None,
        };
        value
            .as_deref()
            .map(|v| v.split(|b| *b == b',').collect())
            .unwrap_or_default()
    }
}

/// A header map as the host hands it over: one buffer in the proxy-wasm ABI's serialisation
/// and the offsets of each name and value, so reading a request's headers costs one
/// allocation for the buffer and one for the index, not two per header.
///
/// The serialisation: `u32` count, `count` pairs of `u32` (name length, value length), then
/// each name and value followed by a NUL. A malformed buffer yields the pairs read so far;
/// never panics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    buf: Vec<u8>,
    /// (name start, name end, value start, value end) into `buf`.
    index: Vec<(usize, usize, usize, usize)>,
}

impl HeaderMap {
    /// Indexes a buffer in the ABI serialisation.
    pub fn from_abi(buf: Vec<u8>) -> HeaderMap {
        let u32_at = |at: usize| -> Option<usize> {
            let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(bytes)).ok()
        };
        let mut index = Vec::new();
        if let Some(count) = u32_at(0) {
            index.reserve(count.min(128));
            let mut p = count.saturating_mul(8).saturating_add(4);
            for n in 0..count {
                let (Some(klen), Some(vlen)) = (u32_at(4 + n * 8), u32_at(8 + n * 8)) else {
                    break;
                };
                let k_end = p.saturating_add(klen);
                let v_start = k_end.saturating_add(1);
                let v_end = v_start.saturating_add(vlen);
                if v_end > buf.len() {
                    break;
                }
                index.push((p, k_end, v_start, v_end));
                p = v_end.saturating_add(1);
            }
        }
        HeaderMap { buf, index }
    }

    /// Builds a map from pairs (tests, and hosts that are not Envoy).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
    ) -> HeaderMap {
        let count = pairs.clone().into_iter().count();
        let mut buf = (count as u32).to_le_bytes().to_vec();
        for (k, v) in pairs.clone() {
            buf.extend_from_slice(&(k.len() as u32).to_le_bytes());
            buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            buf.extend_from_slice(k.as_bytes());
            buf.push(0);
            buf.extend_from_slice(v);
            buf.push(0);
        }
        HeaderMap::from_abi(buf)
    }

    /// Every (name, value), in order, duplicates kept. A name that is not UTF-8 reads as "".
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.index.iter().map(|&(ks, ke, vs, ve)| {
            let k = self
                .buf
                .get(ks..ke)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or("");
            (k, self.buf.get(vs..ve).unwrap_or(&[]))
        })
    }

    /// Every value of `name` (case-insensitive), in order.
    pub fn get_all<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        // Names are compared as bytes: no UTF-8 check of every name on every lookup (a
        // request start looks up about a dozen names). ASCII case folding leaves non-ASCII
        // bytes alone, so only a name byte-equal to the UTF-8 `name` can match, as before.
        self.index
            .iter()
            .filter(move |&&(ks, ke, _, _)| {
                self.buf
                    .get(ks..ke)
                    .is_some_and(|k| k.eq_ignore_ascii_case(name.as_bytes()))
            })
            .map(|&(_, _, vs, ve)| self.buf.get(vs..ve).unwrap_or(&[]))
    }

    /// The first value of `name`, if it is UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

/// Adapts a [`Host`] to the propagation [`Injector`](crate::propagation::Injector). Failures
/// are remembered, not raised: tracing never fails a request.
pub struct HostInjector<'a> {
    pub host: &'a mut dyn Host,
    pub failed: Option<HostError>,
    /// The request headers as read in this same callback: removing a header the request does
    /// not have is skipped (a host call saved on most requests: no `tracestate`, no B3).
    pub present: &'a dyn crate::propagation::Extractor,
}

impl crate::propagation::Injector for HostInjector<'_> {
    fn set(&mut self, name: &str, value: String) {
        if let Err(e) = self.host.set_request_header(name, Some(&value)) {
            self.failed = Some(e);
        }
    }
    fn remove(&mut self, name: &str) {
        if self.present.get_all(name).is_empty() {
            return;
        }
        if let Err(e) = self.host.set_request_header(name, None) {
            self.failed = Some(e);
        }
    }
}

#[cfg(test)]
mod header_map_tests {
    use super::*;

    #[test]
    fn header_map_round_trips_and_malformed_input_never_panics() {
        let pairs: [(&str, &[u8]); 3] = [
            (":path", b"/a"),
            ("traceparent", b"x"),
            ("Traceparent", b"\xff\x80"),
        ];
        let m = HeaderMap::from_pairs(pairs);
        assert_eq!(m.len(), 3);
        assert_eq!(m.iter().collect::<Vec<_>>(), pairs.to_vec());
        assert_eq!(
            m.get_all("TRACEPARENT").collect::<Vec<_>>(),
            [&b"x"[..], b"\xff\x80"]
        );
        assert_eq!(m.get(":path"), Some("/a"));
        assert_eq!(m.get("missing"), None);
        let b = m.buf.clone();
        for cut in 0..b.len() {
            assert!(HeaderMap::from_abi(b[..cut].to_vec()).len() <= 3);
        }
        assert!(HeaderMap::from_abi(vec![0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(HeaderMap::from_abi(Vec::new()).is_empty());
    }
}
