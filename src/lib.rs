//! `gateway_tracing.wasm`: the proxy-wasm glue over [`gateway_tracing_core`]. It owns the
//! module's exports and context table ([`dispatch`]), the root context ([`root`]:
//! configuration, stats, export timer, export responses), the HTTP context ([`http`]: one per
//! request), [`proxy_host`] (the core's host traits) and [`abi`], the one place that calls the
//! host: every call returns a typed error, none can panic. Everything it decides is decided in
//! the core.

mod abi;
mod dispatch;
mod http;
mod proxy_host;
mod root;
mod shared;
