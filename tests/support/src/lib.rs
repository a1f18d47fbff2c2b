//! Test helpers for the end-to-end tests (not part of the demo): [`stub`], a recording
//! upstream whose answers are steered by request headers.

pub mod stub;

pub use stub::{Stub, StubRequest};
