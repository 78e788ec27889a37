//! The pages people see, in Spanish and in the government's voice (tú, short, plain): errors, a
//! cancelled login, logout, the page with the ClaveÚnica button, and the page that takes a
//! login out of a frame. Every page names the agency, offers help and a way home, has one
//! `main` landmark and one `h1`, and works without JavaScript. Every interpolated value is
//! HTML-escaped; the pages load nothing from anywhere (no fonts, images or scripts from
//! elsewhere), so they render when the legacy application is down and make no request a
//! third party could see.

/// Who the pages speak for: the agency's name, where a person finds help, and the agency's
/// home. Configured in the `pages` section; [`Agency::default`] when the gate has no
/// configuration (a page that fails closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agency {
    /// The agency or service, as citizens know it.
    pub name: String,
    /// The help contact, as text (a phone number, an office, a web page's name).
    pub help: String,
    /// Where the help text links, if anywhere (`https:`, a path, `mailto:` or `tel:`).
    pub help_url: Option<String>,
    /// The agency's home page (a path or an absolute URL).
    pub home: String,
}

impl Default for Agency {
    /// A page without configuration still names a place to go and a way to get help:
    /// ClaveÚnica's own site, which helps with the account, and the site's root.
    fn default() -> Self {
        Self {
            name: "Servicio en línea".into(),
            help: "Ayuda de ClaveÚnica".into(),
            help_url: Some("https://claveunica.gob.cl/".into()),
            home: "/".into(),
        }
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
#[must_use]
pub fn escape(text: &str) -> String {
    html_escape::encode_quoted_attribute(text).into_owned()
}

/// Escapes text for a JavaScript string literal inside a `<script>` element.
fn js_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' | '\\' | '<' | '>' | '&' | '\'' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The ClaveÚnica button as integrators reproduce the button manual's: #0F69C4 with white
/// bold 16px text, 48px high, #07305A on hover, a #FFBE5C focus ring. Roboto only if the
/// device has it: a web font would be a request to a third party.
const BUTTON_CSS: &str = ".cu-btn{display:inline-flex;align-items:center;justify-content:center;gap:4px;\
min-height:48px;padding:8px 14px;background:#0F69C4;color:#fff;font:700 16px/1.2 Roboto,system-ui,sans-serif;\
text-decoration:none;border-radius:4px}.cu-btn:hover{background:#07305A;color:#fff}\
.cu-btn:focus-visible{outline:4px solid #FFBE5C;outline-offset:0}";

/// The button's key mark, drawn here rather than fetched; hidden from screen readers, which
/// read the link's label.
const BUTTON_ICON: &str = "<svg aria-hidden=\"true\" focusable=\"false\" width=\"24\" height=\"24\" \
viewBox=\"0 0 24 24\"><circle cx=\"12\" cy=\"15\" r=\"5\" fill=\"none\" stroke=\"#fff\" stroke-width=\"2\"/>\
<path d=\"M12 2v8M12 3h4M12 6h3\" fill=\"none\" stroke=\"#fff\" stroke-width=\"2\"/></svg>";

/// The official button, leading to `href` in the whole window (`target="_top"`: ClaveÚnica's
/// form never opens inside a frame). Its visible text is "Iniciar sesión"; its accessible name,
/// which contains the visible text as WCAG 2.5.3 asks, names ClaveÚnica.
fn button(href: &str) -> String {
    format!(
        "<a class=\"cu-btn\" href=\"{}\" target=\"_top\" aria-label=\"Iniciar sesión con ClaveÚnica\">\
{BUTTON_ICON}<span>Iniciar sesión</span></a>",
        escape(href)
    )
}

fn layout(agency: &Agency, title: &str, main: &str, head_extra: &str) -> String {
    let help = match &agency.help_url {
        Some(url) => format!("<a href=\"{}\">{}</a>", escape(url), escape(&agency.help)),
        None => escape(&agency.help),
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"es\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title} | {name}</title>{head_extra}\
<style>html{{background:#fff}}body{{font-family:system-ui,sans-serif;max-width:36rem;margin:0 auto;padding:0 1rem;color:#1c1c1c;\
line-height:1.5}}header{{border-bottom:4px solid #0F69C4;padding:1rem 0}}header a{{color:#1c1c1c;\
font-weight:700;text-decoration:none}}main{{padding:1.5rem 0}}h1{{font-size:1.5rem;color:#0A4B8C}}\
a{{color:#0A4B8C}}.ref{{color:#4a4a4a;font-size:.9rem}}footer{{border-top:1px solid #ccc;padding:1rem 0;\
font-size:.95rem}}{BUTTON_CSS}</style>\
</head><body><header><a href=\"{home}\">{name}</a></header><main>{main}</main>\
<footer><p>¿Necesitas ayuda? {help}</p><p><a href=\"{home}\">Ir al inicio</a></p></footer></body></html>\n",
        title = escape(title),
        name = escape(&agency.name),
        home = escape(&agency.home),
    )
}

/// A failure page: what happened, what to do, and the reference id that is also in the
/// proxy's log line for this failure.
#[must_use]
pub fn error(agency: &Agency, title: &str, message: &str, reference: &str, retry: Option<&str>) -> String {
    let retry =
        retry.map(|href| format!("<p><a href=\"{}\">Intentar de nuevo</a></p>", escape(href))).unwrap_or_default();
    layout(
        agency,
        title,
        &format!(
            "<h1>{}</h1><p>{}</p>{retry}<p class=\"ref\">Código de referencia: <code>{}</code>. Indícalo si pides ayuda.</p>",
            escape(title),
            escape(message),
            escape(reference),
        ),
        "",
    )
}

/// The page for a RUN outside the pilot list (`allowed_runs`): nothing is forwarded, the
/// gate's session has ended, and the page takes the browser through ClaveÚnica's logout after
/// [`FORBIDDEN_LOGOUT_DELAY_MS`] (time to read why), since ClaveÚnica's manual asks a service
/// to log out a RUN it does not know. The link does it at once, and without JavaScript. A
/// "stay" button stops the timer: a page that moves on by itself must let the person turn
/// that off (WCAG 2.2.1, Timing Adjustable); it is shown only where the timer runs.
#[must_use]
pub fn forbidden(agency: &Agency, provider_logout_url: &str, fallback: &str, reference: &str) -> String {
    layout(
        agency,
        "Acceso no habilitado",
        &format!(
            "<h1>Acceso no habilitado</h1><p>Tu RUN aún no está habilitado para usar este servicio con ClaveÚnica. \
Si crees que es un error, pide ayuda.</p><p>Ahora cerramos también tu sesión de ClaveÚnica.</p>\
<p id=\"cu-wait\" hidden>En {seconds} segundos te llevamos a ClaveÚnica. \
<button type=\"button\" id=\"cu-stay\">Quedarme aquí</button></p>\
{script}<p><a href=\"{}\">Cerrar sesión</a></p>\
<p class=\"ref\">Código de referencia: <code>{}</code>. Indícalo si pides ayuda.</p>",
            escape(provider_logout_url),
            escape(reference),
            seconds = FORBIDDEN_LOGOUT_DELAY_MS / 1000,
            script = leave_claveunica(provider_logout_url, fallback, FORBIDDEN_LOGOUT_DELAY_MS),
        ),
        "",
    )
}

/// How long the page for a RUN outside the pilot list stays before it takes the browser to
/// ClaveÚnica's logout.
pub const FORBIDDEN_LOGOUT_DELAY_MS: u32 = 5000;

/// The script that takes the browser, after `delay_ms`, to ClaveÚnica's logout by a top-level
/// navigation (a server-side call does not end ClaveÚnica's session) and, 1.5 s later, to
/// `fallback`: ClaveÚnica's logout sometimes answers 204 without a redirect, which leaves the
/// browser on this page, and the timer then takes it on.
///
/// With a delay, the script also shows the page's `cu-wait` notice and lets its `cu-stay`
/// button cancel the timer.
fn leave_claveunica(provider_logout_url: &str, fallback: &str, delay_ms: u32) -> String {
    let go = "window.location.assign(p);setTimeout(function(){window.location.assign(f);},1500);";
    let go = if delay_ms == 0 {
        go.to_string()
    } else {
        format!(
            "var t=setTimeout(function(){{{go}}},{delay_ms});\
var w=document.getElementById('cu-wait'),s=document.getElementById('cu-stay');\
if(w&&s){{w.hidden=false;s.onclick=function(){{clearTimeout(t);w.hidden=true;}};}}"
        )
    };
    format!(
        "<script>(function(){{var p={},f={};{go}}})();</script>",
        js_string(provider_logout_url),
        js_string(fallback),
    )
}

/// The logout page. It sends the browser to ClaveÚnica's logout at once, then to `fallback`
/// (see `leave_claveunica`).
#[must_use]
pub fn logout(agency: &Agency, provider_logout_url: &str, fallback: &str) -> String {
    let script = leave_claveunica(provider_logout_url, fallback, 0);
    layout(
        agency,
        "Sesión cerrada",
        &format!(
            "<h1>Sesión cerrada</h1><p>Cerraste tu sesión en este servicio. Ahora cerramos también tu sesión de \
ClaveÚnica.</p>{script}<noscript><p><a href=\"{}\">Cerrar sesión en ClaveÚnica</a></p></noscript>\
<p><a href=\"{}\">Volver</a></p>",
            escape(provider_logout_url),
            escape(fallback),
        ),
        "",
    )
}

/// The page with the ClaveÚnica button: what a person sees on a protected page before logging
/// in, when the gate is configured to show it (`pages.button_page`), and at the login path
/// without a return path. `login_href` starts the login (`login_path?return_to=…`);
/// `legacy_login`, while a migration keeps the old login, is a plain secondary link, never a
/// second button.
#[must_use]
pub fn button_page(agency: &Agency, login_href: &str, legacy_login: Option<&str>) -> String {
    let legacy = legacy_login
        .map(|href| {
            format!("<p>¿No tienes ClaveÚnica? <a href=\"{}\">Ingresa con la clave del servicio</a></p>", escape(href))
        })
        .unwrap_or_default();
    layout(
        agency,
        "Iniciar sesión",
        &format!(
            "<h1>Ingresa a {}</h1><p>Para continuar, inicia sesión con tu ClaveÚnica.</p><p>{}</p>{legacy}",
            escape(&agency.name),
            button(login_href),
        ),
        "",
    )
}

/// The page for a login asked for inside a frame: ClaveÚnica's form must be a whole page with
/// the address bar in view, so this page takes the top window to `login_href`, and offers a
/// link that does the same where scripts do not run (or a browser refuses a frame that moves
/// its parent without a click).
#[must_use]
pub fn frame_breakout(agency: &Agency, login_href: &str) -> String {
    let script = format!(
        "<script>(function(){{try{{window.top.location.assign({});}}catch(e){{}}}})();</script>",
        js_string(login_href)
    );
    layout(
        agency,
        "Inicia sesión en una ventana completa",
        &format!(
            "<h1>Inicia sesión en una ventana completa</h1><p>Por tu seguridad, ClaveÚnica se abre en la ventana \
completa del navegador, nunca dentro de otra página.</p><p>{}</p>",
            button(login_href),
        ),
        &script,
    )
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn hostile() -> Agency {
        Agency {
            name: "<b>Agencia</b>".into(),
            help: "\"ayuda\"".into(),
            help_url: Some("/ayuda?a=1&b=\"2\"".into()),
            home: "/\"><script>".into(),
        }
    }

    #[test]
    fn values_are_escaped() {
        let page = error(&Agency::default(), "Error", "<script>x</script>", "\"ref", Some("/a?b=1&c=\"2\""));
        assert!(!page.contains("<script>x"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("&quot;ref"));
        assert!(page.contains("/a?b=1&amp;c=&quot;2&quot;"));
        assert_eq!(
            escape(r#"<a href="x">'Ñ' & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;Ñ&#x27; &amp; co&lt;/a&gt;"
        );
        let page = button_page(&hostile(), "/l?return_to=\"x\"", Some("/old\"<"));
        for raw in ["<b>Agencia", "\"ayuda\"", "/ayuda?a=1&b", "/\"><script>", "to=\"x\"", "/old\"<"] {
            assert!(!page.contains(raw), "{raw} unescaped: {page}");
        }
        assert!(page.contains("&lt;b&gt;Agencia&lt;/b&gt;") && page.contains("/old&quot;&lt;"), "{page}");
    }

    #[test]
    fn logout_page_cannot_break_out_of_its_script() {
        let page = logout(&Agency::default(), "https://p/logout?redirect=</script><script>alert(1)</script>", "/\"';");
        assert_eq!(page.matches("<script>").count(), 1);
        assert!(page.contains("\\u003c/script\\u003e"));
        assert!(page.contains("setTimeout"));
        let page = frame_breakout(&Agency::default(), "/l?return_to=</script><script>alert(1)");
        assert_eq!(page.matches("<script>").count(), 1, "{page}");
    }

    /// Every page, as a person would meet it.
    fn every_page(agency: &Agency) -> Vec<(&'static str, String)> {
        vec![
            ("error", error(agency, "Ingreso cancelado", "No terminaste.", "ab12", Some("/x"))),
            (
                "forbidden",
                forbidden(agency, "https://accounts.claveunica.gob.cl/api/v1/accounts/app/logout", "/", "ab12"),
            ),
            ("logout", logout(agency, "https://accounts.claveunica.gob.cl/api/v1/accounts/app/logout", "/")),
            ("button", button_page(agency, "/claveunica/login?return_to=%2F", None)),
            ("frame", frame_breakout(agency, "/claveunica/login?return_to=%2F")),
        ]
    }

    #[test]
    fn every_page_names_the_agency_and_offers_help_and_home_in_landmarks() {
        let agency = Agency {
            name: "Servicio de Prueba".into(),
            help: "Mesa de ayuda".into(),
            help_url: Some("tel:+56200000000".into()),
            home: "https://www.prueba.gob.cl/".into(),
        };
        for (name, page) in every_page(&agency) {
            assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"es\">"), "{name}");
            for part in [
                "<header><a href=\"https://www.prueba.gob.cl/\">Servicio de Prueba</a></header>",
                "<main>",
                "</main><footer><p>¿Necesitas ayuda? <a href=\"tel:+56200000000\">Mesa de ayuda</a></p>",
                "<a href=\"https://www.prueba.gob.cl/\">Ir al inicio</a>",
                "| Servicio de Prueba</title>",
            ] {
                assert!(page.contains(part), "{name} lacks {part}: {page}");
            }
            assert_eq!(page.matches("<h1>").count(), 1, "{name}");
            assert_eq!(page.matches("<main>").count(), 1, "{name}");
        }
        // Without configuration the pages still name a place for help.
        let page = error(&Agency::default(), "t", "m", "r", None);
        assert!(page.contains("<a href=\"https://claveunica.gob.cl/\">Ayuda de ClaveÚnica</a>"), "{page}");
    }

    /// The formal forms (usted) the old pages used, found in `text`.
    fn formal_words(text: &str) -> Vec<&'static str> {
        // A word right after a tag counts as after a space.
        let lower = text.to_lowercase().replace('>', "> ");
        ["usted", " su ", "intente", "indíquelo", "vuelva", "contacte", "espere"]
            .into_iter()
            .filter(|w| lower.contains(w))
            .collect()
    }

    #[test]
    fn pages_speak_to_the_citizen_as_tu_and_load_nothing_from_elsewhere() {
        // Positive control: the old forbidden page's words are caught.
        assert_eq!(
            formal_words("<p>Su RUN aún no está habilitado. Si cree que es un error, contacte a la mesa.</p>"),
            vec![" su ", "contacte"]
        );
        for (name, page) in every_page(&Agency::default()) {
            let lower = page.to_lowercase();
            assert!(formal_words(&page).is_empty(), "{name} says {:?}: {page}", formal_words(&page));
            // Nothing the browser would fetch: no src, no stylesheet link, no url() in CSS,
            // no @import. The only absolute URLs are links a person may follow.
            for fetch in [" src=", "<link", "url(", "@import"] {
                assert!(!lower.contains(fetch), "{name} fetches with {fetch:?}");
            }
        }
    }

    #[test]
    fn the_button_is_the_official_one() {
        let page = button_page(&Agency::default(), "/claveunica/login?return_to=%2Ftramites", Some("/login"));
        let button = "<a class=\"cu-btn\" href=\"/claveunica/login?return_to=%2Ftramites\" target=\"_top\" \
aria-label=\"Iniciar sesión con ClaveÚnica\">";
        assert!(page.contains(button), "{page}");
        assert!(page.contains("<span>Iniciar sesión</span></a>"), "{page}");
        assert!(page.contains("background:#0F69C4"), "{page}");
        // The old login is a plain link after the button, never a second button.
        assert_eq!(page.matches("class=\"cu-btn\"").count(), 1);
        let legacy = page.find("<a href=\"/login\">Ingresa con la clave del servicio</a>").unwrap();
        assert!(legacy > page.find(button).unwrap());
        assert!(!button_page(&Agency::default(), "/l", None).contains("clave del servicio"));
    }

    #[test]
    fn the_frame_page_moves_the_top_window_and_links_there_without_script() {
        let page = frame_breakout(&Agency::default(), "/claveunica/login?return_to=%2Fa");
        assert!(page.contains("window.top.location.assign(\"/claveunica/login?return_to=%2Fa\")"), "{page}");
        assert!(page.contains("href=\"/claveunica/login?return_to=%2Fa\" target=\"_top\""), "{page}");
    }

    #[test]
    fn the_forbidden_page_leaves_claveunica_after_a_moment() {
        let page = forbidden(&Agency::default(), "https://p/logout?redirect=</script>", "/\"", "R1");
        assert_eq!(page.matches("<script>").count(), 1);
        assert!(page.contains("\\u003c/script\\u003e"));
        assert!(page.contains(&format!("}},{FORBIDDEN_LOGOUT_DELAY_MS});")), "{page}");
        // The timer can be stopped, and its notice is hidden until the script runs.
        assert!(page.contains("<p id=\"cu-wait\" hidden>En 5 segundos") && page.contains("clearTimeout(t)"), "{page}");
        assert!(page.contains("href=\"https://p/logout?redirect=&lt;/script&gt;\""), "{page}");
        // The logout page itself does not wait.
        assert!(!logout(&Agency::default(), "https://p/logout", "/").contains(&format!("{FORBIDDEN_LOGOUT_DELAY_MS}")));
    }
}
