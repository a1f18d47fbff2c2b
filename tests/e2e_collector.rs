//! End-to-end against the real OpenTelemetry Collector (`target/otelcol-gt`, built from
//! `collector/` by `make peers`): the gateway and the cart sidecar export to it instead of the
//! demo collector.
//!
//! - What the Collector decodes (read back from its file exporter) equals what the demo
//!   collector records for the same flow, for OTLP/HTTP protobuf, JSON and gzip.
//! - What the filter does when the real Collector refuses (its memory limiter, a request body
//!   over `max_request_body_size` (split until it fits), a full exporter queue) is what the README says, and every
//!   span is accounted for on both sides (the filter's counters, the Collector's metrics).
mod common;

use common::flow::*;
use common::ports_lock;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[test]
fn real_collector_decodes_protobuf_json_and_gzip_as_the_demo_collector_records() {
    let _lock = ports_lock();
    let reference = canonical(&reference_run());
    assert_eq!(
        reference.len(),
        REQUESTS.len(),
        "one trace per request: {reference:#?}"
    );

    for (label, extra) in [
        ("protobuf", ""),
        ("json", ", \"encoding\": \"json\""),
        ("gzip", ", \"compression\": \"gzip\""),
    ] {
        let dir = scratch("e2e-collector", label);
        let file = dir.join("spans.jsonl");
        let config = collector_config(
            &dir,
            &format!(
                "receivers:
  otlp:
    protocols:
      http:
        endpoint: {OTLP_HTTP}
exporters:
  file:
    path: {}
    flush_interval: 100ms
",
                file.display()
            ),
            "      receivers: [otlp]\n      exporters: [file]\n",
        );
        let otelcol = start_otelcol(&dir, &format!("otelcol-{label}"), &config);
        let (gateway, sidecar) = flow_configs(&dir, false, extra);
        let shop = Shop::start(&gateway, &sidecar);
        shop.drive_flow();

        let (spans, raw) = wait_until(Duration::from_secs(15), "the Collector's file", || {
            let (s, r) = read_file_export(&file);
            (s.len() >= FLOW_SPANS).then_some((s, r))
        });
        // Nothing more arrives (no duplicate from a retry).
        std::thread::sleep(Duration::from_millis(1200));
        let (spans_after, _) = read_file_export(&file);
        assert_eq!(
            spans_after.len(),
            FLOW_SPANS,
            "{label}: exactly the flow's spans"
        );

        let got = canonical(&spans);
        for (root, want) in &reference {
            assert_eq!(
                got.get(root),
                Some(want),
                "{label}: trace {root:?} differs from the demo collector's"
            );
        }
        assert_eq!(got.len(), reference.len(), "{label}: {:?}", got.keys());

        // Links (the demo collector does not record them): each gateway SERVER span links to
        // the incoming context it did not continue, marked remote.
        let servers: Vec<_> = raw
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .filter(|s| s.kind == 2 && s.parent_span_id.is_empty())
            .collect();
        assert_eq!(
            servers.len(),
            REQUESTS.len(),
            "{label}: gateway SERVER spans"
        );
        for s in servers {
            assert_eq!(s.links.len(), 1, "{label}: {} links", s.name);
            let l = &s.links[0];
            assert_eq!(demo::span::hex(&l.trace_id), INCOMING_TRACE);
            assert_eq!(demo::span::hex(&l.span_id), INCOMING_SPAN);
            assert_eq!(l.flags & 0x300, 0x300, "{label}: link flags {:#x}", l.flags);
        }

        // Both sides agree on the count.
        let exported = shop.counter("spans_exported");
        assert_eq!(
            exported, FLOW_SPANS as u64,
            "{label}: filter spans_exported"
        );
        let accepted = otelcol
            .metric("otelcol_receiver_accepted_spans", &[])
            .unwrap();
        assert_eq!(accepted, FLOW_SPANS as f64, "{label}: Collector accepted");
        let encoding = otelcol.log();
        assert!(
            !encoding.contains("\"error\""),
            "{label}: Collector logged an error"
        );
    }
}

fn otlp_file_collector(dir: &Path, receiver_extra: &str, processors: &str) -> (PathBuf, PathBuf) {
    let file = dir.join("spans.jsonl");
    let (procs, list) = if processors.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!("processors:\n{processors}"),
            "      processors: [memory_limiter]\n".to_string(),
        )
    };
    let config = collector_config(
        dir,
        &format!(
            "receivers:
  otlp:
    protocols:
      http:
        endpoint: {OTLP_HTTP}{receiver_extra}
{procs}exporters:
  file:
    path: {}
    flush_interval: 100ms
",
            file.display()
        ),
        &format!("      receivers: [otlp]\n{list}      exporters: [file]\n"),
    );
    (config, file)
}

/// Fast retries, so a refusal and a recovery fit in seconds.
const FAST_RETRY: &str =
    ", \"retry\": {\"initial_backoff_ms\": 200, \"max_backoff_ms\": 1000, \"max_elapsed_ms\": 60000}";

