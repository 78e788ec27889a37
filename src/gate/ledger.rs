//! The ledger of spent login attempts: a login attempt (one `state`, one flow cookie) makes
//! at most one token call, however often its callback is replayed and whichever of the host's
//! workers answers.
//!
//! The flow cookie is deleted at the callback, but a copy of it still opens until the attempt
//! expires, and each Envoy worker has its own VM. So the claim "this attempt is spent" is made
//! in the store every worker shares ([`SharedStore`]), before the token call is asked for, and
//! a second claim is refused. Only [`Ledger::claim`] makes the [`Claimed`] proof the token
//! call's step holds.
//!
//! The store holds [`SHARDS`] values per ledger, each a bounded list of at most
//! [`SHARD_CAPACITY`] entries: a truncated SHA-256 of the state (never the state itself) and
//! when the entry may be forgotten. A claim reads the shard its state falls in, drops expired
//! entries, refuses if the state is there, appends it and writes with compare-and-swap,
//! retrying when another worker won the race. An entry is kept until the attempt could no
//! longer be resumed (its start, plus the flow lifetime, plus the clock leeway, in case the
//! host's wall clock steps back). Evicting an entry still alive would allow a second token
//! call, so a full shard, or a store that fails, refuses the claim: the login fails closed,
//! with a 503 and Retry-After, and nothing is called.
//!
//! The store's bytes are read defensively: another format, a truncated value or entries that
//! expire later than any configuration allows are dropped (and said so, for the log), never a
//! panic. Shards live as long as the process: a value is bounded, never deleted.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::store::{SharedStore, StoreError};
use crate::config::{CLOCK_LEEWAY_LIMIT_S, FLOW_MAX_AGE_LIMIT_S};

/// Values per ledger. Claims of different attempts mostly land in different shards, so
/// workers rarely race for one value, and each value copied stays small.
pub(super) const SHARDS: u16 = 128;
/// Entries per shard: 65,536 attempts in all (see docs/security.md for what that holds).
pub(super) const SHARD_CAPACITY: usize = 512;
/// Bytes of SHA-256 kept per attempt: 128 bits, so two live attempts never share one.
const DIGEST_LEN: usize = 16;
/// An entry: the digest, then when it may be forgotten (seconds, little-endian).
const ENTRY_LEN: usize = DIGEST_LEN + 8;
/// The first byte of a shard's value.
const FORMAT: u8 = 1;
/// Compare-and-swap rounds lost before a claim gives up (and the login fails closed).
const CAS_TRIES: usize = 8;
/// No configuration keeps an attempt longer than this after its claim: an entry that says
/// otherwise was not written by a gate.
const LONGEST_S: u64 = FLOW_MAX_AGE_LIMIT_S + CLOCK_LEEWAY_LIMIT_S;
/// Hashed before the state, so the digest is this ledger's and no other use of SHA-256's.
const DOMAIN: &[u8] = b"claveunica_gate spent login attempt\0";

/// Proof that the attempt was claimed: only [`Ledger::claim`] makes one.
#[derive(Debug)]
pub(super) struct Claimed(());

/// Why an attempt cannot be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refused {
    /// Claimed before: its token call was made (or is under way).
    Used,
    /// The shard holds [`SHARD_CAPACITY`] live attempts; the soonest is forgotten in
    /// `retry_after_s` seconds.
    Full {
        /// Seconds until a slot frees.
        retry_after_s: u64,
    },
    /// The store could not be read or written, or other workers kept winning the race.
    Unavailable(&'static str),
}

/// What a claim came to.
#[derive(Debug)]
pub(super) struct Claim {
    /// The proof, or why not.
    pub(super) result: Result<Claimed, Refused>,
    /// The shard the attempt fell in.
    pub(super) shard: u16,
    /// What was wrong with the shard's bytes, when something was (what could not be read was
    /// dropped): for the log.
    pub(super) garbled: Option<String>,
}

/// One attempt in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    digest: [u8; DIGEST_LEN],
    forget_at: u64,
}

/// The ledger of one gate, over the store the host hands in.
pub(super) struct Ledger {
    store: Arc<dyn SharedStore + Send + Sync>,
    /// The shards' names, before `/<shard>`.
    prefix: String,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// The shard a state falls in, and its digest.
pub(super) fn slot(state: &str) -> (u16, [u8; DIGEST_LEN]) {
    let hash = Sha256::new().chain_update(DOMAIN).chain_update(state.as_bytes()).finalize();
    let digest: [u8; DIGEST_LEN] = hash.first_chunk().copied().unwrap_or_default();
    let shard = u16::from_le_bytes([digest[0], digest[1]]) % SHARDS;
    (shard, digest)
}

impl Ledger {
    /// The ledger named `prefix` in `store`.
    pub(super) fn new(store: Arc<dyn SharedStore + Send + Sync>, prefix: String) -> Self {
        Self { store, prefix }
    }

