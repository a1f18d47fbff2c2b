//! The HTTP context: one per request. Starts the trace at request headers (while headers can
//! still be changed) and finishes it in `on_log`, when Envoy's response details are complete.

use crate::proxy_host::{now_nanos, ProxyExport, ProxyHost};
use crate::shared::Shared;
use gateway_tracing_core::host::Stats;
use gateway_tracing_core::metrics::Counter;
use gateway_tracing_core::tracer::{self, calls, ActiveRequest, Completion};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::rc::Rc;

pub struct Http {
    shared: Option<Rc<Shared>>,
    active: Option<ActiveRequest>,
}

impl Http {
    pub fn new(shared: Option<Rc<Shared>>) -> Http {
        Http {
            shared,
            active: None,
        }
    }
}

impl Http {
    fn response_complete(&mut self) {
        if let Some(req) = self.active.as_mut().filter(|r| r.client.is_some()) {
            req.response_complete(now_nanos());
        }
    }
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(shared) = &self.shared {
            self.active = Some(tracer::start(&shared.config, &mut ProxyHost, &shared.stats));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
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
        // An unsampled request produces no spans (unless failures are kept): skip reading
        // Envoy's log-phase attributes.
        if !req.wants_completion(&shared.config) {
            return;
        }
        let done = Completion::read(&ProxyHost, &shared.config);
        if let Some(call) = calls::record(&shared.config, &req, &done) {
            shared.calls.record(&call);
        }
        let mut run = Vec::with_capacity(1024);
        let n = tracer::finish(&shared.config, &req, &done, &shared.stats, &mut run);
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
