//! The filter's self-metrics, exposed as Envoy stats (`wasmcustom.gateway_tracing.*` in the
//! admin `/stats` output). Every span that is not exported is counted under one reason.

/// A counter the filter increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Spans finished and handed to the exporter queue.
    SpansQueued,
    /// Spans the collector accepted (2xx).
    SpansExported,
    /// Spans dropped because the queue was full.
    SpansDroppedQueueFull,
    /// Spans dropped because their export failed (non-2xx, timeout, dispatch error).
    SpansDroppedExportFailed,
    /// Requests not recorded because of the sampler (context is still propagated).
    RequestsNotSampled,
    /// Export requests answered 2xx.
    ExportRequestsOk,
    /// Export requests that failed.
    ExportRequestsFailed,
    /// Incoming `traceparent` headers that were invalid (trace restarted).
    TraceparentInvalid,
    /// Incoming `tracestate` headers that were invalid (dropped).
    TracestateInvalid,
    /// Trace context could not be written to the upstream request.
    InjectFailed,
}

impl Counter {
    pub const ALL: [Counter; 10] = [
        Counter::SpansQueued,
        Counter::SpansExported,
        Counter::SpansDroppedQueueFull,
        Counter::SpansDroppedExportFailed,
        Counter::RequestsNotSampled,
        Counter::ExportRequestsOk,
        Counter::ExportRequestsFailed,
        Counter::TraceparentInvalid,
        Counter::TracestateInvalid,
        Counter::InjectFailed,
    ];

    /// The Envoy stat name.
    pub fn name(&self) -> &'static str {
        match self {
            Counter::SpansQueued => "gateway_tracing.spans_queued",
            Counter::SpansExported => "gateway_tracing.spans_exported",
            Counter::SpansDroppedQueueFull => "gateway_tracing.spans_dropped_queue_full",
            Counter::SpansDroppedExportFailed => "gateway_tracing.spans_dropped_export_failed",
            Counter::RequestsNotSampled => "gateway_tracing.requests_not_sampled",
            Counter::ExportRequestsOk => "gateway_tracing.export_requests_ok",
            Counter::ExportRequestsFailed => "gateway_tracing.export_requests_failed",
            Counter::TraceparentInvalid => "gateway_tracing.traceparent_invalid",
            Counter::TracestateInvalid => "gateway_tracing.tracestate_invalid",
            Counter::InjectFailed => "gateway_tracing.inject_failed",
        }
    }

    pub fn index(&self) -> usize {
        Counter::ALL.iter().position(|c| c == self).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert!(names.iter().all(|n| n.starts_with("gateway_tracing.")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }
}
