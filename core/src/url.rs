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

/// `url.full` of a CLIENT span, built from the upstream side only (never from the
/// downstream `Host` or `x-forwarded-proto`): the upstream connection's scheme (`https` when
/// Envoy reports an upstream TLS version), the authority the upstream was called at, and the
/// path as sent, without query. The authority is the `:authority` Envoy sent upstream when a
/// route rewrote it; an unchanged one names the gateway's own virtual host, so the upstream
/// host's address (what `server.address` reports) is used; without either, what was sent.
pub fn client_url(
    upstream_tls: bool,
    sent_authority: Option<&str>,
    downstream_authority: &str,
    upstream_address: Option<&str>,
    path: &str,
) -> String {
    let scheme = if upstream_tls { "https" } else { "http" };
    let rewritten = sent_authority.filter(|a| !a.is_empty() && *a != downstream_authority);
    let authority = rewritten
        .or(upstream_address)
        .or(sent_authority)
        .unwrap_or(downstream_authority);
    format!("{scheme}://{authority}{}", strip_query(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_url_rows() {
        struct Row {
            tls: bool,
            sent: Option<&'static str>,
            address: Option<&'static str>,
            want: &'static str,
            reason: &'static str,
        }
        #[rustfmt::skip]
        let rows = [
            Row { tls: false, sent: Some("shop.example"), address: Some("10.0.0.7:8080"), want: "http://10.0.0.7:8080/p", reason: "Host not rewritten: the upstream address, not the gateway's name" },
            Row { tls: true, sent: Some("shop.example"), address: Some("10.0.0.7:8443"), want: "https://10.0.0.7:8443/p", reason: "upstream TLS gives https, whatever the downstream scheme" },
            Row { tls: false, sent: Some("products.internal"), address: Some("10.0.0.7:8080"), want: "http://products.internal/p", reason: "a rewritten Host is what the upstream was called at" },
            Row { tls: false, sent: Some("shop.example"), address: None, want: "http://shop.example/p", reason: "no upstream address: what was sent" },
            Row { tls: false, sent: None, address: None, want: "http://shop.example/p", reason: "nothing known upstream: the downstream authority" },
        ];
        for r in rows {
            assert_eq!(
                client_url(r.tls, r.sent, "shop.example", r.address, "/p?token=1"),
                r.want,
                "{}",
                r.reason
            );
        }
    }

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
