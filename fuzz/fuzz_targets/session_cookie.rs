#![no_main]
//! Feeds arbitrary bytes, as a session cookie value, to `Session::open` with the fixed key ring
//! (with and without an idle timeout), and flips one byte of a genuine sealed session.
//! Pass: no panic; only the genuine cookies sealed with the fixed keys open (valid or
//! expired), a valid one reseals to the same session, and a flipped genuine cookie never opens.

use claveunica_core::protocol::session::{Opened, Session};
use claveunica_gate_fuzz::{genuine_sessions, is_genuine_session, ring, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    for idle in [None, Some(1_800)] {
        match Session::open(ring(), &value, NOW, idle) {
            Opened::Valid { session, .. } => {
                assert!(is_genuine_session(&value), "a forged session cookie opened: {value:?}");
                let resealed = session.seal(ring(), [9; 24]).expect("a valid session seals");
                match Session::open(ring(), &resealed, NOW, idle) {
                    Opened::Valid { session: again, stale_key } => {
                        assert_eq!(again, session);
                        assert!(!stale_key);
                    }
                    other => panic!("a resealed session does not open: {other:?}"),
                }
            }
            Opened::Expired => assert!(is_genuine_session(&value), "a forged session cookie opened expired"),
            Opened::Invalid => {}
        }
    }

    // One byte of a genuine cookie flipped: data[0] picks the cookie, data[1..3] the position,
    // data[3] the bits.
    let sessions = genuine_sessions();
    if let ([pick, lo, hi, rest @ ..], false) = (data, sessions.is_empty()) {
        let mut bytes = sessions[usize::from(*pick) % sessions.len()].1.clone().into_bytes();
        let at = usize::from(u16::from_le_bytes([*lo, *hi])) % bytes.len();
        bytes[at] ^= rest.first().copied().filter(|m| *m != 0).unwrap_or(1);
        let flipped = String::from_utf8_lossy(&bytes);
        for idle in [None, Some(1_800)] {
            let opened = Session::open(ring(), &flipped, NOW, idle);
            assert!(matches!(opened, Opened::Invalid), "a flipped session cookie opened: {opened:?}");
        }
    }
});
