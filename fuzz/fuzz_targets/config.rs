//! Any bytes as the plugin configuration: no panic; a refusal always names a field.
#![no_main]
use gateway_tracing_core::config::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = |name: &str| (name == "SET").then(|| "value".to_string());
    if let Err(e) = parse(data, &env) {
        assert!(!e.field.is_empty());
        let _ = e.to_string();
    }
});
