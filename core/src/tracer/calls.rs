//! Service-call and Durable Object call metrics (`call_metrics: true`): the seed records a
//! metric for every call to a service or Durable Object. Here each configured cluster is a
//! target named by its service or Durable Object class (`AUTH_SERVICE`, `CartDurableObject`),
//! with counters by status class and a duration histogram, defined once at configure time
//! ([`targets`]) and recorded per call, sampled or not ([`record`]).

use super::completion::Completion;
use super::request::ActiveRequest;
use crate::config::Config;
use crate::status;

/// How a call ended, for the per-target counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallClass {
    Status2xx,
    Status3xx,
    Status4xx,
    Status5xx,
    /// No usable response: connection failure, reset, timeout.
    Failed,
}

impl CallClass {
    /// Every class, in the order of [`CallClass::index`].
    pub const ALL: [CallClass; 5] = [
        CallClass::Status2xx,
        CallClass::Status3xx,
        CallClass::Status4xx,
        CallClass::Status5xx,
        CallClass::Failed,
    ];

    /// The stat name suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            CallClass::Status2xx => "rq_2xx",
            CallClass::Status3xx => "rq_3xx",
            CallClass::Status4xx => "rq_4xx",
            CallClass::Status5xx => "rq_5xx",
            CallClass::Failed => "failed",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Stat-name suffix of the per-target duration histogram (milliseconds).
pub const DURATION_SUFFIX: &str = "duration_ms";
/// Stat-name prefix of the per-target metrics: `gateway_tracing.call.<target>.<suffix>`.
pub const CALL_PREFIX: &str = "gateway_tracing.call.";

/// The stat name of `target`'s metric with `suffix` (a [`CallClass::suffix`] or
/// [`DURATION_SUFFIX`]), the same in both builds.
pub fn metric_name(target: &str, suffix: &str) -> String {
    format!("{CALL_PREFIX}{target}.{suffix}")
}

/// One call to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRecord {
    /// Index into [`targets`].
    pub target: usize,
    pub class: CallClass,
    pub duration_ms: u64,
}

/// The stat-name part of each configured cluster, in `config.clusters` order: its Durable
/// Object class or service, with anything but `[A-Za-z0-9_-]` replaced by `_` (a `.` would
/// split the stat name).
pub fn targets(config: &Config) -> Vec<String> {
    config
        .clusters
        .values()
        .map(|t| {
            t.service_label()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect()
}

/// The call this request made to a configured cluster, if it made one; `None` with
/// `call_metrics` off, without an upstream call, or for a cluster not in `clusters`.
pub fn record(config: &Config, req: &ActiveRequest, done: &Completion) -> Option<CallRecord> {
    if !config.call_metrics {
        return None;
    }
    let call = req.client.as_ref()?;
    let target = config.clusters.keys().position(|k| *k == call.cluster)?;
    let responded = done.responded();
    if !responded && !status::upstream_failed(done.flags) && done.upstream_address.is_none() {
        return None; // never attempted (stopped before the router)
    }
    let class = match (responded, done.status) {
        (false, _) => CallClass::Failed,
        (true, 200..=299) => CallClass::Status2xx,
        (true, 300..=399) => CallClass::Status3xx,
        (true, 400..=499) => CallClass::Status4xx,
        (true, 500..=599) => CallClass::Status5xx,
        (true, _) => CallClass::Failed,
    };
    let end = req
        .response_end_ns
        .map_or(done.end_ns, |t| t.min(done.end_ns));
    Some(CallRecord {
        target,
        class,
        duration_ms: end.saturating_sub(req.start_ns) / 1_000_000,
    })
}
