//! Completion: what Envoy knows at log time (response code, flags, code details, upstream
//! address, the request's `:path`/`:authority` as routed). The only host reads of the log
//! phase live here.

use super::headers::capture_headers;
use crate::config::Config;
use crate::host::{property_bytes, property_u64, Batch, BatchItem, BatchItem::Property, Host};
use crate::status;
use std::borrow::Cow;

/// Envoy's `response.code_details` when the response came from the upstream.
pub(super) const VIA_UPSTREAM: &str = "via_upstream";

/// What Envoy knows at log time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// The log-phase attributes, read in one host call where Envoy can ([`Host::attributes`]).
/// The order is the `LOG_*` indexes below. `request.path`/`request.host` are the request's
/// `:path`/`:authority` as routed.
pub const LOG_BATCH: Batch = Batch {
    id: 0,
    items: Cow::Borrowed(&[
        Property(&["response", "code"]),
        Property(&["response", "flags"]),
        Property(&["response", "code_details"]),
        Property(&["upstream", "address"]),
        Property(&["upstream", "tls_version"]),
        Property(&["request", "path"]),
        Property(&["request", "host"]),
        Property(&["source", "address"]),
        Property(&["request", "protocol"]),
    ]),
};
const LOG_CODE: usize = 0;
const LOG_FLAGS: usize = 1;
const LOG_CODE_DETAILS: usize = 2;
const LOG_UPSTREAM_ADDRESS: usize = 3;
const LOG_UPSTREAM_TLS: usize = 4;
const LOG_PATH: usize = 5;
const LOG_AUTHORITY: usize = 6;
const LOG_SOURCE_ADDRESS: usize = 7;
const LOG_PROTOCOL: usize = 8;

/// Where the log-phase attributes come from: one batch, or one host call each.
enum LogSource<'h> {
    Batch(Vec<Vec<u8>>),
    OneByOne(&'h dyn Host),
}

impl LogSource<'_> {
    /// Attribute `i` of [`LOG_BATCH`]; `None` when absent or empty.
    fn take(&mut self, i: usize) -> Option<Vec<u8>> {
        match self {
            LogSource::Batch(values) => values.get_mut(i).map(std::mem::take),
            LogSource::OneByOne(host) => match i {
                // The request headers as routed: by name, not the whole map.
                LOG_PATH => property_bytes(host.request_header(":path")),
                LOG_AUTHORITY => property_bytes(host.request_header(":authority")),
                _ => match LOG_BATCH.items.get(i)? {
                    Property(path) => property_bytes(host.property(path)),
                    BatchItem::RequestHeader(name) => property_bytes(host.request_header(name)),
                },
            },
        }
        .filter(|v| !v.is_empty())
    }

    fn string(&mut self, i: usize) -> Option<String> {
        self.take(i).and_then(|b| String::from_utf8(b).ok())
    }

    fn u64(&mut self, i: usize) -> Option<u64> {
        self.take(i).and_then(|b| property_u64(&b))
    }
}

impl Completion {
    /// Reads the completion from the host in the log phase.
    ///
    /// Every host call costs (`make bench`: a property read about a fifth of the empty
    /// filter's whole overhead), so the attributes come in one batch where Envoy has CEL
    /// ([`LOG_BATCH`]). Without it they are read one by one, and then only what the spans
    /// use: `response.code_details` only when it can say something (`via_upstream` is implied
    /// by an upstream 1xx-3xx without flags); the upstream's TLS only when there was an
    /// upstream. Both ways give the same completion (unit test
    /// `batched_and_one_by_one_reads_agree`).
    pub fn read(host: &dyn Host, config: &Config) -> Completion {
        let mut src = match host.attributes(&LOG_BATCH) {
            Ok(Some(values)) if values.len() == LOG_BATCH.len() => LogSource::Batch(values),
            Ok(Some(values)) => {
                log::debug!(
                    "log attributes: {} values for {} attributes; reading one by one",
                    values.len(),
                    LOG_BATCH.len()
                );
                LogSource::OneByOne(host)
            }
            Ok(None) => LogSource::OneByOne(host),
            Err(e) => {
                log::debug!("log attributes unreadable as a batch ({e}); reading one by one");
                LogSource::OneByOne(host)
            }
        };
        let status = src
            .u64(LOG_CODE)
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(0);
        let flags = src.u64(LOG_FLAGS).unwrap_or(0);
        let upstream_address = src.string(LOG_UPSTREAM_ADDRESS);
        let plain_upstream_answer =
            upstream_address.is_some() && flags == 0 && (100..400).contains(&status);
        let code_details = if plain_upstream_answer {
            VIA_UPSTREAM.to_string()
        } else {
            src.string(LOG_CODE_DETAILS).unwrap_or_default()
        };
        let upstream_tls = upstream_address.is_some() && src.take(LOG_UPSTREAM_TLS).is_some();
        Completion {
            end_ns: host.now_nanos(),
            status,
            flags,
            code_details,
            upstream_address,
            upstream_path: src.string(LOG_PATH),
            upstream_authority: src.string(LOG_AUTHORITY),
            client_address: src.string(LOG_SOURCE_ADDRESS),
            protocol: src.string(LOG_PROTOCOL),
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
    /// `sampler_keep_errors` keeps.
    pub fn is_failure(&self) -> bool {
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
