//! The shop flow exported to a real collector, shared by the Collector interop tests
//! (`e2e_collector.rs`, `e2e_grpc.rs`): the shop services with the cart sidecar and the gateway
//! ([`Shop`]), the flow's requests and its reference run on the demo collector, configs
//! rewritten from `envoy/`, the Collector's file export read back, spans compared canonically,
//! and the filter's accounting identity.
#![allow(dead_code)]
use super::{repo_root, send, try_start_envoy};
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

pub const GATEWAY: &str = "127.0.0.1:10000";
pub const GATEWAY_ADMIN: u16 = 9901;
pub const SIDECAR_ADMIN: u16 = 9902;
/// The Collector's OTLP/HTTP receiver takes the demo collector's place (the shipped configs'
/// `otel_collector` cluster).
pub const OTLP_HTTP: &str = "127.0.0.1:4318";
pub const HEALTH: &str = "127.0.0.1:13133";
pub const METRICS: &str = "127.0.0.1:18888";

/// The incoming context every flow request carries: the gateway (`trust: untrusted`) starts
/// its own trace and links to it.
pub const INCOMING_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const INCOMING_SPAN: &str = "00f067aa0ba902b7";

/// The flow: the four steps of `make run` and a failing upstream (an exception event).
pub const REQUESTS: [(&str, &str, &str); 5] = [
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
/// Spans the flow produces: 2 + 2 + 5 (gateway, Durable Object call, sidecar SERVER and its
/// two calls) + 2 + 2.
pub const FLOW_SPANS: usize = 13;

/// Attributes whose values differ between two runs of the same flow (ephemeral ports, ids).
pub const VOLATILE: [&str; 4] = [
    "client.port",
    "source.port",
    "network.peer.port",
    "http.request.header.x-request-id",
];

pub fn scratch(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gateway-tracing-{test}-{}/{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `envoy/<file>` with every occurrence of each `from` replaced, written to `dir`.
pub fn config_with(dir: &Path, file: &str, edits: &[(&str, &str)]) -> PathBuf {
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

/// The gateway and sidecar with `exporter_extra` added to every exporter block and the
/// gateway at the edge (`trust: untrusted`, so its SERVER spans carry a link); with `grpc`,
/// the collector cluster on HTTP/2 to the Collector's gRPC receiver and no OTLP/HTTP path.
pub fn flow_configs(dir: &Path, grpc: bool, exporter_extra: &str) -> (PathBuf, PathBuf) {
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

/// The shop services, the cart sidecar and the gateway, exporting to 127.0.0.1:4318.
pub struct Shop {
    _services: Vec<ServiceHandle>,
    pub sidecar: Envoy,
    pub gateway: Envoy,
}

impl Shop {
    pub fn start(gateway: &Path, sidecar: &Path) -> Shop {
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

    pub fn drive_flow(&self) {
        let tp = format!("00-{INCOMING_TRACE}-{INCOMING_SPAN}-01");
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

    /// A filter counter summed over both proxies.
    pub fn counter(&self, name: &str) -> u64 {
        counter_sum(&[&self.gateway, &self.sidecar], name)
    }
}

/// A filter counter (`gateway_tracing.<name>`) summed over `envoys`.
pub fn counter_sum(envoys: &[&Envoy], name: &str) -> u64 {
    envoys
        .iter()
        .map(|e| {
            e.stat(&format!("wasmcustom.gateway_tracing.{name}"))
                .unwrap()
                .unwrap_or(0)
        })
        .sum()
}

/// Every span the file exporter has written so far (one OTLP/JSON export request per line),
/// and the raw requests.
pub fn read_file_export(path: &Path) -> (Vec<RecordedSpan>, Vec<ExportTraceServiceRequest>) {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    // Only whole lines: the exporter may be writing the last one.
    text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
    let mut spans = Vec::new();
    let mut raw = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let req: ExportTraceServiceRequest = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("file exporter line is not OTLP/JSON ({e}): {line}"));
        spans.extend(flatten(&req));
        raw.push(req);
    }
    (spans, raw)
}

/// While a memory-limited Collector refuses: the filter retries, the `backlog` spans are held
/// (none exported, none dropped) and accounted for, and the Collector counts them refused.
pub fn assert_backlog_held(shop: &Shop, otelcol: &Peer, backlog: u64) {
    wait_until(Duration::from_secs(15), "the filter retrying", || {
        (shop.counter("export_retries") >= 2).then_some(())
    });
    assert_eq!(shop.counter("spans_exported"), 0);
    assert_eq!(shop.counter("spans_created"), backlog);
    assert_eq!(
        shop.counter("export_queue_spans"),
        backlog,
        "held, not dropped"
    );
    assert_accounted(shop, "while refused");
    let refused = otelcol
        .metric("otelcol_processor_memory_limiter_refused_spans", &[])
        .unwrap();
    assert!(
        refused >= backlog as f64,
        "the Collector's memory limiter refused {refused} spans"
    );
}

/// After a collector outage: the `backlog` spans the gateway held arrive in `file`, each
/// exactly once, the filter counts them exported with nothing left queued, the accounting
/// identity holds, and the filter logs the recovery.
pub fn assert_backlog_delivered_once(shop: &Shop, file: &Path, backlog: usize) {
    wait_until(Duration::from_secs(20), "the backlog delivered", || {
        (read_file_export(file).0.len() >= backlog).then_some(())
    });
    wait_until(Duration::from_secs(5), "spans_exported counted", || {
        (shop.counter("spans_exported") == backlog as u64).then_some(())
    });
    assert_eq!(read_file_export(file).0.len(), backlog, "each span once");
    assert_eq!(shop.counter("export_queue_spans"), 0);
    assert_accounted(shop, "after recovery");
    assert!(shop
        .gateway
        .log()
        .contains("export to cluster 'otel_collector' recovered after"));
}

pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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

/// A span as compared across runs: ids replaced by the parent's name, times dropped,
/// volatile attribute values masked.
pub fn canonical(spans: &[RecordedSpan]) -> BTreeMap<String, Vec<Value>> {
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

/// The reference: the same flow into the demo collector.
pub fn reference_run() -> Vec<RecordedSpan> {
    let dir = scratch("e2e-flow", "reference");
    let (gateway, sidecar) = flow_configs(&dir, false, "");
    let collector = Collector::start(OTLP_HTTP).unwrap();
    let shop = Shop::start(&gateway, &sidecar);
    shop.drive_flow();
    let spans = match collector.wait_for(Duration::from_secs(15), |s| s.len() >= FLOW_SPANS) {
        Ok(s) => s,
        Err(s) => panic!("demo collector got {} of {FLOW_SPANS} spans", s.len()),
    };
    spans
}

/// The gateway alone matters here; the flow's products request gives two spans.
pub const PRODUCTS: (&str, &str, &str) = ("GET", "/api/products", "");

pub fn products(n: usize) {
    for _ in 0..n {
        let r = send(GATEWAY, PRODUCTS.0, PRODUCTS.1, &[], PRODUCTS.2);
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

/// The filter's accounting identity (README "Metrics") over both proxies: created = exported +
/// dropped by every reason in the filter's metrics list + held.
pub fn assert_accounted(shop: &Shop, label: &str) {
    let c = |n: &str| shop.counter(n);
    let dropped: u64 = gateway_tracing_core::metrics::Counter::drop_reasons()
        .map(|r| c(r.name().trim_start_matches("gateway_tracing.")))
        .sum();
    assert_eq!(
        c("spans_created"),
        c("spans_exported") + dropped + c("export_queue_spans"),
        "{label}: spans_created = exported + dropped + held"
    );
}

/// The shipped `otel_collector` cluster, and the same cluster speaking HTTP/2 to the gRPC port.
pub const HTTP_CLUSTER: &str = "    load_assignment:
      cluster_name: otel_collector
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 4318 } } } }] }]";
pub const GRPC_CLUSTER: &str = "    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: otel_collector
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 4317 } } } }] }]";

/// A Collector config: `components` (receivers, processors, exporters), one traces
/// `pipeline` (its receivers/processors/exporters lists), health_check and Prometheus
/// self-metrics.
pub fn collector_config(dir: &Path, components: &str, pipeline: &str) -> PathBuf {
    let (metrics_host, metrics_port) = METRICS.split_once(':').unwrap();
    let yaml = format!(
        "{components}
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
{pipeline}"
    );
    let path = dir.join("otelcol.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Starts the Collector on `config`, waiting for its health check; logs go to `dir`.
pub fn start_otelcol(dir: &Path, name: &str, config: &Path) -> Peer {
    Peer::start(PeerOpts {
        name: name.into(),
        binary: otelcol_binary(&repo_root()),
        config: config.to_path_buf(),
        ready_url: format!("http://{HEALTH}/"),
        metrics_url: Some(format!("http://{METRICS}/metrics")),
        env: vec![],
        log_dir: dir.to_path_buf(),
        ready_timeout: Duration::from_secs(30),
    })
    .unwrap_or_else(|e| panic!("{e}"))
}
