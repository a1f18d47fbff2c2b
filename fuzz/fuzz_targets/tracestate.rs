//! Any bytes as one or two `tracestate` values (split at the first NUL): no panic; the
//! normalised list is a fixed point with at most 32 members and no duplicate key.
#![no_main]
use gateway_tracing_core::propagation::parse_tracestate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = data.splitn(2, |b| *b == 0).collect();
    if let Ok(ts) = parse_tracestate(&values) {
        let again = parse_tracestate(&[ts.value.as_bytes()]).expect("normalised list reparses");
        assert_eq!(again.value, ts.value);
        assert_eq!(again.duplicates_dropped, 0);
        let keys: Vec<&str> = ts.value.split(',').filter(|m| !m.is_empty()).filter_map(|m| m.split_once('=').map(|(k, _)| k)).collect();
        assert!(keys.len() <= 32);
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), keys.len());
    }
});
