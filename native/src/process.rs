//! One filter configuration in one Envoy process: the validated config, the stats, and the
//! process's single exporter, shared by every worker.
//!
//! **Export off the worker.** A worker that finishes a request writes its spans (encoded OTLP
//! span fields) and pushes them into the one [`Exporter`] under a mutex: a copy of a few hundred
//! bytes, nothing sent. The exporter's queue is the bounded queue: one `max_queue_bytes` budget
//! per process (the wasm build has one per worker VM). Sending happens on Envoy's main thread
//! only: a timer thread of this module wakes the main thread through the filter config's
//! scheduler (`scheduler_commit` → `on_http_filter_config_scheduled`) every flush interval;
//! a worker whose push completes a batch commits the same event itself, once per batch (no
//! wake-up of the timer thread, no 1 ms wait). The main thread then sends batches with the
//! filter config's HTTP callout and takes the answers in `on_http_filter_config_http_callout_done`.
//! So a request's latency never includes an export, and no worker ever blocks on the network.
//!
//! **No worker waits for the main thread.** The main thread holds the exporter while it builds
//! and hands an export request to Envoy (a batch of 512 spans: some hundred µs on a busy core).
//! A worker that finds the exporter held then does not wait: it leaves its spans in the
//! [`Overflow`] (a few runs, bounded by [`OVERFLOW_MAX_BYTES`]), which the main thread takes
//! into the exporter whenever it holds it, first of all before a tick sends. And the worker's
//! wake-up commit is made after it lets go of the exporter, so the main thread it wakes on the
//! same core does not find the exporter held and block.

use crate::ffi::{self, ConfigSchedulerPtr, FilterConfigEnvoyPtr, ModuleBuffer, ModuleHttpHeader};
use crate::host::now_nanos;
use crate::stats::{CallMetrics, NativeStats, SharedPtr};
use gateway_tracing_core::config::Config;
use gateway_tracing_core::exporter::{Exporter, MAX_RESPONSE_BODY};
use gateway_tracing_core::host::{
    ExportHost, ExportRequest, ExportResponse, GrpcFields, HostError, HostErrorKind,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// The scheduler event that runs the exporter's tick on the main thread.
pub const EVENT_TICK: u64 = 1;

/// While Envoy shuts down, the timer ticks at least this often (to end the wait on time).
pub const SHUTDOWN_TICK: Duration = Duration::from_millis(100);

/// Every filter config alive in this process (for the bootstrap extension's drain and
/// shutdown hooks).
static REGISTRY: Mutex<Vec<Weak<Process>>> = Mutex::new(Vec::new());

/// The live filter configs of this process.
pub fn registry() -> Vec<Arc<Process>> {
    match REGISTRY.lock() {
        Ok(mut r) => {
            r.retain(|w| w.strong_count() > 0);
            r.iter().filter_map(Weak::upgrade).collect()
        }
        Err(_) => Vec::new(),
    }
}

/// What the timer thread is told.
struct TimerState {
    period: Duration,
    /// Bumped on every change, so a wait in progress restarts with the new period.
    generation: u64,
    stop: bool,
    /// Envoy is shutting down: tick at least every [`SHUTDOWN_TICK`].
    shutting_down: bool,
}

/// The export timer: a thread that sleeps the tick period and then wakes the main thread.
struct Timer {
    state: Mutex<TimerState>,
    changed: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_period(&self, period: Duration) {
        let mut st = self.lock();
        let period = if st.shutting_down {
            period.min(SHUTDOWN_TICK)
        } else {
            period
        };
        if st.period != period {
            st.period = period;
            st.generation = st.generation.wrapping_add(1);
            self.changed.notify_all();
        }
    }

    /// The thread's loop: each period (restarted when the period changes), one tick event.
    fn run(&self, scheduler: SharedPtr) {
        let mut st = self.lock();
        loop {
            if st.stop {
                return;
            }
            let (generation, period) = (st.generation, st.period);
            let (next, timeout) = match self
                .changed
                .wait_timeout_while(st, period, |s| !s.stop && s.generation == generation)
            {
                Ok(r) => r,
                Err(e) => e.into_inner(),
            };
            st = next;
            if st.stop {
                return;
            }
            if timeout.timed_out() {
                // SAFETY: the scheduler lives until `Process::shutdown` has joined this thread;
                // commit is thread-safe.
                unsafe {
                    ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                        scheduler.0,
                        EVENT_TICK,
                    );
                }
            }
        }
    }
}

