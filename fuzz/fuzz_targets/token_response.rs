#![no_main]
//! Feeds `token::parse` an arbitrary token endpoint answer: the first byte picks the HTTP
//! status (`STATUSES[byte % 16]`, so `0` is 200, `1` 400, `2` 401, `3` 403, `4` 500), the rest
//! is the body. The ID token of an accepted answer goes on to `id_token::key_id`.
//! Pass: no panic; only a 200 is accepted, with a non-empty printable access token; an error
//! code passed on for the log is at most 64 printable ASCII characters.

use claveunica_core::protocol::oidc::{id_token, token};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 16] = [200, 400, 401, 403, 500, 502, 503, 201, 204, 302, 404, 429, 504, 0, 299, 999];

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let status = STATUSES[usize::from(*first) % STATUSES.len()];
    match token::parse(status, body) {
        Ok(answer) => {
            assert_eq!(status, 200, "a {status} answer was accepted");
            let access = answer.access_token.expose();
            assert!(!access.is_empty() && access.bytes().all(|b| b.is_ascii_graphic()));
            let _ = id_token::key_id(&answer.id_token);
        }
        Err(token::TokenError::Rejected(code)) => {
            assert_ne!(status, 200);
            assert!(code.len() <= 64 && code.bytes().all(|b| b.is_ascii_graphic()), "{code:?}");
        }
        Err(token::TokenError::InvalidGrant) => assert_ne!(status, 200),
        Err(_) => {}
    }
});
