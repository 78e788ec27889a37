//! `claveunica-gate certify URL`: walks a deployed gate through the points of ClaveÚnica's
//! certification review that can be seen from outside, over HTTP, and writes the evidence as
//! Markdown: the request made, what came back, and for an item that fails, what to change.
//!
//! It reads every response itself and follows no redirect, because the evidence is each 302:
//! where the gate sends the browser, with which parameters. It never logs in (that needs a
//! person at ClaveÚnica's form), so the items are those an anonymous browser can observe. The
//! `redirect_uri` rules are the core's ([`review_redirect_uri`]), the same `check` applies to a
//! configuration file.

use std::collections::BTreeSet;

use claveunica_core::check::{review_redirect_uri, CLAVEUNICA_ENDPOINTS, CLAVEUNICA_ORIGIN};
use claveunica_core::config::CLAVEUNICA_SCOPE;
use url::Url;

/// The shortest `state` the manual accepts.
const MIN_STATE_LEN: usize = 30;
/// How many logins are started to see `state` change.
const LOGINS: usize = 3;
/// The accessible label the button manual gives the ClaveÚnica button.
const BUTTON_LABEL: &str = "Iniciar sesión con ClaveÚnica";
/// Its visible text.
const BUTTON_TEXT: &str = "Iniciar sesión";

/// What to certify, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The gate's public origin, as people reach it (`https://tramites.example.gob.cl`).
    pub base: Url,
    /// A protected page (`/`).
    pub path: String,
    /// The gate's `login_path`.
    pub login_path: String,
    /// The gate's `logout_path`.
    pub logout_path: String,
    /// The agency's own page with the button, when the gate does not serve one.
    pub button_page: Option<String>,
    /// The provider's origin: ClaveÚnica's, or the emulator's for a rehearsal.
    pub provider: String,
}

impl Options {
    /// Options with the gate's default paths and ClaveÚnica as the provider.
    #[must_use]
    pub fn new(base: Url) -> Self {
        Options {
            base,
            path: "/".into(),
            login_path: "/claveunica/login".into(),
            logout_path: "/claveunica/logout".into(),
            button_page: None,
            provider: CLAVEUNICA_ORIGIN.into(),
        }
    }

    fn authorize_endpoint(&self) -> String {
        self.endpoint("authorization_endpoint")
    }

    fn logout_endpoint(&self) -> String {
        self.endpoint("logout_endpoint")
    }

    /// The manual's URL for `key`, on [`Options::provider`].
    fn endpoint(&self, key: &str) -> String {
        let url = CLAVEUNICA_ENDPOINTS.iter().find(|e| e.0 == key).map(|e| e.2).unwrap_or_default();
        let path = url.strip_prefix(CLAVEUNICA_ORIGIN).unwrap_or(url);
        format!("{}{path}", self.provider.trim_end_matches('/'))
    }

    fn url(&self, path: &str) -> String {
        self.base.join(path).map(String::from).unwrap_or_else(|_| format!("{}{path}", self.base))
    }
}

/// One point of the review, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What the review looks at.
    pub title: &'static str,
    /// Whether the gate does it.
    pub passed: bool,
    /// What was sent and what came back.
    pub evidence: Vec<String>,
    /// For a failed item, what to change.
    pub change: Vec<String>,
}

impl Item {
    fn new(title: &'static str) -> Self {
        Item { title, passed: true, evidence: Vec::new(), change: Vec::new() }
    }

    fn fail(&mut self, change: impl Into<String>) {
        self.passed = false;
        self.change.push(change.into());
    }
}

/// One response, as the evidence needs it.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    location: Option<String>,
    content_type: String,
    body: String,
}

impl Reply {
    fn summary(&self) -> String {
        match &self.location {
            Some(l) => format!("{} → `{l}`", self.status),
            None => format!(
                "{} ({})",
                self.status,
                if self.content_type.is_empty() { "no body" } else { &self.content_type }
            ),
        }
    }
}

/// A browser that follows nothing: each answer is evidence.
#[cfg(not(target_arch = "wasm32"))]
struct Client {
    agent: ureq::Agent,
}

