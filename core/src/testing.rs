//! Test doubles for the host boundary ([`crate::host`]): a [`MockHost`] built with a builder
//! (in the style of Kuadrant/wasm-shim's test hosts), a [`MockStats`] that counts, and helpers
//! for reading the OTLP spans the tracer builds.
//!
//! Compiled for tests, and for the host micro-benchmarks with the `testing` feature.
use crate::config::Config;
use crate::host::{HeaderMap, Host, HostError, HostErrorKind, Stats};
use crate::metrics::Counter;
use crate::otlp::{Event, Span};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use std::cell::RefCell;
use std::collections::HashMap;

/// An in-memory [`Host`] for one request.
///
/// `set_request_header` follows the trait contract (and the glue's `proxy_host`): every existing
/// value of the header (case-insensitive) is removed, then the new value, if any, is appended.
#[derive(Debug, Clone)]
pub struct MockHost {
    headers: Vec<(String, Vec<u8>)>,
    /// `headers` in the host's serialisation, built on first read (what Envoy copies into
    /// the VM), so the micro-benchmark measures the core, not the mock.
    serialized: std::cell::OnceCell<HeaderMap>,
    properties: HashMap<Vec<String>, Vec<u8>>,
    now: u64,
    random: [u8; 32],
    fail_set: bool,
    /// Every `set_request_header` call, in order: `(name, value)`, `None` for a removal.
    pub set_calls: Vec<(String, Option<String>)>,
    response_headers: Vec<(String, Vec<u8>)>,
    /// Filter state set by the tracer: `(key, value)`.
    pub filter_state: Vec<(String, String)>,
    /// The response headers added (`add_response_header`), replacement applied.
    pub added_response_headers: Vec<(String, String)>,
    /// Host reads so far, by kind: whole request-header maps, joined single headers
    /// (`request_header_joined`), properties. What the tracer's read budget tests count.
    pub map_reads: std::cell::Cell<usize>,
    pub joined_reads: std::cell::Cell<usize>,
    pub property_reads: std::cell::Cell<usize>,
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    pub fn new() -> Self {
        MockHost {
            headers: Vec::new(),
            serialized: std::cell::OnceCell::new(),
            properties: HashMap::new(),
            now: 0,
            random: [0x11; 32],
            fail_set: false,
            set_calls: Vec::new(),
            response_headers: Vec::new(),
            filter_state: Vec::new(),
            added_response_headers: Vec::new(),
            map_reads: Default::default(),
            joined_reads: Default::default(),
            property_reads: Default::default(),
        }
    }

    /// Appends a request header (duplicates are kept, in order).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.serialized = std::cell::OnceCell::new();
        self.headers
            .push((name.to_string(), value.as_bytes().to_vec()));
        self
    }

    /// Appends a response header (read in the log phase).
    pub fn response_header(mut self, name: &str, value: &str) -> Self {
        self.response_headers
            .push((name.to_string(), value.as_bytes().to_vec()));
        self
    }

    /// Sets an Envoy attribute, raw bytes.
    pub fn property(mut self, path: &[&str], value: &[u8]) -> Self {
        self.properties
            .insert(path.iter().map(|s| s.to_string()).collect(), value.to_vec());
        self
    }

    /// Sets an integer Envoy attribute as Envoy serialises it (8 little-endian bytes).
    pub fn property_u64(self, path: &[&str], value: u64) -> Self {
        self.property(path, &value.to_le_bytes())
    }

    /// Wall-clock time the host reports, nanoseconds.
    pub fn now(mut self, nanos: u64) -> Self {
        self.now = nanos;
        self
    }

    /// Changes the clock of an existing host (log phase after request headers).
    pub fn set_now(&mut self, nanos: u64) {
        self.now = nanos;
    }

    /// The 32 bytes `random_bytes` returns.
    pub fn random(mut self, bytes: [u8; 32]) -> Self {
        self.random = bytes;
        self
    }

    /// Makes every `set_request_header` call fail (the call is still recorded).
    pub fn failing_set_header(mut self) -> Self {
        self.fail_set = true;
        self
    }

    /// The current request headers.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// Every current value of a header (case-insensitive), as text.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The only value of a header; panics when it is absent or repeated.
    pub fn single_header(&self, name: &str) -> String {
        let values = self.header_values(name);
        assert_eq!(
            values.len(),
            1,
            "expected exactly one {name} header, got {values:?}"
        );
        values.into_iter().next().unwrap()
    }
}

