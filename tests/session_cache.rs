#![cfg(not(target_arch = "wasm32"))]
//! The cache of opened session cookies (`src/gate/known.rs`) under far more sessions than it
//! holds, on both hosts. Each gate keeps what it opened, keyed by the whole cookie value, in
//! two generations of at most `GENERATION` (256) entries, so at most 512; when the current
//! generation fills it replaces the previous one. Here 1,200 people, each with a session of
//! their own, go through the gate twice (all of them, then all of them again in the reverse
//! order, so the second pass both finds entries and has to open evicted ones again), with an
//! expired session and a tampered copy of a just-cached one among them: every answer must
//! reach the app as exactly the person sealed in that cookie, and the other two must be
//! refused. Envoy runs one worker, so one VM's cache sees every session; the Unit component
//! (a fresh instance per request under `wasmtime serve`) keeps no cache, and the test holds
//! there too.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test session_cache
//! ```

#[macro_use]
mod support;

use claveunica_core::gate::GENERATION;
use claveunica_core::primitives::run::{check_digit, Run};
use claveunica_core::protocol::session::Identity;
use support::checks::{assert_sent_to_login, start_gate, GateUnderTest, Host};
use support::{now, seal_session, Browser, Stack, SESSION_COOKIE};

on_both_hosts! {
    many_more_sessions_than_the_cache_holds_each_reach_the_app_as_their_own_person,
}

/// People, well over the cache's two generations.
const PEOPLE: u32 = 1_200;

/// Person `i`: a RUN, names and surnames of their own, as the default headers carry them.
struct Person {
    run: String,
    nombres: String,
    apellidos: String,
}

fn person(i: u32) -> (Identity, Person) {
    let numero = 10_000_000 + i * 7_919;
    let run = Run::new(numero, check_digit(numero)).expect("a RUN with its check digit");
    let (nombre, apellido) = (format!("Persona {i}"), format!("Prueba {i}"));
    let expected = Person {
        run: run.plain(),
        nombres: nombre.replace(' ', "%20"),
        apellidos: format!("{}%20N%C3%BA%C3%B1ez", apellido.replace(' ', "%20")),
    };
    let identity =
        Identity::new(run, vec![nombre], vec![apellido, "Núñez".into()], format!("sub-{i}")).expect("a test identity");
    (identity, expected)
}

fn start(host: Host) -> Box<dyn GateUnderTest> {
    match host {
        Host::Envoy => Box::new(Stack::builder().concurrency(1).start()),
        Host::Unit => start_gate(host, &[]),
    }
}

/// `browser` (one connection, reused) sends `cookie` as the session and reaches the app as
/// `who`.
fn assert_reaches_app_as(browser: &mut Browser, cookie: &str, who: &Person, pass: &str) {
    browser.jar.insert(SESSION_COOKIE.into(), cookie.to_string());
    let r = browser.get(&format!("/quien?format=json&pass={pass}"));
    assert_eq!(r.status, 200, "{pass} pass, {}: {r:?}", who.run);
    let echo = r.echo();
    let got = (echo.one("x-claveunica-run"), echo.one("x-claveunica-nombres"), echo.one("x-claveunica-apellidos"));
    let wanted = (Some(who.run.as_str()), Some(who.nombres.as_str()), Some(who.apellidos.as_str()));
    assert_eq!(got, wanted, "{pass} pass: the app got someone else for {}", who.run);
}

fn many_more_sessions_than_the_cache_holds_each_reach_the_app_as_their_own_person(host: Host) {
    assert!(PEOPLE as usize > 2 * GENERATION * 2, "the test must overflow the cache twice over");
    let gate = start(host);
    let ring = gate.ring();
    let t = now();
    let people: Vec<(String, Person)> = (0..PEOPLE)
        .map(|i| {
            let (identity, expected) = person(i);
            (seal_session(&ring, identity, t, t + 3_600, t), expected)
        })
        .collect();
    let (expired_identity, _) = person(PEOPLE);
    let expired = seal_session(&ring, expired_identity, t - 7_200, t - 3_600, t - 3_600);

    let mut browser = gate.browser();
    let refused = |browser: &mut Browser, cookie: &str, what: &str| {
        browser.jar.insert(SESSION_COOKIE.into(), cookie.to_string());
        let r = browser.get("/quien?format=json");
        assert_sent_to_login(gate.as_ref(), &r);
        assert!(!browser.jar.contains_key(SESSION_COOKIE), "the {what} session was not cleared: {r:?}");
    };
    let before = gate.app_requests();
    let started = std::time::Instant::now();
    let middle = people.len() / 2;
    for (i, (cookie, who)) in people.iter().enumerate() {
        assert_reaches_app_as(&mut browser, cookie, who, "first");
        if i == middle {
            refused(&mut browser, &expired, "expired");
            // A copy of the cookie just opened and cached, one character changed: the cache is
            // keyed by the whole value, so this is opened afresh and fails.
            refused(&mut browser, &tampered(cookie), "tampered");
        }
    }
    for (cookie, who) in people.iter().rev() {
        assert_reaches_app_as(&mut browser, cookie, who, "second");
    }
    refused(&mut browser, &expired, "expired");
    refused(&mut browser, &tampered(&people[0].0), "tampered");
    eprintln!("{host:?}: {} requests in {:?}", 2 * PEOPLE, started.elapsed());
    assert_eq!(gate.app_requests(), before + 2 * u64::from(PEOPLE), "every identified request reached the app once");
}

/// `value` with one character in its middle changed (still base64url).
fn tampered(value: &str) -> String {
    let mut bytes = value.as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII stays UTF-8")
}
