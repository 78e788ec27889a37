#![cfg(not(target_arch = "wasm32"))]
//! End to end, the rollout features, run on both hosts (the gate in a real Envoy and the
//! NGINX Unit component under `wasmtime serve`): path rules, the login path, migration modes
//! (parallel, canary, report-only), a pilot list, header templates, the idle timeout, a logout
//! asked for by the application, and 401s for API clients. Each test starts its own stack so
//! nothing leaks between tests. The one host difference is counters: Envoy counts every event,
//! the Unit host keeps no counters (`nginx-unit/README.md`), so counter checks apply on Envoy.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test rollout
//! ```

#[macro_use]
mod support;

use claveunica_core::protocol::session::{Opened, Session};
use claveunica_core::testkit::maria;
use serde_json::json;
use support::checks::{assert_anonymous, assert_identified, log_caught_up, start_gate, GateUnderTest, Host};
use support::{
    assert_sent_to_login, log_line_with, logged_in, now, seal_session, url_encode, wait_for_log, Browser, Response,
    APELLIDOS, CALLBACK_PATH, LOGOUT_PATH, NOMBRES, PASSWORD, RUN, SESSION_COOKIE,
};

on_both_hosts! {
    rules_first_match_wins_public_never_identifies_optional_identifies_when_it_can,
    a_custom_login_path_lands_on_return_to_and_never_off_site,
    parallel_mode_lets_the_old_login_work_beside_claveunica,
    canary_mode_sends_a_sticky_share_of_new_visitors_to_claveunica,
    report_only_blocks_nothing_and_logs_what_it_would_have_done,
    no_log_line_holds_a_full_run_from_a_path_or_a_failure,
    a_run_outside_the_pilot_list_gets_a_403_nothing_forwarded_and_is_logged_out_at_claveunica,
    header_templates_replace_the_default_identity_headers,
    idle_sessions_expire_and_active_ones_are_resealed,
    a_session_expires_while_the_proxy_runs,
    the_app_can_end_the_session_with_a_response_header,
    api_clients_without_a_session_get_a_401_json_not_a_redirect,
    logins_logouts_and_refusals_are_one_json_register_line_each,
}

/// A counter of the gate's moved by exactly `by` since `before`. Envoy counts; the Unit host
/// keeps no counters, so there both readings are `None` and there is nothing to compare.
fn assert_counted(gate: &dyn GateUnderTest, name: &str, before: Option<u64>, by: u64) {
    match (gate.host(), before, gate.counter(name)) {
        (Host::Unit, None, None) => {}
        (Host::Envoy, Some(before), Some(now)) => assert_eq!(now, before + by, "{name}"),
        other => panic!("{name}: readings that do not fit the host: {other:?}"),
    }
}

/// A counter of the gate's moved by at least `by` since `before` (Envoy only, as above).
fn assert_counted_at_least(gate: &dyn GateUnderTest, name: &str, before: Option<u64>, by: u64) {
    match (gate.host(), gate.counter(name)) {
        (Host::Unit, None) => {}
        (Host::Envoy, Some(now)) => {
            let before = before.unwrap_or_else(|| panic!("{name}: no reading before"));
            assert!(now >= before + by, "{name}: {now}, not at least {before} + {by}");
        }
        other => panic!("{name}: readings that do not fit the host: {other:?}"),
    }
}

const CANARY_COOKIE: &str = "claveunica_canary";
const LEGACY_COOKIE: &str = "PHPSESSID";

/// A whole login through the login path, landing on `return_to`.
fn login_via_login_path(browser: &mut Browser, login_path: &str, return_to: &str) -> Response {
    let path = format!("{login_path}?return_to={}", url_encode(return_to));
    let authorize = browser.start_login(&path);
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let landed = browser.callback(&callback);
    assert_eq!(landed.status, 302, "login via {path} failed: {landed:?}");
    assert!(browser.jar.contains_key(SESSION_COOKIE), "no session after login via {path}: {landed:?}");
    landed
}

