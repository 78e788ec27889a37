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
}
