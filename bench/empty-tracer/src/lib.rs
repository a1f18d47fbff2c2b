//! A dynamic-module tracer (`envoy.tracers.dynamic_modules`) that records nothing: every hook
//! returns at once. Loaded by `make bench`'s `tracer_floor` row to measure what Envoy's tracing
//! driver costs per request before a tracer module does any work: if that floor is already
//! above the HTTP filter's whole cost, the tracer placement cannot be the cheaper native one.
//!
//! The hooks are the `envoy_dynamic_module_on_tracer_*` names Envoy 1.40 resolves when it loads
//! a tracer module (`abi.h` in envoyproxy/envoy); arguments are taken as the pointer-sized
//! values the ABI passes and never read. A span is a pointer to a static: Envoy only needs it
//! non-null to treat the span as live (a null span makes Envoy fall back to a null span and
//! skip the per-span calls this floor is meant to include).

#![allow(clippy::missing_safety_doc)]

use std::ffi::c_void;

/// The ABI version string Envoy 1.40 carries (the same as the gateway-tracing module's).
static ABI_VERSION: &[u8] = b"v0.2.0\0";
static CONFIG: u8 = 0;
static SPAN: u8 = 0;

/// An `envoy_buffer` / `module_buffer`: `{ptr, length}`, passed by value.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    pub ptr: *const u8,
    pub length: usize,
}

fn config() -> *const c_void {
    std::ptr::addr_of!(CONFIG).cast()
}

fn span() -> *const c_void {
    std::ptr::addr_of!(SPAN).cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_config_new(
    _envoy: *const c_void,
    _name: Buffer,
    _config: Buffer,
) -> *const c_void {
    config()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_config_destroy(_config: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_start_span(
    _config: *const c_void,
    _span_envoy: *const c_void,
    _operation: Buffer,
    _traced: bool,
    _reason: u32,
) -> *const c_void {
    span()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_set_operation(
    _span: *const c_void,
    _operation: Buffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_set_tag(
    _span: *const c_void,
    _key: Buffer,
    _value: Buffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_log(
    _span: *const c_void,
    _timestamp_ns: i64,
    _event: Buffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_finish(_span: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_inject_context(
    _span: *const c_void,
    _span_envoy: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_spawn_child(
    _span: *const c_void,
    _name: Buffer,
    _start_time_ns: i64,
) -> *const c_void {
    span()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_set_sampled(
    _span: *const c_void,
    _sampled: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_use_local_decision(
    _span: *const c_void,
) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_get_baggage(
    _span: *const c_void,
    _key: Buffer,
    _value_out: *mut Buffer,
) -> bool {
    false
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_set_baggage(
    _span: *const c_void,
    _key: Buffer,
    _value: Buffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_get_trace_id(
    _span: *const c_void,
    _value_out: *mut Buffer,
) -> bool {
    false
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_get_span_id(
    _span: *const c_void,
    _value_out: *mut Buffer,
) -> bool {
    false
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_destroy(_span: *const c_void) {}

/// Envoy 1.40 announces how many tags it is about to set (a capacity hint).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_tracer_span_reserve_tags(
    _span: *const c_void,
    _count: usize,
) {
}
