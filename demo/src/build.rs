//! Which build of the filter runs: the proxy-wasm filter (`target/gateway_tracing.wasm`) or the
//! native dynamic module (`target/libgateway_tracing.so`), chosen by `GATEWAY_TRACING_BUILD`
//! (`wasm`, the default, or `native`). The shipped configs are written for the wasm build;
//! [`native_config`] turns each `envoy.filters.http.wasm` stanza into the
//! `envoy.filters.http.dynamic_modules` stanza with the same filter configuration, so one set
//! of configs (and one end-to-end suite) serves both builds. [`crate::envoy::Envoy::start`]
//! applies it when the native build is selected.

/// The environment variable that selects the build.
pub const BUILD_ENV: &str = "GATEWAY_TRACING_BUILD";

/// The stats namespace of each build's filter metrics in Envoy's `/stats` output: proxy-wasm's
/// `wasmcustom`, and the dynamic-module filter's default `metrics_namespace`.
pub const WASM_STATS_NAMESPACE: &str = "wasmcustom.";
pub const NATIVE_STATS_NAMESPACE: &str = "dynamicmodulescustom.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    Wasm,
    Native,
}

impl Build {
    /// From `GATEWAY_TRACING_BUILD`; unset or empty is the wasm build. An unknown value is an
    /// error (a typo must not silently test the other build).
    pub fn from_env() -> Result<Build, String> {
        match std::env::var(BUILD_ENV).unwrap_or_default().as_str() {
            "" | "wasm" => Ok(Build::Wasm),
            "native" => Ok(Build::Native),
            other => Err(format!("{BUILD_ENV}={other:?}: expected wasm or native")),
        }
    }

    /// The artifact `make build` writes for this build, relative to the repository root.
    pub fn artifact(self) -> &'static str {
        match self {
            Build::Wasm => "target/gateway_tracing.wasm",
            Build::Native => "target/libgateway_tracing.so",
        }
    }

    /// A stat name of the wasm build (`wasmcustom.gateway_tracing.x`) as this build names it.
    pub fn stat_name(self, name: &str) -> String {
        match (self, name.strip_prefix(WASM_STATS_NAMESPACE)) {
            (Build::Native, Some(rest)) => format!("{NATIVE_STATS_NAMESPACE}{rest}"),
            _ => name.to_string(),
        }
    }
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The config with every `envoy.filters.http.wasm` filter replaced by the native module
/// (`dynamic_module_config: {name: gateway_tracing}`), keeping the plugin's name (as
/// `filter_name`) and its JSON configuration (as `filter_config`). The wasm-only settings
/// (`vm_config`, `failure_policy`, `root_id`) have no native counterpart: the module is loaded
/// from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH` and fails open by construction (README "Native
/// build"). Errors name what could not be found.
pub fn native_config(yaml: &str) -> Result<String, String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = String::with_capacity(yaml.len());
    let mut rewritten = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim() != "- name: envoy.filters.http.wasm" {
            out.push_str(line);
            out.push('\n');
            i += 1;
            continue;
        }
        let indent = indent_of(line);
        let mut end = i + 1;
        while end < lines.len() && (lines[end].trim().is_empty() || indent_of(lines[end]) > indent)
        {
            end += 1;
        }
        while end > i + 1 && lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        let block = &lines[i + 1..end];
        out.push_str(&native_stanza(indent, block)?);
        rewritten = true;
        i = end;
    }
    if rewritten && !out.contains("\nbootstrap_extensions:") {
        if let Some(at) = out.find("\nstatic_resources:") {
            out.insert_str(at + 1, BOOTSTRAP_EXTENSION);
        }
    }
    Ok(out)
}

/// The module's bootstrap extension: sends what the exporters hold when Envoy drains or shuts
/// down (native/src/bootstrap.rs).
pub const BOOTSTRAP_EXTENSION: &str = "\
# The native module's process hooks: when Envoy drains or shuts down (SIGTERM), the exporters
# send what they hold before it exits (README \"Native build\").
bootstrap_extensions:
- name: envoy.bootstrap.dynamic_modules
  typed_config:
    \"@type\": type.googleapis.com/envoy.extensions.bootstrap.dynamic_modules.v3.DynamicModuleBootstrapExtension
    dynamic_module_config: { name: gateway_tracing }
    extension_name: gateway_tracing

