//! The [`Host`], [`ExportHost`] and [`Stats`] traits implemented over proxy-wasm host calls,
//! always in their `Result`-returning form: a failed host call degrades tracing, never the
//! request.

use gateway_tracing_core::host::{ExportHost, ExportRequest, Host, HostError, Stats};
use gateway_tracing_core::metrics::Counter;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MapType, MetricType};
use std::cell::Cell;
use std::time::{Duration, UNIX_EPOCH};

fn err(what: &str, s: proxy_wasm::types::Status) -> HostError {
    HostError(format!("{what}: {s:?}"))
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

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
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

/// Envoy counters, defined once per VM.
pub struct ProxyStats {
    ids: Vec<Option<u32>>,
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
        ProxyStats { ids }
    }
}

impl Stats for ProxyStats {
    fn add(&self, counter: Counter, n: u64) {
        if let Some(Some(id)) = self.ids.get(counter.index()) {
            let _ = hostcalls::increment_metric(*id, i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
