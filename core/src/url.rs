//! URL pieces the spans need: the path without its query (so tokens in queries never reach a
//! span) and `host:port` splitting for authorities and peer addresses (IPv6 in brackets).

/// The path without query string or fragment.
pub fn strip_query(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or(path)
}

/// `"host:8080"` -> `("host", Some(8080))`; `"[::1]:80"` -> `("::1", Some(80))`; a value
/// without a numeric port is returned whole with `None`.
pub fn split_host_port(s: &str) -> (&str, Option<i64>) {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().ok(),
            )
        }
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_query_rows() {
        assert_eq!(strip_query("/a/b?x=1"), "/a/b");
        assert_eq!(strip_query("/a#frag"), "/a");
        assert_eq!(strip_query("/a"), "/a");
    }

    #[test]
    fn split_host_port_rows() {
        struct Row {
            input: &'static str,
            host: &'static str,
            port: Option<i64>,
            reason: &'static str,
        }
        #[rustfmt::skip]
        let rows = [
            Row { input: "shop.example:8443", host: "shop.example", port: Some(8443), reason: "name and port" },
            Row { input: "shop.example", host: "shop.example", port: None, reason: "no port" },
            Row { input: "10.0.0.7:8080", host: "10.0.0.7", port: Some(8080), reason: "IPv4 peer address" },
            Row { input: "[::1]:80", host: "::1", port: Some(80), reason: "IPv6 in brackets" },
            Row { input: "host:", host: "host:", port: None, reason: "empty port is not a port" },
            Row { input: "host:http", host: "host:http", port: None, reason: "non-numeric port is not a port" },
        ];
        for r in rows {
            assert_eq!(
                split_host_port(r.input),
                (r.host, r.port),
                "{}: {}",
                r.reason,
                r.input
            );
        }
    }
}
