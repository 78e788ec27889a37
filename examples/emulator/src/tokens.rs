//! The signing key, the JWKS that publishes it, ID tokens, and random identifiers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use sha2::{Digest, Sha256};

use crate::state::CodeGrant;

/// ID tokens live 10 minutes (exp - iat = 600 in real sandbox tokens).
pub const ID_TOKEN_TTL_SECS: u64 = 600;

/// `len` random bytes as lowercase hex: codes, access tokens and the key id are
/// all 32 hex chars in the real service.
pub fn random_hex(len: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; len];
    getrandom::getrandom(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// OIDC `at_hash`: base64url of the left half of SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or_default())
}

/// Claims beyond the registered ones jwt-simple knows about.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdTokenExtra {
    pub auth_time: u64,
    pub at_hash: String,
}

#[derive(Clone)]
pub struct Keys {
    key_pair: RS256KeyPair,
    pub kid: String,
}

impl Keys {
    /// A fresh 2048-bit key with a random kid. Slow-ish in debug builds (pure
    /// Rust bignums), which is why it happens once at startup.
    pub fn generate() -> Result<Keys, jwt_simple::Error> {
        let kid = random_hex(16).map_err(|e| jwt_simple::Error::msg(e.to_string()))?;
        let key_pair = RS256KeyPair::generate(2048)?.with_key_id(&kid);
        Ok(Keys { key_pair, kid })
    }

    #[cfg(test)]
    pub fn public_key(&self) -> RS256PublicKey {
        self.key_pair.public_key().with_key_id(&self.kid)
    }

    pub fn jwks(&self) -> serde_json::Value {
        let c = self.key_pair.public_key().to_components();
        serde_json::json!({
            "keys": [{
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": self.kid,
                "n": URL_SAFE_NO_PAD.encode(&c.n),
                "e": URL_SAFE_NO_PAD.encode(&c.e),
            }]
        })
    }

    /// Signs the ID token for a redeemed code, with `iat = now`.
    pub fn id_token(
        &self,
        issuer: &str,
        grant: &CodeGrant,
        access_token: &str,
        now: u64,
    ) -> Result<String, jwt_simple::Error> {
        let extra = IdTokenExtra { auth_time: grant.auth_time, at_hash: at_hash(access_token) };
        let mut claims = Claims::with_custom_claims(extra, Duration::from_secs(ID_TOKEN_TTL_SECS))
            .with_issuer(issuer)
            .with_audience(&grant.client_id)
            .with_subject(grant.user.sub);
        // Use the caller's clock (tests move it) and drop `nbf`, which real
        // ClaveÚnica tokens do not carry.
        claims.issued_at = Some(UnixTimeStamp::from_secs(now));
        claims.expires_at = Some(UnixTimeStamp::from_secs(now + ID_TOKEN_TTL_SECS));
        claims.invalid_before = None;
        if let Some(nonce) = &grant.nonce {
            claims = claims.with_nonce(nonce);
        }
        self.key_pair.sign(claims)
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::state::CODE_TTL_SECS;
    use crate::users::USERS;
    use std::sync::OnceLock;

    /// One key for all tests: generating RSA keys in debug builds takes a while.
    pub fn test_keys() -> &'static Keys {
        static KEYS: OnceLock<Keys> = OnceLock::new();
        KEYS.get_or_init(|| match Keys::generate() {
            Ok(k) => k,
            Err(e) => panic!("key generation failed: {e}"),
        })
    }

    fn now() -> u64 {
        Clock::now_since_epoch().as_secs()
    }

    fn grant(nonce: Option<&str>, now: u64) -> CodeGrant {
        CodeGrant {
            client_id: "demo-client".into(),
            redirect_uri: "https://x/cb".into(),
            nonce: nonce.map(str::to_string),
            user: &USERS[0],
            auth_time: now - 5,
            expires_at: now + CODE_TTL_SECS,
        }
    }

    #[test]
    fn random_hex_is_lowercase_hex() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_ne!(a, random_hex(16).unwrap());
    }

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OpenID Connect Core, appendix A.4 example access token and at_hash.
        assert_eq!(at_hash("dNZX1hEZ9wBCzNL40Upu646bdzQA"), "wfgvmE9VxjAudsl9lc6TqA");
    }

    #[test]
    fn id_token_verifies_and_carries_the_nonce() {
        let keys = test_keys();
        let now = now();
        let token = keys.id_token("http://127.0.0.1:1/openid", &grant(Some("n-123"), now), "tok", now).unwrap();
        let meta = Token::decode_metadata(&token).unwrap();
        assert_eq!(meta.key_id(), Some(keys.kid.as_str()));
        assert_eq!(meta.algorithm(), "RS256");
        assert_eq!(meta.signature_type(), Some("JWT"));
        let opts = VerificationOptions {
            required_nonce: Some("n-123".into()),
            allowed_issuers: Some(HashSet::from_strings(&["http://127.0.0.1:1/openid"])),
            allowed_audiences: Some(HashSet::from_strings(&["demo-client"])),
            ..Default::default()
        };
        let claims = keys.public_key().verify_token::<IdTokenExtra>(&token, Some(opts)).unwrap();
        assert_eq!(claims.subject.as_deref(), Some("2594"));
        assert_eq!(claims.custom.at_hash, at_hash("tok"));
        assert_eq!(claims.custom.auth_time, now - 5);
        let iat = claims.issued_at.unwrap().as_secs();
        assert_eq!(iat, now);
        assert_eq!(claims.expires_at.unwrap().as_secs() - iat, 600);
        assert!(claims.invalid_before.is_none());
    }

    #[test]
    fn id_token_without_nonce_omits_the_claim() {
        let keys = test_keys();
        let now = now();
        let token = keys.id_token("http://i/openid", &grant(None, now), "tok", now).unwrap();
        let claims = keys.public_key().verify_token::<serde_json::Value>(&token, None).unwrap();
        assert!(claims.nonce.is_none());
        assert!(claims.custom.get("nonce").is_none());
    }

    #[test]
    fn jwks_components_rebuild_the_public_key() {
        let keys = test_keys();
        let jwks = keys.jwks();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], keys.kid.as_str());
        let n = URL_SAFE_NO_PAD.decode(k["n"].as_str().unwrap()).unwrap();
        let e = URL_SAFE_NO_PAD.decode(k["e"].as_str().unwrap()).unwrap();
        let rebuilt = RS256PublicKey::from_components(&n, &e).unwrap();
        let now = now();
        let token = keys.id_token("http://i/openid", &grant(None, now), "tok", now).unwrap();
        assert!(rebuilt.verify_token::<serde_json::Value>(&token, None).is_ok());
    }
}