/// María's session cookie value sealed with the stack's key, as the gate would seal it.
fn sealed_session(stack: &dyn GateUnderTest, issued_at: u64, expires_at: u64, last_seen: u64) -> String {
    seal_session(&stack.ring(), maria(), issued_at, expires_at, last_seen)
}

/// Forged identity headers in the spellings the gate must strip for `x-rut`.
const FORGED_RUT: &[(&str, &str)] = &[("x-rut", "11.111.111-1"), ("X_Rut", "22.222.222-2"), ("X-RUT", "33.333.333-3")];

fn rules_first_match_wins_public_never_identifies_optional_identifies_when_it_can(host: Host) {
    let gate = start_gate(
        host,
        &[|c| {
            c["rules"] = json!([
                {"prefix": "/static/", "action": "public"},
                // Shadowed by the broader rule above: first match wins.
                {"prefix": "/static/privado/", "action": "enforce"},
                {"exact": "/", "action": "optional"},
                {"regex": "/api/v[0-9]+/salud", "methods": ["GET"], "action": "public"},
            ]);
        }],
    );
    let stack = gate.as_ref();
    let spoofed: &[(&str, &str)] =
        &[("x-claveunica-run", "11111111-1"), ("X_ClaveUnica_Run", "22222222-2"), ("X-ClaveUnica-Nombres", "Mallory")];

    // Anonymous: public and optional paths pass without identity and without a login.
    for path in
        ["/static/app.css?format=json", "/static/privado/x?format=json", "/?format=json", "/api/v2/salud?format=json"]
    {
        let r = stack.browser().get_with_headers(path, spoofed);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_anonymous(&r);
        assert!(r.header_all("set-cookie").is_empty(), "{path} set cookies: {r:?}");
    }
    // No match, a method the rule does not name, or a regex matching only part of the path:
    // enforced.
    let before = stack.app_requests();
    for (method, path) in [
        ("GET", "/tramites?format=json"),
        ("POST", "/api/v2/salud?format=json"),
        ("GET", "/api/v2/salud/x?format=json"),
        ("GET", "/x/api/v2/salud?format=json"),
        ("GET", "/index.html"),
    ] {
        let r = stack.browser().request(method, path, &[]);
        assert_sent_to_login(stack, &r);
    }
    assert_eq!(stack.app_requests(), before, "an enforced request without a session reached the app");

    // Logged in: optional and enforced paths carry identity, public ones never do, and the
    // gate's cookie stays with the gate on every path.
    let mut browser = logged_in(stack, "/tramites");
    browser.jar.insert("app_pref".into(), "1".into());
    let echo = assert_identified(&browser.get_with_headers("/?format=json", spoofed));
    assert_eq!(echo.cookie_names(), ["app_pref"]);
    assert_identified(&browser.get("/tramites?format=json"));
    assert_identified(&browser.request("POST", "/api/v2/salud?format=json", &[]));
    for path in ["/static/app.css?format=json", "/static/privado/x?format=json", "/api/v2/salud?format=json"] {
        let r = browser.get_with_headers(path, spoofed);
        let echo = assert_anonymous(&r);
        assert_eq!(echo.cookie_names(), ["app_pref"], "{path}: the app received {:?}", echo.all("cookie"));
    }
}

fn a_custom_login_path_lands_on_return_to_and_never_off_site(host: Host) {
    let gate = start_gate(host, &[|c| c["login_path"] = json!("/ingresar")]);
    let stack = gate.as_ref();
    let mut browser = stack.browser();
    let landed = login_via_login_path(&mut browser, "/ingresar", "/mis-tramites?a=1&b=%C3%B1");
    assert_eq!(landed.location(), "/mis-tramites?a=1&b=%C3%B1");
    let echo = assert_identified(&browser.get("/mis-tramites?a=1&format=json"));
    assert_eq!(echo.path, "/mis-tramites");

    for foreign in ["https://evil.example/x", "//evil.example/x", "/\\evil.example/x", "evil.example"] {
        let mut browser = stack.browser();
        let landed = login_via_login_path(&mut browser, "/ingresar", foreign);
        assert_eq!(landed.location(), "/", "after asking to return to {foreign}");
    }
    // The default login path is now an ordinary, enforced path.
    let r = stack.browser().get("/claveunica/login?return_to=%2Fx");
    assert_sent_to_login(stack, &r);
    let authorize = url::Url::parse(r.location()).expect("authorize URL");
    assert!(authorize.query_pairs().any(|(k, _)| k == "state"));
}

