//! The emulated ClaveÚnica endpoints, as plain functions from [`Req`] to [`Reply`].
//!
//! Paths, trailing slashes, error codes and quirks follow the real service (see
//! `docs/claveunica.md`); where the emulator is stricter than needed it is so
//! that relying-party bugs show up here rather than at certification.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use serde_json::json;

use crate::http::{append_query, escape_html, Params, Reply, Req, Transport};
use crate::modes::{FaultEndpoint, FaultKind, Modes, UserinfoMode};
use crate::state::{CodeGrant, State, CODE_TTL_SECS};
use crate::tokens::{random_hex, Keys};
use crate::users::{self, User, SANDBOX_PASSWORD, USERS};

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

/// The one scope string the real service (and its certification) accepts.
pub const REQUIRED_SCOPE: &str = "openid run name";

#[derive(Debug, Clone)]
pub struct Config {
    /// `iss` of ID tokens, exactly as relying parties must compare it.
    pub issuer: String,
    /// `scheme://host[:port]` of the issuer; endpoint URLs hang off it.
    pub origin: String,
    pub client_id: String,
    pub client_secret: String,
    /// When set, the only redirect URI accepted (exact string comparison).
    pub redirect_uri: Option<String>,
    pub numero_as_string: bool,
}

pub struct App {
    pub config: Config,
    keys: RwLock<KeySet>,
    pub state: Mutex<State>,
    pub stats: Stats,
    modes: Mutex<Modes>,
}

/// The key that signs, and the older keys the JWKS still publishes.
#[derive(Clone)]
pub struct KeySet {
    pub current: Keys,
    pub older: Vec<Keys>,
}

impl KeySet {
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = std::iter::once(&self.current).chain(&self.older).map(Keys::jwk).collect();
        json!({ "keys": keys })
    }
}

/// Requests received per endpoint, any method, any outcome; served at [`STATS_PATH`] so
/// tests can tell how often a relying party called (e.g. that N proxy workers fetched the
/// JWKS once, not N times).
#[derive(Debug, Default)]
pub struct Stats {
    jwks: AtomicU64,
    token: AtomicU64,
    userinfo: AtomicU64,
    authorize: AtomicU64,
}

impl Stats {
    fn count(&self, path: &str) {
        let counter = match path {
            JWKS_PATH => &self.jwks,
            TOKEN_PATH => &self.token,
            USERINFO_PATH => &self.userinfo,
            AUTHORIZE_PATH => &self.authorize,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn json(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "jwks": n(&self.jwks),
            "token": n(&self.token),
            "userinfo": n(&self.userinfo),
            "authorize": n(&self.authorize),
        })
    }
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
        AUTHORIZE_PATH if get => authorize_form(app, req),
        AUTHORIZE_PATH if post => authorize_submit(app, req, now),
        TOKEN_PATH if post => token(app, req, now, modes),
        USERINFO_PATH if get || post => userinfo(app, req, now, modes.userinfo),
        JWKS_PATH if get => Reply::json(200, &app.keys().jwks()),
        DISCOVERY_PATH if get => Reply::json(200, &discovery(&app.config)),
        LOGOUT_PATH if get => logout(req),
        STATS_PATH if get => Reply::json(200, &app.stats.json()).no_store(),
        MODE_PATH if get => Reply::json(200, &modes.json()).no_store(),
        MODE_PATH if post => set_modes(app, req),
        ROTATE_KEY_PATH if post => rotate_key(app, req),
        AUTHORIZE_PATH | TOKEN_PATH | USERINFO_PATH | JWKS_PATH | DISCOVERY_PATH | LOGOUT_PATH => {
            Reply::text(405, "Method Not Allowed\n")
        }
        _ => Reply::text(404, "Not Found\n"),
    }
}

fn maintenance_page() -> String {
    page("ClaveÚnica — Mantención", "<h1>Servicio en mantención</h1>\n<p>Vuelva a intentar más tarde.</p>")
}

fn set_modes(app: &App, req: &Req) -> Reply {
    let mut modes = app.modes.lock().unwrap_or_else(PoisonError::into_inner);
    match modes.apply(&req.body) {
        Ok(()) => {
            eprintln!("modes: {}", modes.json());
            Reply::json(200, &modes.json()).no_store()
        }
        Err(e) => Reply::json(400, &json!({ "error": e })).no_store(),
    }
}

