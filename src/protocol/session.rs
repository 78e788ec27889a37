//! The session: a verified identity with its lifetime, sealed into the session cookie.
//!
//! An [`Identity`] is made from a userinfo answer that passed validation, after an ID token
//! that passed verification, or from a session cookie that this gate sealed. The cookie
//! holds the RUN, the names and `sub`, encrypted and authenticated (the RUN is personal data
//! under Chile's personal data law), well under the 4 KB a browser keeps.

use serde::{Deserialize, Serialize};

use crate::primitives::run::Run;
use crate::primitives::seal::{KeyRing, Purpose, NONCE_LEN};
use crate::protocol::oidc::id_token::VerifiedIdToken;

/// At most this many given names or surnames.
pub const MAX_NAMES: usize = 8;
/// At most this many bytes in one name.
pub const MAX_NAME_LEN: usize = 100;
/// At most this many bytes in `sub`.
pub const MAX_SUB_LEN: usize = 128;

/// A person as ClaveÚnica identified them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    run: Run,
    nombres: Vec<String>,
    apellidos: Vec<String>,
    sub: String,
}

/// Why an identity is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityError {
    /// More names, or longer names, than any person has; refused so a cookie stays small.
    NamesTooLong,
    /// A name holds a control character.
    NameInvalid,
    /// `sub` is empty or too long.
    SubInvalid,
}

impl Identity {
    /// An identity from validated parts.
    pub fn new(run: Run, nombres: Vec<String>, apellidos: Vec<String>, sub: String) -> Result<Self, IdentityError> {
        for list in [&nombres, &apellidos] {
            if list.len() > MAX_NAMES || list.iter().any(|n| n.len() > MAX_NAME_LEN) {
                return Err(IdentityError::NamesTooLong);
            }
            if list.iter().any(|n| n.chars().any(char::is_control)) {
                return Err(IdentityError::NameInvalid);
            }
        }
        if sub.is_empty() || sub.len() > MAX_SUB_LEN || sub.chars().any(char::is_control) {
            return Err(IdentityError::SubInvalid);
        }
        Ok(Self { run, nombres, apellidos, sub })
    }

    /// The verified RUN.
    #[must_use]
    pub fn run(&self) -> Run {
        self.run
    }

    /// Given names.
    #[must_use]
    pub fn nombres(&self) -> &[String] {
        &self.nombres
    }

    /// Surnames.
    #[must_use]
    pub fn apellidos(&self) -> &[String] {
        &self.apellidos
    }

    /// The provider's subject. Never a person's key: it is sometimes the RUN, sometimes not.
    #[must_use]
    pub fn sub(&self) -> &str {
        &self.sub
    }
}

/// A session: who, since when, until when. Made only by [`Session::start`], which takes the
/// verified ID token as proof, or opened from a cookie this gate sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    identity: Identity,
    issued_at: u64,
    expires_at: u64,
    last_seen: u64,
}

/// The cookie's plaintext, in postcard's compact binary encoding (no JSON on the hot path).
#[derive(Serialize, Deserialize)]
struct Wire {
    r: String,
    n: Vec<String>,
    a: Vec<String>,
    s: String,
    i: u64,
    e: u64,
    l: u64,
}

/// What opening a session cookie found.
#[derive(Debug)]
pub enum Opened {
    /// A session within its lifetime.
    Valid {
        /// The session.
        session: Session,
        /// Sealed with an older key: reseal with the newest.
        stale_key: bool,
    },
    /// A genuine session whose lifetime is over.
    Expired,
    /// No session cookie, or one that does not open: treated alike.
    Invalid,
}

impl Session {
    /// The session a completed login starts: the identity userinfo gave, which is only asked
    /// for with a verified ID token in hand, and that token as proof.
    #[must_use]
    pub fn start(_verified: &VerifiedIdToken, identity: Identity, now: u64, max_age_s: u64) -> Self {
        Self { identity, issued_at: now, expires_at: now.saturating_add(max_age_s), last_seen: now }
    }

    /// The same session, seen at `now` (for the idle timeout).
    #[must_use]
    pub fn touched(&self, now: u64) -> Self {
        Self { last_seen: now.max(self.last_seen), ..self.clone() }
    }

    /// A session from arbitrary parts, without a login: for tests, fuzzing and benchmarks
    /// only, which need cookies with chosen lifetimes. Not compiled into the gate.
    #[cfg(any(test, feature = "testkit"))]
    #[must_use]
    pub fn insecure_from_parts(identity: Identity, issued_at: u64, expires_at: u64, last_seen: u64) -> Self {
        Self { identity, issued_at, expires_at, last_seen }
    }

    /// The person.
    #[must_use]
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// When the login completed (Unix seconds).
    #[must_use]
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// When the session ends regardless of activity (Unix seconds).
    #[must_use]
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// When the cookie was last sealed, for the idle timeout (Unix seconds). Resealed at most
    /// once a minute, so it lags real activity by up to that.
    #[must_use]
    pub fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// Seals the session into a cookie value.
    #[must_use]
    pub fn seal(&self, ring: &KeyRing, nonce: [u8; NONCE_LEN]) -> Option<String> {
        let wire = Wire {
            r: self.identity.run.plain(),
            n: self.identity.nombres.clone(),
            a: self.identity.apellidos.clone(),
            s: self.identity.sub.clone(),
            i: self.issued_at,
            e: self.expires_at,
            l: self.last_seen,
        };
        let plaintext = postcard::to_allocvec(&wire).ok()?;
        ring.seal(Purpose::Session, &plaintext, nonce)
    }

