#![cfg(not(target_arch = "wasm32"))]
//! End to end: the built gate in a real Envoy, in front of the legacy echo app, logging in
//! at the ClaveÚnica emulator. Each test asserts what a person (or the legacy app) would
//! notice, and starts its own stack so tests cannot disturb each other's counters.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test envoy_e2e
//! ```

mod support;

use support::{
    logged_in, param, random_key, wait_for_log, with_param, Response, Stack, CLIENT_ID, FLOW_PREFIX, LOGOUT_PATH,
    PASSWORD, RUN, SESSION_COOKIE,
};

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

/// A failure page as people see it: the status, a Spanish page with a reference code that
/// is also in Envoy's log, and no session handed out.
fn assert_failure_page(stack: &Stack, r: &Response, status: u16) -> String {
    assert_eq!(r.status, status, "unexpected answer to {}: {r:?}", r.url);
    assert!(
        r.header("content-type").is_some_and(|c| c.starts_with("text/html")),
        "the failure is not an HTML page: {r:?}"
    );
    let reference = r.reference();
    assert!(
        reference.len() == 8 && reference.bytes().all(|b| b.is_ascii_hexdigit()),
        "reference {reference:?} is not 8 hex digits"
    );
    assert!(
        wait_for_log(stack, &format!("ref={reference}")),
        "reference {reference} of the page is not in Envoy's log:\n{}",
        stack.envoy_log()
    );
    assert!(r.set_cookie(SESSION_COOKIE).is_none_or(|c| c.contains("Max-Age=0")), "a failure set a session: {r:?}");
    reference
}

/// Sent to ClaveÚnica, and none of the app's page came along.
fn assert_sent_to_login(stack: &Stack, r: &Response) {
    support::assert_sent_to_login(stack, r);
    assert!(!r.body.contains("Portal Legado"), "the app's page came through: {r:?}");
}

#[test]
fn full_login_lands_on_the_original_url_with_verified_identity() {
    let stack = Stack::start();
    let mut browser = stack.browser();
    let wanted = "/tramites/certificado?id=7";

    let authorize = browser.start_login(wanted);
    assert_eq!(authorize.param("client_id"), Some(CLIENT_ID));
    assert_eq!(authorize.param("response_type"), Some("code"));
    assert_eq!(authorize.param("scope"), Some("openid run name"), "certification checks the exact scope");
    assert_eq!(authorize.param("redirect_uri"), Some(stack.redirect_uri().as_str()));
    assert!(authorize.state.len() >= 30, "state {:?} is shorter than 30 characters", authorize.state);
    assert!(!authorize.nonce.is_empty(), "no nonce in {}", authorize.url);
    assert_ne!(authorize.state, authorize.nonce);
    let flow = authorize.response.set_cookie(&authorize.flow_cookie());
    let flow =
        flow.unwrap_or_else(|| panic!("no flow cookie {} set: {:?}", authorize.flow_cookie(), authorize.response));
    assert!(flow.contains("HttpOnly") && flow.contains("SameSite=Lax"), "flow cookie attributes: {flow}");

    // Sandbox RUN as people type it, with dots.
    let callback = browser.provider_login(&authorize, "44.444.444-4", PASSWORD);
    assert_eq!(param(&callback, "state").as_deref(), Some(authorize.state.as_str()));
    let landed = browser.callback(&callback);
    assert_eq!(landed.status, 302, "callback did not complete the login: {landed:?}");
    assert_eq!(landed.location(), wanted);
    let session = landed.set_cookie(SESSION_COOKIE).unwrap_or_else(|| panic!("no session cookie: {landed:?}"));
    assert!(session.contains("HttpOnly"), "session cookie not HttpOnly: {session}");
    assert!(session.contains("SameSite=Lax"), "session cookie not SameSite=Lax: {session}");
    assert!(session.len() < 4096, "session cookie of {} bytes", session.len());
    assert!(
        !browser.jar.keys().any(|k| k.starts_with(FLOW_PREFIX)),
        "the flow cookie was not cleared at the callback: {landed:?}"
    );

    let page = browser.get(&format!("{wanted}&format=json"));
    let echo = page.echo();
    assert_eq!(echo.path, "/tramites/certificado");
    assert_eq!(echo.one("x-claveunica-run"), Some("44444444-4"));
    assert_eq!(echo.one("x-claveunica-numero"), Some("44444444"));
    assert_eq!(echo.one("x-claveunica-dv"), Some("4"));
    assert_eq!(echo.one("x-claveunica-nombres"), Some("Mar%C3%ADa%20Carmen"));
    assert_eq!(echo.one("x-claveunica-apellidos"), Some("De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez"));

    // The HTML portal greets the person by name.
    let portal = browser.get("/");
    assert_eq!(portal.status, 200, "{portal:?}");
    assert!(portal.body.contains("María Carmen"), "the portal does not greet the user: {}", portal.body);

    assert!(wait_for_log(&stack, "login completed"), "no login line in Envoy's log");
    assert!(!stack.envoy_log().contains("44444444"), "Envoy's log holds a full RUN:\n{}", stack.envoy_log());
}

