//! The exporter's tests, by topic: [`defaults`], [`queue`], [`backoff`], [`response`],
//! [`request`], [`grpc`], [`drain`], [`diagnostics`]. Shared fixtures (mock host and stats, span
//! builders) live here.
#![allow(dead_code)]

mod backoff;
mod defaults;
mod diagnostics;
mod drain;
mod grpc;
mod queue;
mod request;
mod response;
mod size;

pub(super) use super::*;
pub(super) use crate::config::*;
pub(super) use crate::host::{HostError, HostErrorKind};
pub(super) use crate::otlp::{Framer, Span};
pub(super) use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
pub(super) use prost::Message;
pub(super) use std::cell::{Cell, RefCell};

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// (cluster, headers, body) of one dispatched request.
type Sent = (String, Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
struct MockExportHost {
    sent: RefCell<Vec<Sent>>,
    ticks: RefCell<Vec<Duration>>,
    fail_dispatch: Cell<Option<HostErrorKind>>,
    /// Wakes the exporter itself for a full batch (the native worker), counting the wakes.
    wakes_itself: Cell<bool>,
    wakes: Cell<u32>,
}
impl ExportHost for MockExportHost {
    fn dispatch(&self, req: &ExportRequest<'_>) -> Result<u32, HostError> {
        if let Some(kind) = self.fail_dispatch.get() {
            return Err(HostError::new("dispatch_http_call", kind));
        }
        let mut sent = self.sent.borrow_mut();
        sent.push((
            req.cluster.to_string(),
            req.headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            req.body.to_vec(),
        ));
        Ok(sent.len() as u32)
    }
    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        self.ticks.borrow_mut().push(period);
        Ok(())
    }
    fn wake_for_full_batch(&self) -> Result<bool, HostError> {
        if !self.wakes_itself.get() {
            return Ok(false);
        }
        self.wakes.set(self.wakes.get() + 1);
        Ok(true)
    }
}
impl MockExportHost {
    fn count(&self) -> usize {
        self.sent.borrow().len()
    }
    fn header(&self, i: usize, name: &str) -> Option<String> {
        self.sent.borrow()[i]
            .1
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

#[derive(Default)]
struct MockStats {
    counters: RefCell<HashMap<Counter, u64>>,
    gauges: RefCell<HashMap<Gauge, u64>>,
    recorded: RefCell<Vec<u64>>,
}
impl Stats for MockStats {
    fn add(&self, c: Counter, n: u64) {
        *self.counters.borrow_mut().entry(c).or_default() += n;
    }
    fn set(&self, g: Gauge, v: u64) {
        self.gauges.borrow_mut().insert(g, v);
    }
    fn record(&self, _h: Histogram, v: u64) {
        self.recorded.borrow_mut().push(v);
    }
}
impl MockStats {
    fn get(&self, c: Counter) -> u64 {
        self.counters.borrow().get(&c).copied().unwrap_or(0)
    }
    fn gauge(&self, g: Gauge) -> u64 {
        self.gauges.borrow().get(&g).copied().unwrap_or(0)
    }
    fn dropped(&self) -> u64 {
        Counter::drop_reasons().map(|c| self.get(c)).sum()
    }
    /// created = exported + dropped by reason + still held.
    fn assert_accounted(&self, e: &Exporter) {
        assert_eq!(
            self.get(Counter::SpansCreated),
            self.get(Counter::SpansExported) + self.dropped() + e.held_spans() as u64,
            "every span exported, dropped by reason, or held"
        );
    }
}

fn exporter(extra: &str) -> Exporter {
    let json = format!(
        r#"{{"service_name":"gw","exporter":{{"cluster":"otel","headers":{{"x-honeycomb-team":"secret"}}{extra}}}}}"#
    );
    let mut e = Exporter::new(&crate::config::parse(json.as_bytes(), &|_| None).unwrap());
    e.seed(42);
    e
}

/// `n` spans encoded back to back, as the tracer hands them over.
fn spans(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let span = Span {
            name: format!("s{:04}", i % 10_000),
            span_id: vec![1; 8],
            trace_id: vec![1; 16],
            start_time_unix_nano: 1_700_000_000_000_000_000,
            ..Default::default()
        };
        crate::otlp::encode_span_field(&span, &mut out);
    }
    out
}

/// `n` requests of one span each.
fn push(e: &mut Exporter, n: usize, host: &MockExportHost, stats: &MockStats) {
    let one = spans(1);
    for _ in 0..n {
        e.push(&one, 1, host, stats);
    }
}

fn status(s: u16) -> ExportResponse<'static> {
    ExportResponse {
        status: Some(s),
        ..Default::default()
    }
}

fn decoded(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).unwrap()
}

fn span_count(body: &[u8]) -> usize {
    decoded(body).resource_spans[0].scope_spans[0].spans.len()
}

/// The collector is failing and the exporter is backing off.
fn failing(e: &Exporter) -> bool {
    e.backoff.failing().is_some()
}
