#![cfg(not(target_arch = "wasm32"))]
//! Lifetimes and the settings around them, end to end: the clock leeway on the ID token's
//! `iat` and `exp` (`clock_leeway_s`), the login attempt's lifetime (`flow.max_age_s`), the
//! logout page's two ways out (ClaveÚnica's logout with `redirect`, and the fallback for when
//! ClaveÚnica answers 204), a custom `logout_response_header`, and on Envoy the background
//! refresh of ClaveÚnica's keys (`jwks_refresh_s`) with its backoff on failure.
//!
//! Each setting is set away from its default, so a gate that ignored it would fail the test.
//! All but the key refresh run on both hosts (`on_both_hosts!`); the key refresh needs a host
//! that ticks and keeps keys between requests, which the Unit component does not (its test
//! says so). The logout fallback in a real browser is in `tests/browser/login.test.mjs`.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test lifetimes
//! ```

#[macro_use]
mod support;

use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use claveunica_core::primitives::seal::NONCE_LEN;
use claveunica_core::protocol::flow::{Flow, NONCE_BYTES, STATE_BYTES};
use serde_json::{json, Value};
use support::checks::{assert_anonymous, assert_identified, start_gate, GateUnderTest, Host};
use support::{
    assert_sent_to_login, log_line_with, logged_in, now, random_bytes, url_encode, wait_for_log, wait_until, Response,
    Stack, CALLBACK_PATH, FLOW_PREFIX, LOGOUT_PATH, PASSWORD, RUN, SESSION_COOKIE,
};

on_both_hosts! {
    the_clock_leeway_is_the_configured_one,
    a_login_attempt_older_than_its_lifetime_is_refused_at_the_callback,
    the_logout_page_holds_the_provider_logout_and_the_fallback,
    a_custom_logout_response_header_ends_the_session_and_the_default_does_not,
}

/// The leeway these stacks are given: far from the default 60 s.
const LEEWAY_S: i64 = 10;
/// The login attempt's lifetime these stacks are given: far from the default 600 s.
const FLOW_MAX_AGE_S: u64 = 120;
/// Where the gate sends the browser after logout, on the gate's own origin.
const FALLBACK_PATH: &str = "/public/adios";

/// The base of every test here but the key refresh: `/public/` public, the leeway, the flow
/// lifetime and the post-logout page set away from their defaults.
fn base_config(c: &mut Value) {
    c["rules"] = json!([{"prefix": "/public/", "action": "public"}]);
    c["clock_leeway_s"] = json!(LEEWAY_S);
    c["flow"] = json!({"max_age_s": FLOW_MAX_AGE_S});
    let origin = c["redirect_uri"].as_str().and_then(|u| u.strip_suffix(CALLBACK_PATH)).map(str::to_string);
    let origin = origin.unwrap_or_else(|| panic!("redirect_uri does not end with {CALLBACK_PATH}: {c}"));
    c["post_logout_redirect"] = json!(format!("{origin}{FALLBACK_PATH}"));
}

fn start(host: Host, edits: &[fn(&mut Value)]) -> Box<dyn GateUnderTest> {
    let all: Vec<fn(&mut Value)> =
        std::iter::once(base_config as fn(&mut Value)).chain(edits.iter().copied()).collect();
    start_gate(host, &all)
}

/// A failure page of the gate's: the status, HTML, no session, and a reference whose log line
/// says `reason` (and `detail`, when given).
fn assert_failure_page(gate: &dyn GateUnderTest, r: &Response, status: u16, reason: &str, detail: &str, when: &str) {
    assert_eq!(r.status, status, "{when}: {r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{when}: {r:?}");
    assert!(r.set_cookie(SESSION_COOKIE).is_none_or(|c| c.contains("Max-Age=0")), "{when}: a session was set: {r:?}");
    let reference = r.reference();
    let line = log_line_with(gate, &format!("ref={reference}"));
    assert!(
        line.contains(&format!("status={status} reason={reason} ")) && line.contains(detail),
        "{when}: the log line for ref={reference} does not say status={status} reason={reason} {detail}: {line:?}"
    );
}