";

fn native_stanza(indent: usize, block: &[&str]) -> Result<String, String> {
    let name = block
        .iter()
        .find_map(|l| l.trim().strip_prefix("name: "))
        .map(|n| n.trim().to_string())
        .ok_or("wasm filter without a plugin name (config.name)")?;
    let conf_at = block
        .iter()
        .position(|l| l.trim() == "configuration:")
        .ok_or_else(|| format!("wasm filter {name}: no `configuration:` block"))?;
    let value_at = block[conf_at..]
        .iter()
        .position(|l| l.trim_start().starts_with("value:"))
        .map(|p| p + conf_at)
        .ok_or_else(|| format!("wasm filter {name}: no `configuration.value`"))?;
    let value_line = block[value_at];
    let value_indent = indent_of(value_line);
    let pad = " ".repeat(indent);
    let mut s = format!(
        "{pad}- name: envoy.filters.http.dynamic_modules\n\
         {pad}  typed_config:\n\
         {pad}    \"@type\": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter\n\
         {pad}    dynamic_module_config: {{ name: gateway_tracing }}\n\
         {pad}    filter_name: {name}\n\
         {pad}    filter_config:\n\
         {pad}      \"@type\": type.googleapis.com/google.protobuf.StringValue\n"
    );
    let value = value_line.trim_start();
    s.push_str(&format!("{pad}      {value}\n"));
    // A block scalar (`value: |`): its lines, re-indented under the new `value:`.
    for l in block[value_at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent_of(l) > value_indent)
    {
        if l.trim().is_empty() {
            s.push('\n');
        } else {
            let extra = indent_of(l) - value_indent;
            s.push_str(&format!(
                "{pad}      {}{}\n",
                " ".repeat(extra),
                l.trim_start()
            ));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WASM: &str = r#"      http_filters:
      - name: envoy.filters.http.wasm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          config:
            name: gw
            root_id: gw
            failure_policy: FAIL_OPEN
            vm_config:
              vm_id: gateway_tracing
              code: { local: { filename: target/gateway_tracing.wasm } }
            configuration:
              "@type": type.googleapis.com/google.protobuf.StringValue
              value: |
                {
                  "mode": "gateway"
                }
      - name: envoy.filters.http.router
"#;

    #[test]
    fn the_bootstrap_extension_is_added_once_before_static_resources() {
        let yaml = format!("admin: {{}}\nstatic_resources:\n  listeners:\n{WASM}");
        let native = native_config(&yaml).unwrap();
        assert!(native.starts_with(&format!(
            "admin: {{}}\n{BOOTSTRAP_EXTENSION}static_resources:"
        )));
        assert_eq!(native_config(&native).unwrap(), native, "idempotent");
    }

    #[test]
    fn the_wasm_stanza_becomes_the_module_with_the_same_configuration() {
        let native = native_config(WASM).unwrap();
        assert_eq!(
            native,
            r#"      http_filters:
      - name: envoy.filters.http.dynamic_modules
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
          dynamic_module_config: { name: gateway_tracing }
          filter_name: gw
          filter_config:
            "@type": type.googleapis.com/google.protobuf.StringValue
            value: |
              {
                "mode": "gateway"
              }
      - name: envoy.filters.http.router
"#
        );
        // Nothing to rewrite: unchanged.
        assert_eq!(native_config(&native).unwrap(), native);
    }

    #[test]
    fn a_stanza_without_configuration_is_refused_by_name() {
        let broken = WASM.replace("configuration:", "nothing:");
        assert!(native_config(&broken).unwrap_err().contains("gw"));
    }

    #[test]
    fn stat_names_follow_the_build() {
        assert_eq!(
            Build::Native.stat_name("wasmcustom.gateway_tracing.spans_exported"),
            "dynamicmodulescustom.gateway_tracing.spans_exported"
        );
        assert_eq!(Build::Wasm.stat_name("wasmcustom.x"), "wasmcustom.x");
        assert_eq!(Build::Native.stat_name("cluster.x"), "cluster.x");
    }
}
