//! The whole filter driven by arbitrary bytes: the fuzz target (`fuzz/fuzz_targets/filter.rs`)
//! and the seeded run in `make test` both call [`run`]. The bytes pick a configuration, then a
//! sequence of operations: streams created, their callbacks in any order with header maps of
//! any bytes, ticks, export answers (any status bytes, headers with any bytes, garbage or
//! `partial_success` bodies with any numbers), host calls failing with any status, drains.
//!
//! Invariants checked: the module never traps; it writes no header but the documented trace
//! headers (request: `traceparent`, `tracestate`, B3; response: `traceresponse`); and, from the
//! filter's own counters once the host stops failing and a tick has flushed them,
//! `spans_created = spans_exported + spans_dropped_* + export_queue_spans`.

use crate::filter::{accounting, unaccounted, Compiled, Filter, Trap, CONFIG, ROOT};
use crate::host::{pairs, status, Host, Pairs, REQUEST_HEADERS, RESPONSE_HEADERS};

/// Plugin configurations the first byte picks from.
pub const CONFIGS: &[&str] = &[
    CONFIG,
    r#"{"service_name": "fuzz", "propagators": ["tracecontext", "b3"], "trust": "untrusted",
        "response_trace_header": "traceresponse", "sampler": "parentbased_traceidratio",
        "sampler_ratio": 0.5, "sampler_keep_errors": true, "access_log_ids": true,
        "call_metrics": true, "request_headers": ["user-agent", "x-api-key"],
        "response_headers": ["content-type"],
        "exporter": {"cluster": "otel_collector", "authority": "c", "flush_interval_ms": 100,
                     "max_export_batch_size": 2,
                     "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 200, "max_elapsed_ms": 2000}}}"#,
    r#"{"service_name": "fuzz", "semconv": "both", "propagators": ["b3multi"],
        "exporter": {"cluster": "otel_collector", "authority": "c", "flush_interval_ms": 100,
                     "max_export_batch_size": 3, "max_queue_bytes": 65536, "compression": "gzip",
                     "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 100, "max_elapsed_ms": 500}}}"#,
];

/// Header names the filter may write (request and response maps).
pub const WRITABLE_REQUEST_HEADERS: &[&str] = &[
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];
pub const WRITABLE_RESPONSE_HEADERS: &[&str] = &["traceresponse"];
/// Request headers the filter may only remove: a client's `baggage` at an untrusted edge
/// (`untrusted_baggage: drop`), a client's `x-envoy-original-path` at a gateway that hands its
/// CLIENT spans to the upstream filter.
pub const REMOVABLE_REQUEST_HEADERS: &[&str] = &["baggage", "x-envoy-original-path"];

/// Host calls the fuzzer may make fail. (`proxy_define_metric` is left out: a metric that was
/// never defined cannot be counted, so the accounting could not be read back.)
const FAILABLE: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_get_header_map_pairs",
    "proxy_get_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_add_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_http_call",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_done",
];

/// Reads the input a byte at a time; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::from(self.byte()) % n
        }
    }
    fn take(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1).min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from.get(self.below(from.len())).copied().unwrap_or("")
    }
}

const NAMES: &[&str] = &[
    ":method",
    ":path",
    ":authority",
    ":scheme",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-sampled",
    "x-b3-flags",
    "baggage",
    "user-agent",
    "x-api-key",
    "x-request-id",
    "content-type",
    "retry-after",
    ":status",
];

const VALUES: &[&str] = &[
    "GET",
    "/api/products?x=1",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
    "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d",
    "a=1,b=2",
    "200",
    "503",
    "1",
    "0",
    "",
];

/// A header map: names from the pool or any bytes, values from the pool or any bytes.
fn header_map(b: &mut Bytes<'_>) -> Pairs {
    let n = b.below(8);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = if b.below(4) == 0 {
            b.take(12)
        } else {
            b.pick(NAMES).as_bytes().to_vec()
        };
        let value = if b.below(3) == 0 {
            b.take(40)
        } else {
            b.pick(VALUES).as_bytes().to_vec()
        };
        out.push((name, value));
    }
    out
}

