//! End-to-end OTLP/gRPC (`exporter.protocol: grpc`) against the real OpenTelemetry Collector's
//! gRPC receiver (`target/otelcol-gt`, built by `make peers`), the gateway and the cart
//! sidecar exporting through their `otel_collector` cluster switched to HTTP/2:
//!
//! - what the Collector decodes (read back from its file exporter) equals what the demo
//!   collector records for the same flow over OTLP/HTTP, plain and gzip (`grpc-encoding`);
//! - the Collector refusing (its memory limiter: UNAVAILABLE) is retried with backoff, counted,
//!   logged once with the sanitised `grpc-message`, and nothing is lost when it recovers.
mod common;

use common::flow::*;
use common::{ports_lock, send};
use demo::peers::Peer;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Collector's gRPC receiver; no shipped config uses this port on loopback.
const OTLP_GRPC: &str = "127.0.0.1:4317";

/// A Collector with the OTLP gRPC receiver, optionally a memory limiter, and a file exporter
/// (its config kept as `<name>.yaml`).
fn start_collector(dir: &Path, name: &str, memory_limiter: bool) -> (Peer, PathBuf) {
    let file = dir.join(format!("{name}.jsonl"));
    let (procs, list) = if memory_limiter {
        (
            "processors:\n  memory_limiter:\n    check_interval: 100ms\n    limit_mib: 1\n",
            "      processors: [memory_limiter]\n",
        )
    } else {
        ("", "")
    };
    let components = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {OTLP_GRPC}
{procs}exporters:
  file:
    path: {}
    flush_interval: 100ms",
        file.display()
    );
    let pipeline = format!("      receivers: [otlp]\n{list}      exporters: [file]\n");
    let config = dir.join(format!("{name}.yaml"));
    std::fs::rename(collector_config(dir, &components, &pipeline), &config).unwrap();
    (start_otelcol(dir, name, &config), file)
}

#[test]
fn real_collector_grpc_receiver_decodes_what_the_demo_collector_records() {
    let _lock = ports_lock();
    let reference = canonical(&reference_run());
    assert_eq!(reference.len(), REQUESTS.len(), "one trace per request");
    for (label, extra) in [
        ("grpc", ", \"protocol\": \"grpc\""),
        (
            "grpc-gzip",
            ", \"protocol\": \"grpc\", \"compression\": \"gzip\"",
        ),
    ] {
        let dir = scratch("e2e-grpc", label);
        let (otelcol, file) = start_collector(&dir, &format!("otelcol-{label}"), false);
        let (gateway, sidecar) = flow_configs(&dir, true, extra);
        let shop = Shop::start(&gateway, &sidecar);
        shop.drive_flow();
        let spans = wait_until(Duration::from_secs(15), "the Collector's file", || {
            let s = read_file_export(&file).0;
            (s.len() >= FLOW_SPANS).then_some(s)
        });
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(
            read_file_export(&file).0.len(),
            FLOW_SPANS,
            "{label}: exactly the flow's spans (no duplicate from a retry)"
        );
        let got = canonical(&spans);
        for (root, want) in &reference {
            assert_eq!(got.get(root), Some(want), "{label}: trace {root:?} differs");
        }
        assert_eq!(got.len(), reference.len(), "{label}: {:?}", got.keys());
        wait_until(Duration::from_secs(5), "spans_exported counted", || {
            (shop.counter("spans_exported") == FLOW_SPANS as u64).then_some(())
        });
        assert_eq!(shop.counter("export_requests_failed"), 0, "{label}");
        assert_accounted(&shop, label);
        let accepted = otelcol
            .metric("otelcol_receiver_accepted_spans", &[])
            .unwrap();
        assert_eq!(accepted, FLOW_SPANS as f64, "{label}: Collector accepted");
        let over_grpc = otelcol
            .metric("otelcol_receiver_accepted_spans", &["transport=\"grpc\""])
            .unwrap();
        assert_eq!(over_grpc, FLOW_SPANS as f64, "{label}: received over gRPC");
    }
}

#[test]
fn memory_limiter_unavailable_is_retried_with_backoff_and_nothing_is_lost() {
    let _lock = ports_lock();
    let dir = scratch("e2e-grpc", "memory-limiter");
    let (mut otelcol, _) = start_collector(&dir, "otelcol-limited", true);
    let retry = ", \"protocol\": \"grpc\", \"retry\": {\"initial_backoff_ms\": 200, \"max_backoff_ms\": 1000, \"max_elapsed_ms\": 60000}";
    let (gateway, sidecar) = flow_configs(&dir, true, retry);
    let shop = Shop::start(&gateway, &sidecar);
    for _ in 0..5 {
        let r = send(GATEWAY, "GET", "/api/products", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_backlog_held(&shop, &otelcol, 10);
    assert!(
        shop.counter("export_requests_failed") >= 3,
        "every refusal counted"
    );
    let log = shop.gateway.log();
    let line = "export to cluster 'otel_collector' failing: gRPC UNAVAILABLE (14): data refused due to high memory usage; retrying in";
    // One state-change line per exporter: per worker VM in the wasm build (2 workers), one per
    // process in the native build.
    let lines = log.matches(line).count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} state-change lines: {log}"
    );

    otelcol.stop();
    let (_otelcol, file) = start_collector(&dir, "otelcol-recovered", false);
    assert_backlog_delivered_once(&shop, &file, 10);
}
