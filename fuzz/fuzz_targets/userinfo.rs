#![no_main]
//! Feeds arbitrary bytes, as a userinfo answer, to `userinfo::parse`.
//! Pass: no panic; an accepted identity has a RUN whose módulo 11 check digit is right (as
//! recomputed by `run::check_digit`), that round-trips through `Run::parse` in every format
//! it prints, and names and `sub` within the session's limits.

use claveunica_core::primitives::run::{check_digit, Run};
use claveunica_core::protocol::oidc::userinfo;
use claveunica_core::protocol::session::{MAX_NAMES, MAX_NAME_LEN, MAX_SUB_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(identity) = userinfo::parse(data) else { return };
    let run = identity.run();
    assert!(run.numero() > 0);
    assert_eq!(check_digit(run.numero()), run.dv(), "wrong check digit accepted");
    for text in [run.plain(), run.dotted()] {
        assert_eq!(Run::parse(&text), Ok(run), "{text} does not parse back");
    }
    for names in [identity.nombres(), identity.apellidos()] {
        assert!(names.len() <= MAX_NAMES && names.iter().all(|n| n.len() <= MAX_NAME_LEN));
        assert!(!names.iter().any(|n| n.chars().any(char::is_control)));
    }
    assert!(!identity.sub().is_empty() && identity.sub().len() <= MAX_SUB_LEN);
});