fn parallel_mode_lets_the_old_login_work_beside_claveunica(host: Host) {
    let gate = start_gate(host, &[|c| c["migration"] = json!({"mode": "parallel", "legacy_cookies": [LEGACY_COOKIE]})]);
    let stack = gate.as_ref();
    let passed = stack.counter("claveunica_gate.migration_pass_through.parallel");

    // Neither session: through, without identity, no login and no cookie of the gate's.
    let r = stack.browser().get_with_headers("/tramites?format=json", &[("x-claveunica-run", "11111111-1")]);
    assert_anonymous(&r);
    assert!(r.header_all("set-cookie").is_empty(), "{r:?}");
    assert_counted_at_least(stack, "claveunica_gate.migration_pass_through.parallel", passed, 1);

    // The old login, as people use it today.
    let mut browser = stack.browser();
    let form = browser.get("/login");
    assert_eq!(form.status, 200, "{form:?}");
    assert!(form.body.contains("Portal Legado — Ingreso con clave del servicio"), "{}", form.body);
    assert!(form.body.contains("href=\"/claveunica/login?return_to=/\""), "no ClaveÚnica button: {}", form.body);
    let r = browser.post_form("/login", &[("run", "12.345.678-5"), ("clave", "antigua")]);
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.location(), "/");
    assert!(browser.jar.contains_key(LEGACY_COOKIE), "the old login set no PHPSESSID: {r:?}");
    let portal = browser.get("/");
    assert!(portal.body.contains("Sesión del login antiguo activa"), "{}", portal.body);
    let echo = assert_anonymous(&browser.get("/tramites?format=json"));
    assert_eq!(echo.cookie_names(), [LEGACY_COOKIE]);
    // None of the gate's cookies reaches the app, whatever the browser holds.
    let mut leftovers = browser.clone();
    leftovers.jar.insert("claveunica_flow_abcdefabcdef".into(), "x".into());
    leftovers.jar.insert(CANARY_COOKIE.into(), "1".into());
    let echo = assert_anonymous(&leftovers.get("/tramites?format=json"));
    assert_eq!(echo.cookie_names(), [LEGACY_COOKIE], "the app received {:?}", echo.all("cookie"));

    // The same browser takes the ClaveÚnica button and lands on the portal with identity.
    let landed = login_via_login_path(&mut browser, "/claveunica/login", "/");
    assert_eq!(landed.location(), "/");
    let portal = browser.get("/");
    assert!(portal.body.contains("Hola, María Carmen"), "{}", portal.body);
    assert!(!portal.body.contains("Sesión del login antiguo activa"), "{}", portal.body);
    let echo = assert_identified(&browser.get("/tramites?format=json"));
    assert_eq!(echo.cookie_names(), [LEGACY_COOKIE], "the gate's cookies reached the app: {:?}", echo.all("cookie"));

    // A broken ClaveÚnica session with the old one: through without identity, the broken
    // cookie cleared and kept from the app.
    let mut broken = stack.browser();
    broken.jar.insert(LEGACY_COOKIE.into(), "abc".into());
    broken.jar.insert(SESSION_COOKIE.into(), "garbage".into());
    let r = broken.get("/tramites?format=json");
    let echo = assert_anonymous(&r);
    assert_eq!(echo.cookie_names(), [LEGACY_COOKIE]);
    assert!(r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "{r:?}");
}

