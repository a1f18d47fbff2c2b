#!/usr/bin/env python3
"""`make bench`: what tracing costs an Envoy, measured side by side (issue 7).

Topology (loopback, ports 21000-21099 so it never meets the e2e tests' fixed ports):

    wrk (CPU 1) --> proxy Envoy (CPU 0, --concurrency 1, the configuration under test)
                      |--> upstream Envoy (CPU 1, direct_response 200)
                      `--> OTLP/HTTP sink (CPU 1, counts spans and bytes per export request)

For every round, every configuration gets a fresh proxy Envoy (the order rotates by one each
round): warm-up, memory "before", a `wrk -t1 -c32` throughput run (proxy CPU = delta of
utime+stime in /proc/<pid>/stat over that run, divided by the requests wrk completed), a
`wrk -t1 -c1 --latency` run for p50/p99, memory "after". Medians across rounds; RPS ratios and
CPU over plain are medians of the per-round comparisons with plain of the same round.

Environment: BENCH_SECONDS (throughput run, default 6), BENCH_LATENCY_SECONDS (c=1 run, default
half of BENCH_SECONDS, at least 1), BENCH_ROUNDS (default 3), BENCH_WARMUP_SECONDS (default 1),
BENCH_CONNECTIONS (default 32), BENCH_PORT_BASE (default 21000), BENCH_CONFIGS (comma-separated
subset of the configuration names, default all), BENCH_OUT (default target/bench),
BENCH_BUDGET_SECONDS (default 680: no run starts that would end after it; the table then covers
the runs done), BENCH_RATIO_SAMPLER (JSON object merged into the 1% row's plugin config, default
{"sampler": "parentbased_traceidratio", "sampler_ratio": 0.01}), BENCH_IDLE (see IDLE below).
Quick mode for development: BENCH_SECONDS=2 BENCH_ROUNDS=1.

Standard library only. Every process it starts is stopped on exit, error or Ctrl-C.
"""

import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


