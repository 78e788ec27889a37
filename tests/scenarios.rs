#![cfg(not(target_arch = "wasm32"))]
//! One table of end-to-end scenarios, run against both hosts: the gate in a real Envoy and the
//! NGINX Unit component under `wasmtime serve`, each in front of the legacy echo app and
//! logging in at the ClaveÚnica emulator. The core decides every one of these once; this shows
//! both adapters carry its decisions out alike. Where a host really differs, the scenario says
//! so with `gate.host()` and an expectation for each.
//!
//! Every scenario starts from the same configuration: the stacks' defaults with `/public/`
//! public and everything else enforced, then the scenario's own edits. Rules and migration
//! modes have their own table, `tests/rollout.rs`, also run on both hosts.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test scenarios
//! ```

#[macro_use]
mod support;

use base64::Engine as _;
use claveunica_core::primitives::seal::{KeyRing, SessionKey};
use claveunica_core::testkit;
use serde_json::{json, Value};
use support::checks::{start_gate, GateUnderTest, Host};
use support::{
    assert_sent_to_login, logged_in, param, wait_for_log, with_param, Response, APELLIDOS, CALLBACK_PATH, CLIENT_ID,
    FLOW_PREFIX, LOGOUT_PATH, NOMBRES, PASSWORD, RUN, SESSION_COOKIE,
};
use support::{now, random_bytes, seal_session};

/// Every identity header, in assorted letter cases, with forged values.
const SPOOFED: &[(&str, &str)] = &[
    ("x-claveunica-run", "11111111-1"),
    ("X-ClaveUnica-RUN", "22222222-2"),
    ("X-CLAVEUNICA-RUN", "33333333-3"),
    ("x-claveunica-numero", "11111111"),
    ("X-ClaveUnica-Numero", "22222222"),
    ("X-Claveunica-Dv", "K"),
    ("x-claveunica-nombres", "Mallory"),
    ("X-CLAVEUNICA-APELLIDOS", "Impostora"),
    // CGI, PHP, Rack and WSGI read `_` and `-` alike, so these would shadow the real ones.
    ("x_claveunica_run", "11111111-1"),
    ("X_ClaveUnica_Dv", "K"),
];

on_both_hosts! {
    a_full_login_lands_on_the_page_asked_for_with_identity,
    path_tricks_sent_raw_never_reach_a_protected_page_without_a_session,
    forged_identity_headers_never_reach_the_app,
    gate_cookies_stay_with_the_gate_and_app_cookies_pass,
    a_tampered_session_cookie_is_refused,
    bad_and_replayed_callbacks_get_a_400_page_and_no_session,
    a_cancelled_login_gets_its_page,
    provider_down_gives_the_503_page_with_a_reference,
    a_wrong_provider_answer_gives_the_502_page,
    return_paths_never_leave_the_site,
    logout_ends_the_session_and_the_app_can_ask_for_it,
    two_tabs_log_in_at_once_as_two_people_and_each_lands_on_its_own_page,
    a_wrong_client_secret_gives_the_502_page_and_is_never_logged,
    keys_rotate_at_both_ends_and_people_stay_logged_in,
    path_parameters_and_double_encodings_never_open_a_public_prefix,
    case_insensitive_rules_hold_for_every_spelling,
    a_persons_answer_never_stays_in_a_shared_cache,
}

/// The table's base: `/public/` public, everything else enforced.
fn public_prefix(c: &mut Value) {
    c["rules"] = json!([{"prefix": "/public/", "action": "public"}]);
}

fn start(host: Host, edits: &[fn(&mut Value)]) -> Box<dyn GateUnderTest> {
    let all: Vec<fn(&mut Value)> =
        std::iter::once(public_prefix as fn(&mut Value)).chain(edits.iter().copied()).collect();
    start_gate(host, &all)
}

/// A failure page of the gate's: the status, HTML, a reference that is in the log.
fn assert_failure_page(gate: &dyn GateUnderTest, r: &Response, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    let reference = r.reference();
    assert!(wait_for_log(gate, &format!("ref={reference}")), "reference {reference} not logged:\n{}", gate.log());
    assert!(gate.log().contains(&format!("reason={reason}")), "no reason={reason} in the log:\n{}", gate.log());
}

