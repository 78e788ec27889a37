#![cfg(not(target_arch = "wasm32"))]
//! Faults: a provider that is slow, answers 500 or HTML, truncates, closes the connection or
//! rotates its signing key mid-run, and Envoy reloading the gate's configuration. Logins fail
//! with the right page (503 when ClaveÚnica cannot be reached or times out, 502 when it answers
//! wrongly) and come back by themselves when the provider does; sessions already open keep
//! working the whole time; a JWKS failure keeps the last good keys; a reload keeps sessions
//! and shows in the counters.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test faults
//! ```

mod support;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::checks::{log_caught_up, start_gate, GateUnderTest, Host};
use support::{log_line_with, wait_until, Browser, Response, Stack, PASSWORD, RUN, SESSION_COOKIE};

/// The gate's `timeout_ms` in these stacks, and how long a slow provider takes.
const TIMEOUT_MS: u64 = 1000;
const SLOW_MS: u64 = 2500;

fn set_fault(stack: &dyn GateUnderTest, endpoint: &str, kind: &str) {
    stack.set_emulator_mode(&json!({"fault": {"endpoint": endpoint, "kind": kind}, "slow_ms": SLOW_MS}));
}

fn clear_fault(stack: &dyn GateUnderTest) {
    stack.set_emulator_mode(&json!({"fault": {"endpoint": "all", "kind": "none"}}));
}

/// María's verified session still reaches the app with her identity.
fn assert_session_works(stack: &dyn GateUnderTest, cookie: &str, when: &str) {
    let mut b = stack.browser();
    b.jar.insert(SESSION_COOKIE.into(), cookie.to_string());
    let r = b.get("/?format=json");
    assert_eq!(r.status, 200, "{when}: the open session no longer reaches the app: {r:?}");
    assert_eq!(r.echo().one("x-claveunica-run"), Some(RUN), "{when}: {r:?}");
}

/// A whole login that must succeed.
fn assert_login_works(stack: &dyn GateUnderTest, when: &str) -> Browser {
    let mut b = stack.browser();
    let r = b.login("/tramites?format=json", RUN, PASSWORD);
    assert_eq!(r.status, 302, "{when}: the login failed: {r:?}\n{}", log_line_with(stack, "login failed"));
    assert_eq!(r.location(), "/tramites?format=json", "{when}");
    assert_eq!(b.get("/tramites?format=json").echo().one("x-claveunica-run"), Some(RUN), "{when}");
    b
}

/// The failure page: its status, a reference that is in the log with `reason`, no session.
fn assert_failure_page(stack: &dyn GateUnderTest, r: &Response, status: u16, reason: &str, when: &str) {
    assert_eq!(r.status, status, "{when}: {r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{when}: {r:?}");
    let reference = r.reference();
    let line = log_line_with(stack, &format!("ref={reference}"));
    assert!(
        line.contains(&format!("status={status}")) && line.contains(&format!("reason={reason}")),
        "{when}: the log line for ref={reference} does not say status={status} reason={reason}: {line:?}"
    );
    assert!(r.set_cookie(SESSION_COOKIE).is_none_or(|c| c.contains("Max-Age=0")), "{when}: a session was set: {r:?}");
}

/// The gate on `host` with calls to the provider timing out after [`TIMEOUT_MS`].
fn start(host: Host) -> Box<dyn GateUnderTest> {
    start_gate(host, &[|c| c["timeout_ms"] = json!(TIMEOUT_MS)])
}

#[test]
fn provider_faults_fail_logins_with_the_right_page_and_heal_on_envoy() {
    provider_faults_fail_logins_with_the_right_page_and_heal(Host::Envoy);
}

#[test]
fn provider_faults_fail_logins_with_the_right_page_and_heal_on_unit() {
    provider_faults_fail_logins_with_the_right_page_and_heal(Host::Unit);
}

