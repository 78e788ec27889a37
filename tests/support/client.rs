//! The browser-like client: a cookie jar for the gate's origin and an HTTP client that follows
//! no redirects, so each step of a login can be looked at (and tampered with) on its own; the
//! steps of a login at the emulator; and URL helpers.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use super::parse::{parse_http1, parse_set_cookie, Response};
use super::{CALLBACK_PATH, FLOW_PREFIX};

/// How long one request may take.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// An HTTP client that follows no redirects, and reaches names under [`TEST_TLD`] on loopback.
pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).timeout(HTTP_TIMEOUT).resolver(resolve).build()
}

/// The top-level domain of the names the tests give the gate's sites (`a.test`). It is reserved
/// (RFC 2606), so it never names anything real, and the harness connects it to 127.0.0.1: the
/// request then carries the site's name in `Host` just as a browser would send it, with no
/// rewriting between the test and the gate.
pub const TEST_TLD: &str = ".test";

/// Resolves `host:port` as the system does, except names under [`TEST_TLD`], which are 127.0.0.1.
fn resolve(netloc: &str) -> std::io::Result<Vec<SocketAddr>> {
    let loopback = netloc.rsplit_once(':').and_then(|(host, port)| {
        let under_test = host.to_ascii_lowercase().trim_end_matches('.').ends_with(TEST_TLD);
        under_test.then(|| port.parse::<u16>().ok()).flatten()
    });
    match loopback {
        Some(port) => Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]),
        None => Ok(netloc.to_socket_addrs()?.collect()),
    }
}

/// `text` form-urlencoded, for a query parameter.
pub fn url_encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Panics when the HTTP client would send `url` with another request target than the one
/// written: ureq parses URLs with the `url` crate, which resolves dot segments and
/// percent-encodes some bytes, so a test of a path trick would test the cleaned-up path. Such
/// requests go through [`Browser::raw`] or [`raw_http1`] instead.
fn assert_sent_as_written(url: &str) {
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?} does not parse: {e}"));
    let sent = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
    let written = url.split_once("://").and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..])).unwrap_or("/");
    let written = written.split('#').next().unwrap_or(written);
    assert_eq!(
        sent, written,
        "the HTTP client would send {written:?} as {sent:?}: send such a request target raw (Browser::raw)"
    );
}

/// Sends `request`, bytes as they are, over a fresh connection to the host of `base`
/// (`http://127.0.0.1:PORT`, or a name under [`TEST_TLD`]) and parses the answer. A transport
/// error is a failure, not an answer: the request must end with `Connection: close` so the
/// answer ends with the stream.
pub fn raw_http1(base: &str, request: &[u8]) -> Response {
    let what = format!("raw {}", String::from_utf8_lossy(request.get(..60).unwrap_or(request)));
    let addr = base.trim_start_matches("http://");
    let mut s = resolve(addr)
        .and_then(|addrs| TcpStream::connect(&addrs[..]))
        .unwrap_or_else(|e| panic!("{what}: connect {addr}: {e}"));
    s.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap_or_else(|e| panic!("{what}: set a read timeout: {e}"));
    s.write_all(request).unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        panic!("{what}: reading the answer failed after {} bytes: {e}", out.len());
    }
    parse_http1(&what, &out)
}

/// A query parameter of `url` (the first, if repeated), decoded.
pub fn param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The redirect to the provider that starts a login, taken apart.
#[derive(Debug, Clone)]
pub struct Authorize {
    /// The full authorize URL.
    pub url: String,
    /// Its query parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    /// `state`.
    pub state: String,
    /// `nonce`.
    pub nonce: String,
    /// The gate's 302.
    pub response: Response,
}

impl Authorize {
    /// The gate's 302 to the provider's authorize endpoint, taken apart.
    pub fn from_redirect(response: Response) -> Authorize {
        let url = response.location().to_string();
        let parsed = url::Url::parse(&url).unwrap_or_else(|e| panic!("authorize URL {url:?} does not parse: {e}"));
        let params: Vec<(String, String)> =
            parsed.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("authorize URL without {name}: {url}"))
        };
        let (state, nonce) = (get("state"), get("nonce"));
        Authorize { url, params, state, nonce, response }
    }

    /// A query parameter (the first, if repeated).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The name of the flow cookie bound to this login.
    pub fn flow_cookie(&self) -> String {
        format!("{FLOW_PREFIX}{}", self.state.get(..12).unwrap_or(&self.state))
    }
}

