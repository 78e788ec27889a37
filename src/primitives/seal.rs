//! The sealed envelope behind the gate's cookies: a version byte, a key id for rotation, a
//! random nonce and an XChaCha20-Poly1305 ciphertext, base64url without padding.
//!
//! XChaCha20-Poly1305 because it is fast in Wasm without AES instructions and its 192-bit
//! nonce can be drawn at random for every seal without counting. Each master key is split by
//! HMAC-SHA256 into one subkey per purpose, so a flow cookie can never be presented as a
//! session cookie: it would not open. A gate serving several sites splits it once more per
//! site ([`KeyRing::for_site`]), so a cookie made for one site does not open at another.
//!
//! As in quinn-proto's retry tokens, an envelope that does not open is treated exactly like no
//! envelope: [`KeyRing::open`] returns `None`, never a reason an attacker could probe.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use claveunica_cipher::Cipher;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
/// Length of the random nonce each seal needs.
pub const NONCE_LEN: usize = claveunica_cipher::NONCE_LEN;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = claveunica_cipher::TAG_LEN;
/// Envelopes longer than this are refused before any decoding: browsers cap a cookie near
/// 4 KB, so anything longer was not made by this gate.
pub const MAX_ENVELOPE_LEN: usize = 4096;

/// A 32-byte master key for sealing cookies, as configured. `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl core::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

/// What an envelope protects; each purpose has its own subkey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The session cookie.
    Session,
    /// A login-flow cookie.
    Flow,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"claveunica-gate/v1/session",
            Purpose::Flow => b"claveunica-gate/v1/flow",
        }
    }
}

struct RingKey {
    id: [u8; KEY_ID_LEN],
    session: Cipher,
    flow: Cipher,
}

impl RingKey {
    fn cipher(&self, purpose: Purpose) -> &Cipher {
        match purpose {
            Purpose::Session => &self.session,
            Purpose::Flow => &self.flow,
        }
    }
}

/// The configured keys, prepared once: the first seals, all open.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl core::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyRing({} keys, [redacted])", self.keys.len())
    }
}

/// An opened envelope.
#[derive(Debug)]
pub struct Opened {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Whether a key other than the newest opened it, so the caller should reseal.
    pub stale_key: bool,
}

/// The subkey for `purpose` (and `site`, when the key serves one of several). With no site the
/// derivation is the one every earlier version used, so existing cookies keep opening.
fn subkey(master: &SessionKey, purpose: Purpose, site: Option<&str>) -> Cipher {
    let mut label = purpose.label().to_vec();
    if let Some(site) = site {
        // The separator keeps a site's label from ever equalling another purpose's.
        label.extend_from_slice(b"/site/");
        label.extend_from_slice(site.as_bytes());
    }
    // HMAC accepts keys of any length, so new_from_slice cannot fail here; the fallback only
    // keeps the type honest.
    let derived = match <Hmac<Sha256> as Mac>::new_from_slice(&master.0) {
        Ok(mut mac) => {
            mac.update(&label);
            mac.finalize().into_bytes()
        }
        Err(_) => Sha256::new().chain_update(master.0).chain_update(&label).finalize(),
    };
    Cipher::new(&derived.into())
}

fn key_id(master: &SessionKey) -> [u8; KEY_ID_LEN] {
    let digest = Sha256::new().chain_update(b"claveunica-gate/key-id").chain_update(master.0).finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&digest[..KEY_ID_LEN]);
    id
}

impl KeyRing {
    /// Prepares the keys (newest first) so no request derives a key.
    #[must_use]
    pub fn new(keys: &[SessionKey]) -> Self {
        Self::derive(keys, None)
    }

    /// Like [`KeyRing::new`], for one of several sites, named by something no other site of
    /// the gate shares (its callback URL): what it seals opens only with a ring for the same
    /// site.
    #[must_use]
    pub fn for_site(keys: &[SessionKey], site: &str) -> Self {
        Self::derive(keys, Some(site))
    }

    fn derive(keys: &[SessionKey], site: Option<&str>) -> Self {
        let keys = keys
            .iter()
            .map(|k| RingKey {
                id: key_id(k),
                session: subkey(k, Purpose::Session, site),
                flow: subkey(k, Purpose::Flow, site),
            })
            .collect();
        Self { keys }
    }

