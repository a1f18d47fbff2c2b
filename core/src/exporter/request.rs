//! Building an export request: the OTLP/HTTP framing of a batch (one `ExportTraceServiceRequest`
//! around the queued spans), its encoding (protobuf, or the OTLP/JSON mapping), its compression
//! (gzip) and its headers (OTLP/HTTP exporter specification, "Request"); for OTLP/gRPC, the
//! length-prefixed message and the gRPC headers (gRPC over HTTP/2, "Requests").

use crate::config::{Compression, Config, Encoding, ExporterConfig, Protocol};
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
        let framed = self.framer.frame(runs);
        match cfg.protocol {
            Protocol::Grpc => grpc_frame(framed, cfg.compression),
            Protocol::HttpProtobuf | Protocol::HttpJson => {
                encode_body(framed, cfg.encoding, cfg.compression)
            }
        }
    }
}

/// The request headers, pseudo-headers first; the configured ones (possibly secrets) last.
pub(super) fn headers(cfg: &ExporterConfig) -> Vec<(&str, &str)> {
    let content_type = match cfg.protocol {
        Protocol::Grpc => CONTENT_TYPE_GRPC,
        Protocol::HttpProtobuf | Protocol::HttpJson => match cfg.encoding {
            Encoding::Protobuf => otlp::CONTENT_TYPE_PROTOBUF,
            Encoding::Json => otlp::CONTENT_TYPE_JSON,
        },
    };
    let mut headers: Vec<(&str, &str)> = vec![
        (":method", "POST"),
        (":path", &cfg.path),
        (":authority", &cfg.authority),
        ("content-type", content_type),
        ("user-agent", otlp::USER_AGENT),
    ];
    match (cfg.protocol, cfg.compression) {
        (_, Compression::None) => {}
        (Protocol::Grpc, Compression::Gzip) => headers.push(("grpc-encoding", "gzip")),
        (_, Compression::Gzip) => headers.push(("content-encoding", "gzip")),
    }
    if cfg.protocol == Protocol::Grpc {
        // gRPC over HTTP/2: "te: trailers" tells proxies the client reads trailers.
        headers.push(("te", "trailers"));
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

/// `content-type` of an OTLP/gRPC request (gRPC over HTTP/2, "Content-Type").
pub const CONTENT_TYPE_GRPC: &str = "application/grpc";
/// The gRPC message prefix: 1 byte compressed flag, 4 bytes big-endian length.
pub const GRPC_PREFIX_LEN: usize = 5;

/// One gRPC length-prefixed message (gRPC over HTTP/2, "Length-Prefixed-Message") around an
/// `ExportTraceServiceRequest`, gzip-compressed (flag 1) if asked. Empty when compression
/// failed or the message exceeds 4 GiB (the batch is then dropped).
pub fn grpc_frame(message: Vec<u8>, compression: Compression) -> Vec<u8> {
    let (flag, message) = match compression {
        Compression::None => (0u8, message),
        Compression::Gzip => match gzip(&message) {
            Some(z) => (1u8, z),
            None => return Vec::new(),
        },
    };
    let Ok(len) = u32::try_from(message.len()) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(GRPC_PREFIX_LEN + message.len());
    out.push(flag);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&message);
    out
}

/// The message of a gRPC response body (the first length-prefixed message), decompressed if
/// its flag says so; `None` when the body holds no complete message or does not inflate.
pub fn grpc_unframe(body: &[u8]) -> Option<Vec<u8>> {
    let (&flag, rest) = body.split_first()?;
    let len: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len)).ok()?;
    let message = rest.get(4..4usize.checked_add(len)?)?;
    match flag {
        0 => Some(message.to_vec()),
        1 => gunzip(message, super::MAX_RESPONSE_BODY),
        _ => None,
    }
}

/// Inflates gzip data up to `limit` bytes (a response is read, never trusted to be small).
fn gunzip(data: &[u8], limit: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(u64::try_from(limit).ok()?)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
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
