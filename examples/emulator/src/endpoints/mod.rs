//! The emulated ClaveÚnica endpoints, as plain functions from [`Req`] to [`Reply`]. Here: the
//! paths, the state the endpoints share ([`App`]), the routing (which also applies the test
//! modes' faults) and the helpers more than one endpoint uses. The endpoints themselves, the
//! `/__emulator/` test aids and the HTML frame of the pages are in the modules below.
//!
//! Paths, trailing slashes, error codes and quirks follow the real service (see
//! `docs/claveunica.md`); where the emulator is stricter than needed it is so
//! that relying-party bugs show up here rather than at certification.

mod aids;
mod authorize;
mod keys;
mod logout;
mod pages;
mod token;
mod userinfo;

use std::sync::{Mutex, PoisonError, RwLock};

use serde_json::json;

use crate::http::{Reply, Req, Transport};
use crate::modes::{FaultEndpoint, FaultKind, Modes};
use crate::state::State;
use crate::tokens::Keys;

use aids::{rotate_key, set_modes, Stats};
use authorize::{authorize_form, authorize_submit};
use keys::{discovery, KeySet};
use logout::logout;
use pages::maintenance_page;
use token::token;
use userinfo::userinfo;

pub const AUTHORIZE_PATH: &str = "/openid/authorize/";
pub const TOKEN_PATH: &str = "/openid/token/";
pub const USERINFO_PATH: &str = "/openid/userinfo/";
pub const JWKS_PATH: &str = "/openid/jwks";
pub const DISCOVERY_PATH: &str = "/openid/.well-known/openid-configuration";
pub const LOGOUT_PATH: &str = "/api/v1/accounts/app/logout";
/// Test aid, not part of ClaveÚnica: how many requests each endpoint has received.
pub const STATS_PATH: &str = "/__emulator/stats";
/// Test aid: switches the test modes (see [`crate::modes`]).
pub const MODE_PATH: &str = "/__emulator/mode";
/// Test aid: a new signing key with a new kid.
pub const ROTATE_KEY_PATH: &str = "/__emulator/rotate-key";
/// Test aid: the last codes, access tokens and ID tokens issued.
pub const ISSUED_PATH: &str = "/__emulator/issued";

#[derive(Debug, Clone)]
pub struct Config {
    /// `iss` of ID tokens, exactly as relying parties must compare it.
    pub issuer: String,
    /// `scheme://host[:port]` of the issuer; endpoint URLs hang off it.
    pub origin: String,
    /// The relying parties' credentials, each checked on its own: one agency may run several
    /// portals, each registered as its own client with its own redirect URI.
    pub clients: Vec<Client>,
    pub numero_as_string: bool,
}

impl Config {
    /// The registered client with this `client_id`.
    pub fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }
}

/// One relying party's credentials, as ClaveÚnica registers them.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
    /// When set, the only redirect URI accepted for this client (exact string comparison).
    pub redirect_uri: Option<String>,
    /// The registered Logout URIs, each a URL or a bare authority (`host[:port]`), or several
    /// separated by commas: ClaveÚnica registers only a Logout URI's authority, and the logout
    /// endpoint redirects only to those authorities. None registered by any client: (a
    /// development convenience, unless a redirect URI is registered) any is accepted; see
    /// `logout.rs`.
    pub logout_uris: Vec<String>,
}

pub struct App {
    pub config: Config,
    keys: RwLock<KeySet>,
    pub state: Mutex<State>,
    pub stats: Stats,
    modes: Mutex<Modes>,
}

impl App {
    pub fn new(config: Config, keys: Keys) -> App {
        App {
            config,
            keys: RwLock::new(KeySet { current: keys, older: Vec::new() }),
            state: Mutex::new(State::new()),
            stats: Stats::default(),
            modes: Mutex::new(Modes::default()),
        }
    }

