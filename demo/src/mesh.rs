//! The seed's shop as a live mesh on loopback, shared by `make run` (the `demo` binary) and
//! the mesh end-to-end test: the embedded collector, the five shop services, the gateway
//! Envoy (`envoy/gateway.yaml`) and the cart's sidecar Envoy (`envoy/cart-sidecar.yaml`), all
//! running the built `gateway_tracing.wasm`; the scripted shopping flow; and the check that
//! every expected trace arrived complete.

use crate::collector::{Collector, RecordedSpan};
use crate::envoy::{Envoy, EnvoyOpts};
use crate::shop::{self, Service, ServiceHandle};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const GATEWAY: &str = "127.0.0.1:10000";
pub const GATEWAY_ADMIN: u16 = 9901;
pub const SIDECAR_ADMIN: u16 = 9902;
pub const COLLECTOR: &str = "127.0.0.1:4318";

/// One step of the scripted flow and the trace it must produce.
#[derive(Debug, Clone)]
pub struct Step {
    pub method: &'static str,
    pub path: &'static str,
    pub body: &'static str,
    /// Expected span names, each with its expected parent's name (`None` for the root).
    pub expect: &'static [(&'static str, Option<&'static str>)],
}

/// login, list products, add to cart, place order.
pub const FLOW: [Step; 4] = [
    Step {
        method: "POST",
        path: "/api/auth/login",
        body: r#"{"user":"demo","password":"demo"}"#,
        expect: &[
            ("POST /api/auth/login", None),
            (
                "AUTH_SERVICE POST /auth/login",
                Some("POST /api/auth/login"),
            ),
        ],
    },
    Step {
        method: "GET",
        path: "/api/products",
        body: "",
        expect: &[
            ("GET /api/products", None),
            ("PRODUCTS_SERVICE GET /products", Some("GET /api/products")),
        ],
    },
    Step {
        method: "POST",
        path: "/api/cart/c-42/add",
        body: r#"{"productId":"p-2","qty":1}"#,
        expect: &[
            ("POST /api/cart/:cartId/add", None),
            (
                "CartDurableObject POST /cart/add",
                Some("POST /api/cart/:cartId/add"),
            ),
            ("POST /cart/add", Some("CartDurableObject POST /cart/add")),
            ("PRODUCTS_SERVICE GET /products/:id", Some("POST /cart/add")),
            (
                "FULFILLMENT_SERVICE GET /shipping-options",
                Some("POST /cart/add"),
            ),
        ],
    },
    Step {
        method: "POST",
        path: "/api/orders",
        body: r#"{"cartId":"c-42"}"#,
        expect: &[
            ("POST /api/orders", None),
            ("ORDER_SERVICE POST /orders", Some("POST /api/orders")),
        ],
    },
];

/// What one step produced.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub step: Step,
    pub status: u16,
    pub trace_id: Option<String>,
    pub spans: Vec<RecordedSpan>,
    /// Empty when the trace is complete and shaped as expected.
    pub problems: Vec<String>,
}

/// The running mesh; dropping it tears every process down.
pub struct Mesh {
    pub collector: Collector,
    pub services: Vec<ServiceHandle>,
    pub sidecar: Envoy,
    pub gateway: Envoy,
}

/// The repository root: the directory holding `envoy/gateway.yaml`.
pub fn repo_root() -> Result<PathBuf, String> {
    let candidates = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("envoy/gateway.yaml").exists())
        .ok_or_else(|| "cannot find envoy/gateway.yaml; run from the repository root".to_string())
}

fn envoy_opts(
    root: &Path,
    admin_port: u16,
    base_id: u32,
    component_log_level: Option<String>,
) -> EnvoyOpts {
    EnvoyOpts {
        admin_port,
        base_id,
        concurrency: 2,
        component_log_level,
        cwd: Some(root.to_path_buf()),
        ..Default::default()
    }
}

