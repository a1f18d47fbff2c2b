//! Samplers and what an unsampled request still propagates.

use super::*;

#[test]
fn sampling_rows() {
    // (sampler, incoming traceparent, recorded, injected flags, reason)
    for (sampler, incoming, recorded, flags, reason) in [
        (
            "parent_based_always_on",
            None,
            true,
            "03",
            "root is recorded; Level 2 §3.2.2.5.2 our trace id is random",
        ),
        (
            "parent_based_always_on",
            Some(PARENT),
            true,
            "01",
            "sampled parent",
        ),
        (
            "parent_based_always_on",
            Some(PARENT_UNSAMPLED),
            false,
            "00",
            "unsampled parent",
        ),
        (
            "always_on",
            Some(PARENT_UNSAMPLED),
            true,
            "01",
            "always_on overrides the parent",
        ),
        (
            "always_off",
            Some(PARENT),
            false,
            "00",
            "always_off overrides the parent",
        ),
        (
            "always_off",
            None,
            false,
            "02",
            "always_off root: not sampled, random trace id",
        ),
    ] {
        let mut host = request("GET", "/api/products/p-1", Some("products"));
        if let Some(tp) = incoming {
            host = host.header("traceparent", tp);
        }
        let r = run(&with_sampler(sampler), host, &answered(200));
        let trace = if incoming.is_some() {
            PARENT_TRACE
        } else {
            NEW_TRACE
        };
        assert_eq!(r.req.recorded, recorded, "{reason}");
        assert_eq!(r.spans.len(), if recorded { 2 } else { 0 }, "{reason}");
        assert_eq!(
            r.stats.get(Counter::RequestsNotSampled),
            u64::from(!recorded),
            "{reason}"
        );
        assert_eq!(
            r.traceparent(),
            format!("00-{trace}-{CLIENT_ID}-{flags}"),
            "{reason}: context is propagated either way"
        );
    }
}