    /// Opens a session cookie value and checks its lifetimes against `now`: the absolute one,
    /// and the idle one when `idle_timeout_s` is set.
    #[must_use]
    pub fn open(ring: &KeyRing, value: &str, now: u64, idle_timeout_s: Option<u64>) -> Opened {
        match Self::unseal(ring, value) {
            None => Opened::Invalid,
            Some((session, _)) if session.is_over(now, idle_timeout_s) => Opened::Expired,
            Some((session, stale_key)) => Opened::Valid { session, stale_key },
        }
    }

    /// Opens a session cookie value without looking at the clock; the second value says it was
    /// sealed with an older key. `None` for anything this gate did not seal.
    #[must_use]
    pub fn unseal(ring: &KeyRing, value: &str) -> Option<(Session, bool)> {
        let opened = ring.open(Purpose::Session, value)?;
        // Trailing bytes mean this is not a cookie this gate wrote, even if it opened.
        let Ok((wire, [])) = postcard::take_from_bytes::<Wire>(&opened.plaintext) else { return None };
        let run = Run::parse(&wire.r).ok()?;
        let identity = Identity::new(run, wire.n, wire.a, wire.s).ok()?;
        let session = Session { identity, issued_at: wire.i, expires_at: wire.e, last_seen: wire.l.max(wire.i) };
        Some((session, opened.stale_key))
    }

    /// Whether the session's lifetime is over at `now`: the absolute one, or the idle one when
    /// `idle_timeout_s` is set.
    #[must_use]
    pub fn is_over(&self, now: u64, idle_timeout_s: Option<u64>) -> bool {
        now >= self.expires_at || idle_timeout_s.is_some_and(|idle| now.saturating_sub(self.last_seen) >= idle)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::primitives::seal::SessionKey;

    fn identity() -> Identity {
        crate::testkit::maria()
    }

    fn ring(seeds: &[u8]) -> KeyRing {
        KeyRing::new(&seeds.iter().map(|s| SessionKey([*s; 32])).collect::<Vec<_>>())
    }

    fn session() -> Session {
        Session::insecure_from_parts(identity(), 1_000, 1_000 + 3_600, 1_000)
    }

    #[test]
    fn seal_and_open() {
        let r = ring(&[5]);
        let v = session().seal(&r, [1; NONCE_LEN]).unwrap();
        assert!(v.len() < 1_000, "cookie is {} bytes", v.len());
        assert!(!v.contains("44444444"));
        match Session::open(&r, &v, 2_000, None) {
            Opened::Valid { session: s, stale_key } => {
                assert_eq!(s, session());
                assert!(!stale_key);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_tampered_wrong_key_rotated() {
        let r = ring(&[5]);
        let v = session().seal(&r, [1; NONCE_LEN]).unwrap();
        assert!(matches!(Session::open(&r, &v, 4_600, None), Opened::Expired));
        let mut tampered = v.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        assert!(matches!(Session::open(&r, &String::from_utf8(tampered).unwrap(), 2_000, None), Opened::Invalid));
        assert!(matches!(Session::open(&ring(&[6]), &v, 2_000, None), Opened::Invalid));
        match Session::open(&ring(&[6, 5]), &v, 2_000, None) {
            Opened::Valid { stale_key, .. } => assert!(stale_key),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn idle_timeout() {
        let r = ring(&[5]);
        let v = session().seal(&r, [1; NONCE_LEN]).unwrap();
        assert!(matches!(Session::open(&r, &v, 1_000 + 299, Some(300)), Opened::Valid { .. }));
        assert!(matches!(Session::open(&r, &v, 1_000 + 300, Some(300)), Opened::Expired));
        let later = session().touched(1_250).seal(&r, [2; NONCE_LEN]).unwrap();
        assert!(matches!(Session::open(&r, &later, 1_000 + 500, Some(300)), Opened::Valid { .. }));
    }

    #[test]
    fn identity_limits() {
        let run = Run::new(44_444_444, '4').unwrap();
        assert_eq!(Identity::new(run, vec!["x".repeat(101)], vec![], "1".into()), Err(IdentityError::NamesTooLong));
        assert_eq!(Identity::new(run, vec!["a".into(); 9], vec![], "1".into()), Err(IdentityError::NamesTooLong));
        assert_eq!(Identity::new(run, vec!["a\r\nb".into()], vec![], "1".into()), Err(IdentityError::NameInvalid));
        assert_eq!(Identity::new(run, vec![], vec![], String::new()), Err(IdentityError::SubInvalid));
    }

    /// A session cookie sealed by this version of the gate, with a fixed key and nonce: the
    /// wire format, checked in. If this test fails, the format changed, and a new version
    /// would log everyone out (the move to postcard did, and no test said so). Either keep this
    /// vector opening, or bump the envelope version, say so in the release notes (everyone
    /// logs in again), and replace the vector.
    const SESSION_VECTOR: &str = "Ad793PgHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwegGjmKpSDzuxv5QRdZGFQNIFw7ad30MXkNlTB-RuBoW8-o6wV2mEfoDxrcOekFWFNXAI-VVVzrgyC7KrA_uES2yEnRBaxH9aJ-2S3ltAdO-jFR2IE";

    #[test]
    fn the_session_cookie_wire_format_is_pinned() {
        let r = ring(&[0x5a]);
        let s = Session::insecure_from_parts(identity(), 1_800_000_000, 1_800_028_800, 1_800_000_100);
        assert_eq!(s.seal(&r, [7; NONCE_LEN]).unwrap(), SESSION_VECTOR, "the session cookie's wire format changed");
        match Session::open(&r, SESSION_VECTOR, 1_800_000_200, None) {
            Opened::Valid { session, stale_key } => {
                assert_eq!(session, s);
                assert!(!stale_key);
            }
            other => panic!("the pinned session no longer opens: {other:?}"),
        }
    }
}