/// The emulator's cookie for ClaveÚnica's own session (`examples/emulator/src/endpoints/mod.rs`).
pub const PROVIDER_SSO_COOKIE: &str = "claveunica_emulator_sso";

/// A browser: a cookie jar for the gate's origin and an HTTP client that follows nothing.
#[derive(Debug, Clone)]
pub struct Browser {
    agent: ureq::Agent,
    base: String,
    provider: String,
    authorize_endpoint: String,
    redirect_uri: String,
    /// Cookies for the gate's origin, by name.
    pub jar: BTreeMap<String, String>,
}

impl Browser {
    /// A browser with an empty jar for the gate at `base`, logging in at the emulator at
    /// `provider`.
    pub fn new(base: &str, provider: &str) -> Browser {
        Browser::with_agent(agent(), base, provider)
    }

    /// A browser with an empty jar for the site named `host` (under [`TEST_TLD`]) of the gate
    /// at `gate` (`http://127.0.0.1:PORT`): it asks for `http://HOST:PORT/...`, so the gate
    /// sees `Host: HOST:PORT`, and connects to the gate's port on loopback.
    pub fn for_site(gate: &str, host: &str, provider: &str) -> Browser {
        assert!(host.ends_with(TEST_TLD), "{host:?}: a site's name in the tests ends with {TEST_TLD}");
        let port = url::Url::parse(gate).ok().and_then(|u| u.port()).unwrap_or_else(|| panic!("no port in {gate:?}"));
        Browser::new(&format!("http://{host}:{port}"), provider)
    }

    /// A browser as [`Browser::new`] makes, sending through `agent` (e.g. one whose TLS trusts
    /// a test certificate).
    pub fn with_agent(agent: ureq::Agent, base: &str, provider: &str) -> Browser {
        Browser {
            agent,
            base: base.to_string(),
            provider: provider.to_string(),
            authorize_endpoint: format!("{provider}/openid/authorize/"),
            redirect_uri: format!("{base}{CALLBACK_PATH}"),
            jar: BTreeMap::new(),
        }
    }

