//! The provider's signing keys: parsing a JWKS and caching the RS256 keys by `kid`.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::algorithms::RS256PublicKey;
use serde::{Deserialize, Serialize};

/// Fewer bits than this is not an RSA key anyone should sign with.
const MIN_MODULUS_BYTES: usize = 256;
/// More keys than this in one set is not a JWKS a provider sends.
const MAX_KEYS: usize = 32;
/// An unknown `kid` triggers a refetch at most this often, so a stream of forged tokens
/// cannot make the gate hammer the provider. Only such fetches count: the first fetch and the
/// scheduled refresh do not, so a provider that starts signing with a new key just after the
/// gate fetched its keys costs the next login one fetch, not a wait.
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
    /// When the keys held were fetched (0: none yet); identifies the set across workers.
    version: u64,
    /// The JWKS document the keys came from, for sharing with other workers.
    source: Option<Vec<u8>>,
    /// The last fetch for an unknown `kid` while keys were held, successful or not, here or
    /// in another worker: the only fetches rate limited.
    kid_fetched_at: Option<u64>,
    /// A login of this worker fetched the keys held, and they were not shared yet.
    unshared: bool,
}

impl core::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KeyCache")
            .field("kids", &kids)
            .field("version", &self.version)
            .field("kid_fetched_at", &self.kid_fetched_at)
            .finish()
    }
}

impl KeyCache {
    /// The key for a `kid`, if cached.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&RS256PublicKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }

    /// Whether any key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a login may fetch the keys for an unknown `kid` now: always while no key is
    /// held (the first fetch, as a host without a key cache does for every login), else at
    /// most once per [`MIN_REFETCH_INTERVAL_S`] counted from the last such fetch only.
    #[must_use]
    pub fn may_fetch(&self, now: u64) -> bool {
        self.keys.is_empty()
            || self.kid_fetched_at.is_none_or(|t| now.saturating_sub(t) >= MIN_REFETCH_INTERVAL_S || now < t)
    }

    /// Records a login's fetch for an unknown `kid`, successful or not, for the rate limit.
    /// `had_keys`: whether keys were held when it was asked for; the first fetch is not
    /// limited, so it does not count.
    pub fn fetched_for_kid(&mut self, now: u64, had_keys: bool) {
        if had_keys {
            self.kid_fetched_at = Some(now);
        }
    }

    /// When a login last fetched for an unknown `kid` here, for sharing with other workers.
    #[must_use]
    pub fn kid_fetched_at(&self) -> Option<u64> {
        self.kid_fetched_at
    }

    /// Replaces the keys with a freshly fetched set. A failed fetch does not call this, so the
    /// last good keys keep working while the provider is down.
    pub fn replace(&mut self, keys: Vec<(String, RS256PublicKey)>, now: u64) {
        self.keys = keys;
        self.version = now.max(1);
    }

    /// Like [`KeyCache::replace`], keeping the document for other workers.
    pub fn replace_with_source(&mut self, keys: Vec<(String, RS256PublicKey)>, source: &[u8], now: u64) {
        self.replace(keys, now);
        self.source = Some(source.to_vec());
        self.unshared = true;
    }

    /// The document of keys fetched here and not shared yet, once.
    pub fn take_unshared(&mut self) -> Option<Vec<u8>> {
        if !std::mem::take(&mut self.unshared) {
            return None;
        }
        self.source.clone()
    }

    /// Takes the keys another worker published, when they are newer than the ones held.
    /// Returns whether anything changed.
    pub fn load_shared(&mut self, shared: &SharedJwks) -> bool {
        let newer = shared.keys_version > self.version;
        if newer {
            if let Some(body) = &shared.body {
                if let Ok(keys) = parse(body.as_bytes()) {
                    self.keys = keys;
                    self.version = shared.keys_version;
                    self.source = Some(body.as_bytes().to_vec());
                }
            }
        }
        // Another worker's fetch for an unknown kid counts for the rate limit here too; a
        // scheduled refresh does not.
        if shared.kid_fetch_at > self.kid_fetched_at.unwrap_or(0) {
            self.kid_fetched_at = Some(shared.kid_fetch_at);
        }
        newer
    }
}

/// The JWKS state every worker of a proxy shares (proxy-wasm shared data): the last good
/// document, when it was fetched, and who may fetch next. One worker fetches at a time (it
/// holds the lease); failures back off exponentially for all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedJwks {
    /// When `body` was fetched (0: never).
    pub keys_version: u64,
    /// The last good JWKS document.
    pub body: Option<String>,
    /// When the last fetch was attempted.
    pub last_attempt: u64,
    /// Failed attempts in a row.
    pub failures: u32,
    /// No other worker starts a fetch before this time.
    pub lease_until: u64,
    /// When a login last fetched for an unknown `kid` (0: never): the rate limit's clock,
    /// shared. Absent in what older versions stored.
    #[serde(default)]
    pub kid_fetch_at: u64,
}

/// How long a worker holds the lease while its fetch is under way.
const LEASE_S: u64 = 30;
/// Backoff after failures: 5 s, 10 s, 20 s ... at most this.
const MAX_BACKOFF_S: u64 = 300;

impl SharedJwks {
    /// Decodes the shared bytes; anything unreadable counts as nothing shared yet.
    #[must_use]
    pub fn decode(bytes: Option<&[u8]>) -> Self {
        bytes.and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default()
    }

    /// Encodes for shared data.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// When the next fetch is due: at once when no keys are held, after `refresh_s` when the
    /// last fetch succeeded, after the backoff when it failed.
    #[must_use]
    pub fn due_at(&self, refresh_s: u64) -> u64 {
        if self.failures > 0 {
            let backoff = 5u64.saturating_mul(1u64 << self.failures.saturating_sub(1).min(16)).min(MAX_BACKOFF_S);
            self.last_attempt.saturating_add(backoff)
        } else if self.keys_version == 0 {
            0
        } else {
            self.keys_version.saturating_add(refresh_s)
        }
    }

