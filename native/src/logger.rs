//! The `log` crate's logger for this module: every line goes to Envoy's log under its
//! `dynamic_modules` component (`--component-log-level dynamic_modules:debug`), formatted only
//! when Envoy would print it.

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
        // SAFETY: a plain query of Envoy's logger, any thread.
        unsafe { ffi::envoy_dynamic_module_callback_log_enabled(level(metadata.level())) }
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
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

/// Installs the logger (once per process; a second call is a no-op).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}