impl Host for MockHost {
    fn now_nanos(&self) -> u64 {
        self.now
    }

    fn random_bytes(&self) -> [u8; 32] {
        self.random
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.property_reads.set(self.property_reads.get() + 1);
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        Ok(self.properties.get(&key).cloned())
    }

    fn request_header(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone()))
    }

    fn request_header_joined(&self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.joined_reads.set(self.joined_reads.get() + 1);
        let values: Vec<&[u8]> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect();
        Ok((!values.is_empty()).then(|| values.join(&b","[..])))
    }

    fn request_headers(&self) -> Result<HeaderMap, HostError> {
        self.map_reads.set(self.map_reads.get() + 1);
        Ok(self
            .serialized
            .get_or_init(|| {
                HeaderMap::from_pairs(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            })
            .clone())
    }

    fn response_headers(&self) -> Result<HeaderMap, HostError> {
        Ok(HeaderMap::from_pairs(
            self.response_headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice())),
        ))
    }

    fn set_filter_state(&mut self, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.filter_state
            .push((key.to_string(), String::from_utf8_lossy(value).into_owned()));
        Ok(())
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        self.set_calls
            .push((name.to_string(), value.map(str::to_string)));
        if self.fail_set {
            return Err(HostError::new("replace_header", HostErrorKind::Internal));
        }
        self.serialized = std::cell::OnceCell::new();
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            self.headers.push((name.to_string(), v.as_bytes().to_vec()));
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
            self.added_response_headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        }
        self.added_response_headers
            .push((name.to_string(), value.to_string()));
        Ok(())
    }
}

/// A [`Stats`] that counts per [`Counter`].
#[derive(Debug, Default)]
pub struct MockStats(RefCell<HashMap<Counter, u64>>);

impl Stats for MockStats {
    fn add(&self, counter: Counter, n: u64) {
        *self.0.borrow_mut().entry(counter).or_default() += n;
    }
}

impl MockStats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.0.borrow().get(&counter).copied().unwrap_or(0)
    }

    /// Sum of all counters (to assert "nothing was counted").
    pub fn total(&self) -> u64 {
        self.0.borrow().values().sum()
    }
}

/// Parses a configuration with an empty environment; panics with the error text on failure.
pub fn config(json: &str) -> Config {
    crate::config::parse(json.as_bytes(), &|_| None)
        .unwrap_or_else(|e| panic!("test config does not parse: {e}\n{json}"))
}

/// An attribute value, as a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Other(String),
}

impl Val {
    pub fn str(s: &str) -> Val {
        Val::Str(s.to_string())
    }
}

fn kv_val(kv: &KeyValue) -> Val {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Val::Str(s.clone()),
        Some(any_value::Value::IntValue(i)) => Val::Int(*i),
        other => Val::Other(format!("{other:?}")),
    }
}

/// The value of attribute `key` in a list; `None` when absent. Panics when repeated.
pub fn attr_in(attrs: &[KeyValue], key: &str) -> Option<Val> {
    let found: Vec<&KeyValue> = attrs.iter().filter(|a| a.key == key).collect();
    assert!(
        found.len() <= 1,
        "attribute {key} appears {} times",
        found.len()
    );
    found.first().map(|kv| kv_val(kv))
}

/// The value of attribute `key` on a span.
pub fn attr(span: &Span, key: &str) -> Option<Val> {
    attr_in(&span.attributes, key)
}

/// The string attribute `key` on a span; panics when absent or not a string.
pub fn attr_str(span: &Span, key: &str) -> String {
    match attr(span, key) {
        Some(Val::Str(s)) => s,
        other => panic!(
            "span {:?}: attribute {key} is {other:?}, not a string",
            span.name
        ),
    }
}

/// The names of a span's events, in order.
pub fn event_names(span: &Span) -> Vec<&str> {
    span.events.iter().map(|e| e.name.as_str()).collect()
}

/// The only event named `name` on a span.
pub fn event<'a>(span: &'a Span, name: &str) -> &'a Event {
    let found: Vec<&Event> = span.events.iter().filter(|e| e.name == name).collect();
    assert_eq!(
        found.len(),
        1,
        "span {:?}: expected one {name} event, got {:?}",
        span.name,
        event_names(span)
    );
    found[0]
}

/// Lower-case hex of id bytes (trace, span ids on OTLP spans).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
