//! Reading the `Cookie` request header and writing `Set-Cookie` answers. The gate finds its
//! own cookies in one pass and rebuilds the header without them, so the legacy application
//! only ever sees its own cookies.

/// Splits `Cookie` header values into `(name, value)` pairs, in order. Malformed pieces
/// (no `=`) are skipped, as browsers do.
pub fn pairs<'a>(headers: impl IntoIterator<Item = &'a str>) -> impl Iterator<Item = (&'a str, &'a str)> {
    headers
        .into_iter()
        .flat_map(|h| h.split(';'))
        .filter_map(|piece| piece.split_once('='))
        .map(|(n, v)| (n.trim(), v.trim()))
        .filter(|(n, _)| !n.is_empty())
}

/// The `Cookie` header to send upstream once the pieces for which `is_ours` holds are taken
/// out: `None` when nothing is left. Pieces are kept byte for byte, malformed ones included,
/// because the application may rely on them.
#[must_use]
pub fn without<'a>(headers: impl IntoIterator<Item = &'a str>, is_ours: impl Fn(&str) -> bool) -> Option<String> {
    let mut out = String::new();
    for piece in headers.into_iter().flat_map(|h| h.split(';')) {
        let piece = piece.trim();
        if piece.is_empty() {
            continue;
        }
        let name = piece.split_once('=').map_or(piece, |(n, _)| n).trim();
        if is_ours(name) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(piece);
    }
    (!out.is_empty()).then_some(out)
}

/// The most paths a cookie is deleted at in one answer ([`CookieAttrs::delete_on_paths`]).
pub const MAX_DELETE_PATHS: usize = 8;

/// Attributes shared by every cookie the gate sets.
#[derive(Debug, Clone, Copy)]
pub struct CookieAttrs {
    /// `Secure` (with the `__Host-` prefix in the name, chosen by the configuration).
    pub secure: bool,
}

impl CookieAttrs {
    /// A `Set-Cookie` value for a cookie that lives `max_age_s` seconds.
    #[must_use]
    pub fn set(&self, name: &str, value: &str, max_age_s: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Lax{secure}")
    }

    /// A `Set-Cookie` value that deletes the cookie.
    #[must_use]
    pub fn delete(&self, name: &str) -> String {
        self.delete_at(name, "/")
    }

    /// A `Set-Cookie` value that deletes the cookie set with this `Path`.
    fn delete_at(&self, name: &str, path: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{name}=; Path={path}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax{secure}"
        )
    }

    /// Deletions of the cookie at `/` and at every path a cookie sent with a request for
    /// `request_path` may have been set with (its ancestors, and itself), shallowest first: a
    /// cookie another site tossed in at a deeper `Path` is cleared only there. At most
    /// [`MAX_DELETE_PATHS`]; a path with characters that could end the attribute is skipped.
    /// (A cookie set for a parent `Domain` cannot be named from here; the `__Host-` prefix of
    /// an https gate keeps those out in the first place.)
    #[must_use]
    pub fn delete_on_paths(&self, name: &str, request_path: &str) -> Vec<String> {
        let mut out = vec![self.delete(name)];
        let safe = request_path.bytes().all(|b| b.is_ascii_graphic() && b != b';' && b != b',');
        // A `__Host-` cookie only ever has `Path=/`: browsers refuse one set elsewhere.
        if !safe || !request_path.starts_with('/') || name.starts_with("__Host-") {
            return out;
        }
        let mut end = 0;
        while out.len() < MAX_DELETE_PATHS {
            let next = request_path[end + 1..].find('/').map_or(request_path.len(), |i| end + 1 + i);
            if next <= end + 1 {
                break;
            }
            let prefix = &request_path[..next];
            out.push(self.delete_at(name, prefix));
            if next == request_path.len() {
                break;
            }
            end = next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn pairs_across_headers() {
        let got: Vec<_> = pairs(["a=1; b=2", "c=3;junk; d = 4 "]).collect();
        assert_eq!(got, [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    }

    #[test]
    fn without_keeps_the_apps_cookies_only() {
        let ours = |n: &str| n == "claveunica_session" || n.starts_with("claveunica_flow_");
        assert_eq!(
            without(["JSESSIONID=abc; claveunica_session=xyz; claveunica_flow_q1=zz; theme=dark"], ours).as_deref(),
            Some("JSESSIONID=abc; theme=dark")
        );
        assert_eq!(without(["claveunica_session=xyz"], ours), None);
        assert_eq!(without(["a=1", "claveunica_session=x", "b=2"], ours).as_deref(), Some("a=1; b=2"));
        // A cookie named by prefix only in part is the app's, not ours.
        assert_eq!(without(["claveunica_sessionX=1"], ours).as_deref(), Some("claveunica_sessionX=1"));
    }

    #[test]
    fn set_cookie_attributes() {
        let a = CookieAttrs { secure: true };
        let s = a.set("__Host-s", "v", 60);
        assert_eq!(s, "__Host-s=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure");
        assert!(CookieAttrs { secure: false }.delete("s").contains("Max-Age=0"));
        assert!(!CookieAttrs { secure: false }.set("s", "v", 1).contains("Secure"));
    }

    #[test]
    fn deletions_reach_every_path_a_cookie_could_come_from() {
        let a = CookieAttrs { secure: false };
        let paths = |p: &str| -> Vec<String> {
            a.delete_on_paths("s", p)
                .iter()
                .map(|c| c.split("; ").find_map(|x| x.strip_prefix("Path=")).unwrap_or("?").to_string())
                .collect()
        };
        assert_eq!(paths("/"), ["/"]);
        assert_eq!(paths("/tramites"), ["/", "/tramites"]);
        assert_eq!(paths("/tramites/certificado/"), ["/", "/tramites", "/tramites/certificado"]);
        assert_eq!(paths("/a//b"), ["/", "/a"]);
        // Nothing that could end the attribute or add one.
        assert_eq!(paths("/a;Domain=evil.example"), ["/"]);
        assert_eq!(paths("/a b"), ["/"]);
        assert_eq!(paths(&"/x".repeat(50)).len(), MAX_DELETE_PATHS);
        assert!(a.delete_on_paths("s", "/t").iter().all(|c| c.contains("Max-Age=0")));
        assert_eq!(a.delete_on_paths("__Host-s", "/a/b").len(), 1);
    }
}
