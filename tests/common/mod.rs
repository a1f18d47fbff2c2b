//! Shared pieces of the end-to-end tests: the built wasm, starting the real Envoy from the
//! repository root (so the configs' relative wasm path resolves), raw HTTP/1.1 requests (so
//! tests can send duplicate and non-UTF-8 headers), and a lock so tests that bind the
//! configs' fixed loopback ports never overlap.
#![allow(dead_code)]
pub mod flow;
use demo::envoy::{Envoy, EnvoyOpts};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

static PORTS: Mutex<()> = Mutex::new(());

/// Serialises tests that use the fixed ports of the shipped configs.
pub fn ports_lock() -> MutexGuard<'static, ()> {
    PORTS.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The artifact `make build` produces for the build under test (`GATEWAY_TRACING_BUILD`:
/// the wasm, or the native module; see `demo::build`); the e2e tests refuse to run without it.
pub fn wasm_path() -> PathBuf {
    let build = demo::build::Build::from_env().unwrap();
    let p = repo_root().join(build.artifact());
    assert!(
        p.exists(),
        "{} is missing: run `make build` (make test does it for you)",
        p.display()
    );
    p
}

pub fn start_envoy(
    config: &Path,
    admin_port: u16,
    base_id: u32,
    env: Vec<(String, String)>,
) -> Envoy {
    try_start_envoy(config, admin_port, base_id, 2, env)
        .unwrap_or_else(|e| panic!("envoy did not start: {e}"))
}

pub fn try_start_envoy(
    config: &Path,
    admin_port: u16,
    base_id: u32,
    concurrency: u32,
    env: Vec<(String, String)>,
) -> Result<Envoy, String> {
    wasm_path();
    Envoy::start(
        config,
        EnvoyOpts {
            admin_port,
            base_id,
            concurrency,
            component_log_level: Some("wasm:debug".into()),
            cwd: Some(repo_root()),
            env,
            ..Default::default()
        },
    )
}

/// `envoy/gateway.yaml` with parts of its plugin configuration replaced, written to a temp
/// file. Each `from` must occur in the shipped config, so a drifting config fails loudly.
pub fn gateway_config_with(name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut yaml = std::fs::read_to_string(repo_root().join("envoy/gateway.yaml")).unwrap();
    for (from, to) in edits {
        assert!(
            yaml.contains(from),
            "envoy/gateway.yaml no longer contains {from:?}"
        );
        yaml = yaml.replacen(from, to, 1);
    }
    let dir = std::env::temp_dir().join(format!("gateway-tracing-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A response from [`send`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// Response headers, lower-cased names, in order.
    pub headers: Vec<(String, String)>,
}

impl Response {
    /// Every value of response header `name`.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends one HTTP/1.1 request with exactly these headers (duplicates and raw bytes allowed).
pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &str,
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req: Vec<u8> = format!("{method} {path} HTTP/1.1\r\nhost: shop.local\r\nuser-agent: e2e-test/1\r\nconnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        req.extend_from_slice(
            format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body.as_bytes());
    s.write_all(&req).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response {
        status,
        body: body.to_string(),
        headers,
    }
}

/// `00-{trace}-{span}-{flags}` split into (trace id, span id).
pub fn split_traceparent(tp: &str) -> (String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {tp:?}");
    assert_eq!(parts[0], "00", "we always send version 00: {tp}");
    (parts[1].to_string(), parts[2].to_string())
}

/// `envoy/gateway.yaml` split for dynamic listeners: a bootstrap whose listener comes from
/// the LDS file `dir/lds.yaml`, and the LDS content for the gateway listener with `edits`
/// applied. Returns (bootstrap path, LDS content).
pub fn gateway_as_lds(dir: &Path, edits: &[(&str, &str)]) -> (PathBuf, String) {
    let yaml = std::fs::read_to_string(repo_root().join("envoy/gateway.yaml")).unwrap();
    let listener_at = yaml.find("  - name: gateway\n").expect("gateway listener");
    let clusters_at = yaml.find("  clusters:\n").expect("clusters");
    let admin_at = yaml.find("admin:").expect("admin");
    let static_at = yaml.find("static_resources:").expect("static_resources");
    let mut lds = String::from("resources:\n");
    for (i, line) in yaml[listener_at..clusters_at].lines().enumerate() {
        let line = line.strip_prefix("  ").unwrap_or(line);
        if i == 0 {
            lds.push_str("- \"@type\": type.googleapis.com/envoy.config.listener.v3.Listener\n  name: gateway\n");
        } else {
            lds.push_str(line);
            lds.push('\n');
        }
    }
    for (from, to) in edits {
        assert!(
            lds.contains(from),
            "gateway listener no longer contains {from:?}"
        );
        lds = lds.replacen(from, to, 1);
    }
    let boot = format!(
        "node: {{ id: e2e, cluster: e2e }}\n{}dynamic_resources:\n  lds_config:\n    resource_api_version: V3\n    path_config_source: {{ path: {} }}\nstatic_resources:\n{}",
        &yaml[admin_at..static_at],
        dir.join("lds.yaml").display(),
        &yaml[clusters_at..]
    );
    std::fs::create_dir_all(dir).unwrap();
    let boot_path = dir.join("bootstrap.yaml");
    std::fs::write(&boot_path, boot).unwrap();
    (boot_path, lds)
}

/// Starts the LDS gateway from [`gateway_as_lds`]'s bootstrap: one worker, debug filter logs,
/// and an old listener that goes as soon as its connections are gone (`--drain-time-s 1`,
/// immediate strategy), so a listener update takes effect within the test.
pub fn start_lds_gateway(bootstrap: &Path) -> Envoy {
    Envoy::start(
        bootstrap,
        EnvoyOpts {
            concurrency: 1,
            component_log_level: Some("wasm:debug".into()),
            cwd: Some(repo_root()),
            extra_args: vec![
                "--drain-time-s".into(),
                "1".into(),
                "--drain-strategy".into(),
                "immediate".into(),
            ],
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Replaces the LDS file atomically (Envoy watches for the move).
pub fn write_lds(dir: &Path, content: &str) {
    let tmp = dir.join("lds.yaml.tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join("lds.yaml")).unwrap();
}
