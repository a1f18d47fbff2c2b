#!/usr/bin/env python3
"""`make bench-profile`: where a configuration's proxy CPU goes, per request (issue 7's "what the
remaining cost is made of").

`make bench` says how much a configuration costs; this says what for. Same topology and
configurations as bench.py (imported from it). For each configuration: a fresh proxy Envoy,
warm-up, then `perf record` (software cpu-clock, frame-pointer call graphs) on the proxy while
`wrk -c32` loads it; the proxy's CPU per request comes from /proc as in bench.py, and every
sample is put in one bucket:

- **wasm code**: the filter's own code (V8's compiled wasm, `perf` shows it as JIT memory; for
  the native module's rows, `libgateway_tracing.so`'s code);
- **host calls**: Envoy code called *from* wasm (a proxy-wasm host call, with its callback into
  the VM's allocator), split by the host-function trampoline the call went through;
- **native callbacks** (native module rows): Envoy code called from the module (the ABI's
  header, attribute, stats and callout callbacks);
- **Envoy**: everything else in user space (proxying, the HTTP codec, V8 entry into the VM);
- **kernel**.

Bucket share x CPU per request = microseconds per request, comparable across configurations of
one run (sampling shares are stable where throughput is noisy). Trampolines are per function
signature, not per function, and Envoy's binary is stripped: they are named by calibration, from
the empty filter's probes (`empty_props8` makes 8 `get_property` calls per request, `empty_maps2`
2 `get_header_map_pairs`, `empty_wasm` 1 header write), so those rows must be in the run.

Environment: PROFILE_CONFIGS (default
empty_wasm,empty_props8,empty_maps2,empty_expr1,gt_always_off,gt_always_on), PROFILE_SECONDS
(default 8), BENCH_OUT (default target/bench), plus bench.py's (BENCH_IDLE too).
"""

import collections
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the topology, configurations and process helpers)

SECONDS = bench.env_int("PROFILE_SECONDS", 8)
DEFAULT = ("empty_wasm,empty_props8,empty_maps2,empty_expr1,gt_always_off,gt_always_on,"
           "nm_always_off,nm_always_on")
CALIBRATION = [
    # (configuration, label of its dominant host-call trampoline, calls per request)
    ("empty_props8", "get_property", 8),
    ("empty_maps2", "get_header_map_pairs", 2),
    ("empty_wasm", "header by name (5-arg: get/add/replace value)", 1),
    ("empty_expr1", "call_foreign_function (CEL expr_evaluate)", 1),
]


def is_jit(dso):
    return "perf-" in dso or "[JIT]" in dso


def is_module(dso):
    return "libgateway_tracing" in dso


def samples(data):
    """Yields each sample's frames, leaf first, as (ip, dso)."""
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,dso"],
                         capture_output=True, text=True, check=True).stdout
    for block in out.split("\n\n"):
        frames = []
        for line in block.strip().splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2:
                frames.append((parts[0], parts[1]))
        if frames:
            yield frames


def classify(data):
    """Bucket shares of one profile: {bucket: fraction}, host calls keyed by trampoline."""
    counts = collections.Counter()
    total = 0
    for frames in samples(data):
        total += 1
        module = [i for i, (_, dso) in enumerate(frames) if is_module(dso)]
        jit = [i for i, (_, dso) in enumerate(frames) if is_jit(dso)]
        if module and module[0] == 0:
            counts["wasm code"] += 1
        elif module:
            counts[("host", "native")] += 1
        elif jit and jit[0] == 0:
            counts["wasm code"] += 1
        elif jit:
            j = jit[0]
            # frames[j-1] is V8's generic wasm-to-C++ entry; frames[j-2] the per-signature
            # trampoline into proxy-wasm's host function. Straight from wasm into libc is V8's
            # bulk-memory (memory.copy/fill) call; a sample in the entry itself is the switch.
            if "libc" in frames[j - 1][1]:
                counts[("host", "libc")] += 1
            elif j == 1:
                counts[("host", "entry")] += 1
            else:
                counts[("host", frames[j - 2][0])] += 1
        elif "kernel" in frames[0][1]:
            counts["kernel"] += 1
        else:
            counts["Envoy"] += 1
    return {k: v / total for k, v in counts.items()} if total else {}


def profile(name, settings):
    proxy = bench.start_envoy("proxy-" + name, bench.proxy_config(settings), 0,
                              bench.PROXY_ADMIN, bench.PROXY_PORT)
    data = os.path.join(bench.OUT, "profile-%s.data" % name)
    try:
        bench.wrk(bench.CONNECTIONS, bench.WARMUP, False)
        perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000",
                                 "--call-graph=fp", "-p", str(proxy.pid), "-o", data],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        cpu0 = bench.proc_cpu_seconds(proxy.pid)
        tput = bench.wrk(bench.CONNECTIONS, SECONDS, False)
        cpu1 = bench.proc_cpu_seconds(proxy.pid)
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=60)
    finally:
        bench.stop(proxy)
    us_per_req = (cpu1 - cpu0) * 1e6 / max(tput["requests"], 1)
    return us_per_req, classify(data)