/// A protobuf `ExportTraceServiceResponse { partial_success { rejected_spans, error_message } }`.
fn partial_success(rejected: i64, message: &[u8]) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut inner = vec![0x08];
    varint(rejected as u64, &mut inner);
    inner.push(0x12);
    varint(message.len() as u64, &mut inner);
    inner.extend_from_slice(message);
    let mut out = vec![0x0a];
    varint(inner.len() as u64, &mut out);
    out.extend_from_slice(&inner);
    out
}

fn answer_body(b: &mut Bytes<'_>) -> Vec<u8> {
    match b.below(5) {
        0 => Vec::new(),
        1 => b.take(64),
        2 => {
            let rejected = match b.below(4) {
                0 => -1,
                1 => i64::MAX,
                2 => 1,
                _ => i64::from(b.byte()),
            };
            let msg = b.take(16);
            partial_success(rejected, &msg)
        }
        3 => format!(
            r#"{{"partialSuccess":{{"rejectedSpans":"{}","errorMessage":"x"}}}}"#,
            i64::from(b.byte()) - 2
        )
        .into_bytes(),
        _ => {
            let mut v = partial_success(i64::from(b.byte()), b"m");
            let cut = b.below(v.len() + 1);
            v.truncate(cut);
            v
        }
    }
}

fn answer_status(b: &mut Bytes<'_>) -> Option<Vec<u8>> {
    const STATUSES: &[&str] = &[
        "200", "200", "200", "204", "400", "404", "408", "413", "429", "500", "502", "503", "504",
    ];
    match b.below(6) {
        0 => None,
        1 => Some(b.take(5)),
        _ => Some(b.pick(STATUSES).as_bytes().to_vec()),
    }
}

/// What one run did (for a test to see that the input drove the filter somewhere).
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub operations: usize,
    pub requests: usize,
    pub exports: usize,
    pub answers: usize,
    pub spans_created: i64,
    pub spans_exported: i64,
}

