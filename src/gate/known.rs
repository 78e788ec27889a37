//! Sessions this gate has already opened, by the exact cookie value.
//!
//! A browser sends the same session cookie with every request, and opening it (base64,
//! XChaCha20-Poly1305, decoding, checking the identity, rendering the identity headers) is
//! most of the gate's work on an authenticated request. In the proxy that work also runs with
//! cold caches, between the proxy's own work on other requests. So each gate keeps what it
//! opened, keyed by the whole cookie value, and a repeat request only looks it up.
//!
//! Only envelopes that opened are kept, so nothing a client makes up can enter. The entry
//! holds what the envelope says, never a verdict: lifetimes are checked against the clock on
//! every request, exactly as for a freshly opened cookie. A new configuration (new keys) makes
//! a new gate, and with it an empty cache. Memory is bounded by two generations of at most
//! [`GENERATION`] entries: when the current one fills it becomes the previous one, and the
//! previous one is dropped, so the sessions in use stay and the rest age out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::protocol::session::Session;

/// Entries per generation; two generations at most. An entry is about 700 bytes (the cookie
/// value, the session and its rendered headers), so the cache stays under 400 KB.
pub const GENERATION: usize = 256;

/// An opened session cookie: the session and the identity headers it renders to.
#[derive(Debug)]
pub struct Known {
    /// The session, lifetimes not yet checked.
    pub session: Session,
    /// Sealed with an older key: reseal with the newest.
    pub stale_key: bool,
    /// The identity headers, rendered once.
    pub headers: Arc<[(String, String)]>,
    /// The person's name in the access register, made once (a keyed hash costs an HMAC).
    pub subject: Arc<str>,
    /// The person's pseudonym for this application, when the gate makes them.
    pub pseudonym: Option<Arc<str>>,
    /// The identity headers with the signed assertion, while it is fresh: signed once and
    /// reused by every request until shortly before it expires.
    pub asserted: Mutex<Option<Asserted>>,
}

/// A session's identity headers with its current assertion.
#[derive(Debug)]
pub struct Asserted {
    /// The headers to set: the identity headers and the assertion's.
    pub set: Arc<[(String, String)]>,
    /// When it was signed.
    pub issued_at: u64,
    /// From when the next request gets a new one.
    pub renew_at: u64,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<Box<str>, Arc<Known>>,
    previous: HashMap<Box<str>, Arc<Known>>,
}

/// The cache. A mutex, not a `RefCell`, so a gate stays `Sync`; in the proxy's Wasm VM, one
/// thread per VM, it is never contended.
#[derive(Debug, Default)]
pub struct KnownSessions {
    inner: Mutex<Generations>,
}

impl KnownSessions {
    /// What a cookie value opened to before, if it is still kept.
    pub fn get(&self, value: &str) -> Option<Arc<Known>> {
        let mut g = self.inner.lock().ok()?;
        if let Some(known) = g.current.get(value) {
            return Some(Arc::clone(known));
        }
        // Still in use: move it to the current generation so it survives the next turn.
        let (key, known) = g.previous.remove_entry(value)?;
        Self::insert_into(&mut g, key, Arc::clone(&known));
        Some(known)
    }

    /// Keeps what a cookie value opened to.
    pub fn insert(&self, value: &str, known: Arc<Known>) {
        if let Ok(mut g) = self.inner.lock() {
            Self::insert_into(&mut g, value.into(), known);
        }
    }

    fn insert_into(g: &mut Generations, key: Box<str>, known: Arc<Known>) {
        if g.current.len() >= GENERATION {
            g.previous = std::mem::take(&mut g.current);
        }
        g.current.insert(key, known);
    }

    /// How many entries are kept (both generations).
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.lock().map_or(0, |g| g.current.len() + g.previous.len())
    }

    /// Whether nothing is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::primitives::run::Run;
    use crate::protocol::session::Identity;

    fn known(n: u64) -> Arc<Known> {
        let identity = Identity::new(Run::new(44_444_444, '4').unwrap(), vec![], vec![], "1".into()).unwrap();
        let session = Session::insecure_from_parts(identity, n, n + 10, n);
        Arc::new(Known {
            session,
            stale_key: false,
            headers: Arc::from(Vec::new()),
            subject: Arc::from(""),
            pseudonym: None,
            asserted: Mutex::default(),
        })
    }

    #[test]
    fn bounded_and_keeps_what_is_in_use() {
        let cache = KnownSessions::default();
        cache.insert("in-use", known(0));
        for i in 0..GENERATION * 5 {
            cache.insert(&format!("v{i}"), known(i as u64));
            // A session in use is looked up all along, so it is never dropped.
            assert!(cache.get("in-use").is_some(), "dropped after {i} inserts");
            assert!(cache.len() <= 2 * GENERATION);
        }
        // Old, unused entries are gone.
        assert!(cache.get("v0").is_none());
        assert_eq!(
            cache.get(&format!("v{}", GENERATION * 5 - 1)).unwrap().session.issued_at(),
            GENERATION as u64 * 5 - 1
        );
    }
}