/// At most this many bytes of span runs wait in the [`Overflow`]; a worker whose run would
/// pass it waits for the exporter instead. Runs land there only while the main thread holds
/// the exporter (one export request's build and hand-off), so a few runs at a time.
pub const OVERFLOW_MAX_BYTES: usize = 64 * 1024;

/// Span runs workers finished while the main thread held the exporter, oldest first; the
/// main thread takes them into the exporter (where they are counted, admitted or refused
/// against `max_queue_bytes`) each time it holds it.
#[derive(Default)]
struct Overflow {
    runs: Vec<(Vec<u8>, usize)>,
    bytes: usize,
}

impl Overflow {
    /// Keeps a copy of `run`; false (nothing kept) when it would pass [`OVERFLOW_MAX_BYTES`].
    fn leave(&mut self, run: &[u8], spans: usize) -> bool {
        if self.bytes + run.len() > OVERFLOW_MAX_BYTES {
            return false;
        }
        self.bytes += run.len();
        self.runs.push((run.to_vec(), spans));
        true
    }

    /// Everything kept, oldest first; the overflow is empty after.
    fn take(&mut self) -> Vec<(Vec<u8>, usize)> {
        self.bytes = 0;
        std::mem::take(&mut self.runs)
    }
}

/// One filter config's state in this process.
pub struct Process {
    pub config: Config,
    pub stats: NativeStats,
    pub calls: CallMetrics,
    exporter: Mutex<Exporter>,
    overflow: Mutex<Overflow>,
    envoy: SharedPtr,
    scheduler: SharedPtr,
    /// Whether the scheduler may be committed to: cleared (under this lock) before the
    /// scheduler is deleted; a worker commits only while holding it and seeing it set.
    scheduler_alive: Mutex<bool>,
    /// A worker's push completed a batch: it commits the wake-up once it has let go of the
    /// exporter.
    commit_wanted: AtomicBool,
    timer: Timer,
}