/// Runs one input through a fresh VM of `compiled`; `Err` names the broken invariant.
pub fn run(compiled: &Compiled, data: &[u8]) -> Result<Summary, String> {
    let mut b = Bytes(data);
    let mut f = Filter::start(compiled, Host::default()).map_err(|t| t.to_string())?;
    let config = CONFIGS
        .get(b.below(CONFIGS.len()))
        .copied()
        .unwrap_or(CONFIG);
    f.set_upstream("products", 200);
    let trap = |t: Trap| format!("trap: {t}");
    if !f.configure(config.as_bytes()).map_err(trap)? {
        return Err(format!("configuration refused: {:?}", f.host().logs));
    }
    let mut sum = Summary::default();
    let mut streams: Vec<u32> = Vec::new();
    let mut pending: Vec<u32> = Vec::new();
    let mut ops = 0usize;
    while !b.done() && ops < 400 {
        ops += 1;
        let stream = streams.get(b.below(streams.len().max(1))).copied();
        match b.below(16) {
            0 | 1 => {
                if streams.len() < 8 {
                    streams.push(f.new_stream().map_err(trap)?);
                }
            }
            2 | 3 => {
                if let Some(id) = stream {
                    let mut h = header_map(&mut b);
                    if b.below(3) > 0 {
                        h.extend(pairs(&[
                            (":method", "GET"),
                            (":path", "/api/products"),
                            (":authority", "shop"),
                        ]));
                    }
                    let eos = b.below(2) == 0;
                    f.request_headers(id, h, eos).map_err(trap)?;
                    sum.requests += 1;
                }
            }
            4 => {
                if let Some(id) = stream {
                    let code = u64::from(b.byte()) * 3;
                    f.host_mut()
                        .properties
                        .insert("response.code".into(), code.to_le_bytes().to_vec());
                    let h = header_map(&mut b);
                    let eos = b.below(2) == 0;
                    f.response_headers(id, h, eos).map_err(trap)?;
                }
            }
            5 => {
                if let Some(id) = stream {
                    let size = u32::from(b.byte());
                    let eos = b.below(2) == 0;
                    f.response_body(id, size, eos).map_err(trap)?;
                }
            }
            6 => {
                if let Some(id) = stream {
                    f.response_trailers(id).map_err(trap)?;
                }
            }
            7 => {
                if let Some(id) = stream {
                    f.log(id).map_err(trap)?;
                }
            }
            8 => {
                if let Some(id) = stream {
                    f.done(id).map_err(trap)?;
                    f.delete(id).map_err(trap)?;
                    streams.retain(|s| *s != id);
                }
            }
            9 | 10 => {
                let ms = u64::from(b.byte()) * 4;
                f.tick(ms).map_err(trap)?;
            }
            11 | 12 => {
                let calls = f.take_calls();
                sum.exports += calls.len();
                pending.extend(calls.iter().map(|c| c.token));
                if !pending.is_empty() {
                    let token = pending.remove(b.below(pending.len()));
                    let mut headers = header_map(&mut b);
                    if let Some(s) = answer_status(&mut b) {
                        headers.insert(0, (b":status".to_vec(), s));
                    }
                    if b.below(2) == 0 {
                        headers.push((b"retry-after".to_vec(), b.take(8)));
                    }
                    let body = answer_body(&mut b);
                    f.respond(token, headers, &body).map_err(trap)?;
                    sum.answers += 1;
                }
            }
            13 => {
                let import = b.pick(FAILABLE);
                let s = match b.below(4) {
                    0 => status::UNKNOWN,
                    1 => status::INTERNAL_FAILURE,
                    2 => status::BAD_ARGUMENT,
                    _ => u32::from(b.byte()),
                };
                f.host_mut().fail(import, s);
            }
            14 => f.host_mut().heal(),
            _ => {
                // An answer for a token never issued, or a drain.
                if b.below(2) == 0 {
                    let token = 10_000 + u32::from(b.byte());
                    f.respond(token, vec![], b"").map_err(trap)?;
                } else {
                    f.drain().map_err(trap)?;
                }
            }
        }
    }
    sum.operations = ops;
    // Let the host behave, flush the counters, check the books.
    f.host_mut().heal();
    f.tick(1).map_err(trap)?;
    f.tick(1).map_err(trap)?;
    check_writes(f.host())?;
    if let Some(e) = unaccounted(f.host()) {
        return Err(e);
    }
    // And the root goes away: whatever is held is counted as a shutdown drop.
    f.delete(ROOT).map_err(trap)?;
    let (created, exported, dropped, held) = accounting(f.host());
    if created != exported + dropped || held != 0 {
        return Err(format!(
            "after delete: created {created} != exported {exported} + dropped {dropped} (held {held})"
        ));
    }
    sum.spans_created = created;
    sum.spans_exported = exported;
    Ok(sum)
}

fn check_writes(h: &Host) -> Result<(), String> {
    for w in &h.writes {
        let name = String::from_utf8_lossy(&w.name).to_ascii_lowercase();
        let allowed = match w.map {
            REQUEST_HEADERS => WRITABLE_REQUEST_HEADERS,
            RESPONSE_HEADERS => WRITABLE_RESPONSE_HEADERS,
            _ => &[],
        };
        let removal = w.map == REQUEST_HEADERS
            && matches!(w.op, crate::host::WriteOp::Remove)
            && REMOVABLE_REQUEST_HEADERS.contains(&name.as_str());
        if !allowed.contains(&name.as_str()) && !removal {
            return Err(format!("undocumented header write: {w:?}"));
        }
    }
    Ok(())
}

/// A deterministic pseudo-random input of `len` bytes from `seed` (splitmix64).
pub fn seeded_input(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}