#[test]
fn a_protected_page_is_never_served_without_a_session() {
    let stack = Stack::start();
    let before = stack.app_requests();
    for path in ["/", "/tramites/certificado?id=7", "/?format=json", "/static/../admin"] {
        let r = stack.browser().get(path);
        assert_sent_to_login(&stack, &r);
    }
    assert_eq!(stack.app_requests(), before, "a request without a session reached the app");
}

#[test]
fn spoofed_identity_headers_never_reach_the_app() {
    let stack = Stack::start();

    // Sanity: this client really sends every forged header, repeats included.
    let direct = stack.browser().get_url_with_headers(&format!("{}/?format=json", stack.app()), SPOOFED).echo();
    let forged = direct.headers.iter().filter(|(n, _)| n.replace('_', "-").starts_with("x-claveunica-")).count();
    assert_eq!(forged, SPOOFED.len(), "the client did not send every forged header: {direct:?}");

    // Without a session nothing is forwarded.
    let before = stack.app_requests();
    let r = stack.browser().get_with_headers("/?format=json", SPOOFED);
    assert_sent_to_login(&stack, &r);
    assert_eq!(stack.app_requests(), before, "a request with forged identity headers reached the app");

    // With a session the app sees the verified identity only, once each.
    let mut browser = logged_in(&stack, "/");
    browser.jar.insert("app_session".into(), "abc".into());
    browser.jar.insert(format!("{FLOW_PREFIX}abcdefabcdef"), "leftover".into());
    let echo = browser.get_with_headers("/cuenta?format=json", SPOOFED).echo();
    assert_eq!(echo.all("x-claveunica-run"), ["44444444-4"], "{echo:?}");
    assert_eq!(echo.all("x-claveunica-numero"), ["44444444"], "{echo:?}");
    assert_eq!(echo.all("x-claveunica-dv"), ["4"], "{echo:?}");
    assert_eq!(echo.all("x-claveunica-nombres"), ["Mar%C3%ADa%20Carmen"], "{echo:?}");
    assert_eq!(echo.all("x-claveunica-apellidos"), ["De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez"], "{echo:?}");
    assert!(!echo.headers.iter().any(|(n, _)| n.contains('_')), "an underscore spelling got through: {echo:?}");

    // The gate's cookies stay with the gate; the app's own cookie gets through.
    assert_eq!(echo.cookie_names(), ["app_session"], "cookies the app received: {:?}", echo.all("cookie"));
    assert!(echo.all("cookie").iter().any(|c| c.contains("app_session=abc")), "{echo:?}");

    // With only the gate's cookie, the app gets no Cookie header at all.
    browser.jar.retain(|name, _| name == SESSION_COOKIE);
    let echo = browser.get("/cuenta?format=json").echo();
    assert!(echo.all("cookie").is_empty(), "the app received cookies: {:?}", echo.all("cookie"));
}

