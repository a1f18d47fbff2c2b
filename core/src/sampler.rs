//! Head sampling: which requests are recorded. The sampler names follow the OpenTelemetry SDK
//! (`OTEL_TRACES_SAMPLER`): `always_on`, `always_off`, `traceidratio`,
//! `parentbased_always_on` (default), `parentbased_always_off`, `parentbased_traceidratio`.
//! A request that is not recorded still propagates its context (sampled flag 0).
//!
//! `traceidratio` is the OpenTelemetry consistent-probability form (trace spec, "TraceIdRatioBased"
//! and W3C Trace Context Level 2's random trace id): the decision is a function of the trace
//! id alone — its least-significant 56 bits compared with a threshold — so every hop that
//! uses the same ratio (this filter at the gateway and in each sidecar) agrees.

use crate::ids::TraceId;
use serde::Deserialize;

/// The configured sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum Sampler {
    #[serde(rename = "always_on")]
    AlwaysOn,
    #[serde(rename = "always_off")]
    AlwaysOff,
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    /// Follow the incoming sampled flag; record everything that starts here (OTel default).
    /// `parent_based_always_on` is the spelling of earlier releases, still accepted.
    #[default]
    #[serde(rename = "parentbased_always_on", alias = "parent_based_always_on")]
    ParentBasedAlwaysOn,
    #[serde(rename = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    #[serde(rename = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

/// 2^56: the randomness of a trace id is its least-significant 56 bits (W3C Level 2 §3.2.2.3
/// random trace-id flag; OpenTelemetry "TraceIdRatioBased").
const RANDOMNESS_RANGE: u64 = 1 << 56;

/// A sampling probability as the rejection threshold `T = (1 - p) * 2^56`: a trace id whose
/// 56 random bits `R` satisfy `R >= T` is sampled. `p = 1` gives `T = 0` (always), `p = 0`
/// gives `T = 2^56` (never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    threshold: u64,
}

impl Ratio {
    pub const ALWAYS: Ratio = Ratio { threshold: 0 };

    /// `None` unless `0 <= p <= 1`.
    pub fn new(p: f64) -> Option<Ratio> {
        if !(0.0..=1.0).contains(&p) {
            return None;
        }
        let rejected = ((1.0 - p) * RANDOMNESS_RANGE as f64).round();
        Some(Ratio {
            threshold: (rejected as u64).min(RANDOMNESS_RANGE),
        })
    }

    /// The probability this ratio samples with.
    pub fn probability(self) -> f64 {
        1.0 - self.threshold as f64 / RANDOMNESS_RANGE as f64
    }

    /// Samples `trace_id` by its least-significant 56 bits.
    pub fn samples(self, trace_id: &TraceId) -> bool {
        let mut low = [0u8; 8];
        if let Some(src) = trace_id.0.get(9..16) {
            if let Some(dst) = low.get_mut(1..8) {
                dst.copy_from_slice(src);
            }
        }
        u64::from_be_bytes(low) >= self.threshold
    }
}

impl Sampler {
    /// True when the sampler uses a ratio (so `sampler_ratio` means something).
    pub fn uses_ratio(self) -> bool {
        matches!(
            self,
            Sampler::TraceIdRatio | Sampler::ParentBasedTraceIdRatio
        )
    }