impl Process {
    /// Called on the main thread from `on_http_filter_config_new`, with the config pointer
    /// Envoy passed there.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn new(envoy: FilterConfigEnvoyPtr, config: Config) -> Arc<Process> {
        let stats = NativeStats::define(envoy);
        let calls = CallMetrics::define(envoy, &config);
        let mut exporter = Exporter::new(&config);
        let seed = crate::host::random_bytes()
            .iter()
            .take(8)
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        exporter.seed(seed);
        // SAFETY: the config pointer Envoy passed to `on_http_filter_config_new`.
        let scheduler =
            unsafe { ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(envoy) };
        let process = Arc::new(Process {
            timer: Timer {
                state: Mutex::new(TimerState {
                    period: config.exporter.flush_interval,
                    generation: 0,
                    stop: false,
                    shutting_down: false,
                }),
                changed: Condvar::new(),
                thread: Mutex::new(None),
            },
            config,
            stats,
            calls,
            exporter: Mutex::new(exporter),
            overflow: Mutex::new(Overflow::default()),
            envoy: SharedPtr(envoy),
            scheduler: SharedPtr(scheduler as ConfigSchedulerPtr),
            scheduler_alive: Mutex::new(!scheduler.is_null()),
            commit_wanted: AtomicBool::new(false),
        });
        if !scheduler.is_null() {
            let p = Arc::clone(&process);
            let spawned = std::thread::Builder::new()
                .name("gateway-tracing-timer".into())
                .spawn(move || {
                    let scheduler = p.scheduler;
                    p.timer.run(scheduler);
                });
            match spawned {
                Ok(handle) => {
                    if let Ok(mut t) = process.timer.thread.lock() {
                        *t = Some(handle);
                    }
                }
                Err(e) => log::error!("could not start the export timer thread: {e}"),
            }
        } else {
            log::error!("could not create the export scheduler; spans will not be exported");
        }
        if let Ok(mut r) = REGISTRY.lock() {
            r.retain(|w| w.strong_count() > 0);
            r.push(Arc::downgrade(&process));
        }
        process
    }

    /// Spans held by this config's exporter (queued, awaiting retry, in flight) and its
    /// overflow.
    pub fn held_spans(&self) -> usize {
        self.main_exporter().held_spans()
    }

    /// Nothing queued, awaiting retry or in flight, nothing in the overflow.
    pub fn is_drained(&self) -> bool {
        self.main_exporter().is_drained()
    }

    /// Main thread (listeners draining): send what is held now, partial batches included.
    pub fn flush_now(&self) {
        self.main_exporter().flush(
            &MainExport { process: self },
            &self.stats,
            now_nanos(),
            true,
        );
    }

    /// Main thread (Envoy shutting down): send everything, each batch once; tick often so
    /// the bootstrap extension's wait ends on time.
    pub fn drain(&self) {
        {
            let mut st = self.timer.lock();
            st.shutting_down = true;
        }
        self.timer.set_period(SHUTDOWN_TICK);
        self.main_exporter()
            .drain(&MainExport { process: self }, &self.stats, now_nanos());
    }

    fn exporter(&self) -> MutexGuard<'_, Exporter> {
        // A panic while the lock was held (caught at the hook) leaves a usable exporter: its
        // state is counts and queues, each change of which is complete or not made.
        self.exporter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exporter for the main thread, with the overflow taken in first: what workers left
    /// there is counted and queued (or refused) before anything is sent or reported.
    fn main_exporter(&self) -> MutexGuard<'_, Exporter> {
        let mut exporter = self.exporter();
        let taken = self
            .overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        for (run, spans) in &taken {
            exporter.push(run, *spans, &MainExport { process: self }, &self.stats);
        }
        exporter
    }

    /// A worker finished a request: queue its spans (no I/O; the main thread sends them).
    /// When the exporter is held (the main thread building an export request), the spans wait
    /// in the overflow instead, unless it is full.
    pub fn push(&self, run: &[u8], spans: usize) {
        let worker = WorkerExport { process: self };
        match self.exporter.try_lock() {
            Ok(mut exporter) => exporter.push(run, spans, &worker, &self.stats),
            Err(TryLockError::Poisoned(e)) => e.into_inner().push(run, spans, &worker, &self.stats),
            Err(TryLockError::WouldBlock) => {
                if !self.leave_in_overflow(run, spans) {
                    self.exporter().push(run, spans, &worker, &self.stats);
                }
            }
        }
        if self.commit_wanted.swap(false, Ordering::AcqRel) {
            self.commit_tick();
        }
    }

    /// Keeps a run in the overflow; false when it would pass [`OVERFLOW_MAX_BYTES`].
    fn leave_in_overflow(&self, run: &[u8], spans: usize) -> bool {
        self.overflow
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leave(run, spans)
    }

    /// Wakes the main thread for a tick (a worker, once per full batch): one scheduler commit,
    /// made while the scheduler is known alive.
    fn commit_tick(&self) {
        let alive = self
            .scheduler_alive
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *alive {
            // SAFETY: the scheduler is alive (checked under `scheduler_alive`, which
            // `shutdown` clears under the same lock before deleting it); commit is
            // thread-safe.
            unsafe {
                ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                    self.scheduler.0,
                    EVENT_TICK,
                );
            }
        }
    }

    /// Main thread: the timer fired.
    pub fn on_tick(&self) {
        self.main_exporter()
            .on_tick(&MainExport { process: self }, &self.stats, now_nanos());
    }

    /// Main thread: an export request was answered (or failed: `status` `None`).
    pub fn on_response(
        &self,
        callout: u64,
        status: Option<u16>,
        retry_after: Option<&[u8]>,
        grpc: GrpcFields<'_>,
        body: &[u8],
    ) {
        let body = body
            .get(..MAX_RESPONSE_BODY.min(body.len()))
            .unwrap_or(body);
        let resp = ExportResponse {
            status,
            retry_after,
            body,
            grpc,
        };
        self.main_exporter().on_response(
            token(callout),
            &resp,
            &MainExport { process: self },
            &self.stats,
            now_nanos(),
        );
    }

    /// Main thread, the filter config is going away: stop the timer; what is still held is
    /// counted as dropped at shutdown (the config's callouts die with it).
    pub fn shutdown(&self) {
        self.timer.lock().stop = true;
        self.timer.changed.notify_all();
        let handle = self.timer.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
        {
            let mut alive = self
                .scheduler_alive
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if std::mem::replace(&mut *alive, false) {
                // SAFETY: created in `new`, deleted once, after the timer thread has been
                // joined and under `scheduler_alive` (the workers commit under it).
                unsafe {
                    ffi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                        self.scheduler.0,
                    );
                }
            }
        }
        let mut exporter = self.main_exporter();
        log::debug!(
            "filter config destroyed with {} spans held",
            exporter.held_spans()
        );
        exporter.abandon(&self.stats);
    }
}

