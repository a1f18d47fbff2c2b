//! A scripted proxy-wasm host for the BUILT `gateway_tracing.wasm`, in the style of
//! proxy-wasm-test-framework: the module runs in [wasmi] (a pure-Rust interpreter) and every
//! import it makes, the proxy-wasm ABI 0.2.1 calls and the WASI ones, is answered here from
//! [`Host`], which a test scripts and then inspects. A test drives the callbacks Envoy would
//! make ([`Filter::configure`], [`Filter::request_headers`], ..., [`Filter::tick`],
//! [`Filter::respond`], [`Filter::drain`]), sees every `dispatch_http_call` ([`HttpCall`]),
//! every header write ([`HeaderWrite`]), every log line and metric, and can make any host
//! call answer a status of its choice ([`Host::fail`]) or hand back any bytes.
//!
//! A trap (a panic in the module aborts it: `unreachable`) is a [`Trap`]; after one, the
//! filter is dead, as the VM is in Envoy, and every later call returns the same trap.

pub mod scenario;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use wasmi::{Caller, Engine, Extern, Func, Instance, Linker, Memory, Module, Store, Val};

/// `proxy_status_t` values the host answers with.
pub mod status {
    pub const OK: u32 = 0;
    pub const NOT_FOUND: u32 = 1;
    pub const BAD_ARGUMENT: u32 = 2;
    pub const EMPTY: u32 = 7;
    pub const INTERNAL_FAILURE: u32 = 10;
    pub const UNIMPLEMENTED: u32 = 12;
    /// No status the ABI defines: what "a status the SDK does not expect" looks like.
    pub const UNKNOWN: u32 = 99;
}

/// `proxy_map_type_t`.
pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

/// Header pairs as the host holds them: any bytes, names included.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Builds [`Pairs`] from anything byte-like.
pub fn pairs<K: AsRef<[u8]>, V: AsRef<[u8]>>(items: &[(K, V)]) -> Pairs {
    items
        .iter()
        .map(|(k, v)| (k.as_ref().to_vec(), v.as_ref().to_vec()))
        .collect()
}

/// One `proxy_http_call` the module made.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub token: u32,
    /// The context that was current when the call was made.
    pub context: u32,
    pub cluster: String,
    pub headers: Pairs,
    pub body: Vec<u8>,
    pub timeout_ms: u32,
}

impl HttpCall {
    /// The first value of a header, as text (lossy).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// What a header write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOp {
    Replace,
    Add,
    Remove,
}

/// One header-map write by the module.
#[derive(Debug, Clone)]
pub struct HeaderWrite {
    pub context: u32,
    pub map: u32,
    pub op: WriteOp,
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

/// A metric the module defined, with its value.
#[derive(Debug, Clone)]
pub struct Metric {
    pub kind: u32,
    pub name: String,
    /// Counters and gauges: the running sum of increments.
    pub value: i64,
    /// Histograms: every recorded value.
    pub recorded: Vec<u64>,
}

/// One stream's header maps.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    pub request: Pairs,
    pub response: Pairs,
}

/// The scripted host: what the module sees, and what it did.
#[derive(Debug, Default)]
pub struct Host {
    pub plugin_config: Vec<u8>,
    /// Header maps by context id.
    pub streams: HashMap<u32, Stream>,
    /// The context the current callback runs in (set by [`Filter`] before each call).
    pub current: u32,
    /// Envoy attributes by dotted path (`"xds.cluster_name"`); `request.headers.<name>` is
    /// answered from the current stream's request headers.
    pub properties: HashMap<String, Vec<u8>>,
    /// Filter state written by the module (`proxy_set_property`).
    pub filter_state: Vec<(String, Vec<u8>)>,
    pub call_response_headers: Pairs,
    pub call_response_body: Vec<u8>,
    pub now_ns: u64,
    /// `proxy_log_level_t` answered by `proxy_get_log_level`.
    pub log_level: u32,
    pub logs: Vec<(u32, String)>,
    pub calls: Vec<HttpCall>,
    pub next_token: u32,
    pub tick_period_ms: Option<u32>,
    pub metrics: Vec<Metric>,
    pub writes: Vec<HeaderWrite>,
    /// `proxy_done` calls.
    pub done_calls: u32,
    /// What the module wrote to stdout/stderr (WASI `fd_write`).
    pub stdio: Vec<u8>,
    /// Environment variables the module sees (WASI `environ_get`).
    pub env: Vec<(String, String)>,
    /// Host calls (import names) answering this status instead of doing their work.
    pub faults: HashMap<String, u32>,
    /// Every host call made, by import name, in order.
    pub trace: Vec<&'static str>,
    rng: u64,
}

