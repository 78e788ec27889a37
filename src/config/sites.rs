//! Several portals behind one gate: the `sites` list. Each entry names the hosts it serves and
//! may set its own client, callback, keys, rules, headers and pages; what it leaves out it takes
//! from the top level. A site is read as the top-level document with the site's keys laid over
//! it, key by key, through the same reader as a document without sites, so a site can never be
//! configured in a way a single-site document could not.
//!
//! The provider and the host's own keys stay top level only: one gate fetches one provider's
//! keys and, on Envoy, reaches it through one cluster. The top level is itself a site, the
//! default that serves every host no site names, only when it has a `redirect_uri`; otherwise
//! its keys are only defaults, and a request for a host no site names is refused.

use serde_json::{Map, Value};

use super::error::{ConfigError, Problem, ProblemKind};
use super::hosts::{request_host, HostPattern};

/// The top-level key this section reads.
pub(super) const KEYS: &[&str] = &["sites"];

/// The keys a site may set: everything that belongs to one portal and its ClaveÚnica client.
/// The others belong to the whole gate.
pub const SITE_KEYS: &[&str] = &[
    "client_id",
    "client_id_env",
    "client_secret",
    "client_secret_env",
    "redirect_uri",
    "login_path",
    "logout_path",
    "post_logout_redirect",
    "session_keys",
    "session_keys_env",
    "session",
    "flow",
    "logout_response_header",
    "rules",
    "path_case",
    "migration",
    "allowed_runs",
    "headers",
    "access_log",
    "pages",
    "assertion",
    "pseudonym",
];

/// One entry of `sites`, before it is read: its host patterns and the document it stands for.
pub(super) struct SiteDocument {
    /// Where it is in the list.
    pub(super) index: usize,
    /// The hosts it serves.
    pub(super) hosts: Vec<HostPattern>,
    /// The top level with the site's keys laid over it.
    pub(super) document: Map<String, Value>,
    /// The keys the site sets itself: a problem with one of them is the site's.
    own_keys: Vec<String>,
}

impl SiteDocument {
    /// A problem found reading this site's document, named where an operator fixes it: under
    /// `sites[i].` when the site set the key or nobody did (a key every site must have), at the
    /// top level when the site inherited the faulty value from there.
    pub(super) fn place(&self, mut problem: Problem, top: &Map<String, Value>) -> Problem {
        let root = problem.key.split(['.', '[']).next().unwrap_or_default();
        let inherited = top.contains_key(root) && !self.own_keys.iter().any(|k| k == root);
        if !inherited && root != "(document)" {
            problem.key = format!("sites[{}].{}", self.index, problem.key);
        }
        problem
    }
}

