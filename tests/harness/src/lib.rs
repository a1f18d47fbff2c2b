//! A scripted proxy-wasm host for the BUILT `gateway_tracing.wasm`, in the style of
//! proxy-wasm-test-framework: the module runs in [wasmi] (a pure-Rust interpreter) and every
//! import it makes, the proxy-wasm ABI 0.2.1 calls and the WASI ones, is answered here from
//! [`Host`], which a test scripts and then inspects. A test drives the callbacks Envoy would
//! make ([`Filter::configure`], [`Filter::request_headers`], ..., [`Filter::tick`],
//! [`Filter::respond`], [`Filter::drain`]), sees every `dispatch_http_call` ([`HttpCall`]),
//! every header write ([`HeaderWrite`]), every log line and metric, and can make any host
//! call answer a status of its choice ([`Host::fail`]) or hand back any bytes.
//!
//! A trap (a panic in the module aborts it: `unreachable`) is a [`Trap`]; after one, the
//! filter is dead, as the VM is in Envoy, and every later call returns the same trap.

mod filter;
mod host;
mod imports;
pub mod scenario;

pub use filter::*;
pub use host::*;
