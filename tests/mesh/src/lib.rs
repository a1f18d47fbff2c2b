//! Host-side demo mesh and test harness for `gateway-tracing`.
//!
//! - [`collector`]: in-process OTLP/HTTP trace receiver that records spans.
//! - [`tree`]: renders received spans as per-trace trees.
//! - [`stub`]: recording stub upstream for tests.
//! - [`shop`]: the demo e-commerce services (auth, products, cart, orders, fulfillment).
//! - [`envoy`]: runs a real Envoy process for end-to-end tests; [`envoy::ProcessGuard`].
//! - [`demo`]: the whole shop mesh (collector, services, gateway and cart sidecar Envoys) and
//!   the scripted shopping flow, used by `make run` and the mesh end-to-end test.
//!
//! Binaries: `demo` (what `make run` runs), `otel-collector` (collector + tree printer) and
//! `shop` (demo services).
//!
//! Everything here runs on the host (no wasm). This crate's own tests do not
//! need Envoy; the one test that runs it is skipped when `envoy` is absent.
//! Listen addresses everywhere accept `":PORT"` as shorthand for `127.0.0.1:PORT`.

pub mod collector;
pub mod demo;
pub mod envoy;
mod http;
pub mod shop;
pub mod stub;
pub mod tree;

pub use collector::{AttrValue, Collector, RecordedEvent, RecordedRequest, RecordedSpan};
pub use envoy::{Envoy, EnvoyOpts, ProcessGuard};
pub use http::parse_listen_addr;
pub use shop::{Service, ServiceHandle};
pub use stub::{Stub, StubRequest};