impl Mesh {
    /// Starts collector, services, sidecar and gateway. `jsonl`: also write spans there.
    pub fn start(
        root: &Path,
        jsonl: Option<&Path>,
        wasm_log_level: Option<&str>,
    ) -> Result<Mesh, String> {
        let wasm = root.join("target/gateway_tracing.wasm");
        if !wasm.exists() {
            return Err(format!("{} is missing: run `make build`", wasm.display()));
        }
        let mut collector =
            Collector::start(COLLECTOR).map_err(|e| format!("collector on {COLLECTOR}: {e}"))?;
        if let Some(p) = jsonl {
            collector = collector
                .with_jsonl(p)
                .map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let mut services = Vec::new();
        for s in Service::ALL {
            services.push(
                shop::serve(s, s.default_listen(), shop::DEFAULT_OUTBOUND)
                    .map_err(|e| format!("{} on {}: {e}", s.name(), s.default_listen()))?,
            );
        }
        let level = wasm_log_level.map(|l| format!("wasm:{l}"));
        let sidecar = Envoy::start(
            &root.join("envoy/cart-sidecar.yaml"),
            envoy_opts(root, SIDECAR_ADMIN, 1, level.clone()),
        )?;
        let gateway = Envoy::start(
            &root.join("envoy/gateway.yaml"),
            envoy_opts(root, GATEWAY_ADMIN, 0, level),
        )?;
        Ok(Mesh {
            collector,
            services,
            sidecar,
            gateway,
        })
    }

    /// Runs one step and waits for its trace to be complete (or `wait` to pass).
    pub fn run_step(&self, step: &Step, wait: Duration) -> StepResult {
        let before: std::collections::HashSet<String> = self
            .collector
            .spans()
            .into_iter()
            .map(|s| s.trace_id)
            .collect();
        let status = match send(GATEWAY, step.method, step.path, step.body) {
            Ok(s) => s,
            Err(e) => {
                return StepResult {
                    step: step.clone(),
                    status: 0,
                    trace_id: None,
                    spans: vec![],
                    problems: vec![e],
                };
            }
        };
        let root_name = step.expect.first().map_or("", |e| e.0);
        let n = step.expect.len();
        // The new trace is the one whose root carries this step's name.
        let find = |spans: &[RecordedSpan]| -> Option<String> {
            spans
                .iter()
                .find(|s| {
                    s.name == root_name
                        && s.parent_span_id.is_empty()
                        && !before.contains(&s.trace_id)
                })
                .map(|s| s.trace_id.clone())
        };
        let done = |spans: &[RecordedSpan]| {
            find(spans).is_some_and(|t| spans.iter().filter(|s| s.trace_id == t).count() >= n)
        };
        let spans = match self.collector.wait_for(wait, done) {
            Ok(s) | Err(s) => s,
        };
        let trace_id = find(&spans);
        let spans: Vec<RecordedSpan> = match &trace_id {
            Some(t) => spans.into_iter().filter(|s| &s.trace_id == t).collect(),
            None => vec![],
        };
        let problems = check(step, status, trace_id.as_deref(), &spans);
        StepResult {
            step: step.clone(),
            status,
            trace_id,
            spans,
            problems,
        }
    }
}

/// Compares a trace with the step's expected shape.
pub fn check(
    step: &Step,
    status: u16,
    trace_id: Option<&str>,
    spans: &[RecordedSpan],
) -> Vec<String> {
    let mut problems = Vec::new();
    if !(200..300).contains(&status) {
        problems.push(format!("{} {} answered {status}", step.method, step.path));
    }
    if trace_id.is_none() {
        problems.push(format!(
            "no trace with root '{}' arrived",
            step.expect.first().map_or("", |e| e.0)
        ));
        return problems;
    }
    if spans.len() != step.expect.len() {
        problems.push(format!(
            "expected {} spans, got {}: {:?}",
            step.expect.len(),
            spans.len(),
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        ));
    }
    for (name, parent) in step.expect {
        let Some(span) = spans.iter().find(|s| s.name == *name) else {
            problems.push(format!("missing span '{name}'"));
            continue;
        };
        match parent {
            None if !span.parent_span_id.is_empty() => {
                problems.push(format!("'{name}' should be the root"))
            }
            None => {}
            Some(p) => match spans.iter().find(|s| s.span_id == span.parent_span_id) {
                Some(actual) if actual.name == *p => {}
                Some(actual) => problems.push(format!(
                    "'{name}' is under '{}', expected '{p}'",
                    actual.name
                )),
                None => problems.push(format!(
                    "'{name}': parent {} not in the trace",
                    span.parent_span_id
                )),
            },
        }
    }
    problems
}

/// A minimal HTTP/1.1 client (one request per connection); returns the status code.
pub fn send(addr: &str, method: &str, path: &str, body: &str) -> Result<u16, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: shop.local\r\nuser-agent: shop-demo/1\r\nconnection: close\r\n");
    if !body.is_empty() {
        req.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no HTTP status in the reply"))
}
