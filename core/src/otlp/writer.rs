//! A protobuf writer for finished spans, straight into the exporter's byte format: each span
//! is appended as one `ScopeSpans.spans` field (tag, length, `Span` message), with attribute
//! keys borrowed (`&'static str` mostly) and values written from wherever they live. No
//! `opentelemetry-proto` structs, no per-attribute `String`s.
//!
//! Fields are written in field-number order and proto3 defaults are skipped, as prost does,
//! so the output is byte-identical to encoding the equivalent `opentelemetry_proto` `Span`
//! with prost (tested below, and every tracer test decodes what this writes).
//!
//! Field numbers: `opentelemetry/proto/trace/v1/trace.proto` and `common/v1/common.proto`.
//!
//! Span limits ([`Limits`], as the OpenTelemetry SDK's "Span Limits"): string values are cut
//! to the value length on a UTF-8 boundary; attributes, events and links beyond their count
//! are dropped and counted in the span's (and event's) `dropped_*_count` fields.

use prost::encoding::{encode_varint, encoded_len_varint};

/// `ScopeSpans.spans` (2), length-delimited.
const TAG_SCOPE_SPANS_SPANS: u8 = 0x12;
// Span
const TAG_TRACE_ID: u8 = 0x0a; // 1, bytes
const TAG_SPAN_ID: u8 = 0x12; // 2, bytes
const TAG_TRACE_STATE: u8 = 0x1a; // 3, string
const TAG_PARENT_SPAN_ID: u8 = 0x22; // 4, bytes
const TAG_NAME: u8 = 0x2a; // 5, string
const TAG_KIND: u8 = 0x30; // 6, enum (varint)
const TAG_START: u8 = 0x39; // 7, fixed64
const TAG_END: u8 = 0x41; // 8, fixed64
const TAG_ATTRIBUTES: u8 = 0x4a; // 9, KeyValue
const TAG_DROPPED_ATTRIBUTES: u8 = 0x50; // 10, uint32
const TAG_EVENTS: u8 = 0x5a; // 11, Event
const TAG_DROPPED_EVENTS: u8 = 0x60; // 12, uint32
const TAG_LINKS: u8 = 0x6a; // 13, Link
const TAG_DROPPED_LINKS: u8 = 0x70; // 14, uint32
const TAG_STATUS: u8 = 0x7a; // 15, Status
const TAG_FLAGS: [u8; 2] = [0x85, 0x01]; // 16, fixed32
                                         // Span.Event
const TAG_EVENT_TIME: u8 = 0x09; // 1, fixed64
const TAG_EVENT_NAME: u8 = 0x12; // 2, string
const TAG_EVENT_ATTRIBUTES: u8 = 0x1a; // 3, KeyValue
const TAG_EVENT_DROPPED_ATTRIBUTES: u8 = 0x20; // 4, uint32
                                               // Span.Link
const TAG_LINK_TRACE_ID: u8 = 0x0a; // 1, bytes
const TAG_LINK_SPAN_ID: u8 = 0x12; // 2, bytes
const TAG_LINK_TRACE_STATE: u8 = 0x1a; // 3, string
const TAG_LINK_FLAGS: u8 = 0x35; // 6, fixed32
                                 // Status
const TAG_STATUS_MESSAGE: u8 = 0x12; // 2, string
const TAG_STATUS_CODE: u8 = 0x18; // 3, enum
                                  // KeyValue / AnyValue / ArrayValue
const TAG_KV_KEY: u8 = 0x0a; // 1, string
const TAG_KV_VALUE: u8 = 0x12; // 2, AnyValue
const TAG_ANY_STRING: u8 = 0x0a; // AnyValue.string_value = 1
const TAG_ANY_BOOL: u8 = 0x10; // AnyValue.bool_value = 2
const TAG_ANY_INT: u8 = 0x18; // AnyValue.int_value = 3
const TAG_ANY_ARRAY: u8 = 0x2a; // AnyValue.array_value = 5
const TAG_ARRAY_VALUES: u8 = 0x0a; // ArrayValue.values = 1

