//! The root context of one VM: parses the plugin configuration (refusing a bad one with one
//! log line naming the field), defines stats, owns the exporter, runs the flush timer and
//! receives export responses. Every host call goes through [`abi`]; the export response's
//! headers are read as bytes (a `retry-after: \xff` is no hint, never a panic), and so are its
//! gRPC status fields (from the trailers, or the headers of a Trailers-Only answer).

use crate::abi;
use crate::proxy_host::{now_nanos, CallMetrics, ProxyExport, ProxyHost, ProxyStats};
use crate::shared::Shared;
use gateway_tracing_core::config;
use gateway_tracing_core::exporter::{Exporter, MAX_RESPONSE_BODY};
use gateway_tracing_core::host::{
    ExportResponse, GrpcFields, Host, GRPC_MESSAGE, GRPC_STATUS, GRPC_STATUS_DETAILS,
};
use std::cell::RefCell;
use std::rc::Rc;

/// An export answer read from the host and owned, so it can wait when the exporter (or the
/// root context itself) is busy.
pub struct Answer {
    token: u32,
    status: Option<u16>,
    retry_after: Option<Vec<u8>>,
    body: Vec<u8>,
    /// `grpc-status`, `grpc-message`, `grpc-status-details-bin` (OTLP/gRPC).
    grpc: [Option<Vec<u8>>; 3],
}

pub struct Root {
    shared: Option<Rc<Shared>>,
    /// `on_done` returned false: call `proxy_done` once the exporter has drained.
    draining: bool,
    /// Export answers that came while the exporter was borrowed (only a host re-entering the
    /// module could cause it): handed over at the next callback, never dropped (a dropped
    /// answer would hold its in-flight slot forever).
    waiting: Vec<Answer>,
}

impl Root {
    pub fn new(_context_id: u32) -> Root {
        Root {
            shared: None,
            draining: false,
            waiting: Vec::new(),
        }
    }

    /// What this root's HTTP contexts share (`None` until configured).
    pub fn shared(&self) -> Option<Rc<Shared>> {
        self.shared.clone()
    }

    /// Answers read while this root was busy (`dispatch.rs`), to be handed over with the next.
    pub fn adopt(&mut self, answers: Vec<Answer>) {
        if self.shared.is_some() {
            self.waiting.extend(answers);
        }
    }

    /// Reads one export answer: `:status` and `retry-after` as bytes, the body bounded. Only
    /// valid inside `proxy_on_http_call_response` (the host's buffers live that long).
    pub fn read_answer(token: u32, body_size: usize, num_trailers: usize) -> Answer {
        let field = |map: u32, name: &str| {
            abi::header_value(map, name).unwrap_or_else(|e| {
                log::debug!("export response field {name} unreadable ({e})");
                None
            })
        };
        let header = |name: &str| field(abi::HTTP_CALL_RESPONSE_HEADERS, name);
        // gRPC: the status is in the trailers, or in the headers of a Trailers-Only answer.
        let grpc_map = if num_trailers > 0 {
            abi::HTTP_CALL_RESPONSE_TRAILERS
        } else {
            abi::HTTP_CALL_RESPONSE_HEADERS
        };
        let grpc_status = field(grpc_map, GRPC_STATUS);
        let failed = grpc_status.as_deref().is_some_and(|s| s != b"0");
        let grpc_detail = |name: &str| failed.then(|| field(grpc_map, name)).flatten();
        let grpc = [
            grpc_status,
            grpc_detail(GRPC_MESSAGE),
            grpc_detail(GRPC_STATUS_DETAILS),
        ];
        let status = header(":status").and_then(|s| parse_status(&s));
        let retry_after = header("retry-after");
        let body = if body_size > 0 {
            abi::buffer(
                abi::HTTP_CALL_RESPONSE_BODY,
                0,
                body_size.min(MAX_RESPONSE_BODY),
            )
            .unwrap_or_else(|e| {
                log::debug!("export response body unreadable ({e})");
                None
            })
            .unwrap_or_default()
        } else {
            Vec::new()
        };
        Answer {
            token,
            status,
            retry_after,
            body,
            grpc,
        }
    }

