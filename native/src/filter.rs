//! One HTTP stream: each hook is one call on the core's `tracer::Stream` (the same calls the
//! wasm build's HTTP context makes), over [`NativeHost`]. Envoy's hooks map as: request
//! headers → `start`; response headers / last body chunk / trailers → `response_headers` /
//! `response_end`; `on_http_filter_stream_complete` (the response code, flags and upstream
//! are final there; proxy-wasm's `on_log`) → `log`; `on_http_filter_destroy` → `done` (an
//! upstream-filter attempt ends there: Envoy 1.40 calls no `stream_complete` for upstream
//! filters, as it calls no `on_log`).
//!
//! Two things Envoy's dynamic-module ABI tells later than proxy-wasm, handled here:
//! * `upstream.address` is gone when an upstream filter is destroyed, so the attempt's
//!   upstream address is read at its request and response headers and handed to `done`;
//! * an attempt Envoy abandoned (a hedge that lost, a retry cut short) is destroyed after the
//!   downstream stream completed, so its end is bounded by the end of its SERVER span (the
//!   wasm build's `on_done` runs before the downstream `on_log`).

use crate::ffi::FilterEnvoyPtr;
use crate::host::{now_nanos, NativeHost};
use crate::process::Process;
use gateway_tracing_core::host::{property_string, Host};
use gateway_tracing_core::ids::SpanId;
use gateway_tracing_core::tracer::{AttemptBook, Finished, Placement, Stream};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

thread_local! {
    /// The span ids this worker's upstream-filter streams injected.
    static BOOK: RefCell<AttemptBook> = RefCell::new(AttemptBook::default());
    /// When this worker's recent SERVER spans ended, by span id (the newest
    /// [`SERVER_ENDS_KEPT`]), to bound the end of their abandoned attempts.
    static SERVER_ENDS: RefCell<VecDeque<(SpanId, u64)>> = const { RefCell::new(VecDeque::new()) };
}

/// How many SERVER span ends a worker remembers for its attempts.
const SERVER_ENDS_KEPT: usize = 256;

pub struct Filter {
    pub process: Arc<Process>,
    /// Envoy's side of this stream, valid until the destroy hook returns.
    envoy: FilterEnvoyPtr,
    stream: Option<Stream>,
    /// Upstream attempt: `upstream.address` as last seen (request or response headers).
    attempt_upstream: Option<String>,
}

impl Filter {
    pub fn new(process: Arc<Process>, envoy: FilterEnvoyPtr) -> Filter {
        Filter {
            process,
            envoy,
            stream: None,
            attempt_upstream: None,
        }
    }

    fn attempt(&self) -> bool {
        Placement::of(&self.process.config) == Placement::UpstreamAttempt
    }

    fn note_upstream(&mut self, host: &NativeHost) {
        if self.attempt() {
            if let Some(a) = property_string(host.property(&["upstream", "address"])) {
                self.attempt_upstream = Some(a);
            }
        }
    }

    pub fn request_headers(&mut self, envoy: FilterEnvoyPtr) {
        let p = &*self.process;
        let mut host = NativeHost::new(envoy);
        self.stream = Some(BOOK.with(|book| Stream::start(&p.config, &mut host, &p.stats, book)));
        self.note_upstream(&host);
    }

    pub fn response_headers(&mut self, envoy: FilterEnvoyPtr, end_of_stream: bool) {
        let mut host = NativeHost::new(envoy);
        self.note_upstream(&host);
        if let Some(stream) = self.stream.as_mut() {
            stream.response_headers(&mut host, end_of_stream);
        }
    }

    pub fn response_end(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            stream.response_end(now_nanos());
        }
    }

    /// `stream_complete`: a downstream stream's spans are written and queued.
    pub fn stream_complete(&mut self, envoy: FilterEnvoyPtr) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let server = stream.request().and_then(|r| r.server_span_id);
        // One clock reading for the span's end and the bound of its abandoned attempts.
        let end = now_nanos();
        let host = NativeHost {
            now: Some(end),
            ..NativeHost::new(envoy)
        };
        let p = &*self.process;
        let mut run = Vec::with_capacity(gateway_tracing_core::tracer::SPANS_BUFFER_CAPACITY);
        let finished = stream.log(&p.config, &host, &p.stats, &mut run);
        if let (Some(id), true) = (server, finished.spans > 0) {
            SERVER_ENDS.with(|ends| {
                if let Ok(mut ends) = ends.try_borrow_mut() {
                    if ends.len() >= SERVER_ENDS_KEPT {
                        ends.pop_front();
                    }
                    ends.push_back((id, end));
                }
            });
        }
        self.export(&run, &finished);
    }

    /// `destroy`: an upstream attempt still open ends here.
    pub fn destroy(&mut self) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let parent = stream.request().and_then(|r| r.parent_span_id);
        let server_end = parent.and_then(|parent| {
            SERVER_ENDS.with(|ends| {
                ends.try_borrow().ok().and_then(|ends| {
                    ends.iter()
                        .rev()
                        .find(|(id, _)| *id == parent)
                        .map(|(_, end)| *end)
                })
            })
        });
        let host = NativeHost {
            now: server_end.map(|end| end.min(now_nanos())),
            upstream_address: self.attempt_upstream.take(),
            ..NativeHost::new(self.envoy)
        };
        let p = &*self.process;
        let mut run = Vec::new();
        let finished = stream.done(&p.config, &host, &p.stats, &mut run);
        self.export(&run, &finished);
    }

    /// Clears this stream's trace (after a panic: the stream passes untraced).
    pub fn abandon(&mut self) {
        self.stream = None;
    }

    fn export(&self, run: &[u8], finished: &Finished) {
        let p = &*self.process;
        if let Some(call) = &finished.call {
            p.calls.record(&p.stats, call);
        }
        if finished.spans > 0 {
            p.push(run, finished.spans);
        }
    }
}
