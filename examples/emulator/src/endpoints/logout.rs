//! The logout endpoint, which relying parties send the browser to after ending their own
//! session.

use super::is_plain_http_url;
use super::pages::error_page;
use crate::http::{Reply, Req};
use crate::modes::LogoutMode;

/// The emulator keeps no SSO session, so logging out only has to send the
/// browser on. Without `redirect` the real service answers 204 with no body, and sometimes
/// with it too (the `no_content` logout mode).
pub(super) fn logout(req: &Req, mode: LogoutMode) -> Reply {
    let p = req.query_params();
    if mode == LogoutMode::NoContent {
        return Reply::empty(204);
    }
    match p.get("redirect") {
        Some(target) if is_plain_http_url(target) => Reply::redirect(target.to_string()),
        Some(_) => error_page(400, "La dirección de retorno no es válida"),
        None => Reply::empty(204),
    }
}

#[cfg(test)]
mod tests {
    use crate::endpoints::tests::{app, get, set, NOW};
    use crate::endpoints::{route, LOGOUT_PATH};

    #[test]
    fn logout_redirects_to_a_plain_url_or_answers_204() {
        let app = app(None);
        assert_eq!(route(&app, &get(LOGOUT_PATH, ""), NOW).status, 204);
        let reply = route(&app, &get(LOGOUT_PATH, "redirect=https%3A%2F%2Fa.example%2Fbye"), NOW);
        assert_eq!(reply.status, 302);
        assert_eq!(reply.header("Location"), Some("https://a.example/bye"));
    }

    #[test]
    fn the_no_content_mode_answers_204_even_with_a_redirect() {
        let app = app(None);
        set(&app, r#"{"logout": "no_content"}"#);
        let reply = route(&app, &get(LOGOUT_PATH, "redirect=https%3A%2F%2Fa.example%2Fbye"), NOW);
        assert_eq!((reply.status, reply.header("Location")), (204, None));
        assert!(reply.body.is_empty());
        set(&app, r#"{"logout": "normal"}"#);
        assert_eq!(route(&app, &get(LOGOUT_PATH, "redirect=https%3A%2F%2Fa.example%2Fbye"), NOW).status, 302);
    }
}