    /// If a fetch is due and nobody holds the lease, the state to publish (with the lease taken)
    /// before fetching; `None` when this worker should not fetch.
    #[must_use]
    pub fn take_lease(&self, now: u64, refresh_s: u64) -> Option<Self> {
        (now >= self.due_at(refresh_s) && now >= self.lease_until).then(|| Self {
            lease_until: now.saturating_add(LEASE_S),
            last_attempt: now,
            ..self.clone()
        })
    }

    /// The state after a fetch: the new document, or one more failure (keeping the last good
    /// keys). The lease is released either way.
    #[must_use]
    pub fn after_fetch(&self, now: u64, result: Result<&[u8], ()>) -> Self {
        match result.and_then(|body| parse(body).map(|_| body).map_err(|_| ())) {
            Ok(body) => Self {
                keys_version: now.max(1),
                body: Some(String::from_utf8_lossy(body).into_owned()),
                last_attempt: now,
                failures: 0,
                lease_until: 0,
                kid_fetch_at: self.kid_fetch_at,
            },
            Err(()) => {
                Self { last_attempt: now, failures: self.failures.saturating_add(1), lease_until: 0, ..self.clone() }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testkit;

    fn doc() -> String {
        testkit::jwks(&[("k1", &testkit::provider_key())])
    }

    #[test]
    fn parse_keeps_rs256_signing_keys_with_a_kid() {
        let set = parse(doc().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(parse(br#"{"keys":[]}"#).unwrap_err(), JwksError::NoUsableKey);
        assert_eq!(parse(br#"{"keys":[{"kty":"EC","kid":"x"}]}"#).unwrap_err(), JwksError::NoUsableKey);
        assert_eq!(parse(b"<html>").unwrap_err(), JwksError::Malformed);
        assert_eq!(
            parse(br#"{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AQAB"}]}"#).unwrap_err(),
            JwksError::NoUsableKey
        );
    }

    #[test]
    fn one_worker_fetches_and_failures_back_off() {
        let empty = SharedJwks::default();
        // Nothing yet: due at once; the first worker takes the lease, the next one cannot.
        let leased = empty.take_lease(1_000, 3_600).unwrap();
        assert!(leased.take_lease(1_001, 3_600).is_none());
        // Success: not due again before the refresh interval.
        let good = leased.after_fetch(1_002, Ok(doc().as_bytes()));
        assert_eq!(good.keys_version, 1_002);
        assert!(good.take_lease(1_002 + 3_599, 3_600).is_none());
        assert!(good.take_lease(1_002 + 3_600, 3_600).is_some());
        // Failures keep the last good document and back off 5, 10, 20 ... 300 s.
        let mut state = good.clone();
        let mut now = 10_000;
        for want in [5, 10, 20, 40, 80, 160, 300, 300] {
            state = state.take_lease(now, 3_600).unwrap().after_fetch(now, Err(()));
            assert_eq!(state.body, good.body);
            assert!(state.take_lease(now + want - 1, 3_600).is_none(), "backoff {want}");
            now += want;
            assert!(state.take_lease(now, 3_600).is_some(), "backoff {want}");
        }
        // A document that is not a JWKS counts as a failure.
        assert_eq!(good.after_fetch(20_000, Ok(b"<html>")).failures, 1);
        // A stuck lease expires.
        assert!(empty.take_lease(1_000, 3_600).unwrap().take_lease(1_000 + 30, 3_600).is_some());
    }

    #[test]
    fn workers_load_what_another_published() {
        let shared = SharedJwks::default().after_fetch(500, Ok(doc().as_bytes()));
        let decoded = SharedJwks::decode(Some(&shared.encode()));
        assert_eq!(decoded, shared);
        let mut cache = KeyCache::default();
        assert!(cache.load_shared(&decoded));
        assert!(cache.get("k1").is_some());
        assert!(!cache.load_shared(&decoded), "same version twice");
        assert!(cache.may_fetch(510), "a scheduled fetch is no reason to wait for a new kid");
        let by_login = SharedJwks { kid_fetch_at: 505, ..decoded };
        cache.load_shared(&by_login);
        assert!(!cache.may_fetch(510), "another worker's fetch for a kid counts for the rate limit");
        assert!(cache.may_fetch(535));
        assert_eq!(SharedJwks::decode(Some(b"garbage")), SharedJwks::default());
        // What an older version stored still reads.
        let old = br#"{"keys_version":1,"body":null,"last_attempt":1,"failures":0,"lease_until":0}"#;
        assert_eq!(SharedJwks::decode(Some(old)).keys_version, 1);
    }

    #[test]
    fn only_fetches_for_an_unknown_kid_are_rate_limited() {
        let mut cache = KeyCache::default();
        // Nothing held: a login may fetch, again and again (the first fetch).
        assert!(cache.may_fetch(1_000));
        cache.fetched_for_kid(1_000, false);
        assert!(cache.may_fetch(1_001));
        // Keys just fetched (first or scheduled): a new kid a second later is fetched at once.
        cache.replace(parse(doc().as_bytes()).unwrap(), 1_001);
        assert!(cache.may_fetch(1_002));
        // That fetch counts: the next unknown kid waits out the interval.
        cache.fetched_for_kid(1_002, true);
        assert!(!cache.may_fetch(1_002 + MIN_REFETCH_INTERVAL_S - 1));
        assert!(cache.may_fetch(1_002 + MIN_REFETCH_INTERVAL_S));
    }
}
