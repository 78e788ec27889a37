//! The emulated ClaveÚnica endpoints, as plain functions from [`Req`] to [`Reply`].
//!
//! Paths, trailing slashes, error codes and quirks follow the real service (see
//! /work/shared/CLAVEUNICA.md); where the emulator is stricter than needed it is so
//! that relying-party bugs show up here rather than at certification.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde_json::json;

use crate::http::{append_query, escape_html, Params, Reply, Req};
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
    pub keys: Keys,
    pub state: Mutex<State>,
    pub stats: Stats,
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
        App { config, keys, state: Mutex::new(State::new()), stats: Stats::default() }
    }

    /// The state holds no invariant a panicking holder could break halfway, so a
    /// poisoned lock is still safe to use.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Dispatches one request. `now` is Unix seconds.
pub fn route(app: &App, req: &Req, now: u64) -> Reply {
    let get = req.method == "GET";
    let post = req.method == "POST";
    app.stats.count(&req.path);
    match req.path.as_str() {
        AUTHORIZE_PATH if get => authorize_form(app, req),
        AUTHORIZE_PATH if post => authorize_submit(app, req, now),
        TOKEN_PATH if post => token(app, req, now),
        USERINFO_PATH if get || post => userinfo(app, req, now),
        JWKS_PATH if get => Reply::json(200, &app.keys.jwks()),
        DISCOVERY_PATH if get => Reply::json(200, &discovery(&app.config)),
        LOGOUT_PATH if get => logout(req),
        STATS_PATH if get => Reply::json(200, &app.stats.json()).no_store(),
        AUTHORIZE_PATH | TOKEN_PATH | USERINFO_PATH | JWKS_PATH | DISCOVERY_PATH | LOGOUT_PATH => {
            Reply::text(405, "Method Not Allowed\n")
        }
        _ => Reply::text(404, "Not Found\n"),
    }
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

fn token(app: &App, req: &Req, now: u64) -> Reply {
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
    let id_token = match app.keys.id_token(&app.config.issuer, &grant, &access_token, now) {
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

fn userinfo(app: &App, req: &Req, now: u64) -> Reply {
    let user = bearer_token(req).and_then(|t| app.state().token_user(t, now));
    match user {
        Some(user) => Reply::json(200, &userinfo_json(user, app.config.numero_as_string)).no_store(),
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
mod tests {
    use super::*;
    use crate::tokens::tests::test_keys;
    use crate::tokens::IdTokenExtra;
    use jwt_simple::prelude::{RSAPublicKeyLike, VerificationOptions};

    const NOW: u64 = 1_700_000_000;
    const CB: &str = "https://app.example.gob.cl/callback/";

    fn app(redirect_uri: Option<&str>) -> App {
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
        let claims = app.keys.public_key().verify_token::<IdTokenExtra>(id_token, Some(opts)).unwrap();
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
}
