//! A short, deterministic run of the whole-filter fuzz loop (`fuzz/fuzz_targets/filter.rs`,
//! `make fuzz` runs it coverage-guided): seeded pseudo-random inputs through
//! `scenario::run`, each a fresh VM. Same seeds, same inputs, every run.

use gateway_tracing_harness::scenario::{run, seeded_input, Summary};
use gateway_tracing_harness::Compiled;

/// Inputs per run and their size: bounded so the run takes seconds.
const RUNS: u64 = 200;
const INPUT_BYTES: usize = 1_500;
const SEED: u64 = 0x6761_7465_7761_7931;

#[test]
fn seeded_inputs_never_trap_touch_only_trace_headers_and_account_for_every_span() {
    let compiled = Compiled::load().unwrap();
    let mut total = Summary::default();
    for i in 0..RUNS {
        let input = seeded_input(SEED ^ i, INPUT_BYTES);
        let s = run(&compiled, &input).unwrap_or_else(|e| {
            panic!("seed {:#x} (input {i}): {e}", SEED ^ i);
        });
        total.operations += s.operations;
        total.requests += s.requests;
        total.exports += s.exports;
        total.answers += s.answers;
        total.spans_created += s.spans_created;
        total.spans_exported += s.spans_exported;
    }
    eprintln!("{RUNS} seeded runs: {total:?}");
    // The inputs drove the filter through its paths, not only through refusals.
    assert!(total.requests > 1_000, "{total:?}");
    assert!(total.exports > 100 && total.answers > 100, "{total:?}");
    assert!(
        total.spans_created > 500 && total.spans_exported > 100,
        "{total:?}"
    );
}
