//! W3C Trace Context `tracestate` (Level 2, https://www.w3.org/TR/trace-context-2/ §3.3):
//! parsing and normalising the incoming list. Section numbers below are Level 2's.
//!
//! The list is only ever passed on: this filter adds no member of its own, so it never has
//! to make room (§3.3.1.1 limits apply to what arrives).

/// At most this many list-members in `tracestate` (§3.3.1.1).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// §3.3.1.3.1: a key is at most 256 characters.
const MAX_KEY_LEN: usize = 256;
/// §3.3.1.3.2: a value is at most 256 characters.
const MAX_VALUE_LEN: usize = 256;

/// A valid incoming `tracestate`, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracestate {
    /// The members, in order, joined by `,` without OWS; empty when the list had none.
    pub value: String,
    /// Later members whose key had already appeared: dropped (§3.3.1.1).
    pub duplicates_dropped: usize,
}

/// Why an incoming `tracestate` was dropped as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracestateError {
    NotUtf8,
    /// A member without `=`.
    NoEquals,
    BadKey,
    BadValue,
    TooManyMembers,
}

impl TracestateError {
    /// A short, low-cardinality reason for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotUtf8 => "not UTF-8",
            Self::NoEquals => "a list-member without '='",
            Self::BadKey => "a key outside the §3.3.1.3.1 grammar",
            Self::BadValue => "a value outside the §3.3.1.3.2 grammar",
            Self::TooManyMembers => "more than 32 list-members",
        }
    }
}

/// Parses and normalises `tracestate` (§3.3). Multiple header values are one list, joined
/// by commas (§3.3.1.1, RFC 9110 §5.3). Empty members (`a=1,,b=2`) are allowed and dropped
/// (§3.3.1.1). A key that repeats an earlier one is dropped and the rest kept: §3.3.1.1 lets a
/// parser discard duplicates, and §3.3.1.1 / §3.5 say keys a vendor did not create SHOULD NOT
/// be deleted, so the first occurrence of every key goes on. A member that breaks the
/// grammar, or more than 32 members, makes the whole list invalid (§3.3.1.1, §3.5).
pub fn parse_tracestate(values: &[&[u8]]) -> Result<Tracestate, TracestateError> {
    let mut out = String::new();
    let mut keys: Vec<&str> = Vec::new();
    let mut duplicates_dropped = 0;
    for value in values {
        let value = std::str::from_utf8(value).map_err(|_| TracestateError::NotUtf8)?;
        for member in value.split(',') {
            // §3.3.1.1 list: OWS around members; empty members allowed.
            let member = member.trim_matches(|c| c == ' ' || c == '\t');
            if member.is_empty() {
                continue;
            }
            let (key, val) = member.split_once('=').ok_or(TracestateError::NoEquals)?;
            if !valid_key(key) {
                return Err(TracestateError::BadKey);
            }
            if !valid_value(val) {
                return Err(TracestateError::BadValue);
            }
            if keys.contains(&key) {
                duplicates_dropped += 1;
                continue;
            }
            keys.push(key);
            if keys.len() > MAX_TRACESTATE_MEMBERS {
                return Err(TracestateError::TooManyMembers);
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member);
        }
    }
    Ok(Tracestate {
        value: out,
        duplicates_dropped,
    })
}

/// §3.3.1.3.1 (Level 2) `key = ( lcalpha / DIGIT ) 0*255( keychar )`,
/// `keychar = lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`. Level 1's tenant@system split
/// (tenant up to 241, system up to 14 characters, one `@`) is gone: `@` may appear anywhere
/// after the first character, any number of times.
pub fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && key.len() <= MAX_KEY_LEN
        && bytes.all(|c| {
            c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'_' | b'-' | b'*' | b'/' | b'@')
        })
}

