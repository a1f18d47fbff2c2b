//! One HTTP stream: the same steps as the wasm build's HTTP context, over [`NativeHost`].
//! Starts the trace at request headers (while headers can still be changed), adds the
//! response trace header, and finishes at stream completion (`on_http_filter_stream_complete`,
//! Envoy's equivalent of proxy-wasm's `on_log`: the response code, flags and upstream are
//! final there).
//!
//! In the upstream-filter placement each stream is one attempt: its CLIENT span is finished with
//! the `:status` this stream saw (see `tracer::attempt`) when Envoy destroys the filter (Envoy
//! 1.40 calls no `stream_complete` for upstream filters, as it calls no proxy-wasm `on_log`;
//! the wasm build finishes the attempt in `on_done` likewise).

use crate::ffi::FilterEnvoyPtr;
use crate::host::{now_nanos, NativeHost};
use crate::process::Process;
use gateway_tracing_core::config::Mode;
use gateway_tracing_core::host::Host;
use gateway_tracing_core::ids::SpanId;
use gateway_tracing_core::tracer::{self, calls, ActiveRequest, AttemptBook, Completion};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

thread_local! {
    /// The span ids this worker's upstream-filter streams injected.
    static BOOK: RefCell<AttemptBook> = RefCell::new(AttemptBook::default());
    /// When this worker's recent SERVER spans ended, by span id (the newest
    /// [`SERVER_ENDS_KEPT`]): an attempt Envoy abandoned (a hedge that lost, a retry cut short)
    /// is destroyed only after the downstream stream completed, so its CLIENT span ends no
    /// later than its SERVER span (the wasm build's `on_done` runs before the downstream
    /// `on_log`, so it needs no such bound).
    static SERVER_ENDS: RefCell<VecDeque<(SpanId, u64)>> = const { RefCell::new(VecDeque::new()) };
}

/// How many SERVER span ends a worker remembers for its attempts.
const SERVER_ENDS_KEPT: usize = 256;

pub struct Filter {
    pub process: Arc<Process>,
    /// Envoy's side of this stream, valid until the destroy hook returns.
    envoy: FilterEnvoyPtr,
    active: Option<ActiveRequest>,
    /// Upstream-filter placement: the attempt's `:status`, once its response headers came.
    attempt_status: Option<u16>,
    /// Upstream-filter placement: `upstream.address` as read at the attempt's response
    /// headers (Envoy no longer has it when it destroys the filter).
    attempt_upstream: Option<String>,
}

impl Filter {
    pub fn new(process: Arc<Process>, envoy: FilterEnvoyPtr) -> Filter {
        Filter {
            process,
            envoy,
            active: None,
            attempt_status: None,
            attempt_upstream: None,
        }
    }

    fn upstream_placement(&self) -> bool {
        self.process.config.mode == Mode::UpstreamFilter
    }

    pub fn request_headers(&mut self, envoy: FilterEnvoyPtr) {
        let p = &*self.process;
        let mut host = NativeHost { filter: envoy };
        if self.upstream_placement() {
            self.attempt_upstream = gateway_tracing_core::host::property_string(
                host.property(&["upstream", "address"]),
            );
        }
        self.active = Some(if self.upstream_placement() {
            BOOK.with(|book| match book.try_borrow_mut() {
                Ok(mut book) => tracer::start_attempt(&p.config, &mut host, &p.stats, &mut book),
                Err(_) => tracer::start(&p.config, &mut host, &p.stats),
            })
        } else {
            tracer::start(&p.config, &mut host, &p.stats)
        });
    }

    pub fn response_headers(&mut self, envoy: FilterEnvoyPtr, end_of_stream: bool) {
        let mut host = NativeHost { filter: envoy };
        // `response_trace_header`: tell the client its trace (value decided at request start).
        if let Some((name, value, replace)) = self
            .active
            .as_ref()
            .and_then(|r| r.response_header.as_ref())
        {
            if let Err(e) = host.add_response_header(name, value, *replace) {
                log::debug!("could not add the {name} response header: {e}");
            }
        }
        if self.upstream_placement() && self.active.is_some() {
            self.attempt_status = host
                .response_header(":status")
                .and_then(|s| String::from_utf8(s).ok())
                .and_then(|s| s.parse::<u16>().ok());
            if let Some(a) =
                gateway_tracing_core::host::property_string(host.property(&["upstream", "address"]))
            {
                self.attempt_upstream = Some(a);
            }
        }
        if end_of_stream {
            self.response_complete();
        }
    }

    pub fn response_complete(&mut self) {
        if let Some(req) = self.active.as_mut().filter(|r| r.client.is_some()) {
            req.response_complete(now_nanos());
        }
    }

    /// The filter is being destroyed: an upstream-filter attempt still open ends here.
    pub fn destroy(&mut self) {
        if self.upstream_placement() {
            self.stream_complete(self.envoy);
        }
    }

    /// Clears this stream's trace (after a panic: the stream passes untraced).
    pub fn abandon(&mut self) {
        self.active = None;
    }

    /// The stream is over: finish and queue its spans.
    pub fn stream_complete(&mut self, envoy: FilterEnvoyPtr) {
        let Some(req) = self.active.take() else {
            return;
        };
        let p = &*self.process;
        // An unsampled request produces no spans (unless failures are kept or calls counted):
        // skip reading Envoy's completion attributes.
        if !req.wants_completion(&p.config) {
            return;
        }
        let host = NativeHost { filter: envoy };
        let done = if self.upstream_placement() {
            let mut done = tracer::attempt_completion(&host, &req, self.attempt_status);
            if done.upstream_address.is_none() {
                done.upstream_address = self.attempt_upstream.take();
            }
            if let Some(parent) = req.parent_span_id {
                let server_end = SERVER_ENDS.with(|ends| {
                    ends.try_borrow().ok().and_then(|ends| {
                        ends.iter()
                            .rev()
                            .find(|(id, _)| *id == parent)
                            .map(|(_, end)| *end)
                    })
                });
                if let Some(end) = server_end {
                    done.end_ns = done.end_ns.min(end);
                }
            }
            done
        } else {
            let done = Completion::read(&host, &p.config);
            if let Some(call) = calls::record(&p.config, &req, &done) {
                p.calls.record(&p.stats, &call);
            }
            if let Some(id) = req.server_span_id {
                SERVER_ENDS.with(|ends| {
                    if let Ok(mut ends) = ends.try_borrow_mut() {
                        if ends.len() >= SERVER_ENDS_KEPT {
                            ends.pop_front();
                        }
                        ends.push_back((id, done.end_ns));
                    }
                });
            }
            done
        };
        let mut run = Vec::with_capacity(1024);
        let n = tracer::finish(&p.config, &req, &done, &p.stats, &mut run);
        if n > 0 {
            p.push(&run, n);
        }
    }
}
