//! End-to-end OTLP/gRPC (`exporter.protocol: grpc`) against the real OpenTelemetry Collector's
//! gRPC receiver (`target/otelcol-gt`, built by `make peers`), the gateway and the cart
//! sidecar exporting through their `otel_collector` cluster switched to HTTP/2:
//!
//! - what the Collector decodes (read back from its file exporter) equals what the demo
//!   collector records for the same flow over OTLP/HTTP, plain and gzip (`grpc-encoding`);
//! - the Collector refusing (its memory limiter: UNAVAILABLE) is retried with backoff, counted,
//!   logged once with the sanitised `grpc-message`, and nothing is lost when it recovers.
mod common;

use common::{ports_lock, repo_root, send, try_start_envoy};
use demo::collector::Collector;
use demo::envoy::Envoy;
use demo::peers::{otelcol_binary, Peer, PeerOpts};
use demo::serde_json::{self, json, Value};
use demo::shop::{self, Service, ServiceHandle};
use demo::span::{flatten, RecordedSpan};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const GATEWAY: &str = "127.0.0.1:10000";
const GATEWAY_ADMIN: u16 = 9901;
const SIDECAR_ADMIN: u16 = 9902;
/// The demo collector (the reference run) listens where the shipped configs send.
const OTLP_HTTP: &str = "127.0.0.1:4318";
/// The Collector's gRPC receiver; no shipped config uses this port on loopback.
const OTLP_GRPC: &str = "127.0.0.1:4317";
const HEALTH: &str = "127.0.0.1:13133";
const METRICS: &str = "127.0.0.1:18888";

const REQUESTS: [(&str, &str, &str); 5] = [
    (
        "POST",
        "/api/auth/login",
        r#"{"user":"demo","password":"demo"}"#,
    ),
    ("GET", "/api/products", ""),
    (
        "POST",
        "/api/cart/c-42/add",
        r#"{"productId":"p-2","qty":1}"#,
    ),
    ("POST", "/api/orders", r#"{"cartId":"c-42"}"#),
    ("GET", "/api/legacy/report", ""),
];
/// Spans the flow produces (see e2e_collector.rs).
const FLOW_SPANS: usize = 13;
/// Attribute values that differ between two runs of the same flow.
const VOLATILE: [&str; 4] = [
    "client.port",
    "source.port",
    "network.peer.port",
    "http.request.header.x-request-id",
];

/// The shipped `otel_collector` cluster, and the same cluster speaking HTTP/2 to the gRPC port.
const HTTP_CLUSTER: &str = "    load_assignment:
      cluster_name: otel_collector
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 4318 } } } }] }]";
const GRPC_CLUSTER: &str = "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: otel_collector
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 4317 } } } }] }]";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gateway-tracing-e2e-grpc-{}/{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config_with(dir: &Path, file: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut yaml = std::fs::read_to_string(repo_root().join("envoy").join(file)).unwrap();
    for (from, to) in edits {
        assert!(
            yaml.contains(from),
            "envoy/{file} no longer contains {from:?}"
        );
        yaml = yaml.replace(from, to);
    }
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Gateway (at the edge) and sidecar configs; with `grpc`, `exporter_extra` added to each
/// exporter and the collector cluster on HTTP/2 to the gRPC receiver.
fn flow_configs(dir: &Path, grpc: bool, exporter_extra: &str) -> (PathBuf, PathBuf) {
    let flush = "\"flush_interval_ms\": 500";
    let with = format!("{flush}{exporter_extra}");
    let mut edits = vec![(flush, with.as_str())];
    if grpc {
        edits.push((HTTP_CLUSTER, GRPC_CLUSTER));
    }
    let mut gateway_edits = edits.clone();
    gateway_edits.push((
        "\"mode\": \"gateway\",",
        "\"mode\": \"gateway\", \"trust\": \"untrusted\",",
    ));
    if grpc {
        // The gRPC method is the path: an OTLP/HTTP path is refused with protocol grpc.
        gateway_edits.push(("\"path\": \"/v1/traces\",", ""));
    }
    let gateway = config_with(dir, "gateway.yaml", &gateway_edits);
    let sidecar = config_with(dir, "cart-sidecar.yaml", &edits);
    (gateway, sidecar)
}

