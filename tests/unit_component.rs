#![cfg(not(target_arch = "wasm32"))]
//! End to end for the NGINX Unit flavour: the component under `wasmtime serve` (the reference
//! host of the `wasi:http/proxy` world Unit runs), in front of the legacy echo app, logging in
//! at the ClaveÚnica emulator. What both hosts do alike is in `tests/scenarios.rs`, run on both;
//! these check what only the Unit component has: its configuration file (a broken one closes
//! the door), Unit's own `config.json`, and bodies streamed both ways.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test unit_component
//! ```

mod support;

use std::time::{Duration, Instant};

use support::unit::{fnv1a, Pattern, UnitStack};
use support::{logged_in, wait_for_log};

/// 50 MB: an upload or download that must pass without being held whole.
const LARGE: u64 = 50 * 1024 * 1024;

#[test]
fn a_configuration_that_does_not_load_closes_the_door() {
    let stack = UnitStack::start();
    let before = stack.app_requests();
    let mut broken = stack.config().clone();
    broken["session_keys"] = serde_json::json!(["c2hvcnQ="]);
    stack.write_config(&broken.to_string());
    let mut browser = stack.browser();
    for path in ["/public/x?format=json", "/private"] {
        let r = browser.get(path);
        assert_eq!(r.status, 503, "{path}: {r:?}");
        // The core's page for a host without configuration, its reference in the log.
        assert!(r.body.contains("Servicio no disponible"), "{path}: {}", r.body);
        let reference = r.reference();
        assert!(wait_for_log(&stack, &format!("ref={reference}")), "{reference} not logged:\n{}", stack.log());
    }
    assert!(wait_for_log(&stack, "session_keys[0]"), "{}", stack.log());
    let mut no_upstream = stack.config().clone();
    no_upstream.as_object_mut().map(|o| o.remove("upstream"));
    stack.write_config(&no_upstream.to_string());
    assert_eq!(browser.get("/public/x?format=json").status, 503);
    assert!(wait_for_log(&stack, "upstream: is required"), "{}", stack.log());
    // What nginx-unit/README.md says a Unit that hides the environment from components gets.
    let mut no_secret = stack.config().clone();
    no_secret["client_secret_env"] = serde_json::json!("NOT_SET_ANYWHERE");
    stack.write_config(&no_secret.to_string());
    let r = browser.get("/private");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("Servicio no disponible"), "{}", r.body);
    assert!(
        wait_for_log(&stack, "client_secret_env: environment variable NOT_SET_ANYWHERE is not set"),
        "{}",
        stack.log()
    );
    assert_eq!(stack.app_requests(), before, "a request reached the app without a gate");
}

#[test]
fn an_unreachable_application_gets_the_502_page_and_the_gate_keeps_serving() {
    let mut stack = UnitStack::start();
    let mut browser = logged_in(&stack, "/");
    stack.stop_app();
    let r = browser.get("/tramites?format=json");
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{r:?}");
    assert!(r.body.contains("La aplicación no está disponible"), "{}", r.body);
    let reference = r.reference();
    assert!(wait_for_log(&stack, &format!("ref={reference}")), "{reference} not logged:\n{}", stack.log());
    assert!(stack.log().contains("reason=app_unreachable"), "{}", stack.log());
    // The gate itself still answers: its own paths work without the application.
    assert_eq!(browser.get("/claveunica/logout").status, 200);
}

/// `X-Forwarded-*` say only what the component knows (the public origin of `redirect_uri`); a
/// client's forwarding headers never reach the application. wasi:http gives no peer address to
/// append, so `X-Forwarded-For` is not passed on at all rather than passed on unmarked. Envoy's
/// equivalent is its own machinery (`use_remote_address` in `envoy/production.yaml`).
#[test]
fn forwarding_headers_are_the_components_never_the_clients() {
    let stack = UnitStack::start();
    let mut browser = logged_in(&stack, "/");
    let forged = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("Forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
    ];
    let echo = browser.get_with_headers("/tramites?format=json", &forged).echo();
    let public = stack.base().trim_start_matches("http://");
    assert!(echo.all("x-forwarded-for").is_empty() && echo.all("forwarded").is_empty(), "{echo:?}");
    assert_eq!(echo.all("x-forwarded-host"), [public], "{echo:?}");
    assert_eq!(echo.all("x-forwarded-proto"), ["http"], "{echo:?}");
    assert_eq!(echo.one("x-claveunica-run"), Some(support::RUN), "{echo:?}");
}