/// Bytes a length reservation starts with; a span body is almost always 128..16383 bytes.
const SPAN_LEN_RESERVED: usize = 2;

fn len_delimited_len(n: usize) -> usize {
    encoded_len_varint(n as u64) + n
}

/// Appends `v` as a protobuf varint. Most values written here (lengths of attributes, keys
/// and values) are under 128: one byte, one push, instead of `encode_varint`'s generic
/// `BufMut` loop (the writer's largest single cost under `perf`). Same bytes (tested).
#[inline]
fn put_varint(v: u64, out: &mut Vec<u8>) {
    if v < 0x80 {
        out.push(v as u8);
    } else {
        encode_varint(v, out);
    }
}

fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// Writes a length prefix for the body that starts at `body_start` into the `reserved` bytes
/// before it, moving the body when the varint needs more or fewer bytes.
fn patch_len(out: &mut Vec<u8>, len_pos: usize, reserved: usize) {
    let body_len = out.len() - len_pos - reserved;
    let mut prefix = [0u8; 10];
    let mut cursor: &mut [u8] = &mut prefix;
    encode_varint(body_len as u64, &mut cursor);
    let need = encoded_len_varint(body_len as u64);
    if need != reserved {
        out.splice(len_pos..len_pos + reserved, std::iter::repeat_n(0, need));
    }
    if let (Some(dst), Some(src)) = (out.get_mut(len_pos..len_pos + need), prefix.get(..need)) {
        dst.copy_from_slice(src);
    }
}

/// Span limits (OpenTelemetry SDK "Span Limits"; the `OTEL_SPAN_*_LIMIT` family).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// String attribute values (each element of an array too) longer than this many bytes
    /// are cut to it, on a UTF-8 character boundary.
    pub attribute_value_length: usize,
    /// Attributes per span, and per event, at most.
    pub attribute_count: u32,
    pub event_count: u32,
    pub link_count: u32,
}

impl Limits {
    pub const UNLIMITED: Limits = Limits {
        attribute_value_length: usize::MAX,
        attribute_count: u32::MAX,
        event_count: u32::MAX,
        link_count: u32::MAX,
    };
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// What the limits did to one list of attributes.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    written: u32,
    dropped: u32,
}

/// Attributes of a span or an event: `KeyValue` messages under `tag`, within the limits.
pub struct Attrs<'a> {
    out: &'a mut Vec<u8>,
    tag: u8,
    limits: Limits,
    tally: &'a mut Tally,
    /// String values cut to the length limit (the span's count).
    truncated: &'a mut u32,
}

