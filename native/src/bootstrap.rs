//! The bootstrap extension (`envoy.bootstrap.dynamic_modules`, extension name
//! `gateway_tracing`): Envoy's process-lifecycle hooks on the main thread, so a stopping Envoy
//! sends what its exporters still hold instead of losing it.
//!
//! * `drain_started` (listeners draining: hot restart, `/drain_listeners`): every exporter sends
//!   what it holds now, partial batches included, instead of waiting for its timer.
//! * `shutdown` (SIGTERM, `/quitquitquit`): every exporter drains (sends everything, each batch
//!   once, no backoff), and Envoy's exit waits, with its dispatcher still running, until the
//!   answers are in or [`SHUTDOWN_GRACE`] has passed; what is still held then is counted in
//!   `spans_dropped_shutdown` when the filter config is destroyed.
//!
//! Without this extension in the bootstrap the filter works the same, but a SIGTERM loses what
//! is queued (as the wasm build does). `demo::build::native_config` adds it.

// The hooks are called by Envoy only, with the pointers the ABI promises (or null, which every
// hook checks); that contract is their safety contract, so they are not `unsafe fn`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use crate::ffi::{EnvoyBuffer, EnvoyHttpHeader};
use crate::guard::guard;
use crate::process::{self, Process};
use std::ffi::c_void;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long Envoy's exit may wait for the exporters to drain.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `envoy_dynamic_module_type_event_cb`: Envoy's completion callback.
type EventCb = Option<unsafe extern "C" fn(*mut c_void)>;

/// Envoy's exit, waiting for the drain.
struct Waiter {
    done: EventCb,
    context: SendPtr,
    deadline: Instant,
}

#[derive(Clone, Copy)]
struct SendPtr(*mut c_void);
// SAFETY: only used on the main thread (shutdown hook, scheduled tick, callout answers).
unsafe impl Send for SendPtr {}

static WAITER: Mutex<Option<Waiter>> = Mutex::new(None);

fn live_processes() -> Vec<Arc<Process>> {
    process::registry()
}

/// Main thread, after an export answer or a tick: lets Envoy's exit continue once every
/// exporter has drained, or the grace period is over.
pub fn check_shutdown() {
    let Ok(mut waiter) = WAITER.lock() else {
        return;
    };
    let Some(w) = waiter.as_ref() else {
        return;
    };
    let processes = live_processes();
    let held: usize = processes.iter().map(|p| p.held_spans()).sum();
    let drained = processes.iter().all(|p| p.is_drained());
    let late = Instant::now() >= w.deadline;
    if !(drained || late) {
        return;
    }
    if late && !drained {
        log::warn!(
            "shutdown: {held} spans not sent within {SHUTDOWN_GRACE:?}; they are counted in spans_dropped_shutdown"
        );
    } else {
        log::info!("shutdown: export queue drained");
    }
    if let Some(w) = waiter.take() {
        if let Some(cb) = w.done {
            // SAFETY: Envoy's completion callback with its own context, called once.
            unsafe { cb(w.context.0) };
        }
    }
}

// ------------------------------------------------------------------ hooks

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_new(
    envoy: *mut c_void,
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    // Nothing to configure or wait for: tell Envoy's init manager we are ready.
    // SAFETY: the config pointer Envoy passed to this hook.
    unsafe {
        crate::ffi::envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(
            envoy,
        )
    };
    // A non-null pointer says "accepted".
    Box::into_raw(Box::new(0u8)) as *const c_void
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_destroy(
    config: *const c_void,
) {
    if !config.is_null() {
        // SAFETY: the pointer `_config_new` returned, destroyed once.
        drop(unsafe { Box::from_raw(config as *mut u8) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_new(
    _config: *const c_void,
    _envoy: *mut c_void,
) -> *const c_void {
    Box::into_raw(Box::new(0u8)) as *const c_void
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_destroy(extension: *const c_void) {
    if !extension.is_null() {
        // SAFETY: the pointer `_new` returned, destroyed once.
        drop(unsafe { Box::from_raw(extension as *mut u8) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_drain_started(
    _envoy: *mut c_void,
    _extension: *const c_void,
) {
    guard("on_bootstrap_extension_drain_started", None, (), || {
        for p in live_processes() {
            p.flush_now();
        }
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_shutdown(
    _envoy: *mut c_void,
    _extension: *const c_void,
    done: EventCb,
    context: *mut c_void,
) {
    let waiting = guard("on_bootstrap_extension_shutdown", None, false, || {
        let processes = live_processes();
        let held: usize = processes.iter().map(|p| p.held_spans()).sum();
        if held > 0 {
            log::info!("shutdown: sending the {held} spans held before Envoy exits");
        }
        for p in &processes {
            p.drain();
        }
        if let Ok(mut w) = WAITER.lock() {
            *w = Some(Waiter {
                done,
                context: SendPtr(context),
                deadline: Instant::now() + SHUTDOWN_GRACE,
            });
        }
        true
    });
    if waiting {
        check_shutdown();
    } else if let Some(cb) = done {
        // SAFETY: Envoy's completion callback with its own context, called once.
        unsafe { cb(context) };
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_server_initialized(
    _envoy: *mut c_void,
    _extension: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_worker_thread_initialized(
    _envoy: *mut c_void,
    _extension: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_scheduled(
    _envoy: *mut c_void,
    _config: *const c_void,
    _event_id: u64,
) {
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_http_callout_done(
    _envoy: *mut c_void,
    _config: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_timer_fired(
    _envoy: *mut c_void,
    _config: *const c_void,
    _timer: *mut c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_file_changed(
    _envoy: *mut c_void,
    _config: *const c_void,
    _path: EnvoyBuffer,
    _events: u32,
) {
}

/// No admin handler is registered; answers 404 should Envoy ever call it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_admin_request(
    _envoy: *mut c_void,
    _config: *const c_void,
    _method: EnvoyBuffer,
    _path: EnvoyBuffer,
    _body: EnvoyBuffer,
) -> u32 {
    404
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_add_or_update(
    _envoy: *mut c_void,
    _config: *const c_void,
    _name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_removal(
    _envoy: *mut c_void,
    _config: *const c_void,
    _name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_add_or_update(
    _envoy: *mut c_void,
    _config: *const c_void,
    _name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_removal(
    _envoy: *mut c_void,
    _config: *const c_void,
    _name: EnvoyBuffer,
) {
}
