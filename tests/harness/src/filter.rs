//! The module under test: compiled once ([`Compiled`]), started as Envoy starts a VM
//! ([`Filter`]), each export called as Envoy calls it; a trap is a [`Trap`].

use crate::host::{pairs, Host, HttpCall, Pairs, Stream};
use crate::imports::define_imports;
use std::path::{Path, PathBuf};
use wasmi::{Caller, Engine, Func, Instance, Linker, Module, Store, Val};

/// The module trapped (or could not be called): the message wasmi gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap(pub String);

impl std::fmt::Display for Trap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wasm trap: {}", self.0)
    }
}

impl std::error::Error for Trap {}

/// Where the built module is: `$GATEWAY_TRACING_WASM`, else the workspace's
/// `target/gateway_tracing.wasm` (what `make build` writes).
pub fn wasm_path() -> PathBuf {
    std::env::var_os("GATEWAY_TRACING_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/gateway_tracing.wasm")
        })
}

/// A compiled module with the host's imports linked: instantiate it as often as needed.
pub struct Compiled {
    engine: Engine,
    module: Module,
    linker: Linker<Host>,
}

impl Compiled {
    /// Compiles the built module ([`wasm_path`]).
    pub fn load() -> Result<Compiled, Trap> {
        let path = wasm_path();
        let bytes = std::fs::read(&path).map_err(|e| {
            Trap(format!(
                "cannot read {} ({e}): run `make build` first",
                path.display()
            ))
        })?;
        Compiled::from_bytes(&bytes)
    }

    pub fn from_bytes(wasm: &[u8]) -> Result<Compiled, Trap> {
        let t = |e: wasmi::Error| Trap(e.to_string());
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).map_err(t)?;
        let mut linker = Linker::<Host>::new(&engine);
        define_imports(&mut linker).map_err(t)?;
        // Any import the module has that this host does not implement traps when called.
        for import in module.imports() {
            if let wasmi::ExternType::Func(ty) = import.ty() {
                let what = format!(
                    "{}::{} is not implemented by the harness",
                    import.module(),
                    import.name()
                );
                let _ = linker.func_new(
                    import.module(),
                    import.name(),
                    ty.clone(),
                    move |_c: Caller<'_, Host>, _p: &[Val], _r: &mut [Val]| {
                        Err(wasmi::Error::new(what.clone()))
                    },
                );
            }
        }
        Ok(Compiled {
            engine,
            module,
            linker,
        })
    }
}

/// The root context id the harness creates.
pub const ROOT: u32 = 1;

/// The loaded module with its scripted host.
pub struct Filter {
    store: Store<Host>,
    instance: Instance,
    next_context: u32,
    trapped: Option<Trap>,
}

impl Filter {
    /// Loads the built module ([`wasm_path`]) and starts it as Envoy does: `_initialize`,
    /// the root context, `proxy_on_vm_start`.
    pub fn load() -> Result<Filter, Trap> {
        Filter::start(&Compiled::load()?, Host::default())
    }

    /// Loads a module from bytes with a prepared host.
    pub fn from_bytes(wasm: &[u8], host: Host) -> Result<Filter, Trap> {
        Filter::start(&Compiled::from_bytes(wasm)?, host)
    }

    /// A fresh VM of a compiled module (cheap: what a fuzz loop does per input).
    pub fn start(compiled: &Compiled, mut host: Host) -> Result<Filter, Trap> {
        let t = |e: wasmi::Error| Trap(e.to_string());
        if host.now_ns == 0 {
            // 2026-01-01T00:00:00Z: a plausible wall clock.
            host.now_ns = 1_767_225_600_000_000_000;
        }
        if host.log_level == 0 {
            host.log_level = 1; // debug
        }
        let mut store = Store::new(&compiled.engine, host);
        let instance = compiled
            .linker
            .instantiate(&mut store, &compiled.module)
            .and_then(|pre| pre.start(&mut store))
            .map_err(t)?;
        let mut f = Filter {
            store,
            instance,
            next_context: ROOT + 1,
            trapped: None,
        };
        f.call("_initialize", ROOT, &[])?;
        f.call(
            "proxy_on_context_create",
            ROOT,
            &[Val::I32(ROOT as i32), Val::I32(0)],
        )?;
        f.call(
            "proxy_on_vm_start",
            ROOT,
            &[Val::I32(ROOT as i32), Val::I32(0)],
        )?;
        Ok(f)
    }

