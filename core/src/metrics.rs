//! The filter's self-metrics, exposed as Envoy stats (`wasmcustom.gateway_tracing.*` in the
//! admin `/stats` output, `gateway_tracing_*` in `/stats/prometheus`). Every counter is
//! defined once, in [`counters!`]'s list: variant, stat name and help text. Every span that is
//! created is either exported or counted as dropped under exactly one reason.

macro_rules! counters {
    ($($variant:ident => $name:literal, $help:literal;)+) => {
        /// A counter the filter increments.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $(#[doc = $help] $variant,)+
        }

        impl Counter {
            /// Every counter, in definition order ([`Counter::index`] is the position here).
            pub const ALL: &'static [Counter] = &[$(Counter::$variant,)+];

            /// The Envoy stat name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => concat!("gateway_tracing.", $name),)+
                }
            }

            /// One line for the README's Metrics table and for operators.
            pub fn help(self) -> &'static str {
                match self {
                    $(Counter::$variant => $help,)+
                }
            }
        }
    };
}

counters! {
    SpansQueued => "spans_queued", "Spans finished and handed to the exporter queue.";
    SpansExported => "spans_exported", "Spans the collector accepted (2xx).";
    SpansDroppedQueueFull => "spans_dropped_queue_full", "Spans dropped because the export queue was full.";
    SpansDroppedExportFailed => "spans_dropped_export_failed", "Spans dropped because their export failed (non-2xx, timeout, dispatch error).";
    SpansDroppedInternal => "spans_dropped_internal", "Spans dropped because the exporter was busy in a re-entrant host callback (should stay 0).";
    RequestsNotSampled => "requests_not_sampled", "Requests not recorded because of the sampler (context is still propagated).";
    ExportRequestsOk => "export_requests_ok", "Export requests answered 2xx.";
    ExportRequestsFailed => "export_requests_failed", "Export requests that failed.";
    TraceparentInvalid => "traceparent_invalid", "Incoming traceparent headers that were invalid (trace restarted).";
    TracestateInvalid => "tracestate_invalid", "Incoming tracestate headers that were invalid (dropped).";
    B3Invalid => "b3_invalid", "Incoming B3 headers (b3 or x-b3-*) that were invalid (ignored), when a B3 propagator is configured.";
    IncomingContextLinked => "incoming_context_linked", "Incoming trace contexts not continued but recorded as a span link (trust: untrusted).";
    InjectFailed => "inject_failed", "Trace context could not be written to the upstream request.";
}

impl Counter {
    /// Position in [`Counter::ALL`]: an index for per-VM counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_indexed_in_order() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        assert!(names.iter().all(|n| n.starts_with("gateway_tracing.")));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert!(!c.help().is_empty());
        }
    }
}
