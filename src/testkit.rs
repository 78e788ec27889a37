//! Fixtures for the core's unit tests: a provider with test-only RSA keys that mints ID
//! tokens with any header and claims, a repeatable entropy source, and a configuration.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::config::Config;
use crate::gate::{Entropy, EntropyUnavailable};

pub const ISSUER: &str = "https://idp.test/openid";
pub const CLIENT_ID: &str = "cid";
pub const KID: &str = "0123456789abcdef0123456789abcdef";
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

pub fn provider_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/provider_key.pem")).unwrap()
}

pub fn other_key() -> RsaPrivateKey {
    RsaPrivateKey::from_pkcs8_pem(include_str!("testdata/other_key.pem")).unwrap()
}

/// A JWKS holding `key` under `kid`.
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

fn b64json(v: &Value) -> String {
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

pub const SESSION_KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
/// A second key, for rotation.
pub const OLD_SESSION_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

pub fn config_json() -> Value {
    json!({
        "issuer": ISSUER,
        "cluster": "claveunica",
        "client_id": CLIENT_ID,
        "client_secret": "s3cret",
        "redirect_uri": "https://portal.test/claveunica/callback",
        "session_keys": [SESSION_KEY],
        "post_logout_redirect": "https://portal.test/",
    })
}

pub fn config_from(v: &Value) -> Config {
    Config::from_json(v.to_string().as_bytes(), &|_| None).unwrap()
}

pub fn config() -> Config {
    config_from(&config_json())
}