/// The `sites` list of `top` split into documents, each with its hosts; problems with the
/// list's own shape (not with what a site's keys say: that is for the reader of each
/// document) are added to `problems`. `top` is the document without `sites`.
pub(super) fn split(list: &Value, top: &Map<String, Value>, problems: &mut Vec<Problem>) -> Vec<SiteDocument> {
    let mut problem = |key: String, kind: ProblemKind| problems.push(Problem { key, kind });
    let Value::Array(items) = list else {
        problem("sites".into(), ProblemKind::MustBe("a list of sites, each an object with hosts"));
        return Vec::new();
    };
    if items.is_empty() {
        problem("sites".into(), ProblemKind::MustBe("a list of at least one site (or left out)"));
    }
    let mut sites: Vec<SiteDocument> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let Value::Object(site) = item else {
            problem(format!("sites[{index}]"), ProblemKind::MustBe("an object with hosts"));
            continue;
        };
        let mut document = top.clone();
        let mut own_keys = Vec::new();
        for (key, value) in site {
            if key == "hosts" {
                continue;
            }
            if SITE_KEYS.contains(&key.as_str()) {
                // A value and the variable that may stand for it are one setting: the site's
                // replaces the top level's, whichever form each takes.
                if let Some(partner) = partner(key).filter(|p| !site.contains_key(*p)) {
                    document.remove(partner);
                }
                document.insert(key.clone(), value.clone());
                own_keys.push(key.clone());
            } else if super::provider::KEYS.contains(&key.as_str()) || super::host::KEYS.contains(&key.as_str()) {
                problem(format!("sites[{index}].{key}"), ProblemKind::TopLevelOnly);
            } else {
                problem(format!("sites[{index}].{key}"), ProblemKind::UnknownKey);
            }
        }
        let mut hosts = Vec::new();
        match site.get("hosts") {
            Some(Value::Array(names)) if !names.is_empty() => {
                for (j, name) in names.iter().enumerate() {
                    let key = format!("sites[{index}].hosts[{j}]");
                    let parsed = match name {
                        Value::String(text) => HostPattern::parse(text),
                        _ => Err(ProblemKind::MustBe("a string")),
                    };
                    match parsed {
                        Err(kind) => problem(key, kind),
                        Ok(pattern) => {
                            let taken = sites.iter().find(|s| s.hosts.contains(&pattern)).map(|s| s.index);
                            match taken {
                                Some(other) => problem(key, ProblemKind::HostTaken(other)),
                                None if hosts.contains(&pattern) => problem(key, ProblemKind::RepeatedKey),
                                None => hosts.push(pattern),
                            }
                        }
                    }
                }
            }
            None | Some(Value::Null) => problem(format!("sites[{index}].hosts"), ProblemKind::Missing),
            Some(_) => problem(
                format!("sites[{index}].hosts"),
                ProblemKind::MustBe("a list of at least one host name or *.suffix"),
            ),
        }
        sites.push(SiteDocument { index, hosts, document, own_keys });
    }
    sites
}

/// The other form of a setting that can be given inline or from the environment.
fn partner(key: &str) -> Option<&'static str> {
    const PAIRS: [(&str, &str); 3] =
        [("client_id", "client_id_env"), ("client_secret", "client_secret_env"), ("session_keys", "session_keys_env")];
    PAIRS.iter().find_map(|&(a, b)| match key {
        k if k == a => Some(b),
        k if k == b => Some(a),
        _ => None,
    })
}

/// Which of the sites, given by their host patterns, serves `host`: an exact name before any
/// wildcard, and the longest wildcard suffix before a shorter one, so the most specific site
/// answers whatever the list's order (as Envoy picks among a route's `domains`).
pub fn site_for<'a>(sites: impl Iterator<Item = &'a [HostPattern]>, host: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (index, patterns) in sites.enumerate() {
        for pattern in patterns.iter().filter(|p| p.matches(host)) {
            let rank = match pattern {
                HostPattern::Exact(_) => usize::MAX,
                HostPattern::Suffix(suffix) => suffix.len(),
            };
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((index, rank));
            }
        }
    }
    best.map(|(index, _)| index)
}

/// Checks that the site at `index` (by its patterns) receives its own callback: the host of
/// its `redirect_uri` must be one it serves, or the provider sends the browser back to another
/// site. `all` holds every site's patterns, the default's empty (it serves what no other names).
pub(super) fn check_callback_host(redirect_uri: &str, index: usize, all: &[&[HostPattern]]) -> Result<(), ProblemKind> {
    let host = url::Url::parse(redirect_uri).ok().and_then(|u| u.host_str().and_then(request_host));
    let Some(host) = host else { return Ok(()) };
    let named = site_for(all.iter().copied(), &host);
    let serves = match named {
        Some(site) => site == index,
        // No site names the host: only the default (no patterns) receives it.
        None => all.get(index).is_some_and(|patterns| patterns.is_empty()),
    };
    if serves {
        Ok(())
    } else {
        Err(ProblemKind::HostNotServed)
    }
}

/// Problems found reading several documents, each once (a faulty top-level key read in every
/// site is one fault).
pub(super) fn dedup(problems: Vec<Problem>) -> Vec<Problem> {
    let mut kept: Vec<Problem> = Vec::with_capacity(problems.len());
    for p in problems {
        if !kept.contains(&p) {
            kept.push(p);
        }
    }
    kept
}

