//! The HTTP context: one per request. Starts the trace at request headers (while headers can
//! still be changed) and finishes it in `on_log`, when Envoy's response details are complete.

use crate::proxy_host::{now_nanos, ProxyExport, ProxyHost};
use crate::root::Shared;
use gateway_tracing_core::host::Stats;
use gateway_tracing_core::metrics::Counter;
use gateway_tracing_core::otlp;
use gateway_tracing_core::tracer::{self, ActiveRequest, Completion};
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
        // `response_trace_header`: tell the client its trace (value decided at request start).
        if let Some((name, value, replace)) = self
            .active
            .as_ref()
            .and_then(|r| r.response_header.as_ref())
        {
            use gateway_tracing_core::host::Host;
            if let Err(e) = ProxyHost.add_response_header(name, value, *replace) {
                log::debug!("could not add the {name} response header: {e}");
            }
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
        // An unsampled request produces no spans: skip reading Envoy's log-phase attributes.
        if !req.recorded {
            return;
        }
        let done = Completion::read(&ProxyHost);
        let spans = tracer::finish(&shared.config, &req, &done);
        let encoded: Vec<Vec<u8>> = spans
            .iter()
            .map(|s| {
                let mut out = Vec::new();
                otlp::encode_span_field(s, &mut out);
                out
            })
            .collect();
        match shared.exporter.try_borrow_mut() {
            Ok(mut exporter) => exporter.push(encoded, &ProxyExport, &shared.stats),
            // Cannot happen in a single-threaded VM unless a host callback re-enters; count
            // it all the same, so created = exported + dropped holds.
            Err(_) => shared
                .stats
                .add(Counter::SpansDroppedInternal, encoded.len() as u64),
        }
    }
}
