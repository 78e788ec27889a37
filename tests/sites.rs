#![cfg(not(target_arch = "wasm32"))]
//! End to end, several portals behind one gate (`"sites"`, chosen by the request's host), on
//! both hosts: Envoy with the two sites on one listener, and the NGINX Unit component under
//! `wasmtime serve`. Each site logs in with its own client at the emulator (registered there
//! with `--client`), a session or flow cookie made at one site opens nothing at the other, a
//! host no site names gets a 421 and reaches nothing, and a top-level `redirect_uri` makes the
//! top level the site for every other host.
//!
//! The sites are named under `.test`, which the harness's client connects to the gate on
//! loopback: each request carries the site's name in `Host` exactly as a browser sends it
//! (`Browser::for_site`); requests with a host the URL cannot spell (another case, a final dot,
//! none at all) are written by hand.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test sites
//! ```

#[macro_use]
mod support;

use serde_json::json;
use support::checks::{assert_anonymous, assert_identified, start_gate_with_clients, GateUnderTest, Host};
use support::process::App;
use support::stack::{emulator_stats, SiteClient};
use support::{
    param, raw_http1, Authorize, Browser, Response, CALLBACK_PATH, CLIENT_ID, PASSWORD, RUN, SESSION_COOKIE,
};

on_both_hosts! {
    each_site_logs_in_with_its_own_client_and_its_app_gets_its_own_headers,
    a_session_made_at_one_site_is_no_session_at_another,
    a_flow_cookie_of_one_site_fails_the_login_at_another_without_a_token_call,
    a_host_no_site_names_gets_421_and_reaches_nothing,
    with_a_top_level_redirect_uri_the_top_level_serves_every_other_host,
}

/// Portal A: one exact name.
const A: SiteClient = SiteClient { id: "client-a", secret: "secret-a", host: "a.test" };
/// Portal B: its name and every name under it.
const B: SiteClient = SiteClient { id: "client-b", secret: "secret-b", host: "b.test" };
/// A name under B's wildcard, and a name no site has.
const UNDER_B: &str = "www.b.test";
const NOBODY: &str = "c.test";
/// Where both sites identify on request but never insist, to see what identity an app gets.
const OPTIONAL: &str = "/abierto/x?format=json";
/// Enforced at both sites (no rule names it).
const PRIVATE: &str = "/tramites?format=json";

/// The gate's origin (`http://127.0.0.1:PORT`), from the stacks' top-level `redirect_uri`.
fn gate_of(config: &serde_json::Value) -> String {
    let uri = config["redirect_uri"].as_str().unwrap_or_else(|| panic!("no redirect_uri in {config}"));
    uri.strip_suffix(CALLBACK_PATH).unwrap_or_else(|| panic!("{uri} is not the stacks' callback")).to_string()
}

/// Two sites, A and B, with the same session keys (the top level's): each its own client and
/// secret, B its own identity header. The top level keeps the stacks' `redirect_uri`: the
/// default site, unless an edit after this one removes it.
fn two_sites(c: &mut serde_json::Value) {
    let gate = gate_of(c);
    // The top level's secret stays in its environment variable; each site's inline secret
    // replaces it (a value and its variable are one setting).
    c["rules"] = json!([{"prefix": "/abierto/", "action": "optional"}]);
    c["sites"] = json!([
        {"hosts": [A.host], "client_id": A.id, "client_secret": A.secret, "redirect_uri": A.redirect_uri(&gate)},
        {
            "hosts": ["*.b.test", B.host],
            "client_id": B.id,
            "client_secret": B.secret,
            "redirect_uri": B.redirect_uri(&gate),
            "headers": {"x-rut": "{run_dotted}"},
        },
    ]);
}

/// No default site: only A and B are served.
fn no_default_site(c: &mut serde_json::Value) {
    c.as_object_mut().map(|o| o.remove("redirect_uri"));
}

/// The gate serving A and B only.
fn start_two_sites(host: Host) -> Box<dyn GateUnderTest> {
    start_gate_with_clients(host, App::Portal, &[A, B], &[two_sites, no_default_site])
}

/// A browser for `site`'s name (or a name under it), with an empty jar.
fn browser_at(gate: &dyn GateUnderTest, host: &str) -> Browser {
    Browser::for_site(&gate.base(), host, &gate.provider())
}

/// The gate's redirect to the provider for `path` at `host`, checked to name `site`'s client
/// and callback.
fn login_starts_for(gate: &dyn GateUnderTest, browser: &mut Browser, path: &str, site: &SiteClient) -> Authorize {
    let authorize = browser.start_login(path);
    assert_eq!(authorize.param("client_id"), Some(site.id), "{}", authorize.url);
    assert_eq!(authorize.param("redirect_uri"), Some(site.redirect_uri(&gate.base()).as_str()), "{}", authorize.url);
    authorize
}