/// The error for `problems`, if there are any.
pub(super) fn refusal(problems: Vec<Problem>) -> Result<(), ConfigError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems: dedup(problems) })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::super::testing::{base, kind_of, load, without};
    use super::super::{HostPattern, ProblemKind};
    use super::site_for;

    const OTHER_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";

    /// Two portals on one gate; the top level holds what they share and is no site itself.
    fn two_sites() -> Value {
        let mut v = without("redirect_uri");
        v["rules"] = json!([{"prefix": "/publico/", "action": "public"}]);
        v["sites"] = json!([
            {"hosts": ["tramites.agencia.gob.cl"], "client_id": "tramites",
             "redirect_uri": "https://tramites.agencia.gob.cl/claveunica/callback"},
            {"hosts": ["*.becas.agencia.gob.cl", "becas.agencia.gob.cl"], "client_id": "becas",
             "client_secret": "otro", "session_keys": [OTHER_KEY], "rules": [],
             "redirect_uri": "https://becas.agencia.gob.cl/claveunica/callback"},
        ]);
        v
    }

    #[test]
    fn each_site_takes_what_it_leaves_out_from_the_top_level_and_replaces_what_it_sets() {
        let c = load(&two_sites()).unwrap();
        assert_eq!(c.hosts, [HostPattern::Exact("tramites.agencia.gob.cl".into())]);
        assert_eq!((c.client_id.as_str(), c.client_secret.expose()), ("tramites", "s3cret"));
        assert_eq!(c.rules.len(), 1, "inherited from the top level");
        let [becas] = c.sites.as_slice() else { panic!("{} further sites", c.sites.len()) };
        assert_eq!(becas.hosts.len(), 2);
        assert_eq!((becas.client_id.as_str(), becas.client_secret.expose()), ("becas", "otro"));
        assert!(becas.rules.is_empty(), "a site's rules replace the top level's as a whole");
        assert_ne!(becas.session_keys, c.session_keys);
        assert_eq!(becas.issuer, c.issuer);
        // Without `sites`, the document is one site serving every host, as before.
        let single = load(&base()).unwrap();
        assert!(single.hosts.is_empty() && single.sites.is_empty());
    }

    #[test]
    fn the_top_level_is_the_default_site_only_with_its_own_callback() {
        let mut v = two_sites();
        v["redirect_uri"] = json!("https://portal.agencia.gob.cl/claveunica/callback");
        let c = load(&v).unwrap();
        assert!(c.hosts.is_empty(), "the default comes first and names no host");
        assert_eq!(c.client_id, "abc");
        assert_eq!(c.sites.len(), 2);
    }

    #[test]
    fn a_value_and_its_variable_are_one_setting_a_site_replaces_whole() {
        let mut v = two_sites();
        let top = v.as_object_mut().unwrap();
        top.remove("client_secret");
        top.insert("client_secret_env".into(), json!("CU_SECRET"));
        v["sites"][0]["client_secret"] = json!("inline");
        v["sites"][1].as_object_mut().unwrap().remove("client_secret");
        v["sites"][1]["client_secret_env"] = json!("CU_BECAS");
        let env = |k: &str| (k == "CU_BECAS").then(|| "from-env".to_string());
        let c = super::super::Config::from_json(v.to_string().as_bytes(), &env).unwrap();
        assert_eq!(c.client_secret.expose(), "inline");
        assert_eq!(c.sites[0].client_secret.expose(), "from-env");
    }

    #[test]
    fn a_site_cannot_set_what_belongs_to_the_whole_gate() {
        let mut v = two_sites();
        v["sites"][0]["issuer"] = json!("https://other.example/openid");
        v["sites"][0]["cluster"] = json!("other");
        v["sites"][1]["colour"] = json!("blue");
        let err = load(&v).unwrap_err();
        assert_eq!(kind_of(&err, "sites[0].issuer"), Some(ProblemKind::TopLevelOnly));
        assert_eq!(kind_of(&err, "sites[0].cluster"), Some(ProblemKind::TopLevelOnly));
        assert_eq!(kind_of(&err, "sites[1].colour"), Some(ProblemKind::UnknownKey));
        assert!(err.to_string().contains("sites[0].issuer: set it at the top level"), "{err}");
    }

    #[test]
    fn hosts_must_name_hosts_and_no_host_two_sites() {
        let mut v = two_sites();
        v["sites"][1]["hosts"] = json!(["tramites.agencia.gob.cl", "becas.agencia.gob.cl:443", 7]);
        let err = load(&v).unwrap_err();
        assert_eq!(kind_of(&err, "sites[1].hosts[0]"), Some(ProblemKind::HostTaken(0)));
        assert!(err.names("sites[1].hosts[1]") && err.names("sites[1].hosts[2]"), "{err}");
        for hosts in [json!([]), json!("becas.agencia.gob.cl"), Value::Null] {
            let mut v = two_sites();
            v["sites"][1]["hosts"] = hosts.clone();
            assert!(load(&v).unwrap_err().names("sites[1].hosts"), "{hosts}");
        }
        for sites in [json!([]), json!({}), json!(["x"])] {
            let mut v = two_sites();
            v["sites"] = sites.clone();
            let err = load(&v).unwrap_err();
            assert!(err.names("sites") || err.names("sites[0]"), "{sites}: {err}");
        }
    }

    #[test]
    fn a_problem_is_named_where_the_operator_fixes_it() {
        let mut v = two_sites();
        // The site's own faulty key, under the site.
        v["sites"][1]["session_keys"] = json!(["c2hvcnQ="]);
        // A faulty top-level key every site inherits: once, at the top level.
        v["timeout_ms"] = json!(5);
        // A key no one gives: under the site that lacks it.
        v.as_object_mut().unwrap().remove("client_id");
        v["sites"][1].as_object_mut().unwrap().remove("client_id");
        let err = load(&v).unwrap_err();
        assert_eq!(kind_of(&err, "sites[1].session_keys[0]"), Some(ProblemKind::KeyLength(5)));
        assert_eq!(err.problems.iter().filter(|p| p.key == "timeout_ms").count(), 1, "{err}");
        assert!(err.names("sites[1].client_id") && !err.names("sites[0].client_id"), "{err}");
    }

    #[test]
    fn each_site_must_receive_its_own_callback() {
        let mut v = two_sites();
        v["sites"][1]["redirect_uri"] = json!("https://tramites.agencia.gob.cl/becas/callback");
        let err = load(&v).unwrap_err();
        assert_eq!(kind_of(&err, "sites[1].redirect_uri"), Some(ProblemKind::HostNotServed));
        // The default's callback on a host a site names would land at that site.
        let mut v = two_sites();
        v["redirect_uri"] = json!("https://becas.agencia.gob.cl/portal/callback");
        assert_eq!(kind_of(&load(&v).unwrap_err(), "redirect_uri"), Some(ProblemKind::HostNotServed));
        // A callback under a wildcard the site serves is its own.
        let mut v = two_sites();
        v["sites"][1]["redirect_uri"] = json!("https://www.becas.agencia.gob.cl/claveunica/callback");
        assert!(load(&v).is_ok());
    }

    #[test]
    fn the_most_specific_site_serves_a_host_whatever_the_order() {
        let p = |t: &str| HostPattern::parse(t).unwrap();
        let sites = [vec![p("*.agencia.gob.cl")], vec![p("*.becas.agencia.gob.cl")], vec![p("x.becas.agencia.gob.cl")]];
        let pick = |host: &str| site_for(sites.iter().map(Vec::as_slice), host);
        assert_eq!(pick("x.becas.agencia.gob.cl"), Some(2));
        assert_eq!(pick("y.becas.agencia.gob.cl"), Some(1));
        assert_eq!(pick("becas.agencia.gob.cl"), Some(0));
        assert_eq!(pick("agencia.gob.cl"), None);
        let reversed: Vec<_> = sites.iter().rev().cloned().collect();
        assert_eq!(site_for(reversed.iter().map(Vec::as_slice), "y.becas.agencia.gob.cl"), Some(1));
    }
}
