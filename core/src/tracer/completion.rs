//! Completion: what Envoy knows at log time (response code, flags, code details, upstream
//! address, the request's `:path`/`:authority` as routed). The only host reads of the log
//! phase live here.

use super::headers::capture_headers;
use crate::config::Config;
use crate::host::{property_bytes, property_string, property_u64, Host};
use crate::status;

/// Envoy's `response.code_details` when the response came from the upstream.
pub(super) const VIA_UPSTREAM: &str = "via_upstream";

/// What Envoy knows at log time.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub end_ns: u64,
    /// `response.code`; 0 when no response was sent.
    pub status: u16,
    pub flags: u64,
    pub code_details: String,
    pub upstream_address: Option<String>,
    /// `:path` and `:authority` of the request as routed (after Envoy's rewrites).
    pub upstream_path: Option<String>,
    pub upstream_authority: Option<String>,
    /// `source.address`: the downstream peer (SERVER spans' `client.address`).
    pub client_address: Option<String>,
    /// `request.protocol` (`HTTP/1.1`, `HTTP/2`).
    pub protocol: Option<String>,
    /// Allow-listed response headers: (index in `config.response_headers`, values).
    pub response_headers: Vec<(usize, Vec<String>)>,
    /// The upstream connection used TLS (`upstream.tls_version` present).
    pub upstream_tls: bool,
}

impl Completion {
    /// Reads the completion from the host in the log phase.
    ///
    /// Every read is a host call that costs (measured by `make bench`'s `empty_props8` and
    /// `empty_maps2` rows: a property read about a fifth, a whole header-map read about the
    /// same as the empty filter's entire overhead), so only what the spans use is read: the
    /// two request headers by name, not the map; `response.code_details` only when it can say
    /// something (`via_upstream` is implied by an upstream 1xx-3xx without flags); the
    /// upstream's TLS only when there was an upstream.
    pub fn read(host: &dyn Host, config: &Config) -> Completion {
        let u64_prop =
            |path: &[&str]| property_bytes(host.property(path)).and_then(|b| property_u64(&b));
        let request_header = |name: &str| {
            property_bytes(host.request_header(name)).and_then(|b| String::from_utf8(b).ok())
        };
        let status = u64_prop(&["response", "code"])
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0);
        let flags = u64_prop(&["response", "flags"]).unwrap_or(0);
        let upstream_address = property_string(host.property(&["upstream", "address"]));
        let plain_upstream_answer =
            upstream_address.is_some() && flags == 0 && (100..400).contains(&status);
        let code_details = if plain_upstream_answer {
            VIA_UPSTREAM.to_string()
        } else {
            property_string(host.property(&["response", "code_details"])).unwrap_or_default()
        };
        let upstream_tls = upstream_address.is_some()
            && property_string(host.property(&["upstream", "tls_version"])).is_some();
        Completion {
            end_ns: host.now_nanos(),
            status,
            flags,
            code_details,
            upstream_address,
            upstream_path: request_header(":path"),
            upstream_authority: request_header(":authority"),
            client_address: property_string(host.property(&["source", "address"])),
            protocol: property_string(host.property(&["request", "protocol"])),
            response_headers: if config.response_headers.is_empty() {
                Vec::new()
            } else {
                let headers = host.response_headers().unwrap_or_default();
                capture_headers(config, &config.response_headers, &headers)
            },
            upstream_tls,
        }
    }

    /// The request failed: a 5xx, no response at all, or an upstream failure. What
    /// `sampler_keep_errors` keeps. A client that reset its stream or closed its connection
    /// before a 5xx was sent (status 0, `DR`/`DC`) is not a failure of ours: the upstream
    /// call it cut short shows as reset only because the client left.
    pub fn is_failure(&self) -> bool {
        if status::client_gave_up(self.flags) && self.status < 500 {
            return false;
        }
        self.status >= 500 || self.status == 0 || status::upstream_failed(self.flags)
    }

    pub(super) fn responded(&self) -> bool {
        if self.code_details.is_empty() {
            self.upstream_address.is_some()
                && !status::upstream_failed(self.flags)
                && self.status != 0
        } else {
            self.code_details == VIA_UPSTREAM
        }
    }
}
