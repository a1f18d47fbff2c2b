//! One HTTP stream: the same steps as the wasm build's HTTP context, over [`NativeHost`].
//! Starts the trace at request headers (while headers can still be changed), adds the
//! response trace header, and finishes at stream completion (`on_http_filter_stream_complete`,
//! Envoy's equivalent of proxy-wasm's `on_log`: the response code, flags and upstream are
//! final there).
//!
//! In the upstream-filter placement each stream is one attempt: its CLIENT span is finished at
//! stream completion with the `:status` this stream saw (see `tracer::attempt`).

use crate::ffi::FilterEnvoyPtr;
use crate::host::{now_nanos, NativeHost};
use crate::process::Process;
use gateway_tracing_core::config::Mode;
use gateway_tracing_core::host::Host;
use gateway_tracing_core::tracer::{self, calls, ActiveRequest, AttemptBook, Completion};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// The span ids this worker's upstream-filter streams injected.
    static BOOK: RefCell<AttemptBook> = RefCell::new(AttemptBook::default());
}

pub struct Filter {
    pub process: Arc<Process>,
    active: Option<ActiveRequest>,
    /// Upstream-filter placement: the attempt's `:status`, once its response headers came.
    attempt_status: Option<u16>,
}

impl Filter {
    pub fn new(process: Arc<Process>) -> Filter {
        Filter {
            process,
            active: None,
            attempt_status: None,
        }
    }

    fn upstream_placement(&self) -> bool {
        self.process.config.mode == Mode::UpstreamFilter
    }

    pub fn request_headers(&mut self, envoy: FilterEnvoyPtr) {
        let p = &*self.process;
        let mut host = NativeHost { filter: envoy };
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
            tracer::attempt_completion(&host, &req, self.attempt_status)
        } else {
            let done = Completion::read(&host, &p.config);
            if let Some(call) = calls::record(&p.config, &req, &done) {
                p.calls.record(&p.stats, &call);
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
