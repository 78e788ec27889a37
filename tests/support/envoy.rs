//! Envoy's side of the harness: its binary, and the bootstrap it runs, made from the
//! templates in `envoy/` (ports, the wasm path and the gate's configuration filled in; the
//! configuration as a `Struct`; the listener in a watched LDS file so it can be reloaded; the
//! listener speaking TLS; another failure policy).

use std::fs;
use std::path::{Path, PathBuf};

/// The `envoy` to run: `ENVOY_BIN`, or the one on PATH.
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN").map_or_else(|| PathBuf::from("envoy"), PathBuf::from)
}

/// `template` with every `${NAME}` of `values` replaced.
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    values.iter().fold(template.to_string(), |text, (name, value)| text.replace(&format!("${{{name}}}"), value))
}

/// Panics naming `what` if a `${...}` placeholder is left outside comments.
pub fn assert_filled(text: &str, what: &str) {
    let unfilled = text.lines().find(|l| !l.trim_start().starts_with('#') && l.contains("${"));
    assert!(unfilled.is_none(), "a placeholder of {what} was not filled: {unfilled:?}");
}

/// What a reloadable stack needs to write Envoy's LDS file again.
pub struct Reload {
    /// The directory Envoy watches.
    pub lds_dir: PathBuf,
    /// The LDS document, every placeholder filled but `${GATE_CONFIG}` and `${LDS_VERSION}`.
    pub lds_template: String,
    /// The gate's configuration as Envoy has it now.
    pub gate_config: serde_json::Value,
    /// The LDS version last written.
    pub version: u32,
}

impl Reload {
    /// Writes the LDS file beside the watched one and renames it over it (the atomic move
    /// Envoy watches for).
    pub fn write_lds(&self, scratch: &Path) {
        let lds = fill(
            &self.lds_template,
            &[("GATE_CONFIG", self.gate_config.to_string()), ("LDS_VERSION", self.version.to_string())],
        );
        assert_filled(&lds, "the LDS document");
        let tmp = scratch.join(format!("lds.yaml.{}", self.version));
        fs::write(&tmp, lds).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        let target = self.lds_dir.join("lds.yaml");
        fs::rename(&tmp, &target)
            .unwrap_or_else(|e| panic!("cannot move {} to {}: {e}", tmp.display(), target.display()));
    }
}

/// Rewrites the template's `configuration` from a `StringValue` holding the JSON to a
/// `Struct` with the JSON object inline (JSON is YAML flow syntax), as Istio's `pluginConfig`
/// is a Struct.
pub fn struct_configuration(template: &str) -> String {
    let string_value = "\"@type\": type.googleapis.com/google.protobuf.StringValue";
    let block = template
        .lines()
        .collect::<Vec<_>>()
        .windows(3)
        .find(|w| w[0].trim() == string_value && w[1].trim() == "value: |" && w[2].trim() == "${GATE_CONFIG}")
        .map(|w| w.join("\n"))
        .unwrap_or_else(|| panic!("the template's configuration block is not the expected StringValue:\n{template}"));
    let indent = &block[..block.len() - block.trim_start().len()];
    let replacement =
        format!("{indent}\"@type\": type.googleapis.com/google.protobuf.Struct\n{indent}value: ${{GATE_CONFIG}}");
    template.replacen(&block, &replacement, 1)
}

/// How Envoy treats requests when the gate's VM has failed (`failure_policy` of the wasm
/// filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Every request on that worker gets a 503 until Envoy restarts (the test templates').
    FailClosed,
    /// Those requests get a 503 too, and a request after a failure starts a new VM, at most
    /// once a reload interval (`envoy/production.yaml`'s).
    FailReload,
}

