//! `libgateway_tracing.so`: the native Envoy dynamic-module glue over
//! [`gateway_tracing_core`], the same core as the wasm build (`gateway_tracing.wasm`, the
//! repository root crate). It owns the ABI declarations ([`ffi`]), the exported event hooks
//! ([`hooks`]), the panic boundary every hook runs inside ([`guard`]), the core's per-request
//! host ([`host`]), one HTTP stream ([`filter`]), the per-process filter-config state with its
//! single exporter ([`process`]) and its Envoy stats ([`stats`]), the logger ([`logger`]) and the
//! bootstrap extension that drains the exporters when Envoy stops ([`bootstrap`]). Everything it
//! decides is decided in the core.

pub mod bootstrap;
pub mod ffi;
pub mod filter;
pub mod guard;
pub mod hooks;
pub mod host;
pub mod logger;
pub mod process;
pub mod stats;