fn rotate_key(app: &App, req: &Req) -> Reply {
    let keep_old = if req.body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        match serde_json::from_slice::<serde_json::Value>(&req.body) {
            Ok(v) if v.is_object() => match v.get("keep_old") {
                None => false,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(_) => return Reply::json(400, &json!({"error": "keep_old: not a boolean"})),
            },
            _ => return Reply::json(400, &json!({"error": "not a JSON object"})),
        }
    };
    // Made before taking the lock: generating a key takes a while.
    let new = match Keys::generate() {
        Ok(k) => k,
        Err(e) => return Reply::json(500, &json!({ "error": e.to_string() })),
    };
    let kid = new.kid.clone();
    let mut keys = app.keys.write().unwrap_or_else(PoisonError::into_inner);
    let old = std::mem::replace(&mut keys.current, new);
    if keep_old {
        keys.older.insert(0, old);
    } else {
        keys.older.clear();
    }
    eprintln!("rotated the signing key: kid={kid} keep_old={keep_old}");
    Reply::json(200, &json!({ "kid": kid, "published": keys.jwks()["keys"].as_array().map_or(0, Vec::len) })).no_store()
}

pub fn discovery(config: &Config) -> serde_json::Value {
    let o = &config.origin;
    json!({
        "issuer": config.issuer,
        "authorization_endpoint": format!("{o}{AUTHORIZE_PATH}"),
        "token_endpoint": format!("{o}{TOKEN_PATH}"),
        "userinfo_endpoint": format!("{o}{USERINFO_PATH}"),
        "jwks_uri": format!("{o}{JWKS_PATH}"),
        "end_session_endpoint": format!("{o}{LOGOUT_PATH}"),
        "scopes_supported": ["openid", "run", "name"],
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "subject_types_supported": ["public"],
    })
}

/// The authorization request's parameters, once client and redirect URI are known
/// to be acceptable (so errors may be sent back to the redirect URI).
struct Authz {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    scope: String,
}

impl Authz {
    /// Redirect back to the relying party with extra parameters plus `state`.
    fn redirect(&self, params: &[(&str, &str)]) -> Reply {
        let mut all = params.to_vec();
        if let Some(state) = &self.state {
            all.push(("state", state));
        }
        Reply::redirect(append_query(&self.redirect_uri, &all))
    }
}

/// Checks client and redirect URI. Failures are shown as a page, never
/// redirected: an unverified redirect URI must not receive anything.
fn check_client(app: &App, p: &Params) -> Result<Authz, Reply> {
    if p.text("client_id") != app.config.client_id {
        return Err(error_page(400, "La institución no está habilitada en ClaveÚnica"));
    }
    let redirect_uri = p.text("redirect_uri");
    if !redirect_uri_allowed(&app.config, redirect_uri) {
        return Err(error_page(400, "La dirección de retorno (redirect_uri) no está registrada para esta institución"));
    }
    Ok(Authz {
        client_id: p.text("client_id").to_string(),
        redirect_uri: redirect_uri.to_string(),
        state: p.get("state").map(str::to_string),
        nonce: p.get("nonce").filter(|n| !n.is_empty()).map(str::to_string),
        scope: p.text("scope").to_string(),
    })
}

