//! Recording stub upstream for tests.
//!
//! This module owns [`Stub`]: an HTTP server that records every request it
//! gets ([`StubRequest`], all headers kept, duplicates included) and answers
//! `{"stub":"<name>","path":"<path>"}` as JSON. Request headers steer the
//! answer: `x-stub-status: 503` sets the status (default 200) and
//! `x-stub-delay-ms: 50` delays the reply. [`Stub::fail_next`] makes the next N requests
//! answer a given status whatever their headers (a failing-then-succeeding upstream);
//! [`Stub::delay_next`] delays the next N (a slow first attempt that a hedge overtakes).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tiny_http::Request;

use demo::http::{self, ServerHandle};

/// One request the stub received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StubRequest {
    pub method: String,
    /// Path including the query string.
    pub path: String,
    /// Lower-cased names, arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Request body (lossy UTF-8).
    pub body: String,
}

impl StubRequest {
    /// Every value of header `name` (case-insensitive), in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }
}

type Log = Arc<Mutex<Vec<StubRequest>>>;
/// Requests still to fail, and with which status; requests still to delay, and by how much.
type Failing = Arc<Mutex<(usize, u16)>>;
type Delaying = Arc<Mutex<(usize, u64)>>;

fn lock(log: &Log) -> MutexGuard<'_, Vec<StubRequest>> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running stub upstream. Stops on drop.
pub struct Stub {
    name: String,
    log: Log,
    failing: Failing,
    delaying: Delaying,
    server: ServerHandle,
}

impl Stub {
    /// Starts a stub named after its bound address.
    pub fn start(addr: &str) -> io::Result<Stub> {
        Self::start_inner(None, addr)
    }

    /// Starts a stub that reports `name` in its replies.
    pub fn start_named(name: &str, addr: &str) -> io::Result<Stub> {
        Self::start_inner(Some(name.to_string()), addr)
    }

    fn start_inner(name: Option<String>, addr: &str) -> io::Result<Stub> {
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        let shared_name: Arc<Mutex<String>> =
            Arc::new(Mutex::new(name.clone().unwrap_or_default()));
        let failing: Failing = Arc::new(Mutex::new((0, 503)));
        let handler_log = Arc::clone(&log);
        let handler_name = Arc::clone(&shared_name);
        let handler_failing = Arc::clone(&failing);
        let delaying: Delaying = Arc::new(Mutex::new((0, 0)));
        let handler_delaying = Arc::clone(&delaying);
        let server = ServerHandle::spawn(addr, 8, "stub", move |req| {
            let name = handler_name.lock().map(|n| n.clone()).unwrap_or_default();
            handle(
                &handler_log,
                &handler_failing,
                &handler_delaying,
                &name,
                req,
            )
        })?;
        let name = name.unwrap_or_else(|| server.addr().to_string());
        if let Ok(mut n) = shared_name.lock() {
            n.clone_from(&name);
        }
        Ok(Stub {
            name,
            log,
            failing,
            delaying,
            server,
        })
    }

    /// The next `n` requests are answered after `ms` milliseconds, whatever their headers.
    pub fn delay_next(&self, n: usize, ms: u64) {
        if let Ok(mut d) = self.delaying.lock() {
            *d = (n, ms);
        }
    }

    /// The next `n` requests are answered with `status`, whatever their headers.
    pub fn fail_next(&self, n: usize, status: u16) {
        if let Ok(mut f) = self.failing.lock() {
            *f = (n, status);
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// The name reported in replies.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<StubRequest> {
        lock(&self.log).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        lock(&self.log).clear();
    }

    /// Polls every 20 ms until at least `n` requests arrived; returns them,
    /// or `Err` with what arrived before `timeout`.
    pub fn wait_for_requests(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<StubRequest>, Vec<StubRequest>> {
        let deadline = Instant::now() + timeout;
        loop {
            let reqs = self.requests();
            if reqs.len() >= n {
                return Ok(reqs);
            }
            if Instant::now() >= deadline {
                return Err(reqs);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn handle(log: &Log, failing: &Failing, delaying: &Delaying, name: &str, mut req: Request) {
    let headers = http::headers_of(&req);
    let body = http::read_body(&mut req).unwrap_or_default();
    let record = StubRequest {
        method: req.method().to_string(),
        path: req.url().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let status = record
        .header("x-stub-status")
        .and_then(|v| v.trim().parse::<u16>().ok())
        .filter(|s| (100..=999).contains(s))
        .unwrap_or(200);
    let status = match failing.lock() {
        Ok(mut f) if f.0 > 0 => {
            f.0 -= 1;
            f.1
        }
        _ => status,
    };
    let delay = record
        .header("x-stub-delay-ms")
        .and_then(|v| v.trim().parse::<u64>().ok());
    let delay = match delaying.lock() {
        Ok(mut d) if d.0 > 0 => {
            d.0 -= 1;
            Some(d.1)
        }
        _ => delay,
    };
    let path = record.path.clone();
    lock(log).push(record);
    if let Some(ms) = delay {
        std::thread::sleep(Duration::from_millis(ms.min(30_000)));
    }
    http::respond_json(
        req,
        status,
        &serde_json::json!({ "stub": name, "path": path }),
    );
}
