//! Certification review of a validated [`Config`]: what ClaveÚnica's certification would reject
//! (or an operator would regret) in a configuration the gate itself accepts. The gate runs
//! fine against the emulator or a test service with `http://localhost` and an inline secret, so
//! [`Config::from_json`] cannot refuse those; this review names them before the review does.
//!
//! Sans-IO like the rest of the core: it takes a [`Config`] and returns findings. Printing them
//! is the caller's job (the `claveunica-gate check` command).

use url::{Host, Url};

use crate::config::{AccessSubject, Config, CLAVEUNICA_SCOPE};

/// The `iss` of ClaveÚnica's ID tokens in sandbox, QA and production alike (one host for all).
pub const CLAVEUNICA_ISSUER: &str = "https://accounts.claveunica.gob.cl/openid";

/// ClaveÚnica's endpoints as its integration manual lists them (`docs/claveunica.md`): the
/// configuration key that overrides each, what the review calls it, and the URL.
pub const CLAVEUNICA_ENDPOINTS: [(&str, &str, &str); 5] = [
    ("authorization_endpoint", "authorize", "https://accounts.claveunica.gob.cl/openid/authorize/"),
    ("token_endpoint", "token", "https://accounts.claveunica.gob.cl/openid/token/"),
    ("userinfo_endpoint", "userinfo", "https://accounts.claveunica.gob.cl/openid/userinfo/"),
    ("jwks_uri", "keys", "https://accounts.claveunica.gob.cl/openid/jwks"),
    ("logout_endpoint", "logout", "https://accounts.claveunica.gob.cl/api/v1/accounts/app/logout"),
];

/// The origin every ClaveÚnica endpoint is on.
pub const CLAVEUNICA_ORIGIN: &str = "https://accounts.claveunica.gob.cl";