fn redirect_uri_allowed(config: &Config, uri: &str) -> bool {
    match &config.redirect_uri {
        Some(registered) => uri == registered,
        None => is_plain_http_url(uri),
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

fn authorize_form(app: &App, req: &Req) -> Reply {
    let p = req.query_params();
    let authz = match check_client(app, &p) {
        Ok(a) => a,
        Err(page) => return page,
    };
    if p.text("response_type") != "code" {
        return authz.redirect(&[("error", "unsupported_response_type")]);
    }
    if authz.scope != REQUIRED_SCOPE {
        return authz.redirect(&[("error", "invalid_scope")]);
    }
    Reply::html(200, login_page(&authz, "", None))
}

fn authorize_submit(app: &App, req: &Req, now: u64) -> Reply {
    let p = req.form_params();
    let authz = match check_client(app, &p) {
        Ok(a) => a,
        Err(page) => return page,
    };
    if p.has("cancel") {
        return authz.redirect(&[("error", "access_denied")]);
    }
    // The scope rides in a hidden field, so check it again.
    if authz.scope != REQUIRED_SCOPE {
        return authz.redirect(&[("error", "invalid_scope")]);
    }
    let run = p.text("run");
    let Some(user) = users::authenticate(run, p.text("password")) else {
        // Same message whether the RUN or the password was wrong, like the real one.
        return Reply::html(200, login_page(&authz, run, Some("RUN o clave incorrectos")));
    };
    let code = match random_hex(16) {
        Ok(c) => c,
        Err(_) => return Reply::text(500, "Internal Server Error\n"),
    };
    let grant = CodeGrant {
        client_id: authz.client_id.clone(),
        redirect_uri: authz.redirect_uri.clone(),
        nonce: authz.nonce.clone(),
        user,
        auth_time: now,
        expires_at: now + CODE_TTL_SECS,
    };
    app.state().insert_code(code.clone(), grant, now);
    authz.redirect(&[("code", &code)])
}

fn oauth_error(status: u16, error: &str) -> Reply {
    Reply::json(status, &json!({ "error": error })).no_store()
}

fn token(app: &App, req: &Req, now: u64, modes: &Modes) -> Reply {
    let form_type = req
        .header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    if !form_type {
        return oauth_error(400, "invalid_request");
    }
    let p = req.form_params();
    let client_id = p.text("client_id");
    if client_id != app.config.client_id || p.text("client_secret") != app.config.client_secret {
        return oauth_error(400, "invalid_client");
    }
    if p.text("grant_type") != "authorization_code" {
        return oauth_error(400, "unsupported_grant_type");
    }
    let Some(grant) = app.state().take_code(p.text("code"), now) else {
        return oauth_error(400, "invalid_grant");
    };
    if grant.client_id != client_id {
        return oauth_error(400, "invalid_grant");
    }
    // The real service answers a redirect_uri mismatch as a client error,
    // indistinguishable from a wrong secret.
    if p.text("redirect_uri") != grant.redirect_uri {
        return oauth_error(400, "invalid_client");
    }
    let Ok(access_token) = random_hex(16) else {
        return oauth_error(500, "server_error");
    };
    let keys = app.keys().current;
    let id_token = match keys.id_token_as(modes.id_token, &app.config.issuer, &grant, &access_token, now) {
        Ok(t) => t,
        Err(_) => return oauth_error(500, "server_error"),
    };
    app.state().insert_token(access_token.clone(), grant.user, now);
    Reply::json(
        200,
        &json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": crate::state::ACCESS_TOKEN_TTL_SECS,
            "id_token": id_token,
        }),
    )
    .no_store()
}

