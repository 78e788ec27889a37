//! The signing key, the JWKS that publishes it, ID tokens (genuine, and the broken ones of
//! the test modes), and random identifiers.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use sha2::{Digest, Sha256};

use crate::modes::{IdTokenMode, Modes};
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

/// A signing key and its kid.
#[derive(Clone)]
pub struct Keys {
    key_pair: RS256KeyPair,
    /// The same key, for tokens with headers jwt-simple will not write.
    raw: rsa::RsaPrivateKey,
    pub kid: String,
}

/// HMAC-SHA256 (RFC 2104), for the HS256 key-confusion token.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().to_vec()
}

fn b64_json(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

impl Keys {
    /// A fresh 2048-bit key with a random kid. Slow-ish in debug builds (pure
    /// Rust bignums), which is why it happens at startup and on a rotation only.
    pub fn generate() -> Result<Keys, jwt_simple::Error> {
        let kid = random_hex(16).map_err(|e| jwt_simple::Error::msg(e.to_string()))?;
        let key_pair = RS256KeyPair::generate(2048)?.with_key_id(&kid);
        let der = key_pair.to_der()?;
        let raw = rsa::RsaPrivateKey::from_pkcs1_der(&der)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(&der))
            .map_err(|e| jwt_simple::Error::msg(format!("the generated key does not decode: {e}")))?;
        Ok(Keys { key_pair, raw, kid })
    }

    #[cfg(test)]
    pub fn public_key(&self) -> RS256PublicKey {
        self.key_pair.public_key().with_key_id(&self.kid)
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        let c = self.key_pair.public_key().to_components();
        serde_json::json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&c.n),
            "e": URL_SAFE_NO_PAD.encode(&c.e),
        })
    }

    #[cfg(test)]
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk()] })
    }

    /// The claims of a genuine ID token for a redeemed code, as JSON.
    pub fn claims(issuer: &str, grant: &CodeGrant, access_token: &str, now: u64) -> serde_json::Value {
        let mut claims = serde_json::json!({
            "iss": issuer,
            "sub": grant.user.sub,
            "aud": grant.client_id,
            "exp": now + ID_TOKEN_TTL_SECS,
            "iat": now,
            "auth_time": grant.auth_time,
            "at_hash": at_hash(access_token),
        });
        if let Some(nonce) = &grant.nonce {
            claims["nonce"] = serde_json::json!(nonce);
        }
        claims
    }

    /// `header.claims.signature`, RS256 with this key whatever the header says.
    pub fn sign_rs256(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(self.raw.clone());
        let signature = signer.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The ID token the test modes ask for: genuine, or broken in one precise way, with `iat`
    /// and `exp` where `iat_offset_s` and `exp_offset_s` put them.
    pub fn id_token_as(
        &self,
        modes: &Modes,
        issuer: &str,
        grant: &CodeGrant,
        access_token: &str,
        now: u64,
    ) -> Result<String, String> {
        let mut claims = Self::claims(issuer, grant, access_token, now);
        let genuine = Modes::default();
        let shifted = (modes.iat_offset_s, modes.exp_offset_s) != (genuine.iat_offset_s, genuine.exp_offset_s);
        claims["iat"] = serde_json::json!(now.saturating_add_signed(modes.iat_offset_s));
        claims["exp"] = serde_json::json!(now.saturating_add_signed(modes.exp_offset_s));
        let header = |alg: &str| serde_json::json!({"alg": alg, "typ": "JWT", "kid": self.kid});
        let token = match modes.id_token {
            IdTokenMode::Normal if shifted => self.sign_rs256(&header("RS256"), &claims),
            IdTokenMode::Normal => self.id_token(issuer, grant, access_token, now).map_err(|e| e.to_string())?,
            IdTokenMode::AlgNone => format!("{}.{}.", b64_json(&header("none")), b64_json(&claims)),
            IdTokenMode::Hs256Confusion => {
                // The classic confusion: the RSA public key, as the PEM text a naive verifier
                // would load, used as an HMAC secret.
                let pem = self.key_pair.public_key().to_pem().map_err(|e| e.to_string())?;
                let input = format!("{}.{}", b64_json(&header("HS256")), b64_json(&claims));
                let tag = hmac_sha256(pem.as_bytes(), input.as_bytes());
                format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
            }
            IdTokenMode::UnknownKid => {
                let kid = random_hex(16).map_err(|e| e.to_string())?;
                self.sign_rs256(&serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": kid}), &claims)
            }
            IdTokenMode::Crit => {
                let mut h = header("RS256");
                h["crit"] = serde_json::json!(["exp_policy"]);
                h["exp_policy"] = serde_json::json!("strict");
                self.sign_rs256(&h, &claims)
            }
            IdTokenMode::Huge => {
                claims["padding"] = serde_json::json!("A".repeat(100 * 1024));
                self.sign_rs256(&header("RS256"), &claims)
            }
            IdTokenMode::TypAtJwt => {
                let mut h = header("RS256");
                h["typ"] = serde_json::json!("at+jwt");
                self.sign_rs256(&h, &claims)
            }
            IdTokenMode::WrongNonce => {
                claims["nonce"] = serde_json::json!(random_hex(16).map_err(|e| e.to_string())?);
                self.sign_rs256(&header("RS256"), &claims)
            }
            IdTokenMode::WrongIssuer => {
                claims["iss"] = serde_json::json!("https://accounts.claveunica.gob.cl.evil.example/openid");
                self.sign_rs256(&header("RS256"), &claims)
            }
            IdTokenMode::WrongAudience => {
                claims["aud"] = serde_json::json!("another-client");
                self.sign_rs256(&header("RS256"), &claims)
            }
            IdTokenMode::MultiAudience => {
                claims["aud"] = serde_json::json!([grant.client_id, "another-client"]);
                self.sign_rs256(&header("RS256"), &claims)
            }
            IdTokenMode::MultiAudienceWrongAzp => {
                claims["aud"] = serde_json::json!([grant.client_id, "another-client"]);
                claims["azp"] = serde_json::json!("another-client");
                self.sign_rs256(&header("RS256"), &claims)
            }
            IdTokenMode::WrongAzp => {
                claims["azp"] = serde_json::json!("another-client");
                self.sign_rs256(&header("RS256"), &claims)
            }
            IdTokenMode::Expired => {
                claims["iat"] = serde_json::json!(now.saturating_sub(3 * ID_TOKEN_TTL_SECS));
                claims["exp"] = serde_json::json!(now.saturating_sub(2 * ID_TOKEN_TTL_SECS));
                self.sign_rs256(&header("RS256"), &claims)
            }
        };
        Ok(token)
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
