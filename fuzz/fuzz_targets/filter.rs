//! The whole filter, the BUILT `target/gateway_tracing.wasm` (make build), under the host
//! harness's scripted proxy-wasm host: the input picks a configuration, then streams and their
//! callbacks in any order with header maps of any bytes, ticks, export answers (any status,
//! headers with any bytes, garbage or partial_success bodies), failing host calls and drains
//! (`gateway_tracing_harness::scenario`). Invariants: no trap; no header written but the
//! documented trace headers; `created = exported + dropped + held` from the filter's counters.
#![no_main]

use gateway_tracing_harness::{scenario, Compiled};
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// Compiled once; each input gets a fresh VM.
    static MODULE: Compiled = match Compiled::load() {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
}

fuzz_target!(|data: &[u8]| {
    MODULE.with(|m| {
        if let Err(e) = scenario::run(m, data) {
            panic!("invariant broken: {e}");
        }
    });
});
