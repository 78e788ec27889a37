//! The authorization endpoint: the login form (GET), and its submission (POST), which
//! either logs a test user in and sends a code back, re-shows the form, or cancels.
//!
//! Like the real service, a login opens ClaveÚnica's own session in the browser for a minute
//! (the `sso_s` mode): within it, the next authorization request from that browser skips the
//! form and goes straight back with a code for the same person. A disabled client (the `client`
//! mode) gets the error page the real service shows for credentials not enabled.

// Escapes both quotes as well as `&`, `<` and `>`, so the one function serves element content
// and attribute values alike.
use html_escape::encode_quoted_attribute;

use super::pages::{error_page, page};
use super::{is_plain_http_url, set_sso_cookie, sso_cookie, App, Client, AUTHORIZE_PATH};
use crate::http::{append_query, Params, Reply, Req};
use crate::modes::{ClientMode, Modes};
use crate::state::{CodeGrant, CODE_TTL_SECS};
use crate::tokens::random_hex;
use crate::users::{self, User, SANDBOX_PASSWORD, USERS};

/// The one scope string the real service (and its certification) accepts.
pub const REQUIRED_SCOPE: &str = "openid run name";

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

/// Checks client and redirect URI (the one registered for that client). Failures are shown as
/// a page, never redirected: an unverified redirect URI must not receive anything.
fn check_client(app: &App, p: &Params, modes: &Modes) -> Result<Authz, Reply> {
    let client = match app.config.client(p.text("client_id")) {
        Some(c) if modes.client != ClientMode::Disabled => c,
        _ => return Err(error_page(400, "La institución no está habilitada en ClaveÚnica")),
    };
    let redirect_uri = p.text("redirect_uri");
    if !redirect_uri_allowed(client, redirect_uri) {
        return Err(error_page(400, "La dirección de retorno (redirect_uri) no está registrada para esta institución"));
    }
    Ok(Authz {
        client_id: client.id.clone(),
        redirect_uri: redirect_uri.to_string(),
        state: p.get("state").map(str::to_string),
        nonce: p.get("nonce").filter(|n| !n.is_empty()).map(str::to_string),
        scope: p.text("scope").to_string(),
    })
}

fn redirect_uri_allowed(client: &Client, uri: &str) -> bool {
    match &client.redirect_uri {
        Some(registered) => uri == registered,
        None => is_plain_http_url(uri),
    }
}

pub(super) fn authorize_form(app: &App, req: &Req, now: u64, modes: &Modes) -> Reply {
    let p = req.query_params();
    let authz = match check_client(app, &p, modes) {
        Ok(a) => a,
        Err(page) => return page,
    };
    if p.text("response_type") != "code" {
        return authz.redirect(&[("error", "unsupported_response_type")]);
    }
    if authz.scope != REQUIRED_SCOPE {
        return authz.redirect(&[("error", "invalid_scope")]);
    }
    let signed_in = sso_cookie(req).filter(|_| modes.sso_s > 0).and_then(|id| app.state().sso_user(id, now));
    match signed_in {
        Some(user) => issue_code(app, &authz, user, now),
        None => Reply::html(200, login_page(&authz, "", None)),
    }
}