/// Envoy's callout ids are u64; the core's tokens u32 (ids are a counter: the low bits are
/// unique among the few requests in flight).
fn token(callout: u64) -> u32 {
    (callout & u64::from(u32::MAX)) as u32
}

/// The exporter's host on a worker thread: never sends (push only arms the timer).
struct WorkerExport<'a> {
    process: &'a Process,
}

impl ExportHost for WorkerExport<'_> {
    fn dispatch(&self, _req: &ExportRequest<'_>) -> Result<u32, HostError> {
        Err(HostError::new(
            "http_callout (worker)",
            HostErrorKind::Internal,
        ))
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.process.timer.set_period(period);
        Ok(())
    }

    /// A push completed a batch (the core asks once, until the main thread's tick has run):
    /// the worker wakes the main thread itself with one scheduler commit, instead of arming
    /// the timer thread's fast tick (two thread wake-ups and a 1 ms wait per batch). The
    /// commit is made by [`Process::push`] once the exporter is let go: the main thread it
    /// wakes (on the same core, it may run at once) then finds the exporter free.
    fn wake_for_full_batch(&self) -> Result<bool, HostError> {
        self.process.commit_wanted.store(true, Ordering::Release);
        Ok(true)
    }
}

/// The exporter's host on the main thread: sends with the filter config's HTTP callout.
struct MainExport<'a> {
    process: &'a Process,
}

impl ExportHost for MainExport<'_> {
    fn dispatch(&self, req: &ExportRequest<'_>) -> Result<u32, HostError> {
        // `:authority` is Envoy's Host header: the callout's required `host`.
        let mut headers: Vec<ModuleHttpHeader> = req
            .headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        let mut id = 0u64;
        // SAFETY: main thread (`on_http_filter_config_scheduled` / `_http_callout_done`); every
        // buffer outlives the call (Envoy copies headers and body).
        let r = unsafe {
            ffi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.process.envoy.0,
                &mut id,
                ModuleBuffer::of(req.cluster.as_bytes()),
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(req.body),
                u64::try_from(req.timeout.as_millis()).unwrap_or(u64::MAX),
            )
        };
        match r {
            ffi::CALLOUT_INIT_SUCCESS => Ok(token(id)),
            ffi::CALLOUT_INIT_CLUSTER_NOT_FOUND => {
                Err(HostError::new("http_callout", HostErrorKind::NotFound))
            }
            ffi::CALLOUT_INIT_MISSING_REQUIRED_HEADERS => {
                Err(HostError::new("http_callout", HostErrorKind::BadArgument))
            }
            _ => Err(HostError::new("http_callout", HostErrorKind::Internal)),
        }
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.process.timer.set_period(period);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_tracing_core::tracer::SPANS_BUFFER_CAPACITY;

    #[test]
    fn overflow_keeps_runs_in_order_until_taken() {
        let mut o = Overflow::default();
        assert!(o.leave(b"first", 1));
        assert!(o.leave(b"second", 2));
        assert_eq!(o.bytes, 11);
        let taken = o.take();
        assert_eq!(taken, vec![(b"first".to_vec(), 1), (b"second".to_vec(), 2)]);
        assert_eq!(o.bytes, 0);
        assert!(o.take().is_empty(), "taking empties it");
    }

    #[test]
    fn overflow_refuses_a_run_that_would_pass_its_bound_and_keeps_nothing_of_it() {
        let mut o = Overflow::default();
        let run = vec![0u8; OVERFLOW_MAX_BYTES - 10];
        assert!(o.leave(&run, 1));
        assert!(!o.leave(&[0u8; 11], 1), "10 bytes left, 11 asked");
        assert!(o.leave(&[0u8; 10], 1), "exactly the bound fits");
        assert_eq!(o.bytes, OVERFLOW_MAX_BYTES);
        assert_eq!(o.take().len(), 2);
    }

    #[test]
    fn overflow_bound_holds_the_runs_of_a_burst_of_requests() {
        // The runs finished while the main thread builds one export request: at least 16
        // requests' runs of the largest size the glue writes must fit, and the bound stays
        // small beside the default per-process queue.
        let mut o = Overflow::default();
        let run = vec![0u8; SPANS_BUFFER_CAPACITY];
        let mut fitted = 0;
        while o.leave(&run, 2) {
            fitted += 1;
        }
        assert!(fitted >= 16, "{fitted} runs");
        assert!(o.bytes <= 128 * 1024, "{} bytes", o.bytes);
    }
}
