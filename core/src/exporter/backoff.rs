//! The backoff policy while the collector fails: exponential intervals with jitter (OTLP
//! exporter specification, "Retry": exponential backoff with jitter), `Retry-After` honoured
//! (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), and the *failing* state that the exporter
//! backs off in as a whole: one probe at a time, each after the current delay.
//!
//! Floors: the wait is `max(Retry-After, the current backoff)` and never below
//! `retry.initial_backoff`, so neither `Retry-After: 0` nor a date in the past (a collector
//! whose clock is behind ours) turns the probe into a tight loop. Time here is the exporter's
//! [`Clock`]: the host's wall clock, made monotonic (a backwards step is detected and every
//! deadline moves with it).

use super::diagnostics::Dropped;
use super::response::Failure;
use crate::config::RetryConfig;
use std::time::Duration;

/// Backoff delays are spread by ± this fraction (gRPC's and OpenTelemetry's 0.2 ~ 0.5).
pub const BACKOFF_JITTER: f64 = 0.2;

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), as a delay from `now_ns`
/// (the wall clock: an HTTP-date is one). A date that is not in the future is no hint (the
/// collector's clock may be behind ours); anything unparsable (not ASCII, not a number or a
/// date) is no hint.
pub fn parse_retry_after(value: &[u8], now_ns: u64) -> Option<Duration> {
    let v = std::str::from_utf8(value).ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let at_ns = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let delta = at_ns.checked_sub(u128::from(now_ns)).filter(|d| *d > 0)?;
    Some(Duration::from_nanos(
        u64::try_from(delta).unwrap_or(u64::MAX),
    ))
}

/// The exporter's clock: the host's wall clock (the only clock proxy-wasm offers), made
/// monotonic. When the wall clock steps back (NTP, an operator), every time the exporter
/// keeps (backoff deadlines, first-send times, in-flight send times, log limits) would lie
/// in the future for as long as the step: probes would stop for that long. So a backwards
/// step is detected and absorbed into an offset: exporter time stands still for that reading
/// and then moves on with the wall clock, and every deadline keeps its remaining wait.
#[derive(Debug, Default, Clone, Copy)]
pub struct Clock {
    /// Added to the wall clock: the sum of the backwards steps seen.
    offset_ns: u64,
    /// The last exporter time handed out.
    last_ns: u64,
}

impl Clock {
    /// Exporter time for a wall-clock reading; never less than the last one.
    pub fn now(&mut self, wall_ns: u64) -> u64 {
        let t = wall_ns.saturating_add(self.offset_ns);
        if t < self.last_ns {
            let step = self.last_ns - t;
            self.offset_ns = self.offset_ns.saturating_add(step);
            log::info!(
                "the wall clock stepped back by {} ms; export backoff deadlines keep their remaining wait",
                step / 1_000_000
            );
            return self.last_ns;
        }
        self.last_ns = t;
        t
    }
}

/// The collector is failing: when the next probe may go, and the backoff so far.
pub(super) struct Failing {
    pub(super) since_ns: u64,
    pub(super) reason: Failure,
    pub(super) next_attempt_ns: u64,
    /// The next backoff interval before jitter.
    interval: Duration,
    pub(super) probes: u64,
    /// The drop tallies when the failing began, for the "recovered" line.
    pub(super) dropped_before: Dropped,
}

/// What a retryable failure did to the failing state.
pub(super) enum Step {
    /// The exporter was healthy and is failing now; the first probe waits `delay`.
    Began { delay: Duration },
    /// A probe failed; the next waits `delay`. `was`: the earlier reason, when it changed.
    Probed {
        delay: Duration,
        was: Option<Failure>,
    },
    /// A request sent before the failing began failed too: the backoff does not move.
    Straggler,
}

pub(super) struct Backoff {
    policy: RetryConfig,
    failing: Option<Failing>,
    rng: u64,
}

impl Backoff {
    pub(super) fn new(policy: RetryConfig) -> Backoff {
        Backoff {
            policy,
            failing: None,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Seeds the jitter.
    pub(super) fn seed(&mut self, seed: u64) {
        self.rng = seed | 1;
    }

    pub(super) fn failing(&self) -> Option<&Failing> {
        self.failing.as_ref()
    }

    /// The collector answered: the failing (if any) is over.
    pub(super) fn recover(&mut self) -> Option<Failing> {
        self.failing.take()
    }

    /// A probe may go now (always, unless failing and the delay has not passed).
    pub(super) fn may_send(&self, now_ns: u64) -> bool {
        self.failing
            .as_ref()
            .is_none_or(|f| now_ns >= f.next_attempt_ns)
    }

    /// How long until the next probe, when failing.
    pub(super) fn wait(&self, now_ns: u64) -> Option<Duration> {
        self.failing
            .as_ref()
            .map(|f| Duration::from_nanos(f.next_attempt_ns.saturating_sub(now_ns)))
    }

    /// A retryable failure of a request sent at `sent_ns`: starts or advances the failing
    /// state. `dropped`: the drop tallies now (kept for the "recovered" line).
    pub(super) fn on_failure(
        &mut self,
        failure: &Failure,
        retry_after: Option<Duration>,
        sent_ns: u64,
        now_ns: u64,
        dropped: Dropped,
    ) -> Step {
        let probe = self.failing.as_ref().is_none_or(|f| sent_ns >= f.since_ns);
        if !probe {
            return Step::Straggler;
        }
        let delay = self.next_delay(retry_after);
        let next_attempt_ns =
            now_ns.saturating_add(u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX));
        match &mut self.failing {
            None => {
                let r = &self.policy;
                self.failing = Some(Failing {
                    since_ns: now_ns,
                    reason: failure.clone(),
                    next_attempt_ns,
                    // The next interval grows from the initial one.
                    interval: r.initial_backoff.mul_f64(r.multiplier).min(r.max_backoff),
                    probes: 0,
                    dropped_before: dropped,
                });
                Step::Began { delay }
            }
            Some(f) => {
                f.probes += 1;
                f.next_attempt_ns = next_attempt_ns;
                let was = (f.reason != *failure)
                    .then(|| std::mem::replace(&mut f.reason, failure.clone()));
                Step::Probed { delay, was }
            }
        }
    }

    /// The delay before the next probe: the current interval ± jitter, or the collector's
    /// `Retry-After` (capped at `retry.max_elapsed`) when that is longer, and never less than
    /// `retry.initial_backoff` (a `Retry-After: 0` or a low jitter draw is no tight loop); the
    /// interval then grows by the multiplier up to `retry.max_backoff`.
    fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let r = &self.policy;
        let interval = self
            .failing
            .as_ref()
            .map_or(r.initial_backoff, |f| f.interval);
        let (multiplier, max_backoff, max_elapsed) = (r.multiplier, r.max_backoff, r.max_elapsed);
        let jittered = interval.mul_f64(1.0 + BACKOFF_JITTER * (2.0 * self.random_unit() - 1.0));
        if let Some(f) = &mut self.failing {
            f.interval = interval.mul_f64(multiplier).min(max_backoff);
        }
        let delay = jittered.max(self.policy.initial_backoff);
        match retry_after {
            Some(d) => delay.max(d.min(max_elapsed)),
            None => delay,
        }
    }

    /// A uniform value in [0, 1) (xorshift64*).
    fn random_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}
