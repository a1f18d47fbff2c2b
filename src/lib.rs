//! gateway-tracing: distributed tracing for Envoy as a proxy-wasm HTTP filter.
//!
//! The core (everything but [`filter`]) is plain Rust that talks to Envoy only through the
//! traits in [`host`], so it is unit-tested on the host. `filter` is the proxy-wasm glue,
//! compiled for `wasm32` only.
// Tests may unwrap; library code may not (see [lints.clippy] in Cargo.toml).
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

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

#[cfg(any(target_arch = "wasm32", gateway_tracing_lint_filter))]
pub mod filter;
