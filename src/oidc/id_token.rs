//! ID token verification. Only [`verify`] makes a [`VerifiedIdToken`], and only a verified
//! token lets the gate go on to userinfo and a session (rustls' proof-value pattern).

use jwt_simple::algorithms::RSAPublicKeyLike;
use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::{Duration, NoCustomClaims, UnixTimeStamp};
use jwt_simple::JWTError;
use jwt_simple::token::Token;

use super::jwks::KeyCache;

/// The longest ID token accepted.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Proof that an ID token was verified: signature, issuer, audience, lifetime and nonce.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    sub: Option<String>,
}

impl VerifiedIdToken {
    /// The token's subject.
    #[must_use]
    pub fn sub(&self) -> Option<&str> {
        self.sub.as_deref()
    }
}

/// What verification expects.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// The exact `iss`.
    pub issuer: &'a str,
    /// The client id, which `aud` must hold.
    pub client_id: &'a str,
    /// The flow's nonce.
    pub nonce: &'a str,
    /// The current time (Unix seconds).
    pub now: u64,
    /// Leeway for `exp` and `iat`, in seconds.
    pub leeway_s: u64,
}

/// Why an ID token is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenError {
    /// Not a JWS, too long, or its claims are not JSON.
    Malformed,
    /// Signed with an algorithm other than RS256 (`none`, `HS256`...).
    Algorithm(String),
    /// No `kid`, or one not in the provider's key set.
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// `iss` is missing or not the configured issuer.
    Issuer,
    /// `aud` is missing or does not hold the client id.
    Audience,
    /// `exp` is past (beyond the leeway) or missing.
    Expired,
    /// `iat` is in the future (beyond the leeway) or missing.
    IssuedAt,
    /// `nonce` is not the flow's.
    NonceMismatch,
    /// `nonce` is missing.
    NonceMissing,
    /// A header the token says is critical and this verifier does not understand, or a `typ`
    /// that is not a JWT.
    Header,
}

/// The `kid` an ID token names, once its algorithm is known to be RS256.
pub fn key_id(token: &str) -> Result<String, IdTokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(IdTokenError::Malformed);
    }
    let meta = Token::decode_metadata(token).map_err(|_| IdTokenError::Malformed)?;
    if meta.algorithm() != "RS256" {
        return Err(IdTokenError::Algorithm(meta.algorithm().chars().take(16).collect()));
    }
    meta.key_id().map(str::to_string).ok_or(IdTokenError::UnknownKey)
}

/// Verifies an ID token with the cached keys.
pub fn verify(token: &str, keys: &KeyCache, expect: &Expectations<'_>) -> Result<VerifiedIdToken, IdTokenError> {
    let kid = key_id(token)?;
    let key = keys.get(&kid).ok_or(IdTokenError::UnknownKey)?;
    let options = VerificationOptions {
        allowed_issuers: Some([expect.issuer.to_string()].into_iter().collect()),
        allowed_audiences: Some([expect.client_id.to_string()].into_iter().collect()),
        required_nonce: Some(expect.nonce.to_string()),
        required_key_id: Some(kid),
        time_tolerance: Some(Duration::from_secs(expect.leeway_s)),
        artificial_time: Some(UnixTimeStamp::from_secs(expect.now)),
        max_token_length: Some(MAX_TOKEN_LEN),
        max_header_length: Some(2048),
        ..VerificationOptions::default()
    };
    let claims = key.verify_token::<NoCustomClaims>(token, Some(options)).map_err(|e| match e.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature) => IdTokenError::Signature,
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => IdTokenError::Issuer,
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => IdTokenError::Audience,
        Some(JWTError::TokenHasExpired) => IdTokenError::Expired,
        Some(JWTError::ClockDrift | JWTError::TokenNotValidYet) => IdTokenError::IssuedAt,
        Some(JWTError::RequiredNonceMismatch) => IdTokenError::NonceMismatch,
        Some(JWTError::RequiredNonceMissing) => IdTokenError::NonceMissing,
        Some(JWTError::AlgorithmMismatch) => IdTokenError::Algorithm("mismatch".into()),
        Some(JWTError::KeyIdentifierMismatch | JWTError::MissingJWTKeyIdentifier | JWTError::RequiredKeyIdMissing | JWTError::RequiredKeyIdMismatch) => IdTokenError::UnknownKey,
        Some(JWTError::UnknownCriticalExtension | JWTError::NotJWT | JWTError::RequiredSignatureTypeMismatch) => {
            IdTokenError::Header
        }
        _ => IdTokenError::Malformed,
    })?;
    // jwt-simple checks `exp` and `iat` only when present; OpenID Connect requires both.
    if claims.expires_at.is_none() {
        return Err(IdTokenError::Expired);
    }
    if claims.issued_at.is_none() {
        return Err(IdTokenError::IssuedAt);
    }
    Ok(VerifiedIdToken { sub: claims.subject })
}