impl Host {
    /// Makes the host call `import` (e.g. `"proxy_get_buffer_bytes"`) answer `status` until
    /// [`Host::heal`].
    pub fn fail(&mut self, import: &str, status: u32) {
        self.faults.insert(import.to_string(), status);
    }

    pub fn heal(&mut self) {
        self.faults.clear();
    }

    /// A counter's or gauge's value by its stat name without the prefix (`"spans_created"`).
    pub fn metric(&self, name: &str) -> i64 {
        let full = format!("gateway_tracing.{name}");
        self.metrics
            .iter()
            .filter(|m| m.name == full)
            .map(|m| m.value)
            .sum()
    }

    /// Log lines containing `needle`.
    pub fn logged(&self, needle: &str) -> usize {
        self.logs.iter().filter(|(_, l)| l.contains(needle)).count()
    }

    fn stream(&mut self) -> &mut Stream {
        let id = self.current;
        self.streams.entry(id).or_default()
    }

    fn map(&mut self, map: u32) -> Option<&mut Pairs> {
        match map {
            REQUEST_HEADERS => Some(&mut self.stream().request),
            RESPONSE_HEADERS => Some(&mut self.stream().response),
            HTTP_CALL_RESPONSE_HEADERS => Some(&mut self.call_response_headers),
            _ => None,
        }
    }

    fn fault(&mut self, import: &'static str) -> Option<u32> {
        self.trace.push(import);
        self.faults.get(import).copied()
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: deterministic, so runs repeat.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The ABI's map serialisation: `u32` count, (name len, value len) pairs, then NUL-ended
/// names and values.
pub fn serialize_map(pairs: &Pairs) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// The inverse of [`serialize_map`]; `None` for a malformed buffer.
pub fn deserialize_map(buf: &[u8]) -> Option<Pairs> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let n = u32_at(0)?;
    let mut p = 4 + n.checked_mul(8)?;
    let mut out = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let (kl, vl) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let k = buf.get(p..p + kl)?.to_vec();
        p += kl + 1;
        let v = buf.get(p..p + vl)?.to_vec();
        p += vl + 1;
        out.push((k, v));
    }
    Some(out)
}

/// The module trapped (or could not be called): the message wasmi gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trap(pub String);

impl std::fmt::Display for Trap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wasm trap: {}", self.0)
    }
}

impl std::error::Error for Trap {}

type Ctx<'a> = Caller<'a, Host>;
type HostResult<T> = Result<T, wasmi::Error>;

fn memory(c: &Ctx<'_>) -> HostResult<Memory> {
    c.get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| wasmi::Error::new("module exports no memory"))
}

fn read(c: &Ctx<'_>, ptr: u32, len: u32) -> HostResult<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    memory(c)?
        .read(c, ptr as usize, &mut buf)
        .map_err(|e| wasmi::Error::new(format!("guest memory read: {e}")))?;
    Ok(buf)
}

fn write(c: &mut Ctx<'_>, ptr: u32, bytes: &[u8]) -> HostResult<()> {
    let m = memory(c)?;
    m.write(c, ptr as usize, bytes)
        .map_err(|e| wasmi::Error::new(format!("guest memory write: {e}")))
}

fn write_u32(c: &mut Ctx<'_>, ptr: u32, v: u32) -> HostResult<()> {
    write(c, ptr, &v.to_le_bytes())
}

