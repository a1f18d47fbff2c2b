//! What the root context and the HTTP contexts of one VM share: the validated config, the
//! exporter, the counters and the call metrics. Owned by the root context (`root.rs`), read
//! by every request (`http.rs`).

use crate::proxy_host::{CallMetrics, ProxyStats};
use gateway_tracing_core::config::Config;
use gateway_tracing_core::exporter::Exporter;
use std::cell::RefCell;

/// State shared by the root context and the HTTP contexts of one VM.
pub struct Shared {
    pub config: Config,
    pub exporter: RefCell<Exporter>,
    pub stats: ProxyStats,
    /// Per-target call metrics; empty unless `call_metrics` is on.
    pub calls: CallMetrics,
}
