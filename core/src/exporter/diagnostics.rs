//! What the exporter says: one log line per state change (exporting → failing, with the reason
//! → recovered, with what was dropped meanwhile by reason; queue full → room again, with the
//! count), and a per-kind rate limit for repeated failures, so one kind never hides another.
//! Collector text is sanitised; header values are never logged.

use std::collections::HashMap;

/// How often a failure of one kind may be logged (per VM).
pub const FAILURE_LOG_INTERVAL_NS: u64 = 10_000_000_000;
/// Collector-provided text in a log line is cut to this many characters.
pub(super) const MAX_LOGGED_MESSAGE: usize = 200;

/// Spans dropped so far, by the reasons the "recovered" line reports.
#[derive(Default, Debug, Clone, Copy)]
pub(super) struct Dropped {
    pub(super) queue_full: u64,
    pub(super) export_failed: u64,
    pub(super) retries_exhausted: u64,
}

impl Dropped {
    /// What was dropped since `before`, as `reason=count` pairs for one log line.
    pub(super) fn since(&self, before: &Dropped) -> String {
        format!(
            "queue_full={}, retries_exhausted={}, export_failed={}",
            self.queue_full - before.queue_full,
            self.retries_exhausted - before.retries_exhausted,
            self.export_failed - before.export_failed
        )
    }
}

/// Per failure kind: when last logged, and how many were held back since.
#[derive(Default)]
pub(super) struct LogLimiter {
    kinds: HashMap<String, (u64, u64)>,
}

impl LogLimiter {
    /// Logs `what` at warn unless a line of the same `kind` was logged in the last
    /// [`FAILURE_LOG_INTERVAL_NS`]; returns whether it logged.
    pub(super) fn warn(&mut self, now_ns: u64, kind: &str, what: &str) -> bool {
        let entry = self.kinds.entry(kind.to_string()).or_insert((0, 0));
        let due = entry.0 == 0 || now_ns.saturating_sub(entry.0) >= FAILURE_LOG_INTERVAL_NS;
        if due {
            if entry.1 > 0 {
                log::warn!("{what} ({} more like this since the last report)", entry.1);
            } else {
                log::warn!("{what}");
            }
            *entry = (now_ns.max(1), 0);
        } else {
            entry.1 += 1;
        }
        due
    }
}

/// Collector text made safe for one log line: printable, short.
pub(super) fn sanitize(msg: &str) -> String {
    let mut out: String = msg
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_LOGGED_MESSAGE)
        .collect();
    if msg.chars().count() > MAX_LOGGED_MESSAGE {
        out.push('…');
    }
    out
}
