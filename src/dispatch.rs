//! The module's proxy-wasm exports (ABI 0.2.1): VM start, the context table, and each
//! callback routed to its root ([`Root`]) or HTTP ([`Http`]) context; plus the allocator the
//! host fills buffers through, the logger and the panic hook.
//!
//! Why not the SDK's dispatcher: it can only learn an HTTP call's token from its own
//! `hostcalls::dispatch_http_call` (which panics on statuses it does not list), and it panics
//! on an unknown token, an unknown context id, or a refused `set_effective_context`. Here an
//! unknown id or token is ignored, and no export can panic: a panic aborts the VM, and every
//! later request of the worker would go untraced.

use crate::abi;
use crate::http::Http;
use crate::root::{Answer, Root};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// `proxy_action_t::Continue`: the filter never pauses a stream.
const CONTINUE: u32 = 0;

thread_local! {
    /// Root contexts by id (one per plugin configuration in this VM).
    static ROOTS: Table<Root> = RefCell::new(HashMap::new());
    /// HTTP contexts by id (one per request or, upstream, per attempt).
    static HTTPS: Table<Http> = RefCell::new(HashMap::new());
}

type Table<C> = RefCell<HashMap<u32, Rc<RefCell<C>>>>;

thread_local! {
    /// Export answers for a root context that was running when they came (only a host that
    /// re-enters the module can cause it): read at once, handed to the root at its next
    /// callback, so an answer is never dropped and its in-flight slot never leaks.
    static LATE: RefCell<Vec<(u32, Answer)>> = const { RefCell::new(Vec::new()) };
}

/// The answers kept for root `id`, taken.
fn take_late(id: u32) -> Vec<Answer> {
    LATE.with(|l| {
        let Ok(mut l) = l.try_borrow_mut() else {
            return Vec::new();
        };
        if l.is_empty() {
            return Vec::new();
        }
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut *l)
            .into_iter()
            .partition(|(r, _)| *r == id);
        *l = rest;
        mine.into_iter().map(|(_, a)| a).collect()
    })
}

/// Runs `f` on a root context, first handing it the answers that came while it was busy.
fn with_root<R>(id: u32, f: impl FnOnce(&mut Root) -> R) -> Option<R> {
    with(&ROOTS, id, |root| {
        let late = take_late(id);
        if !late.is_empty() {
            root.adopt(late);
        }
        f(root)
    })
}

/// Runs `f` on a context; no table borrow is held while it runs, so a host that re-enters the
/// module finds the table free. A context that is already running (a nested callback for the
/// same id) or unknown is skipped: `None`, never a panic.
fn with<C, R>(
    table: &'static std::thread::LocalKey<Table<C>>,
    id: u32,
    f: impl FnOnce(&mut C) -> R,
) -> Option<R> {
    let ctx = table.with(|t| t.try_borrow().ok()?.get(&id).cloned())?;
    let mut ctx = ctx.try_borrow_mut().ok()?;
    Some(f(&mut ctx))
}

fn insert<C>(table: &'static std::thread::LocalKey<Table<C>>, id: u32, ctx: C) {
    table.with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            t.insert(id, Rc::new(RefCell::new(ctx)));
        }
    });
}

fn init() {
    struct Logger;
    impl log::Log for Logger {
        fn enabled(&self, metadata: &log::Metadata) -> bool {
            metadata.level() <= log::max_level()
        }
        fn log(&self, record: &log::Record) {
            if !self.enabled(record.metadata()) {
                return;
            }
            let level = match record.level() {
                log::Level::Trace => abi::LOG_TRACE,
                log::Level::Debug => abi::LOG_DEBUG,
                log::Level::Info => abi::LOG_INFO,
                log::Level::Warn => abi::LOG_WARN,
                log::Level::Error => abi::LOG_ERROR,
            };
            abi::log(level, &record.args().to_string());
        }
        fn flush(&self) {}
    }
    static LOGGER: Logger = Logger;
    // The core logs through the `log` crate; Envoy's own `wasm` log level filters what shows
    // (the root context follows it at configure and on every tick).
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    // A panic aborts the VM (panic = "abort"); say where at critical level first, so the
    // cause is in Envoy's log and not only "wasm trap: unreachable".
    std::panic::set_hook(Box::new(|info| {
        abi::log(
            abi::LOG_CRITICAL,
            &format!("gateway-tracing panicked (the VM aborts): {info}"),
        );
    }));
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// The WASI reactor entry point: static constructors, then the logger and panic hook.
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    {
        // SAFETY: called once by the host before any other export, as WASI reactors require.
        unsafe {
            __wasm_call_ctors();
        }
    }
    init();
}

