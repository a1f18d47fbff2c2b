//! The proxy-wasm glue (wasm32 only): the root context (configuration, stats, export timer,
//! export responses) and the HTTP context (one per request), wired to the core through
//! [`proxy_host`]. This is the only module that names `proxy_wasm`.

mod http;
mod proxy_host;
mod root;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    // The core logs through the `log` crate; Envoy's own `wasm` log level filters what shows.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> { Box::new(root::Root::new(context_id)) });
}}
