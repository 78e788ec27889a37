//! The provider's signing keys: parsing a JWKS and caching the RS256 keys by `kid`.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::algorithms::RS256PublicKey;
use serde::Deserialize;

/// Fewer bits than this is not an RSA key anyone should sign with.
const MIN_MODULUS_BYTES: usize = 256;
/// More keys than this in one set is not a JWKS a provider sends.
const MAX_KEYS: usize = 32;
/// An unknown `kid` triggers a refetch at most this often, so a stream of forged tokens
/// cannot make the gate hammer the provider.
pub const MIN_REFETCH_INTERVAL_S: u64 = 30;

/// Why a JWKS is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksError {
    /// Not a JSON object with a `keys` list.
    Malformed,
    /// No usable RS256 signing key in the set.
    NoUsableKey,
}

#[derive(Deserialize)]
struct Wire {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct WireKey {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

fn b64(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).or_else(|_| URL_SAFE.decode(text)).ok()
}

fn rs256_key(value: serde_json::Value) -> Option<(String, RS256PublicKey)> {
    let k: WireKey = serde_json::from_value(value).ok()?;
    if k.kty != "RSA" || k.alg.as_deref().is_some_and(|a| a != "RS256") || k.use_.as_deref().is_some_and(|u| u != "sig")
    {
        return None;
    }
    let kid = k.kid.filter(|kid| !kid.is_empty() && kid.len() <= 128)?;
    let n = b64(k.n.as_deref()?)?;
    let e = b64(k.e.as_deref()?)?;
    let significant = n.iter().skip_while(|b| **b == 0).count();
    if significant < MIN_MODULUS_BYTES {
        return None;
    }
    let key = RS256PublicKey::from_components(&n, &e).ok()?;
    Some((kid, key))
}

/// Parses a JWKS, keeping the RS256 signing keys that carry a `kid`.
pub fn parse(body: &[u8]) -> Result<Vec<(String, RS256PublicKey)>, JwksError> {
    let wire: Wire = serde_json::from_slice(body).map_err(|_| JwksError::Malformed)?;
    if wire.keys.len() > MAX_KEYS {
        return Err(JwksError::Malformed);
    }
    let keys: Vec<_> = wire.keys.into_iter().filter_map(rs256_key).collect();
    if keys.is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok(keys)
}

/// The keys last fetched, and when.
#[derive(Default)]
pub struct KeyCache {
    keys: Vec<(String, RS256PublicKey)>,
    fetched_at: Option<u64>,
}

impl core::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KeyCache").field("kids", &kids).field("fetched_at", &self.fetched_at).finish()
    }
}

impl KeyCache {
    /// The key for a `kid`, if cached.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&RS256PublicKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// Whether a fetch is allowed now: always when nothing was fetched yet, else at most once
    /// per [`MIN_REFETCH_INTERVAL_S`].
    #[must_use]
    pub fn may_fetch(&self, now: u64) -> bool {
        self.fetched_at.is_none_or(|t| now.saturating_sub(t) >= MIN_REFETCH_INTERVAL_S || now < t)
    }

    /// Records a fetch attempt, successful or not, for rate limiting.
    pub fn fetched(&mut self, now: u64) {
        self.fetched_at = Some(now);
    }

    /// Replaces the keys with a freshly fetched set. A failed fetch does not call this, so the
    /// last good keys keep working while the provider is down.
    pub fn replace(&mut self, keys: Vec<(String, RS256PublicKey)>, now: u64) {
        self.keys = keys;
        self.fetched_at = Some(now);
    }
}
