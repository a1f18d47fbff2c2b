//! Every proxy-wasm host call the filter makes, request path and root path alike, called
//! through the raw ABI (`proxy_*` imports, ABI 0.2.1) so that any status the host returns
//! becomes a [`HostError`] (one mapping: [`error`]) instead of a panic, and every value comes
//! back as bytes, never as a `String` that would have to be valid UTF-8. (The SDK's
//! `hostcalls` panic on statuses they do not list and unwrap UTF-8 conversions; a panic aborts
//! the VM and every later request of the worker goes untraced.)
//!
//! Buffers the host returns are allocated through our exported `proxy_on_memory_allocate`
//! (`dispatch.rs`: a `Vec<u8>` it forgets) and are taken back here with `Vec::from_raw_parts`.

use gateway_tracing_core::host::{HeaderMap, HostError, HostErrorKind};
use std::time::Duration;

/// `proxy_status_t` values (proxy-wasm ABI 0.2.1).
const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const BAD_ARGUMENT: u32 = 2;
const SERIALIZATION_FAILURE: u32 = 3;
const PARSE_FAILURE: u32 = 4;
const EMPTY: u32 = 7;
const INTERNAL_FAILURE: u32 = 10;

/// `proxy_map_type_t`: the header maps the filter reads.
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const HTTP_CALL_RESPONSE_TRAILERS: u32 = 7;

/// `proxy_buffer_type_t`: the buffers the filter reads.
pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const PLUGIN_CONFIGURATION: u32 = 7;

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy)]
pub enum MetricType {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

/// `proxy_log_level_t`.
pub const LOG_TRACE: u32 = 0;
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name: *const u8,
        name_size: usize,
        id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_done() -> u32;
}

/// The one mapping from a `proxy_status_t` to the core's typed host error. Any code, known
/// or not, maps to a kind: the host decides the number, we never trust it to be one we list.
pub fn error(call: &'static str, status: u32) -> HostError {
    let kind = match status {
        NOT_FOUND => HostErrorKind::NotFound,
        BAD_ARGUMENT => HostErrorKind::BadArgument,
        SERIALIZATION_FAILURE | PARSE_FAILURE => HostErrorKind::Serialization,
        EMPTY => HostErrorKind::Empty,
        INTERNAL_FAILURE => HostErrorKind::Internal,
        _ => HostErrorKind::Other,
    };
    HostError::new(call, kind)
}

fn ok(call: &'static str, status: u32) -> Result<(), HostError> {
    match status {
        OK => Ok(()),
        s => Err(error(call, s)),
    }
}

/// Takes ownership of a host-allocated buffer (`None` for a null pointer).
fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: the host filled `data` with a buffer of `size` bytes obtained from our
    // `proxy_on_memory_allocate`, i.e. `Vec::<u8>::with_capacity(size)` leaked; we are its
    // only owner now.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// A property path as the ABI wants it: segments joined by NUL.
fn property_path(path: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// A header map in the ABI's serialisation: `u32` count, `count` pairs of `u32` (name length,
/// value length), then each name and value followed by a NUL.
pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| 10 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32::try_from(pairs.len()).unwrap_or(u32::MAX).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Writes one line to Envoy's log. A refused write is dropped (there is nowhere else to say it).
pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length of a live string.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Envoy's current `wasm` log level (`LOG_*`).
pub fn log_level() -> Result<u32, HostError> {
    let mut level = 0u32;
    // SAFETY: out-pointer to a local.
    ok("get_log_level", unsafe { proxy_get_log_level(&mut level) })?;
    Ok(level)
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn current_time_nanos() -> Result<u64, HostError> {
    let mut t = 0u64;
    // SAFETY: out-pointer to a local.
    ok("get_current_time_nanoseconds", unsafe {
        proxy_get_current_time_nanoseconds(&mut t)
    })?;
    Ok(t)
}

/// Asks for `proxy_on_tick` every `period` (rounded down to milliseconds; 0 stops the timer).
pub fn set_tick_period(period: Duration) -> Result<(), HostError> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    ok("set_tick_period_milliseconds", unsafe {
        proxy_set_tick_period_milliseconds(ms)
    })
}

/// Up to `max_size` bytes of a host buffer from `start`; `Ok(None)` when there is none.
pub fn buffer(
    buffer_type: u32,
    start: usize,
    max_size: usize,
) -> Result<Option<Vec<u8>>, HostError> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: out-pointers to locals; the host writes a pointer and a size.
    let status =
        unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    match status {
        OK => Ok(take(data, size)),
        NOT_FOUND => Ok(None),
        s => Err(error("get_buffer_bytes", s)),
    }
}

