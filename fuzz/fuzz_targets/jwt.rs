#![no_main]
//! Feeds arbitrary text, as an ID token, to `id_token::key_id` and to `id_token::verify` with a
//! key cache holding the test provider key, the fixed issuer, audience, nonce and clock.
//! Pass: no panic; `verify` accepts only a token whose signed part (`header.payload`) is that
//! of a token genuinely signed with the provider key, and nothing once the clock has moved
//! an hour past every token's expiry.

use std::sync::OnceLock;

use claveunica_core::protocol::oidc::id_token::{self, Expectations};
use claveunica_core::protocol::oidc::jwks::KeyCache;
use claveunica_gate_fuzz::{expectations, genuine_id_tokens, key_cache, signing_input, NOW};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static KeyCache {
    static KEYS: OnceLock<KeyCache> = OnceLock::new();
    KEYS.get_or_init(key_cache)
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let _ = id_token::key_id(&token);
    if id_token::verify(&token, keys(), &expectations()).is_ok() {
        let genuine = genuine_id_tokens().iter().any(|(_, t)| signing_input(t) == signing_input(&token));
        assert!(genuine, "a forged ID token verified: {token:?}");
    }
    let late = Expectations { now: NOW + 7_200, ..expectations() };
    assert!(id_token::verify(&token, keys(), &late).is_err(), "an expired ID token verified");
});
