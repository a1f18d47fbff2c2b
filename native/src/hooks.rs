//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`), exported by name. Envoy 1.40
//! refuses to load an HTTP filter module that lacks any `on_http_filter_*` hook, so every one
//! is here, most of them doing nothing (`tests/abi_symbols.rs` checks the list against the
//! names the Envoy binary looks up).
//!
//! **Never take Envoy down.** This code runs unsandboxed in Envoy's process. Every hook runs its
//! body inside [`guard`](crate::guard::guard): a panic is caught at the FFI boundary (the crate is built with
//! `panic = "unwind"`, profile `native`), the request passes untraced (the stream's trace is
//! dropped, every later hook of that stream does nothing), the panic is counted in
//! `gateway_tracing.native_panics`, and the first one is logged with its message and location.

// The hooks are called by Envoy only, with the pointers the ABI promises (or null, which every
// hook checks); that contract is their safety contract, so they are not `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::ffi::{EnvoyBuffer, EnvoyHttpHeader, FilterConfigEnvoyPtr, FilterEnvoyPtr};
use crate::filter::Filter;
use crate::guard::{first_panic_logged, guard};
use crate::process::{Process, EVENT_TICK};
use gateway_tracing_core::config;
use gateway_tracing_core::host::{GrpcFields, GRPC_MESSAGE, GRPC_STATUS, GRPC_STATUS_DETAILS};
use std::ffi::c_void;
use std::panic::catch_unwind;
use std::sync::Arc;

/// The ABI version this module was written against: the string Envoy 1.40.0 itself carries
/// (its log says "Dynamic module ABI version v0.2.0 matched." for this module). Envoy only warns
/// on a mismatch; the symbol check, not this string, is what proves the declarations fit.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `on_*_status_Continue` for every header/body/trailer hook.
const CONTINUE: u32 = 0;

/// Program start: the panic hook stays quiet (the guard logs), the logger forwards to Envoy.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    let ok = catch_unwind(|| {
        crate::logger::install();
        std::panic::set_hook(Box::new(|info| {
            if !first_panic_logged() {
                log::error!(
                    "gateway-tracing panicked at {:?}",
                    info.location().map(|l| (l.file(), l.line()))
                );
            }
        }));
    });
    if ok.is_err() {
        return std::ptr::null();
    }
    ABI_VERSION.as_ptr()
}

// ------------------------------------------------------------------ filter config

/// The filter config (`filter_config` of `DynamicModuleFilter`): the same JSON as the wasm
/// build's plugin configuration. A bad one is refused (null) with one log line naming the field.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: FilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guard("on_http_filter_config_new", None, std::ptr::null(), || {
        // SAFETY: Envoy passes the config bytes for the duration of this hook.
        let bytes = unsafe { config.bytes() }.unwrap_or(&[]);
        let env = |name: &str| std::env::var(name).ok();
        let config = match config::parse(bytes, &env) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{e}");
                return std::ptr::null();
            }
        };
        Arc::into_raw(Process::new(envoy, config)) as *const c_void
    })
}

/// # Safety
/// `ptr` is a pointer this module returned from `on_http_filter_config_new`.
unsafe fn process_ref<'a>(ptr: *const c_void) -> Option<&'a Process> {
    // SAFETY: per the contract, a live `Arc<Process>` raw pointer (or null).
    unsafe { (ptr as *const Process).as_ref() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if config.is_null() {
        return;
    }
    // SAFETY: the pointer `on_http_filter_config_new` returned, destroyed once.
    let process = unsafe { Arc::from_raw(config as *const Process) };
    guard("on_http_filter_config_destroy", Some(&process), (), || {
        process.shutdown()
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: FilterConfigEnvoyPtr,
    config: *const c_void,
    event_id: u64,
) {
    // SAFETY: Envoy passes the pointer `on_http_filter_config_new` returned.
    let Some(p) = (unsafe { process_ref(config) }) else {
        return;
    };
    guard("on_http_filter_config_scheduled", Some(p), (), || {
        if event_id == EVENT_TICK {
            crate::logger::follow_envoy_level();
            p.on_tick();
            crate::bootstrap::check_shutdown();
        }
    });
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: FilterConfigEnvoyPtr,
    config: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: Envoy passes the pointer `on_http_filter_config_new` returned.
    let Some(p) = (unsafe { process_ref(config) }) else {
        return;
    };
    guard(
        "on_http_filter_config_http_callout_done",
        Some(p),
        (),
        || {
            let headers: &[EnvoyHttpHeader] = if headers.is_null() || headers_size == 0 {
                &[]
            } else {
                // SAFETY: Envoy passes `headers_size` headers, valid for this hook.
                unsafe { std::slice::from_raw_parts(headers, headers_size) }
            };
            let header = |name: &str| -> Option<&[u8]> {
                headers.iter().find_map(|h| {
                    // SAFETY: buffers of the headers above.
                    let k = unsafe {
                        EnvoyBuffer {
                            ptr: h.key_ptr,
                            length: h.key_length,
                        }
                        .bytes()
                    }?;
                    if !k.eq_ignore_ascii_case(name.as_bytes()) {
                        return None;
                    }
                    // SAFETY: as above.
                    unsafe {
                        EnvoyBuffer {
                            ptr: h.value_ptr,
                            length: h.value_length,
                        }
                        .bytes()
                    }
                })
            };
            let status = if result == crate::ffi::CALLOUT_SUCCESS {
                header(":status")
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<u16>().ok())
            } else {
                None
            };
            let mut body = Vec::new();
            if !body_chunks.is_null() {
                // SAFETY: Envoy passes `body_chunks_size` buffers, valid for this hook.
                let chunks = unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) };
                for c in chunks {
                    if body.len() >= gateway_tracing_core::exporter::MAX_RESPONSE_BODY {
                        break;
                    }
                    // SAFETY: as above.
                    if let Some(b) = unsafe { c.bytes() } {
                        body.extend_from_slice(b);
                    }
                }
            }
            // The callout hands over headers, not trailers: a gRPC failure comes Trailers-Only
            // (its status in these headers); an OK answer's status, in the trailers, is not
            // seen, and the core takes a complete response message as OK.
            let grpc = GrpcFields {
                status: header(GRPC_STATUS),
                message: header(GRPC_MESSAGE),
                details: header(GRPC_STATUS_DETAILS),
            };
            p.on_response(callout_id, status, header("retry-after"), grpc, &body);
            crate::bootstrap::check_shutdown();
        },
    );
}

