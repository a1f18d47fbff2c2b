//! Host-side demo mesh and test harness for `gateway-tracing`.
//!
//! - [`collector`]: in-process OTLP/HTTP trace receiver that records spans.
//! - [`tree`]: renders received spans as per-trace trees.
//! - [`stub`]: recording stub upstream for tests.
//! - [`shop`]: the demo e-commerce services (auth, products, cart, orders, fulfillment).
//! - [`envoy`]: runs a real Envoy process for end-to-end tests; [`envoy::ProcessGuard`].
//!
//! Everything here runs on the host (no wasm); tests in this crate do not need Envoy.

pub mod collector;
pub mod envoy;
mod http;
pub mod shop;
pub mod stub;
pub mod tree;

pub use collector::{AttrValue, Collector, RecordedEvent, RecordedRequest, RecordedSpan};
pub use http::parse_listen_addr;
