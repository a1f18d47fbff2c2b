//! The filter's self-metrics, exposed as Envoy stats (`wasmcustom.gateway_tracing.*` in the
//! admin `/stats` output, `gateway_tracing_*` in `/stats/prometheus`). Every counter is
//! defined once, in [`counters!`]'s list: variant, stat name and help text; gauges and
//! histograms likewise in [`gauges!`] and [`histograms!`]. Every span that is created is
//! either exported or counted as dropped under exactly one reason (or still held by the
//! exporter, which `export_queue_bytes` shows).

/// Declares every metric, once: counters, gauges and histograms, each with its variant, stat
/// name and help text; a counter's role says whether it is a drop reason (a `spans_dropped_*`
/// counter: every span created is exported, held, or counted under exactly one of them).
macro_rules! metrics {
    (
        counters { $($c:ident => $cname:literal, $role:ident, $chelp:literal;)+ }
        gauges { $($g:ident => $gname:literal, $ghelp:literal;)+ }
        histograms { $($h:ident => $hname:literal, $hhelp:literal;)+ }
    ) => {
        /// A counter the filter increments.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $(#[doc = $chelp] $c,)+
        }

        impl Counter {
            /// Every counter, in definition order ([`Counter::index`] is the position here).
            pub const ALL: &'static [Counter] = &[$(Counter::$c,)+];

            /// The Envoy stat name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Counter::$c => concat!("gateway_tracing.", $cname),)+
                }
            }

            /// One line for the README's Metrics table and for operators.
            pub fn help(self) -> &'static str {
                match self {
                    $(Counter::$c => $chelp,)+
                }
            }

            /// A `spans_dropped_*` reason: spans counted here were created and never exported.
            pub fn is_drop_reason(self) -> bool {
                match self {
                    $(Counter::$c => Role::$role == Role::drop,)+
                }
            }
        }

        /// A gauge the filter sets (per VM; Envoy shows the sum over worker VMs).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Gauge {
            $(#[doc = $ghelp] $g,)+
        }

        impl Gauge {
            /// Every gauge, in definition order ([`Gauge::index`] is the position here).
            pub const ALL: &'static [Gauge] = &[$(Gauge::$g,)+];

            /// The Envoy stat name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Gauge::$g => concat!("gateway_tracing.", $gname),)+
                }
            }

            /// One line for the README's Metrics table and for operators.
            pub fn help(self) -> &'static str {
                match self {
                    $(Gauge::$g => $ghelp,)+
                }
            }
        }

        /// A histogram the filter records values in.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Histogram {
            $(#[doc = $hhelp] $h,)+
        }

        impl Histogram {
            /// Every histogram, in definition order ([`Histogram::index`] is the position here).
            pub const ALL: &'static [Histogram] = &[$(Histogram::$h,)+];

            /// The Envoy stat name.
            pub fn name(self) -> &'static str {
                match self {
                    $(Histogram::$h => concat!("gateway_tracing.", $hname),)+
                }
            }

            /// One line for the README's Metrics table and for operators.
            pub fn help(self) -> &'static str {
                match self {
                    $(Histogram::$h => $hhelp,)+
                }
            }
        }
    };
}

/// A counter's role in the accounting.
#[allow(non_camel_case_types)]
#[derive(PartialEq, Eq)]
enum Role {
    /// Counts something; not a span drop.
    count,
    /// A `spans_dropped_*` reason.
    drop,
}