fn provider_faults_fail_logins_with_the_right_page_and_heal(host: Host) {
    let gate = start(host);
    let stack = gate.as_ref();
    let session = assert_login_works(stack, "before any fault").jar[SESSION_COOKIE].clone();

    // endpoint, fault, the page's status, the logged reason.
    let rows: &[(&str, &str, u16, &str)] = &[
        ("token", "slow", 503, "token_un"),
        ("token", "close", 503, "token_un"),
        ("token", "status_500", 502, "token_malformed"),
        ("token", "html", 502, "token_malformed"),
        ("token", "truncate_json", 502, "token_malformed"),
        ("userinfo", "slow", 503, "userinfo_un"),
        ("userinfo", "close", 503, "userinfo_un"),
        ("userinfo", "status_500", 502, "userinfo_rejected"),
        ("userinfo", "html", 502, "userinfo_invalid"),
        ("userinfo", "truncate_json", 502, "userinfo_invalid"),
        ("all", "close", 503, "token_un"),
    ];
    for &(endpoint, kind, status, reason) in rows {
        let when = format!("{kind} at {endpoint}");
        set_fault(stack, endpoint, kind);
        let before = stack.app_requests();
        let mut b = stack.browser();
        let started = Instant::now();
        let r = b.login("/tramites", RUN, PASSWORD);
        assert_failure_page(stack, &r, status, reason, &when);
        if kind == "slow" {
            assert!(
                started.elapsed() < Duration::from_millis(SLOW_MS),
                "{when}: the gate waited {:?}, past its timeout of {TIMEOUT_MS} ms",
                started.elapsed()
            );
        }
        assert!(!b.jar.contains_key(SESSION_COOKIE), "{when}: a session was set");
        assert_eq!(stack.app_requests(), before, "{when}: a failed login reached the app");
        assert_session_works(stack, &session, &when);
        clear_fault(stack);
        assert_login_works(stack, &format!("after {when} was cleared"));
    }

    // On Envoy the keys are known (kept for every worker), so a JWKS endpoint that fails in
    // any way does not stop a login. A real host difference: the Unit host keeps no state
    // between requests (an instance per request), so every login there fetches the keys, and
    // a failing JWKS endpoint fails logins with the page for it; open sessions work on both.
    for (kind, status, reason) in [
        ("slow", 503, "jwks_unreachable"),
        ("close", 503, "jwks_unreachable"),
        ("status_500", 502, "jwks_invalid"),
        ("html", 502, "jwks_invalid"),
        ("truncate_json", 502, "jwks_invalid"),
    ] {
        let when = format!("{kind} at the JWKS endpoint");
        set_fault(stack, "jwks", kind);
        match host {
            Host::Envoy => drop(assert_login_works(stack, &format!("{when}, keys already known"))),
            Host::Unit => {
                let r = stack.browser().login("/tramites", RUN, PASSWORD);
                assert_failure_page(stack, &r, status, reason, &when);
            }
        }
        assert_session_works(stack, &session, &when);
    }
    clear_fault(stack);
    log_caught_up(stack);
    let log = stack.log();
    assert!(!log.contains("wasm trap") && !log.contains("panicked"), "a crash in the host's log:\n{log}");
}

/// A provider that announces a longer body than it sends, then closes: Envoy hands the gate a
/// failed call without response headers, and the gate must answer 503 like any unreachable
/// provider.
#[test]
fn a_truncated_answer_fails_the_login_without_crashing_the_vm_on_envoy() {
    a_truncated_answer_fails_the_login_without_crashing_the_vm(Host::Envoy);
}

#[test]
fn a_truncated_answer_fails_the_login_without_crashing_the_vm_on_unit() {
    a_truncated_answer_fails_the_login_without_crashing_the_vm(Host::Unit);
}

fn a_truncated_answer_fails_the_login_without_crashing_the_vm(host: Host) {
    let gate = start(host);
    let stack = gate.as_ref();
    let session = assert_login_works(stack, "before any fault").jar[SESSION_COOKIE].clone();
    for (endpoint, reason) in [("token", "token_un"), ("userinfo", "userinfo_un")] {
        let when = format!("truncate_body at {endpoint}");
        set_fault(stack, endpoint, "truncate_body");
        let before = stack.app_requests();
        let mut b = stack.browser();
        let r = b.login("/tramites", RUN, PASSWORD);
        assert_failure_page(stack, &r, 503, reason, &when);
        assert_eq!(stack.app_requests(), before, "{when}: a failed login reached the app");
        // Fresh connections land on both workers: each VM must still serve.
        for _ in 0..6 {
            assert_session_works(stack, &session, &when);
        }
        clear_fault(stack);
        assert_login_works(stack, &format!("after {when} was cleared"));
    }
    log_caught_up(stack);
    let log = stack.log();
    assert!(!log.contains("panicked") && !log.contains("proxy_on_"), "a crash in the host's log:\n{log}");
}

