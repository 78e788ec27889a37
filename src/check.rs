//! Certification review of a validated [`Config`]: what ClaveÚnica's certification would reject
//! (or an operator would regret) in a configuration the gate itself accepts. The gate runs
//! fine against the emulator or a test service with `http://localhost` and an inline secret, so
//! [`Config::from_json`] cannot refuse those; this review names them before the review does.
//!
//! Sans-IO like the rest of the core: it takes a [`Config`] and returns findings. Printing them
//! is the caller's job (the `claveunica-gate check` command).

use url::{Host, Url};

use crate::config::{Config, CLAVEUNICA_SCOPE};

/// The `iss` of ClaveÚnica's ID tokens in sandbox, QA and production alike (one host for all).
pub const CLAVEUNICA_ISSUER: &str = "https://accounts.claveunica.gob.cl/openid";

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Certification would reject it, or production would break: fix before going live.
    Warning,
    /// Worth knowing; fine as it is in some setups.
    Note,
}

/// One thing the review found, naming the configuration key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How much it matters.
    pub severity: Severity,
    /// The configuration key it concerns (`redirect_uri`).
    pub key: &'static str,
    /// What is wrong and what to do instead.
    pub message: String,
}

/// Reviews a configuration against ClaveÚnica's certification checklist (`docs/claveunica.md`).
/// Findings come in the order of the keys they concern; a production-ready configuration
/// yields none.
#[must_use]
pub fn review(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |severity, key, message: String| findings.push(Finding { severity, key, message });

    if config.issuer != CLAVEUNICA_ISSUER {
        // A near miss (trailing slash, the retired www. host) breaks every login in production,
        // because the ID token's `iss` is compared exactly; another host is just a test setup.
        let on_claveunica = Url::parse(&config.issuer)
            .ok()
            .and_then(|u| u.host_str().map(|h| h == "claveunica.gob.cl" || h.ends_with(".claveunica.gob.cl")))
            .unwrap_or(false);
        if on_claveunica {
            add(
                Severity::Warning,
                "issuer",
                format!(
                    "is not exactly {CLAVEUNICA_ISSUER}: ClaveÚnica's ID tokens carry that `iss`, which is compared \
                     exactly, so every login would fail"
                ),
            );
        } else {
            add(
                Severity::Note,
                "issuer",
                format!("fine for the emulator or a test service; production uses {CLAVEUNICA_ISSUER}"),
            );
        }
    }

    if config.client_secret_env.is_none() {
        add(
            Severity::Warning,
            "client_secret",
            "is written in the configuration: certification asks for secrets outside source code; use \
             client_secret_env and give the proxy the variable (Envoy: vm_config.environment_variables)"
                .into(),
        );
    }

    review_redirect_uri(&config.redirect_uri, &mut add);

    if config.post_logout_redirect.is_none() {
        add(
            Severity::Warning,
            "post_logout_redirect",
            "is not set, so after ClaveÚnica's logout the browser is not sent back to the application; \
             certification requires a working logout, and although the gate falls back to the application by \
             itself, a registered post-logout redirect is expected"
                .into(),
        );
    }

    if config.scope != CLAVEUNICA_SCOPE {
        add(
            Severity::Warning,
            "scope",
            format!(
                "is {:?}: certification checks for exactly {CLAVEUNICA_SCOPE:?}; remove the key to use it",
                config.scope
            ),
        );
    }

    if config.session_keys.len() == 1 {
        add(
            Severity::Note,
            "session_keys",
            format!(
                "holds one key. To rotate without logging everybody out, put a new key first (it seals new \
                 cookies while the old one still opens existing ones), then remove the old key once its sessions \
                 have expired (session.max_age_s = {} s)",
                config.session.max_age_s
            ),
        );
    }

    findings
}