impl FailurePolicy {
    /// The value in Envoy's configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailClosed => "FAIL_CLOSED",
            FailurePolicy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// Sets the template's `failure_policy: FAIL_CLOSED` to `policy`.
pub fn with_failure_policy(template: &str, policy: FailurePolicy) -> String {
    let closed = "failure_policy: FAIL_CLOSED\n";
    assert_eq!(template.matches(closed).count(), 1, "the template has not exactly one `{closed}`:\n{template}");
    template.replacen(closed, &format!("failure_policy: {}\n", policy.as_str()), 1)
}

/// Makes the template's listener speak TLS (a downstream TLS transport socket) with the
/// certificate chain and private key in these PEM files.
pub fn tls_listener(template: &str, cert_pem: &Path, key_pem: &Path) -> String {
    let plain = "    filter_chains:\n    - filters:\n";
    assert!(
        template.contains(plain),
        "the template's listener has no `filter_chains: - filters:` to secure:\n{template}"
    );
    let secured = [
        "    filter_chains:".to_string(),
        "    - transport_socket:".to_string(),
        "        name: envoy.transport_sockets.tls".to_string(),
        "        typed_config:".to_string(),
        "          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
            .to_string(),
        "          common_tls_context:".to_string(),
        "            tls_certificates:".to_string(),
        format!("            - certificate_chain: {{ filename: \"{}\" }}", cert_pem.display()),
        format!("              private_key: {{ filename: \"{}\" }}", key_pem.display()),
        "      filters:\n".to_string(),
    ]
    .join("\n");
    template.replacen(plain, &secured, 1)
}

/// Adds a second gate to the template: a listener `staging` on `${LISTEN_PORT_2}` with the same
/// filter and VM (so the same proxy-wasm shared data) and its own configuration,
/// `${GATE_CONFIG_2}`, calling its own provider through the cluster `claveunica_staging` at
/// `${PROVIDER_PORT_2}`: staging and production in one Envoy.
pub fn second_gate(template: &str) -> String {
    let listeners = "  listeners:\n";
    let clusters = "  clusters:\n";
    let cluster = "  - name: claveunica\n";
    let (Some(l), Some(c), Some(p)) = (template.find(listeners), template.find(clusters), template.find(cluster))
    else {
        panic!("the template has no listeners, clusters or `claveunica` cluster to copy:\n{template}");
    };
    let listener = &template[l + listeners.len()..c];
    let staging_listener = listener
        .replacen("  - name: portal\n", "  - name: staging\n", 1)
        .replacen("stat_prefix: portal", "stat_prefix: staging", 1)
        .replace("${LISTEN_PORT}", "${LISTEN_PORT_2}")
        .replace("${GATE_CONFIG}", "${GATE_CONFIG_2}");
    // The `claveunica` cluster runs to the end of the template.
    let staging_cluster = template[p..]
        .replace("name: claveunica\n", "name: claveunica_staging\n")
        .replace("cluster_name: claveunica\n", "cluster_name: claveunica_staging\n")
        .replace("${PROVIDER_PORT}", "${PROVIDER_PORT_2}");
    assert!(staging_listener.contains("${GATE_CONFIG_2}") && staging_cluster.contains("${PROVIDER_PORT_2}"));
    let mut text = template.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&staging_cluster);
    text.insert_str(c, &staging_listener);
    text
}

/// What Envoy's bootstrap is made of, besides the template.
pub struct Bootstrap<'a> {
    /// Listen in a watched LDS file (`envoy/gate-reload.yaml.tmpl`) instead of inline.
    pub reloadable: bool,
    /// Hand the gate its configuration as a `Struct`, not a `StringValue`.
    pub struct_config: bool,
    /// Listen with TLS: the certificate chain's and the private key's PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The wasm filter's `failure_policy`.
    pub failure_policy: FailurePolicy,
    /// `ADMIN_PORT`, `LISTEN_PORT`, `APP_PORT`, `PROVIDER_PORT`, `WASM_PATH` and their values.
    pub values: Vec<(&'a str, String)>,
    /// The gate's configuration.
    pub gate_config: &'a serde_json::Value,
    /// A second gate's configuration ([`second_gate`]; with `LISTEN_PORT_2` and
    /// `PROVIDER_PORT_2` among the values).
    pub second_gate: Option<&'a serde_json::Value>,
}

impl Bootstrap<'_> {
    /// Writes `dir/envoy.yaml` (and for a reloadable one, the LDS file under `dir/lds`);
    /// returns its path and what a reload needs.
    pub fn write(&self, dir: &Path) -> (PathBuf, Option<Reload>) {
        let template_name = if self.reloadable { "envoy/gate-reload.yaml.tmpl" } else { "envoy/gate.yaml.tmpl" };
        let template_path = super::process::workspace_root().join(template_name);
        let mut template = fs::read_to_string(&template_path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", template_path.display()));
        if self.struct_config {
            template = struct_configuration(&template);
        }
        if let Some((cert, key)) = &self.tls {
            template = tls_listener(&template, cert, key);
        }
        if self.failure_policy != FailurePolicy::FailClosed {
            template = with_failure_policy(&template, self.failure_policy);
        }
        if let Some(second) = self.second_gate {
            template = fill(&second_gate(&template), &[("GATE_CONFIG_2", second.to_string())]);
        }
        let lds_dir = dir.join("lds");
        let mut values = self.values.clone();
        values.push(("LDS_DIR", lds_dir.display().to_string()));
        let mut yaml = fill(&template, &values);
        let reload = if self.reloadable {
            let (bootstrap, lds) = yaml
                .split_once("\n---\n")
                .unwrap_or_else(|| panic!("{} has no `---` line before its LDS document", template_path.display()));
            let reload =
                Reload { lds_dir, lds_template: lds.to_string(), gate_config: self.gate_config.clone(), version: 0 };
            fs::create_dir_all(&reload.lds_dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", reload.lds_dir.display()));
            reload.write_lds(dir);
            yaml = bootstrap.to_string();
            Some(reload)
        } else {
            yaml = fill(&yaml, &[("GATE_CONFIG", self.gate_config.to_string())]);
            None
        };
        assert_filled(&yaml, &template_path.display().to_string());
        let yaml_path = dir.join("envoy.yaml");
        fs::write(&yaml_path, yaml).unwrap_or_else(|e| panic!("cannot write {}: {e}", yaml_path.display()));
        (yaml_path, reload)
    }
}