// ------------------------------------------------------------------ per stream

/// # Safety
/// `ptr` is a pointer this module returned from `on_http_filter_new`, not yet destroyed.
unsafe fn filter_mut<'a>(ptr: *const c_void) -> Option<&'a mut Filter> {
    // SAFETY: per the contract; Envoy calls a stream's hooks on one thread, one at a time.
    unsafe { (ptr as *mut Filter).as_mut() }
}

/// Runs a stream hook; after a panic the stream's trace is dropped (fail open).
fn stream_hook(hook: &'static str, ptr: *const c_void, body: impl FnOnce(&mut Filter)) {
    // SAFETY: Envoy passes the pointer `on_http_filter_new` returned.
    let Some(f) = (unsafe { filter_mut(ptr) }) else {
        return;
    };
    let process = Arc::clone(&f.process);
    let ok = guard(hook, Some(&process), false, || {
        body(f);
        true
    });
    if !ok {
        // SAFETY: as above; the closure that borrowed it has ended.
        if let Some(f) = unsafe { filter_mut(ptr) } {
            f.abandon();
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    envoy: FilterEnvoyPtr,
) -> *const c_void {
    // SAFETY: Envoy passes the pointer `on_http_filter_config_new` returned.
    let Some(p) = (unsafe { process_ref(config) }) else {
        return std::ptr::null();
    };
    guard("on_http_filter_new", Some(p), std::ptr::null(), || {
        // SAFETY: `config` is a live `Arc<Process>` pointer; take one more reference.
        let process = unsafe {
            Arc::increment_strong_count(config as *const Process);
            Arc::from_raw(config as *const Process)
        };
        Box::into_raw(Box::new(Filter::new(process, envoy))) as *const c_void
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    stream_hook("on_http_filter_destroy", filter, Filter::destroy);
    if filter.is_null() {
        return;
    }
    let _ = catch_unwind(|| {
        // SAFETY: the pointer `on_http_filter_new` returned, destroyed once, after its last use.
        drop(unsafe { Box::from_raw(filter as *mut Filter) });
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    stream_hook("on_http_filter_request_headers", filter, |f| {
        f.request_headers(envoy)
    });
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    filter: *const c_void,
    end_of_stream: bool,
) -> u32 {
    stream_hook("on_http_filter_response_headers", filter, |f| {
        f.response_headers(envoy, end_of_stream)
    });
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    filter: *const c_void,
    end_of_stream: bool,
) -> u32 {
    if end_of_stream {
        stream_hook("on_http_filter_response_body", filter, Filter::response_end);
    }
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    filter: *const c_void,
) -> u32 {
    stream_hook(
        "on_http_filter_response_trailers",
        filter,
        Filter::response_end,
    );
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: FilterEnvoyPtr,
    filter: *const c_void,
) {
    stream_hook("on_http_filter_stream_complete", filter, |f| {
        f.stream_complete(envoy)
    });
}

// ------------------------------------------------------------------ hooks this module does not use
//
// Envoy resolves all of these when it loads an HTTP filter module; none is ever triggered by
// this module (no per-stream callouts, streams, schedulers or per-route configs).

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    log::error!("per-route configuration is not supported by gateway_tracing");
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _envoy: FilterConfigEnvoyPtr,
    _config: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _envoy: FilterConfigEnvoyPtr,
    _config: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _envoy: FilterConfigEnvoyPtr,
    _config: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _envoy: FilterConfigEnvoyPtr,
    _config: *const c_void,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _envoy: FilterConfigEnvoyPtr,
    _config: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abi_version_is_a_c_string() {
        assert_eq!(ABI_VERSION.last(), Some(&0));
        assert_eq!(&ABI_VERSION[..ABI_VERSION.len() - 1], b"v0.2.0");
    }
}