fn bearer_token(req: &Req) -> Option<&str> {
    let (scheme, token) = req.header("authorization")?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

fn userinfo(app: &App, req: &Req, now: u64, mode: UserinfoMode) -> Reply {
    let user = bearer_token(req).and_then(|t| app.state().token_user(t, now));
    match user {
        Some(user) => {
            Reply::new(200, "application/json; charset=utf-8", userinfo_body(user, app.config.numero_as_string, mode))
                .no_store()
        }
        None => {
            let mut reply = oauth_error(401, "invalid_token");
            reply.headers.push(("WWW-Authenticate", "Bearer error=\"invalid_token\"".to_string()));
            reply
        }
    }
}

pub fn userinfo_json(user: &User, numero_as_string: bool) -> serde_json::Value {
    let numero = if numero_as_string { json!(user.numero.to_string()) } else { json!(user.numero) };
    json!({
        "sub": user.sub,
        "RolUnico": { "DV": user.dv.to_string(), "numero": numero, "tipo": "RUN" },
        "name": { "apellidos": user.apellidos, "nombres": user.nombres },
    })
}

/// Userinfo's body in a test mode: genuine, or wrong in one precise way.
pub fn userinfo_body(user: &User, numero_as_string: bool, mode: UserinfoMode) -> Vec<u8> {
    let mut v = userinfo_json(user, numero_as_string);
    let rol = &mut v["RolUnico"];
    match mode {
        UserinfoMode::Normal => {}
        UserinfoMode::NumeroMissing => {
            if let Some(o) = rol.as_object_mut() {
                o.remove("numero");
            }
        }
        UserinfoMode::NumeroNull => rol["numero"] = serde_json::Value::Null,
        UserinfoMode::NumeroNegative => rol["numero"] = json!(-i64::from(user.numero)),
        UserinfoMode::NumeroText => rol["numero"] = json!("cuarenta y cuatro millones"),
        UserinfoMode::WrongDv => {
            let wrong = if user.dv == '0' { "1" } else { "0" };
            rol["DV"] = json!(wrong);
        }
        UserinfoMode::TipoDni => rol["tipo"] = json!("DNI"),
        UserinfoMode::Names100k => v["name"]["nombres"] = json!(["Ñ".repeat(50 * 1024)]),
        UserinfoMode::InvalidUtf8 => {
            // Valid JSON structure, with bytes that are not UTF-8 inside a name.
            const MARKER: &str = "INVALID_UTF8";
            v["name"]["nombres"] = json!([MARKER]);
            let text = v.to_string();
            let (before, after) = text.split_once(MARKER).unwrap_or((&text, ""));
            let mut body = before.as_bytes().to_vec();
            body.extend_from_slice(b"Mar\xff\xfea");
            body.extend_from_slice(after.as_bytes());
            return body;
        }
    }
    v.to_string().into_bytes()
}

/// The emulator keeps no SSO session, so logging out only has to send the
/// browser on. Without `redirect` the real service answers 204 with no body.
fn logout(req: &Req) -> Reply {
    let p = req.query_params();
    match p.get("redirect") {
        Some(target) if is_plain_http_url(target) => Reply::redirect(target.to_string()),
        Some(_) => error_page(400, "La dirección de retorno no es válida"),
        None => Reply::empty(204),
    }
}

const STYLE: &str = "body{font-family:Roboto,Arial,sans-serif;background:#eef1f5;margin:0;color:#222}\
header{background:#0f69b4;color:#fff;padding:14px 24px;font-size:20px}\
header b{color:#fff}header span{font-size:13px;margin-left:12px;opacity:.85}\
main{max-width:420px;margin:40px auto;background:#fff;padding:28px 32px;border-radius:6px;box-shadow:0 1px 4px rgba(0,0,0,.15)}\
label{display:block;margin-top:14px;font-weight:bold}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:9px;margin-top:4px;border:1px solid #aaa;border-radius:4px;font-size:16px}\
.buttons{margin-top:22px;display:flex;gap:10px}\
button{padding:10px 18px;border:0;border-radius:4px;font-size:15px;cursor:pointer}\
.primary{background:#0f69b4;color:#fff}.secondary{background:#ddd}\
.error{background:#fde8e8;color:#a40000;padding:10px;border-radius:4px}\
.help{margin-top:26px;font-size:13px;color:#555;border-top:1px solid #ddd;padding-top:12px}\
code{background:#f3f3f3;padding:1px 4px}";

fn page(title: &str, content: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"es\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
<header><b>Clave</b>Única<span>Emulador para desarrollo — no es el servicio real</span></header>\n\
<main>\n{content}\n</main>\n</body>\n</html>\n",
        title = escape_html(title),
    )
}

fn error_page(status: u16, message: &str) -> Reply {
    Reply::html(status, page("ClaveÚnica — Emulador", &format!("<p class=\"error\">{}</p>", escape_html(message))))
}