/// Hands `bytes` to the module the way Envoy does: a buffer from its
/// `proxy_on_memory_allocate`, its address and size written to the two out-pointers.
fn hand_over(c: &mut Ctx<'_>, bytes: &[u8], data_out: u32, size_out: u32) -> HostResult<u32> {
    let alloc = c
        .get_export("proxy_on_memory_allocate")
        .and_then(Extern::into_func)
        .ok_or_else(|| wasmi::Error::new("no proxy_on_memory_allocate"))?;
    let alloc = alloc.typed::<u32, u32>(&*c)?;
    let ptr = alloc.call(&mut *c, bytes.len() as u32)?;
    if ptr == 0 && !bytes.is_empty() {
        return Ok(status::INTERNAL_FAILURE);
    }
    write(c, ptr, bytes)?;
    write_u32(c, data_out, ptr)?;
    write_u32(c, size_out, bytes.len() as u32)?;
    Ok(status::OK)
}

fn lower(b: &[u8]) -> Vec<u8> {
    b.to_ascii_lowercase()
}

/// Defines every import the filter (old builds included) makes.
fn define_imports(linker: &mut Linker<Host>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |c: Ctx<'_>, level: u32, ptr: u32, len: u32| -> HostResult<u32> {
            let msg = read(&c, ptr, len)?;
            let mut c = c;
            if let Some(s) = c.data_mut().fault("proxy_log") {
                return Ok(s);
            }
            let line = String::from_utf8_lossy(&msg).into_owned();
            c.data_mut().logs.push((level, line));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: Ctx<'_>, out: u32| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_get_log_level") {
                return Ok(s);
            }
            let level = c.data().log_level;
            write_u32(&mut c, out, level)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: Ctx<'_>, out: u32| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_get_current_time_nanoseconds") {
                return Ok(s);
            }
            let t = c.data().now_ns;
            write(&mut c, out, &t.to_le_bytes())?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut c: Ctx<'_>, ms: u32| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_set_tick_period_milliseconds") {
                return Ok(s);
            }
            c.data_mut().tick_period_ms = Some(ms);
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: Ctx<'_>,
         kind: u32,
         start: u32,
         max: u32,
         data: u32,
         size: u32|
         -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_get_buffer_bytes") {
                return Ok(s);
            }
            let buf = match kind {
                4 => c.data().call_response_body.clone(),
                7 => c.data().plugin_config.clone(),
                _ => return Ok(status::NOT_FOUND),
            };
            let from = (start as usize).min(buf.len());
            let to = from.saturating_add(max as usize).min(buf.len());
            let slice = buf.get(from..to).unwrap_or_default().to_vec();
            hand_over(&mut c, &slice, data, size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: Ctx<'_>, map: u32, data: u32, size: u32| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_get_header_map_pairs") {
                return Ok(s);
            }
            let Some(pairs) = c.data_mut().map(map).cloned() else {
                return Ok(status::BAD_ARGUMENT);
            };
            hand_over(&mut c, &serialize_map(&pairs), data, size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: Ctx<'_>, map: u32, kp: u32, kl: u32, data: u32, size: u32| -> HostResult<u32> {
            let key = lower(&read(&c, kp, kl)?);
            if let Some(s) = c.data_mut().fault("proxy_get_header_map_value") {
                return Ok(s);
            }
            let Some(pairs) = c.data_mut().map(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let value = pairs
                .iter()
                .find(|(k, _)| lower(k) == key)
                .map(|(_, v)| v.clone());
            match value {
                Some(v) => hand_over(&mut c, &v, data, size),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    for (name, op) in [
        ("proxy_replace_header_map_value", WriteOp::Replace),
        ("proxy_add_header_map_value", WriteOp::Add),
    ] {
        linker.func_wrap(
            "env",
            name,
            move |mut c: Ctx<'_>,
                  map: u32,
                  kp: u32,
                  kl: u32,
                  vp: u32,
                  vl: u32|
                  -> HostResult<u32> {
                let (key, value) = (read(&c, kp, kl)?, read(&c, vp, vl)?);
                let import = if op == WriteOp::Add {
                    "proxy_add_header_map_value"
                } else {
                    "proxy_replace_header_map_value"
                };
                if let Some(s) = c.data_mut().fault(import) {
                    return Ok(s);
                }
                let context = c.data().current;
                let h = c.data_mut();
                h.writes.push(HeaderWrite {
                    context,
                    map,
                    op,
                    name: key.clone(),
                    value: value.clone(),
                });
                let Some(pairs) = h.map(map) else {
                    return Ok(status::BAD_ARGUMENT);
                };
                if op == WriteOp::Replace {
                    pairs.retain(|(k, _)| lower(k) != lower(&key));
                }
                pairs.push((key, value));
                Ok(status::OK)
            },
        )?;
    }
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: Ctx<'_>, map: u32, kp: u32, kl: u32| -> HostResult<u32> {
            let key = read(&c, kp, kl)?;
            if let Some(s) = c.data_mut().fault("proxy_remove_header_map_value") {
                return Ok(s);
            }
            let context = c.data().current;
            let h = c.data_mut();
            h.writes.push(HeaderWrite {
                context,
                map,
                op: WriteOp::Remove,
                name: key.clone(),
                value: Vec::new(),
            });
            let Some(pairs) = h.map(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            pairs.retain(|(k, _)| lower(k) != lower(&key));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: Ctx<'_>, pp: u32, pl: u32, data: u32, size: u32| -> HostResult<u32> {
            let path = read(&c, pp, pl)?;
            if let Some(s) = c.data_mut().fault("proxy_get_property") {
                return Ok(s);
            }
            let segs: Vec<&[u8]> = path.split(|b| *b == 0).collect();
            let value = if let [b"request", b"headers", name] = segs.as_slice() {
                let name = lower(name);
                let vals: Vec<Vec<u8>> = c
                    .data_mut()
                    .stream()
                    .request
                    .iter()
                    .filter(|(k, _)| lower(k) == name)
                    .map(|(_, v)| v.clone())
                    .collect();
                (!vals.is_empty()).then(|| vals.join(&b","[..]))
            } else {
                let key = segs
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<Vec<_>>()
                    .join(".");
                c.data().properties.get(&key).cloned()
            };
            match value {
                Some(v) => hand_over(&mut c, &v, data, size),
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut c: Ctx<'_>, pp: u32, pl: u32, vp: u32, vl: u32| -> HostResult<u32> {
            let (path, value) = (read(&c, pp, pl)?, read(&c, vp, vl)?);
            if let Some(s) = c.data_mut().fault("proxy_set_property") {
                return Ok(s);
            }
            let path = String::from_utf8_lossy(&path).replace('\0', ".");
            c.data_mut().filter_state.push((path, value));
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_http_call",
        |mut c: Ctx<'_>,
         up: u32,
         ul: u32,
         hp: u32,
         hl: u32,
         bp: u32,
         bl: u32,
         tp: u32,
         tl: u32,
         timeout_ms: u32,
         token_out: u32|
         -> HostResult<u32> {
            let cluster = read(&c, up, ul)?;
            let headers = read(&c, hp, hl)?;
            let body = read(&c, bp, bl)?;
            let _trailers = read(&c, tp, tl)?;
            if let Some(s) = c.data_mut().fault("proxy_http_call") {
                return Ok(s);
            }
            let Some(headers) = deserialize_map(&headers) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let h = c.data_mut();
            h.next_token += 1;
            let token = h.next_token;
            let context = h.current;
            h.calls.push(HttpCall {
                token,
                context,
                cluster: String::from_utf8_lossy(&cluster).into_owned(),
                headers,
                body,
                timeout_ms,
            });
            write_u32(&mut c, token_out, token)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut c: Ctx<'_>, kind: u32, np: u32, nl: u32, out: u32| -> HostResult<u32> {
            let name = String::from_utf8_lossy(&read(&c, np, nl)?).into_owned();
            if let Some(s) = c.data_mut().fault("proxy_define_metric") {
                return Ok(s);
            }
            let h = c.data_mut();
            let id = match h.metrics.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    h.metrics.push(Metric {
                        kind,
                        name,
                        value: 0,
                        recorded: Vec::new(),
                    });
                    h.metrics.len() - 1
                }
            };
            write_u32(&mut c, out, id as u32)?;
            Ok(status::OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut c: Ctx<'_>, id: u32, offset: i64| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_increment_metric") {
                return Ok(s);
            }
            match c.data_mut().metrics.get_mut(id as usize) {
                Some(m) => {
                    m.value = m.value.saturating_add(offset);
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut c: Ctx<'_>, id: u32, value: u64| -> HostResult<u32> {
            if let Some(s) = c.data_mut().fault("proxy_record_metric") {
                return Ok(s);
            }
            match c.data_mut().metrics.get_mut(id as usize) {
                Some(m) => {
                    m.recorded.push(value);
                    Ok(status::OK)
                }
                None => Ok(status::NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut c: Ctx<'_>| -> HostResult<u32> {
        if let Some(s) = c.data_mut().fault("proxy_done") {
            return Ok(s);
        }
        c.data_mut().done_calls += 1;
        Ok(status::OK)
    })?;
    // Builds on the SDK's dispatcher call this before a callout answer.
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut c: Ctx<'_>, _id: u32| -> HostResult<u32> {
            Ok(c.data_mut()
                .fault("proxy_set_effective_context")
                .unwrap_or(status::OK))
        },
    )?;
    // WASI: randomness (deterministic here), environment, stdio, exit.
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "random_get",
        |mut c: Ctx<'_>, ptr: u32, len: u32| -> HostResult<u32> {
            let bytes: Vec<u8> = (0..len).map(|_| c.data_mut().next_random() as u8).collect();
            write(&mut c, ptr, &bytes)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_sizes_get",
        |mut c: Ctx<'_>, count_out: u32, size_out: u32| -> HostResult<u32> {
            let env = c.data().env.clone();
            let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            write_u32(&mut c, count_out, env.len() as u32)?;
            write_u32(&mut c, size_out, size as u32)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_get",
        |mut c: Ctx<'_>, ptrs: u32, buf: u32| -> HostResult<u32> {
            let env = c.data().env.clone();
            let mut at = buf;
            for (i, (k, v)) in env.iter().enumerate() {
                write_u32(&mut c, ptrs + 4 * i as u32, at)?;
                let entry = format!("{k}={v}\0");
                write(&mut c, at, entry.as_bytes())?;
                at += entry.len() as u32;
            }
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut c: Ctx<'_>, _fd: u32, iovs: u32, n: u32, written_out: u32| -> HostResult<u32> {
            let mut total = 0u32;
            for i in 0..n {
                let iov = read(&c, iovs + 8 * i, 8)?;
                let word = |at: usize| -> HostResult<u32> {
                    let b: [u8; 4] = iov
                        .get(at..at + 4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| wasmi::Error::new("short iovec"))?;
                    Ok(u32::from_le_bytes(b))
                };
                let (ptr, len) = (word(0)?, word(4)?);
                let bytes = read(&c, ptr, len)?;
                c.data_mut().stdio.extend_from_slice(&bytes);
                total += len;
            }
            write_u32(&mut c, written_out, total)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "proc_exit",
        |_c: Ctx<'_>, code: i32| -> HostResult<()> { Err(wasmi::Error::i32_exit(code)) },
    )?;
    Ok(())
}

/// Where the built module is: `$GATEWAY_TRACING_WASM`, else the workspace's
/// `target/gateway_tracing.wasm` (what `make build` writes).
pub fn wasm_path() -> PathBuf {
    std::env::var_os("GATEWAY_TRACING_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/gateway_tracing.wasm")
        })
}

