//! The proxy-wasm host calls of the per-request path, called through the ABI directly so a
//! status the SDK does not expect becomes a [`HostError`] instead of a panic. (The SDK's
//! `hostcalls` panic on any status they do not list, e.g. a header-map write Envoy refuses;
//! a panic aborts the VM, and every later request would go untraced.)
//!
//! Buffers the host returns are allocated through the SDK's exported
//! `proxy_on_memory_allocate` (a `Vec<u8>` it forgets), and are taken back here with
//! `Vec::from_raw_parts`, exactly as the SDK does.

use gateway_tracing_core::host::{HeaderMap, HostError, HostErrorKind};

/// `proxy_status_t` values (proxy-wasm ABI 0.2.1).
const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const BAD_ARGUMENT: u32 = 2;
const SERIALIZATION_FAILURE: u32 = 3;
const PARSE_FAILURE: u32 = 4;
const EMPTY: u32 = 7;
const INTERNAL_FAILURE: u32 = 10;

/// `proxy_map_type_t`: request and response header maps.
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;

#[link(wasm_import_module = "env")]
extern "C" {
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
}

fn error(call: &'static str, status: u32) -> HostError {
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

/// Every pair of a header map, duplicates kept, in order.
pub fn header_map(map_type: u32) -> Result<HeaderMap, HostError> {
    let (mut data, mut size) = (std::ptr::null_mut(), 0usize);
    // SAFETY: out-pointers to locals; the host writes a pointer and a size.
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    match status {
        OK => Ok(take(data, size).map_or_else(HeaderMap::default, HeaderMap::from_abi)),
        s => Err(error("get_header_map_pairs", s)),
    }
}

/// The first value of one header; `Ok(None)` when absent.
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
    match status {
        OK => Ok(()),
        s => Err(error(call, s)),
    }
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
    match status {
        OK => Ok(()),
        s => Err(error("remove_header_map_value", s)),
    }
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
    match status {
        OK => Ok(()),
        s => Err(error("set_property", s)),
    }
}