def main():
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bench.on_signal)
    os.makedirs(os.path.join(bench.OUT, "logs"), exist_ok=True)
    with open(bench.WRK_SCRIPT, "w") as f:
        f.write(bench.WRK_LUA)
    wanted = [c.strip() for c in (os.environ.get("PROFILE_CONFIGS") or DEFAULT).split(",") if c.strip()]
    configs = [c for c in bench.CONFIGS if c[0] in wanted]
    for tool in ("envoy", "wrk", "perf"):
        if not bench.shutil.which(tool):
            sys.exit("missing %s on PATH" % tool)
    results = {}
    idle_hold = bench.hold_idle()
    try:
        bench.wait_port_free(bench.SINK_PORT)
        bench.start("sink", bench.pin(1) + [bench.SINK_BIN, "127.0.0.1:%d" % bench.SINK_PORT],
                    os.path.join(bench.OUT, "logs", "sink.log"))
        bench.start_envoy("upstream", bench.upstream_config(), 1, bench.UPSTREAM_ADMIN, bench.UPSTREAM_PORT)
        for name, label, settings in configs:
            us, shares = profile(name, settings)
            results[name] = (label, us, shares)
            bench.log("-- %-16s %6.1f us/req CPU, wasm code %4.1f%%, host calls %4.1f%%"
                      % (name, us, 100 * shares.get("wasm code", 0),
                         100 * sum(v for k, v in shares.items() if isinstance(k, tuple))))
    except KeyboardInterrupt:
        bench.log("!! interrupted")
    finally:
        bench.stop_all()
        if idle_hold:
            idle_hold.close()

    # Name the trampolines by calibration: each probe's dominant host-call bucket.
    names = {("host", "libc"): "other", ("host", "entry"): "other", ("host", "native"): "native callbacks"}
    for probe, call, _ in CALIBRATION:
        if probe in results:
            host = {k: v for k, v in results[probe][2].items() if isinstance(k, tuple)}
            if host:
                names.setdefault(max(host, key=host.get), call)
    order = [c[1] for c in CALIBRATION] + ["native callbacks"]
    kinds = sorted(set(names.values()) - {"other"}, key=order.index)
    header = ["config", "CPU µs/req", "filter code (wasm / module)", "host calls"] + kinds + ["other host calls", "Envoy", "kernel"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, (label, us, shares) in results.items():
        host = {k: v for k, v in shares.items() if isinstance(k, tuple)}
        by_kind = collections.Counter()
        for k, v in host.items():
            by_kind[names.get(k, "other")] += v
        row = [label, "%.1f" % us, "%.1f" % (us * shares.get("wasm code", 0)), "%.1f" % (us * sum(host.values()))]
        row += ["%.1f" % (us * by_kind[k]) for k in kinds]
        row += ["%.1f" % (us * by_kind["other"]), "%.1f" % (us * shares.get("Envoy", 0)),
                "%.1f" % (us * shares.get("kernel", 0))]
        lines.append("| " + " | ".join(row) + " |")
    per_call = []
    for probe, call, n in CALIBRATION:
        if probe in results and probe != "empty_wasm" and "empty_wasm" in results:
            us = results[probe][1]
            host = {k: v for k, v in results[probe][2].items() if isinstance(k, tuple)}
            base = results["empty_wasm"]
            base_host = {k: v for k, v in base[2].items() if isinstance(k, tuple)}
            extra = us * sum(host.values()) - base[1] * sum(base_host.values())
            per_call.append("%s ≈ %.1f µs" % (call, extra / n))
    table = "\n".join(lines)
    notes = ("Microseconds of proxy CPU per request (share of `perf` samples x CPU per request). "
             "Host calls are Envoy code run from inside the filter, including the callback into "
             "the VM that hands over returned data; \"other host calls\": the clock, "
             "`dispatch_http_call`, timers, V8's wasm-to-C++ switch and its bulk-memory copies. "
             "Per call, from the probes over the empty "
             "filter: " + ("; ".join(per_call) if per_call else "(probes not in this run)") + ".")
    print("\n" + table + "\n\n" + notes)
    with open(os.path.join(bench.OUT, "profile.md"), "w") as f:
        f.write(table + "\n\n" + notes + "\n")
    with open(os.path.join(bench.OUT, "profile.json"), "w") as f:
        json.dump({n: {"us_per_req": us, "shares": {str(k): v for k, v in s.items()}}
                   for n, (_, us, s) in results.items()}, f, indent=1)
    bench.log(">> wrote %s" % os.path.relpath(os.path.join(bench.OUT, "profile.md"), bench.ROOT))


if __name__ == "__main__":
    main()
