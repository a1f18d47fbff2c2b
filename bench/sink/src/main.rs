//! `bench-sink ADDR`: a minimal OTLP/HTTP trace receiver for `make bench`.
//!
//! Every `POST` is an export request: its body (an `ExportTraceServiceRequest`, protobuf) is
//! walked just deep enough to count the `Span` messages
//! (`resource_spans[].scope_spans[].spans[]`) and their encoded sizes; nothing is decoded or
//! kept. `GET /stats` answers the running totals as JSON; the driver takes differences.
//! HTTP/1.1 with keep-alive, `content-length` or chunked bodies; one thread per connection.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    body_bytes: AtomicU64,
    spans: AtomicU64,
    span_bytes: AtomicU64,
    /// Bodies the walker could not count (compressed, JSON, malformed).
    uncounted: AtomicU64,
}

impl Totals {
    fn json(&self) -> String {
        format!(
            "{{\"requests\":{},\"body_bytes\":{},\"spans\":{},\"span_bytes\":{},\"uncounted\":{}}}",
            self.requests.load(Relaxed),
            self.body_bytes.load(Relaxed),
            self.spans.load(Relaxed),
            self.span_bytes.load(Relaxed),
            self.uncounted.load(Relaxed)
        )
    }
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:21020".to_string());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench-sink: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("bench-sink: listening on {addr}");
    let totals = Arc::new(Totals::default());
    for stream in listener.incoming().flatten() {
        let totals = Arc::clone(&totals);
        std::thread::spawn(move || {
            let _ = serve(stream, &totals);
        });
    }
}

fn serve(stream: TcpStream, totals: &Totals) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let request_line = line.trim_end().to_string();
        if request_line.is_empty() {
            continue;
        }
        let mut content_length = 0usize;
        let mut chunked = false;
        let mut close = false;
        let mut encoded = false;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                let value = value.trim().to_ascii_lowercase();
                match name.as_str() {
                    "content-length" => content_length = value.parse().unwrap_or(0),
                    "transfer-encoding" => chunked = value.contains("chunked"),
                    "connection" => close = value == "close",
                    "content-encoding" => encoded = value != "identity",
                    _ => {}
                }
            }
        }
        let body = if chunked {
            read_chunked(&mut reader)?
        } else {
            let mut body = vec![0u8; content_length];
            reader.read_exact(&mut body)?;
            body
        };
        if request_line.starts_with("GET /stats") {
            let json = totals.json();
            write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                json.len()
            )?;
            return Ok(());
        }
        if request_line.starts_with("POST ") {
            totals.requests.fetch_add(1, Relaxed);
            totals.body_bytes.fetch_add(body.len() as u64, Relaxed);
            match (encoded, count_spans(&body)) {
                (false, Some((spans, bytes))) => {
                    totals.spans.fetch_add(spans, Relaxed);
                    totals.span_bytes.fetch_add(bytes, Relaxed);
                }
                _ => {
                    totals.uncounted.fetch_add(1, Relaxed);
                }
            }
        }
        // An empty ExportTraceServiceResponse is zero bytes of protobuf.
        out.write_all(if close {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        })?;
        if close {
            return Ok(());
        }
    }
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(body.get_mut(start..).unwrap_or_default())?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}

/// A protobuf field: its number and, for a length-delimited field, the payload.
type Field<'a> = (u64, Option<&'a [u8]>);

/// The fields of one protobuf message, or None when it is not valid wire format.
fn fields(mut buf: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (key, rest) = varint(buf)?;
        buf = rest;
        let number = key >> 3;
        match key & 7 {
            0 => buf = varint(buf)?.1,
            1 => buf = buf.get(8..)?,
            5 => buf = buf.get(4..)?,
            2 => {
                let (len, rest) = varint(buf)?;
                let len = usize::try_from(len).ok()?;
                out.push((number, Some(rest.get(..len)?)));
                buf = rest.get(len..)?;
                continue;
            }
            _ => return None,
        }
        out.push((number, None));
    }
    Some(out)
}

fn varint(buf: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, buf.get(i + 1..)?));
        }
    }
    None
}

/// (spans, encoded bytes of the Span messages) in an ExportTraceServiceRequest.
fn count_spans(body: &[u8]) -> Option<(u64, u64)> {
    let (mut spans, mut bytes) = (0u64, 0u64);
    for (n, resource_spans) in fields(body)? {
        let (1, Some(resource_spans)) = (n, resource_spans) else { continue };
        for (n, scope_spans) in fields(resource_spans)? {
            let (2, Some(scope_spans)) = (n, scope_spans) else { continue };
            for (n, span) in fields(scope_spans)? {
                if let (2, Some(span)) = (n, span) {
                    spans += 1;
                    bytes += span.len() as u64;
                }
            }
        }
    }
    Some((spans, bytes))
}
