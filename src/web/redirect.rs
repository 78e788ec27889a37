//! Where a browser may be sent: the return-to validation that keeps the gate from being an
//! open redirect. Run when a login starts and again at the callback.

use percent_encoding::percent_decode_str;

/// The longest return path kept; a longer one falls back to `/`.
pub const MAX_RETURN_LEN: usize = 2048;

/// `candidate` if it is a path on this origin, else `None`.
///
/// Refused: anything not starting with a single `/` (`//evil`, `https://evil`,
/// `javascript:`), backslashes (browsers read `/\evil` as `//evil`), whitespace and control
/// characters (stripped by browsers, so `/ /evil` can become `//evil`), and the same tricks
/// hidden behind percent-encoding.
#[must_use]
pub fn same_origin_path(candidate: &str) -> Option<&str> {
    if candidate.len() > MAX_RETURN_LEN || !plain_path(candidate) {
        return None;
    }
    let decoded = percent_decode_str(candidate).decode_utf8_lossy();
    // Spaces are fine inside a path (`/a%20b`), but not where a browser that drops them would
    // see `//`; control characters never belong in one.
    let squeezed: String = decoded.chars().filter(|c| !c.is_whitespace()).collect();
    let decoded_ok = !decoded.chars().any(char::is_control) && plain_path(&squeezed);
    decoded_ok.then_some(candidate)
}

/// The path a browser sent to `candidate` (a same-origin path) asks the server for, in a
/// form to compare with the gate's own paths: without fragment and query, percent-decoded,
/// path parameters (`;x`) and a trailing `/` dropped, in lower case. `None` when a dot
/// segment or an empty one is in it, decoded or not: browsers and proxies resolve those
/// (`/x/../claveunica/logout`, `/%2e%2e/`), so the path could land anywhere.
#[must_use]
pub fn landing_path(candidate: &str) -> Option<String> {
    let path = candidate.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    // Cut again: a `%23` or `%3F` that some server decodes first is no longer part of the path.
    let decoded = decoded.split(['?', '#']).next().unwrap_or_default();
    let mut landing = String::with_capacity(decoded.len());
    let mut segments = decoded.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let segment = segment.split(';').next().unwrap_or_default();
        let last = segments.peek().is_none();
        if segment == "." || segment == ".." || (segment.is_empty() && !last) {
            return None;
        }
        if !segment.is_empty() {
            landing.push('/');
            landing.push_str(&segment.to_lowercase());
        }
    }
    if landing.is_empty() {
        landing.push('/');
    }
    Some(landing)
}

fn plain_path(p: &str) -> bool {
    let mut bytes = p.bytes();
    bytes.next() == Some(b'/')
        && !matches!(bytes.next(), Some(b'/' | b'\\'))
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn same_origin_paths_pass() {
        for p in ["/", "/tramites/certificado?id=7&x=%C3%B1", "/a/b#frag", "/a%20b", "/files/a%2Fb"] {
            assert_eq!(same_origin_path(p), Some(p), "{p}");
        }
    }

    #[test]
    fn elsewhere_is_refused() {
        for p in [
            "",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example/",
            "javascript:alert(1)",
            "evil.example",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/\t/evil.example",
            "/ /evil.example",
            "/%09/evil.example",
            "/%20/evil.example",
            "/a\r\nSet-Cookie:x=1",
            "/a%0d%0aSet-Cookie:x=1",
        ] {
            assert_eq!(same_origin_path(p), None, "{p:?}");
        }
        assert_eq!(same_origin_path(&format!("/{}", "a".repeat(MAX_RETURN_LEN))), None);
    }

    #[test]
    fn where_a_return_path_lands() {
        for (p, want) in [
            ("/", Some("/")),
            ("/a/b?x=1#f", Some("/a/b")),
            ("/claveunica/logout#x", Some("/claveunica/logout")),
            ("/claveunica/logout/", Some("/claveunica/logout")),
            ("/claveunica/logout;x=1", Some("/claveunica/logout")),
            ("/ClaveUnica/%6Cogout", Some("/claveunica/logout")),
            ("/claveunica/logout%23x", Some("/claveunica/logout")),
            ("/claveunica/logout%3Fx", Some("/claveunica/logout")),
            ("/caf%C3%A9", Some("/caf\u{e9}")),
            ("/x/../claveunica/logout", None),
            ("/claveunica/./logout", None),
            ("/x/%2e%2e/claveunica/logout", None),
            ("/x/.%2E/claveunica/logout", None),
            ("/x/..;/claveunica/logout", None),
            ("/x//claveunica", None),
        ] {
            assert_eq!(landing_path(p).as_deref(), want, "{p}");
        }
    }
}