    /// The `Cookie` header this browser sends to the gate, if any.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; "))
    }

    fn send(&mut self, method: &str, url: &str, headers: &[(&str, &str)], form: Option<&[(&str, &str)]>) -> Response {
        let ours = url.starts_with(&self.base);
        assert_sent_as_written(url);
        let mut req = self.agent.request(method, url);
        if ours {
            if let Some(cookie) = self.cookie_header() {
                req = req.set("Cookie", &cookie);
            }
        }
        for (name, value) in headers {
            req = req.set(name, value);
        }
        let result = match form {
            Some(fields) => req.send_form(fields),
            None => req.call(),
        };
        let response = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => Response::from_ureq(url, r),
            Err(e) => panic!("{method} {url} failed: {e}"),
        };
        if ours {
            self.keep_cookies(&response);
        }
        response
    }

    fn keep_cookies(&mut self, response: &Response) {
        for line in response.header_all("set-cookie") {
            match parse_set_cookie(line) {
                Some((name, Some(value))) => {
                    self.jar.insert(name, value);
                }
                Some((name, None)) => {
                    self.jar.remove(&name);
                }
                None => {}
            }
        }
    }

    /// `method` on `target` through the gate over HTTP/1.1 written by hand, the request target
    /// sent exactly as given (dot segments, encodings, backslashes kept), with this browser's
    /// cookies and `headers`; the answer's cookies go into the jar.
    pub fn raw(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let host = self.base.trim_start_matches("http://");
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
        if let Some(cookie) = self.cookie_header() {
            request.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let response = raw_http1(&self.base, request.as_bytes());
        self.keep_cookies(&response);
        response
    }

    /// Any method on a path through the gate, with extra request headers and no body.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        let url = format!("{}{path}", self.base);
        self.send(method, &url, headers, None)
    }

    /// POST a form to a path through the gate.
    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let url = format!("{}{path}", self.base);
        self.send("POST", &url, &[], Some(fields))
    }

    /// GET a path through the gate.
    pub fn get(&mut self, path: &str) -> Response {
        self.get_with_headers(path, &[])
    }

    /// GET a path through the gate with extra request headers (repeats are sent as repeats
    /// for `x-` names).
    pub fn get_with_headers(&mut self, path: &str, headers: &[(&str, &str)]) -> Response {
        let url = format!("{}{path}", self.base);
        self.send("GET", &url, headers, None)
    }

    /// GET an absolute URL; the jar is used only for the gate's origin.
    pub fn get_url(&mut self, url: &str) -> Response {
        self.send("GET", url, &[], None)
    }

    /// GET an absolute URL with extra request headers.
    pub fn get_url_with_headers(&mut self, url: &str, headers: &[(&str, &str)]) -> Response {
        self.send("GET", url, headers, None)
    }

    /// Asks for `path` without a session and takes the gate's redirect to the provider apart.
    pub fn start_login(&mut self, path: &str) -> Authorize {
        let response = self.get(path);
        assert_eq!(response.status, 302, "GET {path} without a session should redirect to login: {response:?}");
        let url = response.location();
        assert!(
            url.starts_with(&format!("{}?", self.authorize_endpoint)),
            "GET {path} redirected to {url}, not to the provider's authorize endpoint {}",
            self.authorize_endpoint
        );
        Authorize::from_redirect(response)
    }

    fn provider_submit(&mut self, authorize: &Authorize, extra: &[(&str, &str)]) -> Response {
        let form_page = self.get_url(&authorize.url);
        assert_eq!(form_page.status, 200, "the provider did not show its login form: {form_page:?}");
        let mut fields: Vec<(&str, &str)> = ["client_id", "redirect_uri", "state", "nonce", "scope"]
            .into_iter()
            .filter_map(|k| authorize.param(k).map(|v| (k, v)))
            .collect();
        fields.extend_from_slice(extra);
        let submit = format!("{}/openid/authorize/", self.provider);
        self.send("POST", &submit, &[], Some(&fields))
    }

    /// Logs in at the provider; returns the callback URL it redirects to.
    pub fn provider_login(&mut self, authorize: &Authorize, run: &str, password: &str) -> String {
        let r = self.provider_submit(authorize, &[("run", run), ("password", password), ("login", "1")]);
        self.expect_callback(r)
    }

    /// Logs in at the provider and keeps what a real browser would keep there: returns the
    /// callback URL and the provider-session cookie (`name=value`) the provider set. This
    /// browser never sends provider cookies by itself (its jar is the gate's), so a test that
    /// plays ClaveÚnica's single sign-on sends it explicitly.
    pub fn provider_login_keeping_sso(&mut self, authorize: &Authorize, run: &str, password: &str) -> (String, String) {
        let r = self.provider_submit(authorize, &[("run", run), ("password", password), ("login", "1")]);
        let line = r.set_cookie(PROVIDER_SSO_COOKIE).unwrap_or_else(|| panic!("the provider set no session: {r:?}"));
        let cookie = line.split(';').next().unwrap_or_default().to_string();
        (self.expect_callback(r), cookie)
    }

    /// Presses "Cancelar" at the provider; returns the callback URL it redirects to.
    pub fn provider_cancel(&mut self, authorize: &Authorize) -> String {
        let r = self.provider_submit(authorize, &[("cancel", "1")]);
        self.expect_callback(r)
    }

    fn expect_callback(&self, r: Response) -> String {
        assert_eq!(r.status, 302, "the provider did not send the browser back: {r:?}");
        let location = r.location().to_string();
        assert!(
            location.starts_with(&format!("{}?", self.redirect_uri)),
            "the provider redirected to {location}, not to the callback {}",
            self.redirect_uri
        );
        location
    }

    /// GETs the callback URL (absolute) through the gate.
    pub fn callback(&mut self, url: &str) -> Response {
        self.get_url(url)
    }

    /// A whole login from asking for `path` to the gate's answer at the callback (a 302 back
    /// to `path` when all goes well).
    pub fn login(&mut self, path: &str, run: &str, password: &str) -> Response {
        let authorize = self.start_login(path);
        let callback = self.provider_login(&authorize, run, password);
        self.callback(&callback)
    }
}

/// Replaces (or with `None` removes) one query parameter of a URL.
pub fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let mut parsed = url::Url::parse(url).expect("callback URLs parse");
    let pairs: Vec<(String, String)> =
        parsed.query_pairs().filter(|(k, _)| k != name).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    {
        let mut q = parsed.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        if let Some(v) = value {
            q.append_pair(name, v);
        }
    }
    parsed.to_string()
}
