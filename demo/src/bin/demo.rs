//! `make run`: the seed's shop as a live mesh on loopback, traced by gateway_tracing.wasm.
//!
//! Starts the embedded OTLP collector, the five shop services, the cart's sidecar Envoy and
//! the gateway Envoy; drives the shopping flow (login, list products, add to cart, place
//! order); prints each trace as a tree (and shows them in the collector's trace viewer, whose
//! URL it prints first); then keeps serving (printing new traces) until
//! Ctrl-C. With `--once` it exits after the flow: status 0 only if every expected trace
//! arrived complete. With `--jaeger` it also runs Jaeger v2 (`target/jaeger`, `make jaeger`)
//! with `envoy/collector/jaeger.yaml`, forwards every export to it, and prints each trace's
//! Jaeger link. Every process is torn down on exit.

use demo::mesh::{Mesh, FLOW};
use demo::peers::{jaeger_binary, Peer, PeerOpts};
use demo::tree;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let jaeger = args.iter().any(|a| a == "--jaeger");
    if let Some(bad) = args.iter().find(|a| *a != "--once" && *a != "--jaeger") {
        eprintln!("usage: demo [--once] [--jaeger]   (unknown argument {bad})");
        std::process::exit(2);
    }
    let code = run(once, jaeger);
    std::process::exit(code);
}

/// Jaeger v2's query service (envoy/collector/jaeger.yaml's defaults).
const JAEGER_QUERY: &str = "http://127.0.0.1:16686";
const JAEGER_OTLP_HTTP: &str = "http://127.0.0.1:34318/v1/traces";

/// Starts Jaeger v2 for `--jaeger`.
fn start_jaeger(root: &std::path::Path) -> Result<Peer, String> {
    Peer::start(PeerOpts {
        name: "jaeger".into(),
        binary: jaeger_binary(root),
        config: root.join("envoy/collector/jaeger.yaml"),
        ready_url: "http://127.0.0.1:13136/status".into(),
        metrics_url: Some("http://127.0.0.1:18891/metrics".into()),
        env: vec![],
        log_dir: root.join("target"),
        ready_timeout: Duration::from_secs(60),
    })
}

/// Where Jaeger shows trace `t`. The Jaeger built from its Go module has no UI assets (its
/// page is a placeholder), so the link is the query API's JSON; with a Jaeger that has the UI
/// (the container image) `{JAEGER_QUERY}/trace/<id>` shows the same trace.
fn jaeger_link(t: &str) -> String {
    format!("{JAEGER_QUERY}/api/traces/{t}")
}