fn a_full_login_lands_on_the_page_asked_for_with_identity(host: Host) {
    let gate = start(host, &[]);
    let mut browser = gate.browser();
    let wanted = "/tramites/certificado?id=7&format=json";
    let authorize = browser.start_login(wanted);
    assert_eq!(authorize.param("client_id"), Some(CLIENT_ID));
    assert_eq!(authorize.param("response_type"), Some("code"));
    assert_eq!(authorize.param("scope"), Some("openid run name"), "certification checks the exact scope");
    assert_eq!(authorize.param("redirect_uri"), Some(format!("{}{CALLBACK_PATH}", gate.base()).as_str()));
    // README: `state` carries 256 random bits (32 bytes, base64url without padding).
    let state = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&authorize.state);
    assert_eq!(state.map(|b| b.len()).ok(), Some(32), "state {:?} is not 256 bits", authorize.state);
    assert!(!authorize.nonce.is_empty(), "no nonce in {}", authorize.url);
    assert_ne!(authorize.state, authorize.nonce);
    let flow = authorize.response.set_cookie(&authorize.flow_cookie());
    let flow = flow.unwrap_or_else(|| panic!("no flow cookie {}: {:?}", authorize.flow_cookie(), authorize.response));
    assert!(flow.contains("HttpOnly") && flow.contains("SameSite=Lax"), "flow cookie attributes: {flow}");

    // The sandbox RUN as people type it, with dots.
    let callback = browser.provider_login(&authorize, "44.444.444-4", PASSWORD);
    assert_eq!(param(&callback, "state").as_deref(), Some(authorize.state.as_str()));
    let landed = browser.callback(&callback);
    assert_eq!(landed.status, 302, "callback: {landed:?}\n{}", gate.log());
    assert_eq!(landed.location(), wanted);
    let session = landed.set_cookie(SESSION_COOKIE).unwrap_or_else(|| panic!("no session cookie: {landed:?}"));
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "session cookie attributes: {session}");
    assert!(session.len() < 4096, "a session cookie of {} bytes", session.len());
    assert!(!browser.jar.keys().any(|k| k.starts_with(FLOW_PREFIX)), "the flow cookie outlived the login");
    assert!(wait_for_log(gate.as_ref(), "login completed: run=*****444-4"), "{}", gate.log());
    assert!(!gate.log().contains("44444444"), "the log holds a full RUN:\n{}", gate.log());

    let echo = browser.get(wanted).echo();
    assert_eq!(echo.path, "/tramites/certificado");
    assert_eq!(echo.query, "id=7&format=json");
    assert_eq!(echo.one("x-claveunica-run"), Some(RUN));
    assert_eq!(echo.one("x-claveunica-numero"), Some("44444444"));
    assert_eq!(echo.one("x-claveunica-dv"), Some("4"));
    assert_eq!(echo.one("x-claveunica-nombres"), Some(NOMBRES));
    assert_eq!(echo.one("x-claveunica-apellidos"), Some(APELLIDOS));
    // The HTML portal greets the person by name.
    let portal = browser.get("/");
    assert_eq!(portal.status, 200, "{portal:?}");
    assert!(portal.body.contains("María Carmen"), "the portal does not greet the user: {}", portal.body);
}

/// Request targets sent byte for byte as written (an HTTP client would resolve the dot
/// segments and test a clean path instead): protected paths, and paths that start under the
/// public prefix but are not in normal form, so the application may resolve them to a
/// protected page. Each must be sent to login, and the app's count must not move, while the
/// same count moves for a plain public path (the positive control).
fn path_tricks_sent_raw_never_reach_a_protected_page_without_a_session(host: Host) {
    let gate = start(host, &[]);
    let before = gate.app_requests();
    let public = gate.browser().raw("GET", "/public/info?format=json", &[]);
    assert_eq!(public.status, 200, "{public:?}");
    assert_eq!(gate.app_requests(), before + 1, "the public request did not reach the app");
    for target in [
        "/",
        "/tramites/certificado?id=7",
        "/static/../admin",
        "/public/../admin",
        "/public/./../admin?format=json",
        "/public/%2e%2e/admin",
        "/public/%2E%2E%2Fadmin",
        "/public/..%2fadmin",
        "/public/..\\admin",
        "/public//../../admin",
        "/public/x/../../admin",
    ] {
        assert_raw_target_never_reaches_the_app(gate.as_ref(), target, false);
    }
}

