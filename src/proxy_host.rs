//! The [`Host`], [`ExportHost`] and [`Stats`] traits implemented over the non-panicking ABI
//! layer ([`abi`]): a failed host call degrades tracing, never the request.

use crate::abi;
use crate::abi::MetricType;
use gateway_tracing_core::config::Config;
use gateway_tracing_core::host::{ExportHost, ExportRequest, HeaderMap, Host, HostError, Stats};
use gateway_tracing_core::ids::IdGenerator;
use gateway_tracing_core::metrics::{Counter, Gauge, Histogram};
use gateway_tracing_core::tracer::calls::{self, CallClass, CallRecord};
use std::cell::{Cell, RefCell};
use std::time::Duration;

/// Wall-clock nanoseconds; 0 when the host refuses (the core treats time as advisory).
pub fn now_nanos() -> u64 {
    abi::current_time_nanos().unwrap_or(0)
}

thread_local! {
    /// The VM's id generator ([`IdGenerator`]): seeded once from WASI randomness, instead of a
    /// `random_get` host call per request.
    static IDS: Cell<Option<IdGenerator>> = const { Cell::new(None) };
}

/// A seed from WASI randomness; without it, time and the address of a stack value (never a
/// panic).
fn seed() -> IdGenerator {
    let mut seed = [0u8; 8];
    if getrandom::fill(&mut seed).is_err() {
        let t = now_nanos() ^ (std::ptr::addr_of!(seed) as u64).rotate_left(32);
        seed = t.to_le_bytes();
    }
    IdGenerator::from_seed(u64::from_le_bytes(seed))
}

/// The per-request host: header maps and properties of the current HTTP stream.
pub struct ProxyHost;

impl Host for ProxyHost {
    fn now_nanos(&self) -> u64 {
        now_nanos()
    }

    fn random_bytes(&self) -> [u8; 32] {
        let mut ids = IDS.get().unwrap_or_else(seed);
        let bytes = ids.random_bytes();
        IDS.set(Some(ids));
        bytes
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        abi::property(path)
    }

    fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        abi::header_value(abi::REQUEST_HEADERS, name)
    }

    fn request_header_joined(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        abi::property(&["request", "headers", name])
    }

    fn request_headers(&self) -> Result<HeaderMap, HostError> {
        abi::header_map(abi::REQUEST_HEADERS)
    }

    fn response_headers(&self) -> Result<HeaderMap, HostError> {
        abi::header_map(abi::RESPONSE_HEADERS)
    }

    fn set_filter_state(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        abi::set_property(&[key], value)
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        // One host call either way. Envoy's replace removes every copy and adds one value
        // (proven by the duplicate-traceparent e2e case): exactly one goes upstream.
        match value {
            Some(v) => abi::replace_header(abi::REQUEST_HEADERS, name, v),
            None => abi::remove_header(abi::REQUEST_HEADERS, name),
        }
    }

    fn add_response_header(
        &mut self,
        name: &str,
        value: &str,
        replace: bool,
    ) -> Result<(), HostError> {
        if replace {
            abi::remove_header(abi::RESPONSE_HEADERS, name)?;
        }
        abi::add_header(abi::RESPONSE_HEADERS, name, value)
    }
}

/// Export through `dispatch_http_call`, from whichever context is active (the root context
/// on tick; an HTTP context only arms the tick).
pub struct ProxyExport;

impl ExportHost for ProxyExport {
    fn dispatch(&self, req: &ExportRequest<'_>) -> Result<u32, HostError> {
        abi::http_call(req.cluster, &req.headers, req.body, req.timeout)
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        abi::set_tick_period(period)
    }
}

fn define(kind: MetricType, name: &str) -> Option<u32> {
    match abi::define_metric(kind, name) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!("could not define metric {name}: {e}");
            None
        }
    }
}

/// Envoy counters, gauges and histograms, defined once per VM. Counter increments accumulate
/// in the VM and reach Envoy in one host call per counter per [`ProxyStats::flush`] (each
/// tick), not one per span. Gauges are per VM but one stat in Envoy: each VM adds the change
/// of its own value, so Envoy shows the sum over workers. Histogram values are recorded at
/// once (one per export answer).
pub struct ProxyStats {
    ids: Vec<Option<u32>>,
    pending: RefCell<Vec<u64>>,
    gauge_ids: Vec<Option<u32>>,
    /// (value set by the exporter, value last pushed to Envoy) per gauge.
    gauges: RefCell<Vec<(u64, u64)>>,
    histogram_ids: Vec<Option<u32>>,
}

