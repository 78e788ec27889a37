//! ID token verification. Only [`verify`] makes a [`VerifiedIdToken`], and only a verified
//! token lets the gate go on to userinfo and a session (rustls' proof-value pattern).

use jwt_simple::algorithms::RSAPublicKeyLike;
use jwt_simple::claims::Audiences;
use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::{Duration, UnixTimeStamp};
use jwt_simple::token::Token;
use jwt_simple::JWTError;
use serde::{Deserialize, Serialize};

use super::jwks::KeyCache;

/// The longest ID token accepted.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The claims jwt-simple does not know and verification reads.
#[derive(Debug, Serialize, Deserialize)]
struct Extra {
    /// The authorized party: the client the token was issued to (OpenID Connect Core 3.1.3.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    azp: Option<String>,
}

/// Proof that an ID token was verified: signature, issuer, audience and authorized party,
/// lifetime and nonce.
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
    /// Leeway for `exp` and `iat`, in seconds. The token is minted when the gate redeems the
    /// code, just before this check, so a genuine `iat` is now, give or take the clocks' skew:
    /// one further than this either way is refused.
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
    /// `azp` is present and not the client id, or `aud` names other clients too and `azp` is
    /// missing: the token was issued to another party.
    AuthorizedParty,
    /// `exp` is past (beyond the leeway) or missing.
    Expired,
    /// `iat` is missing, or further from now than the leeway either way.
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
    // An access token (`at+jwt`) or any other kind of JWS must not pass for an ID token.
    if meta.signature_type().is_some_and(|t| !t.eq_ignore_ascii_case("JWT")) {
        return Err(IdTokenError::Header);
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
    let claims = key.verify_token::<Extra>(token, Some(options)).map_err(|e| match e.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature) => IdTokenError::Signature,
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => IdTokenError::Issuer,
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => IdTokenError::Audience,
        Some(JWTError::TokenHasExpired) => IdTokenError::Expired,
        Some(JWTError::ClockDrift | JWTError::TokenNotValidYet) => IdTokenError::IssuedAt,
        Some(JWTError::RequiredNonceMismatch) => IdTokenError::NonceMismatch,
        Some(JWTError::RequiredNonceMissing) => IdTokenError::NonceMissing,
        Some(JWTError::AlgorithmMismatch) => IdTokenError::Algorithm("mismatch".into()),
        Some(
            JWTError::KeyIdentifierMismatch
            | JWTError::MissingJWTKeyIdentifier
            | JWTError::RequiredKeyIdMissing
            | JWTError::RequiredKeyIdMismatch,
        ) => IdTokenError::UnknownKey,
        Some(JWTError::UnknownCriticalExtension | JWTError::NotJWT | JWTError::RequiredSignatureTypeMismatch) => {
            IdTokenError::Header
        }
        _ => IdTokenError::Malformed,
    })?;
    // jwt-simple checks `exp` and `iat` only when present; OpenID Connect requires both.
    if claims.expires_at.is_none() {
        return Err(IdTokenError::Expired);
    }
    // jwt-simple refuses an `iat` in the future; one in the past is a token minted long before
    // this code was redeemed (a replay, a provider clock far behind): refused too. Checked after
    // `exp`, so an expired token is reported as expired.
    match claims.issued_at {
        Some(iat) if expect.now.saturating_sub(iat.as_secs()) <= expect.leeway_s => {}
        _ => return Err(IdTokenError::IssuedAt),
    }
    // With several audiences the token is also meant for others; only `azp` says it was issued
    // to this client. A present `azp` must name this client whatever `aud` holds.
    let several = matches!(&claims.audiences, Some(Audiences::AsSet(set)) if set.len() > 1);
    match claims.custom.azp.as_deref() {
        Some(azp) if azp == expect.client_id => {}
        None if !several => {}
        _ => return Err(IdTokenError::AuthorizedParty),
    }
    Ok(VerifiedIdToken { sub: claims.subject })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use crate::protocol::oidc::jwks;
    use crate::testkit::{self, claims, id_token, CLIENT_ID, ISSUER, KID, NOW};

    const NONCE: &str = "n-0S6_WzA2Mj";

    fn keys() -> KeyCache {
        let mut cache = KeyCache::default();
        cache.replace(jwks::parse(testkit::jwks(&[(KID, &testkit::provider_key())]).as_bytes()).unwrap(), NOW);
        cache
    }

    fn check(token: &str) -> Result<VerifiedIdToken, IdTokenError> {
        let expect = Expectations { issuer: ISSUER, client_id: CLIENT_ID, nonce: NONCE, now: NOW, leeway_s: 60 };
        verify(token, &keys(), &expect)
    }

    fn with(key: &str, value: serde_json::Value) -> String {
        let mut c = claims(NONCE);
        c[key] = value;
        id_token(&c)
    }

    fn without(key: &str) -> String {
        let mut c = claims(NONCE);
        c.as_object_mut().unwrap().remove(key);
        id_token(&c)
    }

    #[test]
    fn a_genuine_token_verifies() {
        let v = check(&id_token(&claims(NONCE))).unwrap();
        assert_eq!(v.sub(), Some("2594"));
        // aud may be a list holding the client id: alone, or with others when azp names it.
        assert!(check(&with("aud", json!([CLIENT_ID]))).is_ok());
        assert!(check(&with("azp", json!(CLIENT_ID))).is_ok());
        let mut c = claims(NONCE);
        c["aud"] = json!(["other", CLIENT_ID]);
        c["azp"] = json!(CLIENT_ID);
        assert!(check(&id_token(&c)).is_ok());
        // Within the leeway, either way.
        assert!(check(&with("exp", json!(NOW - 30))).is_ok());
        assert!(check(&with("iat", json!(NOW + 30))).is_ok());
        assert!(check(&with("iat", json!(NOW - 60))).is_ok());
    }

    #[test]
    fn a_token_issued_to_another_party_is_refused() {
        // Several audiences and no azp: also meant for "other", maybe issued to it.
        assert_eq!(check(&with("aud", json!(["other", CLIENT_ID]))).unwrap_err(), IdTokenError::AuthorizedParty);
        // Several audiences, azp another client.
        let mut c = claims(NONCE);
        c["aud"] = json!([CLIENT_ID, "other"]);
        c["azp"] = json!("other");
        assert_eq!(check(&id_token(&c)).unwrap_err(), IdTokenError::AuthorizedParty);
        // One audience, ours, and an azp naming another client.
        assert_eq!(check(&with("azp", json!("other"))).unwrap_err(), IdTokenError::AuthorizedParty);
        assert_eq!(check(&with("azp", json!(""))).unwrap_err(), IdTokenError::AuthorizedParty);
        // An azp that is not a string is no azp of ours.
        assert!(check(&with("azp", json!([CLIENT_ID]))).is_err());
    }

    #[test]
    fn an_iat_far_in_the_past_is_refused_even_before_exp() {
        // Minted long ago but with a long exp: a replayed or stockpiled token.
        let mut c = claims(NONCE);
        c["iat"] = json!(NOW - 61);
        c["exp"] = json!(NOW + 3600);
        assert_eq!(check(&id_token(&c)).unwrap_err(), IdTokenError::IssuedAt);
        c["iat"] = json!(NOW - 86_400 * 365);
        assert_eq!(check(&id_token(&c)).unwrap_err(), IdTokenError::IssuedAt);
        // Expired and old: reported as expired.
        c["exp"] = json!(NOW - 600);
        assert_eq!(check(&id_token(&c)).unwrap_err(), IdTokenError::Expired);
    }

    #[test]
    fn claims_that_do_not_match_are_refused() {
        assert_eq!(
            check(&with("iss", json!("https://accounts.claveunica.gob.cl/openid/"))).unwrap_err(),
            IdTokenError::Issuer
        );
        assert_eq!(check(&with("iss", json!("https://evil.test/openid"))).unwrap_err(), IdTokenError::Issuer);
        assert_eq!(check(&without("iss")).unwrap_err(), IdTokenError::Issuer);
        assert_eq!(check(&with("aud", json!("other"))).unwrap_err(), IdTokenError::Audience);
        assert_eq!(check(&without("aud")).unwrap_err(), IdTokenError::Audience);
        assert_eq!(check(&with("exp", json!(NOW - 61))).unwrap_err(), IdTokenError::Expired);
        assert_eq!(check(&without("exp")).unwrap_err(), IdTokenError::Expired);
        assert_eq!(check(&with("iat", json!(NOW + 61))).unwrap_err(), IdTokenError::IssuedAt);
        assert_eq!(check(&without("iat")).unwrap_err(), IdTokenError::IssuedAt);
        assert_eq!(check(&with("nonce", json!("another"))).unwrap_err(), IdTokenError::NonceMismatch);
        assert_eq!(check(&without("nonce")).unwrap_err(), IdTokenError::NonceMissing);
    }

    #[test]
    fn forged_signatures_and_algorithms_are_refused() {
        let c = claims(NONCE);
        // Signed by a key the provider does not hold, under the provider's kid.
        let forged = testkit::sign_rs256(&json!({"alg": "RS256", "kid": KID}), &c, &testkit::other_key());
        assert_eq!(check(&forged).unwrap_err(), IdTokenError::Signature);
        // A genuine signature moved onto other claims.
        let genuine = id_token(&c);
        let other_claims = with("sub", json!("666"));
        let mut parts: Vec<&str> = other_claims.split('.').collect();
        parts[2] = genuine.split('.').nth(2).unwrap();
        assert_eq!(check(&parts.join(".")).unwrap_err(), IdTokenError::Signature);
        assert_eq!(check(&testkit::unsigned(&c)).unwrap_err(), IdTokenError::Algorithm("none".into()));
        assert_eq!(check(&testkit::hs256_confused(&c)).unwrap_err(), IdTokenError::Algorithm("HS256".into()));
    }

    #[test]
    fn key_selection_by_kid() {
        let c = claims(NONCE);
        let unknown = testkit::sign_rs256(&json!({"alg": "RS256", "kid": "ffff"}), &c, &testkit::provider_key());
        assert_eq!(check(&unknown).unwrap_err(), IdTokenError::UnknownKey);
        let no_kid = testkit::sign_rs256(&json!({"alg": "RS256"}), &c, &testkit::provider_key());
        assert_eq!(check(&no_kid).unwrap_err(), IdTokenError::UnknownKey);
    }

    #[test]
    fn headers_this_verifier_does_not_understand() {
        let c = claims(NONCE);
        let crit = testkit::sign_rs256(
            &json!({"alg": "RS256", "kid": KID, "crit": ["exp-x"], "exp-x": 1}),
            &c,
            &testkit::provider_key(),
        );
        assert_eq!(check(&crit).unwrap_err(), IdTokenError::Header);
        let typ =
            testkit::sign_rs256(&json!({"alg": "RS256", "kid": KID, "typ": "at+jwt"}), &c, &testkit::provider_key());
        assert_eq!(check(&typ).unwrap_err(), IdTokenError::Header);
    }

    #[test]
    fn junk_is_refused_without_panicking() {
        for t in ["", ".", "..", "a.b.c", "eyJhbGciOiJSUzI1NiJ9", &"a".repeat(MAX_TOKEN_LEN + 1), "\u{0}.\u{0}.\u{0}"] {
            assert!(check(t).is_err(), "{t:?}");
        }
        let huge = with("pad", json!("x".repeat(MAX_TOKEN_LEN)));
        assert_eq!(check(&huge).unwrap_err(), IdTokenError::Malformed);
    }
}
