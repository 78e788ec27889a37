//! The gate's assertion of identity: a compact JWT, ES256, that says who the person is, for the
//! application (or the sidecar in front of it) to verify with the gate's published keys. Unlike
//! plain identity headers it cannot be made up by whoever reaches the application some other
//! way: only the holder of the signing key can make one, and it expires within minutes.
//!
//! Signed with `jwt-simple`. Its ES256 signature is hedged (RFC 6979 with fresh randomness
//! from the platform's source, WASI's `random_get` in the proxies): the one random draw the
//! core does not take from the `Entropy` it is handed. A hedged signature stays safe even if
//! that source were weak, which a signature with a random nonce would not.

use std::fmt;
use std::sync::Arc;

use jwt_simple::algorithms::{ECDSAP256KeyPairLike, ES256KeyPair};
use jwt_simple::claims::{Audiences, JWTClaims};
use jwt_simple::prelude::Duration;
use serde::Serialize;

use super::session::Identity;

/// One signing key: the P-256 pair, and its `kid`, the RFC 7638 thumbprint of the public key
/// (so the `kid` follows from the key, and two gates with the same key publish the same one).
pub struct AssertionKey {
    pair: ES256KeyPair,
    kid: String,
    /// The public key as a JWK, as the JWKS publishes it.
    jwk: String,
}

impl AssertionKey {
    /// A key from its PKCS#8 PEM; `None` when it is not a P-256 private key.
    #[must_use]
    pub fn from_pem(pem: &str) -> Option<Self> {
        let pair = ES256KeyPair::from_pem(pem).ok()?;
        let kid = pair.jwk_thumbprint();
        let jwk = pair.public_key().with_key_id(&kid).to_jwk();
        Some(Self { pair: pair.with_key_id(&kid), kid, jwk })
    }

    /// The key's id, as the assertion's header and the JWKS name it.
    #[must_use]
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl fmt::Debug for AssertionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssertionKey(kid={}, private key redacted)", self.kid)
    }
}

/// What the assertion's `sub` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionSubject {
    /// The RUN, `44444444-4`.
    Run,
    /// The person's pseudonym for this application: the same person, the same value, and no
    /// RUN in it.
    Pseudonym,
}

/// The `assertion` section, read: how the assertion is made and where its keys are published.
#[derive(Debug, Clone)]
pub struct AssertionSettings {
    /// The request header it travels in (lower case); a client's copy is always removed.
    pub header: String,
    /// `iss`: the gate, as the verifier names it.
    pub issuer: String,
    /// `aud`: the application the assertion is for.
    pub audience: String,
    /// The path where the gate answers its JWKS.
    pub jwks_path: String,
    /// How long an assertion is valid, in seconds.
    pub lifetime_s: u64,
    /// What `sub` holds.
    pub subject: AssertionSubject,
    /// Whether the `run` claim is there.
    pub run_claim: bool,
    /// Whether the `nombres` claim is there.
    pub nombres_claim: bool,
    /// Whether the `apellidos` claim is there.
    pub apellidos_claim: bool,
    /// The keys, newest first: the first signs, all are published.
    pub keys: Arc<[AssertionKey]>,
}

/// The claims beside the registered ones; each left out when the settings leave it out.
#[derive(Serialize)]
struct PersonClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nombres: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    apellidos: Option<String>,
}

impl AssertionSettings {
    /// What `sub` holds, as the document names it.
    #[must_use]
    pub fn subject_name(&self) -> &'static str {
        match self.subject {
            AssertionSubject::Run => "sub=run",
            AssertionSubject::Pseudonym => "sub=pseudonym",
        }
    }

    /// The JWKS the gate answers at `jwks_path`: every key's public half.
    #[must_use]
    pub fn jwks(&self) -> String {
        let keys: Vec<&str> = self.keys.iter().map(|k| k.jwk.as_str()).collect();
        format!("{{\"keys\":[{}]}}", keys.join(","))
    }

    /// The assertion for `identity`, issued at `now`, expiring at `expires_at`, with `jti` as its
    /// id; `pseudonym` is the person's pseudonym for this application when `sub` is one. `None`
    /// when it cannot be signed (no key, or a pseudonym asked for and not given): the caller
    /// fails closed.
    #[must_use]
    pub fn sign(
        &self,
        identity: &Identity,
        pseudonym: Option<&str>,
        now: u64,
        expires_at: u64,
        jti: String,
    ) -> Option<String> {
        let key = self.keys.first()?;
        let run = identity.run().plain();
        let subject = match self.subject {
            AssertionSubject::Run => run.clone(),
            AssertionSubject::Pseudonym => pseudonym?.to_string(),
        };
        let person = PersonClaims {
            run: self.run_claim.then_some(run),
            nombres: self.nombres_claim.then(|| identity.nombres().join(" ")),
            apellidos: self.apellidos_claim.then(|| identity.apellidos().join(" ")),
        };
        let claims = JWTClaims {
            issued_at: Some(Duration::from_secs(now)),
            expires_at: Some(Duration::from_secs(expires_at)),
            invalid_before: None,
            issuer: Some(self.issuer.clone()),
            subject: Some(subject),
            audiences: Some(Audiences::AsString(self.audience.clone())),
            jwt_id: Some(jti),
            nonce: None,
            custom: person,
        };
        key.pair.sign(claims).ok()
    }
}
