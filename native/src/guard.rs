//! The panic boundary: every hook's body runs inside [`guard`]. A panic is caught before it
//! can cross into Envoy (the crate is built with `panic = "unwind"`), the hook returns its
//! fail-open value, the panic is counted in its config's `gateway_tracing.native_panics` and the
//! first one in the process is logged. Imported by the hooks and the bootstrap extension.

use crate::process::Process;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

static PANIC_LOGGED: AtomicBool = AtomicBool::new(false);

/// Runs a hook body; a panic returns `fallback`, is counted (when the hook knows its
/// config's stats) and the first one in the process is logged.
pub fn guard<R>(
    hook: &'static str,
    process: Option<&Process>,
    fallback: R,
    body: impl FnOnce() -> R,
) -> R {
    guard_with(
        hook,
        || {
            if let Some(p) = process {
                p.stats.panicked();
            }
        },
        fallback,
        body,
    )
}

/// [`guard`] with what to do on a panic (besides logging the first) given by the caller.
fn guard_with<R>(
    hook: &'static str,
    on_panic: impl FnOnce(),
    fallback: R,
    body: impl FnOnce() -> R,
) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => {
            on_panic();
            if !PANIC_LOGGED.swap(true, Ordering::Relaxed) {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                log::error!(
                    "panic in {hook}: {what}; this request passes untraced (later panics are only counted: gateway_tracing.native_panics)"
                );
            }
            fallback
        }
    }
}

/// Whether a panic has been logged already in this process (the panic hook stays quiet after).
pub fn first_panic_logged() -> bool {
    PANIC_LOGGED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_hook_body_returns_the_fallback_and_later_hooks_still_run() {
        let mut counted = 0;
        let r = guard_with(
            "test_hook",
            || counted += 1,
            7u32,
            || -> u32 { panic!("boom") },
        );
        assert_eq!(counted, 1, "the panic is counted");
        assert_eq!(r, 7, "fails open with the fallback");
        assert!(
            PANIC_LOGGED.load(Ordering::Relaxed),
            "the first panic is logged"
        );
        assert_eq!(
            guard_with("test_hook", || {}, 0u32, || 3),
            3,
            "the next call runs normally"
        );
    }
}
