//! Small HTTP helpers: a request/reply model independent of the socket server (so the
//! endpoints can be unit-tested without sockets), form parsing and redirect building.

use std::collections::HashMap;

/// Bodies larger than this are refused; nothing the emulator accepts is big.
pub const MAX_BODY: usize = 64 * 1024;

/// The parts of a request the endpoints look at.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names lower-cased, values as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn query_params(&self) -> Params {
        Params::parse(self.query.as_bytes())
    }

    pub fn form_params(&self) -> Params {
        Params::parse(&self.body)
    }
}

/// Decoded `application/x-www-form-urlencoded` pairs. The first occurrence of a
/// name wins; OAuth forbids repeats, so which one wins hardly matters.
#[derive(Debug, Clone, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(raw: &[u8]) -> Params {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Params(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value, or the empty string when absent.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// How the answer goes over the wire (test modes only; see [`crate::modes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Status, headers and the whole body.
    #[default]
    Whole,
    /// The headers with the whole body's `Content-Length`, half the body, then the
    /// connection is closed.
    TruncateBody,
    /// The connection is closed without an answer.
    Close,
}

/// What an endpoint answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay_ms: u64,
    pub transport: Transport,
}

impl Reply {
    fn bare(status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Reply {
        Reply { status, headers, body, delay_ms: 0, transport: Transport::Whole }
    }

    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::bare(status, vec![("Content-Type", content_type.to_string())], body.into())
    }

    /// HTML pages refuse framing: the real login must be a full-page navigation,
    /// and a gate that tries an iframe should fail here, not at certification.
    pub fn html(status: u16, body: String) -> Reply {
        let mut reply = Reply::new(status, "text/html; charset=utf-8", body);
        reply.headers.push(("X-Frame-Options", "DENY".to_string()));
        reply.headers.push(("Content-Security-Policy", "frame-ancestors 'none'".to_string()));
        reply
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json; charset=utf-8", value.to_string().into_bytes())
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn redirect(location: String) -> Reply {
        Reply::bare(302, vec![("Location", location)], Vec::new())
    }

    pub fn empty(status: u16) -> Reply {
        Reply::bare(status, Vec::new(), Vec::new())
    }

    /// Token and userinfo answers carry credentials or personal data: no caching.
    pub fn no_store(mut self) -> Reply {
        self.headers.push(("Cache-Control", "no-store".to_string()));
        self.headers.push(("Pragma", "no-cache".to_string()));
        self
    }

    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Appends query parameters to a redirect URI, keeping any query it already has.
/// The URI is used verbatim rather than re-serialised by the `url` crate, so the
/// relying party gets back exactly the string it registered.
pub fn append_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        ser.append_pair(k, v);
    }
    let encoded = ser.finish();
    if encoded.is_empty() {
        return base.to_string();
    }
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_to_redirect_uris() {
        assert_eq!(
            append_query("https://a.gob.cl/cb/", &[("code", "abc"), ("state", "x y&z")]),
            "https://a.gob.cl/cb/?code=abc&state=x+y%26z"
        );
        assert_eq!(
            append_query("https://a.gob.cl/cb?v=1", &[("error", "access_denied")]),
            "https://a.gob.cl/cb?v=1&error=access_denied"
        );
        assert_eq!(append_query("https://a.gob.cl/cb?", &[("code", "c")]), "https://a.gob.cl/cb?code=c");
    }

    #[test]
    fn form_params_decode_plus_and_percent() {
        let p = Params::parse(b"scope=openid+run%20name&a=1&a=2");
        assert_eq!(p.get("scope"), Some("openid run name"));
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.text("missing"), "");
        assert!(!p.has("missing"));
    }
}
