//! Small shared HTTP-server plumbing on top of `tiny_http`: binding (with the
//! `":PORT"` shorthand), a worker pool that stops cleanly on drop, and little
//! request/response helpers used by the collector, the stub and the shop.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Request, Response, Server};

/// Largest request body any mesh server reads (16 MiB).
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Resolves a listen address. `":8080"` / `":0"` mean `127.0.0.1:PORT`.
pub fn parse_listen_addr(addr: &str) -> io::Result<SocketAddr> {
    let full = if addr.starts_with(':') {
        format!("127.0.0.1{addr}")
    } else {
        addr.to_string()
    };
    full.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot resolve listen address {addr:?}"),
        )
    })
}

/// A running `tiny_http` server with a pool of worker threads. Dropping it
/// stops the workers and closes the listener.
pub struct ServerHandle {
    server: Option<Arc<Server>>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Binds `addr` and serves every request with `handler` on `workers` threads.
    pub fn spawn<H>(
        addr: &str,
        workers: usize,
        thread_name: &str,
        handler: H,
    ) -> io::Result<ServerHandle>
    where
        H: Fn(Request) + Send + Sync + 'static,
    {
        let sock = parse_listen_addr(addr)?;
        let listener = TcpListener::bind(sock)?;
        let bound = listener.local_addr()?;
        let server =
            Server::from_listener(listener, None).map_err(|e| io::Error::other(e.to_string()))?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let server = Arc::clone(&server);
            let stop = Arc::clone(&stop);
            let handler = Arc::clone(&handler);
            let h = std::thread::Builder::new()
                .name(format!("{thread_name}-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match server.recv_timeout(Duration::from_millis(100)) {
                            Ok(Some(req)) => handler(req),
                            Ok(None) => {}
                            Err(_) => break,
                        }
                    }
                })?;
            handles.push(h);
        }
        Ok(ServerHandle {
            server: Some(server),
            addr: bound,
            stop,
            workers: handles,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(server) = &self.server {
            for _ in 0..self.workers.len() {
                server.unblock();
            }
        }
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        // tiny_http closes its listener on its accept thread, shortly after the
        // Server is dropped; wait for that so the port can be bound again at once.
        drop(self.server.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while TcpListener::bind(self.addr).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Lower-cased header list of a request, duplicates kept, in arrival order.
pub fn headers_of(req: &Request) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect()
}

/// First value of header `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads the request body, up to [`MAX_BODY`] bytes.
pub fn read_body(req: &mut Request) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    req.as_reader().take(MAX_BODY).read_to_end(&mut body)?;
    Ok(body)
}

fn content_type(value: &str) -> Option<Header> {
    Header::from_bytes(&b"Content-Type"[..], value.as_bytes()).ok()
}

/// Answers with `body` and the given status and content type. Errors writing
/// the response (client went away) are ignored.
pub fn respond_bytes(req: Request, status: u16, ctype: &str, body: Vec<u8>) {
    let mut resp = Response::from_data(body).with_status_code(status);
    if let Some(h) = content_type(ctype) {
        resp.add_header(h);
    }
    let _ = req.respond(resp);
}

/// Answers with a JSON value.
pub fn respond_json(req: Request, status: u16, value: &serde_json::Value) {
    respond_bytes(
        req,
        status,
        "application/json",
        value.to_string().into_bytes(),
    );
}

/// Answers with plain text.
pub fn respond_text(req: Request, status: u16, text: &str) {
    respond_bytes(req, status, "text/plain", text.as_bytes().to_vec());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_port_shorthand() -> io::Result<()> {
        assert_eq!(
            parse_listen_addr(":0")?,
            "127.0.0.1:0".parse().map_err(io::Error::other)?
        );
        assert_eq!(parse_listen_addr("127.0.0.1:18081")?.port(), 18081);
        assert!(parse_listen_addr("nonsense").is_err());
        Ok(())
    }
}