fn canary_mode_sends_a_sticky_share_of_new_visitors_to_claveunica(host: Host) {
    let gate = start_gate(
        host,
        &[|c| {
            c["migration"] = json!({"mode": "canary", "legacy_cookies": [LEGACY_COOKIE], "canary_percent": 50});
        }],
    );
    let stack = gate.as_ref();
    let mut chosen = Vec::new();
    let mut passed = Vec::new();
    for _ in 0..30 {
        let mut browser = stack.browser();
        let r = browser.get("/tramites?format=json");
        let set = r.set_cookie(CANARY_COOKIE).unwrap_or_else(|| panic!("a first visit got no canary cookie: {r:?}"));
        assert!(set.contains("HttpOnly") && set.contains("Path=/"), "canary cookie attributes: {set}");
        match browser.jar.get(CANARY_COOKIE).map(String::as_str) {
            Some("1") => {
                assert_sent_to_login(stack, &r);
                chosen.push(browser);
            }
            Some("0") => {
                let echo = assert_anonymous(&r);
                assert!(echo.cookie_names().is_empty(), "the app received {:?}", echo.all("cookie"));
                passed.push(browser);
            }
            other => panic!("canary cookie {other:?}: {r:?}"),
        }
    }
    // 30 draws at 50%: both groups are there (all alike has odds of 2 in a billion).
    assert!(!chosen.is_empty() && !passed.is_empty(), "{} chosen, {} passed", chosen.len(), passed.len());
    assert_counted_at_least(stack, "claveunica_gate.migration_pass_through.canary", Some(0), passed.len() as u64);

    // Sticky: the second visit goes the same way and draws nothing new.
    for browser in &mut chosen {
        let r = browser.get("/otra?format=json");
        assert_sent_to_login(stack, &r);
        assert!(r.set_cookie(CANARY_COOKIE).is_none(), "drawn again: {r:?}");
    }
    for browser in &mut passed {
        let r = browser.get("/otra?format=json");
        let echo = assert_anonymous(&r);
        assert!(r.set_cookie(CANARY_COOKIE).is_none(), "drawn again: {r:?}");
        assert!(echo.cookie_names().is_empty(), "the canary cookie reached the app: {:?}", echo.all("cookie"));
    }

    // A chosen browser logs in; its canary cookie never reaches the app.
    let browser = &mut chosen[0];
    let r = browser.login("/tramites", RUN, PASSWORD);
    assert_eq!(r.status, 302, "{r:?}");
    let echo = assert_identified(&browser.get("/tramites?format=json"));
    assert!(echo.cookie_names().is_empty(), "the gate's cookies reached the app: {:?}", echo.all("cookie"));

    // With the old login's cookie, a browser passes, chosen or not, and is not drawn.
    let mut old = stack.browser();
    old.jar.insert(LEGACY_COOKIE.into(), "abc".into());
    let r = old.get("/tramites?format=json");
    assert_eq!(assert_anonymous(&r).cookie_names(), [LEGACY_COOKIE]);
    assert!(r.set_cookie(CANARY_COOKIE).is_none(), "a legacy visitor was drawn: {r:?}");
    old.jar.insert(CANARY_COOKIE.into(), "1".into());
    let r = old.get("/tramites?format=json");
    assert_eq!(assert_anonymous(&r).cookie_names(), [LEGACY_COOKIE]);
}

fn report_only_blocks_nothing_and_logs_what_it_would_have_done(host: Host) {
    let gate = start_gate(host, &[|c| c["migration"] = json!({"mode": "report_only"})]);
    let stack = gate.as_ref();
    let would = stack.counter("claveunica_gate.report_only_would_login");
    let r = stack.browser().get_with_headers("/tramites/certificado?id=7&format=json", &[("X_ClaveUnica_Run", "1-9")]);
    assert_anonymous(&r);
    assert!(r.header_all("set-cookie").is_empty(), "{r:?}");
    assert!(
        wait_for_log(stack, "report_only: would require a ClaveÚnica login for GET /tramites/certificado"),
        "no report_only line in Envoy's log:\n{}",
        stack.log()
    );
    assert!(!stack.log().contains("id=7"), "the query went to the log");
    assert_counted_at_least(stack, "claveunica_gate.report_only_would_login", would, 1);
    assert_counted_at_least(stack, "claveunica_gate.migration_pass_through.report_only", Some(0), 1);

    // Logging in still works, and then identity is forwarded without a report line.
    let mut browser = stack.browser();
    login_via_login_path(&mut browser, "/claveunica/login", "/perfil");
    assert_identified(&browser.get("/perfil?format=json"));
    log_caught_up(stack);
    assert!(!stack.log().contains("for GET /perfil"), "an identified request was reported");
}

