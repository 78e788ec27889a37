#![cfg(not(target_arch = "wasm32"))]
//! The gate behind an `https` `redirect_uri`, end to end: Envoy's listener speaks TLS with a
//! certificate made for the run, and the client trusts exactly that certificate. With an
//! https `redirect_uri` the gate names its cookies with the `__Host-` prefix and marks them
//! `Secure` (`src/config/site.rs`, `src/web/cookies.rs`); browsers then keep them only as
//! sent over https, for the whole host, from that host alone. Here a whole login, the identity
//! at the app and the logout go over https with those cookies, and a cookie without the
//! prefix is not taken for a session. The gate's calls to the emulator stay plain http, on its
//! cluster. Envoy only: the Unit component is run under `wasmtime serve`, which has no TLS
//! listener.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test https
//! ```

mod support;

use std::time::Duration;

use claveunica_core::primitives::run::Run;
use claveunica_core::protocol::session::Identity;
use support::checks::{assert_identified, assert_sent_to_login, wait_for_log};
use support::parse::cookie_name_of;
use support::tls::TestCert;
use support::{now, param, seal_session, Authorize, Stack, CALLBACK_PATH, LOGIN_PATH, LOGOUT_PATH, PASSWORD, RUN};

/// The session cookie's name behind an https `redirect_uri`.
const HOST_SESSION: &str = "__Host-claveunica_session";
/// The flow cookies' prefix there.
const HOST_FLOW_PREFIX: &str = "__Host-claveunica_flow_";

fn https_stack() -> Stack {
    Stack::builder().tls().start()
}

/// `line` sets a cookie the way `__Host-` requires (`Secure`, `Path=/`, no `Domain`), and
/// keeps it from scripts and cross-site posts.
fn assert_host_cookie(line: &str) {
    let attrs: Vec<String> = line.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect();
    for wanted in ["secure", "path=/", "httponly", "samesite=lax"] {
        assert!(attrs.iter().any(|a| a == wanted), "Set-Cookie without {wanted}: {line}");
    }
    assert!(!attrs.iter().any(|a| a.starts_with("domain")), "a __Host- cookie with a Domain: {line}");
}

#[test]
fn a_whole_login_over_https_uses_secure_host_prefixed_cookies() {
    let stack = https_stack();
    assert!(stack.base().starts_with("https://"), "{}", stack.base());
    // The client checks the certificate: one that trusts another certificate is refused.
    let stranger = TestCert::new().agent(Duration::from_secs(5));
    match stranger.get(&format!("{}/", stack.base())).call() {
        Err(ureq::Error::Transport(t)) => assert!(t.to_string().contains("certificate"), "{t}"),
        other => panic!("a client trusting another certificate got through: {other:?}"),
    }
    let mut browser = stack.browser();
    let wanted = "/tramites/certificado?id=7&format=json";

    let authorize = browser.start_login(wanted);
    let redirect_uri = format!("{}{CALLBACK_PATH}", stack.base());
    assert_eq!(authorize.param("redirect_uri"), Some(redirect_uri.as_str()), "{}", authorize.url);
    let flow_name = format!("{HOST_FLOW_PREFIX}{}", &authorize.state[..12]);
    let set_cookies = authorize.response.header_all("set-cookie");
    assert_eq!(set_cookies.len(), 1, "the redirect sets one cookie, the flow's: {set_cookies:?}");
    assert_eq!(cookie_name_of(set_cookies[0]), flow_name, "{set_cookies:?}");
    assert_host_cookie(set_cookies[0]);

    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    assert!(callback.starts_with(&format!("{redirect_uri}?")), "{callback}");
    assert!(param(&callback, "code").is_some(), "{callback}");
    let landed = browser.callback(&callback);
    assert_eq!(landed.status, 302, "callback: {landed:?}\n{}", stack.envoy_log());
    assert_eq!(landed.location(), wanted);
    let session = landed.set_cookie(HOST_SESSION).unwrap_or_else(|| panic!("no {HOST_SESSION}: {landed:?}"));
    assert_host_cookie(session);
    let flow_gone = landed.set_cookie(&flow_name).unwrap_or_else(|| panic!("the flow cookie stays: {landed:?}"));
    assert!(flow_gone.contains("Max-Age=0"), "{flow_gone}");
    assert_host_cookie(flow_gone);
    assert!(!landed.header_all("set-cookie").iter().any(|c| cookie_name_of(c) == "claveunica_session"), "{landed:?}");

    // The app gets the person, over https, and none of the gate's cookies.
    let r = browser.get(wanted);
    let echo = assert_identified(&r);
    assert!(echo.headers.iter().all(|(n, _)| n != "cookie"), "the gate's cookies reached the app: {echo:?}");
    assert!(wait_for_log(&stack, "login completed: run=*****444-4"), "{}", stack.envoy_log());

    // Logout, with another login in flight: the session and the flow cookie are deleted, each
    // deletion with the attributes a `__Host-` cookie must be deleted with.
    let second = Authorize::from_redirect(browser.get(&format!("{LOGIN_PATH}?return_to=%2Fotra")));
    let second_flow = format!("{HOST_FLOW_PREFIX}{}", &second.state[..12]);
    assert!(browser.jar.contains_key(&second_flow), "{:?}", browser.jar);
    let out = browser.get(LOGOUT_PATH);
    assert_eq!(out.status, 200, "{out:?}");
    for name in [HOST_SESSION, second_flow.as_str()] {
        let line = out.set_cookie(name).unwrap_or_else(|| panic!("logout does not delete {name}: {out:?}"));
        assert!(line.contains("Max-Age=0"), "{line}");
        assert_host_cookie(line);
    }
    assert!(browser.jar.is_empty(), "cookies left after logout: {:?}", browser.jar);
    assert_sent_to_login(&stack, &browser.get(wanted));
}

#[test]
fn a_session_cookie_without_the_host_prefix_is_no_session() {
    let stack = https_stack();
    let maria = Identity::new(
        Run::parse(RUN).expect("María's RUN"),
        vec!["María Carmen".into()],
        vec!["De los Ríos".into(), "Núñez".into()],
        "2594".into(),
    )
    .expect("María's identity");
    let t = now();
    let sealed = seal_session(&stack.ring(), maria, t, t + 3600, t);

    // The same sealed value under the prefixed name is a session (the control)...
    let mut prefixed = stack.browser();
    prefixed.jar.insert(HOST_SESSION.into(), sealed.clone());
    assert_identified(&prefixed.get("/cuenta?format=json"));

    // ...and under the plain name, which any subdomain or plain-http page could have set, it
    // is not: the gate asks for a login, and nothing reaches the app.
    let mut plain = stack.browser();
    plain.jar.insert("claveunica_session".into(), sealed);
    let before = stack.app_requests();
    let r = plain.get("/cuenta?format=json");
    assert_sent_to_login(&stack, &r);
    assert_eq!(stack.app_requests(), before, "a request without a session reached the app");
}
