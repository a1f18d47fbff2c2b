//! End-to-end, the native build's process-wide exporter (README "Native build"):
//!
//! - a SIGTERM loses nothing a healthy collector can take (the bootstrap extension,
//!   `native/src/bootstrap.rs`): 1,000 spans are held by a 60 s flush timer and a batch size
//!   above them; Envoy is sent SIGTERM; all 1,000 arrive before it exits;
//! - with 2 workers and the collector down, the spans held never exceed `max_queue_bytes` for
//!   the whole process (one budget, not one per worker).
//!
//! The wasm build has neither (a SIGTERM loses what is queued, `e2e_exporter` checks it reports
//! the loss; its budget is per worker VM), so with `GATEWAY_TRACING_BUILD=wasm` these tests
//! say so and check nothing.
mod common;

use common::{gateway_config_with, ports_lock, send, try_start_envoy};
use demo::build::Build;
use demo::Collector;
use std::time::{Duration, Instant};
use support::stub::Stub;
use support::{FaultCollector, Mode};

const GATEWAY: &str = "127.0.0.1:10000";
/// Requests sent; each makes a SERVER and a CLIENT span.
const REQUESTS: usize = 500;
const SPANS: usize = 2 * REQUESTS;

#[test]
fn sigterm_with_1000_spans_queued_delivers_all_1000() {
    if Build::from_env().unwrap() != Build::Native {
        eprintln!("wasm build: a SIGTERM loses what is queued (README \"Graceful shutdown\"); native only");
        return;
    }
    let _lock = ports_lock();
    let collector = Collector::start("127.0.0.1:4318").expect("collector port 4318 free");
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let config = gateway_config_with(
        "shutdown-flush.yaml",
        &[
            (
                r#""flush_interval_ms": 500,"#,
                r#""flush_interval_ms": 60000,"#,
            ),
            (
                r#""max_export_batch_size": 512,"#,
                r#""max_export_batch_size": 2048,"#,
            ),
        ],
    );
    let mut envoy = try_start_envoy(&config, 9901, 0, 2, vec![]).unwrap();
    for _ in 0..REQUESTS {
        assert_eq!(
            send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
            200
        );
    }
    let queued = |e: &demo::Envoy| {
        e.stat("wasmcustom.gateway_tracing.spans_queued")
            .unwrap()
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    while queued(&envoy) < SPANS as u64 && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(queued(&envoy), SPANS as u64, "every span queued");
    assert_eq!(collector.spans().len(), 0, "held by the 60 s timer");

    let t0 = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &envoy.pid().to_string()])
        .status();
    while envoy.is_running() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!envoy.is_running(), "Envoy exited after SIGTERM");
    let exit_ms = t0.elapsed().as_millis();
    let arrived = collector.spans().len();
    eprintln!(
        "SIGTERM: Envoy exited after {exit_ms} ms; {arrived} of {SPANS} queued spans arrived"
    );
    assert_eq!(
        arrived,
        SPANS,
        "every queued span arrived\n{}",
        envoy.log_tail()
    );
    assert!(envoy
        .log()
        .contains(&format!("shutdown: sending the {SPANS} spans held")));
}

#[test]
fn two_workers_share_one_queue_budget() {
    if Build::from_env().unwrap() != Build::Native {
        eprintln!("wasm build: one queue budget per worker VM; native only");
        return;
    }
    let _lock = ports_lock();
    let collector = FaultCollector::start("127.0.0.1:4318").unwrap();
    collector.set_mode(Mode::Down);
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let budget = 65_536u64;
    let config = gateway_config_with(
        "process-budget.yaml",
        &[
            (
                r#""flush_interval_ms": 500,"#,
                r#""flush_interval_ms": 100,"#,
            ),
            (
                r#""max_queue_bytes": 33554432"#,
                r#""max_queue_bytes": 65536"#,
            ),
        ],
    );
    let envoy = try_start_envoy(&config, 9901, 0, 2, vec![]).unwrap();
    let stat = |n: &str| {
        envoy
            .stat(&format!("wasmcustom.gateway_tracing.{n}"))
            .unwrap()
            .unwrap_or(0)
    };
    // Two client threads, each on its own connections: Envoy spreads them over both workers.
    let load: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(|| {
                for _ in 0..150 {
                    assert_eq!(
                        send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
                        200
                    );
                }
            })
        })
        .collect();
    let mut max_held = 0;
    while load.iter().any(|t| !t.is_finished()) {
        max_held = max_held.max(stat("export_queue_bytes"));
        std::thread::sleep(Duration::from_millis(20));
    }
    for t in load {
        t.join().unwrap();
    }
    max_held = max_held.max(stat("export_queue_bytes"));
    let dropped = stat("spans_dropped_queue_full");
    eprintln!(
        "2 workers, collector down: max held {max_held} B of a {budget} B budget; {dropped} of {} spans dropped as queue_full",
        stat("spans_created")
    );
    assert!(
        max_held <= budget,
        "held {max_held} B > the process budget {budget} B"
    );
    assert!(
        max_held > budget / 2,
        "the queue filled up to the budget: {max_held} B"
    );
    assert!(
        dropped > 0,
        "the budget was reached and the newest spans dropped"
    );
    assert_eq!(stat("spans_created"), 600, "300 requests, 2 spans each");
}
