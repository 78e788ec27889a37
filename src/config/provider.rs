//! The provider section: the issuer, the endpoints derived from it the way ClaveÚnica lays
//! them out (each may be overridden), the client's id and secret, the scope, and how calls to
//! the provider are timed.

use url::Url;

use super::error::ProblemKind;
use super::reader::Reader;
use crate::primitives::secret::SecretString;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &[
    "issuer",
    "client_id",
    "client_id_env",
    "client_secret",
    "client_secret_env",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "logout_endpoint",
    "scope",
    "timeout_ms",
    "clock_leeway_s",
    "jwks_refresh_s",
];

/// The largest `clock_leeway_s` a configuration may set.
pub const CLOCK_LEEWAY_LIMIT_S: u64 = 300;

/// The scope ClaveÚnica's certification review checks for, exactly.
pub const CLAVEUNICA_SCOPE: &str = "openid run name";

/// An endpoint the gate calls through the proxy: the URL, and its parts as the proxy's
/// callout API wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The full URL, as configured or derived.
    pub url: String,
    /// `host[:port]`, sent as `:authority` (and used for TLS SNI by the cluster).
    pub authority: String,
    /// Path and query, sent as `:path`.
    pub path: String,
}

impl Endpoint {
    fn of(url: &Url) -> Self {
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Endpoint { url: url.to_string(), authority, path }
    }
}

/// Every provider endpoint, derived from `issuer` unless overridden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Where browsers are sent to log in (a top-level navigation).
    pub authorization: String,
    /// The token endpoint (POST form, client_secret_post).
    pub token: Endpoint,
    /// The userinfo endpoint (POST, bearer token).
    pub userinfo: Endpoint,
    /// The JSON Web Key Set.
    pub jwks: Endpoint,
    /// ClaveÚnica's logout, reached by a top-level navigation.
    pub logout: String,
}

/// The provider section, read; its fields become [`super::Config`]'s.
pub(super) struct Provider {
    pub(super) issuer: String,
    pub(super) client_id: String,
    pub(super) client_id_env: Option<String>,
    pub(super) client_secret: SecretString,
    pub(super) client_secret_env: Option<String>,
    pub(super) endpoints: Endpoints,
    pub(super) scope: String,
    pub(super) timeout_ms: u64,
    pub(super) clock_leeway_s: u64,
    pub(super) jwks_refresh_s: u64,
}

/// Reads the section; `None` when a required part is missing or wrong (a problem says which).
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>, env: &dyn Fn(&str) -> Option<String>) -> Option<Provider> {
    let issuer = r.required_string("issuer");
    let issuer_url = issuer.as_deref().and_then(|s| r.base_url("issuer", s));
    let client_id_env = r.string("client_id_env");
    let client_id = inline_or_env(r, ("client_id", "client_id_env"), client_id_env.as_deref(), env);
    let client_secret_env = r.string("client_secret_env");
    let client_secret = inline_or_env(r, ("client_secret", "client_secret_env"), client_secret_env.as_deref(), env)
        .map(SecretString::new);
    let endpoints = endpoints(r, issuer.as_deref().zip(issuer_url.as_ref()));
    let timeout_ms = r.integer("timeout_ms", 5_000, 100, 60_000);
    let clock_leeway_s = r.integer("clock_leeway_s", 60, 0, CLOCK_LEEWAY_LIMIT_S);
    let scope = r.string("scope").unwrap_or_else(|| CLAVEUNICA_SCOPE.to_string());
    if !scope.split(' ').any(|s| s == "openid") {
        r.problem("scope", ProblemKind::NoOpenid);
    }
    let jwks_refresh_s = r.integer("jwks_refresh_s", 3600, 60, 86_400);
    Some(Provider {
        issuer: issuer?,
        client_id: client_id?,
        client_id_env,
        client_secret: client_secret?,
        client_secret_env,
        endpoints: endpoints?,
        scope,
        timeout_ms,
        clock_leeway_s,
        jwks_refresh_s,
    })
}

