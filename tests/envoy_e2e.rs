#![cfg(not(target_arch = "wasm32"))]
//! End to end on Envoy only: what `tests/scenarios.rs` (run on both hosts) does not cover
//! because it needs Envoy's own machinery: sessions across two gates with different key
//! rings, two gates for two providers in one Envoy sharing one VM's shared data, a login
//! attempt spent once across four workers' VMs, the emulator's string `numero`, and a
//! configuration Envoy refuses at start. Each test starts its own stack so tests cannot
//! disturb each other's counters.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test envoy_e2e
//! ```

mod support;

use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use support::checks::{assert_identified, GateUnderTest};
use support::stack::emulator_stats;
use support::{
    log_line_with, logged_in, param, random_key, raw_http1, url_encode, Browser, Response, Stack, CALLBACK_PATH,
    PASSWORD, RUN, SESSION_COOKIE,
};

/// Sent to ClaveÚnica, and none of the app's page came along.
fn assert_sent_to_login(stack: &Stack, r: &Response) {
    support::assert_sent_to_login(stack, r);
    assert!(!r.body.contains("Portal Legado"), "the app's page came through: {r:?}");
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

/// Staging (against its own emulator) and production in one Envoy: two listeners, two gates
/// with different issuers, one VM and so one proxy-wasm shared data. Each gate keeps its own
/// provider's keys: logins alternate between the two, a tick (1 s) apart so each gate reads
/// the shared data in between, and every one succeeds, each provider's JWKS fetched once (at
/// start) and never again. A shared entry for both would hand each gate the other's keys: a
/// refetch for every switch, and logins refused once the refetch limit bites.
#[test]
fn two_gates_for_two_issuers_in_one_envoy_keep_their_own_keys() {
    let stack = Stack::builder().second_gate().start();
    let (staging_base, staging_provider) = stack.second().expect("a second gate");
    // Both gates' first fetch, at their first ticks.
    thread::sleep(Duration::from_secs(3));
    for round in 0..3 {
        let mut production = stack.browser();
        let r = production.login("/?format=json", RUN, PASSWORD);
        assert_eq!(r.status, 302, "round {round}, production: {r:?}\n{}", stack.envoy_log());
        assert_eq!(production.get("/?format=json").echo().one("x-claveunica-run"), Some(RUN));
        thread::sleep(Duration::from_millis(1500));
        let mut staging = Browser::new(staging_base, staging_provider);
        let r = staging.login("/?format=json", RUN, PASSWORD);
        assert_eq!(r.status, 302, "round {round}, staging: {r:?}\n{}", stack.envoy_log());
        assert_eq!(staging.get("/?format=json").echo().one("x-claveunica-run"), Some(RUN));
        thread::sleep(Duration::from_millis(1500));
    }
    assert_eq!(stack.emulator_stats().jwks, 1, "production's JWKS was fetched again: its keys were overwritten");
    assert_eq!(emulator_stats(staging_provider).jwks, 1, "staging's JWKS was fetched again: its keys were overwritten");
}

/// The reason the gate logged for the failure page `r`, by the page's reference.
fn logged_reason(stack: &Stack, r: &Response) -> String {
    let line = log_line_with(stack, &format!("ref={}", r.reference()));
    let reason = line.split(" reason=").nth(1).and_then(|rest| rest.split(' ').next());
    reason.unwrap_or_else(|| panic!("no reason logged for {r:?}:\n{}", stack.log())).to_string()
}

/// One login attempt makes one token call with the agency's credentials, however often its
/// callback is replayed and whichever of Envoy's four workers (four VMs) answers: the flow
/// cookie and state of one login, sent back 20 times at once with other codes, each on its
/// own connection, then 10 times more one after another. The emulator counts exactly one
/// token request (not none: the positive control), the replays get the 400 page with
/// `attempt_used`, more than one worker answered, and an honest login works afterwards.
#[test]
fn a_replayed_callback_makes_one_token_call_whichever_worker_answers() {
    const AT_ONCE: usize = 20;
    const THEN: usize = 10;
    let stack = Stack::builder().concurrency(4).start();
    let mut victim = stack.browser();
    let authorize = victim.start_login("/tramites");
    let callback = victim.provider_login(&authorize, RUN, PASSWORD);
    let code = param(&callback, "code").expect("the provider's callback has a code");
    let flow = authorize.flow_cookie();
    let cookie = format!("{flow}={}", victim.jar[&flow]);
    let host = stack.base().trim_start_matches("http://").to_string();
    let request = |code: &str| {
        format!(
            "GET {CALLBACK_PATH}?code={}&state={} HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\
             Connection: close\r\n\r\n",
            url_encode(code),
            url_encode(&authorize.state),
        )
    };
    let tokens = stack.emulator_stats().token;
    let used = stack.gate_counter("claveunica_gate.login_failures.attempt_used");
    let connections_before = stack.connections_per_worker();

    // The genuine code and 19 others, released together, each on a fresh connection.
    let barrier = Barrier::new(AT_ONCE);
    let at_once: Vec<Response> = thread::scope(|s| {
        let sent: Vec<_> = (0..AT_ONCE)
            .map(|i| {
                let request = request(&if i == 0 { code.clone() } else { format!("replayed-code-{i}") });
                let (barrier, base) = (&barrier, stack.base());
                s.spawn(move || {
                    barrier.wait();
                    raw_http1(base, request.as_bytes())
                })
            })
            .collect();
        sent.into_iter().map(|t| t.join().expect("a replay thread panicked")).collect()
    });
    let then: Vec<Response> =
        (0..THEN).map(|i| raw_http1(stack.base(), request(&format!("later-{i}")).as_bytes())).collect();

    assert_eq!(stack.emulator_stats().token - tokens, 1, "token calls for one login attempt\n{}", stack.log());
    // The one that won the claim made the call: the genuine code logs in, another is refused
    // by the provider. Every other answer is the gate's own refusal.
    let (won, refused): (Vec<&Response>, Vec<&Response>) =
        at_once.iter().partition(|r| r.status == 302 || logged_reason(&stack, r) != "attempt_used");
    assert_eq!(won.len(), 1, "answers that were not attempt_used: {won:?}");
    let won = won[0];
    if won.status == 302 {
        assert_eq!(won.location(), "/tramites", "{won:?}");
    } else {
        assert_eq!((won.status, logged_reason(&stack, won).as_str()), (400, "token_invalid_grant"), "{won:?}");
    }
    for r in refused.iter().copied().chain(&then) {
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.body.contains("no es válido"), "{}", r.body);
        assert!(r.set_cookie(&flow).is_some_and(|c| c.contains("Max-Age=0")), "the flow cookie stays: {r:?}");
        assert!(r.set_cookie(SESSION_COOKIE).is_none(), "a replay set a session: {r:?}");
    }
    for r in &then {
        assert_eq!(logged_reason(&stack, r), "attempt_used", "{r:?}");
    }
    let replays = u64::try_from(AT_ONCE - 1 + THEN).unwrap();
    assert_eq!(stack.gate_counter("claveunica_gate.login_failures.attempt_used") - used, replays);
    let connections: Vec<u64> =
        stack.connections_per_worker().iter().zip(&connections_before).map(|(a, b)| a - b).collect();
    assert_eq!(connections.len(), 4, "per-worker listener stats: {:?}", stack.connections_per_worker());
    assert!(
        connections.iter().filter(|n| **n > 0).count() >= 2,
        "the replays reached one worker only ({connections:?}): nothing crossed a VM"
    );

    // An honest login afterwards: its own attempt, its own token call.
    let mut honest = logged_in(&stack, "/");
    assert_identified(&honest.get("/?format=json"));
    assert_eq!(stack.emulator_stats().token - tokens, 2);
}

