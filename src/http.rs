//! The HTTP context: one per request. Starts the trace at request headers (while headers can
//! still be changed) and finishes it in `on_log`, when Envoy's response details are complete.
//!
//! In the upstream-filter placement (`mode: "upstream_filter"`) the context is one attempt:
//! Envoy calls no `on_log` there, so the attempt's CLIENT span is finished in `on_done`, with
//! the `:status` this context saw (see `tracer::attempt`).

use crate::abi;
use crate::proxy_host::{now_nanos, ProxyExport, ProxyHost};
use crate::shared::Shared;
use gateway_tracing_core::config::Mode;
use gateway_tracing_core::host::Stats;
use gateway_tracing_core::metrics::Counter;
use gateway_tracing_core::tracer::{self, calls, ActiveRequest, AttemptBook, Completion};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The span ids this VM's upstream-filter contexts injected (one VM per worker thread).
    static BOOK: RefCell<AttemptBook> = RefCell::new(AttemptBook::default());
}

pub struct Http {
    shared: Option<Rc<Shared>>,
    active: Option<ActiveRequest>,
    /// Upstream-filter placement: the attempt's `:status`, once its response headers came.
    attempt_status: Option<u16>,
}

impl Http {
    pub fn new(shared: Option<Rc<Shared>>) -> Http {
        Http {
            shared,
            active: None,
            attempt_status: None,
        }
    }

    fn response_complete(&mut self) {
        if let Some(req) = self.active.as_mut().filter(|r| r.client.is_some()) {
            req.response_complete(now_nanos());
        }
    }

    fn upstream_placement(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.config.mode == Mode::UpstreamFilter)
    }

    /// Writes the finished spans of a request and hands them to the exporter.
    fn export(shared: &Shared, req: &ActiveRequest, done: &Completion) {
        let mut run = Vec::with_capacity(1024);
        let n = tracer::finish(&shared.config, req, done, &shared.stats, &mut run);
        if n == 0 {
            return;
        }
        match shared.exporter.try_borrow_mut() {
            Ok(mut exporter) => exporter.push(&run, n, &ProxyExport, &shared.stats),
            // Cannot happen in a single-threaded VM unless a host callback re-enters; count
            // it all the same, so created = exported + dropped holds.
            Err(_) => {
                shared.stats.add(Counter::SpansCreated, n as u64);
                shared.stats.add(Counter::SpansDroppedInternal, n as u64);
            }
        }
    }
}

impl Context for Http {
    /// Upstream-filter placement: the attempt is over (Envoy calls no `on_log` for upstream
    /// filters); its CLIENT span is finished here.
    fn on_done(&mut self) -> bool {
        if !self.upstream_placement() {
            return true;
        }
        let (Some(shared), Some(req)) = (&self.shared, self.active.take()) else {
            return true;
        };
        if req.wants_completion(&shared.config) {
            let done = tracer::attempt_completion(&ProxyHost, &req, self.attempt_status);
            Self::export(shared, &req, &done);
        }
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(shared) = &self.shared {
            let (config, stats) = (&shared.config, &shared.stats);
            self.active = Some(if config.mode == Mode::UpstreamFilter {
                BOOK.with(|book| match book.try_borrow_mut() {
                    Ok(mut book) => tracer::start_attempt(config, &mut ProxyHost, stats, &mut book),
                    Err(_) => tracer::start(config, &mut ProxyHost, stats),
                })
            } else {
                tracer::start(config, &mut ProxyHost, stats)
            });
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        // `response_trace_header`: tell the client its trace (decided at request start; a
        // request `sampler_keep_errors` keeps says so, which needs the status).
        if let (Some(shared), Some(req)) = (&self.shared, &self.active) {
            if req.response_header.is_some() {
                let status = (shared.config.keep_errors && !req.recorded)
                    .then(|| {
                        abi::header_value(abi::RESPONSE_HEADERS, ":status")
                            .ok()
                            .flatten()
                    })
                    .flatten()
                    .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
                if let Some((name, value, replace)) =
                    req.response_header_for(&shared.config, status)
                {
                    use gateway_tracing_core::host::Host;
                    if let Err(e) = ProxyHost.add_response_header(name, &value, replace) {
                        log::debug!("could not add the {name} response header: {e}");
                    }
                }
            }
        }
        if self.upstream_placement() && self.active.is_some() {
            self.attempt_status = abi::header_map(abi::RESPONSE_HEADERS)
                .ok()
                .and_then(|h| h.get(":status").and_then(|s| s.parse::<u16>().ok()));
        }
        if end_of_stream {
            self.response_complete();
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, _body_size: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            self.response_complete();
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        self.response_complete();
        Action::Continue
    }

    fn on_log(&mut self) {
        let (Some(shared), Some(req)) = (&self.shared, self.active.take()) else {
            return;
        };
        // An unsampled request produces no spans (unless failures are kept or calls counted):
        // skip reading Envoy's log-phase attributes.
        if !req.wants_completion(&shared.config) {
            return;
        }
        if shared.config.mode == Mode::UpstreamFilter {
            // Not called by Envoy 1.40 for upstream filters; should a later Envoy call it,
            // the attempt ends here with the same reads as in `on_done`.
            let done = tracer::attempt_completion(&ProxyHost, &req, self.attempt_status);
            Self::export(shared, &req, &done);
            return;
        }
        let done = Completion::read(&ProxyHost, &shared.config);
        if let Some(call) = calls::record(&shared.config, &req, &done) {
            shared.calls.record(&call);
        }
        Self::export(shared, &req, &done);
    }
}
