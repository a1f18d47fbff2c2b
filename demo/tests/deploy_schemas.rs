//! The deployment files that cannot run here (no Docker engine, no cluster) are checked against
//! their ecosystems' own schemas, vendored in `tests/schemas/` (see its README for sources and
//! licenses):
//!
//! - `envoy/docker-compose.yaml` against the Compose Specification JSON schema, and that it runs
//!   the scale-out topology the fleet test runs (`envoy/collector/`);
//! - every `WasmPlugin` in `envoy/istio-wasmplugin.yaml` against the WasmPlugin CRD's OpenAPI
//!   schema, with unknown fields refused (Kubernetes would silently prune them).
//!
//! Each `pluginConfig` also goes through the real plugin in `envoy --mode validate` (skipped
//! without Envoy or the built wasm; `make test` has both).
//!
//! Each check has a negative twin (a mutated document must fail), so the checks can fail. A few
//! properties the schemas cannot express (admin API on loopback only, the wasm mount never
//! created as a directory, no secret needed on the collector route) are asserted directly.
//! The Envoy configs themselves are checked by `tests/envoy_configs.rs` (`envoy --mode validate`).

use serde_json::{json, Map, Value};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn json_file(rel: &str) -> Value {
    serde_json::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// All YAML documents of a file, as JSON values.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value =
                serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}"));
            serde_json::to_value(v).unwrap_or_else(|e| panic!("{rel}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// A named change to a document that its schema must refuse.
type Mutation = Box<dyn Fn(&mut Value)>;

fn errors(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect()
}

// ---- Compose ------------------------------------------------------------------------------

const COMPOSE: &str = "envoy/docker-compose.yaml";

fn compose_validator() -> jsonschema::Validator {
    let schema = json_file("tests/schemas/compose-spec.json");
    jsonschema::draft7::new(&schema).unwrap_or_else(|e| panic!("compose schema: {e}"))
}

fn compose() -> Value {
    let mut docs = yaml_docs(COMPOSE);
    assert_eq!(docs.len(), 1, "{COMPOSE}: one YAML document");
    docs.remove(0)
}

#[test]
fn compose_file_matches_the_compose_spec() {
    let errs = errors(&compose_validator(), &compose());
    assert!(errs.is_empty(), "{COMPOSE}:\n{}", errs.join("\n"));
}

#[test]
fn compose_spec_check_refuses_mutated_files() {
    let v = compose_validator();
    let base = compose();
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "misspelt service key",
            Box::new(|d| d["services"]["envoy"]["volume"] = json!(["./a:/b"])),
        ),
        (
            "unknown top-level key",
            Box::new(|d| d["service"] = json!({})),
        ),
        (
            "ports not a list",
            Box::new(|d| d["services"]["envoy"]["ports"] = json!("10000:10000")),
        ),
        (
            "unknown bind option",
            Box::new(|d| {
                if let Some(vols) = d["services"]["envoy"]["volumes"].as_array_mut() {
                    for vol in vols {
                        if vol.get("bind").is_some() {
                            vol["bind"]["create_host_dir"] = json!(false);
                        }
                    }
                }
            }),
        ),
    ];
    for (what, mutate) in mutations {
        let mut doc = base.clone();
        mutate(&mut doc);
        assert_ne!(doc, base, "{what}: the mutation changed nothing");
        assert!(!v.is_valid(&doc), "{what}: the schema accepted it");
    }
}

/// `"[ip:]host:container[/proto]"` -> (host ip, host port, container port).
fn short_port(p: &str) -> (Option<String>, String, String) {
    let p = p.split('/').next().unwrap_or(p);
    let parts: Vec<&str> = p.rsplitn(3, ':').collect();
    match parts.as_slice() {
        [c] => (None, String::new(), c.to_string()),
        [c, h] => (None, h.to_string(), c.to_string()),
        [c, h, ip] => (Some(ip.to_string()), h.to_string(), c.to_string()),
        _ => unreachable!(),
    }
}