#[test]
fn a_tampered_session_cookie_sends_the_browser_to_login() {
    let stack = Stack::start();
    let good = logged_in(&stack, "/").jar[SESSION_COOKIE].clone();

    // Sanity: the untouched cookie opens.
    let mut ok = stack.browser();
    ok.jar.insert(SESSION_COOKIE.into(), good.clone());
    assert_eq!(ok.get("/?format=json").echo().one("x-claveunica-run"), Some("44444444-4"));

    let mut flipped_bytes = good.clone().into_bytes();
    let middle = flipped_bytes.len() / 2;
    flipped_bytes[middle] = if flipped_bytes[middle] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped_bytes).expect("cookie values are ASCII");
    let truncated = good[..good.len() - 1].to_string();
    let extended = format!("{good}A");
    let cases = [
        ("one character flipped", flipped),
        ("truncated", truncated),
        ("extended", extended),
        ("garbage", "garbage".to_string()),
        ("empty", String::new()),
        ("long garbage", "A".repeat(3000)),
        ("not base64", "%%%$$$!!!".to_string()),
    ];
    let before = stack.app_requests();
    for (what, value) in cases {
        let mut browser = stack.browser();
        browser.jar.insert(SESSION_COOKIE.into(), value);
        let r = browser.get("/perfil?format=json");
        assert_sent_to_login(&stack, &r);
        assert!(
            r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")),
            "the {what} session cookie was not cleared: {r:?}"
        );
    }
    assert_eq!(stack.app_requests(), before, "a request with a tampered session reached the app");
}

#[test]
fn session_cookies_sealed_with_another_key() {
    let (old_key, new_key) = (random_key(), random_key());
    let old = Stack::builder().session_keys(&[&old_key]).start();
    let rotated = Stack::builder().session_keys(&[&new_key, &old_key]).start();
    let old_cookie = logged_in(&old, "/").jar[SESSION_COOKIE].clone();

    // Rotation: the old key still opens, and the session is resealed with the newest key.
    let mut browser = rotated.browser();
    browser.jar.insert(SESSION_COOKIE.into(), old_cookie.clone());
    let r = browser.get("/?format=json");
    assert_eq!(r.echo().one("x-claveunica-run"), Some("44444444-4"));
    assert!(r.set_cookie(SESSION_COOKIE).is_some(), "a session under an old key was not resealed: {r:?}");
    let resealed = browser.jar[SESSION_COOKIE].clone();
    assert_ne!(resealed, old_cookie);
    assert_eq!(browser.get("/?format=json").echo().one("x-claveunica-run"), Some("44444444-4"));

    // A gate that does not hold the newest key refuses what it sealed.
    let before = old.app_requests();
    let mut stranger = old.browser();
    stranger.jar.insert(SESSION_COOKIE.into(), resealed);
    let r = stranger.get("/?format=json");
    assert_sent_to_login(&old, &r);
    assert_eq!(old.app_requests(), before, "a session sealed with an unknown key reached the app");
}

#[test]
fn bad_callbacks_get_a_400_page_and_no_session() {
    let stack = Stack::start();
    let mut browser = stack.browser();
    let authorize = browser.start_login("/tramites");
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let state = authorize.state.clone();
    let calls = stack.provider_calls();

    let mut other_state: String = state.chars().rev().collect();
    if other_state[..12] == state[..12] {
        other_state = "Z".repeat(state.len());
    }
    let same_prefix = format!("{}{}", &state[..12], "x".repeat(state.len() - 12));
    let cases = [
        ("a state of no login in this browser", with_param(&callback, "state", Some(&other_state))),
        ("a state whose flow cookie holds another state", with_param(&callback, "state", Some(&same_prefix))),
        ("no state", with_param(&callback, "state", None)),
        ("an empty state", with_param(&callback, "state", Some(""))),
        ("a repeated state", format!("{callback}&state={state}")),
    ];
    for (what, url) in cases {
        let mut attempt = browser.clone();
        let r = attempt.callback(&url);
        assert_failure_page(&stack, &r, 400);
        assert!(!attempt.jar.contains_key(SESSION_COOKIE), "{what}: a session was set: {r:?}");
        assert!(r.body.contains("no es válido"), "{what}: page does not explain: {}", r.body);
    }

    // Another browser cannot use this browser's callback (no flow cookie for that state)...
    let mut other = stack.browser();
    let _ = other.start_login("/otro");
    let r = other.callback(&callback);
    assert_failure_page(&stack, &r, 400);
    assert!(!other.jar.contains_key(SESSION_COOKIE));
    assert_eq!(stack.provider_calls(), calls, "a callback without its flow cookie reached the provider");

    // ...and none of that spent the real login: it still completes.
    let mut before_callback = browser.clone();
    let r = browser.callback(&callback);
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.location(), "/tramites");
    assert!(
        stack.provider_calls() >= calls + 2,
        "the provider-call counter does not count (token and userinfo expected)"
    );

    // Replaying the callback in the same browser: its flow cookie is gone.
    let calls = stack.provider_calls();
    let mut replay = browser.clone();
    replay.jar.remove(SESSION_COOKIE);
    let r = replay.callback(&callback);
    assert_failure_page(&stack, &r, 400);
    assert!(!replay.jar.contains_key(SESSION_COOKIE), "a replayed callback set a session: {r:?}");
    assert_eq!(stack.provider_calls(), calls, "a replayed callback reached the provider");

    // Even with the old flow cookie back, the spent code is refused by the provider.
    let r = before_callback.callback(&callback);
    assert_failure_page(&stack, &r, 400);
    assert!(!before_callback.jar.contains_key(SESSION_COOKIE), "a replayed code set a session: {r:?}");
}