/// A value written inline under `keys.0` or named by an environment variable under `keys.1`
/// (`var`), never both. The manual asks for the client's id and secret to stay out of the code,
/// so both may come from the environment.
fn inline_or_env(
    r: &mut Reader<'_>,
    (key, env_key): (&'static str, &'static str),
    var: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    match (r.string(key), var) {
        (Some(_), Some(_)) => {
            r.problem(key, ProblemKind::NotBoth(key, env_key));
            None
        }
        (Some(s), None) => Some(s),
        (None, Some(var)) => {
            let value = env(var).filter(|v| !v.is_empty());
            if value.is_none() {
                r.problem(env_key, ProblemKind::EnvUnsetOrEmpty(var.to_string()));
            }
            value
        }
        (None, None) => {
            // An env key that was given but unusable has been named already.
            if !r.named(key) {
                r.problem(key, ProblemKind::MissingEither(env_key));
            }
            None
        }
    }
}

/// The endpoints, derived from the issuer (as written, and as parsed) unless overridden.
/// Overrides are read even without a usable issuer, so their own problems are named too.
fn endpoints(r: &mut Reader<'_>, issuer: Option<(&str, &Url)>) -> Option<Endpoints> {
    let base = issuer.map(|(s, _)| s.trim_end_matches('/')).unwrap_or_default();
    let origin = issuer.map(|(_, u)| u.origin().ascii_serialization()).unwrap_or_default();
    let mut endpoint = |key: &str, derived: String| -> Option<Url> {
        let text = r.string(key).unwrap_or(derived);
        issuer?;
        r.url(key, &text)
    };
    let authorization = endpoint("authorization_endpoint", format!("{base}/authorize/"));
    let token = endpoint("token_endpoint", format!("{base}/token/"));
    let userinfo = endpoint("userinfo_endpoint", format!("{base}/userinfo/"));
    let jwks = endpoint("jwks_uri", format!("{base}/jwks"));
    let logout = endpoint("logout_endpoint", format!("{origin}/api/v1/accounts/app/logout"));
    Some(Endpoints {
        authorization: authorization?.to_string(),
        token: Endpoint::of(&token?),
        userinfo: Endpoint::of(&userinfo?),
        jwks: Endpoint::of(&jwks?),
        logout: logout?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::super::testing::{assert_kinds, assert_refused, base, kind_of, load, with, without};
    use super::super::Config;
    use super::super::{ProblemKind, UrlProblem};

    #[test]
    fn endpoints_are_derived_from_the_issuer_as_claveunica_lays_them_out() {
        let c = load(&base()).unwrap();
        assert_eq!(c.endpoints.authorization, "https://accounts.claveunica.gob.cl/openid/authorize/");
        assert_eq!(c.endpoints.token.url, "https://accounts.claveunica.gob.cl/openid/token/");
        assert_eq!(c.endpoints.token.authority, "accounts.claveunica.gob.cl");
        assert_eq!(c.endpoints.token.path, "/openid/token/");
        assert_eq!(c.endpoints.userinfo.path, "/openid/userinfo/");
        assert_eq!(c.endpoints.jwks.path, "/openid/jwks");
        assert_eq!(c.endpoints.logout, "https://accounts.claveunica.gob.cl/api/v1/accounts/app/logout");
        assert_eq!(c.callback_path, "/claveunica/callback");
        assert_eq!(c.scope, "openid run name");
        assert!(c.secure_cookies);
        assert_eq!(c.session.cookie_name, "__Host-claveunica_session");
        assert_eq!(c.flow.cookie_prefix, "__Host-claveunica_flow_");
        assert_eq!((c.login_path.as_str(), c.logout_path.as_str()), ("/claveunica/login", "/claveunica/logout"));
    }

    #[test]
    fn pointing_the_issuer_at_the_emulator_is_all_it_takes() {
        let mut v = with("issuer", json!("http://127.0.0.1:8900/openid"));
        v["redirect_uri"] = json!("http://localhost:8000/claveunica/callback");
        let c = load(&v).unwrap();
        assert_eq!(c.endpoints.token.authority, "127.0.0.1:8900");
        assert_eq!(c.endpoints.logout, "http://127.0.0.1:8900/api/v1/accounts/app/logout");
        assert!(!c.secure_cookies);
        assert_eq!(c.session.cookie_name, "claveunica_session");
    }

    #[test]
    fn overrides_win() {
        let c = load(&with("token_endpoint", json!("https://other.example/t?x=1"))).unwrap();
        assert_eq!(c.endpoints.token.authority, "other.example");
        assert_eq!(c.endpoints.token.path, "/t?x=1");
    }

    #[test]
    fn bad_values() {
        assert_refused(&[
            ("issuer", json!("not a url"), "issuer"),
            ("issuer", json!("ftp://x/openid"), "issuer"),
            // Internationalized host names are refused (IDNA is built without its Unicode tables,
            // Cargo.lock pins idna_adapter 1.0); ClaveÚnica's and agencies' hosts are ASCII, and
            // the punycode form still works.
            ("issuer", json!("https://clavéunica.gob.cl/openid"), "issuer"),
            ("issuer", json!(42), "issuer"),
            ("clock_leeway_s", json!(-1), "clock_leeway_s"),
            ("clock_leeway_s", json!(1.5), "clock_leeway_s"),
            ("timeout_ms", json!("5000"), "timeout_ms"),
            ("scope", json!("run name"), "scope"),
            ("client_secret_env", json!("X"), "client_secret"),
            ("jwks_refresh_s", json!(1), "jwks_refresh_s"),
        ]);
    }

    #[test]
    fn what_is_wrong_is_told_by_kind() {
        let cases = [
            ("issuer", json!("ftp://x/openid"), "issuer", ProblemKind::Url(UrlProblem::Scheme)),
            ("issuer", json!("https://clavéunica.gob.cl/openid"), "issuer", ProblemKind::Url(UrlProblem::NotAscii)),
            ("issuer", json!("https://x/openid?a=1"), "issuer", ProblemKind::Url(UrlProblem::Query)),
            ("issuer", json!("https://u:p@x/openid"), "issuer", ProblemKind::Url(UrlProblem::Credentials)),
            ("issuer", json!(42), "issuer", ProblemKind::MustBe("a string")),
            ("issuer", json!(" "), "issuer", ProblemKind::Empty),
            ("token_endpoint", json!("https://x/t#f"), "token_endpoint", ProblemKind::Url(UrlProblem::Fragment)),
            ("timeout_ms", json!(5), "timeout_ms", ProblemKind::NotWholeNumber { min: 100, max: 60_000 }),
            ("scope", json!("run name"), "scope", ProblemKind::NoOpenid),
            (
                "client_secret_env",
                json!("X"),
                "client_secret",
                ProblemKind::NotBoth("client_secret", "client_secret_env"),
            ),
        ];
        assert_kinds(&cases);
    }

    #[test]
    fn the_client_id_may_come_from_the_environment_like_the_secret() {
        let mut v = without("client_id");
        v["client_id_env"] = json!("CU_ID");
        let env = |var: &str| (var == "CU_ID").then(|| "from-env".to_string());
        let c = Config::from_json(v.to_string().as_bytes(), &env).unwrap();
        assert_eq!((c.client_id.as_str(), c.client_id_env.as_deref()), ("from-env", Some("CU_ID")));
        // Written inline, it is that and says so.
        let c = load(&base()).unwrap();
        assert_eq!(c.client_id_env, None);
        assert_kinds(&[
            ("client_id_env", json!("CU_ID"), "client_id", ProblemKind::NotBoth("client_id", "client_id_env")),
            ("client_id", json!(null), "client_id", ProblemKind::MissingEither("client_id_env")),
        ]);
        // Unset or empty in the environment: refused, naming the variable.
        for value in [None, Some(String::new())] {
            let err = Config::from_json(v.to_string().as_bytes(), &|_| value.clone()).unwrap_err();
            assert_eq!(kind_of(&err, "client_id_env"), Some(ProblemKind::EnvUnsetOrEmpty("CU_ID".into())), "{err}");
            assert!(!err.names("client_id"), "one problem, on the variable: {err}");
        }
    }

    #[test]
    fn an_override_is_checked_even_without_a_usable_issuer() {
        let mut v = with("issuer", json!("not a url"));
        v["jwks_uri"] = json!(7);
        let err = load(&v).unwrap_err();
        assert!(err.names("issuer") && err.names("jwks_uri"), "{err}");
        assert!(load(&base()).is_ok());
    }
}
