//! gateway-tracing: distributed tracing for Envoy as a proxy-wasm HTTP filter.
pub mod config;
pub mod ids;
pub mod propagation;
pub mod route;
pub mod semconv;
