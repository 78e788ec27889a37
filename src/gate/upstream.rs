//! The forwarded request's way there and back: which client headers and trailers never reach
//! the application, and what becomes of the application's answer (the logout it may ask for,
//! the cookies the gate adds, and the caching of an answer meant for one person).

use super::decision::{AnswerChange, Level, LogLine, Upstream, UpstreamAnswer};
use super::events::{Event, Events};
use super::register::Record;
use super::request::Request;
use super::Portal;

impl Portal {
    /// Whether a client-sent header must never reach the application: it has the name (in
    /// any spelling) of an identity header one of the gate's sites sets.
    #[must_use]
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.identity_names.iter().any(|headers| headers.is_identity_name(name))
    }

    /// The client headers a forwarded request loses: identity names that `set` does not
    /// already replace (setting a header replaces every copy of it). Each name once.
    pub(super) fn removals(&self, req: &Request<'_>, set: &[(String, String)]) -> Vec<String> {
        let mut remove: Vec<String> = Vec::new();
        for (name, _) in req.headers {
            let replaced = set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
            if !replaced && self.is_identity_header(name) && !remove.iter().any(|r| r.eq_ignore_ascii_case(name)) {
                remove.push(name.to_ascii_lowercase());
            }
        }
        remove
    }

    /// The request's trailers arrived (HTTP/2, or a chunked HTTP/1.1 body): the names of those
    /// that must not reach the application, which never sees identity from a trailer.
    #[must_use]
    pub fn on_request_trailers(&self, trailers: &[(&str, &str)]) -> Vec<String> {
        self.removals(&Request { method: "", path: "", headers: trailers }, &[])
    }

    /// The application answered a forwarded request. When it answered an identified request
    /// with the logout response header (for instance because it does not know the RUN), the
    /// session ends and the logout page replaces its answer; otherwise the answer passes with
    /// the gate's cookies added.
    ///
    /// An answer to an identified request, or one carrying the gate's cookies, is one person's:
    /// a shared cache (a CDN, an agency's proxy) that kept it would hand that person's page, or
    /// their session cookie, to the next visitor. So it leaves `private` (see
    /// [`private_cache_control`]) and with `Vary: Cookie`.
    pub fn on_upstream_response(&self, upstream: Upstream, answer: &UpstreamAnswer<'_>) -> AnswerChange {
        let asked = &self.config.logout_response_header;
        if upstream.identified && answer.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(asked)) {
            let log = LogLine { level: Level::Info, message: "logout requested by the application".into() };
            let record = upstream.record.map_or_else(|| Record::new("logout"), |r| *r);
            return AnswerChange::Replace(self.logout_response(
                200,
                Vec::new(),
                log,
                Events::one(Event::AppLogout),
                record,
            ));
        }
        let personal = upstream.identified || !upstream.set_cookies.is_empty();
        let mut add: Vec<(&'static str, String)> =
            upstream.set_cookies.into_iter().map(|c| ("set-cookie", c)).collect();
        let mut set = Vec::new();
        if personal {
            if let Some(cache_control) = private_cache_control(answer.headers) {
                set.push(("cache-control", cache_control));
            }
            if !varies_on_cookie(answer.headers) {
                add.push(("vary", "Cookie".to_string()));
            }
        }
        AnswerChange::Pass { set, add }
    }
}

/// The `Cache-Control` for one person's answer, or `None` when the application's already
/// keeps it out of shared caches (`no-store`, or a plain `private` and nothing shared caches
/// read instead). The application's directives are kept for the browser's own cache, less
/// `public`, `s-maxage` and a `private` limited to some fields (`private="Set-Cookie"` lets a
/// shared cache keep the rest), and `private` is added. `private` rather than `no-store`, so an
/// enforced path's scripts and styles stay in the browser's cache.
fn private_cache_control(headers: &[(&str, &str)]) -> Option<String> {
    let directives: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
        .flat_map(|(_, v)| split_list(v))
        .collect();
    let name = |d: &str| d.split('=').next().unwrap_or_default().trim().to_ascii_lowercase();
    if directives.iter().any(|d| name(d) == "no-store") {
        return None;
    }
    let shared = |d: &&str| matches!(name(d).as_str(), "public" | "s-maxage" | "private");
    let plain_private = directives.iter().any(|d| d.eq_ignore_ascii_case("private"));
    let kept: Vec<&str> = directives.iter().copied().filter(|d| !shared(d)).collect();
    if plain_private && kept.len() + 1 == directives.len() {
        return None;
    }
    Some(std::iter::once("private").chain(kept).collect::<Vec<_>>().join(", "))
}

/// Whether the answer already says it differs by `Cookie` (or by everything, `*`).
fn varies_on_cookie(headers: &[(&str, &str)]) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
        .flat_map(|(_, v)| split_list(v))
        .any(|f| f.eq_ignore_ascii_case("cookie") || f == "*")
}

/// The items of a comma-separated header value, trimmed, empty ones dropped; a comma inside
/// a quoted string (`no-cache="a, b"`) does not split.
fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(value.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(value.get(start..).unwrap_or_default());
    items.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_persons_answer_is_kept_out_of_shared_caches() {
        for (given, want) in [
            (&[][..], Some("private")),
            (&[("Cache-Control", "public, max-age=600")][..], Some("private, max-age=600")),
            (
                &[("cache-control", "max-age=60"), ("Cache-Control", "PUBLIC, s-maxage=600")][..],
                Some("private, max-age=60"),
            ),
            (&[("cache-control", "private=\"set-cookie, x\", max-age=60")][..], Some("private, max-age=60")),
            (&[("cache-control", "no-cache")][..], Some("private, no-cache")),
            (&[("cache-control", "private, max-age=60")][..], None),
            (&[("cache-control", "Private")][..], None),
            (&[("cache-control", "public, no-store")][..], None),
            (&[("cache-control", "No-Store")][..], None),
        ] {
            assert_eq!(private_cache_control(given).as_deref(), want, "{given:?}");
        }
        assert!(varies_on_cookie(&[("Vary", "Accept-Encoding, cookie")]));
        assert!(varies_on_cookie(&[("vary", "*")]));
        assert!(!varies_on_cookie(&[("vary", "Accept-Encoding"), ("x-cookie", "vary")]));
    }
}
