//! A login attempt in flight: `state`, nonce and the URL to return to, bound to one browser
//! by a short-lived sealed flow cookie.
//!
//! Each attempt has its own cookie, named with a piece of its state, so several tabs can log
//! in at the same time and each lands on its own page (oauth2-proxy's per-login suffix).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::primitives::seal::{KeyRing, Purpose, NONCE_LEN};
use crate::primitives::secret::ct_eq;

/// Random bytes in a state: 256 bits, 43 characters once encoded (ClaveÚnica asks for 30).
pub const STATE_BYTES: usize = 32;
/// Random bytes in a nonce.
pub const NONCE_BYTES: usize = 24;
/// How many characters of the state name the flow cookie.
const SUFFIX_LEN: usize = 12;

/// A login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    state: String,
    nonce: String,
    return_to: String,
    created_at: u64,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    s: String,
    n: String,
    r: String,
    t: u64,
}

/// Why a callback's state does not match a login attempt of this browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowError {
    /// The callback carries no state, or one this gate never makes.
    BadState,
    /// This browser has no flow cookie for that state (another browser's, or already used).
    NoFlow,
    /// The flow cookie does not open, or names another state.
    Tampered,
    /// The attempt is older than the flow lifetime.
    Expired,
}

impl Flow {
    /// A new attempt from fresh random bytes.
    #[must_use]
    pub fn new(state_bytes: [u8; STATE_BYTES], nonce_bytes: [u8; NONCE_BYTES], return_to: String, now: u64) -> Self {
        Self {
            state: URL_SAFE_NO_PAD.encode(state_bytes),
            nonce: URL_SAFE_NO_PAD.encode(nonce_bytes),
            return_to,
            created_at: now,
        }
    }

    /// The `state` sent to the provider.
    #[must_use]
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The nonce sent to the provider and expected back in the ID token.
    #[must_use]
    pub fn nonce(&self) -> &str {
        &self.nonce
    }

    /// The same-origin path to land on after login.
    #[must_use]
    pub fn return_to(&self) -> &str {
        &self.return_to
    }

    /// When the attempt started, by the host's clock (seconds).
    #[must_use]
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    /// The name of this attempt's cookie.
    #[must_use]
    pub fn cookie_name(&self, prefix: &str) -> String {
        cookie_name_for(prefix, &self.state).unwrap_or_default()
    }

    /// Seals the attempt into a flow cookie value.
    #[must_use]
    pub fn seal(&self, ring: &KeyRing, nonce: [u8; NONCE_LEN]) -> Option<String> {
        let wire = Wire { s: self.state.clone(), n: self.nonce.clone(), r: self.return_to.clone(), t: self.created_at };
        ring.seal(Purpose::Flow, &postcard::to_allocvec(&wire).ok()?, nonce)
    }

    /// Finds and checks the attempt a callback's `state` belongs to, among this browser's
    /// cookies (`lookup` returns a cookie's value by name).
    pub fn resume<'a>(
        ring: &KeyRing,
        prefix: &str,
        state: &str,
        lookup: impl Fn(&str) -> Option<&'a str>,
        now: u64,
        max_age_s: u64,
    ) -> Result<Self, FlowError> {
        let name = cookie_name_for(prefix, state).ok_or(FlowError::BadState)?;
        let value = lookup(&name).ok_or(FlowError::NoFlow)?;
        let opened = ring.open(Purpose::Flow, value).ok_or(FlowError::Tampered)?;
        let wire = match postcard::take_from_bytes::<Wire>(&opened.plaintext) {
            Ok((wire, [])) => wire,
            _ => return Err(FlowError::Tampered),
        };
        if !ct_eq(wire.s.as_bytes(), state.as_bytes()) {
            return Err(FlowError::Tampered);
        }
        if now < wire.t || now - wire.t > max_age_s {
            return Err(FlowError::Expired);
        }
        Ok(Self { state: wire.s, nonce: wire.n, return_to: wire.r, created_at: wire.t })
    }
}

/// When the attempt sealed in a flow cookie value started, if it opens under `ring`: for
/// dropping a browser's oldest attempts first.
#[must_use]
pub fn started_at(ring: &KeyRing, value: &str) -> Option<u64> {
    let opened = ring.open(Purpose::Flow, value)?;
    match postcard::take_from_bytes::<Wire>(&opened.plaintext) {
        Ok((wire, [])) => Some(wire.t),
        _ => None,
    }
}