/// A RUN in a path (report_only logs the paths it would have guarded) or in what a provider
/// sends back to the callback is masked in the log, with or without dots and dash, encoded or
/// not.
fn no_log_line_holds_a_full_run_from_a_path_or_a_failure(host: Host) {
    let gate = start_gate(host, &[|c| c["migration"] = json!({"mode": "report_only"})]);
    let stack = gate.as_ref();
    for (path, logged) in [
        ("/perfil/44.444.444-4", "/perfil/*****444-4"),
        ("/perfil/44444444-4/datos", "/perfil/*****444-4/datos"),
        ("/perfil/444444444", "/perfil/*****444-4"),
        ("/rut/44%2E444%2E444%2D4", "/rut/*****444-4"),
    ] {
        assert_anonymous(&stack.browser().raw("GET", &format!("{path}?format=json&rut=44444444-4"), &[]));
        let needle = format!("would require a ClaveÚnica login for GET {logged}");
        assert!(wait_for_log(stack, &needle), "no {needle:?} in the log:\n{}", stack.log());
    }
    // A provider's error code quoted in a failure's log line.
    let mut browser = stack.browser();
    let authorize = browser.start_login("/claveunica/login?return_to=/perfil");
    let callback = format!("{}{CALLBACK_PATH}?error=44444444-4&state={}", stack.base(), authorize.state);
    let r = browser.callback(&callback);
    let line = log_line_with(stack, &format!("ref={}", r.reference()));
    assert!(line.contains("detail=*****444-4"), "{line}");
    log_caught_up(stack);
    let log = stack.log();
    for full in ["44444444", "444444444", "44.444.444", "44%2E444"] {
        assert!(!log.contains(full), "the log holds {full}:\n{log}");
    }
}

fn a_run_outside_the_pilot_list_gets_a_403_nothing_forwarded_and_is_logged_out_at_claveunica(host: Host) {
    let gate = start_gate(host, &[|c| c["allowed_runs"] = json!(["55555555-5"])]);
    let stack = gate.as_ref();
    let mut browser = stack.browser();
    let r = browser.login("/tramites?format=json", RUN, PASSWORD);
    assert_eq!(r.status, 302, "{r:?}");
    let before = stack.app_requests();
    let forbidden = stack.counter("claveunica_gate.forbidden");
    let r = browser.get("/tramites?format=json");
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{r:?}");
    assert!(r.body.contains("Acceso no habilitado") && r.body.contains("no está habilitado"), "{}", r.body);
    // The gate's session ends with the page, which takes the browser through ClaveÚnica's
    // logout (ClaveÚnica's manual asks for it when the service does not know the RUN).
    assert!(r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "session not ended: {r:?}");
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    let provider_logout = format!("{}/api/v1/accounts/app/logout", stack.provider());
    assert!(r.body.contains(&format!("href=\"{provider_logout}\"")), "no ClaveÚnica logout link: {}", r.body);
    assert!(r.body.contains(&format!("var p=\"{provider_logout}\"")), "no ClaveÚnica logout script: {}", r.body);
    let reference = r.reference();
    assert!(wait_for_log(stack, &format!("ref={reference}")), "reference {reference} not in the log");
    assert!(stack.log().contains("run=*****444-4"), "{}", stack.log());
    assert!(!stack.log().contains("44444444"), "a full RUN in the log");
    assert_eq!(stack.app_requests(), before, "a RUN outside the pilot list reached the app");
    assert_counted(stack, "claveunica_gate.forbidden", forbidden, 1);

    // The next request has no session to refuse: it is sent to the login.
    assert_sent_to_login(stack, &browser.get("/tramites"));
    let r = browser.get_url(&provider_logout);
    assert!(r.status < 400, "ClaveÚnica's logout: {r:?}");
    // A RUN on the list gets through.
    let r = browser.login("/tramites", "55.555.555-5", PASSWORD);
    assert_eq!(r.status, 302, "{r:?}");
    let echo = browser.get("/tramites?format=json").echo();
    assert_eq!(echo.one("x-claveunica-run"), Some("55555555-5"));
}