    /// Seals `plaintext` with the newest key. `nonce` must be fresh random bytes.
    #[must_use]
    pub fn seal(&self, purpose: Purpose, plaintext: &[u8], nonce: [u8; NONCE_LEN]) -> Option<String> {
        let key = self.keys.first()?;
        let mut header = [0u8; HEADER_LEN];
        header[0] = VERSION;
        header[1..1 + KEY_ID_LEN].copy_from_slice(&key.id);
        header[1 + KEY_ID_LEN..].copy_from_slice(&nonce);
        let ciphertext = key.cipher(purpose).seal(&nonce, &aad(purpose, &header), plaintext)?;
        let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&ciphertext);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens an envelope sealed by any key of the ring, or returns `None`.
    #[must_use]
    pub fn open(&self, purpose: Purpose, envelope: &str) -> Option<Opened> {
        if envelope.len() > MAX_ENVELOPE_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(envelope).ok()?;
        if bytes.len() < HEADER_LEN + TAG_LEN {
            return None;
        }
        let (header, ciphertext) = bytes.split_at(HEADER_LEN);
        let (version, rest) = header.split_first()?;
        if *version != VERSION {
            return None;
        }
        let (id, nonce) = rest.split_at(KEY_ID_LEN);
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().ok()?;
        let (index, key) = self.keys.iter().enumerate().find(|(_, k)| k.id == id)?;
        let plaintext = key.cipher(purpose).open(nonce, &aad(purpose, header), ciphertext)?;
        Some(Opened { plaintext, stale_key: index > 0 })
    }
}

/// The header is authenticated too, so a ciphertext cannot be moved under another key id.
fn aad(purpose: Purpose, header: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(purpose.label().len() + header.len());
    aad.extend_from_slice(purpose.label());
    aad.extend_from_slice(header);
    aad
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn ring(seeds: &[u8]) -> KeyRing {
        let keys: Vec<SessionKey> = seeds.iter().map(|s| SessionKey([*s; 32])).collect();
        KeyRing::new(&keys)
    }

    #[test]
    fn round_trip() {
        let r = ring(&[1]);
        let sealed = r.seal(Purpose::Session, b"hola", [7; NONCE_LEN]).unwrap();
        let opened = r.open(Purpose::Session, &sealed).unwrap();
        assert_eq!(opened.plaintext, b"hola");
        assert!(!opened.stale_key);
        assert!(!sealed.contains("hola"));
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let r = ring(&[1]);
        let sealed = r.seal(Purpose::Session, b"run=44444444-4", [9; NONCE_LEN]).unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 0x01;
            assert!(r.open(Purpose::Session, &URL_SAFE_NO_PAD.encode(&t)).is_none(), "byte {i}");
        }
        let truncated = &sealed[..sealed.len() - 2];
        assert!(r.open(Purpose::Session, truncated).is_none());
        assert!(r.open(Purpose::Session, "").is_none());
        assert!(r.open(Purpose::Session, "not base64 at all!").is_none());
        assert!(r.open(Purpose::Session, &"A".repeat(8192)).is_none());
    }

    #[test]
    fn a_sites_envelope_opens_only_for_that_site() {
        let keys = [SessionKey([1; 32])];
        let a = KeyRing::for_site(&keys, "https://a.gob.cl/cb");
        let sealed = a.seal(Purpose::Session, b"x", [3; NONCE_LEN]).unwrap();
        assert!(a.open(Purpose::Session, &sealed).is_some());
        assert!(KeyRing::for_site(&keys, "https://b.gob.cl/cb").open(Purpose::Session, &sealed).is_none());
        assert!(KeyRing::new(&keys).open(Purpose::Session, &sealed).is_none());
        let plain = KeyRing::new(&keys).seal(Purpose::Flow, b"x", [3; NONCE_LEN]).unwrap();
        assert!(a.open(Purpose::Flow, &plain).is_none());
    }

    #[test]
    fn wrong_key_and_wrong_purpose_are_refused() {
        let sealed = ring(&[1]).seal(Purpose::Session, b"x", [3; NONCE_LEN]).unwrap();
        assert!(ring(&[2]).open(Purpose::Session, &sealed).is_none());
        assert!(ring(&[1]).open(Purpose::Flow, &sealed).is_none());
    }

    #[test]
    fn rotated_key_still_opens_and_asks_for_reseal() {
        let sealed = ring(&[1]).seal(Purpose::Session, b"x", [3; NONCE_LEN]).unwrap();
        let rotated = ring(&[2, 1]);
        let opened = rotated.open(Purpose::Session, &sealed).unwrap();
        assert_eq!(opened.plaintext, b"x");
        assert!(opened.stale_key);
        // Once the old key is retired, the old cookie no longer opens.
        assert!(ring(&[2]).open(Purpose::Session, &sealed).is_none());
    }
}
