//! XChaCha20-Poly1305 for the gate's sealed cookies (`claveunica_core::primitives::seal`), as
//! three functions that name no type parameter.
//!
//! Why a crate of its own: the cipher's code is generic (the `aead` and `cipher` traits over
//! ChaCha20), so Rust compiles it in the crate that first names the concrete cipher type, with
//! that crate's optimisation level. Named in the core, it was compiled for size with the rest of
//! the core, and ChaCha20's quarter round stayed a function called 80 times per block. Named
//! here, behind functions that are not generic, it is compiled with this crate's level: the
//! workspace's release profile gives this crate `opt-level = 3` (see the root `Cargo.toml`, and
//! `benches/PROFILE.md` for what it measured).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The length of a key.
pub const KEY_LEN: usize = 32;
/// The length of a nonce: 192 bits, so one drawn at random for every seal never needs counting.
pub const NONCE_LEN: usize = 24;
/// The length of the tag each ciphertext carries.
pub const TAG_LEN: usize = 16;

/// A key, prepared once. `Debug` is redacted.
#[derive(Clone)]
pub struct Cipher(XChaCha20Poly1305);

impl core::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Cipher([redacted])")
    }
}

impl Cipher {
    /// The cipher for `key`.
    #[must_use]
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self(XChaCha20Poly1305::new(key.into()))
    }

    /// Encrypts `plaintext` and authenticates it with `aad`: the ciphertext with its tag.
    /// `None` only for a plaintext beyond what the cipher can count (256 GiB).
    #[must_use]
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(XNonce::from_slice(nonce), Payload { msg: plaintext, aad }).ok()
    }

    /// The plaintext of a ciphertext sealed under this key, `nonce` and `aad`, or `None` for
    /// anything else: nothing tells why it did not open.
    #[must_use]
    pub fn open(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad }).ok()
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1: the published XChaCha20-Poly1305 vector, so
    /// this wrapper is the standard construction and not merely consistent with itself.
    #[test]
    fn the_published_test_vector() {
        let hex = |s: &str| -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
        };
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let key: [u8; KEY_LEN] =
            hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f").try_into().unwrap();
        let nonce: [u8; NONCE_LEN] = hex("404142434445464748494a4b4c4d4e4f5051525354555657").try_into().unwrap();
        let expected = hex("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
             21f9664c97637da9768812f615c68b13b52e
             c0875924c1c7987947deafd8780acf49");
        let cipher = Cipher::new(&key);
        let sealed = cipher.seal(&nonce, &aad, plaintext).unwrap();
        assert_eq!(sealed, expected);
        assert_eq!(sealed.len(), plaintext.len() + TAG_LEN);
        assert_eq!(cipher.open(&nonce, &aad, &sealed).unwrap(), plaintext);
    }

    #[test]
    fn anything_changed_does_not_open() {
        let cipher = Cipher::new(&[7; KEY_LEN]);
        let nonce = [9; NONCE_LEN];
        let sealed = cipher.seal(&nonce, b"aad", b"run=44444444-4").unwrap();
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x80;
            assert!(cipher.open(&nonce, b"aad", &t).is_none(), "byte {i}");
        }
        assert!(cipher.open(&nonce, b"aaD", &sealed).is_none());
        assert!(cipher.open(&[8; NONCE_LEN], b"aad", &sealed).is_none());
        assert!(Cipher::new(&[6; KEY_LEN]).open(&nonce, b"aad", &sealed).is_none());
        assert!(cipher.open(&nonce, b"aad", &sealed[..TAG_LEN - 1]).is_none());
        assert!(cipher.open(&nonce, b"aad", &[]).is_none());
    }
}
