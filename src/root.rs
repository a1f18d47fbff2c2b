//! The root context of one VM: parses the plugin configuration (refusing a bad one with one
//! log line naming the field), defines stats, owns the exporter, runs the flush timer and
//! receives export responses.

use crate::http::Http;
use crate::proxy_host::{now_nanos, CallMetrics, ProxyExport, ProxyStats};
use crate::shared::Shared;
use gateway_tracing_core::config;
use gateway_tracing_core::exporter::Exporter;
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
        _body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(shared) = &self.shared else { return };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok());
        if let Ok(mut exporter) = shared.exporter.try_borrow_mut() {
            exporter.on_response(token_id, status, &ProxyExport, &shared.stats, now_nanos());
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
        let exporter = RefCell::new(Exporter::new(&config));
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