/// The flow cookie name for a state, or `None` for a state this gate would never make.
#[must_use]
pub fn cookie_name_for(prefix: &str, state: &str) -> Option<String> {
    let plausible =
        (30..=128).contains(&state.len()) && state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plausible.then(|| format!("{prefix}{}", state.get(..SUFFIX_LEN).unwrap_or(state)))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::primitives::seal::SessionKey;

    const P: &str = "claveunica_flow_";

    fn ring(seed: u8) -> KeyRing {
        KeyRing::new(&[SessionKey([seed; 32])])
    }

    fn flow(seed: u8) -> Flow {
        Flow::new([seed; STATE_BYTES], [seed.wrapping_add(1); NONCE_BYTES], "/tramites?id=7".into(), 1_000)
    }

    #[test]
    fn state_is_long_and_names_its_cookie() {
        let f = flow(1);
        assert!(f.state().len() >= 30, "{}", f.state());
        assert!(f.cookie_name(P).starts_with(P));
        assert_ne!(flow(1).cookie_name(P), flow(2).cookie_name(P));
    }

    #[test]
    fn resume_finds_the_right_attempt_among_several() {
        let r = ring(9);
        let (a, b) = (flow(1), flow(2));
        let jar = [
            (a.cookie_name(P), a.seal(&r, [0; NONCE_LEN]).unwrap()),
            (b.cookie_name(P), b.seal(&r, [1; NONCE_LEN]).unwrap()),
        ];
        let lookup = |n: &str| jar.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(Flow::resume(&r, P, b.state(), lookup, 1_100, 600), Ok(b.clone()));
        assert_eq!(Flow::resume(&r, P, a.state(), lookup, 1_100, 600), Ok(a.clone()));
    }

    #[test]
    fn refusals() {
        let r = ring(9);
        let a = flow(1);
        let sealed = a.seal(&r, [0; NONCE_LEN]).unwrap();
        let jar = [(a.cookie_name(P), sealed.clone())];
        let lookup = |n: &str| jar.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(Flow::resume(&r, P, "short", lookup, 1_100, 600), Err(FlowError::BadState));
        assert_eq!(Flow::resume(&r, P, &"x".repeat(43), lookup, 1_100, 600), Err(FlowError::NoFlow));
        // Same cookie name (first characters) but a different state: a forged state.
        let forged = format!("{}{}", &a.state()[..12], "y".repeat(31));
        assert_eq!(Flow::resume(&r, P, &forged, lookup, 1_100, 600), Err(FlowError::Tampered));
        assert_eq!(Flow::resume(&ring(8), P, a.state(), lookup, 1_100, 600), Err(FlowError::Tampered));
        assert_eq!(Flow::resume(&r, P, a.state(), lookup, 1_601, 600), Err(FlowError::Expired));
        assert_eq!(Flow::resume(&r, P, a.state(), lookup, 999, 600), Err(FlowError::Expired));
        assert_eq!(started_at(&r, &jar[0].1), Some(1_000));
        assert_eq!(started_at(&ring(8), &jar[0].1), None);
        assert_eq!(started_at(&r, "garbage"), None);
        assert_eq!(Flow::resume(&r, P, &format!("{}\r\n", a.state()), lookup, 1_100, 600), Err(FlowError::BadState));
    }

    /// A flow cookie sealed by this version of the gate, with a fixed key and nonce: the wire
    /// format, checked in. If this test fails, the format changed, and every login in flight
    /// when a new version rolls out fails with a 400. Either keep this vector opening, or bump
    /// the envelope version, say so in the release notes, and replace the vector.
    const FLOW_VECTOR: &str = "Ad793PgJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk81Prl45JRbVYvtp4_Yex2A4XpV2D7CB6dMcFhkTs-wjcNkitlus9eaMXD7epupXt1IXsYjTxp93LCwA9AlW63gK7-DocYG29brz5re_vte1oiZ23URK98BW-ElyJD_DqUBlszgUtCqqBlx8YSfQ";

    #[test]
    fn the_flow_cookie_wire_format_is_pinned() {
        let r = ring(0x5a);
        let f = flow(3);
        assert_eq!(f.seal(&r, [9; NONCE_LEN]).unwrap(), FLOW_VECTOR, "the flow cookie's wire format changed");
        let name = f.cookie_name(P);
        let lookup = |n: &str| (n == name).then_some(FLOW_VECTOR);
        assert_eq!(Flow::resume(&r, P, f.state(), lookup, 1_100, 600), Ok(f));
    }
}