    pub fn host(&self) -> &Host {
        self.store.data()
    }

    pub fn host_mut(&mut self) -> &mut Host {
        self.store.data_mut()
    }

    /// The trap that killed the module, if one did.
    pub fn trapped(&self) -> Option<&Trap> {
        self.trapped.as_ref()
    }

    /// Calls an export in `context`; a missing export is what Envoy does for it (nothing,
    /// `Continue`/`true`): `Ok(None)`.
    fn call(&mut self, export: &str, context: u32, args: &[Val]) -> Result<Option<i64>, Trap> {
        if let Some(t) = &self.trapped {
            return Err(t.clone());
        }
        let Some(func): Option<Func> = self.instance.get_func(&self.store, export) else {
            return Ok(None);
        };
        self.store.data_mut().current = context;
        let n = func.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); n];
        match func.call(&mut self.store, args, &mut results) {
            Ok(()) => Ok(results.first().map(|v| match v {
                Val::I32(x) => i64::from(*x),
                Val::I64(x) => *x,
                _ => 0,
            })),
            Err(e) => {
                // The module's panic hook logs why at critical level before it aborts.
                let why = self
                    .host()
                    .logs
                    .iter()
                    .rev()
                    .find(|(level, _)| *level == 5)
                    .map(|(_, l)| format!(" (module log: {l})"))
                    .unwrap_or_default();
                let trap = Trap(format!("{export}: {e}{why}"));
                self.trapped = Some(trap.clone());
                Err(trap)
            }
        }
    }

    /// `proxy_on_configure` with these plugin configuration bytes; `Ok(false)`: refused.
    pub fn configure(&mut self, config: &[u8]) -> Result<bool, Trap> {
        self.host_mut().plugin_config = config.to_vec();
        let n = config.len() as i32;
        Ok(self
            .call(
                "proxy_on_configure",
                ROOT,
                &[Val::I32(ROOT as i32), Val::I32(n)],
            )?
            .is_none_or(|r| r != 0))
    }

    /// A new HTTP stream under the root: `proxy_on_context_create`; returns its id.
    pub fn new_stream(&mut self) -> Result<u32, Trap> {
        let id = self.next_context;
        self.next_context += 1;
        self.host_mut().streams.insert(id, Stream::default());
        self.call(
            "proxy_on_context_create",
            id,
            &[Val::I32(id as i32), Val::I32(ROOT as i32)],
        )?;
        Ok(id)
    }

    /// `proxy_on_request_headers` with these headers (the stream's request map from now on).
    pub fn request_headers(
        &mut self,
        id: u32,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<(), Trap> {
        let n = headers.len() as i32;
        self.host_mut().streams.entry(id).or_default().request = headers;
        self.call(
            "proxy_on_request_headers",
            id,
            &[
                Val::I32(id as i32),
                Val::I32(n),
                Val::I32(end_of_stream as i32),
            ],
        )?;
        Ok(())
    }

    /// `proxy_on_response_headers` with these headers.
    pub fn response_headers(
        &mut self,
        id: u32,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<(), Trap> {
        let n = headers.len() as i32;
        self.host_mut().streams.entry(id).or_default().response = headers;
        self.call(
            "proxy_on_response_headers",
            id,
            &[
                Val::I32(id as i32),
                Val::I32(n),
                Val::I32(end_of_stream as i32),
            ],
        )?;
        Ok(())
    }

    pub fn response_body(&mut self, id: u32, size: u32, end_of_stream: bool) -> Result<(), Trap> {
        self.call(
            "proxy_on_response_body",
            id,
            &[
                Val::I32(id as i32),
                Val::I32(size as i32),
                Val::I32(end_of_stream as i32),
            ],
        )?;
        Ok(())
    }

    pub fn response_trailers(&mut self, id: u32) -> Result<(), Trap> {
        self.call(
            "proxy_on_response_trailers",
            id,
            &[Val::I32(id as i32), Val::I32(0)],
        )?;
        Ok(())
    }

    /// `proxy_on_log` (Envoy's access-log phase: the request is over).
    pub fn log(&mut self, id: u32) -> Result<(), Trap> {
        self.call("proxy_on_log", id, &[Val::I32(id as i32)])?;
        Ok(())
    }

    /// `proxy_on_done` for a stream.
    pub fn done(&mut self, id: u32) -> Result<bool, Trap> {
        Ok(self
            .call("proxy_on_done", id, &[Val::I32(id as i32)])?
            .is_none_or(|r| r != 0))
    }

    /// `proxy_on_delete` for a stream (or the root).
    pub fn delete(&mut self, id: u32) -> Result<(), Trap> {
        self.call("proxy_on_delete", id, &[Val::I32(id as i32)])?;
        self.host_mut().streams.remove(&id);
        Ok(())
    }

    /// A whole request as Envoy drives one: create, request headers, response headers (end
    /// of stream), log, done, delete. Returns the stream id.
    pub fn request(&mut self, request: Pairs, response: Pairs) -> Result<u32, Trap> {
        let id = self.new_stream()?;
        self.request_headers(id, request, true)?;
        self.response_headers(id, response, true)?;
        self.log(id)?;
        self.done(id)?;
        self.delete(id)?;
        Ok(id)
    }

    /// `proxy_on_tick` on the root, after moving the clock by `advance_ms`.
    pub fn tick(&mut self, advance_ms: u64) -> Result<(), Trap> {
        self.advance(advance_ms);
        self.call("proxy_on_tick", ROOT, &[Val::I32(ROOT as i32)])?;
        Ok(())
    }

    pub fn advance(&mut self, ms: u64) {
        let h = self.host_mut();
        h.now_ns = h.now_ns.saturating_add(ms.saturating_mul(1_000_000));
    }

    /// The HTTP calls made so far, taken (the next call sees only newer ones).
    pub fn take_calls(&mut self) -> Vec<HttpCall> {
        std::mem::take(&mut self.host_mut().calls)
    }

    /// Delivers an answer to an HTTP call: `proxy_on_http_call_response` with these headers
    /// (any bytes; `:status` included by the caller, or not) and body.
    pub fn respond(&mut self, token: u32, headers: Pairs, body: &[u8]) -> Result<(), Trap> {
        self.respond_with_trailers(token, headers, body, Vec::new())
    }

    /// Delivers an answer with trailers (a gRPC answer: `grpc-status` in the trailers).
    pub fn respond_with_trailers(
        &mut self,
        token: u32,
        headers: Pairs,
        body: &[u8],
        trailers: Pairs,
    ) -> Result<(), Trap> {
        let n = headers.len() as i32;
        let t = trailers.len() as i32;
        let h = self.host_mut();
        h.call_response_headers = headers;
        h.call_response_body = body.to_vec();
        h.call_response_trailers = trailers;
        self.call(
            "proxy_on_http_call_response",
            ROOT,
            &[
                Val::I32(ROOT as i32),
                Val::I32(token as i32),
                Val::I32(n),
                Val::I32(body.len() as i32),
                Val::I32(t),
            ],
        )?;
        Ok(())
    }

    /// Answers an HTTP call with a status, extra headers and a body.
    pub fn respond_status(
        &mut self,
        token: u32,
        status: &[u8],
        extra: Pairs,
        body: &[u8],
    ) -> Result<(), Trap> {
        let mut headers = vec![(b":status".to_vec(), status.to_vec())];
        headers.extend(extra);
        self.respond(token, headers, body)
    }

    /// The plugin is stopping: `proxy_on_done` on the root; `Ok(true)`: done at once,
    /// `Ok(false)`: it calls `proxy_done` later (see [`Host::done_calls`]).
    pub fn drain(&mut self) -> Result<bool, Trap> {
        self.done(ROOT)
    }
}

/// A small valid plugin configuration: gateway mode, one collector cluster, 500 ms flushes,
/// fast retries.
pub const CONFIG: &str = r#"{
  "service_name": "harness-gateway",
  "exporter": {
    "cluster": "otel_collector",
    "authority": "otel-collector",
    "flush_interval_ms": 500,
    "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 400, "max_elapsed_ms": 60000}
  }
}"#;

