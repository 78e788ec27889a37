#![cfg(not(target_arch = "wasm32"))]
//! End to end, the rollout features that need Envoy's own machinery: counters summed over
//! workers, numbers written as doubles and a `Struct` configuration (what Istio hands over),
//! and the JWKS shared between workers. The rollout features both hosts share (rules, modes,
//! the pilot list, templates, lifetimes, API 401s) are in `tests/rollout.rs`, run on both.
//! Each test starts its own stack so counters cannot leak between tests.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test envoy_rollout
//! ```

mod support;

use std::thread;
use std::time::Duration;

use serde_json::json;
use support::checks::{assert_anonymous, assert_identified};
use support::{logged_in, wait_until, Stack, CALLBACK_PATH, LOGOUT_PATH, PASSWORD, RUN, SESSION_COOKIE};

const LEGACY_COOKIE: &str = "PHPSESSID";

#[test]
fn counters_move_and_are_summed_over_workers() {
    let stack = Stack::start();
    let c = |name: &str| stack.gate_counter(&format!("claveunica_gate.{name}"));

    let mut browser = logged_in(&stack, "/tramites");
    assert!(c("logins_started") >= 1 && c("logins_completed") >= 1, "{:?}", stack.stats_matching("claveunica"));
    assert!(c("jwks_refreshes") >= 1, "{:?}", stack.stats_matching("claveunica"));

    // A callback without its flow cookie: counted under its own reason, and under no other.
    let (no_flow, bad_state) = (c("login_failures.no_flow_cookie"), c("login_failures.bad_state"));
    let r = stack.browser().get(&format!("{CALLBACK_PATH}?code=abc&state=ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ"));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(c("login_failures.no_flow_cookie"), no_flow + 1);
    assert_eq!(c("login_failures.bad_state"), bad_state);

    // A tampered session, an API client.
    let rejected = c("sessions_rejected");
    let mut tampered = stack.browser();
    tampered.jar.insert(SESSION_COOKIE.into(), "garbage".into());
    support::assert_sent_to_login(&stack, &tampered.get("/x"));
    assert_eq!(c("sessions_rejected"), rejected + 1);
    let unauthorized = c("api_unauthorized");
    let r = stack.browser().get_with_headers("/x", &[("Accept", "application/json")]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(c("api_unauthorized"), unauthorized + 1);

    // Requests on fresh connections, which Envoy spreads over its two workers (each with its
    // own VM and counters): the admin shows the sum.
    let cookie = browser.jar[SESSION_COOKIE].clone();
    let accepted = c("sessions_accepted");
    let connections_before = stack.connections_per_worker();
    const N: u64 = 24;
    for _ in 0..N {
        let mut b = stack.browser();
        b.jar.insert(SESSION_COOKIE.into(), cookie.clone());
        assert_identified(&b.get("/?format=json"));
    }
    // Accepted sessions are handed to Envoy once a tick (a second), not on every request.
    wait_until(Duration::from_secs(5), || c("sessions_accepted") >= accepted + N);
    assert_eq!(c("sessions_accepted"), accepted + N, "counts lost between workers");
    let connections: Vec<u64> =
        stack.connections_per_worker().iter().zip(&connections_before).map(|(a, b)| a - b).collect();
    assert_eq!(connections.len(), 2, "per-worker listener stats: {:?}", stack.connections_per_worker());
    assert!(connections.iter().all(|n| *n > 0), "not both workers served ({connections:?}); the sum was not tested");

    // Logout.
    let logouts = c("logouts");
    let r = browser.get(LOGOUT_PATH);
    assert_eq!(r.status, 200, "the logout page: {r:?}");
    assert_eq!(c("logouts"), logouts + 1);

    // The same counters in Prometheus form, wasmcustom prefix dropped.
    let text = stack.prometheus();
    let prom = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let (n, v) = l.rsplit_once(' ')?;
            (n == format!("{name}{{}}") || n == name).then(|| v.parse().ok()).flatten()
        })
    };
    for name in
        ["logins_completed", "sessions_accepted", "api_unauthorized", "logouts", "login_failures.no_flow_cookie"]
    {
        let prom_name = format!("claveunica_gate_{}", name.replace('.', "_"));
        // Each of these moved above, so a zero here would be a counter lost on the way.
        let value = c(name);
        assert!(value > 0, "{name} did not move in this test");
        assert_eq!(prom(&prom_name), Some(value), "{prom_name} in /stats/prometheus:\n{text}");
    }
    assert!(text.contains("# TYPE claveunica_gate_logins_started counter"), "{text}");
}