/// No HTTP client in a wasm build (ureq's TLS does not build there): certify says so.
#[cfg(target_arch = "wasm32")]
struct Client;

#[cfg(target_arch = "wasm32")]
impl Client {
    fn new() -> Self {
        Client
    }

    fn get(&self, _url: &str, _headers: &[(&str, &str)]) -> Result<Reply, String> {
        Err("certify needs a native build of claveunica-gate".into())
    }
}

/// The headers a browser sends for a top-level navigation; `dest` is `document`, or
/// `iframe` for a navigation inside a frame.
fn navigation(dest: &str) -> [(&'static str, &str); 4] {
    [("accept", "text/html"), ("sec-fetch-mode", "navigate"), ("sec-fetch-dest", dest), ("sec-fetch-site", "none")]
}

#[cfg(not(target_arch = "wasm32"))]
impl Client {
    fn new() -> Self {
        Client { agent: ureq::AgentBuilder::new().redirects(0).timeout(std::time::Duration::from_secs(15)).build() }
    }

    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let response = match request.call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("GET {url}: {e}")),
        };
        let status = response.status();
        let location = response.header("location").map(str::to_string);
        let content_type = response.header("content-type").unwrap_or_default().to_string();
        // A page larger than this is not a login page; the evidence needs only its start.
        let mut body = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::Read::take(response.into_reader(), 1 << 20), &mut body);
        Ok(Reply { status, location, content_type, body })
    }
}

