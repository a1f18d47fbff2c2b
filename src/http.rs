//! The HTTP context: one per request. Starts the trace at request headers (while headers can
//! still be changed) and finishes it in `on_log`, when Envoy's response details are complete.
//!
//! Every callback is one call on the core's `tracer::Stream`, which knows the placement (an
//! upstream attempt ends in `on_done`, a downstream request in `on_log`); this file only
//! hands the finished spans to the exporter and the call to the call metrics.

use crate::proxy_host::{ProxyExport, ProxyHost};
use crate::shared::Shared;
use gateway_tracing_core::host::Stats;
use gateway_tracing_core::metrics::Counter;
use gateway_tracing_core::tracer::{AttemptBook, Finished, Stream};
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The span ids this VM's upstream-filter contexts injected (one VM per worker thread).
    static BOOK: RefCell<AttemptBook> = RefCell::new(AttemptBook::default());
}

pub struct Http {
    /// The root context this stream was created under.
    root_id: u32,
    shared: Option<Rc<Shared>>,
    stream: Option<Stream>,
}

impl Http {
    pub fn new(root_id: u32, shared: Option<Rc<Shared>>) -> Http {
        Http {
            root_id,
            shared,
            stream: None,
        }
    }

    /// Hands a finished stream's spans to the exporter and its call to the call metrics.
    fn export(shared: &Shared, run: &[u8], finished: &Finished) {
        if let Some(call) = &finished.call {
            shared.calls.record(call);
        }
        let n = finished.spans;
        if n == 0 {
            return;
        }
        match shared.exporter.try_borrow_mut() {
            Ok(mut exporter) => exporter.push(run, n, &ProxyExport, &shared.stats),
            // Cannot happen in a single-threaded VM unless a host callback re-enters; count
            // it all the same, so created = exported + dropped holds.
            Err(_) => {
                shared.stats.add(Counter::SpansCreated, n as u64);
                shared.stats.add(Counter::SpansDroppedInternal, n as u64);
            }
        }
    }
}

impl Http {
    /// The root context this stream was created under.
    pub fn root_id(&self) -> u32 {
        self.root_id
    }

    /// The stream is destroyed: an upstream attempt ends here (Envoy calls no `on_log` for
    /// upstream filters).
    pub fn on_done(&mut self) -> bool {
        if let (Some(shared), Some(stream)) = (&self.shared, self.stream.as_mut()) {
            let mut run = Vec::new();
            let finished = stream.done(&shared.config, &ProxyHost, &shared.stats, &mut run);
            Self::export(shared, &run, &finished);
        }
        true
    }

    pub fn on_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) {
        if let Some(shared) = &self.shared {
            self.stream =
                Some(BOOK.with(|book| {
                    Stream::start(&shared.config, &mut ProxyHost, &shared.stats, book)
                }));
        }
    }

    pub fn on_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) {
        if let Some(stream) = self.stream.as_mut() {
            stream.response_headers(&mut ProxyHost, end_of_stream);
        }
    }

    pub fn on_response_body(&mut self, _body_size: usize, end_of_stream: bool) {
        if end_of_stream {
            self.response_end();
        }
    }

    pub fn on_response_trailers(&mut self, _num_trailers: usize) {
        self.response_end();
    }

    pub fn on_log(&mut self) {
        if let (Some(shared), Some(stream)) = (&self.shared, self.stream.as_mut()) {
            let mut run = Vec::with_capacity(gateway_tracing_core::tracer::SPANS_BUFFER_CAPACITY);
            let finished = stream.log(&shared.config, &ProxyHost, &shared.stats, &mut run);
            Self::export(shared, &run, &finished);
        }
    }

    fn response_end(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            stream.response_end(crate::proxy_host::now_nanos());
        }
    }
}
