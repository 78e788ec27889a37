#![cfg(not(target_arch = "wasm32"))]
//! No log line ever holds an authorization code, an access token, an ID token or the client
//! secret, on both hosts, with the gate logging all it can: Envoy's `wasm` component at
//! `trace` (every level the VM may log at; the gate has no level of its own), and the Unit
//! component, which writes every line it logs to `wasmtime serve`'s stderr. Whole logins, logins
//! that fail after the token exchange (a broken ID token, a bad userinfo answer), a logout,
//! and a login whose token exchange is refused for a wrong client secret; then every code,
//! access token and ID token the emulator issued (`GET /__emulator/issued`) is looked for in
//! the host's log, once the log has its last line.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test log_secrets
//! ```

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::checks::{assert_identified, start_gate, wait_for_log, GateUnderTest, Host};
use support::stack::emulator_issued;
use support::{param, Response, Stack, CLIENT_SECRET, LOGOUT_PATH, PASSWORD, RUN, SESSION_COOKIE};

on_both_hosts! {
    logins_failures_and_logout_log_no_code_token_or_secret,
    a_refused_token_exchange_logs_neither_the_code_nor_the_secret,
}

/// A client secret the emulator does not expect.
const WRONG_SECRET: &str = "wrong-secret-3f9c2a71d4";

/// The gate with the stacks' defaults changed by `edits`; on Envoy with its `wasm` component
/// logging at `trace`.
fn start(host: Host, edits: &[fn(&mut Value)]) -> Box<dyn GateUnderTest> {
    match host {
        Host::Envoy => {
            let builder = edits.iter().fold(Stack::builder().wasm_log_level("trace"), |b, e| b.edit_config(*e));
            Box::new(builder.start())
        }
        Host::Unit => start_gate(host, edits),
    }
}

/// A failure page's reference, once the gate has logged it.
fn logged_reference(gate: &dyn GateUnderTest, r: &Response, status: u16) -> String {
    assert_eq!(r.status, status, "{r:?}\n{}", gate.log());
    let reference = r.reference();
    assert!(wait_for_log(gate, &format!("ref={reference}")), "{reference} not logged:\n{}", gate.log());
    reference
}

/// Every secret string is absent from the gate's log; `what` names each for the message.
fn assert_not_logged(gate: &dyn GateUnderTest, secrets: &[(String, String)]) {
    let log = gate.log();
    let found: Vec<&str> =
        secrets.iter().filter(|(_, secret)| log.contains(secret.as_str())).map(|(what, _)| what.as_str()).collect();
    assert!(found.is_empty(), "the log holds {found:?}:\n{log}");
}

/// What must never be logged: each code, access token and ID token issued (an ID token also
/// by its claims and its signature on their own), and the client secrets.
fn secrets_issued(gate: &dyn GateUnderTest, client_secrets: &[&str]) -> Vec<(String, String)> {
    let issued = emulator_issued(&gate.provider());
    let mut secrets: Vec<(String, String)> =
        client_secrets.iter().map(|s| (format!("the client secret {s}"), (*s).to_string())).collect();
    secrets.extend(issued.codes.iter().map(|c| (format!("the code {c}"), c.clone())));
    secrets.extend(issued.access_tokens.iter().map(|t| (format!("the access token {t}"), t.clone())));
    for token in &issued.id_tokens {
        secrets.push((format!("the ID token {token}"), token.clone()));
        for part in token.split('.').skip(1).filter(|p| p.len() >= 16) {
            secrets.push((format!("a part of the ID token {token}"), part.to_string()));
        }
    }
    secrets
}

fn logins_failures_and_logout_log_no_code_token_or_secret(host: Host) {
    let gate = start(host, &[]);
    let mut codes = Vec::new();

    // A whole login, and the app gets the person.
    let mut browser = gate.browser();
    let authorize = browser.start_login("/tramites?format=json");
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    codes.push(param(&callback, "code").expect("a code in the callback"));
    let r = browser.callback(&callback);
    assert_eq!(r.status, 302, "{r:?}\n{}", gate.log());
    assert_identified(&browser.get("/tramites?format=json"));

    // Logins that fail after the code was exchanged: the gate held an access token and an ID
    // token, and logs why it refused them.
    for (mode, status) in [
        (json!({"id_token": "wrong_nonce"}), 502),
        (json!({"id_token": "hs256_confusion"}), 502),
        (json!({"id_token": "normal", "userinfo": "wrong_dv"}), 502),
    ] {
        gate.set_emulator_mode(&mode);
        let mut other = gate.browser();
        let authorize = other.start_login("/otra");
        let callback = other.provider_login(&authorize, RUN, PASSWORD);
        codes.push(param(&callback, "code").expect("a code in the callback"));
        let r = other.callback(&callback);
        logged_reference(gate.as_ref(), &r, status);
        assert!(!other.jar.contains_key(SESSION_COOKIE), "{mode}: a session after a failed login");
    }
    gate.set_emulator_mode(&json!({"userinfo": "normal"}));

    // The logout is the last thing logged.
    assert_eq!(browser.get(LOGOUT_PATH).status, 200);
    assert!(wait_for_log(gate.as_ref(), "logout run=*****444-4"), "{}", gate.log());

    let secrets = secrets_issued(gate.as_ref(), &[CLIENT_SECRET]);
    let issued = emulator_issued(&gate.provider());
    for code in &codes {
        assert!(issued.codes.contains(code), "the emulator does not list the code {code} it issued: {issued:?}");
    }
    assert_eq!(issued.access_tokens.len(), 4, "{issued:?}");
    assert_eq!(issued.id_tokens.len(), 4, "{issued:?}");
    // The log read is the gate's: its lines about these logins are there.
    assert!(gate.log().contains("login completed: run=*****444-4"), "{}", gate.log());
    assert_not_logged(gate.as_ref(), &secrets);
}

fn a_refused_token_exchange_logs_neither_the_code_nor_the_secret(host: Host) {
    let gate = start(
        host,
        &[|c| {
            c.as_object_mut().map(|o| o.remove("client_secret_env"));
            c["client_secret"] = json!(WRONG_SECRET);
        }],
    );
    let mut browser = gate.browser();
    let authorize = browser.start_login("/tramites");
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let code = param(&callback, "code").expect("a code in the callback");
    let r = browser.callback(&callback);
    logged_reference(gate.as_ref(), &r, 502);
    assert!(gate.log().contains("reason=token_rejected"), "{}", gate.log());

    let secrets = secrets_issued(gate.as_ref(), &[WRONG_SECRET, CLIENT_SECRET]);
    assert!(secrets.iter().any(|(_, s)| *s == code), "the emulator does not list the code {code}");
    assert_not_logged(gate.as_ref(), &secrets);
}
