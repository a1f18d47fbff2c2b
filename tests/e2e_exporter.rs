//! End-to-end: the exporter and the configuration in the real Envoy. A full batch is sent
//! without waiting for the timer; exporter headers carry secrets from the environment that
//! never reach Envoy's log or stats; failed exports are counted; an invalid configuration is
//! refused at load with one line naming the field and value; queued spans are sent, not lost,
//! when a configuration update replaces the plugin. The fault suite (below) runs the exporter
//! against a collector that refuses, hangs, throttles, rejects and recovers, under load.
mod common;

use common::{
    gateway_as_lds, gateway_config_with, ports_lock, repo_root, send, start_lds_gateway,
    try_start_envoy, write_lds,
};
use demo::collector::Collector;
use demo::envoy::{Envoy, EnvoyOpts};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{FaultCollector, Mode, Stub};

const GATEWAY: &str = "127.0.0.1:10000";
const SECRET: &str = "hc-e2e-secret-7f3a91";

#[test]
fn full_batches_flush_early_secrets_stay_secret_and_failures_are_counted() {
    let _lock = ports_lock();
    let collector = Collector::start("127.0.0.1:4318").unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    // A 60 s timer: anything that arrives sooner was sent because its batch filled.
    let config = gateway_config_with(
        "exporter-batch.yaml",
        &[
            (
                r#""flush_interval_ms": 500,"#,
                r#""flush_interval_ms": 60000,"#,
            ),
            (
                r#""max_export_batch_size": 512,"#,
                r#""max_export_batch_size": 4,
                        "headers": {"x-honeycomb-team": "${HONEYCOMB_API_KEY}",
                                    "x-honeycomb-dataset": "${HONEYCOMB_DATASET:-shop-traces}"},"#,
            ),
        ],
    );
    // One worker, so one VM's queue sees every span.
    let envoy = try_start_envoy(
        &config,
        9901,
        0,
        1,
        vec![("HONEYCOMB_API_KEY".into(), SECRET.into())],
    )
    .unwrap();

    let started = Instant::now();
    for _ in 0..2 {
        assert_eq!(
            send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
            200
        );
    }
    let spans = collector
        .wait_for(Duration::from_secs(5), |s| s.len() >= 4)
        .expect("a full batch of 4 spans is exported at once");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "sent well before the 60 s timer"
    );
    assert_eq!(spans.len(), 4);
    let reqs = collector.requests();
    assert_eq!(reqs.len(), 1, "one request for one batch");
    assert_eq!(reqs[0].span_count, 4);
    assert_eq!(
        reqs[0].header("x-honeycomb-team"),
        Some(SECRET),
        "secret header from the environment"
    );
    assert_eq!(
        reqs[0].header("x-honeycomb-dataset"),
        Some("shop-traces"),
        "default used when unset"
    );
    assert_eq!(
        reqs[0].header(":authority").or(reqs[0].header("host")),
        Some("otel-collector")
    );

    // The collector refuses the next export: the spans are counted as dropped, and a warning
    // is logged without any header value.
    collector.fail_next(1, 503);
    for _ in 0..2 {
        assert_eq!(
            send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
            200,
            "a failed export never affects requests"
        );
    }
    let stat = |n: &str| {
        envoy
            .stat(&format!("wasmcustom.gateway_tracing.{n}"))
            .unwrap()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while stat("export_requests_failed") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(stat("export_requests_failed"), 1);
    assert_eq!(stat("spans_exported"), 4);
    assert_eq!(stat("spans_queued"), 8);
    assert_eq!(
        collector.spans().len(),
        4,
        "the rejected batch was not stored"
    );

    // The 503 is retried after the backoff (the default 1 s ± 20%): nothing is lost.
    collector
        .wait_for(Duration::from_secs(5), |s| s.len() >= 8)
        .expect("the failed batch is retried");
    assert_eq!(stat("spans_dropped_export_failed"), 0);

    // And the exporter goes on.
    for _ in 0..2 {
        send(GATEWAY, "POST", "/api/auth/login", &[], "{}");
    }
    collector
        .wait_for(Duration::from_secs(5), |s| s.len() >= 12)
        .expect("exports resume after a failure");

    let log = envoy.log();
    assert!(
        log.contains("export to cluster 'otel_collector' failing: HTTP 503"),
        "failed export logged"
    );
    assert!(
        log.contains("export to cluster 'otel_collector' recovered"),
        "recovery logged"
    );
    assert!(!log.contains(SECRET), "the API key must never be logged");
    assert!(
        !envoy.stats().unwrap().contains(SECRET),
        "the API key must never be in stats"
    );
}

