//! A person's pseudonym for one application: a keyed hash of the RUN and the application's
//! name. The same person gets the same pseudonym at the same application every time, and a
//! different one at every other application, so an application that only needs to know "the
//! same person as last time" never holds the RUN, and two applications cannot join their
//! records by it. Only the key's holder (the agency running the gate) can recompute one from a
//! RUN, which is what makes it pseudonymous rather than anonymous data (Ley 21.719, art. 2).

use core::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::run::Run;
use super::secret::SecretString;

/// The fewest bytes a pseudonym key may have: the RUNs are a small space, so a short key
/// could be guessed from one pseudonym and a known RUN.
pub const MIN_KEY_LEN: usize = 32;

/// Makes pseudonyms for one application.
#[derive(Clone)]
pub struct Pseudonyms {
    key: SecretString,
    application: String,
}

impl Pseudonyms {
    /// Pseudonyms under `key` for `application`.
    #[must_use]
    pub fn new(key: SecretString, application: String) -> Self {
        Self { key, application }
    }

    /// The application the pseudonyms are for.
    #[must_use]
    pub fn application(&self) -> &str {
        &self.application
    }

    /// The person's pseudonym: 32 characters of base64url (192 bits of HMAC-SHA256).
    #[must_use]
    pub fn of(&self, run: &Run) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose().as_bytes()) else {
            // HMAC takes a key of any length; kept total rather than trusted.
            return String::new();
        };
        // The separators keep ("ab", "c") and ("a", "bc") apart.
        mac.update(b"claveunica-gate/v1/pseudonym\0");
        mac.update(self.application.as_bytes());
        mac.update(b"\0");
        mac.update(run.plain().as_bytes());
        let digest = mac.finalize().into_bytes();
        URL_SAFE_NO_PAD.encode(digest.get(..24).unwrap_or_default())
    }
}

impl fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonyms(application={:?}, key redacted)", self.application)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn make(key: &str, app: &str) -> Pseudonyms {
        Pseudonyms::new(SecretString::new(key.to_string()), app.to_string())
    }

    #[test]
    fn the_same_person_at_the_same_application_and_no_one_else() {
        let maria = Run::parse("44444444-4").unwrap();
        let key = "0123456789abcdef0123456789abcdef";
        let p = make(key, "tramites").of(&maria);
        assert_eq!(p.len(), 32);
        assert!(!p.contains("4444"), "{p}");
        assert_eq!(make(key, "tramites").of(&maria), p, "stable");
        assert_ne!(make(key, "becas").of(&maria), p, "another application, another pseudonym");
        assert_ne!(make("fedcba9876543210fedcba9876543210", "tramites").of(&maria), p, "another key");
        assert_ne!(make(key, "tramites").of(&Run::parse("55555555-5").unwrap()), p, "another person");
        assert!(!format!("{:?}", make(key, "tramites")).contains(key));
    }
}