#[test]
fn parallel_mode_counts_its_pass_throughs() {
    let stack = Stack::builder()
        .edit_config(|c| c["migration"] = json!({"mode": "parallel", "legacy_cookies": [LEGACY_COOKIE]}))
        .start();
    let name = "claveunica_gate.migration_pass_through.parallel";
    let before = stack.gate_counter(name);
    for _ in 0..5 {
        assert_anonymous(&stack.browser().get("/x?format=json"));
    }
    assert_eq!(stack.gate_counter(name), before + 5);
    assert!(stack.prometheus().contains("claveunica_gate_migration_pass_through_parallel"));
}

/// Istio delivers `pluginConfig` to the plugin as JSON written from a protobuf Struct, so
/// every number is a double and may be written as `5000.0`.
#[test]
fn a_configuration_with_numbers_written_as_doubles_logs_in() {
    let stack = Stack::builder()
        .edit_config(|c| {
            c["timeout_ms"] = json!(5000.0);
            c["clock_leeway_s"] = json!(60.0);
            c["session"] = json!({"max_age_s": 3600.0, "idle_timeout_s": 600.0});
            c["migration"] = json!({"mode": "canary", "legacy_cookies": [LEGACY_COOKIE], "canary_percent": 100.0});
        })
        .start();
    let mut browser = stack.browser();
    let r = browser.login("/tramites", RUN, PASSWORD);
    assert_eq!(r.status, 302, "{r:?}");
    assert_identified(&browser.get("/tramites?format=json"));
    let max_age = r.set_cookie(SESSION_COOKIE).and_then(|c| c.split("Max-Age=").nth(1)).map(|v| v.split(';').next());
    assert_eq!(max_age.flatten().map(str::trim), Some("3600"), "{r:?}");
}

#[test]
fn a_struct_configuration_logs_in() {
    let stack = Stack::builder()
        .struct_config()
        .edit_config(|c| {
            c["timeout_ms"] = json!(5000);
            c["session"] = json!({"max_age_s": 3600});
            c["rules"] = json!([{"prefix": "/static/", "action": "public"}]);
        })
        .start();
    let mut browser = stack.browser();
    let r = browser.login("/tramites", RUN, PASSWORD);
    assert_eq!(r.status, 302, "{r:?}");
    assert_identified(&browser.get("/tramites?format=json"));
    assert_anonymous(&browser.get("/static/x?format=json"));
}

#[test]
fn the_jwks_is_fetched_once_for_all_workers() {
    let stack = Stack::builder().concurrency(4).start();
    // The gate fetches the keys in the background as it starts, once for all four workers.
    assert!(
        wait_until(Duration::from_secs(5), || stack.emulator_stats().jwks >= 1),
        "no background JWKS fetch within 5 s of start: {:?}",
        stack.emulator_stats()
    );
    thread::sleep(Duration::from_secs(2));
    let stats = stack.emulator_stats();
    assert_eq!(stats.jwks, 1, "JWKS fetches before any login: {stats:?}");
    assert_eq!((stats.token, stats.userinfo), (0, 0), "{stats:?}");

    // A dozen logins on fresh connections, over the four workers.
    for i in 0..12 {
        let mut browser = stack.browser();
        let wanted = format!("/tramites/{i}?format=json");
        let r = browser.login(&wanted, RUN, PASSWORD);
        assert_eq!(r.status, 302, "login {i}: {r:?}");
        assert_eq!(r.location(), wanted);
        assert_identified(&browser.get(&wanted));
    }
    let stats = stack.emulator_stats();
    assert_eq!((stats.token, stats.userinfo), (12, 12), "{stats:?}");
    assert!(stats.jwks <= 2, "{} JWKS fetches for 12 logins over 4 workers", stats.jwks);
    assert_eq!(stack.gate_counter("claveunica_gate.logins_completed"), 12);
}
