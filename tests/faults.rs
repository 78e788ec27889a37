#![cfg(not(target_arch = "wasm32"))]
//! Faults: a provider that is slow, answers 500 or HTML, truncates, closes the connection or
//! rotates its signing key mid-run, Envoy reloading the gate's configuration, and the gate's VM
//! failing. Logins fail with the right page (503 when ClaveÚnica cannot be reached or times out,
//! 502 when it answers wrongly) and come back by themselves when the provider does; sessions
//! already open keep working the whole time; a JWKS failure keeps the last good keys; a reload
//! keeps sessions and shows in the counters; a failed VM fails closed, and under `FAIL_RELOAD`
//! Envoy replaces it.
//!
//! The VM failure drill runs `claveunica_gate_drill.wasm` (`envoy/drill/`: the product's filter
//! code, plus a trap a request can ask for), never the product with a switch in it.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip1 -p claveunica-gate-drill && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test faults
//! ```

mod support;

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;
use support::checks::{assert_identified, log_caught_up, start_gate, GateUnderTest, Host};
use support::envoy::FailurePolicy;
use support::process::built;
use support::{
    assert_sent_to_login, log_line_with, logged_in, wait_until, Browser, Response, Stack, BUILD_HINT, DRILL_BUILD_HINT,
    PASSWORD, RUN, SESSION_COOKIE,
};

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

/// A path the gate protects; the app echoes what reached it.
const PROTECTED: &str = "/private?format=json";
/// The header that makes the drill's module trap (`envoy/drill/src/trap.rs`).
const TRAP: (&str, &str) = ("x-drill", "trap");
/// What Envoy logs when a callback traps, and what the drill's panic says before it.
const CALLBACK_FAILED: &str = "Function: proxy_on_request_headers failed";
const DRILL_PANIC: &str = "VM failure drill: trapping";

/// Envoy's counters of VM reloads for the gate's filter (`wasm.<filter name>.vm_reload_*`).
fn reloads(stack: &Stack, which: &str) -> u64 {
    stack.counter(&format!("wasm.claveunica_gate.vm_reload_{which}"))
}

/// The VM failure drill, up to the failure: one worker running the drill's module (the product's
/// filter with a trap) under `policy`, a person logged in, then one request on a protected path
/// that the gate handles, identity set and forward decided, and whose callback then traps.
/// Checks that the answer is a 5xx, that nothing reached the app, and that the trap really
/// fired (the drill's panic and Envoy's failed callback in the log, once each per trap).
/// Returns the stack and María's browser.
fn trap_the_vm(policy: FailurePolicy) -> (Stack, Browser) {
    let stack = Stack::builder().concurrency(1).drill_module().expect_vm_failure().failure_policy(policy).start();
    let mut maria = logged_in(&stack, PROTECTED);
    // The drill's module is the gate: sessions open and identity is set, and nothing has failed.
    assert_identified(&maria.get(PROTECTED));
    assert!(!stack.envoy_log().contains(CALLBACK_FAILED), "a VM failure before the drill:\n{}", stack.envoy_log());
    trap(&stack, &mut maria, 1);
    (stack, maria)
}

/// Sends the trapping request (the `nth` of the test) with María's session.
fn trap(stack: &Stack, maria: &mut Browser, nth: usize) {
    let before = stack.app_requests();
    let r = maria.get_with_headers(PROTECTED, &[TRAP]);
    assert!((500..600).contains(&r.status), "trap {nth}: a failed VM must fail closed, got {r:?}");
    assert_eq!(stack.app_requests(), before, "trap {nth}: the request reached the app although the VM failed");
    let failed = || {
        let log = stack.envoy_log();
        (log.matches(DRILL_PANIC).count(), log.matches(CALLBACK_FAILED).count())
    };
    assert!(
        wait_until(Duration::from_secs(5), || failed() == (nth, nth)),
        "trap {nth}: the log does not show the drill's trap as VM failure number {nth} ((panics, failed callbacks) = \
         {:?}):\n{}",
        failed(),
        stack.envoy_log()
    );
}

