//! The [`Host`], [`ExportHost`] and [`Stats`] traits implemented over proxy-wasm host calls,
//! always in their `Result`-returning form: a failed host call degrades tracing, never the
//! request.

use gateway_tracing_core::host::{
    ExportHost, ExportRequest, Host, HostError, HostErrorKind, Stats,
};
use gateway_tracing_core::metrics::Counter;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType, Status};
use std::cell::{Cell, RefCell};
use std::time::{Duration, UNIX_EPOCH};

/// A proxy-wasm status as the core's typed host error.
pub fn err(call: &'static str, s: Status) -> HostError {
    let kind = match s {
        Status::NotFound => HostErrorKind::NotFound,
        Status::BadArgument => HostErrorKind::BadArgument,
        Status::SerializationFailure | Status::ParseFailure => HostErrorKind::Serialization,
        Status::Empty => HostErrorKind::Empty,
        Status::InternalFailure => HostErrorKind::Internal,
        _ => HostErrorKind::Other,
    };
    HostError::new(call, kind)
}

pub fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

thread_local! {
    /// Fallback entropy state, only used if WASI randomness fails.
    static FALLBACK: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) };
}

/// The per-request host: header maps and properties of the current HTTP stream.
pub struct ProxyHost;

impl Host for ProxyHost {
    fn now_nanos(&self) -> u64 {
        now_nanos()
    }

    fn random_bytes(&self) -> [u8; 32] {
        let mut buf = [0u8; 32];
        if getrandom::fill(&mut buf).is_err() {
            // splitmix64 over time and a counter: unique enough for ids, never a panic.
            FALLBACK.with(|state| {
                for chunk in buf.chunks_mut(8) {
                    let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15) ^ now_nanos();
                    state.set(z);
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    z ^= z >> 31;
                    for (dst, src) in chunk.iter_mut().zip(z.to_le_bytes()) {
                        *dst = src;
                    }
                }
            });
        }
        buf
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(path.to_vec()).map_err(|s| err("get_property", s))
    }

    fn request_headers(&self) -> Result<Vec<(String, Vec<u8>)>, HostError> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders)
            .map_err(|s| err("get_header_map_pairs", s))
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        // Remove every copy first, then add one: exactly one value goes upstream.
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)
            .map_err(|s| err("remove header", s))?;
        if let Some(v) = value {
            hostcalls::add_map_value(MapType::HttpRequestHeaders, name, v)
                .map_err(|s| err("add header", s))?;
        }
        Ok(())
    }

    fn add_response_header(
        &mut self,
        name: &str,
        value: &str,
        replace: bool,
    ) -> Result<(), HostError> {
        if replace {
            hostcalls::remove_map_value(MapType::HttpResponseHeaders, name)
                .map_err(|s| err("remove response header", s))?;
        }
        hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value)
            .map_err(|s| err("add response header", s))
    }
}

/// Export through `dispatch_http_call`, from whichever context is active (the root context
/// on tick; an HTTP context only arms the tick).
pub struct ProxyExport;

impl ExportHost for ProxyExport {
    fn dispatch(&self, req: &ExportRequest<'_>) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(
            req.cluster,
            req.headers.clone(),
            Some(req.body),
            vec![],
            req.timeout,
        )
        .map_err(|s| err("dispatch_http_call", s))
    }

    fn set_tick_period(&self, period: Duration) -> Result<(), HostError> {
        hostcalls::set_tick_period(period).map_err(|s| err("set_tick_period", s))
    }
}

/// Envoy counters, defined once per VM. Increments accumulate in the VM and reach Envoy in
/// one host call per counter per [`ProxyStats::flush`] (each tick), not one per span.
pub struct ProxyStats {
    ids: Vec<Option<u32>>,
    pending: RefCell<Vec<u64>>,
}

impl ProxyStats {
    pub fn define() -> ProxyStats {
        let ids = Counter::ALL
            .iter()
            .map(
                |c| match hostcalls::define_metric(MetricType::Counter, c.name()) {
                    Ok(id) => Some(id),
                    Err(s) => {
                        log::warn!("could not define metric {}: {s:?}", c.name());
                        None
                    }
                },
            )
            .collect();
        ProxyStats {
            ids,
            pending: RefCell::new(vec![0; Counter::ALL.len()]),
        }
    }

    /// Pushes the accumulated increments to Envoy.
    pub fn flush(&self) {
        let Ok(mut pending) = self.pending.try_borrow_mut() else {
            return;
        };
        for (id, n) in self.ids.iter().zip(pending.iter_mut()) {
            if let (Some(id), true) = (id, *n > 0) {
                let _ = hostcalls::increment_metric(*id, i64::try_from(*n).unwrap_or(i64::MAX));
                *n = 0;
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
}