fn header_templates_replace_the_default_identity_headers(host: Host) {
    let gate = start_gate(
        host,
        &[|c| {
            c["headers"] = json!({"x-rut": "{run_dotted}", "x-nombre": "{nombres} {apellidos}"});
            c["rules"] = json!([{"prefix": "/publico/", "action": "public"}]);
        }],
    );
    let stack = gate.as_ref();
    let mut browser = logged_in(stack, "/tramites");
    let mut forged = FORGED_RUT.to_vec();
    // The default names stay stripped when custom ones replace them.
    forged.push(("X-ClaveUnica-RUN", "11111111-1"));
    let echo = browser.get_with_headers("/tramites?format=json", &forged).echo();
    assert_eq!(echo.all("x-rut"), ["44.444.444-4"], "{echo:?}");
    assert_eq!(echo.all("x-nombre"), [format!("{NOMBRES}%20{APELLIDOS}")], "{echo:?}");
    assert!(!echo.headers.iter().any(|(n, _)| n.starts_with("x-claveunica")), "default headers were set: {echo:?}");
    assert!(!echo.headers.iter().any(|(n, _)| n.contains('_')), "an underscore spelling got through: {echo:?}");

    // Stripped on a public path too.
    let echo = stack.browser().get_with_headers("/publico/x?format=json", FORGED_RUT).echo();
    assert!(
        !echo.headers.iter().any(|(n, _)| n.replace('_', "-") == "x-rut"),
        "a forged x-rut reached the app: {echo:?}"
    );
}

/// The gate's clock moves while the proxy runs: a session that opens now is refused once its
/// absolute lifetime has passed, with the same proxy and VM. (The Envoy adapter reads the
/// clock once a tick, not once a request: a clock that stopped at configuration time would
/// keep this session open forever; every other lifetime test backdates its cookies instead.)
fn a_session_expires_while_the_proxy_runs(host: Host) {
    let gate = start_gate(host, &[]);
    let stack = gate.as_ref();
    let t = now();
    let cookie = sealed_session(stack, t - 10, t + 3, t - 10);
    let ask = || {
        let mut browser = stack.browser();
        browser.jar.insert(SESSION_COOKIE.into(), cookie.clone());
        browser.get("/tramites?format=json")
    };
    assert_identified(&ask());
    // Past its end by more than a tick (one second) of lag.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let before = stack.app_requests();
    let r = ask();
    assert_sent_to_login(stack, &r);
    assert_eq!(stack.app_requests(), before, "a session past its end reached the app");
}