struct Shop {
    _services: Vec<ServiceHandle>,
    sidecar: Envoy,
    gateway: Envoy,
}

impl Shop {
    fn start(gateway: &Path, sidecar: &Path) -> Shop {
        let services = Service::ALL
            .iter()
            .map(|s| shop::serve(*s, s.default_listen(), shop::DEFAULT_OUTBOUND).unwrap())
            .collect();
        let sidecar = try_start_envoy(sidecar, SIDECAR_ADMIN, 1, 2, vec![]).unwrap();
        let gateway = try_start_envoy(gateway, GATEWAY_ADMIN, 0, 2, vec![]).unwrap();
        Shop {
            _services: services,
            sidecar,
            gateway,
        }
    }

    fn drive_flow(&self) {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        for (method, path, body) in REQUESTS {
            let r = send(
                GATEWAY,
                method,
                path,
                &[("traceparent", tp.as_bytes())],
                body,
            );
            let ok = if path.starts_with("/api/legacy") {
                r.status == 503
            } else {
                (200..300).contains(&r.status)
            };
            assert!(ok, "{method} {path}: {} {}", r.status, r.body);
        }
    }

    fn counter(&self, name: &str) -> u64 {
        [&self.gateway, &self.sidecar]
            .iter()
            .map(|e| {
                e.stat(&format!("wasmcustom.gateway_tracing.{name}"))
                    .unwrap()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// created = exported + dropped by reason + held, over both proxies.
    fn assert_accounted(&self, label: &str) {
        let dropped: u64 = [
            "spans_dropped_queue_full",
            "spans_dropped_export_failed",
            "spans_dropped_retries_exhausted",
            "spans_dropped_rejected_by_collector",
            "spans_dropped_too_large",
            "spans_dropped_shutdown",
            "spans_dropped_internal",
        ]
        .iter()
        .map(|n| self.counter(n))
        .sum();
        assert_eq!(
            self.counter("spans_created"),
            self.counter("spans_exported") + dropped + self.counter("export_queue_spans"),
            "{label}: spans_created = exported + dropped + held"
        );
    }
}

/// A Collector with the OTLP gRPC receiver, optionally a memory limiter, and a file exporter.
fn start_collector(dir: &Path, name: &str, memory_limiter: bool) -> (Peer, PathBuf) {
    let file = dir.join(format!("{name}.jsonl"));
    let (metrics_host, metrics_port) = METRICS.split_once(':').unwrap();
    let (procs, list) = if memory_limiter {
        (
            "processors:\n  memory_limiter:\n    check_interval: 100ms\n    limit_mib: 1\n",
            "      processors: [memory_limiter]\n",
        )
    } else {
        ("", "")
    };
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {OTLP_GRPC}
{procs}exporters:
  file:
    path: {}
    flush_interval: 100ms
extensions:
  health_check:
    endpoint: {HEALTH}
service:
  extensions: [health_check]
  telemetry:
    logs:
      level: info
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: {metrics_host}
                port: {metrics_port}
  pipelines:
    traces:
      receivers: [otlp]
{list}      exporters: [file]
",
        file.display()
    );
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, yaml).unwrap();
    let peer = Peer::start(PeerOpts {
        name: name.into(),
        binary: otelcol_binary(&repo_root()),
        config,
        ready_url: format!("http://{HEALTH}/"),
        metrics_url: Some(format!("http://{METRICS}/metrics")),
        env: vec![],
        log_dir: dir.to_path_buf(),
        ready_timeout: Duration::from_secs(30),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    (peer, file)
}

/// Every span the file exporter has written so far (whole lines only).
fn read_file_export(path: &Path) -> Vec<RecordedSpan> {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
    let mut spans = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let req: ExportTraceServiceRequest = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("file exporter line is not OTLP/JSON ({e}): {line}"));
        spans.extend(flatten(&req));
    }
    spans
}

fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Spans as compared across runs: ids replaced by the parent's name, times dropped, volatile
/// attribute values masked; by the trace's root span name.
fn canonical(spans: &[RecordedSpan]) -> BTreeMap<String, Vec<Value>> {
    let mask = |attrs: &BTreeMap<String, demo::AttrValue>| -> Value {
        let mut m = serde_json::Map::new();
        for (k, v) in attrs {
            let v = if VOLATILE.contains(&k.as_str()) {
                json!("<varies>")
            } else {
                serde_json::to_value(v).unwrap()
            };
            m.insert(k.clone(), v);
        }
        Value::Object(m)
    };
    let mut traces: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in spans {
        let root = spans
            .iter()
            .find(|r| r.trace_id == s.trace_id && r.parent_span_id.is_empty())
            .map_or("<no root>".to_string(), |r| r.name.clone());
        let parent = spans
            .iter()
            .find(|p| p.trace_id == s.trace_id && p.span_id == s.parent_span_id)
            .map(|p| p.name.clone());
        traces.entry(root).or_default().push(json!({
            "name": s.name,
            "parent": parent,
            "kind": s.kind,
            "attributes": mask(&s.attributes),
            "events": s.events.iter().map(|e| json!({"name": e.name, "attributes": mask(&e.attributes)})).collect::<Vec<_>>(),
            "status": [json!(s.status_code), json!(s.status_message)],
            "resource": mask(&s.resource),
            "scope": [&s.scope_name, &s.scope_version],
            "trace_state": s.trace_state,
        }));
    }
    for v in traces.values_mut() {
        v.sort_by_key(|s| s.to_string());
    }
    traces
}

/// The reference: the same flow over OTLP/HTTP into the demo collector.
fn reference_run() -> Vec<RecordedSpan> {
    let dir = scratch("reference");
    let (gateway, sidecar) = flow_configs(&dir, false, "");
    let collector = Collector::start(OTLP_HTTP).unwrap();
    let shop = Shop::start(&gateway, &sidecar);
    shop.drive_flow();
    match collector.wait_for(Duration::from_secs(15), |s| s.len() >= FLOW_SPANS) {
        Ok(s) => s,
        Err(s) => panic!("demo collector got {} of {FLOW_SPANS} spans", s.len()),
    }
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
        let dir = scratch(label);
        let (otelcol, file) = start_collector(&dir, &format!("otelcol-{label}"), false);
        let (gateway, sidecar) = flow_configs(&dir, true, extra);
        let shop = Shop::start(&gateway, &sidecar);
        shop.drive_flow();
        let spans = wait_until(Duration::from_secs(15), "the Collector's file", || {
            let s = read_file_export(&file);
            (s.len() >= FLOW_SPANS).then_some(s)
        });
        std::thread::sleep(Duration::from_millis(1200));
        assert_eq!(
            read_file_export(&file).len(),
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
        shop.assert_accounted(label);
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
    let dir = scratch("memory-limiter");
    let (mut otelcol, _) = start_collector(&dir, "otelcol-limited", true);
    let retry = ", \"protocol\": \"grpc\", \"retry\": {\"initial_backoff_ms\": 200, \"max_backoff_ms\": 1000, \"max_elapsed_ms\": 60000}";
    let (gateway, sidecar) = flow_configs(&dir, true, retry);
    let shop = Shop::start(&gateway, &sidecar);
    for _ in 0..5 {
        let r = send(GATEWAY, "GET", "/api/products", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    wait_until(Duration::from_secs(15), "the filter retrying", || {
        (shop.counter("export_retries") >= 2).then_some(())
    });
    assert_eq!(shop.counter("spans_exported"), 0);
    assert_eq!(shop.counter("spans_created"), 10);
    assert_eq!(shop.counter("export_queue_spans"), 10, "held, not dropped");
    assert!(
        shop.counter("export_requests_failed") >= 3,
        "every refusal counted"
    );
    shop.assert_accounted("while refused");
    let refused = otelcol
        .metric("otelcol_processor_memory_limiter_refused_spans", &[])
        .unwrap();
    assert!(
        refused >= 10.0,
        "the memory limiter refused {refused} spans"
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
    wait_until(Duration::from_secs(20), "the backlog delivered", || {
        (read_file_export(&file).len() >= 10).then_some(())
    });
    wait_until(Duration::from_secs(5), "spans_exported counted", || {
        (shop.counter("spans_exported") == 10).then_some(())
    });
    assert_eq!(read_file_export(&file).len(), 10, "each span once");
    assert_eq!(shop.counter("export_queue_spans"), 0);
    shop.assert_accounted("after recovery");
    assert!(shop
        .gateway
        .log()
        .contains("export to cluster 'otel_collector' recovered after"));
}