/// A compiled module with the host's imports linked: instantiate it as often as needed.
pub struct Compiled {
    engine: Engine,
    module: Module,
    linker: Linker<Host>,
}

impl Compiled {
    /// Compiles the built module ([`wasm_path`]).
    pub fn load() -> Result<Compiled, Trap> {
        let path = wasm_path();
        let bytes = std::fs::read(&path).map_err(|e| {
            Trap(format!(
                "cannot read {} ({e}): run `make build` first",
                path.display()
            ))
        })?;
        Compiled::from_bytes(&bytes)
    }

    pub fn from_bytes(wasm: &[u8]) -> Result<Compiled, Trap> {
        let t = |e: wasmi::Error| Trap(e.to_string());
        let engine = Engine::default();
        let module = Module::new(&engine, wasm).map_err(t)?;
        let mut linker = Linker::<Host>::new(&engine);
        define_imports(&mut linker).map_err(t)?;
        // Any import the module has that this host does not implement traps when called.
        for import in module.imports() {
            if let wasmi::ExternType::Func(ty) = import.ty() {
                let what = format!(
                    "{}::{} is not implemented by the harness",
                    import.module(),
                    import.name()
                );
                let _ = linker.func_new(
                    import.module(),
                    import.name(),
                    ty.clone(),
                    move |_c: Caller<'_, Host>, _p: &[Val], _r: &mut [Val]| {
                        Err(wasmi::Error::new(what.clone()))
                    },
                );
            }
        }
        Ok(Compiled {
            engine,
            module,
            linker,
        })
    }
}

