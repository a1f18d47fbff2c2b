//! Samplers and what an unsampled request still propagates.

use super::*;

#[test]
fn sampling_rows() {
    struct Row {
        sampler: &'static str,
        /// The incoming `traceparent`, if any.
        incoming: Option<&'static str>,
        recorded: bool,
        /// The trace-flags of the `traceparent` sent upstream.
        flags: &'static str,
        reason: &'static str,
    }
    #[rustfmt::skip]
    let rows = [
        Row { sampler: "parent_based_always_on", incoming: None, recorded: true, flags: "01", reason: "root is recorded" },
        Row { sampler: "parent_based_always_on", incoming: Some(PARENT), recorded: true, flags: "01", reason: "sampled parent" },
        Row { sampler: "parent_based_always_on", incoming: Some(PARENT_UNSAMPLED), recorded: false, flags: "00", reason: "unsampled parent" },
        Row { sampler: "always_on", incoming: Some(PARENT_UNSAMPLED), recorded: true, flags: "01", reason: "always_on overrides the parent" },
        Row { sampler: "always_off", incoming: Some(PARENT), recorded: false, flags: "00", reason: "always_off overrides the parent" },
        Row { sampler: "always_off", incoming: None, recorded: false, flags: "00", reason: "always_off root" },
    ];
    for Row {
        sampler,
        incoming,
        recorded,
        flags,
        reason,
    } in rows
    {
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