#[test]
fn two_tabs_log_in_at_once_and_each_lands_on_its_own_page() {
    let stack = Stack::start();
    let mut browser = stack.browser();
    let tab_a = browser.start_login("/a?format=json");
    let tab_b = browser.start_login("/b?format=json");
    assert_ne!(tab_a.state, tab_b.state);
    assert_ne!(tab_a.flow_cookie(), tab_b.flow_cookie());
    assert!(browser.jar.contains_key(&tab_a.flow_cookie()) && browser.jar.contains_key(&tab_b.flow_cookie()));

    let callback_a = browser.provider_login(&tab_a, RUN, PASSWORD);
    let callback_b = browser.provider_login(&tab_b, "55555555-5", PASSWORD);
    let landed_b = browser.callback(&callback_b);
    assert_eq!(landed_b.status, 302, "tab b: {landed_b:?}");
    assert_eq!(landed_b.location(), "/b?format=json");
    let landed_a = browser.callback(&callback_a);
    assert_eq!(landed_a.status, 302, "tab a: {landed_a:?}");
    assert_eq!(landed_a.location(), "/a?format=json");
    assert!(!browser.jar.keys().any(|k| k.starts_with(FLOW_PREFIX)), "flow cookies left: {:?}", browser.jar);

    // The last login to finish holds the session.
    let echo = browser.get(landed_a.location()).echo();
    assert_eq!(echo.path, "/a");
    assert_eq!(echo.one("x-claveunica-run"), Some("44444444-4"));
}

#[test]
fn cancelling_at_claveunica_shows_a_401_page() {
    let stack = Stack::start();
    let before = stack.app_requests();
    let mut browser = stack.browser();
    let authorize = browser.start_login("/tramites");
    let callback = browser.provider_cancel(&authorize);
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));
    let r = browser.callback(&callback);
    assert_failure_page(&stack, &r, 401);
    assert!(r.body.contains("cancelado"), "the page does not say the login was cancelled: {}", r.body);
    assert!(r.body.contains("href=\"/tramites\""), "no way back to try again: {}", r.body);
    assert!(browser.jar.is_empty(), "cookies left after a cancelled login: {:?}", browser.jar);
    assert_eq!(stack.app_requests(), before);
}

