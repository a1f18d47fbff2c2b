//! `otel-collector`: the demo's OTLP/HTTP receiver.
//!
//! Usage: `otel-collector [--listen 127.0.0.1:4318] [--jsonl FILE] [--quiet-after SECS]`
//!
//! Runs [`demo::Collector`] and prints each trace as a tree once no new span
//! has arrived for it for `--quiet-after` seconds (default 1.5). A trace that
//! later receives more spans is printed again. `GET /traces` returns all
//! spans as JSON, `GET /healthz` answers 200.

use std::collections::HashMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use demo::{tree, Collector};

struct Args {
    listen: String,
    jsonl: Option<String>,
    quiet_after: Duration,
}

const USAGE: &str = "usage: otel-collector [--listen ADDR] [--jsonl FILE] [--quiet-after SECS]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:4318".into(),
        jsonl: None,
        quiet_after: Duration::from_millis(1500),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--jsonl" => args.jsonl = Some(value()?),
            "--quiet-after" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .map_err(|_| format!("--quiet-after: not a number: {v}"))?;
                if !(secs.is_finite() && secs >= 0.0) {
                    return Err(format!("--quiet-after: must be >= 0: {v}"));
                }
                args.quiet_after = Duration::from_secs_f64(secs);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let collector = match Collector::start(&args.listen) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("otel-collector: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let collector = match &args.jsonl {
        Some(path) => match collector.with_jsonl(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("otel-collector: cannot open {path}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => collector,
    };
    println!(
        "otel-collector listening on http://{} (POST /v1/traces, GET /traces, GET /healthz)",
        collector.addr()
    );
    let _ = std::io::stdout().flush();

    // Per trace: (span count, when the count last changed, count last printed).
    let mut seen: HashMap<String, (usize, Instant, usize)> = HashMap::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let spans = collector.spans();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for s in &spans {
            *counts.entry(s.trace_id.as_str()).or_default() += 1;
        }
        let now = Instant::now();
        let mut ready: Vec<String> = Vec::new();
        for (id, n) in counts {
            let entry = seen.entry(id.to_string()).or_insert((0, now, 0));
            if entry.0 != n {
                entry.0 = n;
                entry.1 = now;
            }
            if entry.2 != entry.0 && now.duration_since(entry.1) >= args.quiet_after {
                entry.2 = entry.0;
                ready.push(id.to_string());
            }
        }
        // A `clear()` is not reachable from outside, so `seen` only grows; fine for a demo.
        if ready.is_empty() {
            continue;
        }
        let mut out = String::new();
        let picked: Vec<_> = spans
            .iter()
            .filter(|s| ready.contains(&s.trace_id))
            .cloned()
            .collect();
        out.push_str(&tree::render(&picked));
        out.push('\n');
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}
