//! The `log` crate's logger for this module: every line goes to Envoy's log under its
//! `dynamic_modules` component (`--component-log-level dynamic_modules:debug`), formatted only
//! when Envoy would print it.
//!
//! The `log` crate's max level mirrors Envoy's level for that component, read at program init
//! and again at every export tick ([`follow_envoy_level`]), as the wasm build follows its `wasm`
//! level: a `log::debug!` on the request path is then a static compare, not a call into Envoy
//! (two per request before). A runtime change (`POST /logging?dynamic_modules=debug`) takes
//! effect within one flush interval.

use crate::ffi::{self, ModuleBuffer};

struct EnvoyLogger;

fn level(l: log::Level) -> u32 {
    match l {
        log::Level::Error => ffi::LOG_ERROR,
        log::Level::Warn => ffi::LOG_WARN,
        log::Level::Info => ffi::LOG_INFO,
        log::Level::Debug => ffi::LOG_DEBUG,
        log::Level::Trace => ffi::LOG_TRACE,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        // The max level may lag Envoy's by one tick: ask Envoy before formatting.
        if !self.enabled(record.metadata()) || !envoy_enabled(record.level()) {
            return;
        }
        let line = format!("gateway_tracing: {}", record.args());
        // SAFETY: `line` outlives the call; Envoy copies it.
        unsafe {
            ffi::envoy_dynamic_module_callback_log(
                level(record.level()),
                ModuleBuffer::of(line.as_bytes()),
            )
        };
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

fn envoy_enabled(l: log::Level) -> bool {
    // SAFETY: a plain query of Envoy's logger, any thread.
    unsafe { ffi::envoy_dynamic_module_callback_log_enabled(level(l)) }
}

/// Sets the `log` crate's max level to the most verbose level Envoy prints for this module
/// (`Off` when it prints none of them).
pub fn follow_envoy_level() {
    let most_verbose = [
        log::Level::Trace,
        log::Level::Debug,
        log::Level::Info,
        log::Level::Warn,
        log::Level::Error,
    ]
    .into_iter()
    .find(|l| envoy_enabled(*l));
    log::set_max_level(most_verbose.map_or(log::LevelFilter::Off, |l| l.to_level_filter()));
}

/// Installs the logger (once per process; a second call is a no-op).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        follow_envoy_level();
    }
}