/// The ID token's `iat` and `exp` set `iat_offset_s` and `exp_offset_s` from the provider's
/// clock. With a leeway of [`LEEWAY_S`] (10 s): a token issued 5 s in the future or expired
/// 5 s ago still logs in; one issued 40 s in the future or expired 40 s ago is refused with
/// the 502 page, `reason=id_token_invalid` and what was wrong in the log, and nothing reaches
/// the app. 40 s is within the default leeway (60 s), so a gate that ignored the setting fails.
fn the_clock_leeway_is_the_configured_one(host: Host) {
    let gate = start(host, &[]);
    let genuine = json!({"iat_offset_s": 0, "exp_offset_s": 600});
    // iat_offset_s, exp_offset_s, what the gate does: None logs in, Some(detail) refuses.
    let rows: &[(i64, i64, Option<&str>)] =
        &[(5, 600, None), (0, -5, None), (40, 600, Some("detail=issuedat")), (0, -40, Some("detail=expired"))];
    for &(iat, exp, refused) in rows {
        let when = format!("iat {iat:+} s, exp {exp:+} s from the provider's clock, leeway {LEEWAY_S} s");
        let set = gate.set_emulator_mode(&json!({"iat_offset_s": iat, "exp_offset_s": exp}));
        assert_eq!((set["iat_offset_s"].as_i64(), set["exp_offset_s"].as_i64()), (Some(iat), Some(exp)), "{set}");
        let before = gate.app_requests();
        let mut browser = gate.browser();
        let r = browser.login("/tramites?format=json", RUN, PASSWORD);
        match refused {
            None => {
                assert_eq!((r.status, r.location()), (302, "/tramites?format=json"), "{when}: {r:?}\n{}", gate.log());
                assert_identified(&browser.get("/tramites?format=json"));
            }
            Some(detail) => {
                assert_failure_page(gate.as_ref(), &r, 502, "id_token_invalid", detail, &when);
                assert!(r.body.contains("respondió con un error"), "{when}: {}", r.body);
                assert!(!browser.jar.contains_key(SESSION_COOKIE), "{when}: {:?}", browser.jar);
                assert_eq!(gate.app_requests(), before, "{when}: a refused login reached the app");
            }
        }
    }
    gate.set_emulator_mode(&genuine);
}

/// The callback of a login attempt whose flow cookie is older than `flow.max_age_s`
/// ([`FLOW_MAX_AGE_S`], 120 s) gets the 400 page with `reason=flow_expired`, loses its flow
/// cookie, reaches neither ClaveÚnica nor the app, and sets no session; so does one from the
/// future. The browser would drop the cookie by its `Max-Age`; the gate must not rely on that,
/// so the test seals the attempt itself with the gate's key, backdated, for a real login at the
/// emulator (its `state`, nonce and code). The same callback with the attempt 90 s old then
/// logs in: only the attempt's age differed (and 150 s is within the default 600 s).
fn a_login_attempt_older_than_its_lifetime_is_refused_at_the_callback(host: Host) {
    let gate = start(host, &[]);
    let mut browser = gate.browser();
    let wanted = "/tramites?format=json";
    let authorize = browser.start_login(wanted);
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let decode = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("base64url");
    let state: [u8; STATE_BYTES] = decode(&authorize.state).try_into().expect("a state of 32 bytes");
    let nonce: [u8; NONCE_BYTES] = decode(&authorize.nonce).try_into().expect("a nonce of 24 bytes");
    let ring = gate.ring();
    let flow_cookie = authorize.flow_cookie();
    let sealed_at = |created_at: u64| {
        let flow = Flow::new(state, nonce, wanted.to_string(), created_at);
        assert_eq!(flow.cookie_name(FLOW_PREFIX), flow_cookie);
        flow.seal(&ring, random_bytes::<NONCE_LEN>()).expect("sealing a flow")
    };

    let (calls, before) = (gate.provider_calls(), gate.app_requests());
    for (what, created_at) in
        [("150 s old", now() - (FLOW_MAX_AGE_S + 30)), ("from 120 s in the future", now() + FLOW_MAX_AGE_S)]
    {
        let mut attempt = browser.clone();
        attempt.jar.insert(flow_cookie.clone(), sealed_at(created_at));
        let r = attempt.callback(&callback);
        let when = format!("a login attempt {what}");
        assert_failure_page(gate.as_ref(), &r, 400, "flow_expired", "", &when);
        assert!(r.body.contains("no es válido o ya expiró"), "{when}: {}", r.body);
        assert!(r.set_cookie(&flow_cookie).is_some_and(|c| c.contains("Max-Age=0")), "{when}: flow kept: {r:?}");
        assert!(!attempt.jar.contains_key(SESSION_COOKIE), "{when}: {:?}", attempt.jar);
    }
    assert_eq!(gate.provider_calls(), calls, "an expired attempt reached ClaveÚnica");
    assert_eq!(gate.app_requests(), before, "an expired attempt reached the app");

    browser.jar.insert(flow_cookie.clone(), sealed_at(now() - (FLOW_MAX_AGE_S - 30)));
    let r = browser.callback(&callback);
    assert_eq!((r.status, r.location()), (302, wanted), "a 90 s old attempt: {r:?}\n{}", gate.log());
    assert_identified(&browser.get(wanted));
}

