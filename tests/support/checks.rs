//! What the test files share beyond the stacks themselves, for either stack (Envoy's or the
//! Unit component's): waiting for the gate's log, a browser that has logged in, the check
//! that an answer sends the browser to ClaveÚnica, and sealing a session as the gate would.

use std::time::Duration;

use claveunica_core::primitives::seal::{KeyRing, NONCE_LEN};
use claveunica_core::protocol::session::{Identity, Session};

use super::client::Browser;
use super::parse::{Echo, Response};
use super::process::{random_bytes, wait_until, App};
use super::stack::{emulator_stats, rotate_provider_key, SiteClient, Stack};
use super::unit::UnitStack;
use super::{APELLIDOS, CALLBACK_PATH, NOMBRES, PASSWORD, RUN, SESSION_COOKIE};

/// How long a log line may trail the answer it belongs to.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// The two hosts the gate runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The proxy-wasm filter in a real Envoy.
    Envoy,
    /// The `wasi:http` component under `wasmtime serve`, as NGINX Unit runs it.
    Unit,
}

/// A running gate, whichever host runs it.
pub trait GateUnderTest {
    /// Which host this is, for the few expectations that differ by host.
    fn host(&self) -> Host;
    /// A browser with an empty cookie jar.
    fn browser(&self) -> Browser;
    /// The emulator's authorize endpoint, as the gate derives it from `issuer`.
    fn authorize_endpoint(&self) -> String;
    /// Everything the gate's host has logged so far.
    fn log(&self) -> String;
    /// How many requests reached the legacy application so far (Envoy: its upstream counter;
    /// Unit: the application's own request log).
    fn app_requests(&self) -> u64;
    /// Switches the emulator's test modes.
    fn set_emulator_mode(&self, modes: &serde_json::Value) -> serde_json::Value;
    /// Kills the emulator: the provider becomes unreachable.
    fn stop_provider(&mut self);
    /// The gate's origin, `http://127.0.0.1:PORT`.
    fn base(&self) -> String;
    /// The gate's session keys, to seal sessions it never issued.
    fn ring(&self) -> KeyRing;
    /// The emulator's origin.
    fn provider(&self) -> String;
    /// The legacy application's origin, to reach it without the gate.
    fn app(&self) -> String;
    /// A counter of the gate's (`claveunica_gate.*`), where the host keeps counters: Envoy
    /// does, the Unit host does not (`None`).
    fn counter(&self, name: &str) -> Option<u64>;
    /// Makes the provider sign with a fresh key (the old one still published when
    /// `keep_old`); returns the new `kid`.
    fn rotate_provider_key(&self, keep_old: bool) -> String {
        rotate_provider_key(&self.provider(), keep_old)
    }
    /// How many back-channel calls (token, userinfo, JWKS) the provider has answered.
    fn provider_calls(&self) -> u64 {
        let stats = emulator_stats(&self.provider());
        stats.token + stats.userinfo + stats.jwks
    }
}

impl GateUnderTest for Stack {
    fn host(&self) -> Host {
        Host::Envoy
    }

    fn browser(&self) -> Browser {
        Stack::browser(self)
    }

    fn authorize_endpoint(&self) -> String {
        Stack::authorize_endpoint(self)
    }

    fn log(&self) -> String {
        self.envoy_log()
    }

    fn app_requests(&self) -> u64 {
        Stack::app_requests(self)
    }

    fn set_emulator_mode(&self, modes: &serde_json::Value) -> serde_json::Value {
        Stack::set_emulator_mode(self, modes)
    }

    fn stop_provider(&mut self) {
        Stack::stop_provider(self);
    }

    fn base(&self) -> String {
        Stack::base(self).to_string()
    }

    fn ring(&self) -> KeyRing {
        Stack::ring(self)
    }

    fn provider(&self) -> String {
        Stack::provider(self).to_string()
    }

    fn counter(&self, name: &str) -> Option<u64> {
        Some(self.gate_counter(name))
    }

    fn app(&self) -> String {
        Stack::app(self).to_string()
    }
}

impl GateUnderTest for UnitStack {
    fn host(&self) -> Host {
        Host::Unit
    }

    fn browser(&self) -> Browser {
        UnitStack::browser(self)
    }

    fn authorize_endpoint(&self) -> String {
        UnitStack::authorize_endpoint(self)
    }

    fn log(&self) -> String {
        UnitStack::log(self)
    }

    fn app_requests(&self) -> u64 {
        UnitStack::app_requests(self) as u64
    }

    fn set_emulator_mode(&self, modes: &serde_json::Value) -> serde_json::Value {
        UnitStack::set_emulator_mode(self, modes)
    }

    fn stop_provider(&mut self) {
        UnitStack::stop_provider(self);
    }

    fn base(&self) -> String {
        UnitStack::base(self).to_string()
    }

