//! End-to-end: the demo collector's trace viewer in a real browser. Starts the demo mesh (real
//! gateway and cart-sidecar Envoys running gateway_tracing.wasm), drives the scripted shopping
//! flow plus one failing request, then points headless Chromium at the viewer page and checks,
//! from the DOM the page built:
//!
//! - the add-to-cart trace's waterfall: the five spans in tree order with the right depth and
//!   parent, `CartDurableObject POST /cart/add` carrying its Durable Object id `c-42`, and the
//!   details panel of that span (attributes, resource, status);
//! - the trace list: every trace, the failing one marked as an error, and the page polling the
//!   collector;
//! - the failing trace drawn in red;
//! - live updates: with the page open (driven over the DevTools protocol, real time), a new
//!   request through the gateway appears at the top of the list, in the same document (no
//!   reload), the open trace staying open.
//!
//! Screenshots land in `target/viewer-*.png`. With `UPDATE_README_SCREENSHOT=1` the add-to-cart
//! one is also copied to `docs/viewer.png` (the README's picture).
//!
//! Needs Chromium (Debian's `chromium`; `make test` installs it). `CHROMIUM=/path` overrides.
mod common;

use common::{ports_lock, repo_root};
use demo::mesh::{Mesh, FLOW, GATEWAY};
use demo::serde_json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("no Chromium found (install Debian's `chromium`, `make test` does it, or set CHROMIUM=/path)");
}

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout.
fn run_chromium(url: &str, extra: &[&str], tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!(
        "gateway-tracing-chromium-{}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium().display()));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish in 90 s; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        status.success(),
        "chromium {status}; stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe` (commands on the
/// child's fd 3, replies on its fd 4, NUL-separated JSON): enough to open a page and evaluate
/// JavaScript in it while it keeps running in real time.
struct Cdp {
    child: std::process::Child,
    to: std::fs::File,
    from: std::io::BufReader<std::fs::File>,
    next_id: u64,
    session: Option<String>,
    dir: PathBuf,
    /// Set on drop; until then a watchdog kills Chromium after 90 s, so a hung browser fails
    /// the test (the pipe closes) instead of blocking it.
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

mod sys {
    extern "C" {
        pub fn dup2(old: i32, new: i32) -> i32;
        pub fn fcntl(fd: i32, cmd: i32, ...) -> i32;
        pub fn kill(pid: i32, sig: i32) -> i32;
        pub fn pipe2(fds: *mut i32, flags: i32) -> i32;
    }
    pub const O_CLOEXEC: i32 = 0o2000000;
    pub const F_DUPFD: i32 = 0;
}

/// (read end, write end), both close-on-exec.
fn cloexec_pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, which we then own.
    let rc = unsafe { sys::pipe2(fds.as_mut_ptr(), sys::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: fresh descriptors, owned by nothing else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

impl Cdp {
    fn launch(tag: &str) -> Cdp {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let dir = std::env::temp_dir().join(format!(
            "gateway-tracing-chromium-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (cmd_r, cmd_w) = cloexec_pipe();
        let (resp_r, resp_w) = cloexec_pipe();
        let (cr, rw) = (cmd_r.as_raw_fd(), resp_w.as_raw_fd());
        let mut command = Command::new(chromium());
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--remote-debugging-pipe",
                "about:blank",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The pipe
        // ends are moved above fd 9 first so that dup2 onto 3 and 4 never clobbers the other
        // one; dup2 clears close-on-exec on 3 and 4.
        unsafe {
            command.pre_exec(move || {
                let a = sys::fcntl(cr, sys::F_DUPFD, 10);
                let b = sys::fcntl(rw, sys::F_DUPFD, 10);
                if a < 0 || b < 0 || sys::dup2(a, 3) < 0 || sys::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(cmd_r);
        drop(resp_w);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let done = done.clone();
            let pid = child.id() as i32;
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(90);
                while Instant::now() < deadline {
                    if done.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                if !done.load(std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("chromium (DevTools pipe) hung for 90 s: killing it");
                    // SAFETY: plain syscall on our own child, which has not been reaped yet
                    // (reaping happens in Drop, after `done` is set).
                    unsafe { sys::kill(pid, 9) };
                }
            });
        }
        Cdp {
            child,
            to: cmd_w,
            from: std::io::BufReader::new(resp_r),
            next_id: 0,
            session: None,
            dir,
            done,
        }
    }

    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use std::io::{BufRead, Write};
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = serde_json::json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let mut buf = Vec::new();
            let n = self.from.read_until(0, &mut buf).unwrap();
            assert!(n > 0, "chromium closed the DevTools pipe");
            buf.pop();
            let reply: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", serde_json::json!({"url": url}));
        let session = self.call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = Some(session["sessionId"].as_str().unwrap().to_string());
    }

    fn eval(&mut self, expression: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expression, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` every 100 ms until it is `true`.
    fn wait_until(&mut self, expression: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.eval(expression) == serde_json::json!(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        // Close the browser properly (so its helper processes exit with it), then make sure.
        {
            use std::io::Write;
            let _ = self
                .to
                .write_all(b"{\"id\":999999,\"method\":\"Browser.close\"}\0");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The page's DOM after it has loaded and polled for a few (virtual) seconds.
fn dump_dom(url: &str, tag: &str) -> String {
    let dom = run_chromium(url, &["--virtual-time-budget=4000", "--dump-dom"], tag);
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page never rendered data from the collector:\n{dom}"
    );
    dom
}

fn screenshot(url: &str, path: &Path, tag: &str) {
    let _ = std::fs::remove_file(path);
    run_chromium(
        url,
        &[
            "--virtual-time-budget=4000",
            "--window-size=1280,760",
            &format!("--screenshot={}", path.display()),
        ],
        tag,
    );
    let png = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}: not a PNG",
        path.display()
    );
    assert!(
        png.len() > 10_000,
        "{}: {} bytes, blank?",
        path.display(),
        png.len()
    );
}

/// `name="value"` inside one tag's text.
fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_string())
}

/// Text of the first `<span class="CLASS" ...>TEXT</span>` in `html`.
fn span_text(html: &str, class: &str) -> Option<String> {
    let start = html.find(&format!("class=\"{class}\""))?;
    let open_end = html[start..].find('>')? + start + 1;
    let close = html[open_end..].find("</span>")? + open_end;
    Some(html[open_end..close].to_string())
}

#[derive(Debug)]
struct Row {
    span_id: String,
    parent_id: String,
    depth: usize,
    service: String,
    status: String,
    classes: String,
    name: String,
    /// The row's whole HTML.
    html: String,
}

/// The waterfall's rows, in page order.
fn parse_rows(dom: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let marker = "<div class=\"span-row";
    let mut rest = dom;
    while let Some(i) = rest.find(marker) {
        let chunk = &rest[i..];
        let next = chunk[marker.len()..]
            .find(marker)
            .map_or(chunk.len(), |n| n + marker.len());
        let html = &chunk[..next];
        let tag = &html[..html.find('>').unwrap()];
        out.push(Row {
            span_id: attr(tag, "data-span-id").unwrap(),
            parent_id: attr(tag, "data-parent-id").unwrap(),
            depth: attr(tag, "data-depth").unwrap().parse().unwrap(),
            service: attr(tag, "data-service").unwrap(),
            status: attr(tag, "data-status").unwrap(),
            classes: tag[5..].split('"').nth(1).unwrap().to_string(),
            name: span_text(html, "span-name").unwrap(),
            html: html.to_string(),
        });
        rest = &chunk[next..];
    }
    out
}

/// `<th>key</th><td>value</td>` somewhere in `html`.
fn has_kv(html: &str, key: &str, value: &str) -> bool {
    html.contains(&format!("<th>{key}</th><td>{value}</td>"))
}

#[test]
fn viewer_shows_the_add_to_cart_waterfall_in_headless_chromium() {
    let _lock = ports_lock();
    common::wasm_path();
    let chrome = chromium();
    let root = repo_root();
    let mesh = Mesh::start(&root, None, None).unwrap_or_else(|e| panic!("{e}"));

    let mut results = Vec::new();
    for step in &FLOW {
        let r = mesh.run_step(step, Duration::from_secs(10));
        assert!(
            r.problems.is_empty(),
            "{} {}: {:?}",
            step.method,
            step.path,
            r.problems
        );
        results.push(r);
    }
    // One failing request: the legacy service is down (503, connection failure).
    let before = mesh.collector.spans().len();
    let status = demo::mesh::send(GATEWAY, "GET", "/api/legacy/report", "").unwrap();
    assert_eq!(status, 503);
    let spans = mesh
        .collector
        .wait_for(Duration::from_secs(10), |s| {
            s.len() >= before + 2 && s.iter().any(|x| x.name == "GET /api/legacy/*")
        })
        .unwrap_or_else(|s| panic!("legacy trace did not arrive: {}", demo::tree::render(&s)));
    let legacy_trace = spans
        .iter()
        .find(|s| s.name == "GET /api/legacy/*")
        .unwrap()
        .trace_id
        .clone();

    let cart = &results[2].spans;
    let trace_id = results[2].trace_id.clone().unwrap();
    let by_name = |n: &str| cart.iter().find(|s| s.name == n).unwrap();
    let do_span = by_name("CartDurableObject POST /cart/add");
    let base = mesh.collector.viewer_url();
    let url = format!("{base}?trace={trace_id}&span={}", do_span.span_id);

    // ---- the add-to-cart waterfall ----
    let started = Instant::now();
    let polls_before = mesh.collector.viewer_polls();
    let dom = dump_dom(&url, "cart");
    let polls = mesh.collector.viewer_polls() - polls_before;
    eprintln!(
        "{}: DOM dumped in {:?} ({} bytes), {polls} polls of /api/traces",
        chrome.display(),
        started.elapsed(),
        dom.len()
    );
    let rows = parse_rows(&dom);
    let shape: Vec<(usize, &str, &str)> = rows
        .iter()
        .map(|r| (r.depth, r.name.as_str(), r.service.as_str()))
        .collect();
    assert_eq!(rows.len(), 5, "five spans: {shape:#?}");
    // Tree order; the cart's two outgoing calls are siblings (either order).
    let expected = [
        (0, "POST /api/cart/:cartId/add", "ecomm-ms-gateway"),
        (1, "CartDurableObject POST /cart/add", "ecomm-ms-gateway"),
        (2, "POST /cart/add", "cart-service"),
    ];
    assert_eq!(&shape[..3], &expected[..], "{shape:#?}");
    let mut leaves: Vec<_> = shape[3..].to_vec();
    leaves.sort();
    assert_eq!(
        leaves,
        vec![
            (
                3,
                "FULFILLMENT_SERVICE GET /shipping-options",
                "cart-service"
            ),
            (3, "PRODUCTS_SERVICE GET /products/:id", "cart-service"),
        ],
        "{shape:#?}"
    );
    // Each row's parent is the real parent span, and the ids are the collector's.
    for r in &rows {
        let s = cart.iter().find(|s| s.span_id == r.span_id).unwrap();
        assert_eq!(r.name, s.name);
        assert_eq!(r.parent_id, s.parent_span_id, "{}", r.name);
        assert_eq!(r.status, "UNSET");
        assert!(!r.classes.contains("error"), "{}", r.name);
        assert!(r.html.contains("class=\"bar\""), "{}: no bar", r.name);
    }
    for w in rows.windows(2) {
        if w[1].depth > w[0].depth {
            assert_eq!(
                w[1].parent_id, w[0].span_id,
                "{} under {}",
                w[1].name, w[0].name
            );
        }
    }
    // The Durable Object span: its id on the row, and selected with its details shown.
    let do_row = &rows[1];
    assert!(do_row.classes.contains("selected"), "{}", do_row.classes);
    assert!(
        do_row.html.contains(">id c-42</span>"),
        "durable object id badge:\n{}",
        do_row.html
    );
    let details = &dom[dom.find("id=\"details\"").expect("details panel")..];
    assert!(details.contains("CartDurableObject POST /cart/add"));
    assert!(
        has_kv(details, "durable_object.id", "c-42"),
        "details:\n{details}"
    );
    assert!(has_kv(details, "durable_object.name", "CartDurableObject"));
    assert!(has_kv(details, "kind", "CLIENT"));
    assert!(
        has_kv(details, "service.name", "ecomm-ms-gateway"),
        "resource"
    );
    assert!(details.contains("call.start"), "events");
    // The list: every trace, newest first, the open one selected, the failure marked.
    let list =
        &dom[dom.find("id=\"trace-list\"").unwrap()..dom.find("<section id=\"trace\"").unwrap()];
    let items: Vec<&str> = list.split("<div class=\"trace-item").skip(1).collect();
    assert_eq!(items.len(), 5, "4 flow traces + the failing one");
    let item = |t: &str| {
        *items
            .iter()
            .find(|i| i.contains(&format!("data-trace-id=\"{t}\"")))
            .unwrap_or_else(|| panic!("trace {t} not listed"))
    };
    for r in &results {
        assert!(!item(r.trace_id.as_deref().unwrap()).contains("err-mark"));
    }
    assert!(item(&trace_id).starts_with(" selected\""));
    assert!(item(&legacy_trace).contains("class=\"err-mark\""));
    assert!(items[0].contains(&legacy_trace), "newest first");
    // Live: the page keeps polling the collector (once a second) without a reload.
    assert!(
        polls >= 3,
        "the page polled /api/traces {polls} times in 4 s"
    );

    // ---- the failing trace is red ----
    let dom = dump_dom(&format!("{base}?trace={legacy_trace}"), "legacy");
    let rows_err = parse_rows(&dom);
    assert_eq!(rows_err.len(), 2, "{rows_err:#?}");
    for r in &rows_err {
        assert_eq!(r.status, "ERROR", "{}", r.name);
        assert!(r.classes.contains("error"));
        assert!(r.html.contains("class=\"bar error\""));
    }
    assert_eq!(rows_err[1].name, "LEGACY_SERVICE GET /legacy/*");

    // ---- live: a new request shows up in the open page, no reload ----
    let live_started = Instant::now();
    let mut cdp = Cdp::launch("live");
    cdp.open(&url);
    assert!(
        cdp.wait_until(
            "document.querySelectorAll('.trace-item').length === 5",
            Duration::from_secs(30)
        ),
        "the page never listed the 5 traces"
    );
    // A marker that a reload would wipe.
    cdp.eval("window.__sameDocument = 'yes'");
    let before = mesh.collector.spans().len();
    assert_eq!(
        demo::mesh::send(GATEWAY, "GET", "/api/products/p-1", "").unwrap(),
        200
    );
    let spans = mesh
        .collector
        .wait_for(Duration::from_secs(10), |s| {
            s.iter()
                .skip(before)
                .any(|x| x.name == "GET /api/products/:id")
        })
        .unwrap_or_else(|s| panic!("products trace did not arrive: {}", demo::tree::render(&s)));
    let new_trace = spans
        .iter()
        .skip(before)
        .find(|x| x.name == "GET /api/products/:id")
        .unwrap()
        .trace_id
        .clone();
    assert!(
        cdp.wait_until(
            &format!("!!document.querySelector('.trace-item[data-trace-id=\"{new_trace}\"]')"),
            Duration::from_secs(10)
        ),
        "the new trace {new_trace} did not appear in the open page"
    );
    assert_eq!(
        cdp.eval("window.__sameDocument"),
        "yes",
        "the page reloaded"
    );
    assert_eq!(
        cdp.eval("document.querySelector('.trace-item').getAttribute('data-trace-id')"),
        serde_json::json!(new_trace),
        "newest first"
    );
    // The open trace stays open.
    assert_eq!(
        cdp.eval("document.querySelectorAll('.span-row').length"),
        serde_json::json!(5)
    );
    drop(cdp);
    eprintln!("live update seen in {:?}", live_started.elapsed());

    // ---- screenshots ----
    let target = root.join("target");
    let shot = target.join("viewer-add-to-cart.png");
    screenshot(&url, &shot, "shot-cart");
    let shot_err = target.join("viewer-error.png");
    screenshot(
        &format!("{base}?trace={legacy_trace}&span={}", {
            spans
                .iter()
                .find(|s| s.name == "LEGACY_SERVICE GET /legacy/*")
                .unwrap()
                .span_id
                .clone()
        }),
        &shot_err,
        "shot-err",
    );
    eprintln!("screenshots: {} {}", shot.display(), shot_err.display());
    if std::env::var_os("UPDATE_README_SCREENSHOT").is_some() {
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::copy(&shot, root.join("docs/viewer.png")).unwrap();
    }
    eprintln!("viewer test took {:?}", started.elapsed());
}