/// Every pair of a header map, duplicates kept, in order (a malformed buffer yields the pairs
/// read so far).
pub fn header_map(map_type: u32) -> Result<HeaderMap, HostError> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: out-pointers to locals; the host writes a pointer and a size.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    match status {
        OK => Ok(take(data, size).map_or_else(HeaderMap::default, HeaderMap::from_abi)),
        s => Err(error("get_header_map_pairs", s)),
    }
}

/// The first value of one header, as bytes; `Ok(None)` when absent.
pub fn header_value(map_type: u32, name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: pointer and length of a live slice; out-pointers to locals.
    let status = unsafe {
        proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match status {
        OK => Ok(take(data, size)),
        NOT_FOUND => Ok(None),
        s => Err(error("get_header_map_value", s)),
    }
}

/// A header write (`proxy_replace_header_map_value` / `proxy_add_header_map_value`).
type HeaderWrite = unsafe extern "C" fn(u32, *const u8, usize, *const u8, usize) -> u32;

fn write_header(
    call: &'static str,
    f: HeaderWrite,
    map_type: u32,
    name: &str,
    value: &str,
) -> Result<(), HostError> {
    // SAFETY: pointers and lengths of live slices.
    let status = unsafe {
        f(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    ok(call, status)
}

/// Replaces every value of a header with one value.
pub fn replace_header(map_type: u32, name: &str, value: &str) -> Result<(), HostError> {
    write_header(
        "replace_header_map_value",
        proxy_replace_header_map_value,
        map_type,
        name,
        value,
    )
}

/// Adds one value of a header (keeping any others).
pub fn add_header(map_type: u32, name: &str, value: &str) -> Result<(), HostError> {
    write_header(
        "add_header_map_value",
        proxy_add_header_map_value,
        map_type,
        name,
        value,
    )
}

/// Removes every value of a header.
pub fn remove_header(map_type: u32, name: &str) -> Result<(), HostError> {
    // SAFETY: pointer and length of a live slice.
    let status = unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) };
    ok("remove_header_map_value", status)
}

/// An Envoy attribute; `Ok(None)` when Envoy has none.
pub fn property(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let p = property_path(path);
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: pointer and length of a live buffer; out-pointers to locals.
    let status = unsafe { proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) };
    match status {
        OK => Ok(take(data, size)),
        NOT_FOUND => Ok(None),
        s => Err(error("get_property", s)),
    }
}

/// Sets a property (for a stream: filter state, which Envoy names `wasm.<path>`).
pub fn set_property(path: &[&str], value: &[u8]) -> Result<(), HostError> {
    let p = property_path(path);
    // SAFETY: pointers and lengths of live buffers.
    let status = unsafe { proxy_set_property(p.as_ptr(), p.len(), value.as_ptr(), value.len()) };
    ok("set_property", status)
}

/// Starts an HTTP call to `cluster`; returns the host's token for `proxy_on_http_call_response`.
pub fn http_call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, HostError> {
    let headers = serialize_map(headers);
    let trailers = serialize_map(&[]);
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut token = 0u32;
    // SAFETY: pointers and lengths of live buffers; out-pointer to a local.
    let status = unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            timeout_ms,
            &mut token,
        )
    };
    ok("http_call", status)?;
    Ok(token)
}

/// Defines a metric; returns its id.
pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, HostError> {
    let mut id = 0u32;
    // SAFETY: pointer and length of a live string; out-pointer to a local.
    let status = unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
    ok("define_metric", status)?;
    Ok(id)
}

/// Adds `offset` (may be negative: gauges) to a counter or gauge.
pub fn increment_metric(id: u32, offset: i64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    ok("increment_metric", unsafe {
        proxy_increment_metric(id, offset)
    })
}

/// Records one histogram value.
pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    ok("record_metric", unsafe { proxy_record_metric(id, value) })
}

/// Tells the host that a root context which answered `false` to `proxy_on_done` is done.
pub fn done() -> Result<(), HostError> {
    // SAFETY: no pointers.
    ok("done", unsafe { proxy_done() })
}