    fn ring(&self) -> KeyRing {
        let keys = self.config()["session_keys"].as_array().cloned().unwrap_or_default();
        let keys: Vec<&str> = keys.iter().filter_map(|k| k.as_str()).collect();
        claveunica_core::testkit::key_ring(&keys)
    }

    fn provider(&self) -> String {
        UnitStack::provider(self).to_string()
    }

    fn counter(&self, _name: &str) -> Option<u64> {
        None
    }

    fn app(&self) -> String {
        UnitStack::app(self).to_string()
    }
}

/// Starts the gate on `host` with the stacks' defaults changed by each of `edits`, in order.
pub fn start_gate(host: Host, edits: &[fn(&mut serde_json::Value)]) -> Box<dyn GateUnderTest> {
    start_gate_before(host, App::Portal, edits)
}

/// [`start_gate`] in front of this server of the legacy app.
pub fn start_gate_before(host: Host, app: App, edits: &[fn(&mut serde_json::Value)]) -> Box<dyn GateUnderTest> {
    start_gate_with_clients(host, app, &[], edits)
}

/// [`start_gate_before`] with further clients registered at the emulator, for the sites the
/// edits give the gate.
pub fn start_gate_with_clients(
    host: Host,
    app: App,
    site_clients: &[SiteClient],
    edits: &[fn(&mut serde_json::Value)],
) -> Box<dyn GateUnderTest> {
    match host {
        Host::Envoy => {
            let builder = site_clients.iter().fold(Stack::builder().app(app), |b, c| b.site_client(*c));
            let builder = edits.iter().fold(builder, |b, edit| b.edit_config(*edit));
            Box::new(builder.start())
        }
        Host::Unit => {
            // The Unit stack writes its file once, after all of them, from the same base as
            // Envoy's: no rules of its own (every path enforced).
            let stack = UnitStack::start_with_clients(app, site_clients);
            let mut config = stack.config().clone();
            config.as_object_mut().map(|o| o.remove("rules"));
            for edit in edits {
                edit(&mut config);
            }
            stack.write_config(&config.to_string());
            Box::new(stack)
        }
    }
}

/// Waits (briefly) for the gate to log `needle`: log lines may trail the answer.
pub fn wait_for_log(gate: &(impl GateUnderTest + ?Sized), needle: &str) -> bool {
    wait_until(LOG_WAIT, || gate.log().contains(needle))
}

/// Returns once the host's log has caught up with every request sent before: sends one last
/// request the gate always logs (a callback without its flow cookie, a 400 page with a
/// reference) and waits for that reference. A check that something is *not* in the log comes
/// after this, or it may pass only because the line has not been written yet. Counts one
/// `login_failures.no_flow_cookie`.
pub fn log_caught_up(gate: &(impl GateUnderTest + ?Sized)) {
    let r = gate.browser().get(&format!("{CALLBACK_PATH}?code=log-marker&state=log-marker"));
    assert_eq!(r.status, 400, "the log marker request: {r:?}");
    let reference = r.reference();
    assert!(wait_for_log(gate, &format!("ref={reference}")), "the log never showed ref={reference}:\n{}", gate.log());
}

/// The log line holding `needle`, waiting briefly; empty when there is none.
pub fn log_line_with(gate: &(impl GateUnderTest + ?Sized), needle: &str) -> String {
    let mut found = String::new();
    wait_until(LOG_WAIT, || {
        found = gate.log().lines().find(|l| l.contains(needle)).unwrap_or_default().to_string();
        !found.is_empty()
    });
    found
}

/// A browser that went through a whole login, asking for `path` first, and holds a session.
pub fn logged_in(gate: &(impl GateUnderTest + ?Sized), path: &str) -> Browser {
    let mut browser = gate.browser();
    let r = browser.login(path, RUN, PASSWORD);
    assert_eq!(r.status, 302, "the login for {path} failed: {r:?}\n{}", gate.log());
    assert!(browser.jar.contains_key(SESSION_COOKIE), "no session after login: {r:?}");
    browser
}

/// `r` is the gate's redirect to the provider's authorize endpoint.
pub fn assert_sent_to_login(gate: &(impl GateUnderTest + ?Sized), r: &Response) {
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

/// The app's echo carries no identity header of any kind (`x-rut` is the templates' name).
pub fn assert_anonymous(r: &Response) -> Echo {
    let echo = r.echo();
    let identity: Vec<_> = echo.headers.iter().filter(|(n, _)| n.starts_with("x-claveunica") || n == "x-rut").collect();
    assert!(identity.is_empty(), "{} reached the app with identity headers: {identity:?}", r.url);
    echo
}

/// The app's echo carries María's identity, as the gate verified it.
pub fn assert_identified(r: &Response) -> Echo {
    let echo = r.echo();
    assert_eq!(echo.one("x-claveunica-run"), Some(RUN), "{echo:?}");
    assert_eq!(echo.one("x-claveunica-nombres"), Some(NOMBRES), "{echo:?}");
    assert_eq!(echo.one("x-claveunica-apellidos"), Some(APELLIDOS), "{echo:?}");
    echo
}
