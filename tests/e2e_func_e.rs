//! End-to-end: the README's func-e instructions, run as written. The block between the
//! `func-e instructions` markers in README.md places the pip Envoy where func-e keeps its
//! versions and runs `target/func-e run -c envoy/gateway.yaml`; the gateway it starts must
//! serve a traced request (its SERVER and CLIENT spans at the demo collector). Nothing is
//! downloaded: func-e finds the selected version installed and never looks one up.
mod common;

use common::{ports_lock, repo_root, send};
use demo::collector::Collector;
use demo::envoy::{tail_lines, wait_for_http_ok};
use demo::shop::{self, Service};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BEGIN: &str = "<!-- func-e instructions: tests/e2e_func_e.rs runs this block as written -->";
const END: &str = "<!-- end func-e instructions -->";

/// The ```sh block between the markers.
fn readme_block() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find(BEGIN)
        .expect("README has the func-e instructions marker")
        + BEGIN.len();
    let end = start
        + readme[start..]
            .find(END)
            .expect("README has the end marker");
    let block = readme[start..end].trim();
    let body = block
        .strip_prefix("```sh")
        .and_then(|b| b.strip_suffix("```"))
        .unwrap_or_else(|| panic!("not one ```sh block:\n{block}"));
    assert!(body.contains("func-e run -c envoy/gateway.yaml"), "{body}");
    body.to_string()
}

/// The script's process group: stopped (SIGTERM, then SIGKILL) on drop, its output printed
/// when the test is failing.
struct Script {
    child: Child,
    log: std::path::PathBuf,
}

impl Script {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Signals the process group this test created (`process_group(0)` at spawn).
    fn signal_group(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        // func-e forwards SIGTERM to Envoy and waits for it.
        self.signal_group("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal_group("KILL");
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- func-e script output ---\n{}",
                tail_lines(&self.log(), 150)
            );
        }
    }
}

#[test]
fn readme_func_e_instructions_run_the_gateway_with_the_pip_envoy() {
    let _lock = ports_lock();
    common::wasm_path();
    let root = repo_root();
    let block = readme_block();
    let collector = Collector::start("127.0.0.1:4318").unwrap();
    let _services: Vec<_> = Service::ALL
        .iter()
        .map(|s| shop::serve(*s, s.default_listen(), shop::DEFAULT_OUTBOUND).unwrap())
        .collect();

    // func-e's logs and runtime files in a temp dir, not under $HOME.
    let tmp = std::env::temp_dir().join(format!("gateway-tracing-func-e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let log = tmp.join("script.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&block)
        .current_dir(&root)
        .env("FUNC_E_STATE_HOME", tmp.join("state"))
        .env("FUNC_E_RUNTIME_DIR", tmp.join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .process_group(0)
        .spawn()
        .unwrap();
    let mut script = Script { child, log };

    if let Err(e) = wait_for_http_ok("http://127.0.0.1:9901/ready", Duration::from_secs(120)) {
        let exited = script.child.try_wait().ok().flatten();
        panic!("the gateway under func-e is not ready ({e}); script exited: {exited:?}");
    }
    let r = send("127.0.0.1:10000", "GET", "/api/products", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    let spans = collector
        .wait_for(Duration::from_secs(10), |s| s.len() >= 2)
        .unwrap_or_else(|s| panic!("{} spans arrived", s.len()));
    let names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"GET /api/products"), "{names:?}");
    assert!(
        names.contains(&"PRODUCTS_SERVICE GET /products"),
        "{names:?}"
    );
    assert!(spans.iter().all(|s| s.trace_id == spans[0].trace_id));

    // It was func-e that ran the pip Envoy, found where the README put it.
    let log = script.log();
    let data = root.join("target/func-e-home/data/envoy-versions");
    let installed: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(installed.len(), 1, "one version installed: {installed:?}");
    assert!(
        !log.contains("downloading"),
        "func-e downloaded something:\n{log}"
    );
    let which = Command::new(root.join("target/func-e"))
        .arg("which")
        .env("FUNC_E_DATA_HOME", root.join("target/func-e-home/data"))
        .env("FUNC_E_CONFIG_HOME", root.join("target/func-e-home/config"))
        .output()
        .unwrap();
    let which = String::from_utf8_lossy(&which.stdout).trim().to_string();
    assert_eq!(
        which,
        data.join(&installed[0])
            .join("bin/envoy")
            .display()
            .to_string()
    );
    drop(script);
    let _ = std::fs::remove_dir_all(&tmp);
}