    /// Hands the waiting answers to the exporter; `false` when it is busy (they keep waiting).
    fn deliver(&mut self) -> bool {
        let Some(shared) = &self.shared else {
            self.waiting.clear();
            return true;
        };
        let Ok(mut exporter) = shared.exporter.try_borrow_mut() else {
            return false;
        };
        for a in self.waiting.drain(..) {
            let resp = ExportResponse {
                status: a.status,
                retry_after: a.retry_after.as_deref(),
                body: &a.body,
                grpc: GrpcFields {
                    status: a.grpc[0].as_deref(),
                    message: a.grpc[1].as_deref(),
                    details: a.grpc[2].as_deref(),
                },
            };
            exporter.on_response(a.token, &resp, &ProxyExport, &shared.stats, now_nanos());
        }
        shared.stats.flush();
        if self.draining && exporter.is_drained() {
            self.draining = false;
            if let Err(e) = abi::done() {
                log::debug!("proxy_done failed: {e}");
            }
        }
        true
    }

    pub fn on_http_call_response(
        &mut self,
        token: u32,
        _num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    ) {
        if self.shared.is_none() {
            return;
        }
        self.waiting
            .push(Self::read_answer(token, body_size, num_trailers));
        if !self.deliver() {
            log::debug!("export answer {token} waits: the exporter is busy");
        }
    }

    /// The plugin is being stopped (configuration update or shutdown): send the queued spans
    /// now instead of losing them with the timer, and keep the context until they are sent.
    pub fn on_done(&mut self) -> bool {
        self.deliver();
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

    pub fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        // Format debug lines only when Envoy would print them.
        log::set_max_level(log_level_filter());
        let bytes = abi::buffer(abi::PLUGIN_CONFIGURATION, 0, plugin_configuration_size)
            .unwrap_or_else(|e| {
                log::warn!("plugin configuration unreadable ({e}); taken as empty");
                None
            })
            .unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        let config = match config::parse(&bytes, &env) {
            Ok(c) => c,
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        // Configured again (not what Envoy does today: an update gets a new root context): the
        // previous exporter's spans are counted as shutdown drops, never lost silently.
        self.deliver();
        if let Some(old) = self.shared.take() {
            if let Ok(mut exporter) = old.exporter.try_borrow_mut() {
                if exporter.abandon(&old.stats) > 0 {
                    old.stats.flush();
                }
            }
        }
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
        if let Err(e) = abi::set_tick_period(flush_interval) {
            log::error!("could not start the export timer: {e}");
            return false;
        }
        true
    }

    pub fn on_tick(&mut self) {
        // Follow runtime changes of Envoy's `wasm` log level (`POST /logging?wasm=debug`).
        log::set_max_level(log_level_filter());
        self.deliver();
        let Some(shared) = &self.shared else { return };
        if let Ok(mut exporter) = shared.exporter.try_borrow_mut() {
            exporter.on_tick(&ProxyExport, &shared.stats, now_nanos());
            // A stopping plugin whose retries (or drain timeout) ended on this tick.
            if self.draining && exporter.is_drained() {
                self.draining = false;
                if let Err(e) = abi::done() {
                    log::debug!("proxy_done failed: {e}");
                }
            }
        }
        shared.stats.flush();
    }
}

/// An HTTP status from the `:status` bytes; bytes that are not a number (or not UTF-8) give
/// none, which the exporter treats as a failure without a status (retried).
fn parse_status(bytes: &[u8]) -> Option<u16> {
    std::str::from_utf8(bytes).ok()?.trim().parse::<u16>().ok()
}

fn log_level_filter() -> log::LevelFilter {
    match abi::log_level() {
        Ok(abi::LOG_TRACE) => log::LevelFilter::Trace,
        Ok(abi::LOG_DEBUG) => log::LevelFilter::Debug,
        Ok(abi::LOG_INFO) => log::LevelFilter::Info,
        Ok(abi::LOG_WARN) => log::LevelFilter::Warn,
        Ok(abi::LOG_ERROR) => log::LevelFilter::Error,
        Ok(abi::LOG_CRITICAL) => log::LevelFilter::Error,
        // A level this crate does not know, or a refused call: the default.
        Ok(_) | Err(_) => log::LevelFilter::Info,
    }
}

/// The root context is dropped when Envoy deletes it (`proxy_on_delete`): at a config update
/// after the drain above finished, or when the VM goes away. Whatever is still held then is
/// lost: count it and say so once.
impl Drop for Root {
    fn drop(&mut self) {
        self.deliver();
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