/// The `href`s of a page, in order, with `&amp;` undone.
fn hrefs(body: &str) -> Vec<String> {
    body.split("href=\"").skip(1).filter_map(|rest| rest.split('"').next()).map(|h| h.replace("&amp;", "&")).collect()
}

/// The logout page takes the browser to ClaveÚnica's logout with `redirect` set to
/// `post_logout_redirect`, and holds that same page as the fallback the timer goes to (and the
/// link to it): the script and the links name both. Following the provider's link lands on
/// the fallback; with ClaveÚnica answering 204 (the emulator's `no_content` logout mode) it does
/// not, which is what the fallback is for (a real browser takes it in
/// `tests/browser/login.test.mjs`). The fallback page is the app's, without identity.
fn the_logout_page_holds_the_provider_logout_and_the_fallback(host: Host) {
    let gate = start(host, &[]);
    let mut browser = logged_in(gate.as_ref(), "/");
    let page = browser.get(LOGOUT_PATH);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "{page:?}");
    let fallback = format!("{}{FALLBACK_PATH}", gate.base());
    let provider_logout = format!("{}/api/v1/accounts/app/logout?redirect={}", gate.provider(), url_encode(&fallback));
    // What the page is for, in its main part (the header and footer link home and to help).
    let main = page.body.split("<main>").nth(1).and_then(|m| m.split("</main>").next()).unwrap_or_default();
    assert_eq!(hrefs(main), [provider_logout.clone(), fallback.clone()], "{}", page.body);
    let script = page.body.split("<script>").nth(1).and_then(|s| s.split("</script>").next()).unwrap_or_default();
    assert!(
        script.contains(&format!("\"{provider_logout}\"")) && script.contains(&format!("\"{fallback}\"")),
        "the script does not name both URLs: {script:?}"
    );
    assert!(script.contains("setTimeout") && script.contains("1500"), "no fallback timer: {script:?}");

    let r = browser.get_url(&provider_logout);
    assert_eq!((r.status, r.location()), (302, fallback.as_str()), "ClaveÚnica's logout: {r:?}");
    gate.set_emulator_mode(&json!({"logout": "no_content"}));
    let r = browser.get_url(&provider_logout);
    assert_eq!((r.status, r.header("location")), (204, None), "ClaveÚnica's logout in no_content mode: {r:?}");
    gate.set_emulator_mode(&json!({"logout": "normal"}));
    let landed = browser.get_url(&fallback);
    assert_eq!(landed.status, 200, "the fallback page: {landed:?}");
    assert_anonymous(&browser.get_url(&format!("{fallback}?format=json")));
    assert_sent_to_login(gate.as_ref(), &browser.get("/private"));
}