    /// The name of a shard's value.
    pub(super) fn shard_name(&self, shard: u16) -> String {
        format!("{}/{shard}", self.prefix)
    }

    /// Writes an empty shard under every name never written. proxy-wasm shared data has no
    /// create-if-absent: the first write of a name cannot compare-and-swap, so it could
    /// overwrite a claim another worker made in between. Done when a gate is built, before
    /// it serves, that first write happens while no claim is made (names outlive reloads, so
    /// only a proxy's first start writes them).
    pub(super) fn prepare(&self) {
        for shard in 0..SHARDS {
            let name = self.shard_name(shard);
            if let Ok((None, None)) = self.store.read(&name) {
                // A store that refuses now is retried by the first claim in this shard.
                let _ = self.store.write(&name, &[FORMAT], None);
            }
        }
    }

    /// Claims the attempt whose state is `state`, to be remembered until `forget_at`.
    pub(super) fn claim(&self, state: &str, forget_at: u64, now: u64) -> Claim {
        let (shard, digest) = slot(state);
        let name = self.shard_name(shard);
        let mut garbled = None;
        let mut result = Err(Refused::Unavailable("compare-and-swap lost every round"));
        for _ in 0..CAS_TRIES {
            let Ok((bytes, version)) = self.store.read(&name) else {
                result = Err(Refused::Unavailable("read failed"));
                break;
            };
            let Some(version) = version else {
                if bytes.is_some() {
                    result = Err(Refused::Unavailable("a value without a version"));
                    break;
                }
                // Never written (its gate's `prepare` was refused): create it empty, then
                // claim with compare-and-swap like any other round. Writing the claim itself
                // blindly would let two first claims both succeed, one of them lost.
                if self.store.write(&name, &[FORMAT], None) == Err(StoreError::Failed) {
                    result = Err(Refused::Unavailable("creating the shard failed"));
                    break;
                }
                continue;
            };
            let (mut entries, wrong) = decode(bytes.as_deref(), now);
            garbled = garbled.or(wrong);
            entries.retain(|e| e.forget_at >= now);
            if entries.iter().any(|e| e.digest == digest) {
                result = Err(Refused::Used);
                break;
            }
            if entries.len() >= SHARD_CAPACITY {
                let soonest = entries.iter().map(|e| e.forget_at).min().unwrap_or(now);
                result = Err(Refused::Full { retry_after_s: soonest.saturating_sub(now).saturating_add(1) });
                break;
            }
            entries.push(Entry { digest, forget_at });
            match self.store.write(&name, &encode(&entries), Some(version)) {
                Ok(()) => {
                    result = Ok(Claimed(()));
                    break;
                }
                Err(StoreError::Conflict) => {}
                Err(StoreError::Failed) => {
                    result = Err(Refused::Unavailable("write failed"));
                    break;
                }
            }
        }
        Claim { result, shard, garbled }
    }
}

/// A shard's value.
fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY_LEN);
    out.push(FORMAT);
    for e in entries {
        out.extend_from_slice(&e.digest);
        out.extend_from_slice(&e.forget_at.to_le_bytes());
    }
    out
}