#[test]
fn compose_keeps_envoy_admin_on_loopback_and_never_creates_the_wasm_path() {
    let doc = compose();
    let envoy = &doc["services"]["envoy"];

    // Every published port: the admin API (9901) only on 127.0.0.1.
    let ports = envoy["ports"].as_array().expect("envoy.ports");
    let mut admin = 0;
    for p in ports {
        let (ip, host, container) = match p {
            Value::String(s) => short_port(s),
            Value::Object(o) => (
                o.get("host_ip").and_then(Value::as_str).map(String::from),
                o.get("published")
                    .map(|v| v.to_string().replace('"', ""))
                    .unwrap_or_default(),
                o.get("target").map(|v| v.to_string()).unwrap_or_default(),
            ),
            other => panic!("port {other}"),
        };
        if container == "9901" {
            admin += 1;
            assert_eq!(
                ip.as_deref(),
                Some("127.0.0.1"),
                "Envoy's admin API must not be published on all interfaces ({host}:{container})"
            );
        }
    }
    assert_eq!(admin, 1, "the admin port is published once: {ports:?}");

    // The wasm mount: long syntax, create_host_path false (a missing file must not become a
    // directory that then breaks `make build`), at the path envoy/docker/envoy.yaml loads.
    let vols = envoy["volumes"].as_array().expect("envoy.volumes");
    let wasm: Vec<&Value> = vols
        .iter()
        .filter(|v| v.to_string().contains("gateway_tracing.wasm"))
        .collect();
    assert_eq!(wasm.len(), 1, "one wasm mount: {vols:?}");
    let m = wasm[0];
    assert!(m.is_object(), "the wasm mount uses the long syntax: {m}");
    assert_eq!(m["type"], "bind");
    assert_eq!(m["source"], "../target/gateway_tracing.wasm");
    assert_eq!(m["read_only"], true);
    assert_eq!(m["bind"]["create_host_path"], false, "{m}");
    let target = m["target"].as_str().expect("target");
    let envoy_yaml = read("envoy/docker/envoy.yaml");
    assert!(
        envoy_yaml.contains(&format!("filename: {target} ")),
        "envoy/docker/envoy.yaml does not load the wasm from {target}"
    );
    // No other short-syntax bind mount may point at a file that might not exist yet.
    for v in vols {
        if let Some(s) = v.as_str() {
            let src = s.split(':').next().unwrap_or("");
            assert!(
                repo().join("envoy").join(src).exists(),
                "{s}: short-syntax bind of a missing path would create a directory"
            );
        }
    }
}

/// The compose services that mount `./collector/<file>` (the fleet's configs).
fn services_mounting(doc: &Value, file: &str) -> Vec<String> {
    let services = doc["services"].as_object().expect("services");
    services
        .iter()
        .filter(|(_, svc)| {
            svc["volumes"].as_array().is_some_and(|vols| {
                vols.iter().any(|v| {
                    v.as_str()
                        .is_some_and(|s| s.starts_with(&format!("./collector/{file}:")))
                })
            })
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The compose file runs the topology the fleet test runs (tests/e2e_fleet.rs): the same
/// config files, wired the same way (tier 1 -> both tier-2 services -> Jaeger), and every
/// variable it sets is one the config reads.
#[test]
fn compose_runs_the_tested_scale_out_topology() {
    let doc = compose();
    let env = |svc: &str, key: &str| -> String {
        doc["services"][svc]["environment"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{svc}: environment {key}"))
            .to_string()
    };
    let host = |addr: String| addr.split(':').next().unwrap_or_default().to_string();
    assert_eq!(services_mounting(&doc, "tier1.yaml"), ["otel-collector"]);
    let mut tier2 = services_mounting(&doc, "tier2.yaml");
    tier2.sort();
    assert_eq!(tier2.len(), 2, "two second-tier Collectors: {tier2:?}");
    let mut routed = vec![
        host(env("otel-collector", "TIER2_A")),
        host(env("otel-collector", "TIER2_B")),
    ];
    routed.sort();
    assert_eq!(routed, tier2, "tier 1 routes to both tier-2 services");
    assert_eq!(services_mounting(&doc, "jaeger.yaml"), ["jaeger"]);
    for t in &tier2 {
        assert_eq!(host(env(t, "JAEGER_OTLP_GRPC")), "jaeger");
    }
    // The Envoy config sends to tier 1 by that service name.
    assert!(read("envoy/docker/envoy.yaml").contains("address: otel-collector, port_value: 4318"));
    // Every variable set is read by the mounted config (a renamed variable would silently
    // fall back to the loopback default).
    for (svc, file) in [
        ("otel-collector", "tier1.yaml"),
        (tier2[0].as_str(), "tier2.yaml"),
        ("jaeger", "jaeger.yaml"),
    ] {
        let config = read(&format!("envoy/collector/{file}"));
        let vars = doc["services"][svc]["environment"]
            .as_object()
            .expect("environment");
        for k in vars.keys() {
            assert!(
                config.contains(&format!("${{env:{k}")),
                "{svc} sets {k}, which {file} never reads"
            );
        }
    }
}

// ---- Istio WasmPlugin --------------------------------------------------------------------

const ISTIO: &str = "envoy/istio-wasmplugin.yaml";

/// Refuses unknown properties wherever the schema lists `properties` and has neither
/// `additionalProperties` nor `x-kubernetes-preserve-unknown-fields`; translates OpenAPI's
/// `nullable`.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(o) => {
            if o.contains_key("properties")
                && !o.contains_key("additionalProperties")
                && o.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true))
            {
                o.insert("additionalProperties".into(), json!(false));
            }
            if o.remove("nullable") == Some(json!(true)) {
                if let Some(Value::String(t)) = o.get("type").cloned() {
                    o.insert("type".into(), json!([t, "null"]));
                }
            }
            for (_, v) in o.iter_mut() {
                strict(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strict),
        _ => {}
    }
}

/// The whole object Kubernetes would accept for one CRD version, strictly.
fn wasmplugin_schema(version: &str, crd_version: &Value) -> Value {
    let mut spec_and_status = crd_version.clone();
    strict(&mut spec_and_status);
    let mut props: Map<String, Value> = spec_and_status["properties"]
        .as_object()
        .cloned()
        .expect("CRD version has properties");
    let dns1123 = json!({"type": "string", "maxLength": 253,
        "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"});
    let string_map = json!({"type": "object", "additionalProperties": {"type": "string"}});
    props.insert(
        "apiVersion".into(),
        json!({"const": format!("extensions.istio.io/{version}")}),
    );
    props.insert("kind".into(), json!({"const": "WasmPlugin"}));
    props.insert(
        "metadata".into(),
        json!({
            "type": "object",
            "required": ["name", "namespace"],
            "additionalProperties": false,
            "properties": {
                "name": dns1123, "namespace": dns1123,
                "labels": string_map, "annotations": string_map
            }
        }),
    );
    json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": false,
        "properties": props
    })
}