/// §3.3.1.3.2 `value = 0*255(chr) nblk-chr`; `chr = %x20 / nblk-chr`;
/// `nblk-chr = %x21-2B / %x2D-3C / %x3E-7E`.
pub fn valid_value(val: &str) -> bool {
    let nblk = |c: u8| matches!(c, 0x21..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    !val.is_empty()
        && val.len() <= MAX_VALUE_LEN
        && val.bytes().all(|c| c == 0x20 || nblk(c))
        && val.bytes().last().is_some_and(nblk)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        values: Vec<String>,
        /// The normalised list passed on; `None` when the whole header is dropped.
        want: Option<&'static str>,
        duplicates: usize,
        reason: &'static str,
    }

    fn row(values: &[&str], want: Option<&'static str>, reason: &'static str) -> Row {
        Row {
            values: values.iter().map(|s| s.to_string()).collect(),
            want,
            duplicates: 0,
            reason,
        }
    }

    fn check(rows: Vec<Row>) {
        for row in rows {
            let v: Vec<&[u8]> = row.values.iter().map(|s| s.as_bytes()).collect();
            let got = parse_tracestate(&v);
            assert_eq!(
                got.as_ref().ok().map(|t| t.value.as_str()),
                row.want,
                "{}: {got:?}",
                row.reason
            );
            if let Ok(t) = got {
                assert_eq!(t.duplicates_dropped, row.duplicates, "{}", row.reason);
            }
        }
    }

    #[test]
    fn tracestate_list_rows() {
        check(vec![
            row(
                &["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                "§3.3.1 spec example",
            ),
            row(
                &["rojo=1", "congo=2"],
                Some("rojo=1,congo=2"),
                "§3.3.1.1 multiple headers are one list",
            ),
            row(
                &["rojo=1 ,\t, congo=2"],
                Some("rojo=1,congo=2"),
                "§3.3.1.1 OWS and empty members",
            ),
            row(&["rojo"], None, "§3.3.1.3 member without '='"),
            row(&["rojo=a,b"], None, "§3.3.1.3 second member without '='"),
            row(&["rojo=val=ue"], None, "§3.3.1.3.2 '=' inside value"),
            row(&["rojo="], None, "§3.3.1.3.2 empty value"),
            row(&["rojo=a b"], Some("rojo=a b"), "§3.3.1.3.2 inner space"),
            row(
                &["rojo=a "],
                Some("rojo=a"),
                "§3.3.1.1 trailing OWS trimmed",
            ),
            row(&["rojo=a\u{7f}"], None, "§3.3.1.3.2 DEL not allowed"),
            row(&["rojo=a,", ""], Some("rojo=a"), "§3.3.1.1 empty header"),
        ]);
    }

    #[test]
    fn tracestate_level2_key_rows() {
        let key_241 = format!("{}@x=1", "a".repeat(241));
        let key_242 = format!("{}@x=1", "a".repeat(242));
        let key_256 = format!("{}=1", "a".repeat(256));
        let key_257 = format!("{}=1", "a".repeat(257));
        let rows = vec![
            row(
                &["foo@=1,bar=2"],
                Some("foo@=1,bar=2"),
                "§3.3.1.3.1 Level 2: '@' may end a key",
            ),
            row(
                &["foo@@bar=1"],
                Some("foo@@bar=1"),
                "§3.3.1.3.1 Level 2: '@' repeated",
            ),
            row(
                &["foo@bar@baz=1"],
                Some("foo@bar@baz=1"),
                "§3.3.1.3.1 Level 2: two '@'",
            ),
            row(
                &["fw529a3039@dt=1"],
                Some("fw529a3039@dt=1"),
                "§3.3.1.3.1 Level 1 multi-tenant form still valid",
            ),
            row(
                &["1tenant@sys=1"],
                Some("1tenant@sys=1"),
                "§3.3.1.3.1 a key may start with a digit",
            ),
            row(
                &["1rojo=1"],
                Some("1rojo=1"),
                "§3.3.1.3.1 Level 2: a digit first without '@'",
            ),
            row(
                &["t@toolongsystemid=1"],
                Some("t@toolongsystemid=1"),
                "§3.3.1.3.1 Level 2: no 14-character system-id limit",
            ),
            row(&["@foo=1"], None, "§3.3.1.3.1 '@' cannot be first"),
            row(&["_foo=1"], None, "§3.3.1.3.1 '_' cannot be first"),
            row(&["Rojo=1"], None, "§3.3.1.3.1 upper case refused"),
            row(&["ro jo=1"], None, "§3.3.1.3.1 space inside a key"),
            row(&["=1"], None, "§3.3.1.3.1 empty key"),
        ];
        check(rows);
        // The long keys are built at run time: checked here.
        for (value, ok, reason) in [
            (
                &key_241,
                true,
                "§3.3.1.3.1 Level 2: 241 characters before '@'",
            ),
            (
                &key_242,
                true,
                "§3.3.1.3.1 Level 2: 242 characters before '@' (Level 1 refused)",
            ),
            (&key_256, true, "§3.3.1.3.1 256-character key"),
            (&key_257, false, "§3.3.1.3.1 257-character key refused"),
        ] {
            let got = parse_tracestate(&[value.as_bytes()]);
            assert_eq!(got.is_ok(), ok, "{reason}: {got:?}");
            if ok {
                assert_eq!(got.unwrap().value, *value, "{reason}");
            }
        }
    }

    #[test]
    fn tracestate_duplicate_key_rows() {
        check(vec![
            Row {
                values: vec!["foo=1,foo=2".into()],
                want: Some("foo=1"),
                duplicates: 1,
                reason: "§3.3.1.1 a duplicate key: keep the first, drop the later one",
            },
            Row {
                values: vec!["foo=1".into(), "bar=3,foo=2".into()],
                want: Some("foo=1,bar=3"),
                duplicates: 1,
                reason: "§3.3.1.1 duplicates across two headers: one list",
            },
            Row {
                values: vec!["a=1,b=2,a=3,b=4,c=5".into()],
                want: Some("a=1,b=2,c=5"),
                duplicates: 2,
                reason: "§3.3.1.1 / §3.5 other keys SHOULD NOT be deleted",
            },
            Row {
                values: vec!["foo=1,foo=Bad Value=".into()],
                want: None,
                duplicates: 0,
                reason: "§3.3.1.3.2 an invalid duplicate still makes the list invalid",
            },
        ]);
    }

    #[test]
    fn tracestate_member_limit() {
        let ok: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        let ok = ok.join(",");
        assert!(
            parse_tracestate(&[ok.as_bytes()]).is_ok(),
            "§3.3.1.1 32 members allowed"
        );
        let too_many = format!("{ok},k32=v");
        assert_eq!(
            parse_tracestate(&[too_many.as_bytes()]),
            Err(TracestateError::TooManyMembers),
            "§3.3.1.1 33 members invalid"
        );
        let dup_not_counted = format!("{ok},k0=again");
        assert!(
            parse_tracestate(&[dup_not_counted.as_bytes()]).is_ok(),
            "§3.3.1.1 a dropped duplicate does not count toward 32"
        );
    }
}