/// The root context id the harness creates.
pub const ROOT: u32 = 1;

/// The loaded module with its scripted host.
pub struct Filter {
    store: Store<Host>,
    instance: Instance,
    next_context: u32,
    trapped: Option<Trap>,
}

impl Filter {
    /// Loads the built module ([`wasm_path`]) and starts it as Envoy does: `_initialize`,
    /// the root context, `proxy_on_vm_start`.
    pub fn load() -> Result<Filter, Trap> {
        Filter::start(&Compiled::load()?, Host::default())
    }

    /// Loads a module from bytes with a prepared host.
    pub fn from_bytes(wasm: &[u8], host: Host) -> Result<Filter, Trap> {
        Filter::start(&Compiled::from_bytes(wasm)?, host)
    }

    /// A fresh VM of a compiled module (cheap: what a fuzz loop does per input).
    pub fn start(compiled: &Compiled, mut host: Host) -> Result<Filter, Trap> {
        let t = |e: wasmi::Error| Trap(e.to_string());
        if host.now_ns == 0 {
            // 2026-01-01T00:00:00Z: a plausible wall clock.
            host.now_ns = 1_767_225_600_000_000_000;
        }
        if host.log_level == 0 {
            host.log_level = 1; // debug
        }
        let mut store = Store::new(&compiled.engine, host);
        let instance = compiled
            .linker
            .instantiate(&mut store, &compiled.module)
            .and_then(|pre| pre.start(&mut store))
            .map_err(t)?;
        let mut f = Filter {
            store,
            instance,
            next_context: ROOT + 1,
            trapped: None,
        };
        f.call("_initialize", ROOT, &[])?;
        f.call(
            "proxy_on_context_create",
            ROOT,
            &[Val::I32(ROOT as i32), Val::I32(0)],
        )?;
        f.call(
            "proxy_on_vm_start",
            ROOT,
            &[Val::I32(ROOT as i32), Val::I32(0)],
        )?;
        Ok(f)
    }

