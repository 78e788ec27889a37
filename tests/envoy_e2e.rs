#![cfg(not(target_arch = "wasm32"))]
//! End to end on Envoy only: what `tests/scenarios.rs` (run on both hosts) does not cover
//! because it needs Envoy's own machinery: sessions across two gates with different key
//! rings, two gates for two providers in one Envoy sharing one VM's shared data, the
//! emulator's string `numero`, and a configuration Envoy refuses at start. Each test starts its own stack so tests cannot disturb each other's
//! counters.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test envoy_e2e
//! ```

mod support;

use std::thread;
use std::time::Duration;

use support::stack::emulator_stats;
use support::{logged_in, random_key, Browser, Response, Stack, PASSWORD, RUN, SESSION_COOKIE};

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