fn istio_validators() -> Vec<(String, jsonschema::Validator)> {
    let crd = json_file("tests/schemas/istio-wasmplugin-crd.json");
    assert_eq!(crd["group"], "extensions.istio.io");
    assert_eq!(crd["kind"], "WasmPlugin");
    let versions = crd["versions"].as_object().expect("versions");
    assert!(!versions.is_empty());
    versions
        .iter()
        .map(|(name, schema)| {
            let s = wasmplugin_schema(name, schema);
            let v = jsonschema::draft7::new(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
            (format!("extensions.istio.io/{name}"), v)
        })
        .collect()
}

fn validate_wasmplugin(validators: &[(String, jsonschema::Validator)], doc: &Value) -> Vec<String> {
    let api = doc["apiVersion"].as_str().unwrap_or("");
    match validators.iter().find(|(v, _)| v == api) {
        Some((_, v)) => errors(v, doc),
        None => vec![format!(
            "apiVersion {api:?} is not a WasmPlugin version of the CRD"
        )],
    }
}

fn wasmplugins() -> Vec<Value> {
    let docs = yaml_docs(ISTIO);
    assert!(docs.len() >= 2, "{ISTIO}: inbound and outbound plugins");
    docs
}

#[test]
fn istio_wasmplugins_match_the_crd_with_unknown_fields_refused() {
    let validators = istio_validators();
    for doc in wasmplugins() {
        let errs = validate_wasmplugin(&validators, &doc);
        assert!(
            errs.is_empty(),
            "{ISTIO} {}:\n{}",
            doc["metadata"]["name"],
            errs.join("\n")
        );
    }
}

#[test]
fn istio_crd_check_refuses_mutated_plugins() {
    let validators = istio_validators();
    let base = wasmplugins().remove(0);
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "misspelt spec field (Kubernetes would prune it)",
            Box::new(|d| {
                let v = d["spec"]["failStrategy"].take();
                d["spec"]["failStratgy"] = v;
                d["spec"].as_object_mut().map(|o| o.remove("failStrategy"));
            }),
        ),
        (
            "unknown field in match",
            Box::new(|d| d["spec"]["match"][0]["direction"] = json!("inbound")),
        ),
        (
            "unknown field in vmConfig.env",
            Box::new(|d| d["spec"]["vmConfig"]["env"][0]["from"] = json!("HOST")),
        ),
        (
            "bad phase",
            Box::new(|d| d["spec"]["phase"] = json!("AUTHENTICATION")),
        ),
        (
            "bad failStrategy",
            Box::new(|d| d["spec"]["failStrategy"] = json!("FAIL_CLOSED")),
        ),
        (
            "wrong apiVersion",
            Box::new(|d| d["apiVersion"] = json!("extensions.istio.io/v1")),
        ),
        (
            "no namespace",
            Box::new(|d| {
                d["metadata"].as_object_mut().map(|o| o.remove("namespace"));
            }),
        ),
    ];
    for (what, mutate) in mutations {
        let mut doc = base.clone();
        mutate(&mut doc);
        assert_ne!(doc, base, "{what}: the mutation changed nothing");
        assert!(
            !validate_wasmplugin(&validators, &doc).is_empty(),
            "{what}: accepted"
        );
    }
    // pluginConfig is free-form for Kubernetes (the plugin itself refuses unknown fields).
    let mut doc = base.clone();
    doc["spec"]["pluginConfig"]["anything"] = json!({"x": 1});
    assert!(validate_wasmplugin(&validators, &doc).is_empty());
}

