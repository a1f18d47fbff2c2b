//! One HTTP stream as a host glue sees it, whatever the placement: the glue forwards Envoy's
//! callbacks in order ([`Stream::start`] at request headers, [`Stream::response_headers`],
//! [`Stream::response_end`], [`Stream::log`], [`Stream::done`]) and the stream decides what
//! each means for its [`Placement`]. The glue never branches on the mode; what comes out is
//! the finished spans' bytes (for the exporter) and a call record (for call metrics).

use super::attempt::{attempt_completion, start_attempt, AttemptBook};
use super::calls::{self, CallRecord};
use super::completion::Completion;
use super::request::ActiveRequest;
use super::spans::finish;
use super::start::start;
use crate::config::{Config, Mode};
use crate::host::{Host, Stats};
use std::cell::RefCell;

/// Where the filter sits, as far as a stream's life is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The HTTP connection manager's filter chain (gateway, sidecars): the request ends in
    /// the log phase, when Envoy's response details are complete.
    Downstream,
    /// A cluster's upstream filter chain (`mode: "upstream_filter"`): the stream is one
    /// attempt; Envoy 1.40 calls no log phase there, so the attempt ends when the stream is
    /// destroyed, with the `:status` the attempt's response headers carried.
    UpstreamAttempt,
}

impl Placement {
    pub fn of(config: &Config) -> Placement {
        match config.mode {
            Mode::UpstreamFilter => Placement::UpstreamAttempt,
            Mode::Gateway | Mode::SidecarInbound | Mode::SidecarOutbound => Placement::Downstream,
        }
    }
}

/// What a finished stream produced.
#[derive(Debug, Default)]
pub struct Finished {
    /// Spans written into the caller's buffer (OTLP `ScopeSpans.spans` fields back to back).
    pub spans: usize,
    /// The upstream call, for `call_metrics` (downstream placement only).
    pub call: Option<CallRecord>,
}

/// The tracer's state for one stream, from request headers to its end.
#[derive(Debug)]
pub struct Stream {
    placement: Placement,
    req: Option<ActiveRequest>,
    /// Upstream attempt: its `:status`, once its response headers came.
    attempt_status: Option<u16>,
    /// `sampler_keep_errors`: the response trace header for a 5xx, which the request is kept
    /// for ([`ActiveRequest::response_header_for`]); `None` where it cannot be kept.
    kept_header: Option<(&'static str, String, bool)>,
}

impl Stream {
    /// Request headers: the trace starts (see [`start`]); an upstream attempt is numbered and
    /// parented through the VM's `book` (a busy book, which only a re-entrant callback could
    /// cause, leaves the attempt traced as a plain call).
    pub fn start(
        config: &Config,
        host: &mut dyn Host,
        stats: &dyn Stats,
        book: &RefCell<AttemptBook>,
    ) -> Stream {
        let placement = Placement::of(config);
        let req = match (placement, book.try_borrow_mut()) {
            (Placement::UpstreamAttempt, Ok(mut book)) => {
                start_attempt(config, host, stats, &mut book)
            }
            _ => start(config, host, stats),
        };
        let kept_header = (req.may_be_kept(config) && req.response_header.is_some())
            .then(|| req.response_header_for(config, Some(500)))
            .flatten();
        Stream {
            placement,
            req: Some(req),
            attempt_status: None,
            kept_header,
        }
    }

    /// The request as started (tests, diagnostics).
    pub fn request(&self) -> Option<&ActiveRequest> {
        self.req.as_ref()
    }

    /// Response headers: the response trace header (decided at request start; with
    /// `sampler_keep_errors`, a 5xx says it is kept) is added; an upstream attempt notes its
    /// `:status`.
    pub fn response_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) {
        let Some(req) = self.req.as_ref() else { return };
        // The status is read only where it is needed.
        let status = if self.placement == Placement::UpstreamAttempt || self.kept_header.is_some() {
            host.response_headers()
                .ok()
                .and_then(|h| h.get(":status").and_then(|s| s.parse::<u16>().ok()))
        } else {
            None
        };
        let header = match (&self.kept_header, status) {
            (Some(kept), Some(500..)) => Some(kept),
            _ => req.response_header.as_ref(),
        };
        if let Some((name, value, replace)) = header {
            if let Err(e) = host.add_response_header(name, value, *replace) {
                log::debug!("could not add the {name} response header: {e}");
            }
        }
        if self.placement == Placement::UpstreamAttempt {
            self.attempt_status = status;
        }
        if end_of_stream {
            self.response_end(host.now_nanos());
        }
    }

    /// The response's last byte passed this filter: the CLIENT span ends here.
    pub fn response_end(&mut self, now_ns: u64) {
        if let Some(req) = self.req.as_mut().filter(|r| r.client.is_some()) {
            req.response_complete(now_ns);
        }
    }

    /// The log phase: the request's spans are written into `out`. An upstream attempt ends
    /// here too, should a later Envoy call the log phase for upstream filters.
    pub fn log(
        &mut self,
        config: &Config,
        host: &dyn Host,
        stats: &dyn Stats,
        out: &mut Vec<u8>,
    ) -> Finished {
        let Some(req) = self.req.take() else {
            return Finished::default();
        };
        // An unsampled request produces no spans (unless failures are kept or calls counted):
        // Envoy's log-phase attributes are not read.
        if !req.wants_completion(config) {
            return Finished::default();
        }
        match self.placement {
            Placement::UpstreamAttempt => {
                let done = attempt_completion(host, &req, self.attempt_status);
                Finished {
                    spans: finish(config, &req, &done, stats, out),
                    call: None,
                }
            }
            Placement::Downstream => {
                let done = Completion::read(host, config);
                Finished {
                    call: calls::record(config, &req, &done),
                    spans: finish(config, &req, &done, stats, out),
                }
            }
        }
    }

    /// The stream is destroyed. An upstream attempt ends here (Envoy 1.40 calls no log phase
    /// for upstream filters); a downstream stream has ended in [`Stream::log`] already.
    pub fn done(
        &mut self,
        config: &Config,
        host: &dyn Host,
        stats: &dyn Stats,
        out: &mut Vec<u8>,
    ) -> Finished {
        match self.placement {
            Placement::UpstreamAttempt => self.log(config, host, stats, out),
            Placement::Downstream => Finished::default(),
        }
    }
}