fn idle_sessions_expire_and_active_ones_are_resealed(host: Host) {
    let gate = start_gate(host, &[|c| c["session"] = json!({"max_age_s": 3600, "idle_timeout_s": 600})]);
    let stack = gate.as_ref();
    let t = now();
    let ask = |cookie: String| {
        let mut browser = stack.browser();
        browser.jar.insert(SESSION_COOKIE.into(), cookie);
        let r = browser.get("/tramites?format=json");
        (r, browser)
    };

    // Sanity: a fresh, sealed-by-hand session opens.
    let (r, _) = ask(sealed_session(stack, t - 10, t + 3000, t - 10));
    assert_identified(&r);

    // Idle longer than the timeout: a login, and the dead cookie cleared.
    let before = stack.app_requests();
    let expired = stack.counter("claveunica_gate.sessions_expired");
    let (r, _) = ask(sealed_session(stack, t - 1000, t + 2600, t - 700));
    assert_sent_to_login(stack, &r);
    assert!(r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "{r:?}");
    // Past its absolute lifetime, however active: a login too.
    let (r, _) = ask(sealed_session(stack, t - 4000, t - 1, t - 30));
    assert_sent_to_login(stack, &r);
    assert_eq!(stack.app_requests(), before, "an expired session reached the app");
    assert_counted(stack, "claveunica_gate.sessions_expired", expired, 2);

    // Used two minutes ago: through, and resealed with a fresh last-seen time.
    let (r, browser) = ask(sealed_session(stack, t - 1000, t + 2600, t - 120));
    assert_identified(&r);
    let line = r.set_cookie(SESSION_COOKIE).unwrap_or_else(|| panic!("an active idle session was not resealed: {r:?}"));
    assert!(line.contains("HttpOnly") && !line.contains("Max-Age=0"), "{line}");
    match Session::open(&stack.ring(), &browser.jar[SESSION_COOKIE], now(), Some(600)) {
        Opened::Valid { session, .. } => {
            assert!(session.last_seen() + 5 >= t, "last_seen not moved: {} vs {t}", session.last_seen());
            assert_eq!((session.issued_at(), session.expires_at()), (t - 1000, t + 2600), "the lifetime changed");
            assert_eq!(session.identity(), &maria());
        }
        other => panic!("the resealed cookie does not open: {other:?}"),
    }

    // Used ten seconds ago: through, nothing to reseal.
    let (r, _) = ask(sealed_session(stack, t - 1000, t + 2600, t - 10));
    assert_identified(&r);
    assert!(r.set_cookie(SESSION_COOKIE).is_none(), "resealed within the minute: {r:?}");
}

fn the_app_can_end_the_session_with_a_response_header(host: Host) {
    let gate = start_gate(host, &[|c| c["rules"] = json!([{"prefix": "/publico/", "action": "public"}])]);
    let stack = gate.as_ref();

    // Anonymous on a public path: the gate does not watch, the app's answer passes unchanged.
    let r = stack.browser().get("/publico/x?app_logout=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("RUN desconocido"), "{r:?}");
    assert_eq!(r.header("x-claveunica-logout"), Some("1"), "{r:?}");

    let mut browser = logged_in(stack, "/tramites");
    // Logged in on a public path: not identified, so not watched either; the session stays.
    let r = browser.get("/publico/x?app_logout=1");
    assert!(r.body.contains("RUN desconocido"), "{r:?}");
    assert!(browser.jar.contains_key(SESSION_COOKIE), "{r:?}");

    let logouts = stack.counter("claveunica_gate.app_logouts");
    let r = browser.get("/x?app_logout=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{r:?}");
    let provider_logout = format!("{}/api/v1/accounts/app/logout", stack.provider());
    assert!(r.body.contains(&provider_logout), "not the logout page: {}", r.body);
    assert!(!r.body.contains("RUN desconocido"), "the app's answer came through: {}", r.body);
    assert!(r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0")), "session not deleted: {r:?}");
    assert!(!browser.jar.contains_key(SESSION_COOKIE));
    assert!(wait_for_log(stack, "logout requested by the application"), "{}", stack.log());
    assert_counted(stack, "claveunica_gate.app_logouts", logouts, 1);
    assert_sent_to_login(stack, &browser.get("/x"));
}

fn api_clients_without_a_session_get_a_401_json_not_a_redirect(host: Host) {
    let gate = start_gate(host, &[]);
    let stack = gate.as_ref();
    let before = stack.app_requests();
    let unauthorized = stack.counter("claveunica_gate.api_unauthorized");
    let clients: [&[(&str, &str)]; 4] = [
        &[("Accept", "application/json")],
        &[("X-Requested-With", "XMLHttpRequest")],
        &[("Sec-Fetch-Mode", "cors")],
        &[("Accept", "application/problem+json, text/html;q=0.5")],
    ];
    for headers in clients {
        let r = stack.browser().get_with_headers("/api/datos?x=1&y=%C3%B1", headers);
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
        assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{r:?}");
        assert!(r.header("location").is_none(), "{headers:?}: a 401 with a Location: {r:?}");
        assert!(r.header_all("set-cookie").is_empty(), "{headers:?}: a 401 set cookies: {r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {r:?}"));
        assert_eq!(v["error"], "login_required", "{v}");
        assert_eq!(v["login_url"], "/claveunica/login?return_to=%2Fapi%2Fdatos%3Fx%3D1%26y%3D%25C3%25B1", "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    assert_eq!(stack.app_requests(), before, "an API request without a session reached the app");
    assert_counted(stack, "claveunica_gate.api_unauthorized", unauthorized, clients.len() as u64);

    // A page's script follows login_url in a top-level navigation and lands back.
    let mut browser = stack.browser();
    let r = browser.get_with_headers("/api/datos?x=1", &[("Accept", "application/json")]);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    let login_url = v["login_url"].as_str().expect("login_url").to_string();
    let authorize = browser.start_login(&login_url);
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let landed = browser.callback(&callback);
    assert_eq!(landed.location(), "/api/datos?x=1");
    let echo = browser.get_with_headers("/api/datos?format=json", &[("Accept", "application/json")]).echo();
    assert_eq!(echo.one("x-claveunica-run"), Some("44444444-4"));

    // Browsers and curl still get the redirect.
    for headers in [&[][..], &[("Accept", "*/*")], &[("Sec-Fetch-Mode", "navigate"), ("Accept", "text/html")]] {
        assert_sent_to_login(stack, &stack.browser().get_with_headers("/api/datos", headers));
    }
}

/// The register's JSON lines in the host's log (Envoy's wasm log lines and Unit's stderr put a
/// prefix before the object).
fn register_lines(gate: &dyn GateUnderTest, event: &str) -> Vec<serde_json::Value> {
    let needle = format!("\"register\":\"{event}\"");
    gate.log()
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.find('{').and_then(|i| l.get(i..)))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json.trim_end()).ok())
        .collect()
}