/// The `redirect_uri` rules of the authorization request: registered exactly, with no query
/// string, no port, no IP address, and a `.gob.cl` host in production.
fn review_redirect_uri(redirect_uri: &str, add: &mut impl FnMut(Severity, &'static str, String)) {
    // Config::from_json accepted it as an absolute http(s) URL, so this only fails if the two
    // ever disagree; then there is nothing sound to say about it.
    let Ok(url) = Url::parse(redirect_uri) else { return };
    let key = "redirect_uri";

    if url.scheme() == "http" {
        add(Severity::Warning, key, "uses http: certification requires HTTPS everywhere".into());
    }
    if url.query().is_some() {
        add(Severity::Warning, key, "has a query string, which ClaveÚnica does not accept in a redirect_uri".into());
    }
    if has_explicit_port(redirect_uri) {
        add(Severity::Warning, key, "names a port, which ClaveÚnica does not accept in a redirect_uri".into());
    }
    match url.host() {
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => add(
            Severity::Warning,
            key,
            "has an IP address for host: ClaveÚnica does not accept one; production needs a host under .gob.cl".into(),
        ),
        Some(Host::Domain(d)) if is_localhost(d) => add(
            Severity::Warning,
            key,
            "has localhost for host: fine for the emulator, but ClaveÚnica does not accept it; production needs a \
             host under .gob.cl"
                .into(),
        ),
        // The url crate lowercases domains, so the suffix test needs no case folding.
        Some(Host::Domain(d)) if !d.ends_with(".gob.cl") => add(
            Severity::Warning,
            key,
            format!("has host {d}, not under .gob.cl: in production ClaveÚnica only accepts .gob.cl hosts"),
        ),
        _ => {}
    }
}

/// Whether the URL's text names a port. `Url::port` hides a default port (`https://x:443/`
/// reads as no port), but the gate sends `redirect_uri` verbatim, so `:443` is what
/// ClaveÚnica would see and compare.
fn has_explicit_port(text: &str) -> bool {
    let Some((_, rest)) = text.split_once(':') else { return false };
    // The url crate also reads `https:\\host` and `https:host` as an authority; mirror that.
    let rest = rest.trim_start_matches(['/', '\\']);
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_host = match host_port.split_once(']') {
        Some((_, after)) => after, // [IPv6]:port
        None => host_port,
    };
    after_host.contains(':')
}

/// `localhost`, and the names under `.localhost`, which resolve to loopback (RFC 6761).
fn is_localhost(domain: &str) -> bool {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    domain == "localhost" || domain.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::*;

    const KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
    const OTHER_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

    /// What a production deployment should look like: the review has nothing to say.
    fn good() -> Value {
        json!({
            "issuer": "https://accounts.claveunica.gob.cl/openid",
            "cluster": "claveunica",
            "client_id": "abc",
            "client_secret_env": "CU_SECRET",
            "redirect_uri": "https://tramites.example.gob.cl/claveunica/callback",
            "post_logout_redirect": "https://tramites.example.gob.cl/",
            "session_keys": [KEY, OTHER_KEY],
        })
    }

    /// The good configuration with some keys replaced (`null` removes a key).
    fn with(changes: &Value) -> Value {
        let mut v = good();
        for (k, change) in changes.as_object().unwrap() {
            let map = v.as_object_mut().unwrap();
            if change.is_null() {
                map.remove(k);
            } else {
                map.insert(k.clone(), change.clone());
            }
        }
        v
    }

    fn review_of(v: &Value) -> Vec<Finding> {
        let config =
            Config::from_json(v.to_string().as_bytes(), &|_| Some("x".into())).unwrap_or_else(|e| panic!("{v}: {e}"));
        review(&config)
    }

    /// Whether a finding on `key` with `severity` whose message contains `needle` is there.
    fn has(findings: &[Finding], severity: Severity, key: &str, needle: &str) -> bool {
        findings.iter().any(|f| f.severity == severity && f.key == key && f.message.contains(needle))
    }

    /// Each change to the good configuration yields the finding; the good one does not.
    fn assert_finding(changes: &[Value], severity: Severity, key: &str, needle: &str) {
        for change in changes {
            let findings = review_of(&with(change));
            assert!(has(&findings, severity, key, needle), "{change}: {findings:#?}");
        }
        let findings = review_of(&good());
        assert!(!has(&findings, severity, key, needle), "good config: {findings:#?}");
    }

    #[test]
    fn a_production_like_configuration_has_no_findings() {
        assert_eq!(review_of(&good()), vec![]);
    }

    #[test]
    fn scope_other_than_exactly_openid_run_name() {
        let bad = [
            json!({"scope": "openid"}),
            json!({"scope": "openid run name email"}),
            json!({"scope": "openid name run"}),
        ];
        assert_finding(&bad, Severity::Warning, "scope", "exactly");
        // Written out explicitly, the right scope is as good as the default.
        assert!(!has(&review_of(&with(&json!({"scope": "openid run name"}))), Severity::Warning, "scope", ""));
    }

    #[test]
    fn redirect_uri_over_http() {
        let bad = [json!({"redirect_uri": "http://tramites.example.gob.cl/claveunica/callback"})];
        assert_finding(&bad, Severity::Warning, "redirect_uri", "uses http");
    }

    #[test]
    fn redirect_uri_with_a_query_string() {
        let bad = [
            json!({"redirect_uri": "https://tramites.example.gob.cl/claveunica/callback?x=1"}),
            json!({"redirect_uri": "https://tramites.example.gob.cl/claveunica/callback?"}),
        ];
        assert_finding(&bad, Severity::Warning, "redirect_uri", "query string");
    }

    #[test]
    fn redirect_uri_with_an_explicit_port() {
        let bad = [
            json!({"redirect_uri": "https://tramites.example.gob.cl:8443/claveunica/callback"}),
            // The default port too: the gate sends the text verbatim, `:443` included.
            json!({"redirect_uri": "https://tramites.example.gob.cl:443/claveunica/callback"}),
            json!({"redirect_uri": "http://[::1]:8000/claveunica/callback"}),
        ];
        assert_finding(&bad, Severity::Warning, "redirect_uri", "port");
        // A colon in the path or query is not a port.
        let colon_later = with(&json!({"redirect_uri": "https://tramites.example.gob.cl/cb:x"}));
        assert!(!has(&review_of(&colon_later), Severity::Warning, "redirect_uri", "port"));
        assert!(!has_explicit_port("https://[::1]/cb") && has_explicit_port("https://[::1]:1/cb"));
    }

    #[test]
    fn redirect_uri_on_an_ip_address_or_localhost() {
        let ip = [
            json!({"redirect_uri": "https://127.0.0.1/claveunica/callback"}),
            json!({"redirect_uri": "https://[::1]/claveunica/callback"}),
            json!({"redirect_uri": "https://[2001:db8::1]/claveunica/callback"}),
        ];
        assert_finding(&ip, Severity::Warning, "redirect_uri", "IP address");
        let localhost = [
            json!({"redirect_uri": "https://localhost/claveunica/callback"}),
            json!({"redirect_uri": "https://LOCALHOST/claveunica/callback"}),
            json!({"redirect_uri": "https://app.localhost/claveunica/callback"}),
        ];
        assert_finding(&localhost, Severity::Warning, "redirect_uri", "localhost");
    }

    #[test]
    fn redirect_uri_host_not_under_gob_cl() {
        let bad = [
            json!({"redirect_uri": "https://gob.cl.evil.com/claveunica/callback"}),
            json!({"redirect_uri": "https://fakegob.cl/claveunica/callback"}),
            json!({"redirect_uri": "https://tramites.example.cl/claveunica/callback"}),
        ];
        assert_finding(&bad, Severity::Warning, "redirect_uri", "not under .gob.cl");
        for ok in ["https://portal.gob.cl/cb", "https://x.gob.cl/cb", "https://Portal.GOB.cl/cb"] {
            let findings = review_of(&with(&json!({ "redirect_uri": ok })));
            assert!(!has(&findings, Severity::Warning, "redirect_uri", ""), "{ok}: {findings:#?}");
        }
    }

    #[test]
    fn client_secret_written_inline() {
        let bad = [json!({"client_secret_env": null, "client_secret": "s3cret"})];
        assert_finding(&bad, Severity::Warning, "client_secret", "client_secret_env");
    }

    #[test]
    fn no_post_logout_redirect() {
        let bad = [json!({"post_logout_redirect": null})];
        assert_finding(&bad, Severity::Warning, "post_logout_redirect", "logout");
    }

    #[test]
    fn issuer_other_than_claveunica_is_a_note() {
        let bad = [
            json!({"issuer": "http://127.0.0.1:8900/openid"}),
            json!({"issuer": "https://claveunica-test.example.gob.cl/openid"}),
        ];
        assert_finding(&bad, Severity::Note, "issuer", CLAVEUNICA_ISSUER);
    }

    #[test]
    fn issuer_nearly_claveunica_is_a_warning() {
        let bad = [
            json!({"issuer": "https://accounts.claveunica.gob.cl/openid/"}),
            json!({"issuer": "https://www.claveunica.gob.cl/openid"}),
        ];
        assert_finding(&bad, Severity::Warning, "issuer", "every login would fail");
    }

    #[test]
    fn a_single_session_key_is_a_note_on_rotation() {
        let bad = [json!({"session_keys": [KEY]})];
        assert_finding(&bad, Severity::Note, "session_keys", "new key first");
    }

    #[test]
    fn the_emulator_setup_is_flagged_but_loads() {
        let demo = with(&json!({
            "issuer": "http://127.0.0.1:8900/openid",
            "redirect_uri": "http://localhost:8000/claveunica/callback",
        }));
        let findings = review_of(&demo);
        for needle in ["uses http", "port", "localhost"] {
            assert!(has(&findings, Severity::Warning, "redirect_uri", needle), "{needle}: {findings:#?}");
        }
        // localhost already says it: no second warning about .gob.cl for the same host.
        assert!(!has(&findings, Severity::Warning, "redirect_uri", "not under .gob.cl"), "{findings:#?}");
    }
}
