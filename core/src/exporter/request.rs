//! Building an export request: the OTLP/HTTP framing of a batch (one `ExportTraceServiceRequest`
//! around the queued spans), its encoding (protobuf, or the OTLP/JSON mapping), its compression
//! (gzip) and its headers (OTLP/HTTP exporter specification, "Request").

use crate::config::{Compression, Config, Encoding, ExporterConfig};
use crate::otlp::{self, Framer};

/// Frames, encodes and compresses batches and lists their headers, for one configuration.
pub(super) struct RequestBuilder {
    framer: Framer,
}

impl RequestBuilder {
    pub(super) fn new(config: &Config) -> RequestBuilder {
        RequestBuilder {
            framer: Framer::new(&otlp::resource(config)),
        }
    }

    /// The request body for `runs` of encoded span fields; empty when encoding failed.
    pub(super) fn body<'a>(
        &self,
        runs: impl Iterator<Item = &'a [u8]> + Clone,
        cfg: &ExporterConfig,
    ) -> Vec<u8> {
        encode_body(self.framer.frame(runs), cfg.encoding, cfg.compression)
    }
}

/// The request headers, pseudo-headers first; the configured ones (possibly secrets) last.
pub(super) fn headers(cfg: &ExporterConfig) -> Vec<(&str, &str)> {
    let content_type = match cfg.encoding {
        Encoding::Protobuf => otlp::CONTENT_TYPE_PROTOBUF,
        Encoding::Json => otlp::CONTENT_TYPE_JSON,
    };
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "POST"),
        (":path", &cfg.path),
        (":authority", &cfg.authority),
        ("content-type", content_type),
        ("user-agent", otlp::USER_AGENT),
    ];
    if cfg.compression == Compression::Gzip {
        headers.push(("content-encoding", "gzip"));
    }
    headers.extend(cfg.headers.iter().map(|(k, v)| (k.as_str(), v.expose())));
    headers
}

/// The request body for a framed protobuf request: re-encoded as OTLP/JSON if asked, then
/// gzip-compressed if asked. Empty when encoding failed (the batch is then dropped).
pub fn encode_body(framed: Vec<u8>, encoding: Encoding, compression: Compression) -> Vec<u8> {
    let body = match encoding {
        Encoding::Protobuf => framed,
        Encoding::Json => match otlp::to_json(&framed) {
            Some(j) => j,
            None => return Vec::new(),
        },
    };
    match compression {
        Compression::None => body,
        Compression::Gzip => gzip(&body).unwrap_or_default(),
    }
}

/// gzip with the pure-Rust deflate (miniz_oxide), default level.
pub fn gzip(data: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::default(),
    );
    enc.write_all(data).ok()?;
    enc.finish().ok()
}
