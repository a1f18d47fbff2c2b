//! The root context of one VM: parses the plugin configuration (refusing a bad one with one
//! log line naming the field), defines stats, owns the exporter, runs the flush timer and
//! receives export responses.

use crate::http::Http;
use crate::proxy_host::{now_nanos, CallMetrics, ProxyExport, ProxyHost, ProxyStats};
use crate::shared::Shared;
use gateway_tracing_core::config;
use gateway_tracing_core::exporter::{Exporter, MAX_RESPONSE_BODY};
use gateway_tracing_core::host::ExportResponse;
use gateway_tracing_core::host::Host;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType};
use std::cell::RefCell;
use std::rc::Rc;

pub struct Root {
    shared: Option<Rc<Shared>>,
    /// `on_done` returned false: call `proxy_done` once the exporter has drained.
    draining: bool,
}

impl Root {
    pub fn new(_context_id: u32) -> Root {
        Root {
            shared: None,
            draining: false,
        }
    }
}

fn log_level_filter() -> log::LevelFilter {
    match hostcalls::get_log_level() {
        Ok(LogLevel::Trace) => log::LevelFilter::Trace,
        Ok(LogLevel::Debug) => log::LevelFilter::Debug,
        Ok(LogLevel::Info) => log::LevelFilter::Info,
        Ok(LogLevel::Warn) => log::LevelFilter::Warn,
        Ok(LogLevel::Error) | Ok(LogLevel::Critical) => log::LevelFilter::Error,
        Err(_) => log::LevelFilter::Info,
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(shared) = &self.shared else { return };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok());
        let retry_after = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, "retry-after")
            .ok()
            .flatten();
        let body = if body_size > 0 {
            hostcalls::get_buffer(
                BufferType::HttpCallResponseBody,
                0,
                body_size.min(MAX_RESPONSE_BODY),
            )
            .ok()
            .flatten()
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        let resp = ExportResponse {
            status,
            retry_after: retry_after.as_deref().map(str::as_bytes),
            body: &body,
        };
        if let Ok(mut exporter) = shared.exporter.try_borrow_mut() {
            exporter.on_response(token_id, &resp, &ProxyExport, &shared.stats, now_nanos());
            shared.stats.flush();
            if self.draining && exporter.is_drained() {
                self.draining = false;
                if let Err(s) = hostcalls::done() {
                    log::debug!("proxy_done failed: {s:?}");
                }
            }
        }
    }

    /// The plugin is being stopped (configuration update or shutdown): send the queued spans
    /// now instead of losing them with the timer, and keep the context until they are sent.
    fn on_done(&mut self) -> bool {
        let Some(shared) = &self.shared else {
            return true;
        };
        let Ok(mut exporter) = shared.exporter.try_borrow_mut() else {
            return true;
        };
        log::debug!(
            "on_done: plugin stopping with {} spans held",
            exporter.held_spans()
        );
        let drained = exporter.drain(&ProxyExport, &shared.stats, now_nanos());
        shared.stats.flush();
        if !drained {
            log::debug!(
                "stopping: waiting for {} export request(s)",
                exporter.in_flight()
            );
            self.draining = true;
        }
        drained
    }
}

/// The SDK drops the root context when Envoy deletes it (`proxy_on_delete`): at a config
/// update after the drain above finished, or when the VM goes away. Whatever is still held
/// then is lost: count it and say so once.
impl Drop for Root {
    fn drop(&mut self) {
        let Some(shared) = &self.shared else { return };
        if let Ok(mut exporter) = shared.exporter.try_borrow_mut() {
            log::debug!(
                "root context deleted with {} spans held",
                exporter.held_spans()
            );
            if exporter.abandon(&shared.stats) > 0 {
                shared.stats.flush();
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        // Format debug lines only when Envoy would print them.
        log::set_max_level(log_level_filter());
        let bytes = hostcalls::get_buffer(
            BufferType::PluginConfiguration,
            0,
            plugin_configuration_size,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        let config = match config::parse(&bytes, &env) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        let flush_interval = config.exporter.flush_interval;
        let mut exporter = Exporter::new(&config);
        let seed = ProxyHost
            .random_bytes()
            .iter()
            .take(8)
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        exporter.seed(seed);
        let exporter = RefCell::new(exporter);
        let calls = if config.call_metrics {
            CallMetrics::define(&config)
        } else {
            CallMetrics::default()
        };
        self.shared = Some(Rc::new(Shared {
            config,
            exporter,
            stats: ProxyStats::define(),
            calls,
        }));
        if let Err(s) = hostcalls::set_tick_period(flush_interval) {
            log::error!("could not start the export timer: {s:?}");
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        // Follow runtime changes of Envoy's `wasm` log level (`POST /logging?wasm=debug`).
        log::set_max_level(log_level_filter());
        let Some(shared) = &self.shared else { return };
        if let Ok(mut exporter) = shared.exporter.try_borrow_mut() {
            exporter.on_tick(&ProxyExport, &shared.stats, now_nanos());
        }
        shared.stats.flush();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
