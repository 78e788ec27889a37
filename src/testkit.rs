//! Test fixtures, kept once for every crate that tests the gate: the core's unit tests
//! (`cfg(test)`), and through the `testkit` feature the integration tests in `tests/`, the
//! fuzz targets and the benchmark helper. A provider with test-only RSA keys
//! (`src/testdata/`, never production keys) that mints ID tokens with any header and claims
//! and publishes them as a JWKS, repeatable entropy, fixed session keys, the sandbox user and
//! a minimal valid configuration.
//!
//! Test-only code: it panics on anything unexpected instead of returning errors. The adapters
//! never enable the feature, so no release build carries it (or `rsa`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
pub use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::config::Config;
use crate::gate::{Entropy, EntropyUnavailable};
use crate::primitives::run::Run;
use crate::primitives::seal::KeyRing;
use crate::primitives::seal::SessionKey;
use crate::protocol::session::Identity;

/// The issuer of [`config_json`] and of [`claims`].
pub const ISSUER: &str = "https://idp.test/openid";
/// The client id of [`config_json`], the audience of [`claims`].
pub const CLIENT_ID: &str = "cid";
/// The client secret of [`config_json`].
pub const CLIENT_SECRET: &str = "s3cret";
/// The `kid` the provider key is published under, and [`id_token`] names.
pub const KID: &str = "0123456789abcdef0123456789abcdef";
/// A fixed clock (Unix seconds), so tokens and cookies made for it are the same every run.
pub const NOW: u64 = 1_800_000_000;

/// Counts upwards, so every draw differs and every run is the same.
pub struct SeqEntropy(pub u8);

impl Entropy for SeqEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyUnavailable> {
        for b in buf.iter_mut() {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
        Ok(())
    }
}

/// An entropy source that always fails.
pub struct NoEntropy;

impl Entropy for NoEntropy {
    fn fill(&mut self, _buf: &mut [u8]) -> Result<(), EntropyUnavailable> {
        Err(EntropyUnavailable)
    }
}

/// The provider's test-only signing key.
pub fn provider_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/provider_key.pem")).unwrap()
}

/// A second test-only key the provider does not publish: forgeries, rotation.
pub fn other_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/other_key.pem")).unwrap()
}

/// The gate's test-only assertion signing key (P-256, PKCS#8 PEM).
pub const ASSERTION_KEY: &str = include_str!("testdata/assertion_key.pem");

/// A second test-only assertion key: the next one in a rotation, or a forger's.
pub const NEXT_ASSERTION_KEY: &str = include_str!("testdata/assertion_key_next.pem");

/// A JWKS holding each `(kid, key)`'s public half.
pub fn jwks(keys: &[(&str, &RsaPrivateKey)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, k)| {
            json!({
                "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(k.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(k.e().to_bytes_be()),
            })
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// Claims a genuine ClaveÚnica ID token carries for `nonce`.
pub fn claims(nonce: &str) -> Value {
    json!({
        "iss": ISSUER, "sub": "2594", "aud": CLIENT_ID, "iat": NOW - 5, "exp": NOW + 595,
        "auth_time": NOW - 5, "nonce": nonce, "at_hash": "x",
    })
}

/// `v` serialised and base64url-encoded without padding: one part of a JWS.
pub fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWS with this header and these claims, RS256-signed with `key`.
pub fn sign_rs256(header: &Value, claims: &Value, key: &RsaPrivateKey) -> String {
    let input = format!("{}.{}", b64json(header), b64json(claims));
    let sig = SigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// The usual token: RS256, `kid` set, signed by the provider's key.
pub fn id_token(claims: &Value) -> String {
    sign_rs256(&json!({"alg": "RS256", "typ": "JWT", "kid": KID}), claims, &provider_key())
}

/// An HS256 token whose HMAC key is the provider's public key, the classic algorithm
/// confusion attack.
pub fn hs256_confused(claims: &Value) -> String {
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": KID});
    let input = format!("{}.{}", b64json(&header), b64json(claims));
    let pem = provider_key().to_public_key().to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(pem.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// An unsigned token (`alg: none`).
pub fn unsigned(claims: &Value) -> String {
    format!("{}.{}.", b64json(&json!({"alg": "none", "typ": "JWT", "kid": KID})), b64json(claims))
}

/// A session key (base64 of 32 bytes), the one [`config_json`] seals with.
pub const SESSION_KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
/// A second key, for rotation.
pub const OLD_SESSION_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

/// A session key from its base64 form, as the configuration writes it.
pub fn session_key(b64: &str) -> SessionKey {
    let bytes: [u8; 32] = STANDARD.decode(b64).unwrap().try_into().unwrap();
    SessionKey(bytes)
}

/// A key ring of base64 session keys, newest (sealing) first.
pub fn key_ring(keys: &[&str]) -> KeyRing {
    KeyRing::new(&keys.iter().map(|k| session_key(k)).collect::<Vec<_>>())
}

/// The sandbox user of the emulator, María Carmen De los Ríos Núñez, RUN 44.444.444-4.
pub fn maria() -> Identity {
    Identity::new(
        Run::new(44_444_444, '4').unwrap(),
        vec!["María".into(), "Carmen".into()],
        vec!["De los Ríos".into(), "Núñez".into()],
        "2594".into(),
    )
    .unwrap()
}

/// `base` with `changes`' top-level members set, a `null` removing the member instead.
pub fn merged(base: &Value, changes: &Value) -> Value {
    let mut v = base.clone();
    if let (Some(m), Some(c)) = (v.as_object_mut(), changes.as_object()) {
        for (k, x) in c {
            if x.is_null() {
                m.remove(k);
            } else {
                m.insert(k.clone(), x.clone());
            }
        }
    }
    v
}

/// A minimal valid configuration document: https (so `__Host-` cookies), one session key,
/// no rules (every path enforced).
pub fn config_json() -> Value {
    json!({
        "issuer": ISSUER,
        "cluster": "claveunica",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": "https://portal.test/claveunica/callback",
        "session_keys": [SESSION_KEY],
        "post_logout_redirect": "https://portal.test/",
    })
}

/// The configuration `v` describes.
pub fn config_from(v: &Value) -> Config {
    Config::from_json(v.to_string().as_bytes(), &|_| None).unwrap()
}

/// The configuration of [`config_json`].
pub fn config() -> Config {
    config_from(&config_json())
}