metrics! {
    counters {
        SpansCreated => "spans_created", count, "Spans finished by the tracer (each later exported or counted under exactly one spans_dropped_* reason).";
        SpansQueued => "spans_queued", count, "Spans finished and accepted into the export queue.";
        SpansExported => "spans_exported", count, "Spans the collector accepted (2xx, minus any partial_success rejections).";
        SpansDroppedQueueFull => "spans_dropped_queue_full", drop, "Spans dropped because the export queue was full (exporter.max_queue_bytes): the newest are refused.";
        SpansDroppedExportFailed => "spans_dropped_export_failed", drop, "Spans dropped because their export failed for good (400 or other non-retryable 4xx/5xx, a non-retryable gRPC status, unknown cluster, encoding failure, retry disabled).";
        SpansDroppedRetriesExhausted => "spans_dropped_retries_exhausted", drop, "Spans dropped because retrying their batch exceeded exporter.retry.max_elapsed_ms.";
        SpansDroppedRejectedByCollector => "spans_dropped_rejected_by_collector", drop, "Spans the collector answered 2xx for but rejected (OTLP partial_success.rejected_spans).";
        SpansDroppedTooLarge => "spans_dropped_too_large", drop, "Spans dropped because the collector refused a request holding only that span as too large (413, the OpenTelemetry Collector's 400 \"request body too large\", or gRPC RESOURCE_EXHAUSTED over its message limit); a larger batch is split and resent.";
        SpansDroppedShutdown => "spans_dropped_shutdown", drop, "Spans still queued or failing when the plugin stopped.";
        SpansDroppedInternal => "spans_dropped_internal", drop, "Spans dropped because the exporter was busy in a re-entrant host callback (should stay 0).";
        RequestsNotSampled => "requests_not_sampled", count, "Requests not recorded because of the sampler (context is still propagated).";
        ExportRequestsOk => "export_requests_ok", count, "Export requests answered 2xx.";
        ExportRequestsFailed => "export_requests_failed", count, "Export requests that failed (any reason, retried or not).";
        ExportRetries => "export_retries", count, "Export requests that were retries of a failed batch.";
        TraceparentInvalid => "traceparent_invalid", count, "Incoming traceparent headers that were invalid (trace restarted).";
        TracestateInvalid => "tracestate_invalid", count, "Incoming tracestate headers that were invalid (dropped).";
        B3Invalid => "b3_invalid", count, "Incoming B3 headers (b3 or x-b3-*) that were invalid (ignored), when a B3 propagator is configured.";
        IncomingContextLinked => "incoming_context_linked", count, "Incoming trace contexts not continued but recorded as a span link (trust: untrusted).";
        InjectFailed => "inject_failed", count, "Trace context could not be written to the upstream request.";
        RequestsKeptForError => "requests_kept_for_error", count, "Requests not sampled but recorded because they failed (sampler_keep_errors).";
        SpanLimitsApplied => "span_limits_applied", count, "Attribute values cut to span_limits.attribute_value_length_limit, plus attributes, events and links dropped by span_limits (each also in the span's dropped_*_count).";
        DurableObjectIdMissing => "durable_object_id_missing", count, "Calls to a Durable Object cluster whose id (route param or header) was missing.";
    }
    gauges {
        ExportQueueBytes => "export_queue_bytes", "Encoded span bytes the exporter holds (queued, awaiting retry, in flight); bounded by exporter.max_queue_bytes per worker.";
        ExportQueueSpans => "export_queue_spans", "Spans the exporter holds (queued, awaiting retry, in flight).";
        ExportInFlight => "export_in_flight", "Export requests awaiting an answer.";
    }
    histograms {
        ExportLatencyMs => "export_latency_ms", "Time from dispatching an export request to its answer (or failure), milliseconds.";
    }
}

impl Counter {
    /// Position in [`Counter::ALL`]: an index for per-VM counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Every `spans_dropped_*` reason, in definition order.
    pub fn drop_reasons() -> impl Iterator<Item = Counter> {
        Counter::ALL.iter().copied().filter(|c| c.is_drop_reason())
    }
}

impl Gauge {
    /// Position in [`Gauge::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Histogram {
    /// Position in [`Histogram::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Any of the filter's metrics: the one list the README's Metrics table is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Metric {
    /// Every metric: counters, then gauges, then histograms, each in definition order.
    pub fn all() -> impl Iterator<Item = Metric> {
        Counter::ALL
            .iter()
            .map(|c| Metric::Counter(*c))
            .chain(Gauge::ALL.iter().map(|g| Metric::Gauge(*g)))
            .chain(Histogram::ALL.iter().map(|h| Metric::Histogram(*h)))
    }

    /// The Envoy stat name (`gateway_tracing.<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Counter(c) => c.name(),
            Metric::Gauge(g) => g.name(),
            Metric::Histogram(h) => h.name(),
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Metric::Counter(c) => c.help(),
            Metric::Gauge(g) => g.help(),
            Metric::Histogram(h) => h.help(),
        }
    }

    /// `counter`, `counter (drop reason)`, `gauge` or `histogram`: the README's type column.
    pub fn kind(self) -> &'static str {
        match self {
            Metric::Counter(c) if c.is_drop_reason() => "counter (drop reason)",
            Metric::Counter(_) => "counter",
            Metric::Gauge(_) => "gauge",
            Metric::Histogram(_) => "histogram",
        }
    }

    /// The README's Metrics table, generated from this list (a test holds the README to it).
    pub fn readme_table() -> String {
        let mut out = String::from("| metric | type | meaning |\n| --- | --- | --- |\n");
        for m in Metric::all() {
            let short = m.name().trim_start_matches("gateway_tracing.");
            out.push_str(&format!("| `{short}` | {} | {} |\n", m.kind(), m.help()));
        }
        out
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

    #[test]
    fn drop_reasons_are_the_spans_dropped_counters() {
        let drops: Vec<&str> = Counter::drop_reasons().map(|c| c.name()).collect();
        let named: Vec<&str> = Counter::ALL
            .iter()
            .map(|c| c.name())
            .filter(|n| n.starts_with("gateway_tracing.spans_dropped_"))
            .collect();
        assert_eq!(
            drops, named,
            "a drop reason is named spans_dropped_*, and vice versa"
        );
        assert_eq!(drops.len(), 7);
    }

    /// The README's Metrics table is generated from the list: a metric added here without
    /// its README row (or a README row for a metric that is gone) fails this test, which
    /// prints the table to paste.
    #[test]
    fn the_readme_metrics_table_is_the_list() {
        let readme = include_str!("../../README.md");
        let begin = "<!-- metrics table: generated from core/src/metrics.rs -->\n";
        let start = readme.find(begin).map(|i| i + begin.len());
        let table = start.map(|s| {
            let rest = &readme[s..];
            &rest[..rest.find("\n\n").map_or(rest.len(), |e| e + 1)]
        });
        let want = Metric::readme_table();
        assert_eq!(
            table,
            Some(want.as_str()),
            "README Metrics table differs from core/src/metrics.rs; it should read:\n{want}"
        );
    }
}
