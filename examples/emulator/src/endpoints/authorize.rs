//! The authorization endpoint: the login form (GET), and its submission (POST), which
//! either logs a test user in and sends a code back, re-shows the form, or cancels.

// Escapes both quotes as well as `&`, `<` and `>`, so the one function serves element content
// and attribute values alike.
use html_escape::encode_quoted_attribute;

use super::pages::{error_page, page};
use super::{is_plain_http_url, App, Config, AUTHORIZE_PATH};
use crate::http::{append_query, Params, Reply, Req};
use crate::state::{CodeGrant, CODE_TTL_SECS};
use crate::tokens::random_hex;
use crate::users::{self, SANDBOX_PASSWORD, USERS};

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

pub(super) fn authorize_form(app: &App, req: &Req) -> Reply {
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

pub(super) fn authorize_submit(app: &App, req: &Req, now: u64) -> Reply {
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
    use crate::endpoints::route;
    use crate::endpoints::tests::{app, enc, get, location_params, post_form, CB, NOW};

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
}
