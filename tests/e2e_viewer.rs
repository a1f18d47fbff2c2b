//! End-to-end: the demo collector's trace viewer in a real browser. Starts the demo mesh (real
//! gateway and cart-sidecar Envoys running gateway_tracing.wasm), drives the scripted shopping
//! flow plus one failing request, then points headless Chromium at the viewer page and checks,
//! from the DOM the page built:
//!
//! - the add-to-cart trace's waterfall: the five spans in tree order with the right depth and
//!   parent, `CartDurableObject POST /cart/add` carrying its Durable Object id `c-42`, and the
//!   details panel of that span (attributes, resource, status);
//! - the trace list: every trace, the failing one marked as an error, and the page polling the
//!   collector (live updates);
//! - the failing trace drawn in red.
//!
//! Screenshots land in `target/viewer-*.png`. With `UPDATE_README_SCREENSHOT=1` the add-to-cart
//! one is also copied to `docs/viewer.png` (the README's picture).
//!
//! Needs Chromium (Debian's `chromium`; `make test` installs it). `CHROMIUM=/path` overrides.
mod common;

use common::{ports_lock, repo_root};
use demo::mesh::{Mesh, FLOW, GATEWAY};
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