SECONDS = env_int("BENCH_SECONDS", 6)
LAT_SECONDS = env_int("BENCH_LATENCY_SECONDS", max(1, SECONDS // 2))
ROUNDS = env_int("BENCH_ROUNDS", 3)
WARMUP = env_int("BENCH_WARMUP_SECONDS", 1)
CONNECTIONS = env_int("BENCH_CONNECTIONS", 32)
PORT_BASE = env_int("BENCH_PORT_BASE", 21000)
OUT = os.path.join(ROOT, os.environ.get("BENCH_OUT", "target/bench"))
# No run starts that could not finish inside this budget (make bench's hard bound is 600 s).
BUDGET = env_int("BENCH_BUDGET_SECONDS", 760)
# The 1% row's sampler fields: the row is skipped while the filter refuses them.
RATIO_SAMPLER = json.loads(os.environ.get("BENCH_RATIO_SAMPLER", "")
                           or '{"sampler": "parentbased_traceidratio", "sampler_ratio": 0.01}')

# How an idle CPU waits, for the whole run. "halt" (default): as the machine is. "poll": the
# bench holds /dev/cpu_dma_latency at 0 (what tuned's latency-performance profile does), so an
# idle CPU polls instead of halting. Why it matters here: on a KVM guest whose cpuidle driver
# halts (haltpoll with guest_halt_poll_ns=0 on these machines), every wake-up of wrk or the
# upstream on an idle CPU 1 is an IPI that exits to the hypervisor, paid inside the proxy's
# sendto. A slower proxy leaves CPU 1 idle more often, so it pays more wake-ups per request:
# a cost of the shared loopback topology, not of the configuration (README, Performance: "Idle CPUs").
IDLE = os.environ.get("BENCH_IDLE", "halt").strip() or "halt"
if IDLE not in ("halt", "poll"):
    sys.exit("BENCH_IDLE must be halt or poll, not %r" % IDLE)

PROXY_PORT = PORT_BASE
PROXY_ADMIN = PORT_BASE + 1
UPSTREAM_PORT = PORT_BASE + 10
UPSTREAM_ADMIN = PORT_BASE + 11
SINK_PORT = PORT_BASE + 20

FILTER_WASM = os.path.join(ROOT, "target/gateway_tracing.wasm")
# The native build (README "Native build"): Envoy loads lib<name>.so from this directory.
FILTER_MODULE_DIR = os.path.join(ROOT, "target")
FILTER_MODULE = os.path.join(FILTER_MODULE_DIR, "libgateway_tracing.so")
# The do-nothing tracer module (bench/empty-tracer), beside it: one search path.
EMPTY_TRACER = os.path.join(FILTER_MODULE_DIR, "libempty_tracer.so")
os.environ.setdefault("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", FILTER_MODULE_DIR)
EMPTY_WASM = os.path.join(ROOT, "target/bench/empty_filter.wasm")
SINK_BIN = os.path.join(ROOT, "target/bench/build/release/bench-sink")
WRK_SCRIPT = os.path.join(OUT, "report.lua")

CPUS = os.cpu_count() or 1
PINNED = CPUS >= 2
CLK_TCK = os.sysconf("SC_CLK_TCK")

# wrk's done() hook prints one machine-readable line (latency in microseconds).
WRK_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max))
end
"""


# ------------------------------------------------------------------------------ configurations --

def plugin_config(sampler_fields):
    plugin = {"mode": "gateway", "service_name": "bench"}
    plugin.update(sampler_fields)
    plugin["exporter"] = {"cluster": "otel", "authority": "otel-collector", "path": "/v1/traces"}
    return json.dumps(plugin)


def gateway_tracing(sampler_fields, wasm=None):
    return {"wasm": ("gateway_tracing", wasm or FILTER_WASM, plugin_config(sampler_fields))}


def gateway_tracing_native(sampler_fields):
    """The same plugin configuration, as the native dynamic module (and its bootstrap hooks)."""
    return {"module": plugin_config(sampler_fields)}


# An earlier build of this filter to compare against in the same run (BENCH_BEFORE_WASM, default
# target/bench/gateway_tracing_before.wasm); the row is skipped when the file does not exist.
BEFORE_WASM = os.environ.get("BENCH_BEFORE_WASM") or os.path.join(ROOT, "target/bench/gateway_tracing_before.wasm")


CONFIGS = [
    # (name, label, settings)
    ("plain", "plain proxy, no tracing", {}),
    ("native", "Envoy native OTel tracer, 100%, default flush", {"native": True}),
    ("native_batched", "Envoy native OTel tracer, 100%, `min_flush_spans: 512`",
     {"native": True, "runtime": {"tracing.opentelemetry.min_flush_spans": 512}}),
    # The same span tree as this filter writes (a SERVER span and a CLIENT child per upstream
    # attempt): HCM's `spawn_upstream_span` makes Envoy's router write the child. Per-span
    # costs compare here; the targets stay against the row above (Envoy's usual setup).
    ("native_batched_2spans", "Envoy native OTel tracer, 100%, `min_flush_spans: 512`, `spawn_upstream_span` (2 spans/request)",
     {"native": True, "spawn_upstream_span": True,
      "runtime": {"tracing.opentelemetry.min_flush_spans": 512}}),
    # Issue 16, item 7: the dynamic-module *tracer* placement's floor. Envoy's tracing driver
    # calls a module whose hooks all return at once (bench/empty-tracer), with the same span
    # tree (spawn_upstream_span): what Envoy spends per request before the module does anything.
    ("tracer_floor", "dynamic-module tracer whose hooks do nothing (the tracer placement's floor), 100%, `spawn_upstream_span`",
     {"module_tracer": True, "spawn_upstream_span": True}),
    ("empty_wasm", "empty Rust proxy-wasm filter (sets one header)",
     {"wasm": ("empty_filter", EMPTY_WASM, "")}),
    # Price of host calls: the empty filter plus 8 property reads / 2 header-map reads at log.
    ("empty_props8", "empty filter + 8 `get_property` per request",
     {"wasm": ("empty_filter", EMPTY_WASM, "props=8")}),
    ("empty_expr1", "empty filter + 1 CEL `expr_evaluate` of the same 8 attributes per request",
     {"wasm": ("empty_filter", EMPTY_WASM, "expr=1")}),
    ("empty_maps2", "empty filter + 2 request-header-map reads per request",
     {"wasm": ("empty_filter", EMPTY_WASM, "maps=2")}),
    ("gt_always_on", "gateway-tracing, `sampler: always_on`",
     gateway_tracing({"sampler": "always_on"})),
    ("gt_always_off", "gateway-tracing, `sampler: always_off` (propagation only)",
     gateway_tracing({"sampler": "always_off"})),
    ("gt_ratio_1pct", "gateway-tracing, 1% ratio sampler",
     gateway_tracing(RATIO_SAMPLER)),
    ("gt_always_on_stable", "gateway-tracing, `always_on`, `semconv: stable`, no header attributes",
     gateway_tracing({"sampler": "always_on", "semconv": "stable", "request_headers": []})),
    ("nm_always_on", "gateway-tracing native module, `sampler: always_on`",
     gateway_tracing_native({"sampler": "always_on"})),
    ("nm_always_off", "gateway-tracing native module, `sampler: always_off` (propagation only)",
     gateway_tracing_native({"sampler": "always_off"})),
    ("nm_ratio_1pct", "gateway-tracing native module, 1% ratio sampler",
     gateway_tracing_native(RATIO_SAMPLER)),
] + ([
    ("gt_before_always_on", "earlier build (`BENCH_BEFORE_WASM`), `always_on`",
     gateway_tracing({"sampler": "always_on"}, BEFORE_WASM)),
    ("gt_before_always_off", "earlier build (`BENCH_BEFORE_WASM`), `always_off`",
     gateway_tracing({"sampler": "always_off"}, BEFORE_WASM)),
] if os.path.exists(BEFORE_WASM) else [])


def socket_address(port):
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def static_cluster(name, port):
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(port)}}]}],
        },
    }


def hcm(stat_prefix, routes, http_filters, tracing=None):
    config = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "route_config": {"name": "routes", "virtual_hosts": [
            {"name": "all", "domains": ["*"], "routes": routes}]},
        "http_filters": http_filters + [{
            "name": "envoy.filters.http.router",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }],
    }
    if tracing:
        config["tracing"] = tracing
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def listener(name, port, hcm_filter):
    return {"name": name, "address": socket_address(port),
            "filter_chains": [{"filters": [hcm_filter]}]}


def upstream_config():
    route = {"match": {"prefix": "/"},
             "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}}}
    return {
        "admin": {"address": socket_address(UPSTREAM_ADMIN)},
        "static_resources": {"listeners": [
            listener("upstream", UPSTREAM_PORT, hcm("upstream", [route], []))]},
    }


def hcm_tracing(provider, typed_config):
    """HCM `tracing`: every request sampled, spans from `provider`."""
    return {"random_sampling": {"value": 100},
            "provider": {"name": provider, "typed_config": typed_config}}


def proxy_config(settings):
    http_filters = []
    if "wasm" in settings:
        name, path, plugin = settings["wasm"]
        wasm = {
            "name": name,
            "root_id": name,
            "failure_policy": "FAIL_OPEN",
            "vm_config": {
                "vm_id": name,
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": path}},
            },
        }
        if plugin:
            wasm["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": plugin}
        http_filters.append({
            "name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": wasm},
        })
    if "module" in settings:
        http_filters.append({
            "name": "envoy.filters.http.dynamic_modules",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
                "dynamic_module_config": {"name": "gateway_tracing"},
                "filter_name": "gateway_tracing",
                "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": settings["module"]},
            },
        })
    tracing = None
    if settings.get("native"):
        tracing = hcm_tracing("envoy.tracers.opentelemetry", {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "http_service": {"http_uri": {
                "uri": "http://127.0.0.1:%d/v1/traces" % SINK_PORT,
                "cluster": "otel", "timeout": "1s"}},
            "service_name": "bench",
        })
    if settings.get("module_tracer"):
        tracing = hcm_tracing("envoy.tracers.dynamic_modules", {
            "@type": "type.googleapis.com/envoy.extensions.tracers.dynamic_modules.v3.DynamicModuleTracer",
            "dynamic_module_config": {"name": "empty_tracer"},
            "tracer_name": "floor",
        })
    if tracing and settings.get("spawn_upstream_span"):
        tracing["spawn_upstream_span"] = True
    route = {"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}
    config = {
        "admin": {"address": socket_address(PROXY_ADMIN)},
        "static_resources": {
            "listeners": [listener("proxy", PROXY_PORT, hcm("bench", [route], http_filters, tracing))],
            "clusters": [static_cluster("upstream", UPSTREAM_PORT), static_cluster("otel", SINK_PORT)],
        },
    }
    if "module" in settings:
        config["bootstrap_extensions"] = [{
            "name": "envoy.bootstrap.dynamic_modules",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension",
                "dynamic_module_config": {"name": "gateway_tracing"},
                "extension_name": "gateway_tracing",
            },
        }]
    if settings.get("runtime"):
        config["layered_runtime"] = {"layers": [
            {"name": "static", "static_layer": settings["runtime"]}]}
    return config


# ------------------------------------------------------------------------------------ processes --

PROCS = []


def log(msg):
    print(msg, flush=True)


def pin(cpu):
    return ["taskset", "-c", str(cpu)] if PINNED else []


def start(name, argv, logfile):
    out = open(logfile, "wb")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=ROOT, start_new_session=True)
    proc.bench_name = name
    proc.bench_log = logfile
    proc.bench_out = out
    PROCS.append(proc)
    return proc


def stop(proc, grace=5.0):
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    if proc in PROCS:
        PROCS.remove(proc)
    proc.bench_out.close()


def stop_all():
    for proc in list(PROCS):
        try:
            stop(proc, grace=3.0)
        except Exception as e:  # keep tearing down the others
            log("!! could not stop %s (pid %d): %s" % (proc.bench_name, proc.pid, e))


def on_signal(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port_free(port, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if port_free(port):
            return
        time.sleep(0.1)
    raise RuntimeError("port %d is still in use (another bench running?)" % port)


def http_get(port, path, timeout=2.0):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_envoy(name, config, cpu, admin_port, listen_port):
    for port in (admin_port, listen_port):
        wait_port_free(port)
    cfg_path = os.path.join(OUT, "%s.json" % name)
    with open(cfg_path, "w") as f:
        json.dump(config, f, indent=1)
    argv = pin(cpu) + ["envoy", "-c", cfg_path, "--concurrency", "1", "--disable-hot-restart",
                       "--log-level", "warn", "--component-log-level", "wasm:warn,dynamic_modules:warn"]
    proc = start(name, argv, os.path.join(OUT, "logs", "%s.log" % name))
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            stop(proc)
            raise EnvoyRefused("Envoy exited with status %s:\n%s" % (proc.returncode, tail(proc.bench_log)))
        try:
            if http_get(admin_port, "/ready", 1.0).strip() == "LIVE":
                with socket.create_connection(("127.0.0.1", listen_port), timeout=1.0):
                    return proc
        except OSError:
            pass
        time.sleep(0.1)
    stop(proc)
    # Slow, not refused (a busy machine): this run is dropped, the next round tries again.
    raise RuntimeError("Envoy not ready after 30 s:\n%s" % tail(proc.bench_log))


class EnvoyRefused(Exception):
    pass


class OutOfTime(Exception):
    pass


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def envoy_heap_bytes(admin_port):
    try:
        return int(json.loads(http_get(admin_port, "/memory"))["allocated"])
    except (OSError, ValueError, KeyError):
        return None


def sink_stats():
    return json.loads(http_get(SINK_PORT, "/stats"))


def wrk(connections, seconds, latency):
    argv = pin(1) + ["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "--timeout", "2s",
                     "-s", WRK_SCRIPT]
    if latency:
        argv.append("--latency")
    argv.append("http://127.0.0.1:%d/bench" % PROXY_PORT)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, cwd=ROOT)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError("wrk printed no result (status %d):\n%s\n%s" % (out.returncode, out.stdout, out.stderr))


# ---------------------------------------------------------------------------------- measurement --

def measure(name, settings):
    proxy = start_envoy("proxy-" + name, proxy_config(settings), 0, PROXY_ADMIN, PROXY_PORT)
    try:
        pid = proxy.pid
        wrk(CONNECTIONS, WARMUP, False)
        time.sleep(0.5)
        rss_before, heap_before = proc_rss_kib(pid), envoy_heap_bytes(PROXY_ADMIN)
        sink0, cpu0 = sink_stats(), proc_cpu_seconds(pid)
        tput = wrk(CONNECTIONS, SECONDS, False)
        # Let a timer-driven flush of the run's last spans land inside the window: an idle
        # Envoy burns next to nothing, so this moves the edge, not the average.
        time.sleep(1.0)
        cpu1, sink1 = proc_cpu_seconds(pid), sink_stats()
        lat = wrk(1, LAT_SECONDS, True)
        time.sleep(0.5)
        rss_after, heap_after = proc_rss_kib(pid), envoy_heap_bytes(PROXY_ADMIN)
        if proxy.poll() is not None:
            raise RuntimeError("proxy exited during the run:\n%s" % tail(proxy.bench_log))
    finally:
        stop(proxy)
    d = {k: sink1[k] - sink0[k] for k in sink1}
    requests = tput["requests"]
    rps = requests / (tput["duration_us"] / 1e6) if tput["duration_us"] else 0.0
    return {
        "config": name,
        "requests": requests,
        "rps": rps,
        "errors": tput["errors"],
        "non2xx": tput["non2xx"] + lat["non2xx"],
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_req": (cpu1 - cpu0) * 1e6 / requests if requests else None,
        "c32_p50_us": tput.get("p50_us"),
        "c32_p99_us": tput.get("p99_us"),
        "c1_requests": lat["requests"],
        "p50_us": lat["p50_us"],
        "p99_us": lat["p99_us"],
        "p999_us": lat["p999_us"],
        "exports": d["requests"],
        "spans": d["spans"],
        "export_bytes": d["body_bytes"],
        "span_bytes": d["span_bytes"],
        "uncounted_exports": d["uncounted"],
        "spans_per_request": d["spans"] / requests if requests else None,
        "spans_per_export": d["spans"] / d["requests"] if d["requests"] else None,
        "bytes_per_span": d["body_bytes"] / d["spans"] if d["spans"] else None,
        "span_msg_bytes_per_span": d["span_bytes"] / d["spans"] if d["spans"] else None,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "heap_bytes_before": heap_before,
        "heap_bytes_after": heap_after,
    }


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs, skipped):
    by_round = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["config"]] = run
    rows = []
    for name, label, _ in CONFIGS:
        mine = [r for r in runs if r["config"] == name]
        if name in skipped or not mine:
            rows.append({"config": name, "label": label, "skipped": skipped.get(name, "not run")})
            continue
        ratios, over = [], []
        for r in mine:
            plain = by_round.get(r["round"], {}).get("plain")
            if plain and plain["rps"]:
                ratios.append(r["rps"] / plain["rps"])
            if plain and plain["cpu_us_per_req"] is not None and r["cpu_us_per_req"] is not None:
                over.append(r["cpu_us_per_req"] - plain["cpu_us_per_req"])
        row = {"config": name, "label": label, "rounds": len(mine),
               "rps_ratio": median(ratios), "cpu_over_plain_us": median(over)}
        for key in ("rps", "cpu_us_per_req", "p50_us", "p99_us", "spans_per_request",
                    "spans_per_export", "bytes_per_span", "span_msg_bytes_per_span",
                    "rss_kib_before", "rss_kib_after", "heap_bytes_before", "heap_bytes_after",
                    "errors", "non2xx"):
            row[key] = median([r[key] for r in mine])
        rows.append(row)
    return rows


def fmt(value, spec="{:.0f}", none="—"):
    return none if value is None else spec.format(value)


def mib(kib):
    return None if kib is None else kib / 1024


def markdown(rows, machine):
    lines = [
        "numbers from the run of %s: %s, nproc %d, %s; %s; idle CPUs: %s; %d round(s), wrk -t1 "
        "-c%d -d%ds (throughput, proxy CPU) and -c1 -d%ds --latency (p50/p99), medians across "
        "rounds."
        % (machine["date"], machine["cpu_model"], machine["nproc"], machine["envoy"],
           "proxy pinned to CPU 0, upstream/sink/wrk to CPU 1" if PINNED else "NOT pinned (1 CPU)",
           machine["idle"], ROUNDS, CONNECTIONS, SECONDS, LAT_SECONDS),
        "",
        "| config | RPS vs plain | RPS | proxy CPU µs/req | over plain | c=1 p50 (µs) | c=1 p99 (µs) "
        "| spans/req | spans/export | B/span at sink (body / Span) | proxy RSS MiB before → after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "skipped" in row:
            lines.append("| %s | skipped: %s | | | | | | | | | |" % (row["label"], row["skipped"]))
            continue
        over = row["cpu_over_plain_us"]
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s → %s |" % (
            row["label"], fmt(row["rps_ratio"], "{:.2f}"), fmt(row["rps"]),
            fmt(row["cpu_us_per_req"], "{:.1f}"),
            "0" if row["config"] == "plain" else fmt(over, "{:+.1f}"),
            fmt(row["p50_us"]), fmt(row["p99_us"]),
            fmt(row["spans_per_request"], "{:.2f}"), fmt(row["spans_per_export"], "{:.0f}"),
            "%s / %s" % (fmt(row["bytes_per_span"]), fmt(row["span_msg_bytes_per_span"]))
            if row["spans_per_export"] else "—",
            fmt(mib(row["rss_kib_before"]), "{:.1f}"), fmt(mib(row["rss_kib_after"]), "{:.1f}")))
    warnings = [r for r in rows if "skipped" not in r and (r.get("errors") or r.get("non2xx"))]
    for r in warnings:
        lines.append("")
        lines.append("warning: %s had %s socket errors and %s non-2xx responses (median per run)"
                     % (r["label"], fmt(r["errors"]), fmt(r["non2xx"])))
    lines.append("")
    lines.append("B/span at sink: export request body bytes / spans (resource and scope "
                 "included), and the encoded Span messages alone / spans. "
                 "Proxy CPU = Δ(utime+stime) of the proxy Envoy over the c=%d run / requests. "
                 "RSS = VmRSS of the proxy process (/proc/<pid>/status): Envoy and its wasm VMs, "
                 "after warm-up and after both runs." % CONNECTIONS)
    return "\n".join(lines) + "\n"


# Issue 16's targets: (description, numerator config, denominator config or None, what is
# compared, bound, "ge"/"le"). "rps": per-round RPS ratio (median); "rps_plain": the row's RPS
# vs plain; "cpu_over": CPU over plain, ratio of the two rows; "p99": c=1 p99 ratio.
TARGETS = [
    ("native `always_on` ≥ 0.85x plain", "nm_always_on", None, "rps_plain", 0.85, "ge"),
    ("native `always_on` CPU over plain ≤ 0.5x the batched tracer's", "nm_always_on",
     "native_batched", "cpu_over", 0.5, "le"),
    ("native `always_off` ≥ 0.95x plain", "nm_always_off", None, "rps_plain", 0.95, "ge"),
    ("native `always_on` ≥ 1.2x the batched tracer's RPS", "nm_always_on", "native_batched",
     "rps", 1.2, "ge"),
    ("native `always_on` c=1 p99 ≤ 1.1x native `always_off`", "nm_always_on", "nm_always_off",
     "p99", 1.1, "le"),
    ("wasm `always_on` ≥ 0.9x the batched tracer's RPS", "gt_always_on", "native_batched", "rps",
     0.9, "ge"),
]


def per_round_ratio(runs, a, b, key):
    """Median over rounds of run a's `key` / run b's `key` in the same round, and the list."""
    by_round = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["config"]] = run
    ratios = [r[a][key] / r[b][key] for r in by_round.values()
              if a in r and b in r and r[a].get(key) and r[b].get(key)]
    return median(ratios), ratios


def targets(rows, runs):
    """The targets table for the rows of this run (those whose configurations ran)."""
    by = {r["config"]: r for r in rows if "skipped" not in r}
    lines = ["| target | this run | met |", "|---|---|---|"]
    for text, a, b, what, bound, sense in TARGETS:
        if a not in by or (b and b not in by):
            continue
        detail = ""
        if what == "rps_plain":
            value = by[a]["rps_ratio"]
        elif what == "cpu_over":
            ca, cb = by[a]["cpu_over_plain_us"], by[b]["cpu_over_plain_us"]
            value = ca / cb if ca is not None and cb else None
            detail = " (%s against %s µs)" % (fmt(ca, "{:+.1f}"), fmt(cb, "{:+.1f}"))
        elif what == "p99":
            value = by[a]["p99_us"] / by[b]["p99_us"] if by[b]["p99_us"] else None
            detail = " (%s / %s µs)" % (fmt(by[a]["p99_us"]), fmt(by[b]["p99_us"]))
        else:
            value, each = per_round_ratio(runs, a, b, "rps")
            detail = " (per round: %s)" % ", ".join("%.2f" % x for x in each)
        if value is None:
            continue
        met = value >= bound if sense == "ge" else value <= bound
        # Three decimals where two would print the bound itself on the wrong side of it.
        shown = "%.3f" % value if round(value, 2) == bound else "%.2f" % value
        lines.append("| %s | %sx%s | %s |" % (text, shown, detail, "yes" if met else "no"))
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def hold_idle():
    """BENCH_IDLE=poll: a 0 µs CPU latency request, in force while the returned file is open
    (close it when the run ends); None with the default `halt`."""
    if IDLE != "poll":
        return None
    f = open("/dev/cpu_dma_latency", "wb", buffering=0)
    f.write((0).to_bytes(4, sys.byteorder))
    return f


def cpuidle():
    """The kernel's cpuidle driver and governor, and the haltpoll guest's polling bound."""
    def read(path):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return "?"
    base = "/sys/devices/system/cpu/cpuidle/"
    poll_ns = read("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
    return "cpuidle %s/%s%s" % (read(base + "current_driver"), read(base + "current_governor_ro"),
                                "" if poll_ns == "?" else ", guest_halt_poll_ns %s" % poll_ns)


def machine_info():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    version = subprocess.run(["envoy", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version: [0-9a-f]+/([^/\s]+)", version)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": CPUS,
        "cpu_model": model,
        "envoy": "Envoy " + (m.group(1) if m else version.strip()),
        "kernel": platform.release(),
        "idle": "%s (%s)" % (IDLE, cpuidle()),
    }


def main():
    # SIGINT too: a shell that starts the driver in the background leaves SIGINT ignored, and
    # `timeout --signal=INT` (make bench's bound) must still stop it cleanly.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    with open(WRK_SCRIPT, "w") as f:
        f.write(WRK_LUA)
    wanted = [c.strip() for c in os.environ.get("BENCH_CONFIGS", "").split(",") if c.strip()]
    configs = [c for c in CONFIGS if not wanted or c[0] in wanted or c[0] == "plain"]
    needed = ({SINK_BIN} | {c[2]["wasm"][1] for c in configs if "wasm" in c[2]}
              | ({FILTER_MODULE} if any("module" in c[2] for c in configs) else set())
              | ({EMPTY_TRACER} if any("module_tracer" in c[2] for c in configs) else set()))
    for path in sorted(needed):
        if not os.path.exists(path):
            sys.exit("missing %s (run make bench-build)" % path)
    for tool in ("envoy", "wrk") + (("taskset",) if PINNED else ()):
        if not shutil.which(tool):
            sys.exit("missing %s on PATH" % tool)
    per_run = WARMUP + SECONDS + LAT_SECONDS + 4
    machine = machine_info()
    log(">> bench: %d configs x %d rounds, about %d s per run, about %d s in all; %s, nproc %d%s"
        % (len(configs), ROUNDS, per_run, per_run * len(configs) * ROUNDS, machine["envoy"],
           CPUS, "" if PINNED else " (one CPU: nothing pinned)"))

    idle_hold = hold_idle()
    runs, skipped, notes = [], {}, []
    started = time.time()
    interrupted = False
    try:
        wait_port_free(SINK_PORT)
        start("sink", pin(1) + [SINK_BIN, "127.0.0.1:%d" % SINK_PORT], os.path.join(OUT, "logs", "sink.log"))
        start_envoy("upstream", upstream_config(), 1, UPSTREAM_ADMIN, UPSTREAM_PORT)
        deadline = time.time() + 10
        while True:
            try:
                sink_stats()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        for rnd in range(ROUNDS):
            shift = rnd % len(configs)
            for name, label, settings in configs[shift:] + configs[:shift]:
                if name in skipped:
                    continue
                if time.time() - started + per_run > BUDGET:
                    raise OutOfTime()
                try:
                    run = measure(name, settings)
                except EnvoyRefused as e:
                    note = "Envoy refused the configuration" + (
                        " `%s`" % json.dumps(RATIO_SAMPLER) if name in ("gt_ratio_1pct", "nm_ratio_1pct") else "")
                    skipped[name] = note
                    log("-- round %d %-15s skipped: %s\n%s" % (rnd + 1, name, note, e))
                    continue
                except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
                    log("!! round %d %-15s failed, run dropped: %s" % (rnd + 1, name, e))
                    continue
                run["round"] = rnd
                runs.append(run)
                log("-- round %d %-15s %8.0f rps  %6.1f us/req CPU  c=1 p50 %5d us p99 %6d us  "
                    "spans/export %s  B/span %s  RSS %.1f -> %.1f MiB"
                    % (rnd + 1, name, run["rps"], run["cpu_us_per_req"] or 0, run["p50_us"],
                       run["p99_us"], fmt(run["spans_per_export"]), fmt(run["bytes_per_span"]),
                       run["rss_kib_before"] / 1024, run["rss_kib_after"] / 1024))
    except OutOfTime:
        note = ("stopped early: the next run would pass BENCH_BUDGET_SECONDS=%d; "
                "the medians below cover the runs that were done" % BUDGET)
        log("!! " + note)
        notes.append(note)
    except KeyboardInterrupt:
        log("!! interrupted: stopping every process, writing what was measured")
        notes.append("interrupted: the medians below cover the runs that were done")
        interrupted = True
    finally:
        stop_all()
        if idle_hold:
            idle_hold.close()

    rows = summarize(runs, skipped)
    table = markdown([r for r in rows if r["config"] in {c[0] for c in configs}], machine)
    goals = targets(rows, runs)
    if goals:
        table += "\nIssue 16's targets in this run:\n\n" + goals
    if notes:
        table = "".join("**%s**\n\n" % n for n in notes) + table
    settings = {"seconds": SECONDS, "latency_seconds": LAT_SECONDS, "rounds": ROUNDS, "idle": IDLE,
                "warmup_seconds": WARMUP, "connections": CONNECTIONS, "pinned": PINNED}
    with open(os.path.join(OUT, "bench.md"), "w") as f:
        f.write(table)
    with open(os.path.join(OUT, "bench.json"), "w") as f:
        json.dump({"machine": machine, "settings": settings, "notes": notes, "summary": rows,
                   "runs": runs}, f, indent=1)
    print()
    print(table)
    log(">> wrote %s and %s" % (os.path.relpath(os.path.join(OUT, "bench.md"), ROOT),
                                os.path.relpath(os.path.join(OUT, "bench.json"), ROOT)))
    if interrupted:
        sys.exit(130)


if __name__ == "__main__":
    main()
