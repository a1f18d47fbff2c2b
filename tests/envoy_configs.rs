//! Every Envoy configuration shipped in `envoy/` passes `envoy --mode validate` (the real
//! Envoy, with the built wasm). Configs written for containers reference the wasm at a
//! container path; they are validated with that path pointed at the local build.
mod common;

use common::{repo_root, wasm_path};
use std::path::{Path, PathBuf};

fn envoy_configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            envoy_configs(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            // Envoy bootstrap configs; docker-compose and Istio manifests are not.
            if std::fs::read_to_string(&path)
                .unwrap()
                .contains("static_resources:")
            {
                out.push(path);
            }
        }
    }
}

#[test]
fn every_envoy_config_in_envoy_dir_validates() {
    // The container configs name the wasm; the native configs load the module from here.
    let wasm = repo_root().join("target/gateway_tracing.wasm");
    if std::env::var_os("ENVOY_DYNAMIC_MODULES_SEARCH_PATH").is_none() {
        std::env::set_var(
            "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
            repo_root().join("target"),
        );
    }
    wasm_path();
    // Validation runs the plugin's configure step, which refuses an exporter header whose
    // ${HONEYCOMB_API_KEY} is unset (by design); give the Honeycomb example a placeholder.
    if std::env::var_os("HONEYCOMB_API_KEY").is_none() {
        std::env::set_var("HONEYCOMB_API_KEY", "validate-placeholder");
    }
    let mut configs = Vec::new();
    envoy_configs(&repo_root().join("envoy"), &mut configs);
    configs.sort();
    assert!(
        configs.iter().any(|p| p.ends_with("envoy/gateway.yaml")),
        "found {configs:?}"
    );
    let tmp = std::env::temp_dir().join(format!("gateway-tracing-validate-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for config in &configs {
        let text = std::fs::read_to_string(config).unwrap();
        let local = text.contains("filename: target/gateway_tracing.wasm")
            || !text.contains("gateway_tracing.wasm");
        let to_validate = if local {
            config.clone()
        } else {
            let rewritten = text.replace(
                "/etc/envoy/gateway_tracing.wasm",
                &wasm.display().to_string(),
            );
            assert_ne!(rewritten, text, "{}: unknown wasm path", config.display());
            let p = tmp.join(config.file_name().unwrap());
            std::fs::write(&p, rewritten).unwrap();
            p
        };
        if let Err(e) = demo::envoy::validate(&to_validate) {
            failures.push(format!("{}: {e}", config.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("validated {} Envoy configs: {configs:?}", configs.len());
}

/// The text after a config's leading comment block.
fn body(yaml: &str) -> String {
    yaml.lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The native configs shipped in `envoy/` are the wasm configs with the filter stanza
/// rewritten by `demo::build::native_config` (what the e2e suite runs with
/// GATEWAY_TRACING_BUILD=native), under their own leading comment: one source of truth.
/// `GATEWAY_TRACING_BLESS=1` rewrites their bodies.
#[test]
fn shipped_native_configs_are_the_wasm_configs_rewritten() {
    for (wasm, native) in [
        ("envoy/gateway.yaml", "envoy/gateway-native.yaml"),
        ("envoy/cart-sidecar.yaml", "envoy/cart-sidecar-native.yaml"),
    ] {
        let from = std::fs::read_to_string(repo_root().join(wasm)).unwrap();
        let want = demo::build::native_config(&body(&from)).unwrap();
        let path = repo_root().join(native);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if std::env::var_os("GATEWAY_TRACING_BLESS").is_some() {
            let header: String = have
                .lines()
                .take_while(|l| l.starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&path, format!("{header}{want}")).unwrap();
            continue;
        }
        assert_eq!(
            body(&have),
            want,
            "{native} differs from {wasm} rewritten (GATEWAY_TRACING_BLESS=1 rewrites it)"
        );
        assert!(have.contains("envoy.filters.http.dynamic_modules"));
    }
}