/// `target`, sent byte for byte without a session, gets a login (or, when `host_may_refuse`,
/// the host's own 400) and nothing reaches the app.
fn assert_raw_target_never_reaches_the_app(gate: &dyn GateUnderTest, target: &str, host_may_refuse: bool) {
    let before = gate.app_requests();
    let r = gate.browser().raw("GET", target, &[]);
    if !(host_may_refuse && r.status == 400) {
        assert_sent_to_login(gate, &r);
    }
    assert!(!r.body.contains("Portal Legado"), "{target}: the app's page came through: {r:?}");
    assert_eq!(gate.app_requests(), before, "{target} without a session reached the app");
}

/// What Tomcat, Jetty, JBoss, IIS and applications that decode twice resolve differently from
/// the gate: each request target, sent byte for byte, reaches nothing without a session. A host
/// may refuse a malformed target itself (400); either way the app's count stays still.
fn path_parameters_and_double_encodings_never_open_a_public_prefix(host: Host) {
    let gate = start(host, &[]);
    let public = gate.browser().raw("GET", "/public/a%20b?format=json", &[]);
    assert_eq!(public.status, 200, "the positive control: {public:?}");
    for target in [
        "/public/..;/admin",
        "/public/..;x=1/admin?format=json",
        "/public;/../admin",
        "/public/x;jsessionid=1",
        "/public/%252e%252e/admin",
        "/public/%252e%252e%252fadmin",
        "/public/%2561dmin",
        "/public/%61dmin",
        "/public/%3b/../admin",
        "/public/%u002e%u002e/admin",
        "/public/%c0%ae%c0%ae/admin",
        "/public/%EF%BC%8F..%EF%BC%8Fadmin",
        "/public./admin",
        "/public/admin.",
        "/public%20/admin",
        "/public/%",
        "/public/%00",
    ] {
        assert_raw_target_never_reaches_the_app(gate.as_ref(), target, true);
    }
}

/// With `path_case: insensitive` (for IIS and ASP.NET applications), an enforced prefix holds
/// in every letter case; without it, `/ADMIN/` is another path, as on a case-sensitive server.
fn case_insensitive_rules_hold_for_every_spelling(host: Host) {
    fn admin_first(c: &mut Value) {
        c["rules"] = json!([{"prefix": "/admin/", "action": "enforce"}, {"prefix": "/", "action": "public"}]);
    }
    fn insensitive(c: &mut Value) {
        c["path_case"] = json!("insensitive");
    }
    let gate = start(host, &[admin_first, insensitive]);
    for target in ["/admin/x", "/ADMIN/x", "/Admin/x?format=json", "/aDmIn/", "/%41dmin/x"] {
        assert_raw_target_never_reaches_the_app(gate.as_ref(), target, false);
    }
    let public = gate.browser().raw("GET", "/Public/x?format=json", &[]);
    assert_eq!(public.status, 200, "{public:?}");
    drop(gate);
    // The control: case-sensitive rules let `/ADMIN/` through, which is why the option exists.
    let gate = start(host, &[admin_first]);
    let before = gate.app_requests();
    assert_eq!(gate.browser().raw("GET", "/ADMIN/x?format=json", &[]).status, 200);
    assert_eq!(gate.app_requests(), before + 1);
}

