//! A filter config's Envoy stats: the core's metrics list (`gateway_tracing.*` counters, gauges
//! and histograms, defined once per config and shared by every worker), this glue's panic
//! counter, and the per-target call metrics of `call_metrics: true`.

use crate::ffi::{self, FilterConfigEnvoyPtr, ModuleBuffer};
use gateway_tracing_core::config::Config;
use gateway_tracing_core::host::Stats;
use gateway_tracing_core::metrics::{Counter, Gauge, Histogram};
use gateway_tracing_core::tracer::calls::{self, CallClass, CallRecord};

/// The counter this glue adds to the core's list: hooks that panicked (each failed open).
pub const PANICS_COUNTER: &str = "gateway_tracing.native_panics";

/// A pointer Envoy gave us that stays valid for the filter config's life and may be used from
/// any thread for the callbacks this module uses with it (stats, scheduler commit).
#[derive(Clone, Copy)]
pub struct SharedPtr(pub *mut std::ffi::c_void);
// SAFETY: Envoy's stats and the config scheduler's `commit` are thread-safe; the callout is
// only made on the main thread (see `MainExport`).
unsafe impl Send for SharedPtr {}
// SAFETY: as above.
unsafe impl Sync for SharedPtr {}

fn define(
    f: unsafe extern "C" fn(
        FilterConfigEnvoyPtr,
        ModuleBuffer,
        *mut ModuleBuffer,
        usize,
        *mut usize,
    ) -> u32,
    envoy: FilterConfigEnvoyPtr,
    name: &str,
) -> usize {
    let mut id = 0usize;
    // SAFETY: called from `on_http_filter_config_new` with the config Envoy passed; `name`
    // outlives the call; no labels.
    let r = unsafe {
        f(
            envoy,
            ModuleBuffer::of(name.as_bytes()),
            std::ptr::null_mut(),
            0,
            &mut id,
        )
    };
    if r != ffi::METRICS_SUCCESS {
        log::warn!("could not define metric {name}: result {r}");
        return 0;
    }
    id
}

/// Envoy stats of one filter config (Envoy's ids are 1-based; 0 marks one it refused).
pub struct NativeStats {
    envoy: SharedPtr,
    counters: Vec<usize>,
    gauges: Vec<usize>,
    histograms: Vec<usize>,
    panics: usize,
}

type MetricCall =
    unsafe extern "C" fn(FilterConfigEnvoyPtr, usize, *mut ModuleBuffer, usize, u64) -> u32;

impl NativeStats {
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn define(envoy: FilterConfigEnvoyPtr) -> NativeStats {
        NativeStats {
            envoy: SharedPtr(envoy),
            counters: Counter::ALL
                .iter()
                .map(|c| {
                    define(
                        ffi::envoy_dynamic_module_callback_http_filter_config_define_counter,
                        envoy,
                        c.name(),
                    )
                })
                .collect(),
            gauges: Gauge::ALL
                .iter()
                .map(|g| {
                    define(
                        ffi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
                        envoy,
                        g.name(),
                    )
                })
                .collect(),
            histograms: Histogram::ALL
                .iter()
                .map(|h| {
                    define(
                        ffi::envoy_dynamic_module_callback_http_filter_config_define_histogram,
                        envoy,
                        h.name(),
                    )
                })
                .collect(),
            panics: define(
                ffi::envoy_dynamic_module_callback_http_filter_config_define_counter,
                envoy,
                PANICS_COUNTER,
            ),
        }
    }

    fn call(&self, f: MetricCall, id: usize, value: u64) {
        if id == 0 {
            return;
        }
        // SAFETY: a metric id this config defined; the config outlives every user of `self`.
        let _ = unsafe { f(self.envoy.0, id, std::ptr::null_mut(), 0, value) };
    }

    /// A hook panicked (and failed open).
    pub fn panicked(&self) {
        self.call(
            ffi::envoy_dynamic_module_callback_http_filter_config_increment_counter,
            self.panics,
            1,
        );
    }
}

impl Stats for NativeStats {
    fn add(&self, counter: Counter, n: u64) {
        if let Some(&id) = self.counters.get(counter.index()) {
            self.call(
                ffi::envoy_dynamic_module_callback_http_filter_config_increment_counter,
                id,
                n,
            );
        }
    }

    /// One process-wide value (the wasm build sums per-VM values).
    fn set(&self, gauge: Gauge, value: u64) {
        if let Some(&id) = self.gauges.get(gauge.index()) {
            self.call(
                ffi::envoy_dynamic_module_callback_http_filter_config_set_gauge,
                id,
                value,
            );
        }
    }

    fn record(&self, histogram: Histogram, value: u64) {
        if let Some(&id) = self.histograms.get(histogram.index()) {
            self.call(
                ffi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value,
                id,
                value,
            );
        }
    }
}

/// Per-target call metrics (`call_metrics: true`): `gateway_tracing.call.<target>.*`, as the
/// wasm build defines them.
#[derive(Default)]
pub struct CallMetrics {
    targets: Vec<([usize; 5], usize)>,
}

impl CallMetrics {
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn define(envoy: FilterConfigEnvoyPtr, config: &Config) -> CallMetrics {
        if !config.call_metrics {
            return CallMetrics::default();
        }
        let targets = calls::targets(config)
            .into_iter()
            .map(|t| {
                let counters = CallClass::ALL.map(|c| {
                    define(
                        ffi::envoy_dynamic_module_callback_http_filter_config_define_counter,
                        envoy,
                        &calls::metric_name(&t, c.suffix()),
                    )
                });
                let histogram = define(
                    ffi::envoy_dynamic_module_callback_http_filter_config_define_histogram,
                    envoy,
                    &calls::metric_name(&t, calls::DURATION_SUFFIX),
                );
                (counters, histogram)
            })
            .collect();
        CallMetrics { targets }
    }

    pub fn record(&self, stats: &NativeStats, call: &CallRecord) {
        let Some((counters, histogram)) = self.targets.get(call.target) else {
            return;
        };
        if let Some(&id) = counters.get(call.class.index()) {
            stats.call(
                ffi::envoy_dynamic_module_callback_http_filter_config_increment_counter,
                id,
                1,
            );
        }
        stats.call(
            ffi::envoy_dynamic_module_callback_http_filter_config_record_histogram_value,
            *histogram,
            call.duration_ms,
        );
    }
}
