//! The core of gateway-tracing: plain Rust that talks to Envoy only through the traits in
//! [`host`], so all of it is unit-tested on the host. The proxy-wasm glue is the
//! `gateway-tracing` crate at the repository root; nothing here names `proxy_wasm`, and nothing
//! here is `unsafe`.
#![forbid(unsafe_code)]
pub mod config;
pub mod exporter;
pub mod host;
pub mod ids;
pub mod metrics;
pub mod otlp;
pub mod propagation;
pub mod route;
pub mod sampler;
pub mod semconv;
pub mod status;
#[cfg(any(test, feature = "testing"))]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
pub mod testing;
pub mod tracer;
pub mod url;