/// The app answers `Cache-Control: public, max-age=600` (`cache=public`). Sent to a person, or
/// carrying the gate's cookie, the answer leaves `private` and varying by `Cookie`, so no
/// shared cache keeps it; an anonymous public answer keeps the app's header.
fn a_persons_answer_never_stays_in_a_shared_cache(host: Host) {
    fn optional_too(c: &mut Value) {
        c["rules"] =
            json!([{"prefix": "/public/", "action": "public"}, {"prefix": "/optional/", "action": "optional"}]);
    }
    let gate = start(host, &[optional_too]);
    let private = |r: &Response| {
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header_all("cache-control"), ["private, max-age=600"], "{r:?}");
        let vary = r.header_all("vary").join(",").to_ascii_lowercase();
        assert!(vary.split(',').any(|v| v.trim() == "cookie"), "no Vary: Cookie in {r:?}");
    };
    let anonymous = gate.browser().get("/public/info?format=json&cache=public");
    assert_eq!(anonymous.status, 200, "{anonymous:?}");
    assert_eq!(anonymous.header_all("cache-control"), ["public, max-age=600"], "the control: {anonymous:?}");

    let mut browser = logged_in(gate.as_ref(), "/tramites");
    for path in ["/tramites?format=json&cache=public", "/optional/x?format=json&cache=public"] {
        let r = browser.get(path);
        private(&r);
        assert_eq!(r.echo().one("x-claveunica-run"), Some(RUN), "{path}");
    }
    // A public answer carries no identity: the app's header stands, even with a session.
    let r = browser.get("/public/info?format=json&cache=public");
    assert_eq!(r.header_all("cache-control"), ["public, max-age=600"], "{r:?}");

    // Anonymous, but carrying the gate's cookie (a bad session cookie cleared): private too.
    let mut stale = gate.browser();
    stale.jar.insert(SESSION_COOKIE.into(), "garbage".into());
    let r = stale.get("/optional/x?format=json&cache=public");
    assert!(r.set_cookie(SESSION_COOKIE).is_some(), "the bad cookie was not cleared: {r:?}");
    private(&r);
}

fn forged_identity_headers_never_reach_the_app(host: Host) {
    let gate = start(host, &[]);
    // The client really sends every forged header, repeats included (straight to the app).
    let direct = gate.browser().get_url_with_headers(&format!("{}/?format=json", gate.app()), SPOOFED).echo();
    let sent = direct.headers.iter().filter(|(n, _)| n.replace('_', "-").starts_with("x-claveunica-")).count();
    assert_eq!(sent, SPOOFED.len(), "the client did not send every forged header: {direct:?}");

    // Without a session, on a public path: the request passes (the app's count moves: the
    // positive control for every "nothing reached the app" below), its forged identity does not.
    let mut anonymous = gate.browser();
    let before = gate.app_requests();
    let echo = anonymous.get_with_headers("/public/info?format=json", SPOOFED).echo();
    assert_eq!(gate.app_requests(), before + 1, "the public request did not reach the app");
    let forged: Vec<_> =
        echo.headers.iter().filter(|(n, _)| n.replace('_', "-").starts_with("x-claveunica-")).collect();
    assert!(forged.is_empty(), "forged identity reached the app without a session: {forged:?}");
    // Without a session, on a protected path: a login, and nothing reaches the app.
    let before = gate.app_requests();
    let r = anonymous.get_with_headers("/private?format=json", SPOOFED);
    assert_sent_to_login(gate.as_ref(), &r);
    assert!(!r.body.contains("Portal Legado"), "the app's page came through: {r:?}");
    assert_eq!(gate.app_requests(), before, "a protected request without session reached the app");

    // With a session: exactly the gate's values, once each, and no other spelling.
    let mut browser = logged_in(gate.as_ref(), "/");
    let echo = browser.get_with_headers("/private?format=json", SPOOFED).echo();
    assert_eq!(echo.all("x-claveunica-run"), [RUN]);
    assert_eq!(echo.all("x-claveunica-dv"), ["4"]);
    assert_eq!(echo.all("x-claveunica-numero"), ["44444444"]);
    assert_eq!(echo.all("x-claveunica-nombres"), [NOMBRES]);
    assert_eq!(echo.all("x-claveunica-apellidos"), [APELLIDOS]);
    assert!(!echo.headers.iter().any(|(n, _)| n.contains('_')), "an underscore spelling got through: {echo:?}");
}