/// The ABI version this module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

// Flags arrive as `u32`, not `bool`: a host passing any other number than 0 or 1 must not
// be undefined behaviour here.

/// The host's allocator for buffers it hands us (taken back by `abi::take`). A size we cannot
/// allocate returns null, which the host reports as a failed call instead of a panic here.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut v: Vec<u8> = Vec::new();
    if v.try_reserve_exact(size).is_err() {
        return std::ptr::null_mut();
    }
    let p = v.as_mut_ptr();
    std::mem::forget(v);
    p
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    if root_context_id == 0 {
        insert(&ROOTS, context_id, Root::new(context_id));
        return;
    }
    // A stream of an unknown root gets a context that does nothing (never a panic).
    let shared = with(&ROOTS, root_context_id, |r| r.shared()).flatten();
    insert(&HTTPS, context_id, Http::new(root_context_id, shared));
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(
    root_context_id: u32,
    plugin_configuration_size: usize,
) -> bool {
    with(&ROOTS, root_context_id, |r| {
        r.on_configure(plugin_configuration_size)
    })
    .unwrap_or(false)
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(root_context_id: u32) {
    with_root(root_context_id, Root::on_tick);
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    num_trailers: usize,
) {
    // Calls are dispatched from the root context; should a host route the answer to an HTTP
    // context, it belongs to that context's root all the same (the exporter's slot is there).
    let root_id = with(&HTTPS, context_id, |h| h.root_id()).unwrap_or(context_id);
    let handled = with_root(root_id, |r| {
        r.on_http_call_response(token, num_headers, body_size, num_trailers)
    });
    let known = ROOTS.with(|t| t.try_borrow().is_ok_and(|t| t.contains_key(&root_id)));
    if handled.is_none() && known {
        // The root is running (a host re-entering the module): keep the answer for later.
        let answer = Root::read_answer(token, body_size);
        LATE.with(|l| {
            if let Ok(mut l) = l.try_borrow_mut() {
                l.push((root_id, answer));
            }
        });
        log::debug!("export answer {token} came while the root context was busy: kept for its next callback");
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: u32,
) -> u32 {
    with(&HTTPS, context_id, |h| {
        h.on_request_headers(num_headers, end_of_stream != 0)
    });
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: u32,
) -> u32 {
    with(&HTTPS, context_id, |h| {
        h.on_response_headers(num_headers, end_of_stream != 0)
    });
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(
    context_id: u32,
    body_size: usize,
    end_of_stream: u32,
) -> u32 {
    with(&HTTPS, context_id, |h| {
        h.on_response_body(body_size, end_of_stream != 0)
    });
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(context_id: u32, num_trailers: usize) -> u32 {
    with(&HTTPS, context_id, |h| h.on_response_trailers(num_trailers));
    CONTINUE
}

#[no_mangle]
pub extern "C" fn proxy_on_log(context_id: u32) {
    with(&HTTPS, context_id, Http::on_log);
}

/// `true`: the context may be deleted now; a root context draining its exporter answers
/// `false` and calls `proxy_done` once the last export answer came.
#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> bool {
    if let Some(done) = with(&HTTPS, context_id, Http::on_done) {
        return done;
    }
    with_root(context_id, Root::on_done).unwrap_or(true)
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    // Taken out of the table first, dropped after the borrow ends (a root's `Drop` counts what
    // it still held and makes host calls).
    let http = HTTPS.with(|t| t.try_borrow_mut().ok()?.remove(&context_id));
    drop(http);
    let root = ROOTS.with(|t| t.try_borrow_mut().ok()?.remove(&context_id));
    if let Some(root) = &root {
        // Answers kept for it are handed over first: its drop counts what is still held.
        let late = take_late(context_id);
        if let (false, Ok(mut r)) = (late.is_empty(), root.try_borrow_mut()) {
            r.adopt(late);
        }
    }
    drop(root);
}