/// A sampled incoming `traceparent` (W3C's example trace id).
pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
pub const TRACE_ID_HEX: &str = "0af7651916cd43dd8448eb211c80319c";

/// A GET through the gateway to `path`, with the sampled [`TRACEPARENT`].
pub fn get(path: &str) -> Pairs {
    pairs(&[
        (":method", "GET"),
        (":path", path),
        (":authority", "shop.example"),
        (":scheme", "http"),
        ("traceparent", TRACEPARENT),
    ])
}

/// Response headers with a status.
pub fn status_headers(status: &str) -> Pairs {
    pairs(&[(":status", status)])
}

/// The exporter's accounting from the filter's own stats: (created, exported, dropped by any
/// reason, held).
pub fn accounting(h: &Host) -> (i64, i64, i64, i64) {
    let dropped = h
        .metrics
        .iter()
        .filter(|m| m.name.starts_with("gateway_tracing.spans_dropped_"))
        .map(|m| m.value)
        .sum();
    (
        h.metric("spans_created"),
        h.metric("spans_exported"),
        dropped,
        h.metric("export_queue_spans"),
    )
}

/// Why the span accounting identity (`created = exported + dropped + held`) does not hold,
/// or `None` when it does.
pub fn unaccounted(h: &Host) -> Option<String> {
    let (created, exported, dropped, held) = accounting(h);
    (created != exported + dropped + held).then(|| {
        format!("created {created} != exported {exported} + dropped {dropped} + held {held}")
    })
}