/// Logins, logouts and refusals are one JSON line each in the host's log, with the masked RUN,
/// the UTC time, the page's reference and the request id (Envoy gives every request one; the
/// Unit component gives one to a request that has none, as Envoy does).
fn logins_logouts_and_refusals_are_one_json_register_line_each(host: Host) {
    let gate = start_gate(host, &[]);
    let stack = gate.as_ref();
    let before = claveunica_core::gate::utc(now());
    let mut browser = logged_in(stack, "/");
    let r = browser.get(&format!("{CALLBACK_PATH}?code=x&state=not-a-state"));
    assert_eq!(r.status, 400, "{r:?}");
    let reference = r.reference();
    assert_eq!(browser.get(LOGOUT_PATH).status, 200);
    log_caught_up(stack);
    let logins = register_lines(stack, "login");
    let refusals = register_lines(stack, "refused");
    let logouts = register_lines(stack, "logout");
    assert_eq!(logins.len(), 1, "{}", stack.log());
    assert_eq!(logouts.len(), 1, "{}", stack.log());
    for line in logins.iter().chain(&logouts) {
        assert_eq!(line["subject"], "*****444-4", "{line}");
    }
    let refused = refusals.iter().find(|v| v["ref"] == reference.as_str());
    let refused = refused.unwrap_or_else(|| panic!("no refusal with ref {reference}: {refusals:?}"));
    assert!(refused["reason"].as_str().is_some_and(|r| !r.is_empty()), "{refused}");
    for line in logins.iter().chain(&logouts).chain([refused]) {
        let time = line["time"].as_str().unwrap_or_default();
        assert!(time.ends_with('Z') && time.get(..16) >= before.get(..16), "time {time:?}, sent at {before}");
        assert!(line["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{line}");
    }
    let ids: std::collections::HashSet<_> =
        logins.iter().chain(&logouts).map(|l| l["request_id"].to_string()).collect();
    assert_eq!(ids.len(), 2, "the login and the logout are two requests: {ids:?}");
    assert!(!stack.log().contains("44444444"), "a full RUN in the log");
}