impl Attrs<'_> {
    /// Room for one more attribute; when there is none, it is counted as dropped.
    fn admit(&mut self) -> bool {
        if self.tally.written < self.limits.attribute_count {
            self.tally.written += 1;
            true
        } else {
            self.tally.dropped = self.tally.dropped.saturating_add(1);
            false
        }
    }

    /// `v` within the value length limit (counted when cut).
    fn cut<'v>(&mut self, v: &'v str) -> &'v str {
        let c = truncate_utf8(v, self.limits.attribute_value_length);
        if c.len() < v.len() {
            *self.truncated = self.truncated.saturating_add(1);
        }
        c
    }

    fn kv_head(&mut self, key: &str, any_len: usize) {
        let kv_len = 1 + len_delimited_len(key.len()) + 1 + len_delimited_len(any_len);
        self.out.push(self.tag);
        put_varint(kv_len as u64, self.out);
        put_bytes(self.out, TAG_KV_KEY, key.as_bytes());
        self.out.push(TAG_KV_VALUE);
        put_varint(any_len as u64, self.out);
    }

    /// A string attribute.
    pub fn str(&mut self, key: &str, value: &str) {
        if !self.admit() {
            return;
        }
        let value = self.cut(value);
        self.kv_head(key, 1 + len_delimited_len(value.len()));
        put_bytes(self.out, TAG_ANY_STRING, value.as_bytes());
    }

    /// A string attribute written from pieces (no intermediate `String`); the whole value is
    /// cut to the length limit.
    pub fn str_parts(&mut self, key: &str, parts: &[&str]) {
        if !self.admit() {
            return;
        }
        let full: usize = parts.iter().map(|p| p.len()).sum();
        let mut budget = self.limits.attribute_value_length;
        if full > budget {
            *self.truncated = self.truncated.saturating_add(1);
        }
        let mut kept: [&str; 8] = [""; 8];
        let mut n = 0;
        for p in parts {
            let Some(slot) = kept.get_mut(n) else { break };
            let c = truncate_utf8(p, budget);
            *slot = c;
            n += 1;
            budget -= c.len();
            if c.len() < p.len() {
                break;
            }
        }
        let kept = kept.get(..n).unwrap_or(&[]);
        let len: usize = kept.iter().map(|p| p.len()).sum();
        self.kv_head(key, 1 + len_delimited_len(len));
        self.out.push(TAG_ANY_STRING);
        put_varint(len as u64, self.out);
        for p in kept {
            self.out.extend_from_slice(p.as_bytes());
        }
    }

    /// An integer attribute (`int_value`, int64: negative numbers as 10-byte varints).
    pub fn int(&mut self, key: &str, value: i64) {
        if !self.admit() {
            return;
        }
        let v = value as u64;
        self.kv_head(key, 1 + encoded_len_varint(v));
        self.out.push(TAG_ANY_INT);
        put_varint(v, self.out);
    }

    /// A boolean attribute.
    pub fn bool(&mut self, key: &str, value: bool) {
        if !self.admit() {
            return;
        }
        self.kv_head(key, 2);
        self.out.push(TAG_ANY_BOOL);
        self.out.push(u8::from(value));
    }

    /// A string-array attribute whose key is written from pieces (`http.request.header.` +
    /// name).
    pub fn str_array_key(&mut self, key: &[&str], values: &[&str]) {
        if !self.admit() {
            return;
        }
        let cut: Vec<&str> = values.iter().map(|v| self.cut(v)).collect();
        let values = cut.as_slice();
        let key_len: usize = key.iter().map(|k| k.len()).sum();
        let elem_len = |v: &str| 1 + len_delimited_len(v.len());
        let array_len: usize = values
            .iter()
            .map(|v| 1 + len_delimited_len(elem_len(v)))
            .sum();
        let any_len = 1 + len_delimited_len(array_len);
        let kv_len = 1 + len_delimited_len(key_len) + 1 + len_delimited_len(any_len);
        self.out.push(self.tag);
        put_varint(kv_len as u64, self.out);
        self.out.push(TAG_KV_KEY);
        put_varint(key_len as u64, self.out);
        for k in key {
            self.out.extend_from_slice(k.as_bytes());
        }
        self.out.push(TAG_KV_VALUE);
        put_varint(any_len as u64, self.out);
        self.out.push(TAG_ANY_ARRAY);
        put_varint(array_len as u64, self.out);
        for v in values {
            self.out.push(TAG_ARRAY_VALUES);
            put_varint(elem_len(v) as u64, self.out);
            put_bytes(self.out, TAG_ANY_STRING, v.as_bytes());
        }
    }

    /// A string-array attribute (`array_value` of `string_value`s).
    #[cfg(test)]
    pub fn str_array(&mut self, key: &str, values: &[&str]) {
        self.str_array_key(&[key], values);
    }
}

/// Span kind values (`Span.SpanKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Server = 2,
    Client = 3,
}

/// The fixed fields of a span, written by [`SpanWriter::begin`].
pub struct Head<'a> {
    pub trace_id: &'a [u8; 16],
    pub span_id: &'a [u8; 8],
    pub trace_state: &'a str,
    pub parent_span_id: Option<&'a [u8; 8]>,
    /// The span name, as pieces joined by single spaces.
    pub name: &'a [&'a str],
    pub kind: Kind,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// One span being written. Call in field order: [`attrs`](Self::attrs), then