#[test]
fn memory_limiter_refusal_is_retried_with_backoff_and_nothing_is_lost() {
    let _lock = ports_lock();
    let dir = scratch("e2e-collector", "memory-limiter");
    // A 1 MiB limit, below the heap of any running Collector: every export is refused (503,
    // "data refused due to high memory usage"), a retryable answer.
    let (limited, _) = otlp_file_collector(
        &dir,
        "",
        "  memory_limiter:\n    check_interval: 100ms\n    limit_mib: 1\n",
    );
    let mut otelcol = start_otelcol(&dir, "otelcol-memory-limited", &limited);
    let (gateway, sidecar) = flow_configs(&dir, false, FAST_RETRY);
    let shop = Shop::start(&gateway, &sidecar);
    products(5);

    assert_backlog_held(&shop, &otelcol, 10);
    assert!(
        otelcol.log().contains("Refusing data"),
        "the Collector says why"
    );
    let log = shop.gateway.log();
    assert!(
        log.contains("export to cluster 'otel_collector' failing: HTTP 503; retrying in"),
        "the filter logs the state change once"
    );

    // The Collector gets its memory back (restarted without the limiter): the next probe
    // succeeds and the backlog drains, every span exactly once.
    otelcol.stop();
    let (normal, file) = otlp_file_collector(&dir, "", "");
    let _otelcol = start_otelcol(&dir, "otelcol-recovered", &normal);
    assert_backlog_delivered_once(&shop, &file, 10);
}

#[test]
fn body_over_max_request_body_size_is_split_until_it_fits() {
    let _lock = ports_lock();
    let dir = scratch("e2e-collector", "body-size");
    // One gateway span is ~600 bytes encoded; a request's two spans are ~1.2 KB.
    let (config, file) = otlp_file_collector(&dir, "\n        max_request_body_size: 1000", "");
    let otelcol = start_otelcol(&dir, "otelcol-small-body", &config);
    let (gateway, sidecar) = flow_configs(&dir, false, FAST_RETRY);
    let shop = Shop::start(&gateway, &sidecar);
    products(3);

    // The real Collector answers an oversized body with 400 ("http: request body too large"),
    // not 413. The filter takes that 400 for what it is: the batch is split and resent, down to
    // single spans, so no span is lost for another's size; only a single span over the limit
    // would be dropped, as too large.
    wait_until(
        Duration::from_secs(15),
        "every span exported or dropped alone",
        || {
            (shop.counter("spans_exported") + shop.counter("spans_dropped_too_large") == 6)
                .then_some(())
        },
    );
    assert_eq!(
        shop.counter("spans_dropped_export_failed"),
        0,
        "a 400 for the body's size is not a bad request: nothing dropped as export_failed"
    );
    assert!(
        shop.counter("spans_exported") > 0,
        "split batches fit under the limit"
    );
    assert!(
        shop.counter("export_requests_failed") > 0,
        "the Collector did refuse the first, bigger bodies"
    );
    assert_accounted(&shop, "body too large");
    let exported = shop.counter("spans_exported");
    wait_until(
        Duration::from_secs(10),
        "the file exporter has every exported span",
        || (read_file_export(&file).0.len() as u64 == exported).then_some(()),
    );
    assert_eq!(
        otelcol
            .metric("otelcol_receiver_accepted_spans", &[])
            .unwrap(),
        exported as f64
    );
}

#[test]
fn full_exporter_queue_is_retried_then_dropped_and_both_sides_count_it() {
    let _lock = ports_lock();
    let dir = scratch("e2e-collector", "queue-full");
    // The Collector forwards to a port nothing listens on, with room for one batch in its
    // queue: the first export is accepted (and stays queued there), later ones are answered
    // 503 "sending queue is full".
    let config = collector_config(
        &dir,
        &format!(
            "receivers:
  otlp:
    protocols:
      http:
        endpoint: {OTLP_HTTP}
exporters:
  otlphttp:
    endpoint: http://127.0.0.1:9
    retry_on_failure:
      initial_interval: 30s
      max_elapsed_time: 60s
    sending_queue:
      num_consumers: 1
      queue_size: 1
"
        ),
        "      receivers: [otlp]\n      exporters: [otlphttp]\n",
    );
    let otelcol = start_otelcol(&dir, "otelcol-queue-full", &config);
    let retry = ", \"retry\": {\"initial_backoff_ms\": 200, \"max_backoff_ms\": 400, \"max_elapsed_ms\": 2000}";
    let (gateway, sidecar) = flow_configs(&dir, false, retry);
    let shop = Shop::start(&gateway, &sidecar);
    // Three requests in three flush intervals: three export requests.
    for _ in 0..3 {
        products(1);
        std::thread::sleep(Duration::from_millis(700));
    }
    wait_until(Duration::from_secs(15), "retries exhausted", || {
        (shop.counter("spans_dropped_retries_exhausted") == 4).then_some(())
    });
    assert_eq!(
        shop.counter("spans_exported"),
        2,
        "the first batch was accepted"
    );
    assert!(
        shop.counter("export_retries") >= 2,
        "retried with backoff first"
    );
    assert_accounted(&shop, "queue full");
    assert!(shop
        .gateway
        .log()
        .contains("export to cluster 'otel_collector' failing: HTTP 503; retrying in"));
    // The Collector's side of the same story: what it accepted is what the filter counted as
    // exported; what it refused, it counts as enqueue failures.
    let m = |n: &str| otelcol.metric(n, &[]).unwrap();
    assert_eq!(m("otelcol_receiver_accepted_spans"), 2.0);
    assert!(m("otelcol_exporter_enqueue_failed_spans") >= 4.0);
    assert_eq!(
        m("otelcol_receiver_refused_spans"),
        m("otelcol_exporter_enqueue_failed_spans")
    );
}
