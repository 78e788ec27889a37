//! Plugin configuration: the JSON document an operator writes (Envoy `configuration`, Istio
//! `pluginConfig`), compiled once into a validated [`Config`]. Every problem is reported in
//! one pass, each naming its key, so an operator fixes a file in one round trip.
//!
//! Each section of the document is read by its own module, beside the types it yields: the
//! provider and client in `provider`, the gate's own URLs in `site`, keys and cookies in
//! `session`, rules, migration and the pilot list in `rules`, identity headers in `identity`,
//! how the access register names the person in `access_log`, the agency the pages speak
//! for and the button page in `pages`.
//! `reader` holds what they share (collecting problems, refusing unknown keys) and `error`
//! what a refusal says. [`Config::from_json`] composes the sections.

use serde_json::{Map, Value};

use crate::policy::{Migration, Rule};
use crate::primitives::pseudonym::Pseudonyms;
use crate::primitives::run::Run;
use crate::primitives::seal::SessionKey;
use crate::primitives::secret::SecretString;
use crate::protocol::assertion::{AssertionSettings, AssertionSubject};
use crate::protocol::oidc::Registration;
use crate::web::headers::IdentityHeaders;
use crate::web::pages::Agency;

mod access_log;
mod assertion;
mod error;
mod host;
mod hosts;
mod identity;
mod pages;
mod provider;
mod pseudonym;
mod reader;
mod rules;
mod session;
mod site;
mod sites;
#[cfg(test)]
mod testing;

pub use access_log::AccessSubject;
pub use assertion::{DEFAULT_ASSERTION_HEADER, DEFAULT_JWKS_PATH};
pub use error::{ConfigError, Problem, ProblemKind, UrlProblem};
pub use host::{EnvoySettings, UnitSettings};
pub use hosts::{request_host, HostPattern};
pub use provider::{Endpoint, Endpoints, CLAVEUNICA_SCOPE, CLOCK_LEEWAY_LIMIT_S};
pub use session::{FlowSettings, SessionSettings, FLOW_MAX_AGE_LIMIT_S};
pub use sites::{site_for, SITE_KEYS};

use host::{Host, HostKeys};
use reader::Reader;

/// The document as a JSON object.
fn json_map(text: &[u8]) -> Result<Map<String, Value>, ConfigError> {
    let root: Value =
        serde_json::from_slice(text).map_err(|e| ConfigError::document(ProblemKind::NotJson(e.to_string())))?;
    match root {
        Value::Object(map) => Ok(map),
        _ => Err(ConfigError::document(ProblemKind::MustBe("a JSON object"))),
    }
}

/// The document from JSON or protobuf `Struct` bytes.
fn host_map(bytes: &[u8]) -> Result<Map<String, Value>, ConfigError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return json_map(bytes);
    }
    let decoded = <prost_types::Struct as prost::Message>::decode(bytes)
        .map_err(|e| ConfigError::document(ProblemKind::NotJsonOrStruct(e)))?;
    Ok(reader::struct_to_json(decoded))
}