fn gate_cookies_stay_with_the_gate_and_app_cookies_pass(host: Host) {
    let gate = start(host, &[]);
    let mut browser = logged_in(gate.as_ref(), "/");
    browser.jar.insert("PHPSESSID".into(), "legacy123".into());
    browser.jar.insert("tema".into(), "oscuro".into());
    browser.jar.insert(format!("{FLOW_PREFIX}abcdef012345"), "stale".into());
    let echo = browser.get("/?format=json").echo();
    let names = echo.cookie_names();
    assert!(names.contains(&"PHPSESSID".to_string()) && names.contains(&"tema".to_string()), "{names:?}");
    assert!(
        !names.iter().any(|n| n == SESSION_COOKIE || n.starts_with(FLOW_PREFIX)),
        "a gate cookie reached the app: {names:?}"
    );
    assert_eq!(echo.one("x-claveunica-run"), Some(RUN));

    // Only gate cookies: no Cookie header at all upstream.
    browser.jar.retain(|n, _| n == SESSION_COOKIE);
    let echo = browser.get("/?format=json").echo();
    assert!(echo.all("cookie").is_empty(), "{:?}", echo.all("cookie"));
}

fn a_tampered_session_cookie_is_refused(host: Host) {
    let gate = start(host, &[]);
    let good = logged_in(gate.as_ref(), "/").jar[SESSION_COOKIE].clone();
    // The untouched cookie opens.
    let mut ok = gate.browser();
    ok.jar.insert(SESSION_COOKIE.into(), good.clone());
    assert_eq!(ok.get("/?format=json").echo().one("x-claveunica-run"), Some(RUN));

    let mut flipped = good.clone().into_bytes();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let cases = [
        ("one character flipped", String::from_utf8(flipped).expect("cookie values are ASCII")),
        ("truncated", good[..good.len() - 1].to_string()),
        ("extended", format!("{good}A")),
        ("garbage", "garbage".to_string()),
        ("empty", String::new()),
        ("long garbage", "A".repeat(3000)),
        ("not base64", "%%%$$$!!!".to_string()),
    ];
    let before = gate.app_requests();
    for (what, value) in cases {
        let mut browser = gate.browser();
        browser.jar.insert(SESSION_COOKIE.into(), value);
        let r = browser.get("/perfil?format=json");
        assert_sent_to_login(gate.as_ref(), &r);
        assert!(
            r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")),
            "the {what} session cookie was not cleared: {r:?}"
        );
    }
    assert_eq!(gate.app_requests(), before, "a tampered session reached the app");
}

