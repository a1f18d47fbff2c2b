//! `gateway_tracing.wasm`: the proxy-wasm glue over [`gateway_tracing_core`]. It owns the
//! root context ([`root`]: configuration, stats, export timer, export responses), the HTTP
//! context ([`http`]: one per request) and [`proxy_host`], the core's host traits
//! implemented over proxy-wasm host calls. This is the only crate that names `proxy_wasm`;
//! everything it decides is decided in the core.

mod abi;
mod http;
mod proxy_host;
mod root;
mod shared;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // The core logs through the `log` crate; Envoy's own `wasm` log level filters what shows.
    proxy_wasm::set_log_level(LogLevel::Trace);
    // A panic aborts the VM (panic = "abort"); say where at critical level first, so the
    // cause is in Envoy's log and not only "wasm trap: unreachable".
    std::panic::set_hook(Box::new(|info| {
        let _ = proxy_wasm::hostcalls::log(
            LogLevel::Critical,
            &format!("gateway-tracing panicked (the VM aborts): {info}"),
        );
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> { Box::new(root::Root::new(context_id)) });
}}
