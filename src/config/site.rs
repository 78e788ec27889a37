//! The site section: the gate's own places on the site it guards. The callback (the path of
//! `redirect_uri`, whose scheme also decides whether cookies are `Secure`), the login and
//! logout paths, and where the provider sends the browser after logout.

use super::error::ProblemKind;
use super::reader::Reader;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["redirect_uri", "login_path", "logout_path", "post_logout_redirect"];

/// The site section, read; its fields become [`super::Config`]'s.
pub(super) struct Site {
    pub(super) redirect_uri: String,
    pub(super) callback_path: String,
    pub(super) secure_cookies: bool,
    pub(super) login_path: String,
    pub(super) logout_path: String,
    pub(super) post_logout_redirect: Option<String>,
}

/// Reads the section; `None` when `redirect_uri` is missing or wrong (a problem says which).
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>) -> Option<Site> {
    let redirect_uri = r.required_string("redirect_uri");
    let redirect_url = redirect_uri.as_deref().and_then(|s| r.url("redirect_uri", s));
    let callback_path = redirect_url.as_ref().map(|u| u.path().to_string());
    let secure_cookies = redirect_url.as_ref().is_some_and(|u| u.scheme() == "https");

    let login_path = path(r, "login_path", "/claveunica/login");
    let logout_path = path(r, "logout_path", "/claveunica/logout");
    if callback_path.as_ref().is_some_and(|cb| *cb == login_path || *cb == logout_path) {
        r.problem("redirect_uri", ProblemKind::CallbackClash);
    }
    if login_path == logout_path {
        r.problem("logout_path", ProblemKind::SameAs("login_path"));
    }
    let post_logout_redirect = r.string("post_logout_redirect").filter(|s| r.url("post_logout_redirect", s).is_some());
    Some(Site {
        redirect_uri: redirect_uri?,
        callback_path: callback_path?,
        secure_cookies,
        login_path,
        logout_path,
        post_logout_redirect,
    })
}

/// A path the gate answers itself: `default` unless `key` gives a valid one.
fn path(r: &mut Reader<'_>, key: &str, default: &str) -> String {
    match r.string(key) {
        Some(p) if valid_path(&p) => p,
        Some(_) => {
            r.problem(key, ProblemKind::MustBe("a path starting with / without query, backslash or spaces"));
            default.to_string()
        }
        None => default.to_string(),
    }
}

pub(super) fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains(['?', '#', '\\'])
        && path.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::super::testing::{assert_kinds, assert_refused, base, load, with};
    use super::super::ProblemKind;

    #[test]
    fn bad_values() {
        assert_refused(&[
            ("redirect_uri", json!("https://trámites.example.cl/claveunica/callback"), "redirect_uri"),
            ("redirect_uri", json!("https://x/cb#frag"), "redirect_uri"),
            ("redirect_uri", json!("https://x/claveunica/login"), "redirect_uri"),
            ("login_path", json!("claveunica/login"), "login_path"),
            ("logout_path", json!("//evil"), "logout_path"),
            ("post_logout_redirect", json!("javascript:alert(1)"), "post_logout_redirect"),
        ]);
    }

    #[test]
    fn what_is_wrong_is_told_by_kind() {
        let cases = [
            ("redirect_uri", json!("https://x/claveunica/logout"), "redirect_uri", ProblemKind::CallbackClash),
            ("logout_path", json!("/claveunica/login"), "logout_path", ProblemKind::SameAs("login_path")),
            (
                "login_path",
                json!("/a b"),
                "login_path",
                ProblemKind::MustBe("a path starting with / without query, backslash or spaces"),
            ),
        ];
        assert_kinds(&cases);
    }

    #[test]
    fn where_logout_lands() {
        let c = load(&with("post_logout_redirect", json!("https://portal.example.gob.cl/bye"))).unwrap();
        assert_eq!(c.post_logout_redirect.as_deref(), Some("https://portal.example.gob.cl/bye"));
        assert!(load(&base()).unwrap().post_logout_redirect.is_none());
    }
}
