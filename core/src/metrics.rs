//! The filter's self-metrics, exposed as Envoy stats (`wasmcustom.gateway_tracing.*` in the
//! admin `/stats` output, `gateway_tracing_*` in `/stats/prometheus`). Every counter is
//! defined once, in [`counters!`]'s list: variant, stat name and help text; gauges and
//! histograms likewise in [`gauges!`] and [`histograms!`]. Every span that is created is
//! either exported or counted as dropped under exactly one reason (or still held by the
//! exporter, which `export_queue_bytes` shows).

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
    SpansCreated => "spans_created", "Spans finished by the tracer (each later exported or counted under exactly one spans_dropped_* reason).";
    SpansQueued => "spans_queued", "Spans finished and accepted into the export queue.";
    SpansExported => "spans_exported", "Spans the collector accepted (2xx, minus any partial_success rejections).";
    SpansDroppedQueueFull => "spans_dropped_queue_full", "Spans dropped because the export queue was full (exporter.max_queue_bytes): the newest are refused.";
    SpansDroppedExportFailed => "spans_dropped_export_failed", "Spans dropped because their export failed for good (400 or other non-retryable 4xx/5xx, unknown cluster, encoding failure).";
    SpansDroppedRetriesExhausted => "spans_dropped_retries_exhausted", "Spans dropped because retrying their batch exceeded exporter.retry.max_elapsed_ms.";
    SpansDroppedRejectedByCollector => "spans_dropped_rejected_by_collector", "Spans the collector answered 2xx for but rejected (OTLP partial_success.rejected_spans).";
    SpansDroppedTooLarge => "spans_dropped_too_large", "Spans dropped because the collector refused a request holding only that span as too large (413).";
    SpansDroppedShutdown => "spans_dropped_shutdown", "Spans still queued or failing when the plugin stopped.";
    SpansDroppedInternal => "spans_dropped_internal", "Spans dropped because the exporter was busy in a re-entrant host callback (should stay 0).";
    RequestsNotSampled => "requests_not_sampled", "Requests not recorded because of the sampler (context is still propagated).";
    ExportRequestsOk => "export_requests_ok", "Export requests answered 2xx.";
    ExportRequestsFailed => "export_requests_failed", "Export requests that failed (any reason, retried or not).";
    ExportRetries => "export_retries", "Export requests that were retries of a failed batch.";
    TraceparentInvalid => "traceparent_invalid", "Incoming traceparent headers that were invalid (trace restarted).";
    TracestateInvalid => "tracestate_invalid", "Incoming tracestate headers that were invalid (dropped).";
    B3Invalid => "b3_invalid", "Incoming B3 headers (b3 or x-b3-*) that were invalid (ignored), when a B3 propagator is configured.";
    IncomingContextLinked => "incoming_context_linked", "Incoming trace contexts not continued but recorded as a span link (trust: untrusted).";
    InjectFailed => "inject_failed", "Trace context could not be written to the upstream request.";
    RequestsKeptForError => "requests_kept_for_error", "Requests not sampled but recorded because they failed (sampler_keep_errors).";
    SpanLimitsApplied => "span_limits_applied", "Attribute values cut to span_limits.attribute_value_length_limit, plus attributes, events and links dropped by span_limits (each also in the span's dropped_*_count).";
    DurableObjectIdMissing => "durable_object_id_missing", "Calls to a Durable Object cluster whose id (route param or header) was missing.";
}

macro_rules! gauges {
    ($($variant:ident => $name:literal, $help:literal;)+) => {
        /// A gauge the filter sets (per VM; Envoy shows the sum over worker VMs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Gauge {
            $(#[doc = $help] $variant,)+
        }

        impl Gauge {
            /// Every gauge, in definition order ([`Gauge::index`] is the position here).
            pub const ALL: &'static [Gauge] = &[$(Gauge::$variant,)+];

            /// The Envoy stat name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Gauge::$variant => concat!("gateway_tracing.", $name),)+
                }
            }

            /// One line for the README's Metrics table and for operators.
            pub fn help(self) -> &'static str {
                match self {
                    $(Gauge::$variant => $help,)+
                }
            }

            /// Position in [`Gauge::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

gauges! {
    ExportQueueBytes => "export_queue_bytes", "Encoded span bytes the exporter holds (queued, awaiting retry, in flight); bounded by exporter.max_queue_bytes per worker.";
    ExportQueueSpans => "export_queue_spans", "Spans the exporter holds (queued, awaiting retry, in flight).";
    ExportInFlight => "export_in_flight", "Export requests awaiting an answer.";
}

macro_rules! histograms {
    ($($variant:ident => $name:literal, $help:literal;)+) => {
        /// A histogram the filter records values in.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Histogram {
            $(#[doc = $help] $variant,)+
        }

        impl Histogram {
            /// Every histogram, in definition order ([`Histogram::index`] is the position here).
            pub const ALL: &'static [Histogram] = &[$(Histogram::$variant,)+];

            /// The Envoy stat name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Histogram::$variant => concat!("gateway_tracing.", $name),)+
                }
            }

            /// One line for the README's Metrics table and for operators.
            pub fn help(self) -> &'static str {
                match self {
                    $(Histogram::$variant => $help,)+
                }
            }

            /// Position in [`Histogram::ALL`].
            pub fn index(self) -> usize {
                self as usize
            }
        }
    };
}

histograms! {
    ExportLatencyMs => "export_latency_ms", "Time from dispatching an export request to its answer (or failure), milliseconds.";
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
        let mut all: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        all.extend(Gauge::ALL.iter().map(|g| g.name()));
        all.extend(Histogram::ALL.iter().map(|h| h.name()));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(
            all.len(),
            n,
            "names unique across counters, gauges, histograms"
        );
        for (i, g) in Gauge::ALL.iter().enumerate() {
            assert_eq!(g.index(), i);
            assert!(g.name().starts_with("gateway_tracing.") && !g.help().is_empty());
        }
        for (i, h) in Histogram::ALL.iter().enumerate() {
            assert_eq!(h.index(), i);
            assert!(h.name().starts_with("gateway_tracing.") && !h.help().is_empty());
        }
    }
}
