//! The host section: the one key each host reads beside the shared document. Envoy (and
//! Istio) call the provider through a named cluster (`cluster`); NGINX Unit's component is
//! itself the reverse proxy, so it needs the application's base URL (`upstream`). The core
//! knows the keys, not the hosts: each adapter asks for its own with [`super::Config::for_envoy`]
//! or [`super::Config::for_unit`], and gets the same every-problem-at-once errors. The other
//! host's key is still checked when given but has no effect, so one document can serve both,
//! and a Unit document written to the earlier guide (with a placeholder `cluster`) still loads.

use url::Url;

use super::reader::Reader;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["cluster", "upstream"];

/// Which host a document is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Host {
    /// Envoy and Istio: `cluster` is required; `upstream` has no effect.
    Envoy,
    /// NGINX Unit: `upstream` is required; `cluster` has no effect.
    Unit,
    /// Not known (the `check` command, tests): both optional, each checked when given.
    Any,
}

/// What the Envoy adapter reads beside the shared document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoySettings {
    /// The Envoy cluster that reaches the provider (on Istio
    /// `outbound|80||accounts.claveunica.gob.cl`, the port `envoy/istio/serviceentry.yaml` sends
    /// to 443).
    pub cluster: String,
}

/// What the NGINX Unit adapter reads beside the shared document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSettings {
    /// The legacy application's base URL; its path, if any, prefixes every forwarded path.
    pub upstream: Url,
}

/// The section, read.
#[derive(Debug, Default)]
pub(super) struct HostKeys {
    pub(super) cluster: Option<String>,
    pub(super) upstream: Option<Url>,
}

/// Reads the section for `host`: the key the host requires must be there; the other is
/// optional and checked when given.
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>, host: Host) -> HostKeys {
    let cluster = match host {
        Host::Envoy => r.required_string("cluster"),
        Host::Unit | Host::Any => r.string("cluster"),
    };
    let upstream = match host {
        Host::Unit => r.required_string("upstream"),
        Host::Envoy | Host::Any => r.string("upstream"),
    };
    let upstream = upstream.and_then(|s| r.base_url("upstream", &s));
    HostKeys { cluster, upstream }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::super::testing::{base, no_env, without};
    use super::super::Config;

    fn bytes(v: &serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn envoy_requires_its_cluster_and_checks_an_upstream_it_does_not_use() {
        let (_, envoy) = Config::for_envoy(&bytes(&base()), &no_env).unwrap();
        assert_eq!(envoy.cluster, "claveunica");
        let err = Config::for_envoy(&bytes(&without("cluster")), &no_env).unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: cluster: is required");
        let mut v = base();
        v["upstream"] = json!("http://127.0.0.1:8080");
        assert!(Config::for_envoy(&bytes(&v), &no_env).is_ok(), "one document for both hosts");
        v["upstream"] = json!("ftp://app");
        assert!(Config::for_envoy(&bytes(&v), &no_env).unwrap_err().names("upstream"));
    }

    #[test]
    fn unit_requires_its_upstream_and_takes_a_cluster_it_does_not_use() {
        let mut v = without("cluster");
        v["upstream"] = json!("http://127.0.0.1:8080/portal");
        let (_, unit) = Config::for_unit(&bytes(&v), &no_env).unwrap();
        assert_eq!(unit.upstream.as_str(), "http://127.0.0.1:8080/portal");
        let err = Config::for_unit(&bytes(&without("cluster")), &no_env).unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: upstream: is required");
        // A document written to the earlier Unit guide, with a placeholder cluster, still loads.
        v["cluster"] = json!("unused-on-unit");
        assert!(Config::for_unit(&bytes(&v), &no_env).is_ok());
        v["client_id"] = json!("");
        v.as_object_mut().unwrap().remove("upstream");
        let err = Config::for_unit(&bytes(&v), &no_env).unwrap_err();
        assert!(err.names("upstream") && err.names("client_id"), "every problem at once: {err}");
    }

    #[test]
    fn a_document_for_either_host_checks_what_it_gives() {
        let mut v = without("cluster");
        assert!(Config::from_json(&bytes(&v), &no_env).is_ok());
        for bad in ["ftp://app", "http://app/?x=1"] {
            v["upstream"] = json!(bad);
            assert!(Config::from_json(&bytes(&v), &no_env).unwrap_err().names("upstream"), "{bad}");
        }
        v["colour"] = json!("blue");
        assert!(Config::from_json(&bytes(&v), &no_env).unwrap_err().names("colour"), "unknown keys still refused");
    }
}
