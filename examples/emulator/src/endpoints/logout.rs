//! The logout endpoint, which relying parties send the browser to after ending their own
//! session. It ends ClaveÚnica's own session in that browser (the single sign-on of
//! `authorize.rs`), then, like the real service, sends the browser on to `redirect` only when
//! that URL's authority (`host[:port]`) is one registered with the credentials as a Logout URI
//! (`--logout-uri`; ClaveÚnica registers only the authority); otherwise it answers 204 with no
//! body, and the relying party's own fallback has to take the browser on.

use super::pages::error_page;
use super::{is_plain_http_url, logout_authority, set_sso_cookie, sso_cookie, App, Config};
use crate::http::{Reply, Req};
use crate::modes::LogoutMode;

/// Whether the logout may redirect to `target`: its authority is a Logout URI's registered by
/// any client (the logout request names no client). With nothing registered at all (neither a
/// Logout URI nor a redirect URI, by any client) anything is accepted, a development
/// convenience for a bare emulator; a registered redirect URI alone does not register its
/// authority for logout, as it does not at ClaveÚnica.
fn registered(config: &Config, target: &str) -> bool {
    let logout_uris = || config.clients.iter().flat_map(|c| &c.logout_uris).flat_map(|u| u.split(','));
    if logout_uris().next().is_none() {
        return config.clients.iter().all(|c| c.redirect_uri.is_none());
    }
    let Some(target) = logout_authority(target) else { return false };
    logout_uris().filter_map(logout_authority).any(|a| a == target)
}

pub(super) fn logout(app: &App, req: &Req, mode: LogoutMode) -> Reply {
    let session = sso_cookie(req);
    if let Some(id) = session {
        app.state().end_sso(id);
    }
    let p = req.query_params();
    let mut reply = match p.get("redirect") {
        _ if mode == LogoutMode::NoContent => Reply::empty(204),
        Some(target) if is_plain_http_url(target) => {
            if registered(&app.config, target) {
                Reply::redirect(target.to_string())
            } else {
                Reply::empty(204)
            }
        }
        Some(_) => error_page(400, "La dirección de retorno no es válida"),
        None => Reply::empty(204),
    };
    if session.is_some() {
        set_sso_cookie(&mut reply, None, 0);
    }
    reply
}

#[cfg(test)]
mod tests {
    use crate::endpoints::tests::{app, get, set, NOW};
    use crate::endpoints::{route, App, LOGOUT_PATH};

    const BYE: &str = "redirect=https%3A%2F%2Fa.example%2Fbye";

    fn registering(logout_uris: &[&str]) -> App {
        let mut app = app(Some("https://a.example/callback"));
        app.config.clients[0].logout_uris = logout_uris.iter().map(|u| u.to_string()).collect();
        app
    }

    #[test]
    fn logout_redirects_only_to_a_registered_authority_else_answers_204() {
        // Registered as ClaveÚnica takes it: an authority (here behind a scheme and a path, which
        // do not count), several separated by commas.
        let app = registering(&["https://a.example/", "c.example:8443,D.example"]);
        assert_eq!(route(&app, &get(LOGOUT_PATH, ""), NOW).status, 204);
        let reply = route(&app, &get(LOGOUT_PATH, BYE), NOW);
        assert_eq!((reply.status, reply.header("Location")), (302, Some("https://a.example/bye")));
        for listed in
            ["http%3A%2F%2Fa.example%2Fx", "https%3A%2F%2Fc.example%3A8443%2F", "https%3A%2F%2Fd.example%2Fadios"]
        {
            let reply = route(&app, &get(LOGOUT_PATH, &format!("redirect={listed}")), NOW);
            assert_eq!(reply.status, 302, "{listed}");
        }
        for other in [
            "https%3A%2F%2Fb.example%2Fbye",
            "https%3A%2F%2Fa.example%3A8443%2Fbye",
            "https%3A%2F%2Fc.example%2F",
            "https%3A%2F%2Fa.example.evil%2F",
        ] {
            let reply = route(&app, &get(LOGOUT_PATH, &format!("redirect={other}")), NOW);
            assert_eq!((reply.status, reply.header("Location")), (204, None), "{other}");
            assert!(reply.body.is_empty());
        }
        // The logout names no client: a second client's Logout URIs count as well.
        let mut app = registering(&["https://a.example/"]);
        app.config.clients.push(crate::endpoints::Client {
            id: "client-b".into(),
            secret: "sb".into(),
            redirect_uri: Some("https://b.example/callback".into()),
            logout_uris: vec!["https://b.example/".into()],
        });
        for (target, status) in [("https%3A%2F%2Fb.example%2Fbye", 302), (BYE.trim_start_matches("redirect="), 302)] {
            assert_eq!(route(&app, &get(LOGOUT_PATH, &format!("redirect={target}")), NOW).status, status, "{target}");
        }
        // A registered redirect URI does not register its authority for logout.
        let app = registering(&[]);
        assert_eq!(route(&app, &get(LOGOUT_PATH, BYE), NOW).status, 204);
        // A bare emulator, nothing registered: anything.
        assert_eq!(route(&crate::endpoints::tests::app(None), &get(LOGOUT_PATH, BYE), NOW).status, 302);
    }

    #[test]
    fn the_no_content_mode_answers_204_even_for_a_registered_authority() {
        let app = registering(&["https://a.example/"]);
        set(&app, r#"{"logout": "no_content"}"#);
        let reply = route(&app, &get(LOGOUT_PATH, BYE), NOW);
        assert_eq!((reply.status, reply.header("Location")), (204, None));
        assert!(reply.body.is_empty());
        set(&app, r#"{"logout": "normal"}"#);
        assert_eq!(route(&app, &get(LOGOUT_PATH, BYE), NOW).status, 302);
    }
}