    pub fn host(&self) -> &Host {
        self.store.data()
    }

    pub fn host_mut(&mut self) -> &mut Host {
        self.store.data_mut()
    }

    /// The trap that killed the module, if one did.
    pub fn trapped(&self) -> Option<&Trap> {
        self.trapped.as_ref()
    }

    /// Calls an export in `context`; a missing export is what Envoy does for it (nothing,
    /// `Continue`/`true`): `Ok(None)`.
    fn call(&mut self, export: &str, context: u32, args: &[Val]) -> Result<Option<i64>, Trap> {
        if let Some(t) = &self.trapped {
            return Err(t.clone());
        }
        let Some(func): Option<Func> = self.instance.get_func(&self.store, export) else {
            return Ok(None);
        };
        self.store.data_mut().current = context;
        let n = func.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); n];
        match func.call(&mut self.store, args, &mut results) {
            Ok(()) => Ok(results.first().map(|v| match v {
                Val::I32(x) => i64::from(*x),
                Val::I64(x) => *x,
                _ => 0,
            })),
            Err(e) => {
                // The module's panic hook logs why at critical level before it aborts.
                let why = self
                    .host()
                    .logs
                    .iter()
                    .rev()
                    .find(|(level, _)| *level == 5)
                    .map(|(_, l)| format!(" (module log: {l})"))
                    .unwrap_or_default();
                let trap = Trap(format!("{export}: {e}{why}"));
                self.trapped = Some(trap.clone());
                Err(trap)
            }
        }
    }

    /// `proxy_on_configure` with these plugin configuration bytes; `Ok(false)`: refused.
    pub fn configure(&mut self, config: &[u8]) -> Result<bool, Trap> {
        self.host_mut().plugin_config = config.to_vec();
        let n = config.len() as i32;
        Ok(self
            .call(
                "proxy_on_configure",
                ROOT,
                &[Val::I32(ROOT as i32), Val::I32(n)],
            )?
            .is_none_or(|r| r != 0))
    }

    /// A new HTTP stream under the root: `proxy_on_context_create`; returns its id.
    pub fn new_stream(&mut self) -> Result<u32, Trap> {
        let id = self.next_context;
        self.next_context += 1;
        self.host_mut().streams.insert(id, Stream::default());
        self.call(
            "proxy_on_context_create",
            id,
            &[Val::I32(id as i32), Val::I32(ROOT as i32)],
        )?;
        Ok(id)
    }

    /// `proxy_on_request_headers` with these headers (the stream's request map from now on).
    pub fn request_headers(
        &mut self,
        id: u32,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<(), Trap> {
        let n = headers.len() as i32;
        self.host_mut().streams.entry(id).or_default().request = headers;
        self.call(
            "proxy_on_request_headers",
            id,
            &[
                Val::I32(id as i32),
                Val::I32(n),
                Val::I32(end_of_stream as i32),
            ],
        )?;
        Ok(())
    }

    /// `proxy_on_response_headers` with these headers.
    pub fn response_headers(
        &mut self,
        id: u32,
        headers: Pairs,
        end_of_stream: bool,
    ) -> Result<(), Trap> {
        let n = headers.len() as i32;
        self.host_mut().streams.entry(id).or_default().response = headers;
        self.call(
            "proxy_on_response_headers",
            id,
            &[
                Val::I32(id as i32),
                Val::I32(n),
                Val::I32(end_of_stream as i32),
            ],
        )?;
        Ok(())
    }

    pub fn response_body(&mut self, id: u32, size: u32, end_of_stream: bool) -> Result<(), Trap> {
        self.call(
            "proxy_on_response_body",
            id,
            &[
                Val::I32(id as i32),
                Val::I32(size as i32),
                Val::I32(end_of_stream as i32),
            ],
        )?;
        Ok(())
    }

    pub fn response_trailers(&mut self, id: u32) -> Result<(), Trap> {
        self.call(
            "proxy_on_response_trailers",
            id,
            &[Val::I32(id as i32), Val::I32(0)],
        )?;
        Ok(())
    }

    /// `proxy_on_log` (Envoy's access-log phase: the request is over).
    pub fn log(&mut self, id: u32) -> Result<(), Trap> {
        self.call("proxy_on_log", id, &[Val::I32(id as i32)])?;
        Ok(())
    }

    /// `proxy_on_done` for a stream.
    pub fn done(&mut self, id: u32) -> Result<bool, Trap> {
        Ok(self
            .call("proxy_on_done", id, &[Val::I32(id as i32)])?
            .is_none_or(|r| r != 0))
    }

    /// `proxy_on_delete` for a stream (or the root).
    pub fn delete(&mut self, id: u32) -> Result<(), Trap> {
        self.call("proxy_on_delete", id, &[Val::I32(id as i32)])?;
        self.host_mut().streams.remove(&id);
        Ok(())
    }

    /// A whole request as Envoy drives one: create, request headers, response headers (end
    /// of stream), log, done, delete. Returns the stream id.
    pub fn request(&mut self, request: Pairs, response: Pairs) -> Result<u32, Trap> {
        let id = self.new_stream()?;
        self.request_headers(id, request, true)?;
        self.response_headers(id, response, true)?;
        self.log(id)?;
        self.done(id)?;
        self.delete(id)?;
        Ok(id)
    }

    /// `proxy_on_tick` on the root, after moving the clock by `advance_ms`.
    pub fn tick(&mut self, advance_ms: u64) -> Result<(), Trap> {
        self.advance(advance_ms);
        self.call("proxy_on_tick", ROOT, &[Val::I32(ROOT as i32)])?;
        Ok(())
    }

    pub fn advance(&mut self, ms: u64) {
        let h = self.host_mut();
        h.now_ns = h.now_ns.saturating_add(ms.saturating_mul(1_000_000));
    }

    /// The HTTP calls made so far, taken (the next call sees only newer ones).
    pub fn take_calls(&mut self) -> Vec<HttpCall> {
        std::mem::take(&mut self.host_mut().calls)
    }

    /// Delivers an answer to an HTTP call: `proxy_on_http_call_response` with these headers
    /// (any bytes; `:status` included by the caller, or not) and body.
    pub fn respond(&mut self, token: u32, headers: Pairs, body: &[u8]) -> Result<(), Trap> {
        let n = headers.len() as i32;
        let h = self.host_mut();
        h.call_response_headers = headers;
        h.call_response_body = body.to_vec();
        self.call(
            "proxy_on_http_call_response",
            ROOT,
            &[
                Val::I32(ROOT as i32),
                Val::I32(token as i32),
                Val::I32(n),
                Val::I32(body.len() as i32),
                Val::I32(0),
            ],
        )?;
        Ok(())
    }

    /// Answers an HTTP call with a status, extra headers and a body.
    pub fn respond_status(
        &mut self,
        token: u32,
        status: &[u8],
        extra: Pairs,
        body: &[u8],
    ) -> Result<(), Trap> {
        let mut headers = vec![(b":status".to_vec(), status.to_vec())];
        headers.extend(extra);
        self.respond(token, headers, body)
    }

    /// The plugin is stopping: `proxy_on_done` on the root; `Ok(true)`: done at once,
    /// `Ok(false)`: it calls `proxy_done` later (see [`Host::done_calls`]).
    pub fn drain(&mut self) -> Result<bool, Trap> {
        self.done(ROOT)
    }
}