/// [`event`](Self::event)s, [`link`](Self::link)s, [`error_status`](Self::error_status), and
/// [`finish`](Self::finish).
pub struct SpanWriter<'a> {
    out: &'a mut Vec<u8>,
    len_pos: usize,
    limits: Limits,
    attrs: Tally,
    events: Tally,
    links: Tally,
    truncated: u32,
    /// Event attributes dropped (in each event's own field; summed for the hits).
    event_attrs_dropped: u32,
    /// The last field group written: 0 attributes, 1 events, 2 links, 3 status. The
    /// `dropped_*_count` of a group is written when the next begins (field order).
    stage: u8,
}

/// What the span limits did to one span.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LimitHits {
    /// String values cut to the length limit.
    pub truncated: u32,
    /// Attributes (the span's and its events'), events and links dropped.
    pub dropped: u32,
}

impl<'a> SpanWriter<'a> {
    /// Appends the field tag and the span's fixed fields (1-8) to `out`.
    pub fn begin(out: &'a mut Vec<u8>, h: &Head<'_>) -> SpanWriter<'a> {
        out.push(TAG_SCOPE_SPANS_SPANS);
        let len_pos = out.len();
        out.extend_from_slice(&[0; SPAN_LEN_RESERVED]);
        put_bytes(out, TAG_TRACE_ID, h.trace_id);
        put_bytes(out, TAG_SPAN_ID, h.span_id);
        if !h.trace_state.is_empty() {
            put_bytes(out, TAG_TRACE_STATE, h.trace_state.as_bytes());
        }
        if let Some(p) = h.parent_span_id {
            put_bytes(out, TAG_PARENT_SPAN_ID, p);
        }
        let name_len =
            h.name.iter().map(|p| p.len()).sum::<usize>() + h.name.len().saturating_sub(1);
        if name_len > 0 {
            out.push(TAG_NAME);
            put_varint(name_len as u64, out);
            for (i, p) in h.name.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(p.as_bytes());
            }
        }
        out.push(TAG_KIND);
        out.push(h.kind as u8);
        if h.start_ns != 0 {
            out.push(TAG_START);
            out.extend_from_slice(&h.start_ns.to_le_bytes());
        }
        if h.end_ns != 0 {
            out.push(TAG_END);
            out.extend_from_slice(&h.end_ns.to_le_bytes());
        }
        SpanWriter {
            out,
            len_pos,
            limits: Limits::UNLIMITED,
            attrs: Tally::default(),
            events: Tally::default(),
            links: Tally::default(),
            truncated: 0,
            event_attrs_dropped: 0,
            stage: 0,
        }
    }

    /// Applies span limits to what is written from now on.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Moves on to field group `stage`, writing the dropped counts of the groups it passes.
    fn enter(&mut self, stage: u8) {
        let groups = [
            (TAG_DROPPED_ATTRIBUTES, self.attrs.dropped),
            (TAG_DROPPED_EVENTS, self.events.dropped),
            (TAG_DROPPED_LINKS, self.links.dropped),
        ];
        while self.stage < stage {
            if let Some((tag, dropped)) = groups.get(usize::from(self.stage)) {
                if *dropped > 0 {
                    self.out.push(*tag);
                    put_varint(u64::from(*dropped), self.out);
                }
            }
            self.stage += 1;
        }
    }

    /// The span's attributes (field 9).
    pub fn attrs(&mut self) -> Attrs<'_> {
        Attrs {
            out: self.out,
            tag: TAG_ATTRIBUTES,
            limits: self.limits,
            tally: &mut self.attrs,
            truncated: &mut self.truncated,
        }
    }

    /// One event (field 11) with its attributes.
    pub fn event(&mut self, time_ns: u64, name: &str, attrs: impl FnOnce(&mut Attrs<'_>)) {
        self.enter(1);
        if self.events.written >= self.limits.event_count {
            self.events.dropped = self.events.dropped.saturating_add(1);
            return;
        }
        self.events.written += 1;
        self.out.push(TAG_EVENTS);
        let len_pos = self.out.len();
        self.out.push(0);
        if time_ns != 0 {
            self.out.push(TAG_EVENT_TIME);
            self.out.extend_from_slice(&time_ns.to_le_bytes());
        }
        if !name.is_empty() {
            put_bytes(self.out, TAG_EVENT_NAME, name.as_bytes());
        }
        let mut tally = Tally::default();
        attrs(&mut Attrs {
            out: self.out,
            tag: TAG_EVENT_ATTRIBUTES,
            limits: self.limits,
            tally: &mut tally,
            truncated: &mut self.truncated,
        });
        if tally.dropped > 0 {
            self.out.push(TAG_EVENT_DROPPED_ATTRIBUTES);
            put_varint(u64::from(tally.dropped), self.out);
            self.event_attrs_dropped = self.event_attrs_dropped.saturating_add(tally.dropped);
        }
        patch_len(self.out, len_pos, 1);
    }

    /// One link (field 13) to another span context.
    pub fn link(&mut self, trace_id: &[u8; 16], span_id: &[u8; 8], trace_state: &str, flags: u32) {
        self.enter(2);
        if self.links.written >= self.limits.link_count {
            self.links.dropped = self.links.dropped.saturating_add(1);
            return;
        }
        self.links.written += 1;
        // Two tags, then the 16-byte trace id and the 8-byte span id.
        let mut len = 2 + len_delimited_len(16) + len_delimited_len(8);
        if !trace_state.is_empty() {
            len += 1 + len_delimited_len(trace_state.len());
        }
        if flags != 0 {
            len += 1 + 4;
        }
        self.out.push(TAG_LINKS);
        put_varint(len as u64, self.out);
        put_bytes(self.out, TAG_LINK_TRACE_ID, trace_id);
        put_bytes(self.out, TAG_LINK_SPAN_ID, span_id);
        if !trace_state.is_empty() {
            put_bytes(self.out, TAG_LINK_TRACE_STATE, trace_state.as_bytes());
        }
        if flags != 0 {
            self.out.push(TAG_LINK_FLAGS);
            self.out.extend_from_slice(&flags.to_le_bytes());
        }
    }

    /// `Status { code: ERROR, message }` (field 15).
    pub fn error_status(&mut self, message: &str) {
        /// `Status.StatusCode.STATUS_CODE_ERROR`.
        const STATUS_CODE_ERROR: u8 = 2;
        self.enter(3);
        let mut len = 2;
        if !message.is_empty() {
            len += 1 + len_delimited_len(message.len());
        }
        self.out.push(TAG_STATUS);
        put_varint(len as u64, self.out);
        if !message.is_empty() {
            put_bytes(self.out, TAG_STATUS_MESSAGE, message.as_bytes());
        }
        self.out.push(TAG_STATUS_CODE);
        self.out.push(STATUS_CODE_ERROR);
    }

    /// Writes the OTLP span flags (field 16) and the span's length; returns what the limits
    /// did.
    pub fn finish(mut self, flags: u32) -> LimitHits {
        self.enter(3);
        if flags != 0 {
            self.out.extend_from_slice(&TAG_FLAGS);
            self.out.extend_from_slice(&flags.to_le_bytes());
        }
        patch_len(self.out, self.len_pos, SPAN_LEN_RESERVED);
        LimitHits {
            truncated: self.truncated,
            dropped: self
                .attrs
                .dropped
                .saturating_add(self.events.dropped)
                .saturating_add(self.links.dropped)
                .saturating_add(self.event_attrs_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::{kv_int, kv_str, Event, Span, SpanKind, Status, StatusCode};
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::span::Link;
    use prost::Message;

    /// `put_varint` writes prost's bytes on both sides of its one-byte fast path and at the
    /// extremes.
    #[test]
    fn put_varint_writes_what_prost_writes() {
        for v in [
            0u64,
            1,
            0x7f,
            0x80,
            0x81,
            300,
            0x3fff,
            0x4000,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            put_varint(v, &mut ours);
            encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs, "varint of {v}");
        }
    }

    fn prost_field(span: &Span) -> Vec<u8> {
        let mut out = Vec::new();
        crate::otlp::encode_span_field(span, &mut out);
        out
    }

    fn kv_array(key: &str, values: &[&str]) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: values
                        .iter()
                        .map(|v| AnyValue {
                            value: Some(any_value::Value::StringValue((*v).into())),
                        })
                        .collect(),
                })),
            }),
            ..Default::default()
        }
    }

    /// Every field the writer can produce, on a span large enough for a 2-byte length and
    /// with a long name and event needing length moves, is byte-identical to prost.
    #[test]
    fn full_span_is_byte_identical_to_prost() {
        let long = "x".repeat(300);
        let mut out = Vec::new();
        let mut w = SpanWriter::begin(
            &mut out,
            &Head {
                trace_id: &[1; 16],
                span_id: &[2; 8],
                trace_state: "congo=t61rcWkgMzE",
                parent_span_id: Some(&[3; 8]),
                name: &["CartDurableObject", "POST", "/cart/add"],
                kind: Kind::Client,
                start_ns: 1_700_000_000_000_000_000,
                end_ns: 1_700_000_000_000_500_000,
            },
        );
        let mut a = w.attrs();
        a.str("http.request.method", "POST");
        a.str_parts("url.full", &["http", "://", "cart:8080", "/cart/add"]);
        a.int("http.response.status_code", 503);
        a.int("neg", -1);
        a.int("zero", 0);
        a.str("empty", "");
        a.str_array("http.request.header.x-tenant", &["a", "", &long]);
        a.str_array_key(&["http.response.header.", "x-b"], &["b"]);
        a.bool("durable_object.id_missing", true);
        w.event(1_700_000_000_000_000_001, "call.start", |a| {
            a.str("service.peer.name", "CART")
        });
        w.event(7, &long, |a| a.int("http.response.status_code", 200));
        w.event(0, "", |_| {});
        w.link(&[4; 16], &[5; 8], "k=v", 0x301);
        w.link(&[6; 16], &[7; 8], "", 0);
        w.error_status("HTTP 503");
        w.finish(0x301);

        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "congo=t61rcWkgMzE".into(),
            parent_span_id: vec![3; 8],
            name: "CartDurableObject POST /cart/add".into(),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_500_000,
            attributes: vec![
                kv_str("http.request.method", "POST"),
                kv_str("url.full", "http://cart:8080/cart/add"),
                kv_int("http.response.status_code", 503),
                kv_int("neg", -1),
                kv_int("zero", 0),
                kv_str("empty", ""),
                kv_array("http.request.header.x-tenant", &["a", "", &long]),
                kv_array("http.response.header.x-b", &["b"]),
                KeyValue {
                    key: "durable_object.id_missing".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::BoolValue(true)),
                    }),
                    ..Default::default()
                },
            ],
            events: vec![
                Event {
                    time_unix_nano: 1_700_000_000_000_000_001,
                    name: "call.start".into(),
                    attributes: vec![kv_str("service.peer.name", "CART")],
                    ..Default::default()
                },
                Event {
                    time_unix_nano: 7,
                    name: long.clone(),
                    attributes: vec![kv_int("http.response.status_code", 200)],
                    ..Default::default()
                },
                Event::default(),
            ],
            links: vec![
                Link {
                    trace_id: vec![4; 16],
                    span_id: vec![5; 8],
                    trace_state: "k=v".into(),
                    flags: 0x301,
                    ..Default::default()
                },
                Link {
                    trace_id: vec![6; 16],
                    span_id: vec![7; 8],
                    ..Default::default()
                },
            ],
            status: Some(Status {
                code: StatusCode::Error as i32,
                message: "HTTP 503".into(),
            }),
            flags: 0x301,
            ..Default::default()
        };
        assert_eq!(out, prost_field(&span));
    }

    /// Lengths at the varint boundaries (127/128, 16383/16384) for the span itself.
    #[test]
    fn span_length_boundaries_are_byte_identical_to_prost() {
        for pad in [0usize, 1, 40, 60, 80, 100, 16_200, 16_300, 16_400, 70_000] {
            let value = "v".repeat(pad);
            let mut out = Vec::new();
            let mut w = SpanWriter::begin(
                &mut out,
                &Head {
                    trace_id: &[1; 16],
                    span_id: &[2; 8],
                    trace_state: "",
                    parent_span_id: None,
                    name: &["GET"],
                    kind: Kind::Server,
                    start_ns: 1,
                    end_ns: 2,
                },
            );
            w.attrs().str("k", &value);
            w.finish(0x101);
            let span = Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                name: "GET".into(),
                kind: SpanKind::Server as i32,
                start_time_unix_nano: 1,
                end_time_unix_nano: 2,
                attributes: vec![kv_str("k", value)],
                flags: 0x101,
                ..Default::default()
            };
            assert_eq!(out, prost_field(&span), "pad {pad}");
            let decoded = Span::decode(&out[1 + encoded_len_varint(span.encoded_len() as u64)..]);
            assert_eq!(decoded.unwrap(), span);
        }
    }

    /// Span limits: values cut on a UTF-8 boundary, attributes/events/links beyond their
    /// counts dropped and counted in the `dropped_*_count` fields, byte-identical to prost.
    #[test]
    fn limits_cut_and_drop_and_count_byte_identical_to_prost() {
        let limits = Limits {
            attribute_value_length: 5,
            attribute_count: 3,
            event_count: 1,
            link_count: 1,
        };
        let mut out = Vec::new();
        let mut w = SpanWriter::begin(
            &mut out,
            &Head {
                trace_id: &[1; 16],
                span_id: &[2; 8],
                trace_state: "",
                parent_span_id: None,
                name: &["GET"],
                kind: Kind::Server,
                start_ns: 1,
                end_ns: 2,
            },
        )
        .with_limits(limits);
        let mut a = w.attrs();
        a.str("a", "abcdefgh");
        // "é" is two bytes: 5 bytes would split the third one.
        a.str_parts("b", &["ab", "éé", "x"]);
        a.str_array("c", &["123456", "12"]);
        a.int("d", 4);
        a.bool("e", true);
        w.event(5, "ev1", |a| {
            a.int("x", 1);
            a.int("y", 2);
            a.int("z", 3);
            a.int("w", 4);
        });
        w.event(6, "ev2", |_| {});
        w.link(&[3; 16], &[4; 8], "", 0);
        w.link(&[5; 16], &[6; 8], "", 0);
        w.error_status("bad");
        let hits = w.finish(0x101);
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET".into(),
            kind: SpanKind::Server as i32,
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            attributes: vec![
                kv_str("a", "abcde"),
                kv_str("b", "abé"),
                kv_array("c", &["12345", "12"]),
            ],
            dropped_attributes_count: 2,
            events: vec![Event {
                time_unix_nano: 5,
                name: "ev1".into(),
                attributes: vec![kv_int("x", 1), kv_int("y", 2), kv_int("z", 3)],
                dropped_attributes_count: 1,
            }],
            dropped_events_count: 1,
            links: vec![Link {
                trace_id: vec![3; 16],
                span_id: vec![4; 8],
                ..Default::default()
            }],
            dropped_links_count: 1,
            status: Some(Status {
                message: "bad".into(),
                code: StatusCode::Error as i32,
            }),
            flags: 0x101,
            ..Default::default()
        };
        assert_eq!(out, prost_field(&span));
        assert_eq!(
            hits,
            LimitHits {
                truncated: 3,
                dropped: 2 + 1 + 1 + 1
            },
            "3 values cut (a, b, c's first element); 2 span attributes, 1 event attribute, 1 event, 1 link dropped"
        );
    }

    #[test]
    fn truncate_utf8_rows() {
        for (s, max, want, reason) in [
            ("abc", 5, "abc", "short: whole"),
            ("abcdef", 3, "abc", "ASCII: at the limit"),
            ("aé", 2, "a", "never half a character"),
            ("éé", 4, "éé", "exactly fits"),
            ("日本", 5, "日", "three-byte characters"),
            ("x", 0, "", "zero"),
        ] {
            assert_eq!(truncate_utf8(s, max), want, "{reason}");
        }
    }
}