impl ProxyStats {
    pub fn define() -> ProxyStats {
        ProxyStats {
            ids: Counter::ALL
                .iter()
                .map(|c| define(MetricType::Counter, c.name()))
                .collect(),
            pending: RefCell::new(vec![0; Counter::ALL.len()]),
            gauge_ids: Gauge::ALL
                .iter()
                .map(|g| define(MetricType::Gauge, g.name()))
                .collect(),
            gauges: RefCell::new(vec![(0, 0); Gauge::ALL.len()]),
            histogram_ids: Histogram::ALL
                .iter()
                .map(|h| define(MetricType::Histogram, h.name()))
                .collect(),
        }
    }

    /// Pushes the accumulated increments and gauge changes to Envoy.
    pub fn flush(&self) {
        if let Ok(mut pending) = self.pending.try_borrow_mut() {
            for (id, n) in self.ids.iter().zip(pending.iter_mut()) {
                if let (Some(id), true) = (id, *n > 0) {
                    // A refused increment stays pending for the next flush: counts are
                    // late, never lost (created = exported + dropped holds in Envoy's stats).
                    if abi::increment_metric(*id, i64::try_from(*n).unwrap_or(i64::MAX)).is_ok() {
                        *n = 0;
                    }
                }
            }
        }
        if let Ok(mut gauges) = self.gauges.try_borrow_mut() {
            for (id, (want, pushed)) in self.gauge_ids.iter().zip(gauges.iter_mut()) {
                if let (Some(id), true) = (id, want != pushed) {
                    let delta = i64::try_from(*want)
                        .unwrap_or(i64::MAX)
                        .saturating_sub(i64::try_from(*pushed).unwrap_or(i64::MAX));
                    if abi::increment_metric(*id, delta).is_ok() {
                        *pushed = *want;
                    }
                }
            }
        }
    }
}

impl Stats for ProxyStats {
    fn add(&self, counter: Counter, n: u64) {
        if let Ok(mut pending) = self.pending.try_borrow_mut() {
            if let Some(slot) = pending.get_mut(counter.index()) {
                *slot = slot.saturating_add(n);
            }
        }
    }

    fn set(&self, gauge: Gauge, value: u64) {
        if let Ok(mut gauges) = self.gauges.try_borrow_mut() {
            if let Some(slot) = gauges.get_mut(gauge.index()) {
                slot.0 = value;
            }
        }
    }

    fn record(&self, histogram: Histogram, value: u64) {
        if let Some(Some(id)) = self.histogram_ids.get(histogram.index()) {
            let _ = abi::record_metric(*id, value);
        }
    }
}

/// Per-target call metrics (`call_metrics: true`), defined once at configure time:
/// `gateway_tracing.call.<target>.{rq_2xx,rq_3xx,rq_4xx,rq_5xx,failed}` counters and a
/// `gateway_tracing.call.<target>.duration_ms` histogram per configured cluster.
#[derive(Default)]
pub struct CallMetrics {
    /// Per target: counter ids by [`CallClass::index`], then the histogram id.
    targets: Vec<([Option<u32>; 5], Option<u32>)>,
}

impl CallMetrics {
    pub fn define(config: &Config) -> CallMetrics {
        let targets = calls::targets(config)
            .into_iter()
            .map(|t| {
                let counters = CallClass::ALL
                    .map(|c| define(MetricType::Counter, &calls::metric_name(&t, c.suffix())));
                let histogram = define(
                    MetricType::Histogram,
                    &calls::metric_name(&t, calls::DURATION_SUFFIX),
                );
                (counters, histogram)
            })
            .collect();
        CallMetrics { targets }
    }

    pub fn record(&self, call: &CallRecord) {
        let Some((counters, histogram)) = self.targets.get(call.target) else {
            return;
        };
        if let Some(Some(id)) = counters.get(call.class.index()) {
            let _ = abi::increment_metric(*id, 1);
        }
        if let Some(id) = histogram {
            let _ = abi::record_metric(*id, call.duration_ms);
        }
    }
}