/// The access lines of Envoy's own access log (`envoy/gate.yaml.tmpl`, as in
/// `envoy/production.yaml`), parsed.
fn access_lines(stack: &Stack) -> Vec<serde_json::Value> {
    stack
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["register"] == "access")
        .collect()
}

/// The access register on Envoy: the gate publishes the person to the request's filter state
/// and Envoy's own access log records it beside the UTC time, a masked RUN by default; an
/// anonymous request's line names nobody (the positive control that the field is not filled
/// from elsewhere), and no line holds the full RUN.
#[test]
fn envoys_access_log_records_who_and_when_with_a_masked_run() {
    let stack = Stack::start();
    let mut browser = logged_in(&stack, "/");
    let before = claveunica_core::gate::utc(support::now());
    let r = browser.get("/tramites?format=json");
    assert_eq!(r.status, 200, "{r:?}");
    let mut found = Vec::new();
    support::wait_until(Duration::from_secs(5), || {
        found = access_lines(&stack);
        found.iter().any(|v| v["subject"] == "*****444-4")
    });
    let identified: Vec<_> = found.iter().filter(|v| v["subject"] == "*****444-4").collect();
    assert!(!identified.is_empty(), "no access line names the person:\n{}", stack.log());
    let line = identified.last().copied().unwrap_or(&serde_json::Value::Null);
    let time = line["time"].as_str().unwrap_or_default();
    // Envoy's %START_TIME%: UTC, `2026-12-01T23:05:09.123Z`, no earlier than the minute before.
    assert!(time.ends_with('Z') && time.get(..16) >= before.get(..16), "time {time:?}, sent at {before}");
    assert!(line["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{line}");
    assert_eq!(line["method"], "GET");
    // The redirect to ClaveÚnica and the callback went without identity: named nobody.
    assert!(found.iter().any(|v| v["subject"].is_null() || v["subject"] == "-"), "{found:?}");
    assert!(!stack.log().contains("44444444"), "a full RUN in Envoy's log:\n{}", stack.log());
}

/// With `access_log.run: "full"` the register holds the full RUN, only because the
/// configuration says so.
#[test]
fn envoys_access_log_holds_the_full_run_only_when_configured() {
    let stack = Stack::builder().edit_config(|c| c["access_log"] = serde_json::json!({"run": "full"})).start();
    let mut browser = logged_in(&stack, "/");
    assert_eq!(browser.get("/tramites?format=json").status, 200);
    let mut found = Vec::new();
    support::wait_until(Duration::from_secs(5), || {
        found = access_lines(&stack);
        found.iter().any(|v| v["subject"] == "44444444-4")
    });
    assert!(found.iter().any(|v| v["subject"] == "44444444-4"), "{found:?}\n{}", stack.log());
}
