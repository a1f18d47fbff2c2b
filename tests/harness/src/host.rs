//! The scripted host: what the module sees ([`Host`]'s maps, properties, configuration, clock,
//! scripted failures) and what it did (calls, header writes, metrics, logs). The imports that
//! answer the module from it are in `imports.rs`.

use std::collections::HashMap;

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
    /// A host that re-enters the module: when set, `proxy_http_call` answers the call at once,
    /// calling `proxy_on_http_call_response` (this `:status`, no body) before it returns.
    pub answer_inline: Option<Vec<u8>>,
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

    pub(crate) fn stream(&mut self) -> &mut Stream {
        let id = self.current;
        self.streams.entry(id).or_default()
    }

    pub(crate) fn map(&mut self, map: u32) -> Option<&mut Pairs> {
        match map {
            REQUEST_HEADERS => Some(&mut self.stream().request),
            RESPONSE_HEADERS => Some(&mut self.stream().response),
            HTTP_CALL_RESPONSE_HEADERS => Some(&mut self.call_response_headers),
            _ => None,
        }
    }

    pub(crate) fn fault(&mut self, import: &'static str) -> Option<u32> {
        self.trace.push(import);
        self.faults.get(import).copied()
    }

    pub(crate) fn next_random(&mut self) -> u64 {
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
