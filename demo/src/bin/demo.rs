//! `make run`: the seed's shop as a live mesh on loopback, traced by gateway_tracing.wasm.
//!
//! Starts the embedded OTLP collector, the five shop services, the cart's sidecar Envoy and
//! the gateway Envoy; drives the shopping flow (login, list products, add to cart, place
//! order); prints each trace as a tree (and shows them in the collector's trace viewer, whose
//! URL it prints first); then keeps serving (printing new traces) until
//! Ctrl-C. With `--once` it exits after the flow: status 0 only if every expected trace
//! arrived complete. Every process is torn down on exit.

use demo::mesh::{Mesh, FLOW};
use demo::tree;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    if let Some(bad) = args.iter().find(|a| *a != "--once") {
        eprintln!("usage: demo [--once]   (unknown argument {bad})");
        std::process::exit(2);
    }
    let code = run(once);
    std::process::exit(code);
}

fn run(once: bool) -> i32 {
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
    let mesh = match Mesh::start(&root, Some(&jsonl), None) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("demo: could not start the mesh:\n{e}");
            return 1;
        }
    };
    println!();
    println!("  trace viewer       {viewer}   (waterfall of every trace, live)");
    println!("  OTLP collector     http://127.0.0.1:4318/v1/traces   (all spans: curl http://127.0.0.1:4318/traces)");
    for s in &mesh.services {
        println!("  {:<18} {}", s.service().name(), s.url());
    }
    println!("  cart sidecar       inbound http://127.0.0.1:10001  outbound http://127.0.0.1:10002  admin http://127.0.0.1:9902");
    println!("  gateway            http://127.0.0.1:10000  admin http://127.0.0.1:9901/stats?filter=gateway_tracing");
    println!("  spans as JSON      {}", jsonl.display());
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
                printed.insert(t.to_string());
            }
        }
    }
    println!("\nStopping...");
    drop(mesh);
    0
}