/// How much a finding matters. Each warning's message says whether the manual requires the
/// change or only recommends it, because an agency plans differently for the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The manual requires it, recommends it, or production would break: fix before going live.
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

    for (key, env_key, written) in [
        ("client_id", "client_id_env", config.client_id_env.is_none()),
        ("client_secret", "client_secret_env", config.client_secret_env.is_none()),
    ] {
        if written {
            add(
                Severity::Warning,
                key,
                format!(
                    "is written in the configuration: the manual requires the client id and secret to stay out of \
                     source code; use {env_key} and give the proxy the variable (Envoy: \
                     vm_config.environment_variables)"
                ),
            );
        }
    }

    review_endpoints(config, &mut add);

    findings.extend(review_redirect_uri(&config.redirect_uri));
    let mut add = |severity, key, message: String| findings.push(Finding { severity, key, message });

    if config.post_logout_redirect.is_none() {
        add(
            Severity::Warning,
            "post_logout_redirect",
            "is not set: recommended, not required. The manual requires a working logout, which the gate \
             provides by itself (it takes the browser through ClaveÚnica's logout, then back to the application); \
             with a post-logout redirect whose origin is registered as the Logout URI, ClaveÚnica sends the \
             browser back itself"
                .into(),
        );
    }

    if config.scope != CLAVEUNICA_SCOPE {
        add(
            Severity::Warning,
            "scope",
            format!(
                "is {:?}: the manual requires exactly {CLAVEUNICA_SCOPE:?}, and the review checks it; remove the \
                 key to use it",
                config.scope
            ),
        );
    }

    if matches!(config.access_log, AccessSubject::Full) {
        // Decreto 9 asks for an identifier of the person, not the RUN itself; a log full of RUNs
        // is personal data every log reader and log store then holds.
        add(
            Severity::Note,
            "access_log",
            "run is \"full\": the proxy's access log holds every person's RUN. The register Decreto 9 asks for \
             needs an identifier of the person: \"masked\" (the default) or \"hashed\" (a keyed hash the agency \
             can recompute for one RUN when it must answer for an access) keeps the RUN out of the logs"
                .into(),
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
/// string, no port, no IP address, and a `.gob.cl` host in production. Public because
/// `claveunica-gate certify` judges the `redirect_uri` a deployed gate sends by the same rules.
#[must_use]
pub fn review_redirect_uri(redirect_uri: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut add = |severity, key, message: String| findings.push(Finding { severity, key, message });
    // Config::from_json accepted it as an absolute http(s) URL, so this only fails if the two
    // ever disagree (or certify read something else); then it is not a URL ClaveÚnica takes.
    let key = "redirect_uri";
    let Ok(url) = Url::parse(redirect_uri) else {
        add(Severity::Warning, key, "is not an absolute URL: the manual requires one".into());
        return findings;
    };

    if url.scheme() == "http" {
        add(Severity::Warning, key, "uses http: the manual requires HTTPS everywhere".into());
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
    findings
}

/// Every endpoint the gate calls or sends browsers to, against the manual's URLs: the review
/// looks for the back-channel calls to ClaveÚnica itself, and an override (a proxy, a mock
/// left in) is what it would find instead.
fn review_endpoints(config: &Config, add: &mut impl FnMut(Severity, &'static str, String)) {
    for ((key, what, url), (_, _, expected)) in effective_endpoints(config).into_iter().zip(CLAVEUNICA_ENDPOINTS) {
        if url == expected {
            continue;
        }
        let on_claveunica = Url::parse(url).is_ok_and(|u| u.origin().ascii_serialization() == CLAVEUNICA_ORIGIN);
        let message = if on_claveunica {
            format!(
                "the {what} endpoint is {url}, not {expected} as the manual lists it: the review checks the exact \
                 URL; remove {key} from the configuration"
            )
        } else {
            format!(
                "the {what} endpoint is {url}, not on {CLAVEUNICA_ORIGIN}: fine for the emulator or a test \
                 service, but in production the manual requires calling ClaveÚnica itself ({expected}); set \
                 issuer to {CLAVEUNICA_ISSUER} and remove any {key} override"
            )
        };
        add(Severity::Warning, key, message);
    }
}

/// The endpoints the configuration makes the gate use, in [`CLAVEUNICA_ENDPOINTS`]'s order:
/// the configuration key that overrides each, what the review calls it, and the URL in effect.
#[must_use]
pub fn effective_endpoints(config: &Config) -> [(&'static str, &'static str, &str); 5] {
    let e = &config.endpoints;
    let urls = [e.authorization.as_str(), &e.token.url, &e.userinfo.url, &e.jwks.url, &e.logout];
    let mut effective = CLAVEUNICA_ENDPOINTS.map(|(key, what, _)| (key, what, ""));
    for (slot, url) in effective.iter_mut().zip(urls) {
        slot.2 = url;
    }
    effective
}

/// One thing the agency registers with ClaveÚnica: what, the value, and why that value.
pub type Registration = (&'static str, String, &'static str);

/// What the agency registers with ClaveÚnica for this configuration: the Redirect URI, exactly
/// as the gate sends it, and the Logout URI, the origin of `post_logout_redirect`
/// (ClaveÚnica's logout only sends the browser back to a registered origin; it answers 204
/// otherwise).
#[must_use]
pub fn registration(config: &Config) -> Vec<Registration> {
    let mut register = vec![(
        "Redirect URI",
        config.redirect_uri.clone(),
        "exactly as the gate sends it; ClaveÚnica compares it as text",
    )];
    if let Some(origin) = config
        .post_logout_redirect
        .as_deref()
        .and_then(|u| Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization())
    {
        register.push((
            "Logout URI",
            origin,
            "the origin of post_logout_redirect: ClaveÚnica's logout sends the browser back only to a registered \
             Logout URI, and answers 204 otherwise",
        ));
    }
    register
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
            "client_id_env": "CU_ID",
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
    fn a_register_of_full_runs_is_pointed_out() {
        assert_finding(&[json!({"access_log": {"run": "full"}})], Severity::Note, "access_log", "masked");
        assert!(review_of(&with(&json!({"access_log": {"run": "masked"}}))).is_empty());
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
    fn client_id_written_inline() {
        let bad = [json!({"client_id_env": null, "client_id": "abc"})];
        assert_finding(&bad, Severity::Warning, "client_id", "client_id_env");
    }

    #[test]
    fn no_post_logout_redirect_is_recommended_not_rejected() {
        let bad = [json!({"post_logout_redirect": null})];
        assert_finding(&bad, Severity::Warning, "post_logout_redirect", "recommended, not required");
        let findings = review_of(&with(&bad[0]));
        assert!(!has(&findings, Severity::Warning, "post_logout_redirect", "reject"), "{findings:#?}");
    }

    #[test]
    fn every_endpoint_off_claveunica_is_flagged() {
        for (key, _, _) in CLAVEUNICA_ENDPOINTS {
            let bad =
                [json!({ key: "https://proxy.example.gob.cl/claveunica" }), json!({ key: "http://127.0.0.1:8900/x" })];
            assert_finding(&bad, Severity::Warning, key, "not on https://accounts.claveunica.gob.cl");
            // On the right host but not the manual's exact URL.
            let near = [json!({ key: "https://accounts.claveunica.gob.cl/other/" })];
            assert_finding(&near, Severity::Warning, key, "the review checks the exact URL");
        }
        // Derived from an issuer that is not ClaveÚnica's: every endpoint is flagged.
        let findings = review_of(&with(&json!({"issuer": "http://127.0.0.1:8900/openid"})));
        for (key, _, _) in CLAVEUNICA_ENDPOINTS {
            assert!(has(&findings, Severity::Warning, key, "http://127.0.0.1:8900/"), "{key}: {findings:#?}");
        }
    }

    #[test]
    fn the_effective_endpoints_are_the_manuals_unless_overridden() {
        let config = |v: &Value| Config::from_json(v.to_string().as_bytes(), &|_| Some("x".into())).unwrap();
        let good = config(&good());
        let urls: Vec<_> = effective_endpoints(&good).iter().map(|e| e.2.to_string()).collect();
        let manual: Vec<_> = CLAVEUNICA_ENDPOINTS.iter().map(|e| e.2.to_string()).collect();
        assert_eq!(urls, manual);
        let proxied = config(&with(&json!({"userinfo_endpoint": "https://proxy.example.gob.cl/ui"})));
        let effective = effective_endpoints(&proxied);
        assert_eq!(effective[2], ("userinfo_endpoint", "userinfo", "https://proxy.example.gob.cl/ui"));
        assert_eq!(effective[1].2, manual[1]);
    }

    #[test]
    fn what_to_register_is_the_redirect_uri_and_the_logout_origin() {
        let config = |v: &Value| Config::from_json(v.to_string().as_bytes(), &|_| Some("x".into())).unwrap();
        let register =
            registration(&config(&with(&json!({"post_logout_redirect": "https://tramites.example.gob.cl/adios?x=1"}))));
        let values: Vec<_> = register.iter().map(|(what, value, _)| (*what, value.as_str())).collect();
        assert_eq!(
            values,
            [
                ("Redirect URI", "https://tramites.example.gob.cl/claveunica/callback"),
                ("Logout URI", "https://tramites.example.gob.cl"),
            ]
        );
        assert!(register[1].2.contains("origin of post_logout_redirect"), "{register:?}");
        let none = registration(&config(&with(&json!({"post_logout_redirect": null}))));
        assert_eq!(none.len(), 1, "{none:?}");
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