/// A validated configuration: one site's, and through [`Config::sites`] every other site the
/// document names. Only [`Config::from_json`] and its siblings build one.
#[derive(Debug, Clone)]
pub struct Config {
    /// The hosts this site serves; empty for the default site, which serves every host no
    /// other site names (and a document without `sites`, which serves every host).
    pub hosts: Vec<HostPattern>,
    /// The document's further sites, in its order, each with its hosts (never empty). The
    /// first site is this configuration itself: the top level when it is the default, else the
    /// first entry of `sites`.
    pub sites: Vec<Config>,
    /// The expected `iss` of ID tokens, exactly as configured.
    pub issuer: String,
    /// The client id registered with ClaveÚnica.
    pub client_id: String,
    /// Where the client id came from: `None` when written inline in the document, else the
    /// name of the environment variable.
    pub client_id_env: Option<String>,
    /// The client secret.
    pub client_secret: SecretString,
    /// Where the secret came from: `None` when written inline in the document, else the name
    /// of the environment variable.
    pub client_secret_env: Option<String>,
    /// The registered callback URL, sent verbatim to the provider.
    pub redirect_uri: String,
    /// The path part of `redirect_uri`: where the gate answers the callback.
    pub callback_path: String,
    /// Whether cookies are `Secure` with the `__Host-` prefix (an https `redirect_uri`).
    pub secure_cookies: bool,
    /// Provider endpoints.
    pub endpoints: Endpoints,
    /// Keys for sealing cookies, newest first: all open, the first seals.
    pub session_keys: Vec<SessionKey>,
    /// The path that starts a login explicitly.
    pub login_path: String,
    /// The path that ends the session.
    pub logout_path: String,
    /// Where the provider sends the browser after logout (absolute URL), if anywhere.
    pub post_logout_redirect: Option<String>,
    /// Session cookie settings.
    pub session: SessionSettings,
    /// Login-flow cookie settings.
    pub flow: FlowSettings,
    /// Timeout of each call to the provider, in milliseconds.
    pub timeout_ms: u64,
    /// Clock leeway for `exp`, `iat` and session expiry, in seconds.
    pub clock_leeway_s: u64,
    /// The scope requested at the authorize endpoint.
    pub scope: String,
    /// Path rules, first match wins; no match means enforce.
    pub rules: Vec<Rule>,
    /// How ClaveÚnica and the old login coexist.
    pub migration: Migration,
    /// A pilot list: when set, only these RUNs get through.
    pub allowed_runs: Option<Vec<Run>>,
    /// The identity headers set on authenticated requests.
    pub headers: IdentityHeaders,
    /// A response header by which the application asks the gate to end the session.
    pub logout_response_header: String,
    /// How often the provider's keys are refreshed in the background, in seconds.
    pub jwks_refresh_s: u64,
    /// How the access register names the person.
    pub access_log: AccessSubject,
    /// Who the gate's pages speak for: the agency, its help contact, its home.
    pub agency: Agency,
    /// Whether a browser without a session on an enforced path, and the login path without a
    /// return path, get the page with the ClaveÚnica button instead of going to ClaveÚnica.
    pub button_page: bool,
    /// The old login, offered on the button page as a secondary link while a migration keeps
    /// it.
    pub legacy_login: Option<String>,
    /// The signed assertion of identity added to identified requests, when configured.
    pub assertion: Option<AssertionSettings>,
    /// Each person's pseudonym for this application, when configured.
    pub pseudonym: Option<Pseudonyms>,
}

impl Config {
    /// Parses and validates a configuration document for either host: `cluster` and
    /// `upstream` are optional and checked when given (the `check` command, tests). `env` looks
    /// up the environment variables the host exposes (for `client_secret_env` and
    /// `session_keys_env`); the core never reads the environment itself.
    pub fn from_json(text: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(&json_map(text)?, env, Host::Any).map(|(config, _)| config)
    }

    /// Like [`Config::from_json`], from the bytes a host hands over: a JSON document, or the
    /// binary encoding of a `google.protobuf.Struct` (what Envoy passes when the
    /// configuration's type is `Struct`; numbers are doubles there, whole ones read as
    /// integers).
    pub fn from_host_bytes(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(&host_map(bytes)?, env, Host::Any).map(|(config, _)| config)
    }