/// A browser at `site` that went through a whole login there and holds a session.
fn logged_in_at(gate: &dyn GateUnderTest, site: &SiteClient) -> Browser {
    let mut browser = browser_at(gate, site.host);
    let authorize = login_starts_for(gate, &mut browser, PRIVATE, site);
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let landed = browser.callback(&callback);
    assert_eq!(landed.status, 302, "the login at {} failed: {landed:?}\n{}", site.host, gate.log());
    assert!(browser.jar.contains_key(SESSION_COOKIE), "no session after the login at {}: {landed:?}", site.host);
    browser
}

/// The request `GET path` written by hand with `host` as its `Host` (none when `None`), sent
/// to the gate.
fn raw_get(gate: &dyn GateUnderTest, version: &str, host: Option<&str>, path: &str) -> Response {
    let host_line = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    let request = format!("GET {path} {version}\r\n{host_line}Connection: close\r\n\r\n");
    raw_http1(&gate.base(), request.as_bytes())
}

/// The gate's 421 for a host it serves no site for: a Spanish page nobody may cache.
fn assert_misdirected(r: &Response) {
    assert_eq!(r.status, 421, "{}: {r:?}", r.url);
    assert!(r.header("cache-control").is_some_and(|c| c.contains("no-store")), "{r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{r:?}");
    assert!(r.body.contains("<html lang=\"es\">") && r.body.contains("Dirección no reconocida"), "{}", r.body);
    assert!(r.header("location").is_none() && r.header_all("set-cookie").is_empty(), "{r:?}");
}

fn each_site_logs_in_with_its_own_client_and_its_app_gets_its_own_headers(host: Host) {
    let gate = start_two_sites(host);
    let gate = gate.as_ref();
    let before = emulator_stats(&gate.provider()).token;

    let mut at_a = logged_in_at(gate, &A);
    // A client's copy of B's header name is removed at A too.
    let echo = assert_identified(&at_a.get_with_headers(PRIVATE, &[("x-rut", "11.111.111-1")]));
    assert!(echo.all("x-rut").is_empty(), "A has the default headers only: {echo:?}");

    let mut at_b = logged_in_at(gate, &B);
    let echo = at_b.get(PRIVATE).echo();
    assert_eq!(echo.all("x-rut"), ["44.444.444-4"], "B's own header: {echo:?}");
    assert!(!echo.headers.iter().any(|(n, _)| n.starts_with("x-claveunica")), "A's headers at B: {echo:?}");
    assert_eq!(emulator_stats(&gate.provider()).token, before + 2, "one code exchange per login");

    // Any name under B's wildcard is B, and starts B's login.
    login_starts_for(gate, &mut browser_at(gate, UNDER_B), PRIVATE, &B);
}

fn a_session_made_at_one_site_is_no_session_at_another(host: Host) {
    let gate = start_two_sites(host);
    let gate = gate.as_ref();
    let at_a = logged_in_at(gate, &A);
    let session = at_a.jar.get(SESSION_COOKIE).cloned().unwrap_or_default();
    let replay = |host: &str| {
        let mut browser = browser_at(gate, host);
        browser.jar.insert(SESSION_COOKIE.into(), session.clone());
        browser
    };

    // Positive control: the cookie, copied by hand into a fresh browser, is a session at A.
    assert_identified(&replay(A.host).get(OPTIONAL));
    assert_identified(&replay(A.host).get(PRIVATE));

    // At B, the same cookie identifies no one, on an optional path...
    let before = gate.app_requests();
    let r = replay(B.host).get(OPTIONAL);
    assert_anonymous(&r);
    assert!(r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "B keeps A's cookie: {r:?}");
    // ...and on an enforced one B sends the browser to log in with B's own client, clearing it.
    let mut browser = replay(B.host);
    let authorize = login_starts_for(gate, &mut browser, PRIVATE, &B);
    let cleared = authorize.response.set_cookie(SESSION_COOKIE);
    assert!(cleared.is_some_and(|c| c.contains("Max-Age=0")), "B keeps A's cookie: {:?}", authorize.response);
    assert_eq!(gate.app_requests(), before + 1, "only the optional path reached B's app");
    // Under B's wildcard too.
    login_starts_for(gate, &mut replay(UNDER_B), PRIVATE, &B);
}

