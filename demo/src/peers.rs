//! The real peers this project is tested against, as processes: the OpenTelemetry Collector
//! distribution built from `collector/` (`target/otelcol-gt`) and Jaeger v2
//! (`target/jaeger`), both built by `make peers` from pinned Go modules.
//!
//! This module owns [`Peer`]: one such process started with a config file, waited for
//! (an HTTP readiness URL answering 200), its output captured in a log file, stopped on drop
//! (SIGTERM, then SIGKILL) with its log printed when a test is failing; and reading the
//! Collector's own Prometheus metrics ([`Peer::metric`]).

use crate::envoy::{tail_lines, wait_for_http_ok, ProcessGuard};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How many log lines an error message or a failing test's dump carries.
const LOG_TAIL_LINES: usize = 150;

/// `target/otelcol-gt` under the repository root `root`.
pub fn otelcol_binary(root: &Path) -> PathBuf {
    root.join("target/otelcol-gt")
}

/// `target/jaeger` under the repository root `root`.
pub fn jaeger_binary(root: &Path) -> PathBuf {
    root.join("target/jaeger")
}

/// `target/func-e` under the repository root `root`.
pub fn func_e_binary(root: &Path) -> PathBuf {
    root.join("target/func-e")
}

/// A running Collector or Jaeger. Dropping it stops the process.
pub struct Peer {
    name: String,
    guard: Option<ProcessGuard>,
    log_path: PathBuf,
    metrics_url: Option<String>,
    agent: ureq::Agent,
}

/// How to start a [`Peer`].
#[derive(Debug, Clone)]
pub struct PeerOpts {
    /// Shown in errors and log dumps (`tier1`, `jaeger`).
    pub name: String,
    /// The binary (`otelcol_binary`, `jaeger_binary`).
    pub binary: PathBuf,
    /// The config file, passed as `--config`.
    pub config: PathBuf,
    /// Polled until it answers 200 (a `health_check` endpoint).
    pub ready_url: String,
    /// The Collector's own metrics in the Prometheus format (`service.telemetry.metrics`).
    pub metrics_url: Option<String>,
    /// Extra environment (`${env:VAR}` in the config).
    pub env: Vec<(String, String)>,
    /// Where the log goes (stdout and stderr).
    pub log_dir: PathBuf,
    pub ready_timeout: Duration,
}

impl Peer {
    /// Starts the process and waits until `ready_url` answers 200. On failure the error carries
    /// the end of its log, and the process is stopped.
    pub fn start(opts: PeerOpts) -> Result<Peer, String> {
        if !opts.binary.exists() {
            return Err(format!(
                "{} is missing: run `make peers` (make test does it for you)",
                opts.binary.display()
            ));
        }
        std::fs::create_dir_all(&opts.log_dir)
            .map_err(|e| format!("creating {}: {e}", opts.log_dir.display()))?;
        let log_path = opts.log_dir.join(format!("{}.log", opts.name));
        let log =
            File::create(&log_path).map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let log_err = log.try_clone().map_err(|e| format!("log handle: {e}"))?;
        let mut cmd = Command::new(&opts.binary);
        cmd.arg("--config")
            .arg(&opts.config)
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let guard = ProcessGuard::spawn(&mut cmd)
            .map_err(|e| format!("spawning {}: {e}", opts.binary.display()))?;
        let mut peer = Peer {
            name: opts.name,
            guard: Some(guard.with_grace(Duration::from_secs(10))),
            log_path,
            metrics_url: opts.metrics_url,
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(5))
                .build(),
        };
        if let Err(e) = wait_for_http_ok(&opts.ready_url, opts.ready_timeout) {
            let exited = !peer.is_running();
            return Err(format!(
                "{} not ready{}: {e}\n--- {} log (tail) ---\n{}",
                peer.name,
                if exited { " (it exited)" } else { "" },
                peer.name,
                peer.log_tail()
            ));
        }
        // A process that lost its ports to an older one exits right away; the older one
        // must not pass for it.
        std::thread::sleep(Duration::from_millis(300));
        if !peer.is_running() {
            return Err(format!(
                "{} exited right after start (another process on its ports?)\n--- {} log (tail) ---\n{}",
                peer.name,
                peer.name,
                peer.log_tail()
            ));
        }
        Ok(peer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.guard.as_mut().is_some_and(|g| g.is_running())
    }

    /// Everything the process has logged so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        tail_lines(&self.log(), LOG_TAIL_LINES)
    }

    /// The Prometheus text of the process's own metrics.
    pub fn metrics(&self) -> Result<String, String> {
        let url = self
            .metrics_url
            .as_deref()
            .ok_or_else(|| format!("{}: no metrics URL", self.name))?;
        self.agent
            .get(url)
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?
            .into_string()
            .map_err(|e| format!("GET {url}: {e}"))
    }

    /// The sum of every sample of metric `name` whose labels contain each of `labels`
    /// (`key="value"` strings); 0 when there is none.
    pub fn metric(&self, name: &str, labels: &[&str]) -> Result<f64, String> {
        Ok(sum_metric(&self.metrics()?, name, labels))
    }

    /// Stops the process now (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        if let Some(g) = self.guard.take() {
            let _ = g.stop();
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ({}) ---\n{}",
                self.name,
                self.log_path.display(),
                self.log_tail()
            );
        }
    }
}

/// `GET url`: the body on 200, `None` on 404 (e.g. a trace Jaeger does not have).
pub fn http_get(url: &str) -> Result<Option<String>, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    match agent.get(url).call() {
        Ok(r) => r
            .into_string()
            .map(Some)
            .map_err(|e| format!("GET {url}: {e}")),
        Err(ureq::Error::Status(404, _)) => Ok(None),
        Err(e) => Err(format!("GET {url}: {e}")),
    }
}

/// Sums the samples of `name` (exactly that metric name, any labels containing `labels`) in
/// Prometheus text format.
pub fn sum_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_samples_by_name_and_labels() {
        let text = "# HELP x\n# TYPE otelcol_receiver_accepted_spans counter\n\
            otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"http\"} 12\n\
            otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"} 3\n\
            otelcol_receiver_accepted_spans_total 99\n\
            otelcol_exporter_sent_spans 7\n";
        assert_eq!(
            sum_metric(text, "otelcol_receiver_accepted_spans", &[]),
            15.0
        );
        assert_eq!(
            sum_metric(
                text,
                "otelcol_receiver_accepted_spans",
                &["transport=\"grpc\""]
            ),
            3.0
        );
        assert_eq!(sum_metric(text, "otelcol_exporter_sent_spans", &[]), 7.0);
        assert_eq!(sum_metric(text, "missing", &[]), 0.0);
    }
}
