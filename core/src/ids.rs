//! Trace and span identifiers: 16- and 8-byte ids, their lowercase-hex form, and generation
//! from the host's randomness.

use std::fmt;

/// A W3C / OTLP trace id. All-zero is invalid (W3C Trace Context §3.2.2.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

/// A W3C / OTLP span (parent) id. All-zero is invalid (W3C Trace Context §3.2.2.4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }
    /// Parses exactly 32 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        decode_lower_hex(s, &mut out).then_some(TraceId(out))
    }
}

impl SpanId {
    pub fn is_valid(&self) -> bool {
        self.0 != [0; 8]
    }
    /// Parses exactly 16 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 8];
        decode_lower_hex(s, &mut out).then_some(SpanId(out))
    }
}

fn decode_lower_hex(s: &str, out: &mut [u8]) -> bool {
    let b = s.as_bytes();
    if b.len() != out.len() * 2 {
        return false;
    }
    for (pair, slot) in b.chunks_exact(2).zip(out.iter_mut()) {
        match (
            pair.first().and_then(|c| nibble(*c)),
            pair.get(1).and_then(|c| nibble(*c)),
        ) {
            (Some(h), Some(l)) => *slot = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

/// Lowercase hex digit only: W3C forbids upper case in `traceparent` (§3.2.2).
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The two lowercase hex digits of `b`.
fn hex_digits(b: u8) -> [u8; 2] {
    [b >> 4, b & 0xf].map(|nib| HEX.get(usize::from(nib)).copied().unwrap_or(b'0'))
}

/// Appends `bytes` as lowercase hex to `out` (the hot path's form: no formatter).
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend(bytes.iter().copied().flat_map(hex_digits));
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 32];
    for (b, out) in bytes.iter().zip(buf.chunks_exact_mut(2)) {
        out.copy_from_slice(&hex_digits(*b));
    }
    let len = (bytes.len() * 2).min(buf.len());
    let s = std::str::from_utf8(buf.get(..len).unwrap_or(&[])).map_err(|_| fmt::Error)?;
    f.write_str(s)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Fresh ids for one request: a trace id (used only when no valid parent arrives) and two
/// span ids (SERVER, CLIENT). Drawn in one call to the host's random source. A span id that
/// comes out all-zero is replaced, so every id is valid.
#[derive(Debug, Clone, Copy)]
pub struct RequestIds {
    pub trace_id: TraceId,
    pub server_span_id: SpanId,
    pub client_span_id: SpanId,
}

impl RequestIds {
    pub fn from_random(bytes: [u8; 32]) -> Self {
        let mut t = [0u8; 16];
        let mut s = [0u8; 8];
        let mut c = [0u8; 8];
        t.copy_from_slice(&bytes[..16]);
        s.copy_from_slice(&bytes[16..24]);
        c.copy_from_slice(&bytes[24..]);
        if t == [0; 16] {
            t[15] = 1;
        }
        if s == [0; 8] {
            s[7] = 1;
        }
        if c == [0; 8] || c == s {
            c[7] = c[7].wrapping_add(2) | 2;
        }
        RequestIds {
            trace_id: TraceId(t),
            server_span_id: SpanId(s),
            client_span_id: SpanId(c),
        }
    }
}

/// The id generator of one worker (a wasm VM, a native worker thread): seeded once by the glue
/// from the host's randomness, then wyrand (Wang Yi's 64-bit PRNG: passes BigCrush and
/// PractRand, one multiply per output) for every request, instead of a host call per request.
/// Trace ids need uniqueness and W3C's "random" flag, not secrecy.
#[derive(Debug, Clone, Copy)]
pub struct IdGenerator(u64);

impl IdGenerator {
    pub fn from_seed(seed: u64) -> IdGenerator {
        IdGenerator(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// The 32 random bytes one request's ids are made from ([`RequestIds::from_random`]).
    pub fn random_bytes(&mut self) -> [u8; 32] {
        let mut buf = [0u8; 32];
        for chunk in buf.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(s.to_string(), "00f067aa0ba902b7");
    }

    #[test]
    fn hex_rejects() {
        struct Row {
            input: &'static str,
            reason: &'static str,
        }
        #[rustfmt::skip]
        let rows = [
            Row { input: "4BF92F3577B34DA6A3CE929D0E0E4736", reason: "upper case" },
            Row { input: "4bf92f3577b34da6a3ce929d0e0e473", reason: "too short" },
            Row { input: "4bf92f3577b34da6a3ce929d0e0e47366", reason: "too long" },
            Row { input: "4bf92f3577b34da6a3ce929d0e0e473g", reason: "not hex" },
        ];
        for Row { input, reason } in rows {
            assert!(TraceId::from_hex(input).is_none(), "{reason}");
        }
    }

    #[test]
    fn zero_random_still_gives_valid_distinct_ids() {
        let ids = RequestIds::from_random([0; 32]);
        assert!(ids.trace_id.is_valid());
        assert!(ids.server_span_id.is_valid());
        assert!(ids.client_span_id.is_valid());
        assert_ne!(ids.server_span_id, ids.client_span_id);
    }

    #[test]
    fn the_generator_is_wyrand_and_never_repeats_a_request_in_a_run() {
        // wyhash's `_wyrand` for state 0: s = 0xa0761d6478bd642f, t = s * (s ^ 0xe7037ed1a0b428db)
        // as 128 bits, (t >> 64) ^ t, worked out by hand outside this code.
        assert_eq!(IdGenerator::from_seed(0).next_u64(), 0x111c_b3a7_8f59_a58e);
        let mut g = IdGenerator::from_seed(42);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(g.random_bytes()), "a request's ids repeated");
        }
    }
}
