//! Plugin configuration: the JSON document an operator writes (Envoy `configuration`, Istio
//! `pluginConfig`), compiled once into a validated [`Config`]. Every problem is reported in
//! one pass, each naming its key, so an operator fixes a file in one round trip.

use core::fmt;

use base64::Engine as _;
use serde_json::{Map, Value};
use url::Url;

use crate::policy::{self, Migration, MigrationMode, PathMatch, Rule, RuleAction};
use crate::primitives::run::Run;
use crate::primitives::secret::SecretString;
use crate::web::headers::{HeaderTemplate, IdentityHeaders};

/// Keys this version understands. Anything else is refused: a misspelt optional key would
/// otherwise silently fall back to a default, which for a security gate is the wrong way to
/// fail.
const KNOWN_KEYS: &[&str] = &[
    "issuer",
    "cluster",
    "client_id",
    "client_secret",
    "client_secret_env",
    "redirect_uri",
    "session_keys",
    "session_keys_env",
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "jwks_uri",
    "logout_endpoint",
    "login_path",
    "logout_path",
    "post_logout_redirect",
    "session",
    "flow",
    "timeout_ms",
    "clock_leeway_s",
    "scope",
    "rules",
    "migration",
    "allowed_runs",
    "headers",
    "logout_response_header",
    "jwks_refresh_s",
    "upstream",
];

/// The scope ClaveÚnica's certification review checks for, exactly.
pub const CLAVEUNICA_SCOPE: &str = "openid run name";

/// A 32-byte key for sealing cookies. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

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

/// Session cookie settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// The cookie's full name, `__Host-` prefix included when cookies are `Secure`.
    pub cookie_name: String,
    /// Absolute lifetime in seconds from login.
    pub max_age_s: u64,
    /// Sliding lifetime: a session unused this long ends. `None`: no idle limit.
    pub idle_timeout_s: Option<u64>,
}

/// Login-flow cookie settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSettings {
    /// Prefix of the per-login flow cookie names (a suffix from the state follows).
    pub cookie_prefix: String,
    /// How long a login attempt may take, in seconds.
    pub max_age_s: u64,
}

/// A validated configuration. Only [`Config::from_json`] builds one.
#[derive(Debug, Clone)]
pub struct Config {
    /// The expected `iss` of ID tokens, exactly as configured.
    pub issuer: String,
    /// The proxy's upstream name for calls to the provider.
    pub cluster: String,
    /// The client id registered with ClaveÚnica.
    pub client_id: String,
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
    /// Where a gate that is itself the reverse proxy (the NGINX Unit component) forwards
    /// requests: the legacy application's base URL. Envoy routes by its own configuration
    /// and ignores it.
    pub upstream: Option<Url>,
}

/// One problem with the configuration, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as a path (`session.max_age_s`).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// Every problem found in a configuration document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// Whether one of the problems concerns `key`.
    #[must_use]
    pub fn names(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key == key)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

/// Collects problems while reading fields, so one pass reports all of them.
struct Reader<'a> {
    map: &'a Map<String, Value>,
    prefix: &'static str,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    fn new(map: &'a Map<String, Value>, prefix: &'static str) -> Self {
        Self { map, prefix, problems: Vec::new() }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{}", self.prefix, key)
    }

    fn problem(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key(key);
        self.problems.push(Problem { key, message: message.into() });
    }

    fn unknown_keys(&mut self, known: &[&str]) {
        let unknown: Vec<String> = self.map.keys().filter(|k| !known.contains(&k.as_str())).cloned().collect();
        for k in unknown {
            self.problem(&k, "unknown key");
        }
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.problem(key, "must not be empty");
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.problem(key, "must be a string");
                None
            }
        }
    }

    fn required_string(&mut self, key: &str) -> Option<String> {
        let present = !matches!(self.map.get(key), None | Some(Value::Null));
        let value = self.string(key);
        if !present {
            self.problem(key, "is required");
        }
        value
    }

    /// Whole numbers in a range. Istio delivers `pluginConfig` as a protobuf Struct, whose
    /// numbers are doubles, so `600.0` must read as 600.
    fn integer(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(value) = self.map.get(key) else { return default };
        let n = match value {
            Value::Null => return default,
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64).map(|f| f as u64)
            }),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => n,
            _ => {
                self.problem(key, format!("must be a whole number from {min} to {max}"));
                default
            }
        }
    }

    fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.problem(key, "must be an object");
                None
            }
        }
    }

    /// An http(s) URL without a query, the base others are built on; a problem otherwise.
    fn base_url(&mut self, key: &str, text: &str) -> Option<Url> {
        match parse_http_url(text) {
            Ok(u) if u.query().is_some() => {
                self.problem(key, "must not have a query");
                None
            }
            Ok(u) => Some(u),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    fn absorb(&mut self, other: Reader<'_>) {
        self.problems.extend(other.problems);
    }
}

/// A protobuf Struct as the JSON object it stands for.
fn struct_to_json(s: prost_types::Struct) -> Map<String, Value> {
    s.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect()
}

fn value_to_json(v: prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(value_to_json).collect()),
    }
}

fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| match e {
        url::ParseError::IdnaError => "names a host that is not ASCII; write it in its punycode form (xn--...)".into(),
        e => format!("is not a URL ({e})"),
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err("must be an http or https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    Ok(url)
}

fn endpoint_of(url: &Url) -> Endpoint {
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

fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains(['?', '#', '\\'])
        && path.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_cookie_name(name: &str) -> bool {
    // RFC 6265 token characters, minus the ones that confuse real-world parsers.
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Decodes one session key: base64 (standard or URL-safe, padded or not) of 32 bytes.
fn decode_key(text: &str) -> Result<SessionKey, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or("is not base64")?;
    let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("must decode to 32 bytes, not {}", b.len()))?;
    Ok(SessionKey(key))
}

impl Config {
    /// Parses and validates a configuration document. `env` looks up the environment
    /// variables the host exposes (for `client_secret_env` and `session_keys_env`); the core
    /// never reads the environment itself.
    pub fn from_json(text: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let root: Value = serde_json::from_slice(text).map_err(|e| ConfigError {
            problems: vec![Problem { key: "(document)".into(), message: format!("is not valid JSON: {e}") }],
        })?;
        let Value::Object(map) = root else {
            return Err(ConfigError {
                problems: vec![Problem { key: "(document)".into(), message: "must be a JSON object".into() }],
            });
        };
        Self::from_map(&map, env)
    }

    /// Parses the configuration as a host hands it over: a JSON document (Envoy's
    /// `StringValue`, Istio's `pluginConfig`, a file), or the binary encoding of a
    /// `google.protobuf.Struct`, which is what Envoy passes when the configuration's type is
    /// `Struct`. Numbers in a Struct are doubles; whole ones read as integers.
    pub fn from_host_bytes(bytes: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            return Self::from_json(bytes, env);
        }
        let decoded = <prost_types::Struct as prost::Message>::decode(bytes).map_err(|e| ConfigError {
            problems: vec![Problem {
                key: "(document)".into(),
                message: format!("is neither a JSON object nor a protobuf Struct ({e})"),
            }],
        })?;
        Self::from_map(&struct_to_json(decoded), env)
    }

    fn from_map(map: &Map<String, Value>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader::new(map, "");
        r.unknown_keys(KNOWN_KEYS);

        let issuer = r.required_string("issuer");
        let issuer_url = issuer.as_deref().and_then(|s| r.base_url("issuer", s));
        let cluster = r.required_string("cluster");
        let client_id = r.required_string("client_id");

        let secret_env = r.string("client_secret_env");
        let client_secret = match (r.string("client_secret"), secret_env.clone()) {
            (Some(_), Some(_)) => {
                r.problem("client_secret", "give client_secret or client_secret_env, not both");
                None
            }
            (Some(s), None) => Some(SecretString::new(s)),
            (None, Some(var)) => match env(&var).filter(|v| !v.is_empty()) {
                Some(v) => Some(SecretString::new(v)),
                None => {
                    r.problem("client_secret_env", format!("environment variable {var} is not set or empty"));
                    None
                }
            },
            (None, None) => {
                if !r.problems.iter().any(|p| p.key.starts_with("client_secret")) {
                    r.problem("client_secret", "is required (or client_secret_env)");
                }
                None
            }
        };

        let redirect_uri = r.required_string("redirect_uri");
        let redirect_url = redirect_uri.as_deref().and_then(|s| match parse_http_url(s) {
            Ok(u) => Some(u),
            Err(e) => {
                r.problem("redirect_uri", e);
                None
            }
        });
        let callback_path = redirect_url.as_ref().map(|u| u.path().to_string());
        let secure_cookies = redirect_url.as_ref().is_some_and(|u| u.scheme() == "https");

        let session_keys = Self::session_keys(&mut r, env);

        // Endpoints: derived from the issuer the way ClaveÚnica lays them out.
        let base = issuer.as_deref().map(|s| s.trim_end_matches('/').to_string()).unwrap_or_default();
        let origin = issuer_url.as_ref().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        let endpoint = |r: &mut Reader<'_>, key: &str, derived: String| -> Option<Url> {
            let text = r.string(key).unwrap_or(derived);
            issuer_url.as_ref()?;
            match parse_http_url(&text) {
                Ok(u) => Some(u),
                Err(e) => {
                    r.problem(key, e);
                    None
                }
            }
        };
        let authorization = endpoint(&mut r, "authorization_endpoint", format!("{base}/authorize/"));
        let token = endpoint(&mut r, "token_endpoint", format!("{base}/token/"));
        let userinfo = endpoint(&mut r, "userinfo_endpoint", format!("{base}/userinfo/"));
        let jwks = endpoint(&mut r, "jwks_uri", format!("{base}/jwks"));
        let logout = endpoint(&mut r, "logout_endpoint", format!("{origin}/api/v1/accounts/app/logout"));

        let path = |r: &mut Reader<'_>, key: &str, default: &str| -> String {
            match r.string(key) {
                Some(p) if valid_path(&p) => p,
                Some(_) => {
                    r.problem(key, "must be a path starting with / without query, backslash or spaces");
                    default.to_string()
                }
                None => default.to_string(),
            }
        };
        let login_path = path(&mut r, "login_path", "/claveunica/login");
        let logout_path = path(&mut r, "logout_path", "/claveunica/logout");
        if let Some(cb) = &callback_path {
            if *cb == login_path || *cb == logout_path {
                r.problem("redirect_uri", "its path must differ from login_path and logout_path");
            }
        }
        if login_path == logout_path {
            r.problem("logout_path", "must differ from login_path");
        }

        let post_logout_redirect = r.string("post_logout_redirect").and_then(|s| match parse_http_url(&s) {
            Ok(_) => Some(s),
            Err(e) => {
                r.problem("post_logout_redirect", e);
                None
            }
        });

        let (session, flow) = Self::cookie_settings(&mut r, secure_cookies);
        let timeout_ms = r.integer("timeout_ms", 5_000, 100, 60_000);
        let clock_leeway_s = r.integer("clock_leeway_s", 60, 0, 300);
        let scope = r.string("scope").unwrap_or_else(|| CLAVEUNICA_SCOPE.to_string());
        if !scope.split(' ').any(|s| s == "openid") {
            r.problem("scope", "must include openid");
        }
        let rules = Self::rules(&mut r);
        let migration = Self::migration(&mut r);
        let allowed_runs = Self::allowed_runs(&mut r);
        let headers = Self::headers(&mut r);
        let logout_response_header = match r.string("logout_response_header") {
            Some(h) if valid_cookie_name(&h) => h.to_ascii_lowercase(),
            Some(_) => {
                r.problem("logout_response_header", "must be a header name (letters, digits, - _ .)");
                String::new()
            }
            None => "x-claveunica-logout".to_string(),
        };
        let jwks_refresh_s = r.integer("jwks_refresh_s", 3600, 60, 86_400);
        let upstream = r.string("upstream").and_then(|s| r.base_url("upstream", &s));

        if !r.problems.is_empty() {
            return Err(ConfigError { problems: r.problems });
        }
        match (
            issuer,
            cluster,
            client_id,
            client_secret,
            redirect_uri,
            callback_path,
            session_keys,
            (authorization, token, userinfo, jwks, logout),
        ) {
            (
                Some(issuer),
                Some(cluster),
                Some(client_id),
                Some(client_secret),
                Some(redirect_uri),
                Some(callback_path),
                Some(session_keys),
                (Some(authorization), Some(token), Some(userinfo), Some(jwks), Some(logout)),
            ) => Ok(Config {
                issuer,
                cluster,
                client_id,
                client_secret,
                client_secret_env: secret_env,
                redirect_uri,
                callback_path,
                secure_cookies,
                endpoints: Endpoints {
                    authorization: authorization.to_string(),
                    token: endpoint_of(&token),
                    userinfo: endpoint_of(&userinfo),
                    jwks: endpoint_of(&jwks),
                    logout: logout.to_string(),
                },
                session_keys,
                login_path,
                logout_path,
                post_logout_redirect,
                session,
                flow,
                timeout_ms,
                clock_leeway_s,
                scope,
                rules,
                migration,
                allowed_runs,
                headers,
                logout_response_header,
                jwks_refresh_s,
                upstream,
            }),
            // Every None above recorded a problem; this arm is for the compiler.
            _ => {
                Err(ConfigError { problems: vec![Problem { key: "(document)".into(), message: "incomplete".into() }] })
            }
        }
    }

    fn session_keys(r: &mut Reader<'_>, env: &dyn Fn(&str) -> Option<String>) -> Option<Vec<SessionKey>> {
        let (key_name, texts): (&str, Vec<String>) = match (r.map.get("session_keys"), r.string("session_keys_env")) {
            (Some(_), Some(_)) => {
                r.problem("session_keys", "give session_keys or session_keys_env, not both");
                return None;
            }
            (Some(Value::Array(items)), None) => {
                let mut texts = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => texts.push(s.clone()),
                        _ => r.problem(&format!("session_keys[{i}]"), "must be a base64 string"),
                    }
                }
                ("session_keys", texts)
            }
            (Some(_), None) => {
                r.problem("session_keys", "must be a list of base64 keys, newest first");
                return None;
            }
            (None, Some(var)) => match env(&var) {
                Some(v) => ("session_keys_env", v.split(',').map(str::to_string).collect()),
                None => {
                    r.problem("session_keys_env", format!("environment variable {var} is not set"));
                    return None;
                }
            },
            (None, None) => {
                if !r.problems.iter().any(|p| p.key == "session_keys_env") {
                    r.problem("session_keys", "is required (or session_keys_env)");
                }
                return None;
            }
        };
        if texts.is_empty() {
            r.problem(key_name, "must hold at least one key");
            return None;
        }
        let mut keys: Vec<SessionKey> = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            match decode_key(t) {
                Ok(k) if keys.contains(&k) => r.problem(&format!("{key_name}[{i}]"), "repeats an earlier key"),
                Ok(k) if k.0.iter().all(|b| *b == k.0[0]) => {
                    r.problem(&format!("{key_name}[{i}]"), "is not random (all bytes equal)");
                }
                Ok(k) => keys.push(k),
                Err(e) => r.problem(&format!("{key_name}[{i}]"), e),
            }
        }
        (keys.len() == texts.len()).then_some(keys)
    }

    fn rules(r: &mut Reader<'_>) -> Vec<Rule> {
        let items = match r.map.get("rules") {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                r.problem("rules", "must be a list of rules");
                return Vec::new();
            }
        };
        let mut rules = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key = format!("rules[{i}]");
            let Value::Object(m) = item else {
                r.problem(&key, "must be an object");
                continue;
            };
            let known = ["prefix", "exact", "regex", "methods", "action"];
            for k in m.keys().filter(|k| !known.contains(&k.as_str())) {
                r.problem(&format!("{key}.{k}"), "unknown key");
            }
            let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
            let given: Vec<&str> = ["prefix", "exact", "regex"].into_iter().filter(|k| m.contains_key(*k)).collect();
            let path = match (given.as_slice(), text("prefix"), text("exact"), text("regex")) {
                (["prefix"], Some(p), _, _) if p.starts_with('/') => Some(PathMatch::Prefix(p)),
                (["exact"], _, Some(p), _) if p.starts_with('/') => Some(PathMatch::Exact(p)),
                (["regex"], _, _, Some(p)) => match policy::compile_regex(&p) {
                    Ok(re) => Some(PathMatch::Regex(re)),
                    Err(e) => {
                        r.problem(&format!("{key}.regex"), e);
                        None
                    }
                },
                ([], ..) => {
                    r.problem(&key, "needs one of prefix, exact or regex");
                    None
                }
                ([_], ..) => {
                    r.problem(&key, "prefix and exact must be strings starting with /; regex a string");
                    None
                }
                _ => {
                    r.problem(&key, "give only one of prefix, exact or regex");
                    None
                }
            };
            let methods = match m.get("methods") {
                None | Some(Value::Null) => Some(None),
                Some(Value::Array(ms)) if !ms.is_empty() => ms
                    .iter()
                    .map(|v| v.as_str().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic())))
                    .map(|o| o.map(str::to_ascii_uppercase))
                    .collect::<Option<Vec<_>>>()
                    .map(Some),
                Some(_) => None,
            };
            if methods.is_none() {
                r.problem(&format!("{key}.methods"), "must be a non-empty list of method names");
            }
            let action = match m.get("action").and_then(Value::as_str) {
                Some("enforce") => Some(RuleAction::Enforce),
                Some("optional") => Some(RuleAction::Optional),
                Some("public") => Some(RuleAction::Public),
                _ => {
                    r.problem(&format!("{key}.action"), "must be enforce, optional or public");
                    None
                }
            };
            if let (Some(path), Some(methods), Some(action)) = (path, methods, action) {
                rules.push(Rule { path, methods, action });
            }
        }
        rules
    }

    fn migration(r: &mut Reader<'_>) -> Migration {
        let mut migration = Migration::default();
        let Some(m) = r.object("migration") else { return migration };
        let mut s = Reader::new(m, "migration.");
        s.unknown_keys(&["mode", "legacy_cookies", "canary_percent"]);
        migration.mode = match s.string("mode").as_deref() {
            None | Some("enforce") => MigrationMode::Enforce,
            Some("parallel") => MigrationMode::Parallel,
            Some("canary") => MigrationMode::Canary,
            Some("report_only") => MigrationMode::ReportOnly,
            Some(_) => {
                s.problem("mode", "must be enforce, parallel, canary or report_only");
                MigrationMode::Enforce
            }
        };
        match m.get("legacy_cookies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().filter(|n| valid_cookie_name(n) || n.starts_with("__")) {
                        Some(n) => migration.legacy_cookies.push(n.to_string()),
                        None => s.problem(&format!("legacy_cookies[{i}]"), "must be a cookie name"),
                    }
                }
            }
            Some(_) => s.problem("legacy_cookies", "must be a list of cookie names"),
        }
        if matches!(migration.mode, MigrationMode::Parallel | MigrationMode::Canary)
            && migration.legacy_cookies.is_empty()
        {
            s.problem("legacy_cookies", "must name the old login's session cookies in parallel and canary modes");
        }
        let percent = s.integer("canary_percent", 0, 0, 100);
        migration.canary_percent = u8::try_from(percent).unwrap_or(100);
        if migration.mode == MigrationMode::Canary && !m.contains_key("canary_percent") {
            s.problem("canary_percent", "is required in canary mode (0 to 100)");
        }
        r.absorb(s);
        migration
    }

    fn allowed_runs(r: &mut Reader<'_>) -> Option<Vec<Run>> {
        match r.map.get("allowed_runs") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let mut runs = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(Run::parse) {
                        Some(Ok(run)) => runs.push(run),
                        Some(Err(e)) => r.problem(&format!("allowed_runs[{i}]"), format!("is not a valid RUN ({e})")),
                        None => r.problem(&format!("allowed_runs[{i}]"), "must be a RUN such as 12345678-5"),
                    }
                }
                Some(runs)
            }
            Some(_) => {
                r.problem("allowed_runs", "must be a list of RUNs");
                None
            }
        }
    }

    fn headers(r: &mut Reader<'_>) -> IdentityHeaders {
        let Some(m) = r.object("headers") else { return IdentityHeaders::default() };
        if m.is_empty() {
            r.problem("headers", "must name at least one header");
        }
        let mut templates: Vec<HeaderTemplate> = Vec::new();
        for (name, value) in m {
            let key = format!("headers.{name}");
            match value.as_str().map(|t| HeaderTemplate::parse(name, t)) {
                Some(Ok(t)) if templates.iter().any(|o| o.name() == t.name()) => {
                    r.problem(&key, "repeats a header name")
                }
                Some(Ok(t)) => templates.push(t),
                Some(Err(e)) => r.problem(&key, e),
                None => r.problem(&key, "must be a template string such as \"{run}\""),
            }
        }
        IdentityHeaders::new(templates)
    }

    fn cookie_settings(r: &mut Reader<'_>, secure: bool) -> (SessionSettings, FlowSettings) {
        let prefix = if secure { "__Host-" } else { "" };
        let mut session = SessionSettings {
            cookie_name: format!("{prefix}claveunica_session"),
            max_age_s: 8 * 3600,
            idle_timeout_s: None,
        };
        if let Some(m) = r.object("session") {
            let mut s = Reader::new(m, "session.");
            s.unknown_keys(&["cookie_name", "max_age_s", "idle_timeout_s"]);
            if let Some(name) = s.string("cookie_name") {
                if valid_cookie_name(&name) && !name.starts_with("__") {
                    session.cookie_name = format!("{prefix}{name}");
                } else {
                    s.problem("cookie_name", "must be letters, digits, - _ . (the __Host- prefix is added by itself)");
                }
            }
            session.max_age_s = s.integer("max_age_s", session.max_age_s, 60, 30 * 24 * 3600);
            if s.map.get("idle_timeout_s").is_some_and(|v| !v.is_null()) {
                // The cookie is resealed at most once a minute, so shorter limits cannot hold.
                let idle = s.integer("idle_timeout_s", 0, 120, 30 * 24 * 3600);
                if idle > 0 && idle >= session.max_age_s {
                    s.problem("idle_timeout_s", "must be shorter than max_age_s");
                }
                session.idle_timeout_s = (idle > 0).then_some(idle);
            }
            r.absorb(s);
        }
        let mut flow = FlowSettings { cookie_prefix: format!("{prefix}claveunica_flow_"), max_age_s: 600 };
        if let Some(m) = r.object("flow") {
            let mut s = Reader::new(m, "flow.");
            s.unknown_keys(&["max_age_s"]);
            flow.max_age_s = s.integer("max_age_s", flow.max_age_s, 60, 3600);
            r.absorb(s);
        }
        (session, flow)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    const KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

    fn base() -> Value {
        json!({
            "issuer": "https://accounts.claveunica.gob.cl/openid",
            "cluster": "claveunica",
            "client_id": "abc",
            "client_secret": "s3cret",
            "redirect_uri": "https://portal.example.gob.cl/claveunica/callback",
            "session_keys": [KEY],
        })
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(v: &Value) -> Result<Config, ConfigError> {
        Config::from_json(v.to_string().as_bytes(), &no_env)
    }

    fn without(key: &str) -> Value {
        let mut v = base();
        v.as_object_mut().unwrap().remove(key);
        v
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = base();
        v.as_object_mut().unwrap().insert(key.into(), value);
        v
    }

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
    fn each_required_key_missing_is_named() {
        for key in ["issuer", "cluster", "client_id", "client_secret", "redirect_uri", "session_keys"] {
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
    fn bad_values() {
        let cases = [
            ("issuer", json!("not a url"), "issuer"),
            ("issuer", json!("ftp://x/openid"), "issuer"),
            // Internationalized host names are refused (IDNA is built without its Unicode tables,
            // Cargo.lock pins idna_adapter 1.0); ClaveÚnica's and agencies' hosts are ASCII, and
            // the punycode form still works.
            ("issuer", json!("https://clavéunica.gob.cl/openid"), "issuer"),
            ("redirect_uri", json!("https://trámites.example.cl/claveunica/callback"), "redirect_uri"),
            ("issuer", json!(42), "issuer"),
            ("redirect_uri", json!("https://x/cb#frag"), "redirect_uri"),
            ("redirect_uri", json!("https://x/claveunica/login"), "redirect_uri"),
            ("session_keys", json!([]), "session_keys"),
            ("session_keys", json!("one"), "session_keys"),
            ("session_keys", json!(["c2hvcnQ="]), "session_keys[0]"),
            ("session_keys", json!(["%%%"]), "session_keys[0]"),
            ("session_keys", json!([KEY, KEY]), "session_keys[1]"),
            ("session_keys", json!(["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]), "session_keys[0]"),
            ("login_path", json!("claveunica/login"), "login_path"),
            ("logout_path", json!("//evil"), "logout_path"),
            ("post_logout_redirect", json!("javascript:alert(1)"), "post_logout_redirect"),
            ("clock_leeway_s", json!(-1), "clock_leeway_s"),
            ("clock_leeway_s", json!(1.5), "clock_leeway_s"),
            ("timeout_ms", json!("5000"), "timeout_ms"),
            ("session", json!({"max_age_s": 10}), "session.max_age_s"),
            ("session", json!({"cookie_name": "bad name"}), "session.cookie_name"),
            ("session", json!({"colour": 1}), "session.colour"),
            ("scope", json!("run name"), "scope"),
            ("client_secret_env", json!("X"), "client_secret"),
        ];
        for (key, value, named) in cases {
            let err = load(&with(key, value.clone())).unwrap_err();
            assert!(err.names(named), "{key}={value}: {err}");
        }
        assert!(Config::from_json(b"{", &no_env).unwrap_err().names("(document)"));
        assert!(Config::from_json(b"[]", &no_env).unwrap_err().names("(document)"));
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
    fn rollout_settings() {
        let mut v = base();
        v["rules"] = json!([{"prefix": "/static/", "action": "public"}, {"regex": "/a/[0-9]+", "methods": ["get"], "action": "optional"}]);
        v["migration"] = json!({"mode": "canary", "legacy_cookies": ["PHPSESSID"], "canary_percent": 25});
        v["allowed_runs"] = json!(["44.444.444-4", "55555555-5"]);
        v["headers"] = json!({"X-Rut": "{run_dotted}"});
        v["session"] = json!({"max_age_s": 3600, "idle_timeout_s": 900});
        v["logout_response_header"] = json!("X-App-Logout");
        v["upstream"] = json!("http://127.0.0.1:8080/portal");
        let c = load(&v).unwrap();
        assert_eq!(c.upstream.as_ref().map(Url::as_str), Some("http://127.0.0.1:8080/portal"));
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[1].methods, Some(vec!["GET".to_string()]));
        assert_eq!(c.migration.mode, MigrationMode::Canary);
        assert_eq!(c.migration.canary_percent, 25);
        assert_eq!(c.allowed_runs.as_ref().map(Vec::len), Some(2));
        assert!(c.headers.is_identity_name("x-rut"));
        assert_eq!(c.session.idle_timeout_s, Some(900));
        assert_eq!(c.logout_response_header, "x-app-logout");
        let d = load(&base()).unwrap();
        assert!(d.rules.is_empty() && d.migration.mode == MigrationMode::Enforce && d.allowed_runs.is_none());
        assert!(d.headers.is_identity_name("x-claveunica-run"));
    }

    #[test]
    fn bad_rollout_settings_are_named() {
        let cases = [
            ("rules", json!({"prefix": "/"}), "rules"),
            ("rules", json!([{"action": "public"}]), "rules[0]"),
            ("rules", json!([{"prefix": "/", "exact": "/", "action": "public"}]), "rules[0]"),
            ("rules", json!([{"prefix": "static", "action": "public"}]), "rules[0]"),
            ("rules", json!([{"regex": "(", "action": "public"}]), "rules[0].regex"),
            ("rules", json!([{"prefix": "/", "action": "allow"}]), "rules[0].action"),
            ("rules", json!([{"prefix": "/", "methods": [], "action": "public"}]), "rules[0].methods"),
            ("rules", json!([{"prefix": "/", "action": "public", "path": "/"}]), "rules[0].path"),
            ("migration", json!({"mode": "gradual"}), "migration.mode"),
            ("migration", json!({"mode": "parallel"}), "migration.legacy_cookies"),
            ("migration", json!({"mode": "canary", "legacy_cookies": ["a"]}), "migration.canary_percent"),
            (
                "migration",
                json!({"mode": "canary", "legacy_cookies": ["a"], "canary_percent": 101}),
                "migration.canary_percent",
            ),
            ("migration", json!({"mode": "parallel", "legacy_cookies": ["bad name"]}), "migration.legacy_cookies[0]"),
            ("allowed_runs", json!(["44444444-5"]), "allowed_runs[0]"),
            ("allowed_runs", json!("44444444-4"), "allowed_runs"),
            ("headers", json!({}), "headers"),
            ("headers", json!({"x-rut": "{rut}"}), "headers.x-rut"),
            ("headers", json!({"cookie": "{run}"}), "headers.cookie"),
            ("headers", json!({"x-rut": 5}), "headers.x-rut"),
            ("session", json!({"max_age_s": 600, "idle_timeout_s": 600}), "session.idle_timeout_s"),
            ("session", json!({"idle_timeout_s": 30}), "session.idle_timeout_s"),
            ("logout_response_header", json!("bad header"), "logout_response_header"),
            ("jwks_refresh_s", json!(1), "jwks_refresh_s"),
            ("upstream", json!("ftp://app"), "upstream"),
            ("upstream", json!("http://app/?x=1"), "upstream"),
        ];
        for (key, value, named) in cases {
            let err = load(&with(key, value.clone())).unwrap_err();
            assert!(err.names(named), "{key}={value}: {err}");
        }
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
}