fn a_flow_cookie_of_one_site_fails_the_login_at_another_without_a_token_call(host: Host) {
    let gate = start_two_sites(host);
    let gate = gate.as_ref();
    let mut at_a = browser_at(gate, A.host);
    let authorize = login_starts_for(gate, &mut at_a, PRIVATE, &A);
    let flow = authorize.flow_cookie();
    let flow_value = at_a.jar.get(&flow).cloned().unwrap_or_else(|| panic!("no flow cookie {flow}: {:?}", at_a.jar));
    let callback_at_a = at_a.provider_login(&authorize, RUN, PASSWORD);
    let query = callback_at_a.split_once('?').map(|(_, q)| q.to_string()).unwrap_or_default();
    assert_eq!(param(&callback_at_a, "state").as_deref(), Some(authorize.state.as_str()));

    // A's flow cookie and A's answer from the provider, presented at B's callback.
    let (tokens, app) = (emulator_stats(&gate.provider()).token, gate.app_requests());
    let mut at_b = browser_at(gate, B.host);
    at_b.jar.insert(flow.clone(), flow_value);
    let r = at_b.get(&format!("{CALLBACK_PATH}?{query}"));
    assert_eq!(r.status, 400, "A's login completed at B: {r:?}");
    assert!(r.body.contains("<html lang=\"es\">") && !r.reference().is_empty(), "{}", r.body);
    assert!(!at_b.jar.contains_key(SESSION_COOKIE), "B opened a session: {r:?}");
    assert_eq!(emulator_stats(&gate.provider()).token, tokens, "B spent A's code at the provider");
    assert_eq!(gate.app_requests(), app, "B's app was reached");

    // Positive control: the same answer at A's own callback completes the login there (the
    // code is still unspent), and A's app gets María.
    let landed = at_a.callback(&callback_at_a);
    assert_eq!(landed.status, 302, "{landed:?}");
    assert_eq!(emulator_stats(&gate.provider()).token, tokens + 1);
    assert_identified(&at_a.get(PRIVATE));
}

fn a_host_no_site_names_gets_421_and_reaches_nothing(host: Host) {
    let gate = start_two_sites(host);
    let gate = gate.as_ref();
    let before = gate.app_requests();

    // A name no site has, and the gate's bare address: no default site serves them.
    for name in [NOBODY, "b.test.c.test"] {
        let mut browser = browser_at(gate, name);
        for path in [PRIVATE, OPTIONAL, "/claveunica/login?return_to=%2F", CALLBACK_PATH] {
            assert_misdirected(&browser.get(path));
        }
    }
    let bare = gate.base().trim_start_matches("http://").to_string();
    assert_misdirected(&raw_get(gate, "HTTP/1.1", Some(&bare), PRIVATE));
    // Even holding a session of A's.
    let session = logged_in_at(gate, &A).jar.get(SESSION_COOKIE).cloned().unwrap_or_default();
    let mut browser = browser_at(gate, NOBODY);
    browser.jar.insert(SESSION_COOKIE.into(), session);
    assert_misdirected(&browser.get(OPTIONAL));
    assert_eq!(gate.app_requests(), before, "a request for no site reached the app");

    // Names are compared without case, port or final dot: these are A and B (positive
    // controls of the hand-written requests above).
    for (name, site) in [("A.TEST:1234", &A), ("a.test.", &A), ("WWW.B.Test", &B)] {
        let r = raw_get(gate, "HTTP/1.1", Some(name), PRIVATE);
        assert_eq!(r.status, 302, "Host: {name}: {r:?}");
        let url = r.location();
        assert_eq!(param(url, "client_id").as_deref(), Some(site.id), "Host: {name}: {url}");
    }

    // No host at all: never forwarded. Both hosts refuse it before the gate sees it: Envoy
    // answers 400 (HTTP/1.1 requires Host) and 426 (HTTP/1.0 is off); `wasmtime serve` answers
    // its own 500 page ("missing authority in URI and host header"). A host that passed such a
    // request on would find no site for it: the core's 421.
    for (version, envoy, unit) in [("HTTP/1.1", 400, 500), ("HTTP/1.0", 426, 500)] {
        let r = raw_get(gate, version, None, PRIVATE);
        let expected = if host == Host::Envoy { envoy } else { unit };
        assert_eq!(r.status, expected, "{version} without Host: {r:?}");
    }
    assert_eq!(gate.app_requests(), before, "a request without a host reached the app");
}

fn with_a_top_level_redirect_uri_the_top_level_serves_every_other_host(host: Host) {
    let gate = start_gate_with_clients(host, App::Portal, &[A, B], &[two_sites]);
    let gate = gate.as_ref();

    // The gate's own address is a host no site names: the top level serves it, with its own
    // client, through a whole login.
    let mut browser = gate.browser();
    let authorize = browser.start_login(PRIVATE);
    assert_eq!(authorize.param("client_id"), Some(CLIENT_ID), "{}", authorize.url);
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    assert_eq!(browser.callback(&callback).status, 302);
    assert_identified(&browser.get(PRIVATE));
    // The default's session is no session at a named site (the default seals as a gate without
    // sites does, a named site with keys bound to its own callback).
    let mut at_a = browser_at(gate, A.host);
    at_a.jar.insert(SESSION_COOKIE.into(), browser.jar.get(SESSION_COOKIE).cloned().unwrap_or_default());
    assert_anonymous(&at_a.get(OPTIONAL));

    // Any other unnamed host too.
    let r = browser_at(gate, NOBODY).get(PRIVATE);
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(param(r.location(), "client_id").as_deref(), Some(CLIENT_ID), "{r:?}");
    // The named ones stay their own (positive control that the sites are in force).
    login_starts_for(gate, &mut browser_at(gate, A.host), PRIVATE, &A);
    login_starts_for(gate, &mut browser_at(gate, UNDER_B), PRIVATE, &B);
}
