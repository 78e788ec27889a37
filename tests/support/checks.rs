//! What the test files share beyond the stacks themselves, for either stack (Envoy's or the
//! Unit component's): waiting for the gate's log, a browser that has logged in, the check
//! that an answer sends the browser to ClaveÚnica, and sealing a session as the gate would.

use std::time::Duration;

use claveunica_core::primitives::seal::{KeyRing, NONCE_LEN};
use claveunica_core::protocol::session::{Identity, Session};

use super::client::Browser;
use super::parse::Response;
use super::process::{random_bytes, wait_until};
use super::stack::Stack;
use super::unit::UnitStack;
use super::{PASSWORD, RUN, SESSION_COOKIE};

/// How long a log line may trail the answer it belongs to.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// A running gate, whichever host runs it.
pub trait GateUnderTest {
    /// A browser with an empty cookie jar.
    fn browser(&self) -> Browser;
    /// The emulator's authorize endpoint, as the gate derives it from `issuer`.
    fn authorize_endpoint(&self) -> String;
    /// Everything the gate's host has logged so far.
    fn log(&self) -> String;
}

impl GateUnderTest for Stack {
    fn browser(&self) -> Browser {
        Stack::browser(self)
    }

    fn authorize_endpoint(&self) -> String {
        Stack::authorize_endpoint(self)
    }

    fn log(&self) -> String {
        self.envoy_log()
    }
}

impl GateUnderTest for UnitStack {
    fn browser(&self) -> Browser {
        UnitStack::browser(self)
    }

    fn authorize_endpoint(&self) -> String {
        UnitStack::authorize_endpoint(self)
    }

    fn log(&self) -> String {
        UnitStack::log(self)
    }
}

/// Waits (briefly) for the gate to log `needle`: log lines may trail the answer.
pub fn wait_for_log(gate: &impl GateUnderTest, needle: &str) -> bool {
    wait_until(LOG_WAIT, || gate.log().contains(needle))
}

/// The log line holding `needle`, waiting briefly; empty when there is none.
pub fn log_line_with(gate: &impl GateUnderTest, needle: &str) -> String {
    let mut found = String::new();
    wait_until(LOG_WAIT, || {
        found = gate.log().lines().find(|l| l.contains(needle)).unwrap_or_default().to_string();
        !found.is_empty()
    });
    found
}

/// A browser that went through a whole login, asking for `path` first, and holds a session.
pub fn logged_in(gate: &impl GateUnderTest, path: &str) -> Browser {
    let mut browser = gate.browser();
    let r = browser.login(path, RUN, PASSWORD);
    assert_eq!(r.status, 302, "the login for {path} failed: {r:?}\n{}", gate.log());
    assert!(browser.jar.contains_key(SESSION_COOKIE), "no session after login: {r:?}");
    browser
}

/// `r` is the gate's redirect to the provider's authorize endpoint.
pub fn assert_sent_to_login(gate: &impl GateUnderTest, r: &Response) {
    assert_eq!(r.status, 302, "expected a redirect to login for {}, got {r:?}", r.url);
    let authorize = format!("{}?", gate.authorize_endpoint());
    assert!(r.location().starts_with(&authorize), "{} redirected to {}, not to {authorize}", r.url, r.location());
}

/// A session cookie value for `identity`, sealed with `ring` under a fresh nonce as the gate
/// seals one: sessions the gate never issued (expired, idle, under another key, another
/// person).
pub fn seal_session(ring: &KeyRing, identity: Identity, issued_at: u64, expires_at: u64, last_seen: u64) -> String {
    Session::insecure_from_parts(identity, issued_at, expires_at, last_seen)
        .seal(ring, random_bytes::<NONCE_LEN>())
        .expect("sealing a session")
}
