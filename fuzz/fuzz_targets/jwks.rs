#![no_main]
//! Feeds arbitrary bytes to `jwks::parse` (a JWKS answer) and to `SharedJwks::decode` (what
//! another worker left in proxy-wasm shared data), then through the shared-state machine
//! (`due_at`, `take_lease`, `after_fetch`) and `KeyCache::load_shared`.
//! Pass: no panic; a parsed set holds 1 to 32 keys with sane `kid`s; shared state survives an
//! encode/decode round trip; a fetch of this document succeeds exactly when it parses.

use claveunica_core::protocol::oidc::jwks::{self, KeyCache, SharedJwks};
use claveunica_gate_fuzz::NOW;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = jwks::parse(data);
    if let Ok(keys) = &parsed {
        assert!((1..=32).contains(&keys.len()), "{} keys", keys.len());
        for (kid, _) in keys {
            assert!(!kid.is_empty() && kid.len() <= 128, "kid {kid:?}");
        }
    }

    let shared = SharedJwks::decode(Some(data));
    assert_eq!(SharedJwks::decode(Some(&shared.encode())), shared, "shared state does not round-trip");
    let _ = shared.due_at(3_600);
    if let Some(leased) = shared.take_lease(NOW, 3_600) {
        assert!(leased.lease_until > NOW && leased.last_attempt == NOW);
    }
    let mut cache = KeyCache::default();
    let _ = cache.load_shared(&shared);

    let after = shared.after_fetch(NOW, Ok(data));
    assert_eq!(after.lease_until, 0);
    if parsed.is_ok() {
        assert_eq!((after.failures, after.keys_version), (0, NOW));
        let mut fresh = KeyCache::default();
        assert!(fresh.load_shared(&after) && !fresh.is_empty(), "a good JWKS did not load from shared data");
    } else {
        assert_eq!(after.failures, shared.failures.saturating_add(1));
        assert_eq!(after.body, shared.body);
    }
});