#[test]
fn key_rotation_mid_run_and_a_failing_jwks_keep_the_last_good_keys() {
    // One worker, so the JWKS rate limit (one fetch per 30 s for an unknown kid) is one clock.
    let stack = Stack::builder().concurrency(1).edit_config(|c| c["timeout_ms"] = json!(TIMEOUT_MS)).start();
    let session = assert_login_works(&stack, "before the rotation").jar[SESSION_COOKIE].clone();
    let c = |name: &str| stack.gate_counter(&format!("claveunica_gate.{name}"));

    // The background fetch at start does not count for the rate limit: no 30 s wait. It must
    // have landed, though, before the fault below (it runs at the first tick, in every VM of
    // the worker's and the main thread's that finds no keys shared yet), or it would fail,
    // back off and fetch again after the fault clears: wait until the JWKS count settles.
    let settled = wait_until(Duration::from_secs(10), || {
        let before = stack.emulator_stats().jwks;
        thread::sleep(Duration::from_millis(1500));
        stack.emulator_stats().jwks == before
    });
    assert!(settled, "the gate kept fetching the JWKS at start");
    // The provider rotates its key while its JWKS endpoint fails: a login with the new kid
    // fails with a 502 page, the failed refresh is counted, open sessions keep working.
    let failures_before = c("jwks_refresh_failures");
    set_fault(&stack, "jwks", "status_500");
    let kid = stack.rotate_provider_key(false);
    let mut b = stack.browser();
    let r = b.login("/tramites", RUN, PASSWORD);
    assert_failure_page(&stack, &r, 502, "jwks_invalid", &format!("rotated to {kid} with the JWKS answering 500"));
    assert!(c("jwks_refresh_failures") > failures_before, "{:?}", stack.stats_matching("claveunica_gate"));
    assert_session_works(&stack, &session, "while the JWKS fails");

    // The provider heals: logins come back by themselves, within the 30 s refetch limit, at
    // the cost of one JWKS fetch for the new kid.
    clear_fault(&stack);
    let jwks_before = stack.emulator_stats().jwks;
    let healed = Instant::now();
    let mut last = None;
    let ok = wait_until(Duration::from_secs(40), || {
        let mut b = stack.browser();
        let r = b.login("/tramites", RUN, PASSWORD);
        let ok = r.status == 302;
        last = Some(r);
        if !ok {
            thread::sleep(Duration::from_secs(3));
        }
        ok
    });
    assert!(ok, "logins did not come back within 40 s of the JWKS healing; last answer: {last:?}");
    eprintln!("logins came back {:?} after the JWKS healed", healed.elapsed());
    assert_eq!(stack.emulator_stats().jwks, jwks_before + 1, "the new kid should cost exactly one JWKS fetch");
    assert_session_works(&stack, &session, "after the JWKS healed");
    assert_login_works(&stack, "a second login with the new key");
    assert_eq!(stack.emulator_stats().jwks, jwks_before + 1, "the new key was not kept");
}

#[test]
fn a_reloaded_configuration_keeps_sessions_and_shows_in_the_counters() {
    let mut stack = Stack::builder().reloadable().start();
    let session = assert_login_works(&stack, "before the reload").jar[SESSION_COOKIE].clone();
    let loads = |s: &Stack| s.gate_counter("claveunica_gate.config_loads");
    let loads_before = loads(&stack);
    assert!(loads_before >= 1, "no config_loads counted at start: {:?}", stack.stats_matching("claveunica_gate"));
    let lds_ok = stack.counter("listener_manager.lds.update_success");

    // Before: /publico/ needs a session like everything else.
    let r = stack.browser().get("/publico/x?format=json");
    assert_eq!(r.status, 302, "{r:?}");

    // A changed, valid configuration with the same session keys.
    stack.reload_gate_config(|c| {
        c["rules"] = json!([{"prefix": "/publico/", "action": "public"}]);
        c["timeout_ms"] = json!(3000);
    });
    assert!(
        wait_until(Duration::from_secs(15), || loads(&stack) > loads_before),
        "config_loads did not move after the reload (was {loads_before}): {:?}\n{}",
        stack.stats_matching("(claveunica_gate|listener_manager)"),
        stack.envoy_log()
    );
    assert!(stack.counter("listener_manager.lds.update_success") > lds_ok);
    // The new rule is in effect, and the old session still opens.
    assert!(
        wait_until(Duration::from_secs(10), || stack.browser().get("/publico/x?format=json").status == 200),
        "the reloaded rule is not in effect"
    );
    let echo = stack.browser().get("/publico/x?format=json").echo();
    assert!(echo.all("x-claveunica-run").is_empty(), "{echo:?}");
    assert_session_works(&stack, &session, "after the reload");
    assert_login_works(&stack, "after the reload");

    // A broken configuration (a session key of 5 bytes) is refused; the last good one serves.
    let rejected_before = stack.counter("listener_manager.lds.update_rejected");
    let rejections_before = stack.gate_counter("claveunica_gate.config_rejections");
    stack.reload_gate_config(|c| c["session_keys"] = json!(["c2hvcnQ="]));
    assert!(
        wait_until(Duration::from_secs(15), || {
            stack.counter("listener_manager.lds.update_rejected") > rejected_before
                || stack.gate_counter("claveunica_gate.config_rejections") > rejections_before
        }),
        "the broken reload was neither rejected by Envoy nor counted by the gate: {:?}\n{}",
        stack.stats_matching("(claveunica_gate|listener_manager)"),
        stack.envoy_log()
    );
    eprintln!(
        "broken reload: lds.update_rejected {rejected_before} -> {}, config_rejections {rejections_before} -> {}",
        stack.counter("listener_manager.lds.update_rejected"),
        stack.gate_counter("claveunica_gate.config_rejections")
    );
    assert!(
        stack.envoy_log().contains("session_keys[0]: must decode to 32 bytes"),
        "the log does not name the problem"
    );
    assert_session_works(&stack, &session, "after a refused reload");
    assert_eq!(stack.browser().get("/publico/x?format=json").status, 200, "the last good configuration is gone");
    assert_login_works(&stack, "after a refused reload");
}