fn run(once: bool, with_jaeger: bool) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)) {
            eprintln!("warning: cannot handle Ctrl-C: {e}");
        }
    }
    let root = match demo::mesh::repo_root() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("demo: {e}");
            return 1;
        }
    };
    let jsonl = root.join("target/demo-spans.jsonl");
    let viewer = format!("http://{}/", demo::mesh::COLLECTOR);
    println!("Trace viewer: {viewer}   (open it in a browser; new traces appear live)");
    println!("Starting the shop mesh (collector, services, cart sidecar, gateway)...");
    let jaeger = if with_jaeger {
        println!("Starting Jaeger v2 (target/jaeger, envoy/collector/jaeger.yaml)...");
        match start_jaeger(&root) {
            Ok(j) => Some(j),
            Err(e) => {
                eprintln!("demo: could not start Jaeger:\n{e}");
                return 1;
            }
        }
    } else {
        None
    };
    let mesh = match Mesh::start(&root, Some(&jsonl), None) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("demo: could not start the mesh:\n{e}");
            return 1;
        }
    };
    if jaeger.is_some() {
        mesh.collector.forward_to(JAEGER_OTLP_HTTP);
    }
    println!();
    println!("  trace viewer       {viewer}   (waterfall of every trace, live)");
    println!("  OTLP collector     http://127.0.0.1:4318/v1/traces   (all spans: curl http://127.0.0.1:4318/traces)");
    for s in &mesh.services {
        println!("  {:<18} {}", s.service().name(), s.url());
    }
    println!("  cart sidecar       inbound http://127.0.0.1:10001  outbound http://127.0.0.1:10002  admin http://127.0.0.1:9902");
    println!("  gateway            http://127.0.0.1:10000  admin http://127.0.0.1:9901/stats?filter=gateway_tracing");
    println!("  spans as JSON      {}", jsonl.display());
    if jaeger.is_some() {
        println!("  Jaeger v2          {JAEGER_QUERY}/api/traces?service=ecomm-ms-gateway   (query API; this build of Jaeger serves no UI, see README \"Scaling out\")");
    }
    println!();
    println!("Shopping flow:");

    let mut printed: HashSet<String> = HashSet::new();
    let mut complete = 0;
    for step in &FLOW {
        let r = mesh.run_step(step, Duration::from_secs(10));
        println!();
        println!("==> {} {}  -> HTTP {}", step.method, step.path, r.status);
        match &r.trace_id {
            Some(t) => {
                print!("{}", tree::render_trace(t, &r.spans));
                if jaeger.is_some() {
                    println!("    Jaeger: {}", jaeger_link(t));
                }
                printed.insert(t.clone());
            }
            None => println!("    (no trace received)"),
        }
        if r.problems.is_empty() {
            complete += 1;
        } else {
            for p in &r.problems {
                println!("    PROBLEM: {p}");
            }
        }
    }
    println!();
    println!("{complete}/{} traces arrived complete.", FLOW.len());
    if let Some(j) = &jaeger {
        match jaeger_check(j, &mesh, &printed) {
            Ok(n) => {
                println!("Jaeger v2 has all {n} traces ({JAEGER_QUERY}/api/traces/<trace id>).")
            }
            Err(e) => {
                println!("    PROBLEM: {e}");
                complete = 0;
            }
        }
    }
    if once {
        let ok = complete == FLOW.len();
        drop(mesh);
        return if ok { 0 } else { 1 };
    }

    println!();
    println!("Serving until Ctrl-C. Watch {viewer} and try:");
    println!(
        "  curl -s -X POST http://127.0.0.1:10000/api/cart/c-7/add -d '{{\"productId\":\"p-3\"}}'"
    );
    println!("  curl -s http://127.0.0.1:10000/api/products/p-1");
    println!("  curl -s http://127.0.0.1:10000/api/legacy/report    # a failing upstream");
    let mut last_seen: HashMap<String, (usize, Instant)> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(250));
        let spans = mesh.collector.spans();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in &spans {
            *counts.entry(s.trace_id.as_str()).or_default() += 1;
        }
        for (t, n) in counts {
            if printed.contains(t) {
                continue;
            }
            let entry = last_seen
                .entry(t.to_string())
                .or_insert((n, Instant::now()));
            if entry.0 != n {
                *entry = (n, Instant::now());
            } else if entry.1.elapsed() > Duration::from_millis(1500) {
                println!();
                print!("{}", tree::render_trace(t, &spans));
                if jaeger.is_some() {
                    println!("    Jaeger: {}", jaeger_link(t));
                }
                printed.insert(t.to_string());
            }
        }
    }
    println!("\nStopping...");
    drop(mesh);
    drop(jaeger);
    0
}

/// Waits (up to 10 s) until Jaeger's query API returns each of `traces` with as many spans as
/// the embedded collector got; returns how many.
fn jaeger_check(_jaeger: &Peer, mesh: &Mesh, traces: &HashSet<String>) -> Result<usize, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut missing = Vec::new();
        for t in traces {
            let body = demo::peers::http_get(&jaeger_link(t))?;
            let spans = body
                .and_then(|b| demo::serde_json::from_str::<demo::serde_json::Value>(&b).ok())
                .and_then(|v| v["data"][0]["spans"].as_array().map(Vec::len))
                .unwrap_or(0);
            let want = mesh.collector.trace(t).len();
            if spans != want {
                missing.push(format!("{t} ({spans} of {want} spans)"));
            }
        }
        if missing.is_empty() {
            return Ok(traces.len());
        }
        if Instant::now() >= deadline {
            return Err(format!("Jaeger does not have traces {missing:?}"));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
