//! Stopping. When a configuration update replaces the plugin (or Envoy exits), the exporter
//! sends everything it holds at once, backoff or not (at an exit that is the only chance);
//! what the collector then fails to take is retried with the usual backoff, one probe at a
//! time while it fails, for at most [`DRAIN_TIMEOUT`]; then what is left is counted as
//! `spans_dropped_shutdown`. When the VM goes away with spans held, [`Exporter::abandon`]
//! counts them the same way.

use super::{ExportCtx, Exporter, DRAIN_TIMEOUT};
use crate::host::{ExportHost, Stats};
use crate::metrics::Counter;

impl Exporter {
    /// The plugin is stopping (config update, VM shutdown): the first call sends everything
    /// held without waiting for the timer or a backoff; a retryable failure afterwards backs
    /// off and is retried (by ticks and answers) until [`DRAIN_TIMEOUT`]. Returns true when
    /// nothing is left to send or await; the glue then ends the context (`proxy_done`).
    pub fn drain(&mut self, host: &dyn ExportHost, stats: &dyn Stats, now_ns: u64) -> bool {
        let now_ns = self.clock.now(now_ns);
        let ctx = ExportCtx {
            host,
            stats,
            now_ns,
        };
        if !self.draining && self.queue.held_spans() > 0 {
            // A wasm VM cannot tell a config update (the sends below complete) from a server
            // exit (the VM is destroyed right after this call and they are lost; README
            // "Shutdown"); the native module's bootstrap extension holds Envoy's exit until the
            // answers come. Say how many are at stake, once, true for both hosts.
            log::info!(
                "stopping: {} spans held ({} bytes), sending them now; a host that exits without waiting for the answers loses them (the wasm build when Envoy exits rather than replacing this configuration: drain first, README \"Graceful shutdown\"){}",
                self.queue.held_spans(),
                self.queue.held_bytes(),
                self.failing_reason()
                    .map(|r| format!("; the collector is failing ({r})"))
                    .unwrap_or_default()
            );
        }
        if !self.draining {
            self.draining = true;
            self.drain_deadline_ns =
                now_ns.saturating_add(u64::try_from(DRAIN_TIMEOUT.as_nanos()).unwrap_or(u64::MAX));
            self.burst = true;
        }
        self.send_ready(&ctx, true);
        self.burst = false;
        self.report(stats);
        self.is_drained()
    }

    /// The drain's time is up: what is queued or awaiting a retry is counted as a shutdown
    /// drop; requests in flight still count as their answers say.
    pub(super) fn give_up_draining(&mut self, ctx: &ExportCtx<'_>) {
        let mut lost = 0;
        while let Some(batch) = self.queue.pop_retry() {
            lost += batch.spans;
            self.queue.release(&batch);
        }
        while let Some(batch) = self.queue.take(true) {
            lost += batch.spans;
            self.queue.release(&batch);
        }
        if lost > 0 {
            ctx.stats.add(Counter::SpansDroppedShutdown, lost as u64);
            log::warn!(
                "stopping: {lost} spans dropped after retrying for {} s while the collector failed ({})",
                DRAIN_TIMEOUT.as_secs(),
                self.failing_reason().unwrap_or_else(|| "no answer".into())
            );
        }
    }

    /// The VM is going away with spans still held: count them as dropped at shutdown and
    /// say so in one line. Returns how many.
    pub fn abandon(&mut self, stats: &dyn Stats) -> usize {
        self.log.flush(0, true);
        let n = self.queue.held_spans();
        if n > 0 {
            stats.add(Counter::SpansDroppedShutdown, n as u64);
            log::warn!(
                "stopping: {n} spans still queued or in flight are lost (collector {})",
                self.failing_reason()
                    .map(|r| format!("failing: {r}"))
                    .unwrap_or_else(|| "did not answer in time".into())
            );
        }
        self.queue.clear();
        self.in_flight.clear();
        self.report(stats);
        n
    }
}