#[test]
fn logout_clears_the_session_and_sends_the_browser_to_claveunica() {
    let stack = Stack::start();
    let mut browser = stack.browser();
    let stale = browser.start_login("/abandonado");
    let r = browser.login("/", RUN, PASSWORD);
    assert_eq!(r.status, 302, "{r:?}");
    assert!(browser.jar.contains_key(&stale.flow_cookie()));
    assert_eq!(browser.get("/?format=json").echo().one("x-claveunica-run"), Some("44444444-4"));

    let r = browser.get(LOGOUT_PATH);
    assert_eq!(r.status, 200, "{r:?}");
    let cleared = r.set_cookie(SESSION_COOKIE).unwrap_or_else(|| panic!("logout did not clear the session: {r:?}"));
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(
        r.set_cookie(&stale.flow_cookie()).is_some_and(|c| c.contains("Max-Age=0")),
        "logout left a login attempt alive: {r:?}"
    );
    let provider_logout = format!("{}/api/v1/accounts/app/logout", stack.provider());
    assert!(r.body.contains(&provider_logout), "the page does not go to {provider_logout}: {}", r.body);
    assert!(browser.jar.is_empty(), "cookies left after logout: {:?}", browser.jar);

    let r = browser.get("/tramites");
    assert_sent_to_login(&stack, &r);
}

#[test]
fn provider_down_at_the_callback_shows_a_503_page_with_a_logged_reference() {
    let mut stack = Stack::start();
    let mut browser = stack.browser();
    let authorize = browser.start_login("/tramites");
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    stack.stop_provider();
    assert!(!stack.provider_running());

    let before = stack.app_requests();
    let r = browser.callback(&callback);
    let reference = assert_failure_page(&stack, &r, 503);
    assert!(r.body.contains("no está disponible"), "{}", r.body);
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    assert_eq!(stack.app_requests(), before, "something was forwarded while the provider was down");
    let log = stack.envoy_log();
    let line = log.lines().find(|l| l.contains(&format!("ref={reference}"))).unwrap_or_default();
    assert!(line.contains("status=503"), "log line for {reference}: {line}");
}

#[test]
fn a_wrong_client_secret_shows_a_502_page() {
    let stack = Stack::builder().client_secret("not-the-secret").start();
    let before = stack.app_requests();
    let mut browser = stack.browser();
    let r = browser.login("/tramites", RUN, PASSWORD);
    assert_failure_page(&stack, &r, 502);
    assert!(r.body.contains("respondió con un error"), "{}", r.body);
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    assert_eq!(stack.app_requests(), before);
    assert!(!stack.envoy_log().contains("not-the-secret"), "the client secret is in Envoy's log");
}

#[test]
fn numero_sent_as_a_string_still_logs_in() {
    let stack = Stack::builder().numero_as_string().start();
    let mut browser = stack.browser();
    let r = browser.login("/", "99999999-9", PASSWORD);
    assert_eq!(r.status, 302, "{r:?}");
    let echo = browser.get("/?format=json").echo();
    assert_eq!(echo.one("x-claveunica-run"), Some("99999999-9"));
    assert_eq!(echo.one("x-claveunica-numero"), Some("99999999"));
    assert_eq!(echo.one("x-claveunica-dv"), Some("9"));
}

#[test]
fn after_login_the_browser_never_leaves_the_site() {
    let stack = Stack::start();
    for (asked, lands) in [
        ("/claveunica/login?return_to=https%3A%2F%2Fevil.example%2Fx", "/"),
        ("/claveunica/login?return_to=%2F%2Fevil.example%2Fx", "/"),
        ("/claveunica/login?return_to=%2F%5Cevil.example%2Fx", "/"),
        ("/claveunica/login?return_to=%2Fmis-tramites%3Fa%3D1", "/mis-tramites?a=1"),
        ("//evil.example/x", "/"),
    ] {
        let mut browser = stack.browser();
        let r = browser.login(asked, RUN, PASSWORD);
        assert_eq!(r.status, 302, "{asked}: {r:?}");
        assert_eq!(r.location(), lands, "after asking for {asked}");
    }
}

#[test]
fn a_broken_configuration_is_refused_and_nothing_is_served() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 3] = [
        (|c| drop(c.as_object_mut().map(|m| m.remove("client_id"))), "client_id: is required"),
        (|c| c["session_keys"] = serde_json::json!(["c2hvcnQ="]), "session_keys[0]: must decode to 32 bytes"),
        (|c| c["client_secret_env"] = serde_json::json!("NOT_SET_ANYWHERE"), "client_secret_env: environment variable"),
    ];
    for (edit, named) in cases {
        let log = Stack::builder().edit_config(edit).start_refused();
        assert!(log.contains(named), "the log does not name the problem ({named}):\n{log}");
    }
}