    /// The head decision for a request whose caller decided `caller_sampled` (the trusted
    /// parent's sampled flag, or a B3 sampling-only header; `None`: no decision, a new trace)
    /// and `trace_id` (the parent's, or the new one). `ratio` is the route's or the global one.
    pub fn should_sample(
        self,
        caller_sampled: Option<bool>,
        trace_id: &TraceId,
        ratio: Ratio,
    ) -> bool {
        let root = |s: Sampler| match s {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            _ => ratio.samples(trace_id),
        };
        match self {
            Sampler::AlwaysOn | Sampler::AlwaysOff | Sampler::TraceIdRatio => root(self),
            Sampler::ParentBasedAlwaysOn => caller_sampled.unwrap_or(true),
            Sampler::ParentBasedAlwaysOff => caller_sampled.unwrap_or(false),
            Sampler::ParentBasedTraceIdRatio => {
                caller_sampled.unwrap_or_else(|| ratio.samples(trace_id))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_id_with_low56(r: u64) -> TraceId {
        let mut t = [0xffu8; 16];
        t[8] = 0xab; // byte 8 is not part of the randomness
        t[9..16].copy_from_slice(&r.to_be_bytes()[1..8]);
        TraceId(t)
    }

    #[test]
    fn ratio_threshold_rows() {
        struct Row {
            p: f64,
            low56: u64,
            sampled: bool,
            reason: &'static str,
        }
        #[rustfmt::skip]
        let rows = [
            Row { p: 1.0, low56: 0, sampled: true, reason: "p=1 samples the smallest randomness" },
            Row { p: 0.0, low56: RANDOMNESS_RANGE - 1, sampled: false, reason: "p=0 samples nothing" },
            Row { p: 0.5, low56: RANDOMNESS_RANGE / 2, sampled: true, reason: "R = T is sampled" },
            Row { p: 0.5, low56: RANDOMNESS_RANGE / 2 - 1, sampled: false, reason: "R just below T is not" },
            Row { p: 0.01, low56: RANDOMNESS_RANGE - 1, sampled: true, reason: "the top 1% is sampled" },
            Row { p: 0.01, low56: RANDOMNESS_RANGE / 100 * 98, sampled: false, reason: "below the top 1% is not" },
        ];
        for r in rows {
            let ratio = Ratio::new(r.p).unwrap();
            assert_eq!(
                ratio.samples(&trace_id_with_low56(r.low56)),
                r.sampled,
                "{}",
                r.reason
            );
        }
        assert_eq!(Ratio::new(1.5), None, "above 1 refused");
        assert_eq!(Ratio::new(-0.1), None, "negative refused");
        assert_eq!(Ratio::new(f64::NAN), None, "NaN refused");
        assert_eq!(Ratio::new(1.0), Some(Ratio::ALWAYS));
        assert!((Ratio::new(0.25).unwrap().probability() - 0.25).abs() < 1e-12);
    }

    /// Over many random trace ids, the sampled fraction is close to p.
    #[test]
    fn ratio_samples_about_p() {
        let ratio = Ratio::new(0.1).unwrap();
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut sampled = 0;
        for _ in 0..100_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if ratio.samples(&trace_id_with_low56(state >> 8)) {
                sampled += 1;
            }
        }
        assert!(
            (9_500..10_500).contains(&sampled),
            "sampled {sampled} of 100000 at p=0.1"
        );
    }

    #[test]
    fn sampler_rows() {
        struct Row {
            sampler: Sampler,
            parent: Option<bool>,
            ratio_says: bool,
            sampled: bool,
            reason: &'static str,
        }
        use Sampler::*;
        #[rustfmt::skip]
        let rows = [
            Row { sampler: AlwaysOn, parent: Some(false), ratio_says: false, sampled: true, reason: "always_on ignores the parent" },
            Row { sampler: AlwaysOff, parent: Some(true), ratio_says: true, sampled: false, reason: "always_off ignores the parent" },
            Row { sampler: TraceIdRatio, parent: Some(false), ratio_says: true, sampled: true, reason: "traceidratio decides by id even under an unsampled parent" },
            Row { sampler: TraceIdRatio, parent: None, ratio_says: false, sampled: false, reason: "traceidratio says no" },
            Row { sampler: ParentBasedAlwaysOn, parent: None, ratio_says: false, sampled: true, reason: "root: always on" },
            Row { sampler: ParentBasedAlwaysOn, parent: Some(false), ratio_says: true, sampled: false, reason: "follows an unsampled parent" },
            Row { sampler: ParentBasedAlwaysOff, parent: None, ratio_says: true, sampled: false, reason: "root: always off" },
            Row { sampler: ParentBasedAlwaysOff, parent: Some(true), ratio_says: false, sampled: true, reason: "follows a sampled parent" },
            Row { sampler: ParentBasedTraceIdRatio, parent: None, ratio_says: true, sampled: true, reason: "root: by ratio (yes)" },
            Row { sampler: ParentBasedTraceIdRatio, parent: None, ratio_says: false, sampled: false, reason: "root: by ratio (no)" },
            Row { sampler: ParentBasedTraceIdRatio, parent: Some(true), ratio_says: false, sampled: true, reason: "follows a sampled parent" },
            Row { sampler: ParentBasedTraceIdRatio, parent: Some(false), ratio_says: true, sampled: false, reason: "follows an unsampled parent" },
        ];
        for r in rows {
            let ratio = if r.ratio_says {
                Ratio::ALWAYS
            } else {
                Ratio::new(0.0).unwrap()
            };
            let got = r.sampler.should_sample(r.parent, &TraceId([7; 16]), ratio);
            assert_eq!(got, r.sampled, "{:?}: {}", r.sampler, r.reason);
        }
    }
}