/// A small valid plugin configuration: gateway mode, one collector cluster, 500 ms flushes,
/// fast retries.
pub const CONFIG: &str = r#"{
  "service_name": "harness-gateway",
  "exporter": {
    "cluster": "otel_collector",
    "authority": "otel-collector",
    "flush_interval_ms": 500,
    "retry": {"initial_backoff_ms": 100, "max_backoff_ms": 400, "max_elapsed_ms": 60000}
  }
}"#;

/// A sampled incoming `traceparent` (W3C's example trace id).
pub const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
pub const TRACE_ID_HEX: &str = "0af7651916cd43dd8448eb211c80319c";

/// A GET through the gateway to `path`, with the sampled [`TRACEPARENT`].
pub fn get(path: &str) -> Pairs {
    pairs(&[
        (":method", "GET"),
        (":path", path),
        (":authority", "shop.example"),
        (":scheme", "http"),
        ("traceparent", TRACEPARENT),
    ])
}

/// Response headers with a status.
pub fn status_headers(status: &str) -> Pairs {
    pairs(&[(":status", status)])
}

/// The exporter's accounting from the filter's own stats: (created, exported, dropped by any
/// reason, held).
pub fn accounting(h: &Host) -> (i64, i64, i64, i64) {
    let dropped = h
        .metrics
        .iter()
        .filter(|m| m.name.starts_with("gateway_tracing.spans_dropped_"))
        .map(|m| m.value)
        .sum();
    (
        h.metric("spans_created"),
        h.metric("spans_exported"),
        dropped,
        h.metric("export_queue_spans"),
    )
}

impl Filter {
    /// Loads the built module and configures it with [`CONFIG`], the upstream cluster
    /// `products` and a 200 response code as Envoy's attributes.
    pub fn configured() -> Result<Filter, Trap> {
        let mut f = Filter::load()?;
        f.set_upstream("products", 200);
        if !f.configure(CONFIG.as_bytes())? {
            return Err(Trap(format!("CONFIG refused: {:?}", f.host().logs)));
        }
        Ok(f)
    }

    /// Envoy's attributes for the next requests: the routed cluster, its address and the
    /// response code.
    pub fn set_upstream(&mut self, cluster: &str, code: u64) {
        let p = &mut self.host_mut().properties;
        p.insert("xds.cluster_name".into(), cluster.as_bytes().to_vec());
        p.insert("response.code".into(), code.to_le_bytes().to_vec());
        p.insert("upstream.address".into(), b"127.0.0.1:18082".to_vec());
    }
}