/// With `logout_response_header: "X-App-Logout"`, the app's answer to an identified request
/// carrying that header (the demo app sends it with `app_logout_header=`) is replaced by the
/// logout page: the session cookie is cleared, the app's header and page do not reach the
/// browser, the log says so, and the next request is anonymous. The default header,
/// `x-claveunica-logout`, is then only one of the app's headers: its answer passes as it is and
/// the session stays. An anonymous answer with the custom header passes too (only an
/// identified request's answer can end a session).
fn a_custom_logout_response_header_ends_the_session_and_the_default_does_not(host: Host) {
    let gate = start(host, &[|c| c["logout_response_header"] = json!("X-App-Logout")]);
    let mut browser = logged_in(gate.as_ref(), "/");

    let r = browser.get("/private?app_logout=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("RUN desconocido"), "the app's answer with the default header was replaced: {}", r.body);
    assert_eq!(r.header("x-claveunica-logout"), Some("1"), "the app's answer did not pass as it is: {r:?}");
    assert!(r.set_cookie(SESSION_COOKIE).is_none(), "the default header touched the session: {r:?}");
    assert_identified(&browser.get("/private?format=json"));

    let r = gate.browser().get("/public/x?app_logout_header=X-App-Logout");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("RUN desconocido"), "an anonymous answer was replaced: {}", r.body);

    let r = browser.get("/private?app_logout_header=X-App-Logout");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("Sesión cerrada"), "not the logout page: {}", r.body);
    assert!(!r.body.contains("RUN desconocido"), "the app's answer came through: {}", r.body);
    assert!(r.header("x-app-logout").is_none(), "the app's logout header reached the browser: {r:?}");
    assert!(r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "{r:?}");
    assert!(wait_for_log(gate.as_ref(), "logout requested by the application"), "{}", gate.log());
    assert!(!browser.jar.contains_key(SESSION_COOKIE), "{:?}", browser.jar);
    assert_sent_to_login(gate.as_ref(), &browser.get("/private?format=json"));
    assert_anonymous(&browser.get("/public/x?format=json"));
}

/// How often the test reads the emulator's counters while it waits.
const POLL: Duration = Duration::from_millis(200);

/// Waits up to `limit` for the emulator's JWKS count to reach `n`; the time it did.
fn jwks_fetch(stack: &Stack, n: u64, limit: Duration, what: &str) -> Instant {
    let started = Instant::now();
    loop {
        let seen = stack.emulator_stats().jwks;
        assert!(seen <= n, "{what}: {seen} JWKS fetches, expected {n} at most\n{}", stack.envoy_log());
        if seen == n {
            return Instant::now();
        }
        assert!(started.elapsed() < limit, "{what}: no JWKS fetch number {n} within {limit:?} (saw {seen})");
        thread::sleep(POLL);
    }
}

/// `gap` is `want` seconds give or take the gate's one-second tick and clock (and the poll).
fn assert_about(gap: Duration, want: u64, what: &str) {
    let (low, high) = (Duration::from_millis(want * 1000 - 1500), Duration::from_millis(want * 1000 + 2500));
    assert!(low <= gap && gap <= high, "{what}: {gap:?}, expected about {want} s");
}

