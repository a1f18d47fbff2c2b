//! Test helpers for the end-to-end tests (not part of the demo): [`stub`], a recording
//! upstream whose answers are steered by request headers; [`fault_collector`], an OTLP/HTTP
//! collector that refuses, hangs, throttles and rejects on demand, and decodes strictly.

pub mod fault_collector;
pub mod stub;

pub use fault_collector::{FaultCollector, Mode, Received};
pub use stub::{Stub, StubRequest};