    /// The configuration as the Envoy adapter reads it (Envoy's `configuration`, Istio's
    /// `pluginConfig`): `cluster` is required and `upstream` refused.
    pub fn for_envoy(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<(Self, EnvoySettings), ConfigError> {
        let (config, keys) = Self::read(&host_map(bytes)?, env, Host::Envoy)?;
        let cluster = keys.cluster.ok_or_else(|| ConfigError::one("cluster", ProblemKind::Missing))?;
        Ok((config, EnvoySettings { cluster }))
    }

    /// The configuration as the NGINX Unit component reads it (a JSON file): `upstream` is
    /// required and `cluster` refused.
    pub fn for_unit(text: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<(Self, UnitSettings), ConfigError> {
        let (config, keys) = Self::read(&json_map(text)?, env, Host::Unit)?;
        let upstream = keys.upstream.ok_or_else(|| ConfigError::one("upstream", ProblemKind::Missing))?;
        Ok((config, UnitSettings { upstream }))
    }

    /// Reads a document: a single site, or the top level and every entry of `sites` (see
    /// [`sites`]), each read through [`Config::read_site`] and reported together.
    fn read(
        map: &Map<String, Value>,
        env: &dyn Fn(&str) -> Option<String>,
        host: Host,
    ) -> Result<(Self, HostKeys), ConfigError> {
        let Some(list) = map.get("sites").filter(|v| !v.is_null()) else { return Self::read_site(map, env, host) };
        let mut top = map.clone();
        top.remove("sites");
        let mut problems = Vec::new();
        let mut read: Vec<(Self, HostKeys)> = Vec::new();
        // The top level is a site of its own (the default) only with its own callback.
        let default = top.get("redirect_uri").is_some_and(|v| !v.is_null());
        if default {
            match Self::read_site(&top, env, host) {
                Ok(site) => read.push(site),
                Err(e) => problems.extend(e.problems),
            }
        }
        for site in sites::split(list, &top, &mut problems) {
            match Self::read_site(&site.document, env, host) {
                Ok((mut config, keys)) => {
                    config.hosts = site.hosts;
                    read.push((config, keys));
                }
                Err(e) => problems.extend(e.problems.into_iter().map(|p| site.place(p, &top))),
            }
        }
        if problems.is_empty() {
            let patterns: Vec<&[HostPattern]> = read.iter().map(|(c, _)| c.hosts.as_slice()).collect();
            for (index, (config, _)) in read.iter().enumerate() {
                if let Err(kind) = sites::check_callback_host(&config.redirect_uri, index, &patterns) {
                    let key = match index.checked_sub(usize::from(default)) {
                        Some(entry) => format!("sites[{entry}].redirect_uri"),
                        None => "redirect_uri".to_string(),
                    };
                    problems.push(Problem { key, kind });
                }
            }
        }
        sites::refusal(problems)?;
        let mut read = read.into_iter();
        let Some((mut first, keys)) = read.next() else {
            return Err(ConfigError::one("sites", ProblemKind::Missing));
        };
        first.sites = read.map(|(config, _)| config).collect();
        Ok((first, keys))
    }

    /// Reads one site's document: the whole document when it has no `sites`.
    fn read_site(
        map: &Map<String, Value>,
        env: &dyn Fn(&str) -> Option<String>,
        host: Host,
    ) -> Result<(Self, HostKeys), ConfigError> {
        let mut r = Reader::new(map);
        r.unknown_keys(&[
            provider::KEYS,
            site::KEYS,
            session::KEYS,
            rules::KEYS,
            identity::KEYS,
            access_log::KEYS,
            assertion::KEYS,
            pseudonym::KEYS,
            host::KEYS,
            pages::KEYS,
            sites::KEYS,
        ]);
        let provider = provider::read(&mut r, env);
        let site = site::read(&mut r);
        let sessions = session::read(&mut r, env, site.as_ref().is_some_and(|s| s.secure_cookies));
        let access = rules::read(&mut r);
        let mut headers = identity::read(&mut r);
        let assertion = assertion::read(&mut r, env);
        let application = assertion.as_ref().map(|a| a.audience.clone()).or_else(|| {
            site.as_ref().and_then(|s| url::Url::parse(&s.redirect_uri).ok()?.host_str().map(str::to_string))
        });
        let pseudonyms = pseudonym::read(&mut r, env, application.as_deref());
        let wanted = headers.pseudonym_header().map(|h| format!("the header {h}")).or_else(|| {
            assertion
                .as_ref()
                .filter(|a| a.subject == AssertionSubject::Pseudonym)
                .map(|_| "the assertion's subject".to_string())
        });
        if let Some(user) = wanted.filter(|_| pseudonyms.is_none() && !r.named("pseudonym")) {
            r.problem("pseudonym", ProblemKind::NeededBy(user));
        }
        if let (Some(a), Some(site)) = (&assertion, &site) {
            if [&site.callback_path, &site.login_path, &site.logout_path].contains(&&a.jwks_path) {
                r.problem(
                    "assertion.jwks_path",
                    ProblemKind::MustBe("a path other than the callback, login and logout paths"),
                );
            }
        }
        if let Some(a) = &assertion {
            // A client's copy of the assertion is never forwarded, like any identity header.
            headers.also_strip(&a.header);
        }
        let access_log = access_log::read(&mut r, env);
        let pages = pages::read(&mut r);
        let host_keys = host::read(&mut r, host);
        let config = provider.zip(site).zip(sessions).map(|((provider, site), sessions)| Config {
            hosts: Vec::new(),
            sites: Vec::new(),
            issuer: provider.issuer,
            client_id: provider.client_id,
            client_id_env: provider.client_id_env,
            client_secret: provider.client_secret,
            client_secret_env: provider.client_secret_env,
            redirect_uri: site.redirect_uri,
            callback_path: site.callback_path,
            secure_cookies: site.secure_cookies,
            endpoints: provider.endpoints,
            session_keys: sessions.keys,
            login_path: site.login_path,
            logout_path: site.logout_path,
            post_logout_redirect: site.post_logout_redirect,
            session: sessions.session,
            flow: sessions.flow,
            timeout_ms: provider.timeout_ms,
            clock_leeway_s: provider.clock_leeway_s,
            scope: provider.scope,
            rules: access.rules,
            migration: access.migration,
            allowed_runs: access.allowed_runs,
            headers,
            logout_response_header: sessions.logout_response_header,
            jwks_refresh_s: provider.jwks_refresh_s,
            access_log,
            agency: pages.agency,
            button_page: pages.button_page,
            legacy_login: pages.legacy_login,
            assertion,
            pseudonym: pseudonyms,
        });
        r.finish(config.map(|config| (config, host_keys)))
    }
}

impl Registration for Config {
    fn client_id(&self) -> &str {
        &self.client_id
    }

    fn client_secret(&self) -> &SecretString {
        &self.client_secret
    }

    fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    fn scope(&self) -> &str {
        &self.scope
    }

    fn authorization_endpoint(&self) -> &str {
        &self.endpoints.authorization
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::testing::{base, kind_of, load, no_env, with, without, KEY};
    use super::*;

    #[test]
    fn each_required_key_missing_is_named() {
        for key in ["issuer", "client_id", "client_secret", "redirect_uri", "session_keys"] {
            let err = load(&without(key)).unwrap_err();
            assert!(err.names(key), "{key}: {err}");
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let mut v = without("issuer");
        v["client_id"] = json!("");
        v["timeout_ms"] = json!(5);
        v["colour"] = json!("blue");
        let err = load(&v).unwrap_err();
        for key in ["issuer", "client_id", "timeout_ms", "colour"] {
            assert!(err.names(key), "{key}: {err}");
        }
    }

    #[test]
    fn secrets_from_the_environment() {
        let mut v = without("client_secret");
        v["client_secret_env"] = json!("CU_SECRET");
        v.as_object_mut().unwrap().remove("session_keys");
        v["session_keys_env"] = json!("CU_KEYS");
        let other = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";
        let env = |k: &str| match k {
            "CU_SECRET" => Some("from-env".to_string()),
            "CU_KEYS" => Some(format!("{other},{KEY}")),
            _ => None,
        };
        let c = Config::from_json(v.to_string().as_bytes(), &env).unwrap();
        assert_eq!(c.client_secret.expose(), "from-env");
        assert_eq!(c.session_keys.len(), 2);
        let err = Config::from_json(v.to_string().as_bytes(), &no_env).unwrap_err();
        assert!(err.names("client_secret_env") && err.names("session_keys_env"), "{err}");
        assert!(!err.to_string().contains("from-env"));
    }

    #[test]
    fn a_binary_protobuf_struct_reads_like_its_json() {
        use prost::Message as _;
        use prost_types::value::Kind;
        fn to_value(v: &Value) -> prost_types::Value {
            let kind = match v {
                Value::Null => Kind::NullValue(0),
                Value::Bool(b) => Kind::BoolValue(*b),
                Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
                Value::String(s) => Kind::StringValue(s.clone()),
                Value::Array(a) => Kind::ListValue(prost_types::ListValue { values: a.iter().map(to_value).collect() }),
                Value::Object(m) => Kind::StructValue(prost_types::Struct {
                    fields: m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
                }),
            };
            prost_types::Value { kind: Some(kind) }
        }
        let mut v = base();
        v["timeout_ms"] = json!(2500);
        v["rules"] = json!([{"prefix": "/static/", "action": "public"}]);
        let Kind::StructValue(s) = to_value(&v).kind.unwrap() else { unreachable!() };
        let c = Config::from_host_bytes(&s.encode_to_vec(), &no_env).unwrap();
        assert_eq!(c.timeout_ms, 2500);
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.client_id, "abc");
        // JSON still works through the same door, and junk is refused with a clear message.
        assert!(Config::from_host_bytes(v.to_string().as_bytes(), &no_env).is_ok());
        let err = Config::from_host_bytes(b"\xff\xff\xff", &no_env).unwrap_err();
        assert!(err.to_string().contains("neither a JSON object nor a protobuf Struct"), "{err}");
        // A Struct missing a key is named like a JSON one.
        v.as_object_mut().unwrap().remove("client_id");
        let Kind::StructValue(s) = to_value(&v).kind.unwrap() else { unreachable!() };
        assert!(Config::from_host_bytes(&s.encode_to_vec(), &no_env).unwrap_err().names("client_id"));
    }

    #[test]
    fn istio_struct_numbers_read_as_whole_numbers() {
        let c = load(&with("timeout_ms", json!(2500.0))).unwrap();
        assert_eq!(c.timeout_ms, 2500);
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let c = load(&base()).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains(KEY), "{dbg}");
    }

    #[test]
    fn a_document_that_is_not_an_object_is_refused_as_a_whole() {
        let cases: [(&[u8], &str); 3] = [
            (b"{", "invalid configuration: (document): is not valid JSON: EOF while parsing an object"),
            (b"[]", "invalid configuration: (document): must be a JSON object"),
            (b"\"x\"", "invalid configuration: (document): must be a JSON object"),
        ];
        for (text, want) in cases {
            let err = Config::from_json(text, &no_env).unwrap_err();
            assert!(err.names("(document)"), "{err}");
            assert!(err.to_string().starts_with(want), "{err}");
        }
    }

    #[test]
    fn the_message_lists_every_problem_as_operators_read_it() {
        // README.md quotes this line.
        let mut v = without("client_id");
        v["session_keys"] = json!(["c2hvcnQ="]);
        let err = load(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: client_id: is required (or client_id_env); session_keys[0]: must decode to 32 \
             bytes, not 5"
        );
        assert_eq!(kind_of(&err, "client_id"), Some(ProblemKind::MissingEither("client_id_env")));
        assert_eq!(kind_of(&err, "session_keys[0]"), Some(ProblemKind::KeyLength(5)));
        // envoy/README.md quotes this one.
        let mut v = without("client_secret");
        v["client_secret_env"] = json!("CLAVEUNICA_CLIENT_SECRET");
        assert_eq!(
            load(&v).unwrap_err().to_string(),
            "invalid configuration: client_secret_env: environment variable CLAVEUNICA_CLIENT_SECRET is not set or \
             empty"
        );
    }

    #[test]
    fn the_configuration_is_the_client_the_provider_knows() {
        let c = load(&with("scope", json!("openid run"))).unwrap();
        let r: &dyn Registration = &c;
        assert_eq!(
            (r.client_id(), r.client_secret().expose(), r.redirect_uri(), r.scope()),
            ("abc", "s3cret", "https://portal.example.gob.cl/claveunica/callback", "openid run")
        );
        assert_eq!(r.authorization_endpoint(), "https://accounts.claveunica.gob.cl/openid/authorize/");
    }
}