/// A shard's entries, and what was wrong with its bytes if anything was. What cannot be read
/// is dropped: another format is read as empty, a truncated tail is cut off, an entry that
/// would be kept longer than any configuration keeps one is left out.
fn decode(bytes: Option<&[u8]>, now: u64) -> (Vec<Entry>, Option<String>) {
    let Some((&format, body)) = bytes.and_then(<[u8]>::split_first) else { return (Vec::new(), None) };
    if format != FORMAT {
        let len = bytes.map_or(0, <[u8]>::len);
        return (Vec::new(), Some(format!("{len} bytes of an unknown format ({format})")));
    }
    let chunks = body.chunks_exact(ENTRY_LEN);
    let mut wrong = Vec::new();
    if !chunks.remainder().is_empty() {
        wrong.push(format!("{} stray bytes after the last entry", chunks.remainder().len()));
    }
    let latest = now.saturating_add(LONGEST_S);
    let mut too_late = 0usize;
    let entries = chunks
        .filter_map(|chunk| {
            let digest = *chunk.first_chunk::<DIGEST_LEN>()?;
            let forget_at = u64::from_le_bytes(*chunk.last_chunk::<8>()?);
            if forget_at > latest {
                too_late += 1;
                return None;
            }
            Some(Entry { digest, forget_at })
        })
        .collect();
    if too_late > 0 {
        wrong.push(format!("{too_late} entries kept longer than any configuration keeps one"));
    }
    (entries, (!wrong.is_empty()).then(|| wrong.join(", ")))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::sync::atomic::Ordering;

    use super::super::store::testing::Flaky;
    use super::super::store::MemoryStore;
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn ledger() -> (Arc<Flaky>, Ledger) {
        let store = Arc::new(Flaky::default());
        let ledger = Ledger::new(store.clone(), "test".into());
        (store, ledger)
    }

    /// Distinct states (as the gate draws them, 43 characters) that fall in `shard`.
    fn states_in(shard: u16, n: usize) -> Vec<String> {
        (0u64..).map(|i| format!("{i:043}")).filter(|s| slot(s).0 == shard).take(n).collect()
    }

    /// A full shard: `n` entries with other digests, forgotten at `forget_at`.
    fn entries(n: usize, forget_at: u64) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let mut digest = [0xee; DIGEST_LEN];
                digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Entry { digest, forget_at }
            })
            .collect()
    }

    #[test]
    fn an_attempt_is_claimed_once() {
        let (store, ledger) = ledger();
        let claim = ledger.claim("state-a", NOW + 660, NOW);
        assert!(claim.result.is_ok() && claim.garbled.is_none(), "{claim:?}");
        assert_eq!(ledger.claim("state-a", NOW + 660, NOW + 1).result.unwrap_err(), Refused::Used);
        assert!(ledger.claim("state-b", NOW + 660, NOW + 1).result.is_ok(), "another attempt is another entry");
        // Never the state in clear.
        let (shard, _) = slot("state-a");
        let bytes = store.get(&ledger.shard_name(shard)).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"state-a"));
    }

    #[test]
    fn states_spread_over_every_shard() {
        let mut seen = [0usize; SHARDS as usize];
        for i in 0..(usize::from(SHARDS) * 64) {
            seen[usize::from(slot(&format!("{i:043}")).0)] += 1;
        }
        assert!(seen.iter().all(|n| (32..=96).contains(n)), "{seen:?}");
    }

    #[test]
    fn expired_entries_are_pruned_and_free_their_slot() {
        let (store, ledger) = ledger();
        let states = states_in(3, 2);
        assert!(ledger.claim(&states[0], NOW + 660, NOW).result.is_ok());
        // Still there at the last second it is kept...
        assert_eq!(ledger.claim(&states[0], NOW + 660, NOW + 660).result.unwrap_err(), Refused::Used);
        // ...and gone after: the next claim in the shard writes it out.
        assert!(ledger.claim(&states[1], NOW + 1400, NOW + 661).result.is_ok());
        let (entries, garbled) = decode(store.get(&ledger.shard_name(3)).as_deref(), NOW + 661);
        assert_eq!((entries.len(), garbled), (1, None), "{entries:?}");
        assert_eq!(entries[0].digest, slot(&states[1]).1);
    }

    #[test]
    fn a_full_shard_refuses_until_an_entry_expires() {
        let (store, ledger) = ledger();
        let state = &states_in(5, 1)[0];
        let mut full = entries(SHARD_CAPACITY - 1, NOW + 600);
        full.push(Entry { digest: [1; DIGEST_LEN], forget_at: NOW + 30 });
        store.put(&ledger.shard_name(5), &encode(&full));
        let claim = ledger.claim(state, NOW + 660, NOW);
        assert_eq!(claim.result.unwrap_err(), Refused::Full { retry_after_s: 31 }, "the soonest frees in 31 s");
        assert_eq!(store.get(&ledger.shard_name(5)).unwrap(), encode(&full), "nothing evicted");
        assert!(ledger.claim(state, NOW + 691, NOW + 31).result.is_ok(), "one entry expired: a slot is free");
        // Full again, and the replay of the attempt just claimed is told apart from a full shard.
        assert_eq!(ledger.claim(state, NOW + 691, NOW + 32).result.unwrap_err(), Refused::Used);
        // Other shards are not affected by a full one.
        assert!(ledger.claim(&states_in(6, 1)[0], NOW + 660, NOW).result.is_ok());
        // The most a shard's value takes: 12,289 bytes (docs/security.md).
        assert_eq!(store.get(&ledger.shard_name(5)).unwrap().len(), 1 + SHARD_CAPACITY * ENTRY_LEN);
        assert_eq!(1 + SHARD_CAPACITY * ENTRY_LEN, 12_289);
    }

    #[test]
    fn a_lost_compare_and_swap_is_retried_then_fails_closed() {
        let (store, ledger) = ledger();
        ledger.prepare();
        store.conflict(CAS_TRIES - 1);
        assert!(ledger.claim("state-a", NOW + 660, NOW).result.is_ok(), "won on the last round");
        assert_eq!(store.conflicts.load(Ordering::SeqCst), 0);
        store.conflict(CAS_TRIES);
        let lost = ledger.claim("state-b", NOW + 660, NOW).result.unwrap_err();
        assert!(matches!(lost, Refused::Unavailable(_)), "{lost:?}");
        store.conflict(0);
        assert!(ledger.claim("state-b", NOW + 660, NOW).result.is_ok(), "nothing was written for the lost claim");
    }

    #[test]
    fn a_store_that_fails_refuses_every_claim() {
        let (store, ledger) = ledger();
        store.failing_reads.store(true, Ordering::SeqCst);
        assert_eq!(ledger.claim("state-a", NOW + 660, NOW).result.unwrap_err(), Refused::Unavailable("read failed"));
        store.failing_reads.store(false, Ordering::SeqCst);
        store.failing_writes.store(true, Ordering::SeqCst);
        let refused = ledger.claim("state-a", NOW + 660, NOW).result.unwrap_err();
        assert!(matches!(refused, Refused::Unavailable(_)), "{refused:?}");
        store.failing_writes.store(false, Ordering::SeqCst);
        assert!(ledger.claim("state-a", NOW + 660, NOW).result.is_ok(), "a refused claim spent nothing");
    }

    #[test]
    fn prepare_writes_each_shard_once_and_never_over_a_claim() {
        let (store, ledger) = ledger();
        ledger.prepare();
        assert_eq!(store.writes.load(Ordering::SeqCst), usize::from(SHARDS));
        assert!(ledger.claim("state-a", NOW + 660, NOW).result.is_ok());
        // A second gate (another worker, a reload) built on the same store writes nothing.
        Ledger::new(store.clone(), "test".into()).prepare();
        assert_eq!(store.writes.load(Ordering::SeqCst), usize::from(SHARDS) + 1);
        assert_eq!(ledger.claim("state-a", NOW + 660, NOW).result.unwrap_err(), Refused::Used);
    }

    #[test]
    fn a_shard_never_written_is_created_then_claimed_with_compare_and_swap() {
        let store = Arc::new(MemoryStore::default());
        let ledger = Ledger::new(store.clone(), "test".into());
        assert!(ledger.claim("state-a", NOW + 660, NOW).result.is_ok());
        assert_eq!(ledger.claim("state-a", NOW + 660, NOW).result.unwrap_err(), Refused::Used);
    }

    #[test]
    fn garbage_in_the_store_is_read_as_what_can_be_read_and_said_so() {
        let state = &states_in(9, 1)[0];
        let live = encode(&entries(2, NOW + 100));
        let mut truncated = live.clone();
        truncated.extend_from_slice(&[7; 5]);
        let far = encode(&entries(3, NOW + LONGEST_S + 1));
        let cases: Vec<(&str, Vec<u8>, usize, Option<&str>)> = vec![
            ("empty", Vec::new(), 0, None),
            ("a format byte alone", vec![FORMAT], 0, None),
            ("another format", vec![2, 1, 2, 3], 0, Some("4 bytes of an unknown format (2)")),
            ("JSON", br#"{"keys":[]}"#.to_vec(), 0, Some("unknown format")),
            ("a truncated tail", truncated, 2, Some("5 stray bytes after the last entry")),
            ("entries from far in the future", far, 0, Some("3 entries kept longer than")),
        ];
        for (what, bytes, kept, said) in cases {
            let (entries, garbled) = decode(Some(&bytes), NOW);
            assert_eq!(entries.len(), kept, "{what}");
            match said {
                Some(said) => assert!(garbled.as_deref().is_some_and(|g| g.contains(said)), "{what}: {garbled:?}"),
                None => assert_eq!(garbled, None, "{what}"),
            }
            let (store, ledger) = ledger();
            store.put(&ledger.shard_name(9), &bytes);
            let claim = ledger.claim(state, NOW + 660, NOW);
            assert!(claim.result.is_ok(), "{what}: {claim:?}");
            assert_eq!(claim.garbled.is_some(), said.is_some(), "{what}");
            // The shard is written back whole, in this format.
            let (entries, garbled) = decode(store.get(&ledger.shard_name(9)).as_deref(), NOW);
            assert_eq!((entries.len(), garbled), (kept + 1, None), "{what}");
        }
        // Every prefix of a shard, and every byte flipped: never a panic.
        let (_, ledger) = ledger();
        let bytes = encode(&entries(3, NOW + 100));
        for cut in 0..=bytes.len() {
            let _ = decode(Some(&bytes[..cut]), NOW);
        }
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0xff;
            let _ = decode(Some(&flipped), u64::MAX);
            let _ = decode(Some(&flipped), 0);
        }
        assert!(ledger.claim(state, u64::MAX, u64::MAX).result.is_ok(), "no overflow at the end of time");
    }
}
