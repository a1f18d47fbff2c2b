//! Batches that leave the exporter without being exported: dropped for good and counted by
//! reason (not retryable: `spans_dropped_export_failed`; retried past `retry.max_elapsed`:
//! `spans_dropped_retries_exhausted`; a single span the collector finds too large:
//! `spans_dropped_too_large`), and the 413 split that keeps one span's size from costing the
//! others theirs. Each drop is logged through the per-kind limiter.

use super::queue::Batch;
use super::response::Failure;
use super::{ExportCtx, Exporter};
use crate::metrics::Counter;

impl Exporter {
    /// Drops a batch whose retries ran out of `retry.max_elapsed`: counted, released, logged.
    pub(super) fn drop_exhausted(&mut self, batch: &Batch, why: &str, ctx: &ExportCtx<'_>) {
        ctx.stats
            .add(Counter::SpansDroppedRetriesExhausted, batch.spans as u64);
        self.dropped.retries_exhausted += batch.spans as u64;
        self.queue.release(batch);
        let what = format!(
            "export to cluster '{}': {} spans dropped, {why} (exporter.retry.max_elapsed_ms)",
            self.config.cluster, batch.spans
        );
        self.log.warn(ctx.now_ns, "retries exhausted", &what);
    }

    /// Too large (413 Content Too Large, the Collector's 400 for a body over its limit, gRPC
    /// RESOURCE_EXHAUSTED over the message limit): the batch is split in two and both halves are sent again at once
    /// (no backoff: the collector is up), down to a single span, which alone is dropped
    /// (`spans_dropped_too_large`). So no span pays for another's size.
    pub(super) fn too_large(&mut self, batch: Batch, ctx: &ExportCtx<'_>) {
        let (spans, bytes) = (batch.spans, batch.bytes);
        match batch.split() {
            Ok((a, b)) => {
                log::debug!(
                    "export to cluster '{}': refused as too large (HTTP 413, the Collector's 400 \"request body too large\", or gRPC RESOURCE_EXHAUSTED over its message limit) for {spans} spans ({bytes} bytes); retrying them in two halves of {} and {} spans",
                    self.config.cluster,
                    a.spans,
                    b.spans
                );
                self.queue.push_retry_front(b);
                self.queue.push_retry_front(a);
            }
            Err(one) => {
                ctx.stats
                    .add(Counter::SpansDroppedTooLarge, one.spans as u64);
                self.dropped.too_large += one.spans as u64;
                self.queue.release(&one);
                self.log.warn(
                    ctx.now_ns,
                    "too_large",
                    &format!(
                        "export to cluster '{}': the collector refused a single span of {bytes} bytes as too large (HTTP 413, the Collector's 400, or gRPC RESOURCE_EXHAUSTED); dropped (spans_dropped_too_large; its body limit, or exporter.max_export_bytes = {})",
                        self.config.cluster, self.config.max_export_bytes
                    ),
                );
            }
        }
    }

    /// A failure that is not retried: dropped, counted, logged (an unknown cluster once, until
    /// an export succeeds; other kinds at most once per interval each).
    pub(super) fn drop_failed(&mut self, batch: &Batch, failure: &Failure, ctx: &ExportCtx<'_>) {
        ctx.stats
            .add(Counter::SpansDroppedExportFailed, batch.spans as u64);
        self.dropped.export_failed += batch.spans as u64;
        self.queue.release(batch);
        let what = failure.describe(&self.config);
        if failure.is_unknown_cluster() {
            if !self.unknown_cluster_logged {
                log::error!("{what}; spans are dropped until it is (spans_dropped_export_failed)");
                self.unknown_cluster_logged = true;
            }
            return;
        }
        self.log.warn(
            ctx.now_ns,
            &failure.kind(),
            &format!(
                "export to cluster '{}' failed: {what}, not retryable; {} spans dropped",
                self.config.cluster, batch.spans
            ),
        );
    }
}