fn json(r: ureq::Response) -> serde_json::Value {
    let text = r.into_string().unwrap_or_else(|e| panic!("reading an answer: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn big_agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(180)).build()
}

#[test]
fn large_bodies_stream_both_ways() {
    let mut stack = UnitStack::start();
    let browser = logged_in(&stack, "/");
    let cookie = browser.cookie_header().unwrap_or_default();
    let agent = big_agent();
    let url = format!("{}/__bulk", stack.base());
    // Warm up (one small transfer each way), so the baseline has the host's buffers in it.
    let small = 64 * 1024;
    let r = agent.post(&url).set("Cookie", &cookie).set("Content-Length", &small.to_string()).send(Pattern::new(small));
    assert!(r.is_ok(), "small upload failed: {r:?}\n{}", stack.log());
    let before_kib = stack.wasmtime_peak_rss_kib();
    let started = Instant::now();

    let (_, expected) = fnv1a(&mut Pattern::new(LARGE));
    let answer = agent
        .post(&url)
        .set("Cookie", &cookie)
        .set("Content-Length", &LARGE.to_string())
        .send(Pattern::new(LARGE))
        .unwrap_or_else(|e| panic!("50 MB upload failed: {e}\n{}", stack.log()));
    let v = json(answer);
    assert_eq!(v["body_len"], LARGE, "{v}");
    assert_eq!(v["fnv1a"], expected.as_str(), "the upload arrived changed: {v}");

    // Chunked (no Content-Length) arrives whole too.
    let chunked = 3 * 1024 * 1024 + 17;
    let (_, expected_chunked) = fnv1a(&mut Pattern::new(chunked));
    let v = json(
        agent.post(&url).set("Cookie", &cookie).send(Pattern::new(chunked)).unwrap_or_else(|e| panic!("chunked: {e}")),
    );
    assert_eq!((v["body_len"].as_u64(), v["fnv1a"].as_str()), (Some(chunked), Some(expected_chunked.as_str())));

    let download = agent
        .get(&format!("{url}?bytes={LARGE}"))
        .set("Cookie", &cookie)
        .call()
        .unwrap_or_else(|e| panic!("50 MB download failed: {e}\n{}", stack.log()));
    assert_eq!(download.header("content-length"), Some(LARGE.to_string().as_str()));
    let (len, hash) = fnv1a(&mut download.into_reader());
    assert_eq!(len, LARGE, "the download was cut short");
    assert_eq!(hash, expected, "the download arrived changed");
    let elapsed = started.elapsed();

    // Neither body was held whole: the host's peak memory grew by far less than 50 MB.
    let after_kib = stack.wasmtime_peak_rss_kib();
    let grown_mib = after_kib.saturating_sub(before_kib) / 1024;
    eprintln!("wasmtime peak RSS {before_kib} KiB -> {after_kib} KiB (+{grown_mib} MiB); 2 x 50 MB in {elapsed:?}");
    assert!(grown_mib < 20, "wasmtime's peak memory grew by {grown_mib} MiB moving 50 MB bodies");

    // Without a session, a large upload is not forwarded at all.
    let before = stack.app_requests();
    let r = agent.post(&url).set("Content-Length", &small.to_string()).send(Pattern::new(small));
    match r {
        Ok(r) => assert_eq!(r.status(), 302, "an anonymous upload was not sent to login"),
        // The gate answers without reading the body; the host may then close the connection
        // while the client is still sending.
        Err(ureq::Error::Transport(_)) => {}
        Err(e) => panic!("anonymous upload: {e}"),
    }
    assert_eq!(stack.app_requests(), before, "an anonymous upload reached the app");
}

/// `nginx-unit/config.json`, the Unit configuration we ship, says what its README says.
#[test]
fn the_unit_configuration_passes_everything_to_the_component() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx-unit/config.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let gate = &v["applications"]["claveunica-gate"];
    assert_eq!(gate["type"], "wasm-wasi-component");
    assert!(gate["component"].as_str().is_some_and(|c| c.ends_with("/claveunica_gate_unit.wasm")), "{gate}");
    let config_file = gate["environment"]["CLAVEUNICA_GATE_CONFIG"].as_str().unwrap_or_default();
    let dirs = gate["access"]["filesystem"].as_array().cloned().unwrap_or_default();
    assert!(
        dirs.iter()
            .filter_map(|d| d.as_str())
            .any(|d| config_file.starts_with(&format!("{}/", d.trim_end_matches('/')))),
        "access.filesystem {dirs:?} does not cover {config_file:?}"
    );
    let listeners = v["listeners"].as_object().unwrap_or_else(|| panic!("no listeners"));
    for (addr, listener) in listeners {
        let pass = listener["pass"].as_str().unwrap_or_default();
        if pass != "applications/claveunica-gate" {
            // Anything else (the legacy app) is bound to loopback, reachable only by the gate.
            assert!(addr.starts_with("127.0.0.1:"), "listener {addr} passes to {pass} on a public address");
        }
    }
    assert!(listeners.values().any(|l| l["pass"] == "applications/claveunica-gate"));
}

/// The access register on Unit, which has no access log that could carry the person: one JSON
/// line per authenticated access, with the masked RUN, the UTC time and the request id the
/// application also received (the component gives one to a request without it, as Envoy does);
/// an anonymous request writes none, and no line holds the full RUN.
#[test]
fn each_authenticated_access_is_one_register_line() {
    let stack = UnitStack::start();
    let mut browser = logged_in(&stack, "/");
    let before = claveunica_core::gate::utc(support::now());
    let mut app_ids = Vec::new();
    for path in ["/tramites?format=json", "/perfil?format=json"] {
        let r = browser.get(path);
        assert_eq!(r.status, 200, "{path}");
        app_ids.push(r.echo().one("x-request-id").map(str::to_string).unwrap_or_default());
    }
    assert_eq!(stack.browser().get("/public/x?format=json").status, 200);
    support::checks::log_caught_up(&stack);
    let log = stack.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| l.split_once("claveunica-gate info: ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .filter(|v| v["register"] == "access")
        .collect();
    assert_eq!(lines.len(), 2, "one line per authenticated access:\n{log}");
    let logged_ids: Vec<&str> = lines.iter().map(|l| l["request_id"].as_str().unwrap_or_default()).collect();
    assert_eq!(logged_ids, app_ids, "the register names the requests the application saw");
    assert!(app_ids.iter().all(|id| id.len() == 36) && app_ids.first() != app_ids.get(1), "{app_ids:?}");
    for line in &lines {
        assert_eq!(line["subject"], "*****444-4", "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        let time = line["time"].as_str().unwrap_or_default();
        assert!(time.ends_with('Z') && time.get(..16) >= before.get(..16), "time {time:?}, sent at {before}");
    }
    assert!(!log.contains("44444444"), "a full RUN in the log:\n{log}");
}