/// `${VAR}` references without a `:-default` in a JSON value's strings.
fn required_vars(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                let after = &rest[i + 2..];
                let end = after.find('}').unwrap_or(after.len());
                let inner = &after[..end];
                if !inner.contains(":-") {
                    out.push(inner.to_string());
                }
                rest = &after[end..];
            }
        }
        Value::Array(a) => a.iter().for_each(|x| required_vars(x, out)),
        Value::Object(o) => o.values().for_each(|x| required_vars(x, out)),
        _ => {}
    }
}

#[test]
fn istio_wasmplugins_load_without_any_secret_in_the_environment() {
    // The plugin refuses a configuration whose ${VAR} is unset, and Istio then leaves the
    // workload untraced: the example must work with nothing but the collector.
    for doc in wasmplugins() {
        let mut vars = Vec::new();
        required_vars(&doc["spec"]["pluginConfig"], &mut vars);
        assert!(
            vars.is_empty(),
            "{}: ${{VAR}} without a default: {vars:?}",
            doc["metadata"]["name"]
        );
        assert_eq!(doc["spec"]["failStrategy"], "FAIL_OPEN");
        let cluster = doc["spec"]["pluginConfig"]["exporter"]["cluster"]
            .as_str()
            .unwrap_or("");
        assert!(
            cluster.starts_with("outbound|4318||"),
            "exporter.cluster must be an Istio cluster name: {cluster}"
        );
    }
}

/// An Envoy bootstrap running the plugin with the `WasmPlugin`'s `pluginConfig` and
/// `vmConfig.env`, the way Istio hands them to the istio-proxy.
fn envoy_config_for(plugin: &Value, wasm: &std::path::Path) -> Value {
    let spec = &plugin["spec"];
    let mut host_env_keys = Vec::new();
    let mut key_values = Map::new();
    for e in spec["vmConfig"]["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().expect("env name").to_string();
        match e["valueFrom"].as_str().unwrap_or("INLINE") {
            "HOST" => host_env_keys.push(json!(name)),
            _ => {
                key_values.insert(name, e["value"].clone());
            }
        }
    }
    let configuration = serde_json::to_string(&spec["pluginConfig"]).expect("pluginConfig");
    json!({
      "static_resources": {
        "listeners": [{
          "name": "istio_like",
          "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15006}},
          "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
              "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              "stat_prefix": "istio_like",
              "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]},
              "http_filters": [
                {"name": "envoy.filters.http.wasm", "typed_config": {
                  "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                  "config": {
                    "name": "gateway_tracing", "root_id": "gateway_tracing",
                    "failure_policy": spec["failStrategy"],
                    "vm_config": {
                      "vm_id": "gateway_tracing", "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": wasm.display().to_string()}},
                      "environment_variables": {"host_env_keys": host_env_keys, "key_values": key_values}
                    },
                    "configuration": {
                      "@type": "type.googleapis.com/google.protobuf.StringValue",
                      "value": configuration
                    }
                  }
                }},
                {"name": "envoy.filters.http.router", "typed_config": {
                  "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
              ]
            }
          }]}]
        }]
      }
    })
}

#[test]
fn istio_plugin_configs_are_accepted_by_the_plugin_in_envoy() {
    // The CRD leaves pluginConfig free-form; the plugin itself refuses unknown fields and bad
    // values. Run each pluginConfig through the real plugin in `envoy --mode validate`. (Istio's cluster names need not exist for this: the
    // exporter cluster is only looked up when spans are sent.)
    let wasm = repo().join("target/gateway_tracing.wasm");
    if !demo::envoy::envoy_available() || !wasm.exists() {
        eprintln!("skipping: needs envoy on PATH and `make build` (make test provides both)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("gateway-tracing-istio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |plugin: &Value, tag: &str| {
        let path = dir.join(format!("{tag}.json"));
        let config = envoy_config_for(plugin, &wasm);
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        demo::envoy::validate(&path).map_err(|e| format!("{tag}: {e}"))
    };
    let plugins = wasmplugins();
    for p in &plugins {
        let name = p["metadata"]["name"].as_str().unwrap().to_string();
        check(p, &name).unwrap_or_else(|e| panic!("{e}"));
    }
    // And the check can fail: a misspelt field in pluginConfig is refused by the plugin.
    let mut bad = plugins[0].clone();
    bad["spec"]["pluginConfig"]["exporter"]["timeout"] = json!(5000);
    let err = check(&bad, "misspelt").expect_err("unknown pluginConfig field accepted");
    assert!(
        err.contains("invalid gateway-tracing configuration"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
