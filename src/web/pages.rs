//! The pages people see, in Spanish: errors, a cancelled login, logout. Every interpolated
//! value is HTML-escaped; the pages carry no external resources, so they render even when
//! the legacy application is down.

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

fn layout(title: &str, body: &str, head_extra: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"es\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title>{head_extra}\
<style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#1c1c1c}}\
h1{{font-size:1.4rem;color:#0f69b4}}.ref{{color:#555;font-size:.9rem}}a{{color:#0f69b4}}</style>\
</head><body>{body}</body></html>\n",
        title = escape(title),
    )
}

/// A failure page: what happened, what to do, and the reference id that is also in the
/// proxy's log line for this failure.
#[must_use]
pub fn error(title: &str, message: &str, reference: &str, retry: Option<&str>) -> String {
    let retry =
        retry.map(|href| format!("<p><a href=\"{}\">Intentar nuevamente</a></p>", escape(href))).unwrap_or_default();
    layout(
        title,
        &format!(
            "<h1>{}</h1><p>{}</p>{retry}<p class=\"ref\">Código de referencia: <code>{}</code>. \
Indíquelo si contacta a la mesa de ayuda.</p>",
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
/// to log out a RUN it does not know. The link does it at once, and without JavaScript.
#[must_use]
pub fn forbidden(provider_logout_url: &str, fallback: &str, reference: &str) -> String {
    layout(
        "Acceso no habilitado",
        &format!(
            "<h1>Acceso no habilitado</h1><p>Su RUN aún no está habilitado para ingresar con ClaveÚnica a este \
servicio. Si cree que es un error, contacte a la mesa de ayuda.</p><p>Cerrando también su sesión de ClaveÚnica…</p>\
{script}<p><a href=\"{}\">Cerrar sesión</a></p><p class=\"ref\">Código de referencia: <code>{}</code>.</p>",
            escape(provider_logout_url),
            escape(reference),
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
fn leave_claveunica(provider_logout_url: &str, fallback: &str, delay_ms: u32) -> String {
    let go = "window.location.assign(p);setTimeout(function(){window.location.assign(f);},1500);";
    let go = if delay_ms == 0 { go.to_string() } else { format!("setTimeout(function(){{{go}}},{delay_ms});") };
    format!(
        "<script>(function(){{var p={},f={};{go}}})();</script>",
        js_string(provider_logout_url),
        js_string(fallback),
    )
}

/// The logout page. It sends the browser to ClaveÚnica's logout at once, then to `fallback`
/// (see `leave_claveunica`).
#[must_use]
pub fn logout(provider_logout_url: &str, fallback: &str) -> String {
    let script = leave_claveunica(provider_logout_url, fallback, 0);
    layout(
        "Sesión cerrada",
        &format!(
            "<h1>Sesión cerrada</h1><p>Cerrando también su sesión de ClaveÚnica…</p>{script}\
<noscript><p><a href=\"{}\">Cerrar sesión en ClaveÚnica</a></p></noscript>\
<p><a href=\"{}\">Volver al inicio</a></p>",
            escape(provider_logout_url),
            escape(fallback),
        ),
        "",
    )
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = error("Error", "<script>x</script>", "\"ref", Some("/a?b=1&c=\"2\""));
        assert!(!page.contains("<script>x"));
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("&quot;ref"));
        assert!(page.contains("/a?b=1&amp;c=&quot;2&quot;"));
        assert_eq!(
            escape(r#"<a href="x">'Ñ' & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;Ñ&#x27; &amp; co&lt;/a&gt;"
        );
    }

    #[test]
    fn logout_page_cannot_break_out_of_its_script() {
        let page = logout("https://p/logout?redirect=</script><script>alert(1)</script>", "/\"';");
        assert_eq!(page.matches("<script>").count(), 1);
        assert!(page.contains("\\u003c/script\\u003e"));
        assert!(page.contains("setTimeout"));
    }

    #[test]
    fn the_forbidden_page_leaves_claveunica_after_a_moment() {
        let page = forbidden("https://p/logout?redirect=</script>", "/\"", "R1");
        assert_eq!(page.matches("<script>").count(), 1);
        assert!(page.contains("\\u003c/script\\u003e"));
        assert!(page.contains(&format!("}},{FORBIDDEN_LOGOUT_DELAY_MS});")), "{page}");
        assert!(page.contains("href=\"https://p/logout?redirect=&lt;/script&gt;\""), "{page}");
        // The logout page itself does not wait.
        assert!(!logout("https://p/logout", "/").contains(&format!("{FORBIDDEN_LOGOUT_DELAY_MS}")));
    }
}
