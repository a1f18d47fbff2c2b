//! Host-side micro-benchmark of one request through the core, without Envoy: request start
//! (extract, sample, ids, inject), span writing at log, and framing a 512-span batch.
//! Run with `make microbench` (`cargo bench -p gateway-tracing-core --features testing`).
//! A plain timed harness: each case runs for about a second after a warm-up and prints
//! nanoseconds per iteration (median of 5 runs), so a regression shows without Envoy.

use gateway_tracing_core::config::{self, Config};
use gateway_tracing_core::otlp::{self, Framer};
use gateway_tracing_core::testing::{MockHost, MockStats};
use gateway_tracing_core::tracer::{self, Completion};
use std::hint::black_box;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"{
  "routes": [{"template": "/api/cart/:cartId/add", "upstream_template": "/cart/add"},
             {"template": "/api/products/:id"}],
  "clusters": {"products": {"service": "PRODUCTS_SERVICE"},
               "cart": {"durable_object": {"name": "CartDurableObject", "id": {"route_param": "cartId"}}}},
  "exporter": {"cluster": "otel"}
}"#;

fn config(sampler: &str) -> Config {
    let json = CONFIG.replacen('{', &format!(r#"{{"sampler": "{sampler}","#), 1);
    match config::parse(json.as_bytes(), &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("bench config: {e}"),
    }
}

fn host() -> MockHost {
    MockHost::new()
        .header(":method", "GET")
        .header(":path", "/api/products/p-1")
        .header(":scheme", "http")
        .header(":authority", "shop.example")
        .header("user-agent", "wrk")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .property(&["xds", "cluster_name"], b"products")
        .now(1_700_000_000_000_000_000)
}

fn done() -> Completion {
    Completion {
        end_ns: 1_700_000_000_000_400_000,
        status: 200,
        code_details: "via_upstream".into(),
        upstream_address: Some("127.0.0.1:18082".into()),
        upstream_path: Some("/products/p-1".into()),
        upstream_authority: Some("products".into()),
        client_address: Some("127.0.0.1:50000".into()),
        protocol: Some("HTTP/1.1".into()),
        ..Default::default()
    }
}

/// Median ns/iteration of `f` over 5 runs of about 200 ms each. With `BENCH_ITERS=N` each
/// case instead runs exactly N times (for instruction counting under callgrind) and
/// `BENCH_ONLY=<prefix>` picks cases by name.
fn bench(name: &str, mut f: impl FnMut()) {
    if let Ok(only) = std::env::var("BENCH_ONLY") {
        if !name.starts_with(&only) {
            return;
        }
    }
    if let Some(n) = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        for _ in 0..n {
            f();
        }
        println!("{name:<44} {n} iterations");
        return;
    }
    for _ in 0..1_000 {
        f();
    }
    let mut per_iter = Vec::new();
    for _ in 0..5 {
        let mut n = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(200) {
            for _ in 0..100 {
                f();
            }
            n += 100;
        }
        per_iter.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    per_iter.sort_by(f64::total_cmp);
    println!("{name:<44} {:>9.0} ns/iter", per_iter[2]);
}

fn main() {
    let stats = MockStats::new();
    for sampler in ["always_on", "always_off"] {
        let cfg = config(sampler);
        // One host per iteration would time the mock; a warmed host (headers already in the
        // host's serialisation) times the core. Injection rewrites the same two headers.
        let mut h = host();
        bench(&format!("start ({sampler})"), || {
            black_box(tracer::start(&cfg, &mut h, &stats));
        });
    }
    let cfg = config("always_on");
    let mut h = host();
    let req = tracer::start(&cfg, &mut h, &stats);
    let done = done();
    let mut buf = Vec::with_capacity(2048);
    bench("finish: SERVER + CLIENT spans written", || {
        buf.clear();
        black_box(tracer::finish(&cfg, &req, &done, &stats, &mut buf));
    });
    println!("{:<44} {:>9} bytes (2 spans)", "encoded size", buf.len());
    bench("host: MockHost::new + 7 headers (overhead)", || {
        black_box(host());
    });

    let framer = Framer::new(&otlp::resource(&cfg));
    let fields: Vec<Vec<u8>> = (0..256).map(|_| buf.clone()).collect();
    bench("flush: frame a 512-span batch", || {
        black_box(framer.frame(fields.iter().map(Vec::as_slice)));
    });
}
