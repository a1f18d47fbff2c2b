//! gateway-tracing: distributed tracing for Envoy as a proxy-wasm HTTP filter.
//!
//! The core (everything but [`filter`]) is plain Rust that talks to Envoy only through the
//! traits in [`host`], so it is unit-tested on the host. `filter` is the proxy-wasm glue,
//! compiled for `wasm32` only.
pub mod config;
pub mod exporter;
pub mod host;
pub mod ids;
pub mod metrics;
pub mod otlp;
pub mod propagation;
pub mod route;
pub mod semconv;
pub mod status;
#[cfg(test)]
pub mod testing;
pub mod tracer;

#[cfg(target_arch = "wasm32")]
pub mod filter;