fn refused(name: &str, edits: &[(&str, &str)], env: Vec<(String, String)>, want: &str) {
    let config = gateway_config_with(name, edits);
    // A static listener whose filter cannot start makes Envoy refuse the whole config.
    let err = match try_start_envoy(&config, 9901, 0, 1, env) {
        Ok(envoy) => panic!(
            "Envoy started with an invalid plugin configuration:\n{}",
            envoy.log_tail()
        ),
        Err(e) => e,
    };
    assert!(err.contains("exited early"), "{err}");
    // Envoy's own line differs by build (README "Native build"); ours (below) does not.
    assert!(
        err.contains("Unable to create Wasm plugin gateway_tracing")
            || err.contains("Failed to initialize dynamic module"),
        "{err}"
    );
    assert!(
        err.contains(want),
        "Envoy's log should name the field and value: {want:?}\n{err}"
    );
    assert_eq!(
        err.matches("invalid gateway-tracing configuration").count(),
        1,
        "one log line: {err}"
    );
    assert!(!err.contains(SECRET));
}

#[test]
fn invalid_configuration_is_refused_at_load_naming_field_and_value() {
    let _lock = ports_lock();
    refused(
        "bad-timeout.yaml",
        &[(
            r#""flush_interval_ms": 500,"#,
            r#""flush_interval_ms": 500, "timeout_ms": 0,"#,
        )],
        vec![],
        r#"invalid gateway-tracing configuration: exporter.timeout_ms = "0": must be between 1 and 60000"#,
    );
    refused(
        "unknown-field.yaml",
        &[(
            r#""mode": "gateway","#,
            r#""mode": "gateway", "sample_rate": 0.5,"#,
        )],
        vec![],
        "invalid gateway-tracing configuration: sample_rate: unknown field `sample_rate`",
    );
    refused(
        "missing-secret.yaml",
        &[(
            r#""max_export_batch_size": 512,"#,
            r#""max_export_batch_size": 512, "headers": {"x-honeycomb-team": "${HONEYCOMB_API_KEY}"},"#,
        )],
        vec![],
        r#"invalid gateway-tracing configuration: exporter.headers.x-honeycomb-team = "<redacted>": environment variable HONEYCOMB_API_KEY is not set"#,
    );
}