fn login_page(authz: &Authz, run: &str, error: Option<&str>) -> String {
    let hidden =
        |name: &str, value: &str| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n", escape_html(value));
    let mut content = String::from("<h1>Ingresa con tu ClaveÚnica</h1>\n");
    if let Some(e) = error {
        content.push_str(&format!("<p class=\"error\">{}</p>\n", escape_html(e)));
    }
    content.push_str(&format!("<form method=\"post\" action=\"{AUTHORIZE_PATH}\">\n"));
    content.push_str(&hidden("client_id", &authz.client_id));
    content.push_str(&hidden("redirect_uri", &authz.redirect_uri));
    if let Some(state) = &authz.state {
        content.push_str(&hidden("state", state));
    }
    if let Some(nonce) = &authz.nonce {
        content.push_str(&hidden("nonce", nonce));
    }
    content.push_str(&hidden("scope", &authz.scope));
    content.push_str(&format!(
        "<label for=\"run\">RUN</label>\n\
<input type=\"text\" id=\"run\" name=\"run\" value=\"{}\" placeholder=\"12.345.678-5\" autocomplete=\"username\" autofocus>\n\
<label for=\"password\">Clave Única</label>\n\
<input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\">\n\
<div class=\"buttons\">\n\
<button type=\"submit\" class=\"primary\" name=\"login\" value=\"1\">Autenticar</button>\n\
<button type=\"submit\" class=\"secondary\" name=\"cancel\" value=\"1\" formnovalidate>Cancelar</button>\n\
</div>\n</form>\n",
        escape_html(run)
    ));
    content.push_str("<div class=\"help\">\n<p>Usuarios de prueba (clave <code>");
    content.push_str(&escape_html(SANDBOX_PASSWORD));
    content.push_str("</code>):</p>\n<ul>\n");
    for u in USERS {
        content.push_str(&format!(
            "<li><code>{}</code> — {} {}</li>\n",
            escape_html(&u.display_run()),
            escape_html(&u.nombres.join(" ")),
            escape_html(&u.apellidos.join(" ")),
        ));
    }
    content.push_str("</ul>\n</div>");
    page("ClaveÚnica — Emulador", &content)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::tokens::tests::test_keys;
    use crate::tokens::IdTokenExtra;
    use jwt_simple::prelude::{RSAPublicKeyLike, VerificationOptions};

    const NOW: u64 = 1_700_000_000;
    const CB: &str = "https://app.example.gob.cl/callback/";

    pub fn app(redirect_uri: Option<&str>) -> App {
        let config = Config {
            issuer: "http://127.0.0.1:8900/openid".into(),
            origin: "http://127.0.0.1:8900".into(),
            client_id: "demo-client".into(),
            client_secret: "demo-secret".into(),
            redirect_uri: redirect_uri.map(str::to_string),
            numero_as_string: false,
        };
        App::new(config, test_keys().clone())
    }

    fn get(path: &str, query: &str) -> Req {
        Req { method: "GET".into(), path: path.into(), query: query.into(), ..Default::default() }
    }

    fn post_form(path: &str, body: &str) -> Req {
        Req {
            method: "POST".into(),
            path: path.into(),
            headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn enc(pairs: &[(&str, &str)]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }

    fn location_params(reply: &Reply) -> Params {
        let loc = reply.header("Location").unwrap_or_default();
        Params::parse(loc.split_once('?').map(|(_, q)| q).unwrap_or("").as_bytes())
    }

    fn login(app: &App, nonce: Option<&str>, now: u64) -> String {
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

    fn exchange(app: &App, code: &str, redirect_uri: &str, now: u64) -> Reply {
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

    fn error_of(reply: &Reply) -> String {
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        v["error"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn authorize_shows_the_form_with_escaped_values() {
        let app = app(None);
        let q = enc(&[
            ("client_id", "demo-client"),
            ("response_type", "code"),
            ("scope", REQUIRED_SCOPE),
            ("redirect_uri", CB),
            ("state", "<\"st\">"),
            ("nonce", "n"),
        ]);
        let reply = route(&app, &get(AUTHORIZE_PATH, &q), NOW);
        assert_eq!(reply.status, 200);
        let html = String::from_utf8(reply.body).unwrap();
        assert!(html.contains("ClaveÚnica — Emulador"));
        assert!(html.contains("name=\"state\" value=\"&lt;&quot;st&quot;&gt;\""));
        assert!(html.contains("name=\"cancel\" value=\"1\""));
        assert!(html.contains("44.444.444-4"));
    }

    #[test]
    fn authorize_rejects_unknown_client_and_bad_scope() {
        let app = app(Some(CB));
        let q =
            enc(&[("client_id", "other"), ("response_type", "code"), ("scope", REQUIRED_SCOPE), ("redirect_uri", CB)]);
        let reply = route(&app, &get(AUTHORIZE_PATH, &q), NOW);
        assert_eq!(reply.status, 400);
        assert!(String::from_utf8_lossy(&reply.body).contains("La institución no está habilitada en ClaveÚnica"));

        let q = enc(&[
            ("client_id", "demo-client"),
            ("response_type", "code"),
            ("scope", "openid run"),
            ("redirect_uri", CB),
            ("state", "z"),
        ]);
        let reply = route(&app, &get(AUTHORIZE_PATH, &q), NOW);
        assert_eq!(reply.status, 302);
        let p = location_params(&reply);
        assert_eq!(p.get("error"), Some("invalid_scope"));
        assert_eq!(p.get("state"), Some("z"));

        // A registered redirect URI is compared exactly, trailing slash included.
        let q = enc(&[
            ("client_id", "demo-client"),
            ("response_type", "code"),
            ("scope", REQUIRED_SCOPE),
            ("redirect_uri", "https://app.example.gob.cl/callback"),
        ]);
        assert_eq!(route(&app, &get(AUTHORIZE_PATH, &q), NOW).status, 400);
    }

    #[test]
    fn wrong_password_reshows_the_form_and_cancel_denies() {
        let app = app(None);
        let body = enc(&[
            ("client_id", "demo-client"),
            ("redirect_uri", "https://a.example/cb?x=1"),
            ("state", "st"),
            ("scope", REQUIRED_SCOPE),
            ("run", "44.444.444-4"),
            ("password", "nope"),
        ]);
        let reply = route(&app, &post_form(AUTHORIZE_PATH, &body), NOW);
        assert_eq!(reply.status, 200);
        assert!(String::from_utf8_lossy(&reply.body).contains("RUN o clave incorrectos"));

        let reply = route(&app, &post_form(AUTHORIZE_PATH, &(body + "&cancel=1")), NOW);
        assert_eq!(reply.status, 302);
        assert_eq!(reply.header("Location"), Some("https://a.example/cb?x=1&error=access_denied&state=st"));
    }

    #[test]
    fn full_flow_and_single_use_code() {
        let app = app(None);
        let code = login(&app, Some("nonce-1"), NOW);
        assert_eq!(code.len(), 32);
        let reply = exchange(&app, &code, CB, NOW + 2);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.header("Cache-Control"), Some("no-store"));
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["token_type"], "bearer");
        assert_eq!(v["expires_in"], 3600);
        let id_token = v["id_token"].as_str().unwrap();
        let opts = VerificationOptions {
            required_nonce: Some("nonce-1".into()),
            // The token's iat is the fixed test time, far in the past.
            artificial_time: Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW + 3)),
            ..Default::default()
        };
        let claims = app.keys().current.public_key().verify_token::<IdTokenExtra>(id_token, Some(opts)).unwrap();
        assert_eq!(claims.custom.auth_time, NOW);

        // Second use of the same code fails.
        assert_eq!(error_of(&exchange(&app, &code, CB, NOW + 3)), "invalid_grant");

        let access = v["access_token"].as_str().unwrap();
        let mut req = get(USERINFO_PATH, "");
        req.method = "POST".into();
        req.headers.push(("authorization".into(), format!("Bearer {access}")));
        let reply = route(&app, &req, NOW + 4);
        assert_eq!(reply.status, 200);
        let u: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(u["RolUnico"]["numero"], 44_444_444);
        assert_eq!(u["RolUnico"]["DV"], "4");
        assert_eq!(u["name"]["apellidos"][0], "De los Ríos");

        req.headers = vec![("authorization".into(), "Bearer nope".into())];
        let reply = route(&app, &req, NOW + 4);
        assert_eq!(reply.status, 401);
        assert_eq!(error_of(&reply), "invalid_token");
    }

    #[test]
    fn token_endpoint_errors() {
        let app = app(None);

        // Expired code.
        let code = login(&app, None, NOW);
        let reply = exchange(&app, &code, CB, NOW + CODE_TTL_SECS);
        assert_eq!((reply.status, error_of(&reply)), (400, "invalid_grant".into()));

        // Unknown code.
        assert_eq!(error_of(&exchange(&app, "0123", CB, NOW)), "invalid_grant");

        // Redirect URI differing from the one the code was issued for.
        let code = login(&app, None, NOW);
        let reply = exchange(&app, &code, "https://app.example.gob.cl/callback", NOW);
        assert_eq!(error_of(&reply), "invalid_client");

        // Wrong secret.
        let code = login(&app, None, NOW);
        let body = enc(&[
            ("client_id", "demo-client"),
            ("client_secret", "wrong"),
            ("redirect_uri", CB),
            ("grant_type", "authorization_code"),
            ("code", &code),
        ]);
        let reply = route(&app, &post_form(TOKEN_PATH, &body), NOW);
        assert_eq!(error_of(&reply), "invalid_client");

        // Wrong grant type.
        let body = enc(&[
            ("client_id", "demo-client"),
            ("client_secret", "demo-secret"),
            ("redirect_uri", CB),
            ("grant_type", "password"),
            ("code", &code),
        ]);
        let reply = route(&app, &post_form(TOKEN_PATH, &body), NOW);
        assert_eq!(error_of(&reply), "unsupported_grant_type");

        // The code survived the rejected requests above and still works once.
        assert_eq!(exchange(&app, &code, CB, NOW).status, 200);
    }

    #[test]
    fn numero_can_be_a_string() {
        let v = userinfo_json(&USERS[1], true);
        assert_eq!(v["RolUnico"]["numero"], "55555555");
        assert_eq!(v["name"]["apellidos"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn discovery_and_logout() {
        let app = app(None);
        let reply = route(&app, &get(DISCOVERY_PATH, ""), NOW);
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["token_endpoint"], "http://127.0.0.1:8900/openid/token/");
        assert_eq!(v["end_session_endpoint"], "http://127.0.0.1:8900/api/v1/accounts/app/logout");
        assert_eq!(route(&app, &get(LOGOUT_PATH, ""), NOW).status, 204);
        let reply = route(&app, &get(LOGOUT_PATH, "redirect=https%3A%2F%2Fa.example%2Fbye"), NOW);
        assert_eq!(reply.status, 302);
        assert_eq!(reply.header("Location"), Some("https://a.example/bye"));
        assert_eq!(route(&app, &get("/openid/token", ""), NOW).status, 404);
    }

    #[test]
    fn stats_count_requests_per_endpoint() {
        let app = app(None);
        let stats = |app: &App| -> serde_json::Value {
            let reply = route(app, &get(STATS_PATH, ""), NOW);
            assert_eq!(reply.status, 200);
            serde_json::from_slice(&reply.body).unwrap()
        };
        assert_eq!(stats(&app), json!({"jwks": 0, "token": 0, "userinfo": 0, "authorize": 0}));
        route(&app, &get(JWKS_PATH, ""), NOW);
        route(&app, &get(JWKS_PATH, ""), NOW);
        // Failures count too: the call was made.
        route(&app, &get(TOKEN_PATH, ""), NOW);
        route(&app, &post_form(USERINFO_PATH, ""), NOW);
        route(&app, &get(AUTHORIZE_PATH, "client_id=nope"), NOW);
        route(&app, &get(DISCOVERY_PATH, ""), NOW);
        assert_eq!(stats(&app), json!({"jwks": 2, "token": 1, "userinfo": 1, "authorize": 1}));
        assert_eq!(route(&app, &post_form(STATS_PATH, ""), NOW).status, 404);
    }

    fn post_json(path: &str, body: &str) -> Req {
        Req { method: "POST".into(), path: path.into(), body: body.as_bytes().to_vec(), ..Default::default() }
    }

    fn set(app: &App, body: &str) {
        let reply = route(app, &post_json(MODE_PATH, body), NOW);
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    }

    /// The ID token of a whole login in the current mode, taken apart.
    fn id_token_parts(app: &App) -> (serde_json::Value, serde_json::Value, String) {
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

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    #[test]
    fn id_token_modes_break_one_thing_each() {
        let app = app(None);
        let kid = app.keys().current.kid.clone();
        let (h, c, sig) = id_token_parts(&app);
        assert_eq!((h["alg"].as_str(), h["kid"].as_str()), (Some("RS256"), Some(kid.as_str())));
        assert_eq!(c["nonce"], "nonce-1");
        assert!(!sig.is_empty());

        set(&app, r#"{"id_token": "alg_none"}"#);
        let (h, c, sig) = id_token_parts(&app);
        assert_eq!((h["alg"].as_str(), sig.as_str(), c["nonce"].as_str()), (Some("none"), "", Some("nonce-1")));

        set(&app, r#"{"id_token": "hs256_confusion"}"#);
        let (h, _, sig) = id_token_parts(&app);
        assert_eq!(h["alg"], "HS256");
        assert_eq!(URL_SAFE_NO_PAD.decode(sig).unwrap().len(), 32, "an HMAC-SHA256 tag");

        set(&app, r#"{"id_token": "unknown_kid"}"#);
        let (h, _, _) = id_token_parts(&app);
        assert_ne!(h["kid"].as_str(), Some(kid.as_str()));
        assert_eq!(h["kid"].as_str().map(str::len), Some(32));

        set(&app, r#"{"id_token": "crit"}"#);
        assert_eq!(id_token_parts(&app).0["crit"], json!(["exp_policy"]));
        set(&app, r#"{"id_token": "typ_at_jwt"}"#);
        assert_eq!(id_token_parts(&app).0["typ"], "at+jwt");
        set(&app, r#"{"id_token": "huge"}"#);
        assert!(id_token_parts(&app).1["padding"].as_str().unwrap().len() >= 100 * 1024);
        set(&app, r#"{"id_token": "wrong_nonce"}"#);
        assert_ne!(id_token_parts(&app).1["nonce"], "nonce-1");
        set(&app, r#"{"id_token": "wrong_audience"}"#);
        assert_eq!(id_token_parts(&app).1["aud"], "another-client");
        set(&app, r#"{"id_token": "expired"}"#);
        let c = id_token_parts(&app).1;
        assert!(c["exp"].as_u64().unwrap() < NOW);
    }

    #[test]
    fn manually_signed_tokens_verify_with_the_published_key() {
        // The raw RS256 signer must sign exactly as jwt-simple does, or the attack rows
        // would be refused for a bad signature instead of what they test.
        let app = app(None);
        set(&app, r#"{"id_token": "wrong_audience"}"#);
        let code = login(&app, Some("n"), NOW);
        let v: serde_json::Value = serde_json::from_slice(&exchange(&app, &code, CB, NOW).body).unwrap();
        let opts = VerificationOptions {
            artificial_time: Some(jwt_simple::prelude::UnixTimeStamp::from_secs(NOW + 1)),
            ..Default::default()
        };
        let claims = app
            .keys()
            .current
            .public_key()
            .verify_token::<serde_json::Value>(v["id_token"].as_str().unwrap(), Some(opts))
            .unwrap();
        assert!(claims.audiences.is_some());
    }

    fn userinfo_of(mode: UserinfoMode) -> Vec<u8> {
        userinfo_body(&USERS[0], false, mode)
    }

    #[test]
    fn userinfo_modes() {
        let v = |mode| serde_json::from_slice::<serde_json::Value>(&userinfo_of(mode)).unwrap();
        assert_eq!(v(UserinfoMode::Normal)["RolUnico"]["numero"], 44_444_444);
        assert!(v(UserinfoMode::NumeroMissing)["RolUnico"].get("numero").is_none());
        assert!(v(UserinfoMode::NumeroNull)["RolUnico"]["numero"].is_null());
        assert_eq!(v(UserinfoMode::NumeroNegative)["RolUnico"]["numero"], -44_444_444);
        assert!(v(UserinfoMode::NumeroText)["RolUnico"]["numero"].is_string());
        assert_eq!(v(UserinfoMode::WrongDv)["RolUnico"]["DV"], "0");
        assert_eq!(v(UserinfoMode::TipoDni)["RolUnico"]["tipo"], "DNI");
        assert!(userinfo_of(UserinfoMode::Names100k).len() >= 100 * 1024);
        let bad = userinfo_of(UserinfoMode::InvalidUtf8);
        assert!(std::str::from_utf8(&bad).is_err());
        assert!(bad.windows(2).any(|w| w == [0xff, 0xfe]));
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

    #[test]
    fn rotating_the_key_publishes_the_new_kid() {
        let app = app(None);
        let kids = |app: &App| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_slice(&route(app, &get(JWKS_PATH, ""), NOW).body).unwrap();
            v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
        };
        let first = app.keys().current.kid.clone();
        let reply = route(&app, &post_json(ROTATE_KEY_PATH, r#"{"keep_old": true}"#), NOW);
        assert_eq!(reply.status, 200);
        let second: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let second = second["kid"].as_str().unwrap().to_string();
        assert_eq!(kids(&app), [second.clone(), first.clone()]);
        let (h, _, _) = id_token_parts(&app);
        assert_eq!(h["kid"].as_str(), Some(second.as_str()), "tokens are signed with the new key");

        assert_eq!(route(&app, &post_json(ROTATE_KEY_PATH, ""), NOW).status, 200);
        let now_kids = kids(&app);
        assert_eq!(now_kids.len(), 1, "without keep_old only the new key is published");
        assert!(!now_kids.contains(&first) && !now_kids.contains(&second));
        assert_eq!(route(&app, &post_json(ROTATE_KEY_PATH, r#"{"keep_old": 1}"#), NOW).status, 400);
    }
}