/// On Envoy the gate refreshes ClaveÚnica's keys in the background, on its one-second tick,
/// for all workers at once (two here): with `jwks_refresh_s: 60` the second fetch comes about
/// 60 s after the first, with no login asking. When the JWKS endpoint fails, the refresh
/// backs off as `src/protocol/oidc/jwks.rs` says (5 s after one failure, 10 s after two, 20 s
/// after three, ...) instead of fetching every tick; the last good keys stay and logins keep
/// working. A key rotated at the provider meanwhile is fetched by the next refresh, which
/// succeeds once the endpoint heals, and then logins use it with no fetch of their own.
///
/// Envoy only: the Unit component keeps no keys between requests (an instance per request, no
/// tick), so every login there fetches the keys itself (`tests/faults.rs`).
///
/// Takes about 100 s: 60 s to the refresh, then 5 + 10 + 20 s of backoff.
#[test]
fn keys_are_refreshed_in_the_background_and_a_failing_jwks_backs_off_on_envoy() {
    let started = Instant::now();
    let stack = Stack::builder().edit_config(|c| c["jwks_refresh_s"] = json!(60)).start();
    let counter = |name: &str| stack.gate_counter(&format!("claveunica_gate.{name}"));
    // The fetch at start happened between `started` and `first`.
    let first = jwks_fetch(&stack, 1, Duration::from_secs(10), "the fetch at start");
    let session = logged_in(&stack, "/").jar[SESSION_COOKIE].clone();
    assert_eq!(stack.emulator_stats().jwks, 1, "a login with known keys fetched them");

    // The JWKS endpoint fails from now on: the refresh at 60 s fails, then backs off.
    stack.set_emulator_mode(&json!({"fault": {"endpoint": "jwks", "kind": "status_500"}}));
    let refresh = jwks_fetch(&stack, 2, Duration::from_secs(70), "the refresh after jwks_refresh_s");
    let (low, high) = (refresh - started, refresh - first);
    assert!(
        low >= Duration::from_secs(59) && high <= Duration::from_millis(62_500),
        "the refresh came {low:?} after the stack started and {high:?} after the first fetch was seen, \
         not about 60 s after the first fetch"
    );
    // Keys kept: a login and the open session work while the endpoint fails.
    let mut b = stack.browser();
    let r = b.login("/tramites?format=json", RUN, PASSWORD);
    assert_eq!(r.status, 302, "a login while the JWKS fails: {r:?}\n{}", stack.envoy_log());
    assert_identified(&b.get("/tramites?format=json"));
    let mut b = stack.browser();
    b.jar.insert(SESSION_COOKIE.into(), session);
    assert_identified(&b.get("/?format=json"));

    let second = jwks_fetch(&stack, 3, Duration::from_secs(12), "the retry after one failure");
    assert_about(second - refresh, 5, "the backoff after one failure");
    let third = jwks_fetch(&stack, 4, Duration::from_secs(17), "the retry after two failures");
    assert_about(third - second, 10, "the backoff after two failures");
    assert!(
        stack.envoy_log().contains("jwks refresh failed (status 500); 3 in a row, keeping the last good keys"),
        "{}",
        stack.envoy_log()
    );
    assert!(
        wait_until(Duration::from_secs(3), || counter("jwks_refresh_failures") == 3),
        "{:?}",
        stack.stats_matching("claveunica_gate")
    );

    // The provider rotates its key (publishing only the new one) and its JWKS heals: the next
    // retry, 20 s after the third failure, fetches the new key.
    let refreshes = counter("jwks_refreshes");
    let kid = stack.rotate_provider_key(false);
    stack.set_emulator_mode(&json!({"fault": {"endpoint": "all", "kind": "none"}}));
    let healed = jwks_fetch(&stack, 5, Duration::from_secs(27), "the retry after three failures");
    assert_about(healed - third, 20, "the backoff after three failures");
    assert!(
        wait_until(Duration::from_secs(3), || counter("jwks_refreshes") == refreshes + 1),
        "the healed refresh was not counted: {:?}",
        stack.stats_matching("claveunica_gate")
    );
    // Logins (fresh connections, either worker) verify tokens signed under the new kid with
    // the keys the background refresh fetched: no fetch of their own.
    for i in 0..3 {
        let mut b = stack.browser();
        let r = b.login("/tramites?format=json", RUN, PASSWORD);
        assert_eq!(r.status, 302, "login {i} with the rotated key {kid}: {r:?}\n{}", stack.envoy_log());
    }
    assert_eq!(stack.emulator_stats().jwks, 5, "a login fetched the rotated key itself");
}