fn bad_and_replayed_callbacks_get_a_400_page_and_no_session(host: Host) {
    let gate = start(host, &[]);
    let mut browser = gate.browser();
    let authorize = browser.start_login("/tramites");
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let state = authorize.state.clone();
    let calls = gate.provider_calls();
    let before = gate.app_requests();

    let mut other_state: String = state.chars().rev().collect();
    if other_state[..12] == state[..12] {
        other_state = "Z".repeat(state.len());
    }
    let same_prefix = format!("{}{}", &state[..12], "x".repeat(state.len() - 12));
    let cases = [
        ("a state of no login in this browser", with_param(&callback, "state", Some(&other_state)), "no_flow_cookie"),
        (
            "a state whose flow cookie holds another state",
            with_param(&callback, "state", Some(&same_prefix)),
            "state_mismatch",
        ),
        ("no state", with_param(&callback, "state", None), "no_state"),
        ("an empty state", with_param(&callback, "state", Some("")), "bad_state"),
        ("a repeated state", format!("{callback}&state={state}"), "repeated_parameter"),
    ];
    for (what, url, reason) in cases {
        let mut attempt = browser.clone();
        let r = attempt.callback(&url);
        assert_failure_page(gate.as_ref(), &r, 400, reason);
        assert!(!attempt.jar.contains_key(SESSION_COOKIE), "{what}: a session was set: {r:?}");
        assert!(r.body.contains("no es válido"), "{what}: the page does not explain: {}", r.body);
    }
    // Another browser cannot use this browser's callback (no flow cookie for that state)...
    let mut other = gate.browser();
    let _ = other.start_login("/otro");
    let r = other.callback(&callback);
    assert_failure_page(gate.as_ref(), &r, 400, "no_flow_cookie");
    assert!(!other.jar.contains_key(SESSION_COOKIE));
    assert_eq!(gate.provider_calls(), calls, "a callback without its flow cookie reached the provider");

    // ...and none of that spent the real login: it still completes (token and userinfo).
    let mut before_callback = browser.clone();
    let r = browser.callback(&callback);
    assert_eq!((r.status, r.location()), (302, "/tramites"), "{r:?}");
    assert!(gate.provider_calls() >= calls + 2, "the provider's call count does not move");

    // Replaying the callback in the same browser: its flow cookie is gone.
    let calls = gate.provider_calls();
    let mut replay = browser.clone();
    replay.jar.remove(SESSION_COOKIE);
    let r = replay.callback(&callback);
    assert_failure_page(gate.as_ref(), &r, 400, "no_flow_cookie");
    assert!(!replay.jar.contains_key(SESSION_COOKIE), "a replayed callback set a session: {r:?}");
    assert_eq!(gate.provider_calls(), calls, "a replayed callback reached the provider");

    // With the old flow cookie back, Envoy makes no second token call: the attempt is spent
    // in shared data, whichever worker answers (tests/envoy_e2e.rs replays it on four). The
    // Unit component keeps nothing between requests (an instance per request): the replay
    // reaches the provider, which refuses the spent code.
    let r = before_callback.callback(&callback);
    match gate.host() {
        Host::Envoy => {
            assert_failure_page(gate.as_ref(), &r, 400, "attempt_used");
            assert_eq!(gate.provider_calls(), calls, "a replayed attempt reached the provider");
        }
        Host::Unit => {
            assert_failure_page(gate.as_ref(), &r, 400, "token_invalid_grant");
            assert_eq!(gate.provider_calls(), calls + 1, "the replay's one token call");
        }
    }
    assert!(r.body.contains("no es válido"), "the page does not explain: {}", r.body);
    assert!(!before_callback.jar.contains_key(SESSION_COOKIE), "a replayed code set a session: {r:?}");
    assert_eq!(gate.app_requests(), before, "a callback reached the app");
}

fn a_cancelled_login_gets_its_page(host: Host) {
    let gate = start(host, &[]);
    let before = gate.app_requests();
    let mut browser = gate.browser();
    let authorize = browser.start_login("/tramites");
    let callback = browser.provider_cancel(&authorize);
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));
    let r = browser.callback(&callback);
    assert_failure_page(gate.as_ref(), &r, 401, "provider_error");
    assert!(r.body.contains("Ingreso cancelado"), "{}", r.body);
    assert!(r.body.contains("href=\"/tramites\""), "no way back to the page asked for: {}", r.body);
    assert!(browser.jar.is_empty(), "cookies left after a cancelled login: {:?}", browser.jar);
    assert_eq!(gate.app_requests(), before);
}

fn provider_down_gives_the_503_page_with_a_reference(host: Host) {
    let mut gate = start(host, &[]);
    let mut browser = gate.browser();
    let authorize = browser.start_login("/private");
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    gate.stop_provider();
    let before = gate.app_requests();
    let r = browser.callback(&callback);
    // A real host difference: Envoy's cluster answers a refused connection itself with a 503
    // (the gate reads "answered 503": unavailable); on Unit the call fails (unreachable).
    let reason = match gate.host() {
        Host::Envoy => "token_unavailable",
        Host::Unit => "token_unreachable",
    };
    assert_failure_page(gate.as_ref(), &r, 503, reason);
    assert!(r.body.contains("ClaveÚnica no está disponible"), "{}", r.body);
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    assert_eq!(gate.app_requests(), before);
}

fn a_wrong_provider_answer_gives_the_502_page(host: Host) {
    let gate = start(host, &[]);
    let mut browser = gate.browser();
    let authorize = browser.start_login("/private");
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    gate.set_emulator_mode(&json!({"fault": {"endpoint": "token", "kind": "html"}}));
    let r = browser.callback(&callback);
    assert_failure_page(gate.as_ref(), &r, 502, "token_malformed");
    assert!(r.body.contains("respondió con un error"), "{}", r.body);
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    // The fault cleared, the next login works: nothing restarted.
    gate.set_emulator_mode(&json!({"fault": {"endpoint": "all", "kind": "none"}}));
    let _ = logged_in(gate.as_ref(), "/");
}