#[test]
fn queued_spans_are_sent_when_a_config_update_replaces_the_plugin() {
    let _lock = ports_lock();
    let collector = Collector::start("127.0.0.1:4318").unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let dir = std::env::temp_dir().join(format!("gateway-tracing-lds-{}", std::process::id()));
    // A 60 s timer: the spans below stay queued unless the stopping plugin drains them.
    let slow = [(
        r#""flush_interval_ms": 500,"#,
        r#""flush_interval_ms": 60000,"#,
    )];
    let (bootstrap, v1) = gateway_as_lds(&dir, &slow);
    write_lds(&dir, &v1);
    let envoy = start_lds_gateway(&bootstrap);

    for _ in 0..2 {
        assert_eq!(
            send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
            200
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        collector.spans().is_empty(),
        "nothing is sent before the timer or a full batch"
    );

    // A new plugin configuration (another service name) replaces the listener's filter.
    let v2 = v1.replacen(
        "${SERVICE_NAME:-ecomm-ms-gateway}",
        "${SERVICE_NAME:-ecomm-ms-gateway-v2}",
        1,
    );
    assert_ne!(v1, v2);
    write_lds(&dir, &v2);
    let spans = collector
        .wait_for(Duration::from_secs(10), |s| s.len() >= 4)
        .unwrap_or_else(|s| {
            panic!(
                "queued spans lost on config update: got {}\n{}",
                s.len(),
                envoy.log_tail()
            )
        });
    assert_eq!(spans.len(), 4);
    assert!(
        spans
            .iter()
            .all(|s| s.service() == Some("ecomm-ms-gateway")),
        "sent by the old plugin"
    );
    assert_eq!(
        envoy.stat("listener_manager.lds.update_success").unwrap(),
        Some(2)
    );

    // The new configuration is live.
    assert_eq!(
        send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
        200
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The fault suite: a collector that fails the way real ones do.

const COLLECTOR: &str = "127.0.0.1:4318";

/// Requests at a steady rate from a background thread; counts what the clients saw.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(per_second: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (st, se, fa) = (stop.clone(), sent.clone(), failed.clone());
        let gap = Duration::from_micros(1_000_000 / per_second);
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let mut n = 0u32;
            while !st.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
                let r = send(GATEWAY, "POST", "/api/auth/login", &[], "{}");
                se.fetch_add(1, Ordering::SeqCst);
                if r.status != 200 {
                    fa.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
                if let Some(wait) = (started + gap * n).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        });
        Load {
            stop,
            sent,
            failed,
            thread: Some(thread),
        }
    }

    /// Stops the load; returns (sent, failed).
    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.sent.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The gateway with a fast exporter for tests: 200 ms flushes, backoff 250 ms doubling to
/// 1 s, 800 ms request timeout, plus `extra` exporter fields.
fn fast_exporter_config(name: &str, extra: &str) -> std::path::PathBuf {
    let exporter = format!(
        r#""flush_interval_ms": 200, "timeout_ms": 800,
                        "retry": {{"initial_backoff_ms": 250, "multiplier": 2, "max_backoff_ms": 1000, "max_elapsed_ms": 60000}},{extra}"#
    );
    gateway_config_with(name, &[(r#""flush_interval_ms": 500,"#, &exporter)])
}

fn counters(envoy: &Envoy) -> impl Fn(&str) -> u64 + '_ {
    move |n: &str| {
        envoy
            .stat(&format!("wasmcustom.gateway_tracing.{n}"))
            .unwrap()
            .unwrap_or(0)
    }
}

/// The `spans_dropped_*` counters, from the filter's own metrics list (stat names without the
/// `gateway_tracing.` prefix): a new drop reason is accounted here without editing this file.
fn drop_reasons() -> Vec<&'static str> {
    gateway_tracing_core::metrics::Counter::drop_reasons()
        .map(|c| c.name().trim_start_matches("gateway_tracing."))
        .collect()
}

/// Waits until the exporter holds nothing (counters and gauges reach Envoy at each tick), and
/// until `created` spans were created when given.
fn wait_drained_with(envoy: &Envoy, timeout: Duration, created_want: Option<u64>) {
    let stat = counters(envoy);
    let deadline = Instant::now() + timeout;
    loop {
        let created = stat("spans_created");
        let done = stat("spans_exported") + drop_reasons().iter().map(|r| stat(r)).sum::<u64>();
        if created > 0
            && created == done
            && stat("export_queue_spans") == 0
            && created_want.is_none_or(|w| w == created)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "exporter not drained: created {created}, exported+dropped {done}, held {}\n{}",
            stat("export_queue_spans"),
            envoy.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_drained(envoy: &Envoy, timeout: Duration) {
    wait_drained_with(envoy, timeout, None)
}

fn in_mode(c: &FaultCollector, pred: impl Fn(&Mode) -> bool) -> Vec<support::Received> {
    c.received().into_iter().filter(|r| pred(&r.mode)).collect()
}

#[test]
fn fault_suite_retries_backs_off_and_loses_nothing_the_queue_can_hold() {
    let _lock = ports_lock();
    let collector = FaultCollector::start(COLLECTOR).unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let config = fast_exporter_config("exporter-faults.yaml", "");
    let envoy = try_start_envoy(&config, 9901, 0, 1, vec![]).unwrap();
    let stat = counters(&envoy);
    let cx_fail = || {
        envoy
            .stat("cluster.otel_collector.upstream_cx_connect_fail")
            .unwrap()
            .unwrap_or(0)
    };
    let load = Load::start(40);
    std::thread::sleep(Duration::from_secs(1));

    // 1. Down (connection refused) for 4 s: backoff, about one probe per interval.
    let fail_before = cx_fail();
    collector.set_mode(Mode::Down);
    let mut max_held_bytes = 0;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        max_held_bytes = max_held_bytes.max(stat("export_queue_bytes"));
    }
    let probes = cx_fail() - fail_before;
    eprintln!("dead collector: {probes} connection attempts in 4 s (backoff 250 ms x2 to 1 s)");
    assert!(
        (2..=9).contains(&probes),
        "about one probe per backoff interval, not a flood: {probes}"
    );
    assert!(
        max_held_bytes > 0 && max_held_bytes <= 33_554_432,
        "bounded: {max_held_bytes}"
    );
    collector.set_mode(Mode::Ok);
    wait_drained(&envoy, Duration::from_secs(10));
    assert_eq!(
        stat("spans_dropped_export_failed"),
        0,
        "the outage lost nothing"
    );

    // 2. 503 with Retry-After: 2 (longer than the 1 s max backoff): gaps honour it.
    collector.set_mode(Mode::Status {
        status: 503,
        retry_after: Some("2".into()),
    });
    std::thread::sleep(Duration::from_millis(5_000));
    // 3. 429 without Retry-After, then a collector that hangs (800 ms timeout).
    collector.set_mode(Mode::Status {
        status: 429,
        retry_after: None,
    });
    std::thread::sleep(Duration::from_millis(3_500));
    collector.set_mode(Mode::Hang);
    std::thread::sleep(Duration::from_millis(3_000));
    collector.set_mode(Mode::Ok);
    wait_drained(&envoy, Duration::from_secs(10));

    let r503 = in_mode(&collector, |m| {
        matches!(m, Mode::Status { status: 503, .. })
    });
    let gaps: Vec<u128> = r503
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis())
        .collect();
    eprintln!("503 + Retry-After: 2 -> retry gaps {gaps:?} ms");
    assert!(!gaps.is_empty(), "retried during the 503 window: {gaps:?}");
    assert!(
        gaps.iter().all(|g| (1_950..=2_600).contains(g)),
        "Retry-After honoured: {gaps:?}"
    );
    let r429 = in_mode(&collector, |m| {
        matches!(m, Mode::Status { status: 429, .. })
    });
    let gaps429: Vec<u128> = r429
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis())
        .collect();
    eprintln!("429 -> retry gaps {gaps429:?} ms");
    assert!(!gaps429.is_empty(), "429 retried: {gaps429:?}");
    assert!(
        gaps429.iter().all(|g| (780..=1_300).contains(g)),
        "429 without Retry-After: the backoff (at its 1 s max, ± 20%): {gaps429:?}"
    );
    let hung = in_mode(&collector, |m| *m == Mode::Hang);
    eprintln!(
        "hang: {} requests in 3 s with an 800 ms timeout",
        hung.len()
    );
    assert!(
        (1..=4).contains(&hung.len()),
        "one probe at a time: {}",
        hung.len()
    );
    for d in drop_reasons() {
        assert_eq!(stat(d), 0, "{d}: every span of the outages arrived");
    }
    assert_eq!(collector.duplicates(), 0, "no span stored twice");

    // 4. 400: never retried, dropped and counted.
    collector.set_mode(Mode::Status {
        status: 400,
        retry_after: None,
    });
    std::thread::sleep(Duration::from_millis(1_000));
    // 5. partial_success: one span rejected per request.
    collector.set_mode(Mode::PartialSuccess {
        rejected: 1,
        message: "span too old".into(),
    });
    std::thread::sleep(Duration::from_millis(1_000));
    collector.set_mode(Mode::Ok);
    std::thread::sleep(Duration::from_millis(500));
    let (sent, failed) = load.stop();
    wait_drained_with(&envoy, Duration::from_secs(10), Some(2 * sent));

    let r400 = in_mode(&collector, |m| {
        matches!(m, Mode::Status { status: 400, .. })
    });
    let mut ids400: Vec<&(String, String)> = r400.iter().flat_map(|r| &r.span_ids).collect();
    let n400 = ids400.len();
    ids400.sort();
    ids400.dedup();
    assert!(n400 > 0);
    assert_eq!(ids400.len(), n400, "no span sent again after a 400");
    assert_eq!(stat("spans_dropped_export_failed"), n400 as u64);
    let partial = in_mode(&collector, |m| matches!(m, Mode::PartialSuccess { .. }));
    assert_eq!(
        stat("spans_dropped_rejected_by_collector"),
        partial.len() as u64
    );

    // Accounting: created = exported + dropped by reason, exactly; exported = stored.
    let created = stat("spans_created");
    let dropped: u64 = drop_reasons().iter().map(|r| stat(r)).sum();
    assert_eq!(created, stat("spans_exported") + dropped);
    assert_eq!(stat("spans_exported"), collector.stored().len() as u64);
    assert_eq!(created, 2 * sent, "two spans per request");
    assert_eq!(failed, 0, "no client request failed");
    assert!(stat("export_retries") > 0);
    assert!(collector
        .received()
        .iter()
        .all(|r| r.decode_error.is_none()));

    let log = envoy.log();
    for want in [
        "export to cluster 'otel_collector' failing: connection failure",
        "export to cluster 'otel_collector' recovered",
        "HTTP 503; retrying in 2000 ms (Retry-After)",
        "timeout (no answer within 800 ms)",
        "failed: HTTP 400, not retryable",
        "collector rejected 1 of",
    ] {
        assert!(
            log.contains(want),
            "log should contain {want:?}\n{}",
            envoy.log_tail()
        );
    }
    assert!(
        !log.contains("HTTP 504"),
        "a timeout is reported as a timeout"
    );
    let prom = envoy.admin_get("/stats/prometheus").unwrap();
    for m in [
        "gateway_tracing_spans_dropped_retries_exhausted",
        "gateway_tracing_export_queue_bytes",
        "gateway_tracing_export_in_flight",
        "gateway_tracing_export_latency_ms_bucket",
    ] {
        let ours: Vec<&str> = prom
            .lines()
            .filter(|l| l.contains("gateway_tracing"))
            .collect();
        assert!(
            prom.contains(m),
            "{m} in /stats/prometheus:\n{}",
            ours.join("\n")
        );
    }
}

#[test]
fn gzip_and_json_bodies_decode_strictly_and_their_sizes_are_measured() {
    let _lock = ports_lock();
    let collector = FaultCollector::start(COLLECTOR).unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let mut report = Vec::new();
    for (encoding, compression) in [
        ("protobuf", "none"),
        ("protobuf", "gzip"),
        ("json", "none"),
        ("json", "gzip"),
    ] {
        let before = collector.received().len();
        let stored_before = collector.stored().len();
        let config = fast_exporter_config(
            &format!("exporter-{encoding}-{compression}.yaml"),
            &format!(r#" "encoding": "{encoding}", "compression": "{compression}","#),
        );
        let envoy = try_start_envoy(&config, 9901, 0, 1, vec![]).unwrap();
        for _ in 0..50 {
            assert_eq!(
                send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
                200
            );
        }
        collector
            .wait_for_stored(stored_before + 100, Duration::from_secs(10))
            .unwrap_or_else(|n| panic!("{encoding}/{compression}: {n} stored"));
        let reqs: Vec<support::Received> = collector.received().split_off(before);
        for r in &reqs {
            assert_eq!(r.decode_error, None, "{encoding}/{compression}");
            let want_type = if encoding == "json" {
                "application/json"
            } else {
                "application/x-protobuf"
            };
            assert_eq!(r.content_type, want_type);
            assert_eq!(
                r.content_encoding.as_deref(),
                (compression == "gzip").then_some("gzip")
            );
        }
        let spans: usize = reqs.iter().map(|r| r.spans).sum();
        let wire: usize = reqs.iter().map(|r| r.wire_bytes).sum();
        let raw: usize = reqs.iter().map(|r| r.decoded_bytes).sum();
        report.push(format!(
            "{encoding}/{compression}: {spans} spans in {} requests, {} wire bytes/span ({} before gzip)",
            reqs.len(),
            wire / spans.max(1),
            raw / spans.max(1)
        ));
        drop(envoy);
    }
    eprintln!("{}", report.join("\n"));
    assert_eq!(collector.duplicates(), 0);
}

#[test]
fn an_exporter_cluster_envoy_does_not_know_is_reported_once() {
    let _lock = ports_lock();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let config = gateway_config_with(
        "exporter-unknown-cluster.yaml",
        &[
            (
                r#""cluster": "otel_collector","#,
                r#""cluster": "no_such_cluster","#,
            ),
            (
                r#""flush_interval_ms": 500,"#,
                r#""flush_interval_ms": 100,"#,
            ),
        ],
    );
    let envoy = try_start_envoy(&config, 9901, 0, 1, vec![]).unwrap();
    for _ in 0..3 {
        for _ in 0..3 {
            assert_eq!(
                send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
                200,
                "tracing never fails a request"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let stat = counters(&envoy);
    assert_eq!(stat("spans_created"), 18);
    assert_eq!(stat("spans_dropped_export_failed"), 18);
    let log = envoy.log();
    assert_eq!(
        log.matches("exporter cluster 'no_such_cluster' is not defined in Envoy")
            .count(),
        1,
        "reported once, clearly\n{}",
        envoy.log_tail()
    );
}

/// What the wasm VM is given at shutdown, with spans queued (a 60 s timer keeps them):
/// `SIGTERM` and `/quitquitquit`. Envoy 1.40 calls `on_done` on each VM as its main loop
/// exits; the plugin dispatches what it holds, but the VM and the cluster manager are torn
/// down about a millisecond later, without waiting for `proxy_done`: the request never
/// leaves. So the plugin says, in one line, how many spans are at stake.
#[test]
fn at_shutdown_queued_spans_are_sent_or_reported_lost() {
    let _lock = ports_lock();
    let collector = FaultCollector::start(COLLECTOR).unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let config = gateway_config_with(
        "exporter-shutdown.yaml",
        &[(
            r#""flush_interval_ms": 500,"#,
            r#""flush_interval_ms": 60000,"#,
        )],
    );
    let mut findings = Vec::new();
    for how in ["SIGTERM", "quitquitquit"] {
        let before = collector.stored().len();
        let mut envoy = try_start_envoy(&config, 9901, 0, 1, vec![]).unwrap();
        for _ in 0..10 {
            assert_eq!(
                send(GATEWAY, "POST", "/api/auth/login", &[], "{}").status,
                200
            );
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(collector.stored().len(), before, "held by the 60 s timer");
        let t0 = Instant::now();
        if how == "SIGTERM" {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &envoy.pid().to_string()])
                .status();
        } else {
            let _ = envoy.admin_post("/quitquitquit");
        }
        while envoy.is_running() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let exit = t0.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        let arrived = collector.stored().len() - before;
        let log = envoy.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("stopping")
                    || l.contains("on_done")
                    || l.contains("root context deleted")
            })
            .map(|l| l.split("gateway_tracing: ").last().unwrap_or(l))
            .collect();
        findings.push(format!(
            "{how}: exited after {} ms; {arrived} of 20 queued spans arrived; plugin log: {lines:?}",
            exit.as_millis()
        ));
        assert!(
            arrived == 20 || log.contains("stopping: 20 spans held"),
            "{how}: spans neither sent nor counted in the log\n{}",
            envoy.log_tail()
        );
    }
    eprintln!("{}", findings.join("\n"));
}

/// The documented graceful procedure loses nothing: drain the listeners
/// (`POST /drain_listeners?graceful`), wait for the drain time plus one flush interval, then
/// stop. Draining does not stop the plugin (no `on_done`), so it is the flush timer that
/// sends the last spans: under load, with the default 1 s flush interval.
#[test]
fn graceful_shutdown_procedure_loses_nothing() {
    let _lock = ports_lock();
    let collector = FaultCollector::start(COLLECTOR).unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let config = gateway_config_with(
        "exporter-graceful.yaml",
        &[(
            r#""flush_interval_ms": 500,"#,
            r#""flush_interval_ms": 1000,"#,
        )],
    );
    let mut envoy = Envoy::start(
        &config,
        EnvoyOpts {
            concurrency: 2,
            component_log_level: Some("wasm:debug".into()),
            cwd: Some(repo_root()),
            extra_args: vec!["--drain-time-s".into(), "1".into()],
            ..Default::default()
        },
    )
    .unwrap();
    let load = Load::start(50);
    std::thread::sleep(Duration::from_millis(1_500));
    let _ = envoy.admin_post("/drain_listeners?graceful");
    // Requests still arrive while the listener drains; stop them before it closes.
    std::thread::sleep(Duration::from_millis(500));
    let (sent, failed) = load.stop();
    assert_eq!(failed, 0);
    // The rest of the drain time (1 s), one flush interval (1 s) and the export round trip.
    std::thread::sleep(Duration::from_millis(2_000));
    let created = counters(&envoy)("spans_created");
    assert!(created > 0 && created <= 2 * sent);
    let _ = envoy.admin_post("/quitquitquit");
    let t0 = Instant::now();
    while envoy.is_running() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        collector.stored().len() as u64,
        created,
        "every span created before the stop arrived\n{}",
        envoy.log_tail()
    );
    assert_eq!(collector.duplicates(), 0);
}

/// An outage longer than the queue budget: memory stays within `max_queue_bytes`, the newest
/// spans are refused and counted, the log says so once when the queue fills and once when it
/// has room again, and the accounting stays exact.
#[test]
fn an_outage_longer_than_the_queue_budget_drops_the_newest_and_counts_them() {
    let _lock = ports_lock();
    let collector = FaultCollector::start(COLLECTOR).unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let budget = 65_536u64;
    let config = gateway_config_with(
        "exporter-small-queue.yaml",
        &[
            (
                r#""flush_interval_ms": 500,"#,
                r#""flush_interval_ms": 200, "timeout_ms": 800,
                        "retry": {"initial_backoff_ms": 250, "multiplier": 2, "max_backoff_ms": 1000},"#,
            ),
            (
                r#""max_queue_bytes": 33554432"#,
                r#""max_queue_bytes": 65536"#,
            ),
        ],
    );
    let envoy = try_start_envoy(&config, 9901, 0, 1, vec![]).unwrap();
    let stat = counters(&envoy);
    let load = Load::start(40);
    std::thread::sleep(Duration::from_millis(500));
    collector.set_mode(Mode::Down);
    // ~600 bytes/span, 80 spans/s: 64 KiB fills in about 1.4 s.
    let mut max_held = 0;
    for _ in 0..30 {
        std::thread::sleep(Duration::from_millis(100));
        max_held = max_held.max(stat("export_queue_bytes"));
    }
    assert!(max_held <= budget, "held {max_held} > budget {budget}");
    assert!(stat("spans_dropped_queue_full") > 0, "the queue filled");
    collector.set_mode(Mode::Ok);
    std::thread::sleep(Duration::from_millis(1_000));
    let (sent, failed) = load.stop();
    wait_drained_with(&envoy, Duration::from_secs(10), Some(2 * sent));
    assert_eq!(failed, 0);
    let dropped: u64 = drop_reasons().iter().map(|r| stat(r)).sum();
    assert_eq!(stat("spans_dropped_queue_full"), dropped, "one reason only");
    assert_eq!(stat("spans_created"), stat("spans_exported") + dropped);
    assert_eq!(stat("spans_exported"), collector.stored().len() as u64);
    // The line that closes the full spell is written at a push or a tick once the queue is
    // down to half: it may reach Envoy's log a tick after the counters show the queue drained.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !envoy.log().contains("export queue has room again") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = envoy.log();
    assert_eq!(
        log.matches("export queue full (").count(),
        1,
        "one line when it fills"
    );
    assert_eq!(
        log.matches("export queue has room again").count(),
        1,
        "one line when it has room"
    );
    eprintln!(
        "queue budget {budget} B: max held {max_held} B; {} of {} spans dropped as queue_full",
        stat("spans_dropped_queue_full"),
        stat("spans_created")
    );
}

/// The README's warning, checked: at `-l debug` Envoy itself (not the filter) logs the
/// headers of export requests, API keys included.
#[test]
fn envoy_debug_logging_prints_export_headers_as_the_readme_warns() {
    let _lock = ports_lock();
    let collector = FaultCollector::start(COLLECTOR).unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let config = gateway_config_with(
        "exporter-debug-secret.yaml",
        &[(
            r#""max_export_batch_size": 512,"#,
            r#""max_export_batch_size": 512, "headers": {"x-honeycomb-team": "${HONEYCOMB_API_KEY}"},"#,
        )],
    );
    let envoy = Envoy::start(
        &config,
        EnvoyOpts {
            concurrency: 1,
            log_level: "debug".into(),
            cwd: Some(repo_root()),
            env: vec![("HONEYCOMB_API_KEY".into(), SECRET.into())],
            ..Default::default()
        },
    )
    .unwrap();
    send(GATEWAY, "POST", "/api/auth/login", &[], "{}");
    collector
        .wait_for_stored(2, Duration::from_secs(5))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let log = envoy.log();
    let leaking: Vec<&str> = log.lines().filter(|l| l.contains(SECRET)).collect();
    assert!(
        !leaking.is_empty(),
        "Envoy 1.40 at -l debug no longer prints export request headers: update README"
    );
    assert!(
        leaking.iter().all(|l| !l.contains("wasm log")),
        "the filter itself must never log it: {leaking:?}"
    );
    // Envoy dumps headers one per line after a line naming the component that logs them.
    let at = log.find(leaking[0]).unwrap_or(0);
    let source = log[..at]
        .lines()
        .rev()
        .find(|l| l.starts_with('['))
        .unwrap_or("?");
    let first: String = format!("{source} ... {}", leaking[0].replace(SECRET, "<SECRET>"))
        .chars()
        .take(400)
        .collect();
    eprintln!(
        "Envoy -l debug prints the API key in {} lines, e.g.: {first}",
        leaking.len()
    );
}

/// A collector, or any proxy in front of it, answering 503 and 429 with a raw
/// `retry-after: \xff` byte (obs-text is legal in a field value, RFC 9110 §5.5, and Envoy
/// passes it through). The glue reads the answer's headers as bytes: the value is no hint,
/// the batch is retried on the backoff, no client request fails, and once the collector
/// answers 200 every span arrives. (Builds that read it with the SDK's `get_map_value`
/// aborted the VM here and never traced again on that worker.)
#[test]
fn a_raw_0xff_retry_after_fails_no_request_and_tracing_goes_on() {
    let _lock = ports_lock();
    let collector = FaultCollector::start(COLLECTOR).unwrap();
    let _auth = Stub::start_named("auth", "127.0.0.1:18081").unwrap();
    let config = fast_exporter_config("exporter-0xff.yaml", "");
    let envoy = try_start_envoy(&config, 9901, 0, 1, vec![]).unwrap();
    let stat = counters(&envoy);
    let load = Load::start(40);
    std::thread::sleep(Duration::from_secs(1));

    for status in [503u16, 429] {
        let failed_before = stat("export_requests_failed");
        collector.set_mode(Mode::Status {
            status,
            retry_after: Some(b"\xff".to_vec()),
        });
        std::thread::sleep(Duration::from_millis(2_500));
        let answered = in_mode(
            &collector,
            |m| matches!(m, Mode::Status { status: s, .. } if *s == status),
        );
        assert!(
            answered.len() >= 2,
            "{status} + retry-after \\xff: retried on the backoff ({} answered)\n{}",
            answered.len(),
            envoy.log_tail()
        );
        assert!(
            stat("export_requests_failed") >= failed_before + 2,
            "{status}: failures counted"
        );
    }
    let retries = stat("export_retries");
    collector.set_mode(Mode::Ok);
    std::thread::sleep(Duration::from_millis(1_500));
    let (sent, failed) = load.stop();
    wait_drained_with(&envoy, Duration::from_secs(10), Some(2 * sent));

    assert_eq!(failed, 0, "no client request failed ({sent} sent)");
    assert!(retries > 0, "the failed batches were retried");
    let created = stat("spans_created");
    let dropped: u64 = drop_reasons().iter().map(|r| stat(r)).sum();
    assert_eq!(
        created,
        2 * sent,
        "tracing never stopped: two spans per request"
    );
    assert_eq!(created, stat("spans_exported") + dropped);
    assert_eq!(dropped, 0, "the outage lost nothing");
    assert_eq!(stat("spans_exported"), collector.stored().len() as u64);
    assert_eq!(collector.duplicates(), 0, "no span stored twice");
    let log = envoy.log();
    assert!(!log.contains("panicked"), "no panic:\n{}", envoy.log_tail());
    assert!(
        !log.contains("unreachable"),
        "no trap:\n{}",
        envoy.log_tail()
    );
    assert!(
        !log.contains("(Retry-After)"),
        "an unreadable Retry-After is no hint"
    );
    eprintln!(
        "retry-after \\xff: {sent} requests, 0 failed; {} export answers 503/429; {retries} retries; {created} spans all exported",
        in_mode(&collector, |m| matches!(m, Mode::Status { .. })).len()
    );
}