impl Filter {
    /// Ticks the root up to `ticks` times, `step_ms` apart (`None`: the tick period the filter
    /// asked for, 500 ms if it asked for none), and returns the HTTP calls made by the first
    /// tick that made any (none if no tick did).
    pub fn tick_until_calls(
        &mut self,
        step_ms: Option<u64>,
        ticks: usize,
    ) -> Result<Vec<HttpCall>, Trap> {
        for _ in 0..ticks {
            let step = step_ms.unwrap_or_else(|| self.host().tick_period_ms.unwrap_or(500).into());
            self.tick(step)?;
            let calls = self.take_calls();
            if !calls.is_empty() {
                return Ok(calls);
            }
        }
        Ok(Vec::new())
    }

    /// Loads the built module and configures it with [`CONFIG`], the upstream cluster
    /// `products` and a 200 response code as Envoy's attributes.
    pub fn configured() -> Result<Filter, Trap> {
        let mut f = Filter::load()?;
        f.set_upstream("products", 200);
        if !f.configure(CONFIG.as_bytes())? {
            return Err(Trap(format!("CONFIG refused: {:?}", f.host().logs)));
        }
        Ok(f)
    }

    /// Envoy's attributes for the next requests: the routed cluster, its address and the
    /// response code.
    pub fn set_upstream(&mut self, cluster: &str, code: u64) {
        let p = &mut self.host_mut().properties;
        p.insert("xds.cluster_name".into(), cluster.as_bytes().to_vec());
        p.insert("response.code".into(), code.to_le_bytes().to_vec());
        p.insert("upstream.address".into(), b"127.0.0.1:18082".to_vec());
    }
}