fn return_paths_never_leave_the_site(host: Host) {
    let gate = start(host, &[]);
    for (asked, lands) in [
        ("/claveunica/login?return_to=https%3A%2F%2Fevil.example%2Fx", "/"),
        ("/claveunica/login?return_to=%2F%2Fevil.example%2Fx", "/"),
        ("/claveunica/login?return_to=%2F%5Cevil.example%2Fx", "/"),
        ("/claveunica/login?return_to=%2Fmis-tramites%3Fa%3D1", "/mis-tramites?a=1"),
        ("//evil.example/x", "/"),
    ] {
        let mut browser = gate.browser();
        let authorize = browser.start_login(asked);
        let callback = browser.provider_login(&authorize, RUN, PASSWORD);
        let landed = browser.callback(&callback);
        assert_eq!(landed.status, 302, "{asked}: {landed:?}");
        assert_eq!(landed.location(), lands, "after asking for {asked}");
    }
}

fn logout_ends_the_session_and_the_app_can_ask_for_it(host: Host) {
    let gate = start(host, &[]);
    let mut browser = gate.browser();
    let stale = browser.start_login("/abandonado");
    let r = browser.login("/", RUN, PASSWORD);
    assert_eq!(r.status, 302, "{r:?}");
    assert!(browser.jar.contains_key(&stale.flow_cookie()));
    let r = browser.get(LOGOUT_PATH);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "{r:?}");
    assert!(
        r.set_cookie(&stale.flow_cookie()).is_some_and(|c| c.contains("Max-Age=0")),
        "logout left a login attempt alive: {r:?}"
    );
    let provider_logout = format!("{}/api/v1/accounts/app/logout", gate.provider());
    assert!(r.body.contains(&provider_logout), "the page does not go to {provider_logout}: {}", r.body);
    assert!(browser.jar.is_empty(), "cookies left after logout: {:?}", browser.jar);
    assert_sent_to_login(gate.as_ref(), &browser.get("/private"));

    // The application answers an identified request with x-claveunica-logout: the gate's
    // logout page replaces the application's answer.
    let mut browser = logged_in(gate.as_ref(), "/");
    let r = browser.get("/private?app_logout=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.body.contains("RUN desconocido"), "the app's answer came through: {}", r.body);
    assert!(r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "{r:?}");
    assert!(wait_for_log(gate.as_ref(), "logout requested by the application"), "{}", gate.log());
}

fn two_tabs_log_in_at_once_as_two_people_and_each_lands_on_its_own_page(host: Host) {
    let gate = start(host, &[]);
    let mut browser = gate.browser();
    let tab_a = browser.start_login("/a?format=json");
    let tab_b = browser.start_login("/b?format=json");
    assert_ne!(tab_a.state, tab_b.state);
    assert_ne!(tab_a.flow_cookie(), tab_b.flow_cookie());
    let callback_a = browser.provider_login(&tab_a, RUN, PASSWORD);
    let callback_b = browser.provider_login(&tab_b, "55555555-5", PASSWORD);
    let landed_b = browser.callback(&callback_b);
    assert_eq!((landed_b.status, landed_b.location()), (302, "/b?format=json"), "tab b: {landed_b:?}");
    assert_eq!(browser.get("/b?format=json").echo().one("x-claveunica-run"), Some("55555555-5"));
    let landed_a = browser.callback(&callback_a);
    assert_eq!((landed_a.status, landed_a.location()), (302, "/a?format=json"), "tab a: {landed_a:?}");
    assert!(!browser.jar.keys().any(|k| k.starts_with(FLOW_PREFIX)), "flow cookies left: {:?}", browser.jar);
    // The last login to finish holds the session.
    let echo = browser.get("/a?format=json").echo();
    assert_eq!(echo.path, "/a");
    assert_eq!(echo.one("x-claveunica-run"), Some(RUN));
}

