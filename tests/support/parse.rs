//! Answers taken apart: an HTTP response (from the client, or raw HTTP/1.1 bytes), its
//! `Set-Cookie` lines, the legacy app's JSON echo of what it received, and the gate's error
//! page reference.

/// An HTTP answer, status and body whatever the status.
#[derive(Debug, Clone)]
pub struct Response {
    /// The URL asked for.
    pub url: String,
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased, repeats kept.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Response {
    /// The client's answer to `url`, body read whole.
    pub fn from_ureq(url: &str, r: ureq::Response) -> Response {
        let status = r.status();
        let mut names: Vec<String> = r.headers_names().into_iter().map(|n| n.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        let headers =
            names.iter().flat_map(|n| r.all(n).into_iter().map(move |v| (n.clone(), v.to_string()))).collect();
        let body = r.into_string().unwrap_or_else(|e| panic!("reading the body of {url}: {e}"));
        Response { url: url.to_string(), status, headers, body }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// `Location`, or a panic naming the response.
    pub fn location(&self) -> &str {
        self.header("location").unwrap_or_else(|| panic!("no Location in the answer to {}: {self:?}", self.url))
    }

    /// The whole `Set-Cookie` line that sets or deletes cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<&str> {
        self.header_all("set-cookie").into_iter().find(|line| cookie_name_of(line) == name)
    }

    /// Names of the cookies this answer sets (not deletes).
    pub fn cookies_set(&self) -> Vec<String> {
        self.header_all("set-cookie")
            .into_iter()
            .filter_map(parse_set_cookie)
            .filter_map(|(n, v)| v.map(|_| n))
            .collect()
    }

    /// The reference code of an error page (`Código de referencia: <code>XXXX</code>`).
    pub fn reference(&self) -> String {
        let marker = "Código de referencia: <code>";
        self.body
            .split_once(marker)
            .and_then(|(_, rest)| rest.split_once("</code>"))
            .map(|(code, _)| code.to_string())
            .unwrap_or_else(|| panic!("no reference code in the page from {}:\n{}", self.url, self.body))
    }

    /// The legacy app's JSON echo of the request it received.
    pub fn echo(&self) -> Echo {
        assert_eq!(self.status, 200, "expected the app's JSON echo from {}, got {self:?}", self.url);
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the answer to {} is not the app's JSON echo ({e}): {}", self.url, self.body));
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
        let headers = v
            .get("headers")
            .and_then(|h| h.as_array())
            .unwrap_or_else(|| panic!("echo without headers: {}", self.body));
        let trailers = v.get("trailers").and_then(|t| t.as_array()).map(|list| pairs(list));
        Echo { path: text("path"), query: text("query"), headers: pairs(headers), trailers }
    }
}

/// What the legacy app says it received.
#[derive(Debug, Clone)]
pub struct Echo {
    /// Path.
    pub path: String,
    /// Query string.
    pub query: String,
    /// Headers, lower-cased names, in order, repeats kept.
    pub headers: Vec<(String, String)>,
    /// Trailers, likewise: only the raw echo (`legacy-app --raw-echo`) reports them.
    pub trailers: Option<Vec<(String, String)>>,
}

impl Echo {
    /// Every value of a header (name lower-case).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The only value of a header; panics when it is there more than once.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "the app received {name} {} times: {all:?}", all.len());
        all.first().copied()
    }

    /// Every cookie name the app received.
    pub fn cookie_names(&self) -> Vec<String> {
        self.all("cookie")
            .iter()
            .flat_map(|h| h.split(';'))
            .filter_map(|p| p.split_once('=').map(|(n, _)| n.trim().to_string()))
            .collect()
    }
}

/// The echo's `[name, value]` pairs.
fn pairs(list: &[serde_json::Value]) -> Vec<(String, String)> {
    list.iter()
        .filter_map(|pair| Some((pair.get(0)?.as_str()?.to_string(), pair.get(1)?.as_str()?.to_string())))
        .collect()
}

/// The name of the cookie a `Set-Cookie` line sets.
pub fn cookie_name_of(set_cookie: &str) -> &str {
    set_cookie.split(';').next().and_then(|nv| nv.split_once('=')).map_or("", |(n, _)| n.trim())
}

/// `(name, Some(value))` for a cookie set, `(name, None)` for one deleted (`Max-Age` ≤ 0).
pub fn parse_set_cookie(line: &str) -> Option<(String, Option<String>)> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let deleted = parts.any(|attr| {
        attr.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("max-age") && v.trim().parse::<i64>().is_ok_and(|n| n <= 0)
        })
    });
    Some((name.trim().to_string(), (!deleted).then(|| value.trim().to_string())))
}

/// An HTTP/1.x answer as bytes off the wire (or curl's `-i` output), taken apart; `url` names
/// what was asked, for messages.
pub fn parse_http1(url: &str, bytes: &[u8]) -> Response {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{url}: no HTTP status in the answer {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Response { url: url.to_string(), status, headers, body: body.to_string() }
}
