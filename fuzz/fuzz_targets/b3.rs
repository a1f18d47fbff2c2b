//! Any bytes as B3 headers: the first NUL-separated part is `b3`, the rest the `x-b3-*`
//! values in order (traceid, spanid, sampled, flags, parentspanid). No panic; a context that
//! extracts injects to headers that extract to the same context, in both forms (a deferred
//! sampling state goes out decided: here, as the unsampled flags say).
#![no_main]
use gateway_tracing_core::propagation::{b3, Extractor, Injector};
use libfuzzer_sys::fuzz_target;

struct H(Vec<(String, Vec<u8>)>);
impl Extractor for H {
    fn get_all(&self, name: &str) -> Vec<&[u8]> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_slice()).collect()
    }
}
impl Injector for H {
    fn set(&mut self, name: &str, value: String) {
        self.remove(name);
        self.0.push((name.to_string(), value.into_bytes()));
    }
    fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }
}

fuzz_target!(|data: &[u8]| {
    let names = [b3::B3, b3::X_B3_TRACEID, b3::X_B3_SPANID, b3::X_B3_SAMPLED, b3::X_B3_FLAGS, b3::X_B3_PARENTSPANID];
    let h = H(names
        .iter()
        .zip(data.split(|b| *b == 0))
        .map(|(n, v)| (n.to_string(), v.to_vec()))
        .collect());
    let _ = b3::extract(&h);
    let _ = b3::sampling_only(&h);
    for ctx in [b3::extract_single(&h), b3::extract_multi(&h)].into_iter().flatten().flatten() {
        let mut out = H(Vec::new());
        b3::inject(&ctx, true, true, &mut out);
        let ctx = gateway_tracing_core::propagation::SpanContext { deferred: false, ..ctx };
        assert_eq!(b3::extract_single(&out), Ok(Some(ctx.clone())));
        assert_eq!(b3::extract_multi(&out), Ok(Some(ctx)));
    }
});
