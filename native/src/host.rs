//! The core's per-request [`Host`] over the dynamic-module ABI: one HTTP stream's headers,
//! attributes and filter state, each a plain C call into Envoy. Every failure is a
//! [`HostError`]; nothing here can panic on what Envoy hands back.

use crate::ffi::{self, attribute, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, ModuleBuffer};
use gateway_tracing_core::host::{HeaderMap, Host, HostError, HostErrorKind};
use gateway_tracing_core::ids::IdGenerator;
use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// The filter state key prefix: the wasm build's values are `wasm.<key>` in Envoy (what
/// proxy-wasm names them), so the native build stores them under the same names and an
/// access-log format such as `%FILTER_STATE(wasm.gateway_tracing.trace_id:PLAIN)%` works with
/// either build.
pub const FILTER_STATE_PREFIX: &str = "wasm.";

pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

thread_local! {
    /// This worker thread's id generator ([`IdGenerator`]), seeded once.
    static IDS: Cell<Option<IdGenerator>> = const { Cell::new(None) };
}

/// A seed from std's per-process random keys (`RandomState`, from the OS), the clock and the
/// thread, so workers never share a sequence.
fn seed() -> IdGenerator {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_nanos());
    h.write_u64(std::ptr::addr_of!(h) as u64);
    std::hash::Hash::hash(&std::thread::current().id(), &mut h);
    IdGenerator::from_seed(h.finish())
}

/// 32 random bytes from this thread's generator.
pub fn random_bytes() -> [u8; 32] {
    let mut ids = IDS.get().unwrap_or_else(seed);
    let bytes = ids.random_bytes();
    IDS.set(Some(ids));
    bytes
}

/// How an attribute is read: Envoy's integer attributes come back as a `u64`, which the core
/// expects as 8 little-endian bytes (as proxy-wasm serialises them).
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
}

/// The attribute id of a property path the core asks for.
fn attribute_of(path: &[&str]) -> Option<(u32, Kind)> {
    Some(match path {
        ["xds", "cluster_name"] => (attribute::XDS_CLUSTER_NAME, Kind::Str),
        ["connection", "tls_version"] => (attribute::CONNECTION_TLS_VERSION, Kind::Str),
        ["request", "protocol"] => (attribute::REQUEST_PROTOCOL, Kind::Str),
        ["response", "code"] => (attribute::RESPONSE_CODE, Kind::Int),
        ["response", "code_details"] => (attribute::RESPONSE_CODE_DETAILS, Kind::Str),
        ["response", "flags"] => (attribute::RESPONSE_FLAGS, Kind::Int),
        ["source", "address"] => (attribute::SOURCE_ADDRESS, Kind::Str),
        ["upstream", "address"] => (attribute::UPSTREAM_ADDRESS, Kind::Str),
        ["upstream", "tls_version"] => (attribute::UPSTREAM_TLS_VERSION, Kind::Str),
        ["upstream", "transport_failure_reason"] => {
            (attribute::UPSTREAM_TRANSPORT_FAILURE_REASON, Kind::Str)
        }
        ["upstream", "request_attempt_count"] => {
            (attribute::UPSTREAM_REQUEST_ATTEMPT_COUNT, Kind::Int)
        }
        _ => return None,
    })
}

/// One HTTP stream of Envoy, for the duration of one event hook.
pub struct NativeHost {
    pub filter: FilterEnvoyPtr,
    /// A fixed clock reading for this hook (`None`: the system clock).
    pub now: Option<u64>,
    /// `upstream.address` when Envoy no longer has it (an upstream filter being destroyed).
    pub upstream_address: Option<String>,
}

impl NativeHost {
    pub fn new(filter: FilterEnvoyPtr) -> NativeHost {
        NativeHost {
            filter,
            now: None,
            upstream_address: None,
        }
    }

