//! The demo of `gateway-tracing` (what `make run` runs), also used by the end-to-end tests.
//!
//! - [`span`]: the span model (recorded spans, attributes, events, kinds, status) that the
//!   collector fills and the tree printer and viewer read.
//! - [`collector`]: in-process OTLP/HTTP trace receiver that records spans.
//! - [`tree`]: renders received spans as per-trace trees.
//! - [`viewer`]: the trace viewer page (waterfall) the collector serves at `/`.
//! - [`shop`]: the demo e-commerce services (auth, products, cart, orders, fulfillment).
//! - [`build`]: which build of the filter runs (wasm or the native module) and the config
//!   rewrite between them.
//! - [`envoy`]: runs a real Envoy process for end-to-end tests; [`envoy::ProcessGuard`].
//! - [`peers`]: runs the real OpenTelemetry Collector and Jaeger v2 built by `make peers`.
//! - [`mesh`]: the whole shop mesh (collector, services, gateway and cart sidecar Envoys) and
//!   the scripted shopping flow, used by `make run` and the mesh end-to-end test.
//!
//! Binaries: `demo` (what `make run` runs), `otel-collector` (collector + tree printer) and
//! `shop` (demo services).
//!
//! Everything here runs on the host (no wasm). This crate's own tests do not
//! need Envoy; the one test that runs it is skipped when `envoy` is absent.
//! Listen addresses everywhere accept `":PORT"` as shorthand for `127.0.0.1:PORT`.

pub mod build;
pub mod collector;
pub mod envoy;
pub mod http;
pub mod mesh;
pub mod peers;
pub mod shop;
pub mod span;
pub mod tree;
pub mod viewer;

pub use collector::{Collector, RecordedRequest};
pub use envoy::{Envoy, EnvoyOpts, ProcessGuard};
pub use http::parse_listen_addr;
pub use shop::{Service, ServiceHandle};
pub use span::{AttrValue, RecordedEvent, RecordedSpan};

/// Re-exported for the end-to-end tests of the root crate (JSON of the DevTools protocol).
pub use serde_json;
