//! End-to-end: the exporter and the configuration in the real Envoy. A full batch is sent
//! without waiting for the timer; exporter headers carry secrets from the environment that
//! never reach Envoy's log or stats; failed exports are counted; an invalid configuration is
//! refused at load with one line naming the field and value; queued spans are sent, not lost,
//! when a configuration update replaces the plugin.
mod common;

use common::{
    gateway_as_lds, gateway_config_with, ports_lock, repo_root, send, try_start_envoy, write_lds,
};
use demo::collector::Collector;
use demo::envoy::{Envoy, EnvoyOpts};
use std::time::{Duration, Instant};
use support::Stub;

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
    assert_eq!(stat("spans_dropped_export_failed"), 4);
    assert_eq!(stat("spans_exported"), 4);
    assert_eq!(stat("spans_queued"), 8);
    assert_eq!(
        collector.spans().len(),
        4,
        "the rejected batch was not stored"
    );

    // And the exporter recovers.
    for _ in 0..2 {
        send(GATEWAY, "POST", "/api/auth/login", &[], "{}");
    }
    collector
        .wait_for(Duration::from_secs(5), |s| s.len() >= 8)
        .expect("exports resume after a failure");

    let log = envoy.log();
    assert!(
        log.contains("export to cluster 'otel_collector' failed: HTTP 503"),
        "failed export logged"
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
    assert!(
        err.contains("Unable to create Wasm plugin gateway_tracing"),
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
    let envoy = Envoy::start(
        &bootstrap,
        EnvoyOpts {
            concurrency: 1,
            component_log_level: Some("wasm:debug".into()),
            cwd: Some(repo_root()),
            // Let the old listener go quickly once its connections are gone.
            extra_args: vec![
                "--drain-time-s".into(),
                "1".into(),
                "--drain-strategy".into(),
                "immediate".into(),
            ],
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));

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