    /// The keys now in force (a copy: signing must not hold the lock).
    pub fn keys(&self) -> KeySet {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn modes(&self) -> Modes {
        *self.modes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state holds no invariant a panicking holder could break halfway, so a
    /// poisoned lock is still safe to use.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dispatches one request. `now` is Unix seconds.
pub fn route(app: &App, req: &Req, now: u64) -> Reply {
    app.stats.count(&req.path);
    let faulted = match req.path.as_str() {
        TOKEN_PATH => Some(FaultEndpoint::Token),
        USERINFO_PATH => Some(FaultEndpoint::Userinfo),
        JWKS_PATH => Some(FaultEndpoint::Jwks),
        _ => None,
    };
    let modes = app.modes();
    let fault = faulted.map_or(FaultKind::None, |endpoint| modes.fault_for(endpoint));
    match fault {
        FaultKind::Status500 => return Reply::text(500, "Internal Server Error\n"),
        FaultKind::Html => return Reply::html(200, maintenance_page()),
        FaultKind::Close => return Reply { transport: Transport::Close, ..Reply::empty(500) },
        FaultKind::None | FaultKind::Slow | FaultKind::TruncateJson | FaultKind::TruncateBody => {}
    }
    let mut reply = dispatch(app, req, now, &modes);
    match fault {
        FaultKind::Slow => reply.delay_ms = modes.slow_ms,
        FaultKind::TruncateJson => reply.body.truncate(reply.body.len() / 2),
        FaultKind::TruncateBody => reply.transport = Transport::TruncateBody,
        _ => {}
    }
    reply
}

fn dispatch(app: &App, req: &Req, now: u64, modes: &Modes) -> Reply {
    let get = req.method == "GET";
    let post = req.method == "POST";
    match req.path.as_str() {
        AUTHORIZE_PATH if get => authorize_form(app, req, now, modes),
        AUTHORIZE_PATH if post => authorize_submit(app, req, now, modes),
        TOKEN_PATH if post => token(app, req, now, modes),
        USERINFO_PATH if get || post => userinfo(app, req, now, modes.userinfo),
        JWKS_PATH if get => Reply::json(200, &app.keys().jwks()),
        DISCOVERY_PATH if get => Reply::json(200, &discovery(&app.config)),
        LOGOUT_PATH if get => logout(app, req, modes.logout),
        STATS_PATH if get => Reply::json(200, &app.stats.json()).no_store(),
        MODE_PATH if get => Reply::json(200, &modes.json()).no_store(),
        MODE_PATH if post => set_modes(app, req),
        ROTATE_KEY_PATH if post => rotate_key(app, req),
        ISSUED_PATH if get => Reply::json(200, &app.state().issued_json()).no_store(),
        AUTHORIZE_PATH | TOKEN_PATH | USERINFO_PATH | JWKS_PATH | DISCOVERY_PATH | LOGOUT_PATH => {
            Reply::text(405, "Method Not Allowed\n")
        }
        _ => Reply::text(404, "Not Found\n"),
    }
}

/// An absolute http(s) URL without fragment, in printable ASCII, so it can go
/// verbatim into a `Location` header.
pub fn is_plain_http_url(uri: &str) -> bool {
    if !uri.bytes().all(|b| b.is_ascii_graphic()) || uri.contains('#') {
        return false;
    }
    matches!(url::Url::parse(uri), Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// The cookie that carries the provider's own session (single sign-on) in the browser.
pub const SSO_COOKIE: &str = "claveunica_emulator_sso";
/// The paths the SSO cookie is sent to: the authorization and logout endpoints'. Narrower than
/// `/` so that a relying party on the same host (another port: cookies ignore ports) never
/// receives it, as it would not from the real service's own host.
const SSO_COOKIE_PATHS: [&str; 2] = ["/openid/authorize/", LOGOUT_PATH];

/// The value of the provider-session cookie the request carries, if any.
fn sso_cookie(req: &Req) -> Option<&str> {
    req.headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SSO_COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` lines that store (`Some(id)` for `max_age` seconds) or delete (`None`) the
/// provider-session cookie, one per path it is sent to.
fn set_sso_cookie(reply: &mut Reply, id: Option<&str>, max_age: u64) {
    for path in SSO_COOKIE_PATHS {
        let line = match id {
            Some(id) => format!("{SSO_COOKIE}={id}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax"),
            None => format!("{SSO_COOKIE}=; Path={path}; Max-Age=0; HttpOnly; SameSite=Lax"),
        };
        reply.headers.push(("Set-Cookie", line));
    }
}

/// The authority (`host[:port]`, host lower-cased, a default port left out) of a Logout URI as
/// registered (a URL or a bare authority) or of a logout target: what ClaveÚnica compares.
pub fn logout_authority(uri: &str) -> Option<String> {
    let text = uri.trim();
    let url = if text.contains("://") { url::Url::parse(text) } else { url::Url::parse(&format!("https://{text}/")) };
    let url = url.ok()?;
    let host = url.host_str().filter(|h| !h.is_empty())?.to_ascii_lowercase();
    Some(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// An OAuth error answer of the token and userinfo endpoints.
fn oauth_error(status: u16, error: &str) -> Reply {
    Reply::json(status, &json!({ "error": error })).no_store()
}

#[cfg(test)]
pub mod tests {
    //! Requests and whole logins for the endpoint modules' tests (and the server's).

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use serde_json::json;

    use super::authorize::REQUIRED_SCOPE;
    use super::*;
    use crate::http::Params;
    use crate::tokens::tests::test_keys;

    pub const NOW: u64 = 1_700_000_000;
    pub const CB: &str = "https://app.example.gob.cl/callback/";

    pub fn app(redirect_uri: Option<&str>) -> App {
        let config = Config {
            issuer: "http://127.0.0.1:8900/openid".into(),
            origin: "http://127.0.0.1:8900".into(),
            clients: vec![Client {
                id: "demo-client".into(),
                secret: "demo-secret".into(),
                redirect_uri: redirect_uri.map(str::to_string),
                logout_uris: Vec::new(),
            }],
            numero_as_string: false,
        };
        App::new(config, test_keys().clone())
    }

    pub fn get(path: &str, query: &str) -> Req {
        Req { method: "GET".into(), path: path.into(), query: query.into(), ..Default::default() }
    }

    pub fn post_form(path: &str, body: &str) -> Req {
        Req {
            method: "POST".into(),
            path: path.into(),
            headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    pub fn enc(pairs: &[(&str, &str)]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }

    pub fn location_params(reply: &Reply) -> Params {
        let loc = reply.header("Location").unwrap_or_default();
        Params::parse(loc.split_once('?').map(|(_, q)| q).unwrap_or("").as_bytes())
    }

    pub fn login(app: &App, nonce: Option<&str>, now: u64) -> String {
        let mut pairs = vec![
            ("client_id", "demo-client"),
            ("redirect_uri", CB),
            ("state", "s-1"),
            ("scope", REQUIRED_SCOPE),
            ("run", "44.444.444-4"),
            ("password", "testing"),
        ];
        if let Some(n) = nonce {
            pairs.push(("nonce", n));
        }
        let reply = route(app, &post_form(AUTHORIZE_PATH, &enc(&pairs)), now);
        assert_eq!(reply.status, 302);
        let p = location_params(&reply);
        assert_eq!(p.get("state"), Some("s-1"));
        p.text("code").to_string()
    }

    pub fn exchange(app: &App, code: &str, redirect_uri: &str, now: u64) -> Reply {
        let body = enc(&[
            ("client_id", "demo-client"),
            ("client_secret", "demo-secret"),
            ("redirect_uri", redirect_uri),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("state", "s-1"),
        ]);
        route(app, &post_form(TOKEN_PATH, &body), now)
    }

    pub fn error_of(reply: &Reply) -> String {
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        v["error"].as_str().unwrap_or_default().to_string()
    }

    pub fn post_json(path: &str, body: &str) -> Req {
        Req { method: "POST".into(), path: path.into(), body: body.as_bytes().to_vec(), ..Default::default() }
    }

    pub fn set(app: &App, body: &str) {
        let reply = route(app, &post_json(MODE_PATH, body), NOW);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    }

    /// The ID token of a whole login in the current mode, taken apart.
    pub fn id_token_parts(app: &App) -> (serde_json::Value, serde_json::Value, String) {
        let code = login(app, Some("nonce-1"), NOW);
        let reply = exchange(app, &code, CB, NOW);
        assert_eq!(reply.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let token = v["id_token"].as_str().unwrap().to_string();
        let mut parts = token.split('.');
        let mut json_part = || -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap()
        };
        let (header, claims) = (json_part(), json_part());
        (header, claims, parts.next().unwrap().to_string())
    }

    #[test]
    fn paths_are_matched_exactly() {
        let app = app(None);
        assert_eq!(route(&app, &get("/openid/token", ""), NOW).status, 404);
    }

    #[test]
    fn faults_hit_the_chosen_endpoint() {
        let app = app(None);
        set(&app, r#"{"fault": {"endpoint": "jwks", "kind": "status_500"}, "slow_ms": 1234}"#);
        assert_eq!(route(&app, &get(JWKS_PATH, ""), NOW).status, 500);
        let code = login(&app, None, NOW);
        assert_eq!(exchange(&app, &code, CB, NOW).status, 200, "the token endpoint is not faulted");

        set(&app, r#"{"fault": {"kind": "html"}}"#);
        let reply = route(&app, &get(JWKS_PATH, ""), NOW);
        assert_eq!(reply.status, 200);
        assert!(reply.header("Content-Type").is_some_and(|c| c.starts_with("text/html")));

        set(&app, r#"{"fault": {"kind": "truncate_json"}}"#);
        let reply = route(&app, &get(JWKS_PATH, ""), NOW);
        assert!(serde_json::from_slice::<serde_json::Value>(&reply.body).is_err());
        assert!(!reply.body.is_empty());

        set(&app, r#"{"fault": {"kind": "truncate_body"}}"#);
        assert_eq!(route(&app, &get(JWKS_PATH, ""), NOW).transport, Transport::TruncateBody);
        set(&app, r#"{"fault": {"kind": "close"}}"#);
        assert_eq!(route(&app, &get(JWKS_PATH, ""), NOW).transport, Transport::Close);
        set(&app, r#"{"fault": {"kind": "slow"}}"#);
        let reply = route(&app, &get(JWKS_PATH, ""), NOW);
        assert_eq!((reply.status, reply.delay_ms), (200, 1234));

        set(&app, r#"{"fault": {"endpoint": "all", "kind": "status_500"}}"#);
        let code = login(&app, None, NOW);
        assert_eq!(exchange(&app, &code, CB, NOW).status, 500);
        assert_eq!(route(&app, &get(DISCOVERY_PATH, ""), NOW).status, 200, "only the back channel fails");
        set(&app, r#"{"fault": {"kind": "none"}}"#);
        assert_eq!(route(&app, &get(JWKS_PATH, ""), NOW).status, 200);

        let reply = route(&app, &post_json(MODE_PATH, r#"{"fault": {"kind": "melt"}}"#), NOW);
        assert_eq!(reply.status, 400);
        let shown: serde_json::Value = serde_json::from_slice(&route(&app, &get(MODE_PATH, ""), NOW).body).unwrap();
        assert_eq!(shown["fault"], json!({"endpoint": "all", "kind": "none"}));
    }
}