/// Sends requests with María's session and without one, in turn, until one is served (not a
/// 5xx) or `limit` passes; every 5xx must have reached nothing. How many 5xx answers came, and
/// when the first request was served (`None`: none was).
fn until_served(stack: &Stack, maria: &mut Browser, limit: Duration) -> (u64, Option<Duration>) {
    let app = stack.app_requests();
    let started = Instant::now();
    let mut failed = 0;
    while started.elapsed() < limit {
        for with_session in [true, false] {
            let r = if with_session { maria.get(PROTECTED) } else { stack.browser().get(PROTECTED) };
            if !(500..600).contains(&r.status) {
                return (failed, Some(started.elapsed()));
            }
            failed += 1;
            assert_eq!(stack.app_requests(), app, "a request reached the app through the failed VM: {r:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    (failed, None)
}

/// `envoy/production.yaml`'s policy. A failed VM fails closed, then the first request after the
/// reload interval (1 to 1.5 s after the VM was loaded, Envoy's default) gets a new VM and the
/// worker serves again: María's session reaches the app with her verified identity, a request
/// without one is sent to log in. Twice: the VM that replaced the first is replaced in turn.
/// Envoy's counters show each reload, and that every 503 meanwhile was a request that found the
/// failed VM within the interval.
#[test]
fn a_failed_vm_fails_closed_and_fail_reload_replaces_it() {
    let (stack, mut maria) = trap_the_vm(FailurePolicy::FailReload);
    let mut waited_in_all = 0;
    for round in 1..=2 {
        if round > 1 {
            trap(&stack, &mut maria, round);
        }
        let vms = stack.counter("wasm.envoy.wasm.runtime.v8.created");
        let (waited, served) = until_served(&stack, &mut maria, Duration::from_secs(5));
        let Some(served) = served else { panic!("round {round}: still failing 5 s after the trap") };
        eprintln!("FAIL_RELOAD, round {round}: served again {served:?} after the trap, {waited} answers 5xx before");
        waited_in_all += waited;

        let app = stack.app_requests();
        assert_identified(&maria.get(PROTECTED));
        assert_sent_to_login(&stack, &stack.browser().get(PROTECTED));
        assert_eq!(stack.app_requests(), app + 1, "round {round}: only the request with a session reaches the app");
        assert_eq!(reloads(&stack, "success"), round as u64, "round {round}: Envoy counted no VM reload");
        assert_eq!(reloads(&stack, "failure"), 0, "round {round}");
        assert_eq!(stack.counter("wasm.envoy.wasm.runtime.v8.created"), vms + 1, "round {round}: one new VM");
        assert_eq!(reloads(&stack, "backoff"), waited_in_all, "round {round}: a 5xx that was not the backoff");
    }
}

/// The contrast that makes `FAIL_RELOAD` worth it, and the drill's positive control: under
/// `FAIL_CLOSED` the failed VM stays, and for twice `FAIL_RELOAD`'s longest interval every
/// request on that worker gets a 5xx, even the redirect to log in, and nothing reaches the app.
#[test]
fn a_failed_vm_under_fail_closed_answers_5xx_until_envoy_restarts() {
    let (stack, mut maria) = trap_the_vm(FailurePolicy::FailClosed);
    let (failed, served) = until_served(&stack, &mut maria, Duration::from_secs(3));
    assert_eq!(served, None, "a request was served after the VM failed, under FAIL_CLOSED");
    eprintln!("FAIL_CLOSED: {failed} answers 5xx in the 3 s after the trap");
    for which in ["success", "failure", "backoff"] {
        assert_eq!(reloads(&stack, which), 0, "vm_reload_{which} moved under FAIL_CLOSED");
    }
}

/// The drill's trap is in the drill's module only: the product's module has neither its
/// trigger nor its panic message, which the drill's module has (the control that the search
/// can find them).
#[test]
fn the_product_module_has_no_drill_in_it() {
    let read = |name: &str, hint: &str| {
        let path = built(&format!("wasm32-wasip1/release/{name}"), hint);
        fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    };
    let product = read("claveunica_gate.wasm", BUILD_HINT);
    let drill = read("claveunica_gate_drill.wasm", DRILL_BUILD_HINT);
    let has = |module: &[u8], text: &str| module.windows(text.len()).any(|w| w == text.as_bytes());
    for text in [TRAP.0, DRILL_PANIC] {
        assert!(has(&drill, text), "the drill's module lacks {text:?}: the search finds nothing");
        assert!(!has(&product, text), "the product's module has {text:?} in it");
    }
}
