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
    pub(super) too_large: u64,
}

impl Dropped {
    /// What was dropped since `before`, as `reason=count` pairs for one log line.
    pub(super) fn since(&self, before: &Dropped) -> String {
        format!(
            "queue_full={}, retries_exhausted={}, export_failed={}, too_large={}",
            self.queue_full - before.queue_full,
            self.retries_exhausted - before.retries_exhausted,
            self.export_failed - before.export_failed,
            self.too_large - before.too_large
        )
    }
}

/// Per failure kind: when last logged, how many were held back since, and the last one held
/// back.
#[derive(Default)]
pub(super) struct LogLimiter {
    kinds: HashMap<String, Kind>,
}

#[derive(Default)]
struct Kind {
    logged_ns: u64,
    held: u64,
    last: String,
}

impl LogLimiter {
    /// Logs `what` at warn unless a line of the same `kind` was logged in the last
    /// [`FAILURE_LOG_INTERVAL_NS`]; returns whether it logged. One held back is counted and
    /// remembered, for the next line of its kind or for [`LogLimiter::flush`].
    pub(super) fn warn(&mut self, now_ns: u64, kind: &str, what: &str) -> bool {
        let entry = self.kinds.entry(kind.to_string()).or_default();
        let due = entry.logged_ns == 0
            || now_ns.saturating_sub(entry.logged_ns) >= FAILURE_LOG_INTERVAL_NS;
        if due {
            if entry.held > 0 {
                log::warn!(
                    "{what} ({} more like this since the last report)",
                    entry.held
                );
            } else {
                log::warn!("{what}");
            }
            entry.logged_ns = now_ns.max(1);
            entry.held = 0;
            entry.last.clear();
        } else {
            entry.held += 1;
            entry.last.clear();
            entry.last.push_str(what);
        }
        due
    }

    /// Writes the lines held back whose interval has passed (every one when `all`, as the
    /// plugin stops): the last one of the kind, with the count. Called by the flush tick, so
    /// every drop appears in some log line even when no further failure of its kind comes.
    pub(super) fn flush(&mut self, now_ns: u64, all: bool) {
        for entry in self.kinds.values_mut() {
            let due = all || now_ns.saturating_sub(entry.logged_ns) >= FAILURE_LOG_INTERVAL_NS;
            if entry.held > 0 && due {
                if entry.held > 1 {
                    log::warn!(
                        "{} (and {} more like this since the last report)",
                        entry.last,
                        entry.held - 1
                    );
                } else {
                    log::warn!("{}", entry.last);
                }
                entry.logged_ns = now_ns.max(1);
                entry.held = 0;
                entry.last.clear();
            }
        }
    }
}

/// The line that closes a spell of a full queue.
pub(super) fn log_room_again(dropped: u64) {
    log::info!("export queue has room again; {dropped} spans were dropped while it was full");
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