    /// Every value of a header in `header_type`'s map, in order.
    fn header_values(&self, header_type: u32, name: &str) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut count = 0usize;
        let mut index = 0usize;
        loop {
            let mut buf = EnvoyBuffer::empty();
            // SAFETY: a live filter pointer for this hook; `name` outlives the call; the out
            // pointers point at locals.
            let found = unsafe {
                ffi::envoy_dynamic_module_callback_http_get_header(
                    self.filter,
                    header_type,
                    ModuleBuffer::of(name.as_bytes()),
                    &mut buf,
                    index,
                    &mut count,
                )
            };
            // SAFETY: Envoy filled `buf` in this hook.
            match (found, unsafe { buf.bytes() }) {
                (true, Some(v)) => out.push(v.to_vec()),
                (true, None) => out.push(Vec::new()),
                (false, _) => break,
            }
            index += 1;
            if index >= count {
                break;
            }
        }
        out
    }

    /// One attribute by id, as the core expects its bytes.
    fn attribute(&self, id: u32, kind: Kind) -> Result<Option<Vec<u8>>, HostError> {
        match kind {
            Kind::Str => {
                let mut buf = EnvoyBuffer::empty();
                // SAFETY: a live filter pointer; `buf` is a local.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                        self.filter,
                        id,
                        &mut buf,
                    )
                };
                // SAFETY: Envoy filled `buf` in this hook.
                Ok(ok
                    .then(|| unsafe { buf.bytes() }.map(<[u8]>::to_vec))
                    .flatten())
            }
            Kind::Int => {
                let mut v = 0u64;
                // SAFETY: a live filter pointer; `v` is a local.
                let ok = unsafe {
                    ffi::envoy_dynamic_module_callback_http_filter_get_attribute_int(
                        self.filter,
                        id,
                        &mut v,
                    )
                };
                Ok(ok.then(|| v.to_le_bytes().to_vec()))
            }
        }
    }

    fn header_map(&self, header_type: u32, call: &'static str) -> Result<HeaderMap, HostError> {
        // SAFETY: a live filter pointer for this hook.
        let n = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_headers_size(self.filter, header_type)
        };
        if n == 0 {
            return Ok(HeaderMap::default());
        }
        let empty = EnvoyHttpHeader {
            key_ptr: std::ptr::null(),
            key_length: 0,
            value_ptr: std::ptr::null(),
            value_length: 0,
        };
        let mut raw = vec![empty; n];
        // SAFETY: `raw` has room for the `n` headers Envoy just counted (same hook, no write
        // in between).
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_get_headers(
                self.filter,
                header_type,
                raw.as_mut_ptr(),
            )
        };
        if !ok {
            return Err(HostError::new(call, HostErrorKind::Empty));
        }
        let pairs: Vec<(&str, &[u8])> = raw
            .iter()
            .map(|h| {
                // SAFETY: Envoy filled these buffers in this hook.
                let key = unsafe {
                    EnvoyBuffer {
                        ptr: h.key_ptr,
                        length: h.key_length,
                    }
                    .bytes()
                }
                .and_then(|k| std::str::from_utf8(k).ok())
                .unwrap_or("");
                // SAFETY: as above.
                let value = unsafe {
                    EnvoyBuffer {
                        ptr: h.value_ptr,
                        length: h.value_length,
                    }
                    .bytes()
                }
                .unwrap_or(&[]);
                (key, value)
            })
            .collect();
        Ok(HeaderMap::from_pairs(pairs))
    }

    fn write_header(
        &self,
        call: &'static str,
        header_type: u32,
        name: &str,
        value: Option<&str>,
        add: bool,
    ) -> Result<(), HostError> {
        let value = value.map_or_else(ModuleBuffer::null, |v| ModuleBuffer::of(v.as_bytes()));
        let key = ModuleBuffer::of(name.as_bytes());
        // SAFETY: a live filter pointer; both buffers outlive the call.
        let ok = unsafe {
            if add {
                ffi::envoy_dynamic_module_callback_http_add_header(
                    self.filter,
                    header_type,
                    key,
                    value,
                )
            } else {
                ffi::envoy_dynamic_module_callback_http_set_header(
                    self.filter,
                    header_type,
                    key,
                    value,
                )
            }
        };
        if ok {
            Ok(())
        } else {
            Err(HostError::new(call, HostErrorKind::Internal))
        }
    }
}

impl Host for NativeHost {
    fn now_nanos(&self) -> u64 {
        self.now.unwrap_or_else(now_nanos)
    }

    fn random_bytes(&self) -> [u8; 32] {
        random_bytes()
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        let Some((id, kind)) = attribute_of(path) else {
            return Err(HostError::new("get_attribute", HostErrorKind::Other));
        };
        let value = self.attribute(id, kind)?;
        if value.is_none() && id == attribute::UPSTREAM_ADDRESS {
            return Ok(self
                .upstream_address
                .as_ref()
                .map(|a| a.as_bytes().to_vec()));
        }
        Ok(value)
    }

    fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .header_values(ffi::REQUEST_HEADER, name)
            .into_iter()
            .next())
    }

    /// Every value joined with `,`, as Envoy's `request.headers.<name>` attribute gives it to
    /// the wasm build.
    fn request_header_joined(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        let values = self.header_values(ffi::REQUEST_HEADER, name);
        if values.is_empty() {
            return Ok(None);
        }
        Ok(Some(values.join(&b","[..])))
    }

    fn request_headers(&self) -> Result<HeaderMap, HostError> {
        self.header_map(ffi::REQUEST_HEADER, "get_headers")
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        // `http_set_header` replaces every value with one, or removes the header (null value).
        self.write_header("set_header", ffi::REQUEST_HEADER, name, value, false)
    }

    fn response_headers(&self) -> Result<HeaderMap, HostError> {
        self.header_map(ffi::RESPONSE_HEADER, "get_headers")
    }

    fn set_filter_state(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        let key = format!("{FILTER_STATE_PREFIX}{key}");
        // SAFETY: a live filter pointer; both buffers outlive the call.
        let ok = unsafe {
            ffi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.filter,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        };
        if ok {
            Ok(())
        } else {
            Err(HostError::new("set_filter_state", HostErrorKind::Internal))
        }
    }

    fn add_response_header(
        &mut self,
        name: &str,
        value: &str,
        replace: bool,
    ) -> Result<(), HostError> {
        self.write_header(
            "add_header",
            ffi::RESPONSE_HEADER,
            name,
            Some(value),
            !replace,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_between_threads_and_calls() {
        let a = random_bytes();
        let b = random_bytes();
        assert_ne!(a, b);
        let c = std::thread::spawn(random_bytes).join().unwrap();
        assert_ne!(a, c);
        assert_ne!(b, c);
    }

    #[test]
    fn every_property_the_core_reads_has_an_attribute() {
        // Every path `core` passes to `Host::property` (grep `host.property(`).
        for path in [
            &["xds", "cluster_name"][..],
            &["connection", "tls_version"],
            &["request", "protocol"],
            &["response", "code"],
            &["response", "code_details"],
            &["response", "flags"],
            &["source", "address"],
            &["upstream", "address"],
            &["upstream", "tls_version"],
            &["upstream", "transport_failure_reason"],
            &["upstream", "request_attempt_count"],
        ] {
            assert!(attribute_of(path).is_some(), "{path:?}");
        }
        assert!(attribute_of(&["request", "nope"]).is_none());
    }
}