pub(super) fn authorize_submit(app: &App, req: &Req, now: u64, modes: &Modes) -> Reply {
    let p = req.form_params();
    let authz = match check_client(app, &p, modes) {
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
    let mut reply = issue_code(app, &authz, user, now);
    if modes.sso_s > 0 && reply.status == 302 {
        if let Ok(id) = random_hex(16) {
            app.state().open_sso(id.clone(), user, now, modes.sso_s);
            set_sso_cookie(&mut reply, Some(&id), modes.sso_s);
        }
    }
    reply
}

/// A new code for `user`, sent back to the redirect URI.
fn issue_code(app: &App, authz: &Authz, user: &'static User, now: u64) -> Reply {
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

fn login_page(authz: &Authz, run: &str, error: Option<&str>) -> String {
    let hidden = |name: &str, value: &str| {
        format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">\n", encode_quoted_attribute(value))
    };
    let mut content = String::from("<h1>Ingresa con tu ClaveÚnica</h1>\n");
    if let Some(e) = error {
        content.push_str(&format!("<p class=\"error\">{}</p>\n", encode_quoted_attribute(e)));
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
        encode_quoted_attribute(run)
    ));
    content.push_str("<div class=\"help\">\n<p>Usuarios de prueba (clave <code>");
    content.push_str(&encode_quoted_attribute(SANDBOX_PASSWORD));
    content.push_str("</code>):</p>\n<ul>\n");
    for u in USERS {
        content.push_str(&format!(
            "<li><code>{}</code> — {} {}</li>\n",
            encode_quoted_attribute(&u.display_run()),
            encode_quoted_attribute(&u.nombres.join(" ")),
            encode_quoted_attribute(&u.apellidos.join(" ")),
        ));
    }
    content.push_str("</ul>\n</div>");
    page("ClaveÚnica — Emulador", &content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::tests::{app, enc, error_of, exchange, get, location_params, login, post_form, set, CB, NOW};
    use crate::endpoints::{route, App, LOGOUT_PATH};

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

    /// The authorization request of `login()`, as a GET carrying `cookie`.
    fn authorize_get(cookie: Option<&str>) -> Req {
        let q = enc(&[
            ("client_id", "demo-client"),
            ("response_type", "code"),
            ("scope", REQUIRED_SCOPE),
            ("redirect_uri", CB),
            ("state", "s-2"),
        ]);
        let mut req = get(AUTHORIZE_PATH, &q);
        if let Some(c) = cookie {
            req.headers.push(("cookie".into(), format!("other=1; {c}")));
        }
        req
    }

    /// A login by form that keeps the provider-session cookie it sets (`name=value`).
    fn login_keeping_sso(app: &App, now: u64) -> String {
        let body = enc(&[
            ("client_id", "demo-client"),
            ("redirect_uri", CB),
            ("state", "s-1"),
            ("scope", REQUIRED_SCOPE),
            ("run", "55.555.555-5"),
            ("password", "testing"),
        ]);
        let reply = route(app, &post_form(AUTHORIZE_PATH, &body), now);
        assert_eq!(reply.status, 302);
        let cookies: Vec<&str> =
            reply.headers.iter().filter(|(n, _)| *n == "Set-Cookie").map(|(_, v)| v.as_str()).collect();
        assert_eq!(cookies.len(), 2, "one per path: {cookies:?}");
        assert!(
            cookies[0].contains("Path=/openid/authorize/") && cookies[1].contains("Path=/api/v1/accounts/app/logout")
        );
        assert!(cookies.iter().all(|c| c.contains("Max-Age=60") && c.contains("HttpOnly")), "{cookies:?}");
        cookies[0].split(';').next().unwrap().to_string()
    }

    #[test]
    fn a_second_login_within_the_minute_skips_the_form_for_the_same_person() {
        let app = app(Some(CB));
        // Positive control: without a provider session, the form.
        assert_eq!(route(&app, &authorize_get(None), NOW).status, 200);
        let sso = login_keeping_sso(&app, NOW);
        let reply = route(&app, &authorize_get(Some(&sso)), NOW + 59);
        assert_eq!(reply.status, 302, "the form was shown again within the minute");
        let p = location_params(&reply);
        assert_eq!(p.get("state"), Some("s-2"));
        let answer = exchange(&app, p.text("code"), CB, NOW + 59);
        assert_eq!(answer.status, 200);
        let access: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let mut userinfo = post_form(crate::endpoints::USERINFO_PATH, "");
        userinfo.headers.push(("authorization".into(), format!("Bearer {}", access["access_token"].as_str().unwrap())));
        let who: serde_json::Value = serde_json::from_slice(&route(&app, &userinfo, NOW + 59).body).unwrap();
        assert_eq!(who["RolUnico"]["numero"], 55_555_555, "the session's person, not another");
        // After the minute, the form again.
        assert_eq!(route(&app, &authorize_get(Some(&sso)), NOW + 60).status, 200);
        // A bad cookie value, the form.
        assert_eq!(route(&app, &authorize_get(Some("claveunica_emulator_sso=forged")), NOW).status, 200);
    }

    #[test]
    fn the_provider_logout_ends_its_session_and_sso_s_0_opens_none() {
        let app = app(Some(CB));
        let sso = login_keeping_sso(&app, NOW);
        let mut out = get(LOGOUT_PATH, "");
        out.headers.push(("cookie".into(), sso.clone()));
        let reply = route(&app, &out, NOW + 1);
        assert!(
            reply.headers.iter().any(|(n, v)| *n == "Set-Cookie" && v.contains("Max-Age=0")),
            "{:?}",
            reply.headers
        );
        assert_eq!(route(&app, &authorize_get(Some(&sso)), NOW + 2).status, 200, "the session outlived the logout");

        set(&app, r#"{"sso_s": 0}"#);
        let body = enc(&[
            ("client_id", "demo-client"),
            ("redirect_uri", CB),
            ("scope", REQUIRED_SCOPE),
            ("run", "55.555.555-5"),
            ("password", "testing"),
        ]);
        let reply = route(&app, &post_form(AUTHORIZE_PATH, &body), NOW);
        assert_eq!((reply.status, reply.header("Set-Cookie")), (302, None));
    }

    #[test]
    fn a_disabled_client_gets_the_error_page_and_no_tokens() {
        let app = app(Some(CB));
        let code = login(&app, None, NOW);
        set(&app, r#"{"client": "disabled"}"#);
        let reply = route(&app, &authorize_get(None), NOW);
        assert_eq!((reply.status, reply.header("Location")), (400, None));
        assert!(String::from_utf8_lossy(&reply.body).contains("La institución no está habilitada en ClaveÚnica"));
        assert_eq!(error_of(&exchange(&app, &code, CB, NOW)), "invalid_client");
        set(&app, r#"{"client": "enabled"}"#);
        assert_eq!(route(&app, &authorize_get(None), NOW).status, 200, "the positive control");
        assert_eq!(exchange(&app, &login(&app, None, NOW), CB, NOW).status, 200);
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
}