/// Runs every item against the gate. `Err` when the gate cannot be reached at all.
pub fn certify(options: &Options) -> Result<Vec<Item>, String> {
    let client = Client::new();
    let login = options.url(&format!("{}?return_to={}", options.login_path, encode(&options.path)));
    let mut logins = Vec::new();
    for _ in 0..LOGINS {
        logins.push(client.get(&login, &navigation("document"))?);
    }
    let authorizes: Vec<Option<Url>> =
        logins.iter().map(|r| r.location.as_deref().and_then(|l| Url::parse(l).ok())).collect();
    let started = format!("GET `{login}` ({LOGINS} times, no cookies)");

    let mut items = vec![
        authorize_item(options, &started, &logins, &authorizes),
        scope_item(&started, &authorizes),
        state_item(&started, &authorizes),
        redirect_uri_item(options, &started, &authorizes),
    ];
    items.push(button_item(options, &client)?);
    items.push(frame_item(options, &client)?);
    items.push(logout_item(options, &client)?);
    Ok(items)
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The URL without its query: what is compared with an endpoint.
fn without_query(url: &Url) -> String {
    let mut bare = url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    bare.to_string()
}

fn authorize_item(options: &Options, started: &str, logins: &[Reply], authorizes: &[Option<Url>]) -> Item {
    let mut item = Item::new("Login sends the browser to ClaveÚnica's authorize endpoint");
    item.evidence.push(started.to_string());
    item.evidence.extend(logins.iter().map(|r| format!("answered {}", r.summary())));
    let expected = options.authorize_endpoint();
    for (reply, url) in logins.iter().zip(authorizes) {
        match url {
            Some(url) if (300..400).contains(&reply.status) && without_query(url) == expected => {}
            Some(url) if (300..400).contains(&reply.status) => {
                item.fail(format!(
                    "the gate sends browsers to `{}`, not `{expected}`: set `issuer` to \
                     `https://accounts.claveunica.gob.cl/openid` and remove any `authorization_endpoint` override \
                     (`claveunica-gate check` shows the endpoints in effect)",
                    without_query(url)
                ));
                break;
            }
            _ => {
                item.fail(format!(
                    "`{}` did not answer with a redirect to ClaveÚnica: check that the gate is in front of this \
                     URL and that `login_path` is `{}` (or pass --login-path)",
                    options.login_path, options.login_path
                ));
                break;
            }
        }
    }
    item
}

fn scope_item(started: &str, authorizes: &[Option<Url>]) -> Item {
    let mut item = Item::new("The authorization request asks for exactly `openid run name`");
    item.evidence.push(started.to_string());
    let Some(url) = authorizes.iter().flatten().next() else {
        item.fail("no authorization request to read: fix the item above first");
        return item;
    };
    let scope = param(url, "scope");
    let response_type = param(url, "response_type");
    let client_id = param(url, "client_id");
    item.evidence.push(format!(
        "scope={scope:?}, response_type={response_type:?}, client_id {}",
        if client_id.as_deref().is_some_and(|c| !c.is_empty()) { "present" } else { "missing" }
    ));
    if scope.as_deref() != Some(CLAVEUNICA_SCOPE) {
        item.fail(format!(
            "the manual requires scope `{CLAVEUNICA_SCOPE}` exactly: remove `scope` from the configuration"
        ));
    }
    if response_type.as_deref() != Some("code") {
        item.fail("the manual requires `response_type=code`");
    }
    if client_id.as_deref().is_none_or(str::is_empty) {
        item.fail("the request carries no `client_id`: set `client_id` (or `client_id_env`)");
    }
    item
}

fn state_item(started: &str, authorizes: &[Option<Url>]) -> Item {
    let mut item = Item::new("`state` has 30 or more characters and changes with every login");
    item.evidence.push(started.to_string());
    let states: Vec<Option<String>> = authorizes.iter().map(|u| u.as_ref().and_then(|u| param(u, "state"))).collect();
    for (i, state) in states.iter().enumerate() {
        let length = state.as_ref().map_or(0, |s| s.chars().count());
        item.evidence.push(format!("login {}: state of {length} characters", i + 1));
    }
    if states.iter().any(|s| s.as_ref().is_none_or(|s| s.chars().count() < MIN_STATE_LEN)) {
        item.fail(format!(
            "the manual requires a dynamic `state` of at least {MIN_STATE_LEN} characters in every authorization \
             request: put the gate in front of the login (the gate's own state has 43)"
        ));
    }
    let distinct: BTreeSet<_> = states.iter().flatten().collect();
    item.evidence.push(format!("{} distinct values in {LOGINS} logins", distinct.len()));
    if distinct.len() != LOGINS {
        item.fail("`state` repeated between logins: the manual requires a new one for each login");
    }
    item
}

fn redirect_uri_item(options: &Options, started: &str, authorizes: &[Option<Url>]) -> Item {
    let mut item = Item::new("`redirect_uri` has the registered form (https, no query, no port, agency host)");
    item.evidence.push(started.to_string());
    let uris: BTreeSet<String> = authorizes.iter().flatten().filter_map(|u| param(u, "redirect_uri")).collect();
    let Some(uri) = uris.iter().next() else {
        item.fail("no `redirect_uri` to read: fix the first item first");
        return item;
    };
    item.evidence.push(format!("redirect_uri=`{uri}`"));
    if uris.len() > 1 {
        item.fail("`redirect_uri` changed between logins: ClaveÚnica compares it with the one registered, exactly");
    }
    for finding in review_redirect_uri(uri) {
        item.fail(format!("`redirect_uri` {}", finding.message));
    }
    let host = Url::parse(uri).ok().and_then(|u| u.host_str().map(str::to_string));
    let agency = options.base.host_str().unwrap_or_default();
    if host.as_deref() != Some(agency) {
        item.fail(format!(
            "`redirect_uri` is on host {}, not {agency}, the host people use: ClaveÚnica sends the browser back there, \
             where the flow cookie is not",
            host.as_deref().unwrap_or("(none)")
        ));
    }
    item
}

/// Links (`href`) in a page, entities decoded.
fn links(body: &str) -> Vec<String> {
    attributes(body, "href")
}

/// The values of every `name="…"` (or `'…'`) attribute in `body`, entities decoded.
fn attributes(body: &str, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut rest = body;
    let needle = format!("{name}=");
    while let Some((_, after)) = rest.split_once(&needle) {
        rest = after;
        let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
        let Some((value, after)) = rest.strip_prefix(quote).and_then(|r| r.split_once(quote)) else { break };
        values.push(html_escape::decode_html_entities(value).into_owned());
        rest = after;
    }
    values
}

fn button_item(options: &Options, client: &Client) -> Result<Item, String> {
    let mut item = Item::new("A page with the official ClaveÚnica button");
    let url = options.button_page.clone().unwrap_or_else(|| options.url(&options.path));
    let reply = client.get(&url, &navigation("document"))?;
    item.evidence.push(format!("GET `{url}` (a top-level navigation, no session) answered {}", reply.summary()));
    if reply.status != 200 {
        item.fail(format!(
            "people are not shown a page with the button: the review asks for the URL of the page that holds the \
             ClaveÚnica button. Turn on the gate's button page, or pass the URL of your own with --button-page{}",
            if reply.location.as_deref().is_some_and(|l| l.starts_with(&options.authorize_endpoint())) {
                " (the gate now sends people straight to ClaveÚnica)"
            } else {
                ""
            }
        ));
        return Ok(item);
    }
    let labels = attributes(&reply.body, "aria-label");
    let labelled = labels.iter().any(|l| l == BUTTON_LABEL);
    item.evidence.push(format!("accessible label {BUTTON_LABEL:?}: {}", if labelled { "present" } else { "absent" }));
    if !labelled {
        item.fail(format!("the button manual gives the button the accessible label {BUTTON_LABEL:?}"));
    }
    if !html_escape::decode_html_entities(&reply.body).contains(BUTTON_TEXT) {
        item.fail(format!("the button manual's text is {BUTTON_TEXT:?}"));
    }
    let login = options.url(&options.login_path);
    let to_login = links(&reply.body)
        .into_iter()
        .filter_map(|l| options.base.join(&l).ok())
        .any(|l| without_query(&l) == login || without_query(&l) == options.authorize_endpoint());
    item.evidence.push(format!("a link to `{}`: {}", options.login_path, if to_login { "present" } else { "absent" }));
    if !to_login {
        item.fail(format!("the button must lead to the login (`{}?return_to=…`)", options.login_path));
    }
    let third_party = third_party_resources(&reply.body, &options.base);
    if !third_party.is_empty() {
        item.evidence.push(format!("resources from other origins: {}", third_party.join(", ")));
        item.fail("the page loads resources from other origins (fonts, scripts, images): serve them from the agency's own host");
    }
    Ok(item)
}

/// Absolute `src` URLs, stylesheet links and CSS `url(…)`s on another origin than `base`'s.
fn third_party_resources(body: &str, base: &Url) -> Vec<String> {
    let mut found: Vec<String> = attributes(body, "src");
    found.extend(
        body.split("<link").skip(1).flat_map(|tag| attributes(tag.split('>').next().unwrap_or_default(), "href")),
    );
    found.extend(
        body.split("url(")
            .skip(1)
            .map(|s| s.split(')').next().unwrap_or_default().trim_matches(['"', '\'']).to_string()),
    );
    found.retain(|u| base.join(u).is_ok_and(|u| u.origin() != base.origin() && u.scheme() != "data"));
    found
}

fn frame_item(options: &Options, client: &Client) -> Result<Item, String> {
    let mut item = Item::new("ClaveÚnica's login never opens inside a frame");
    let authorize = options.authorize_endpoint();
    let login = options.url(&format!("{}?return_to={}", options.login_path, encode(&options.path)));
    let mut framed = Vec::new();
    for url in [options.url(&options.path), login] {
        for dest in ["iframe", "frame"] {
            let reply = client.get(&url, &navigation(dest))?;
            item.evidence.push(format!("GET `{url}` with `Sec-Fetch-Dest: {dest}` answered {}", reply.summary()));
            if reply.location.as_deref().is_some_and(|l| l.starts_with(&authorize)) {
                framed.push(dest);
            }
        }
    }
    if !framed.is_empty() {
        framed.sort_unstable();
        framed.dedup();
        item.fail(format!(
            "a navigation inside a frame (`Sec-Fetch-Dest: {}`) is redirected to ClaveÚnica inside the frame: the \
             manual requires ClaveÚnica's login as a full page with the address bar visible. Use a gate version \
             that answers it with a page taking the top window to the login",
            framed.join("`, `")
        ));
    }
    Ok(item)
}

fn logout_item(options: &Options, client: &Client) -> Result<Item, String> {
    let mut item = Item::new("Logout goes through ClaveÚnica's logout endpoint");
    let url = options.url(&options.logout_path);
    let reply = client.get(&url, &navigation("document"))?;
    item.evidence.push(format!("GET `{url}` answered {}", reply.summary()));
    let expected = options.logout_endpoint();
    let mut targets: Vec<String> = reply.location.iter().cloned().collect();
    targets.extend(links(&reply.body));
    let reaches = targets.iter().find(|t| Url::parse(t).is_ok_and(|u| without_query(&u) == expected));
    match reaches {
        Some(target) => {
            item.evidence.push(format!("it leads to `{target}`"));
            let back = Url::parse(target).ok().and_then(|u| param(&u, "redirect"));
            item.evidence.push(match back {
                Some(back) => format!(
                    "ClaveÚnica is asked to send the browser back to `{back}`: its origin must be registered as the \
                     Logout URI, or ClaveÚnica answers 204 and the gate's page takes the browser home by itself"
                ),
                None => "no `redirect` back: the gate's page takes the browser home by itself".into(),
            });
        }
        None => {
            let elsewhere = targets.iter().find(|t| t.contains("/logout"));
            if let Some(other) = elsewhere {
                item.evidence.push(format!("it leads to `{other}`"));
            }
            item.fail(format!(
                "the manual requires the logout to go through `{expected}` in the browser: check `logout_path` (or \
                 pass --logout-path), set `issuer` to `https://accounts.claveunica.gob.cl/openid` and remove any \
                 `logout_endpoint` override"
            ));
        }
    }
    Ok(item)
}

/// The evidence report, in Markdown. `when` is the UTC time the checks ran.
#[must_use]
pub fn report(options: &Options, items: &[Item], when: &str) -> String {
    let passed = items.iter().filter(|i| i.passed).count();
    let mut out = format!(
        "# ClaveÚnica certification evidence: {}\n\nChecked {when} by `claveunica-gate certify` {}, over HTTP as an \
         anonymous browser (no login). {passed} of {} items pass.\n",
        options.base,
        env!("CARGO_PKG_VERSION"),
        items.len()
    );
    if options.provider != CLAVEUNICA_ORIGIN {
        out.push_str(&format!(
            "\n**Rehearsal**: the provider expected is `{}`, not ClaveÚnica (`{CLAVEUNICA_ORIGIN}`); this is not \
             evidence for the review.\n",
            options.provider
        ));
    }
    for (n, item) in items.iter().enumerate() {
        out.push_str(&format!("\n## {}. {}: {}\n\n", n + 1, item.title, if item.passed { "PASS" } else { "FAIL" }));
        for e in &item.evidence {
            out.push_str(&format!("- {e}\n"));
        }
        if !item.change.is_empty() {
            out.push_str("\nWhat to change:\n\n");
            for c in &item.change {
                out.push_str(&format!("- {c}\n"));
            }
        }
    }
    out.push_str(
        "\n## Not checked here\n\nWhat needs a person at ClaveÚnica's form or the agency's own records: a complete \
         login and logout with a test RUN, the logout of a RUN the service does not know, the token and userinfo \
         calls from the backend (`claveunica-gate check` prints their URLs), and what is registered with \
         ClaveÚnica (Redirect URI, Logout URI, application name).\n",
    );
    out
}

/// `YYYY-MM-DD HH:MM:SS UTC` for seconds since the Unix epoch: the core's register time
/// (`2026-12-01T23:05:09Z`), spelt for a reader of the report.
#[must_use]
pub fn utc(secs: u64) -> String {
    claveunica_core::gate::utc(secs).replacen('T', " ", 1).replace('Z', " UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_764_633_599), "2025-12-01 23:59:59 UTC");
    }

    #[test]
    fn attributes_are_read_with_either_quote_and_decoded() {
        let page = r#"<a href="/claveunica/login?return_to=%2F&amp;x=1" aria-label='Iniciar sesión con ClaveÚnica'>"#;
        assert_eq!(links(page), vec!["/claveunica/login?return_to=%2F&x=1"]);
        assert_eq!(attributes(page, "aria-label"), vec![BUTTON_LABEL]);
        assert!(attributes("href=unquoted href=", "href").is_empty());
    }

    #[test]
    fn resources_from_other_origins_are_found() {
        let base = Url::parse("https://tramites.example.gob.cl/").unwrap();
        let page = r#"<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">
            <link rel="icon" href="/favicon.ico"><img src="/logo.svg"><script src="//cdn.example.com/x.js"></script>
            <style>b{background:url('https://img.example.com/a.png')} i{background:url(data:image/png;base64,AA)}</style>"#;
        assert_eq!(
            third_party_resources(page, &base),
            vec![
                "//cdn.example.com/x.js",
                "https://fonts.googleapis.com/css?family=Roboto",
                "https://img.example.com/a.png"
            ]
        );
        assert!(third_party_resources(r#"<img src="/a.png"><a href="https://x.example/">x</a>"#, &base).is_empty());
    }

    fn authorize(state: &str, redirect_uri: &str) -> Option<Url> {
        let mut url = Url::parse("https://accounts.claveunica.gob.cl/openid/authorize/").unwrap();
        url.query_pairs_mut().append_pair("state", state).append_pair("redirect_uri", redirect_uri);
        Some(url)
    }

    const CALLBACK: &str = "https://tramites.example.gob.cl/claveunica/callback";

    #[test]
    fn a_short_or_repeated_state_fails() {
        let long = |c: char| c.to_string().repeat(MIN_STATE_LEN);
        let good = [authorize(&long('a'), CALLBACK), authorize(&long('b'), CALLBACK), authorize(&long('c'), CALLBACK)];
        assert!(state_item("", &good).passed);
        let short =
            [authorize(&long('a'), CALLBACK), authorize(&"b".repeat(29), CALLBACK), authorize(&long('c'), CALLBACK)];
        let item = state_item("", &short);
        assert!(!item.passed && item.change[0].contains("at least 30"), "{item:?}");
        let repeated =
            [authorize(&long('a'), CALLBACK), authorize(&long('a'), CALLBACK), authorize(&long('c'), CALLBACK)];
        let item = state_item("", &repeated);
        assert!(!item.passed && item.change[0].contains("repeated"), "{item:?}");
        let none = [None, None, None];
        assert!(!state_item("", &none).passed);
    }

    #[test]
    fn the_redirect_uri_must_be_on_the_agency_host_and_stable() {
        let options = Options::new(Url::parse("https://tramites.example.gob.cl").unwrap());
        let good = [authorize(&"a".repeat(30), CALLBACK)];
        let item = redirect_uri_item(&options, "", &good);
        assert!(item.passed, "{item:?}");
        let elsewhere = [authorize("s", "https://otro.example.gob.cl/claveunica/callback")];
        let item = redirect_uri_item(&options, "", &elsewhere);
        assert!(!item.passed && item.change[0].contains("not tramites.example.gob.cl"), "{item:?}");
        let changing = [authorize("s", CALLBACK), authorize("s", &format!("{CALLBACK}/"))];
        let item = redirect_uri_item(&options, "", &changing);
        assert!(!item.passed && item.change[0].contains("changed between logins"), "{item:?}");
        // The core's rules apply: a query string.
        let query = [authorize("s", &format!("{CALLBACK}?a=1"))];
        assert!(redirect_uri_item(&options, "", &query).change.iter().any(|c| c.contains("query string")));
    }

    #[test]
    fn a_rehearsal_expects_the_providers_endpoints() {
        let mut options = Options::new(Url::parse("http://127.0.0.1:8000").unwrap());
        assert_eq!(options.authorize_endpoint(), "https://accounts.claveunica.gob.cl/openid/authorize/");
        options.provider = "http://127.0.0.1:8900/".into();
        assert_eq!(options.authorize_endpoint(), "http://127.0.0.1:8900/openid/authorize/");
        assert_eq!(options.logout_endpoint(), "http://127.0.0.1:8900/api/v1/accounts/app/logout");
    }
}