fn a_wrong_client_secret_gives_the_502_page_and_is_never_logged(host: Host) {
    let gate = start(
        host,
        &[|c| {
            c.as_object_mut().map(|o| o.remove("client_secret_env"));
            c["client_secret"] = json!("not-the-secret");
        }],
    );
    let before = gate.app_requests();
    let mut browser = gate.browser();
    let r = browser.login("/tramites", RUN, PASSWORD);
    assert_failure_page(gate.as_ref(), &r, 502, "token_rejected");
    assert!(r.body.contains("respondió con un error"), "{}", r.body);
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    assert_eq!(gate.app_requests(), before);
    assert!(!gate.log().contains("not-the-secret"), "the client secret is in the log");
}

/// The session key cookies were sealed with before the newest one was put in front of it: the
/// second key of the ring, as an operator rotating keys leaves it.
const RETIRING_KEY: [u8; 32] = [
    0x3b, 0x91, 0x5e, 0xc2, 0x07, 0xd8, 0x6a, 0x14, 0xf3, 0x28, 0x9c, 0x45, 0xb0, 0x7e, 0x12, 0xad, //
    0x66, 0xe9, 0x0f, 0x83, 0x5a, 0xc7, 0x31, 0xfe, 0x48, 0x9d, 0x27, 0xb4, 0x6c, 0x02, 0xd5, 0x79,
];

fn with_a_retiring_session_key(c: &mut Value) {
    let key = base64::engine::general_purpose::STANDARD.encode(RETIRING_KEY);
    match c["session_keys"].as_array_mut() {
        Some(keys) => keys.push(json!(key)),
        None => panic!("the table's configuration has no session_keys array: {c}"),
    }
}

/// Both rotations an operator does: the gate's session keys (a cookie sealed with the key
/// being retired still opens, and comes back resealed with the newest; a cookie under a key
/// the gate does not hold is refused), and the provider's signing key (logins keep working).
fn keys_rotate_at_both_ends_and_people_stay_logged_in(host: Host) {
    let gate = start(host, &[with_a_retiring_session_key]);
    let t = now();
    let old = seal_session(&KeyRing::new(&[SessionKey(RETIRING_KEY)]), testkit::maria(), t, t + 3600, t);
    let mut browser = gate.browser();
    browser.jar.insert(SESSION_COOKIE.into(), old.clone());
    let r = browser.get("/?format=json");
    assert_eq!(r.echo().one("x-claveunica-run"), Some(RUN), "{r:?}");
    assert!(r.set_cookie(SESSION_COOKIE).is_some(), "a session under the retiring key was not resealed: {r:?}");
    let resealed = browser.jar[SESSION_COOKIE].clone();
    assert_ne!(resealed, old);
    let r = browser.get("/?format=json");
    assert_eq!(r.echo().one("x-claveunica-run"), Some(RUN), "the resealed session: {r:?}");
    assert!(r.set_cookie(SESSION_COOKIE).is_none(), "a session under the newest key was resealed again: {r:?}");

    let before = gate.app_requests();
    let mut stranger = gate.browser();
    let unknown = KeyRing::new(&[SessionKey(random_bytes::<32>())]);
    stranger.jar.insert(SESSION_COOKIE.into(), seal_session(&unknown, testkit::maria(), t, t + 3600, t));
    assert_sent_to_login(gate.as_ref(), &stranger.get("/?format=json"));
    assert_eq!(gate.app_requests(), before, "a session under an unknown key reached the app");

    // The provider signs with a new key and no longer publishes the old one, seconds after the
    // gate fetched its keys. The Unit host fetches the keys for every login. Envoy keeps them,
    // and refetches for an unknown `kid` at most once in 30 s; its fetch at start does not
    // count, so the login right after the rotation fetches the new key at once.
    let kid = gate.rotate_provider_key(false);
    let mut fresh = gate.browser();
    let r = fresh.login("/?format=json", RUN, PASSWORD);
    assert_eq!(r.status, 302, "a login after the provider rotated to {kid}: {r:?}\n{}", gate.log());
    assert_eq!(fresh.get("/?format=json").echo().one("x-claveunica-run"), Some(RUN));
    // Sessions opened before keep working: they do not depend on the provider's keys.
    assert_eq!(browser.get("/?format=json").echo().one("x-claveunica-run"), Some(RUN));
}
