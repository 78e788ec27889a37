//! Keeping ClaveÚnica's keys fresh. A login fetches the JWKS itself when its ID token names an
//! unknown `kid`; besides that, a host that ticks (Envoy) asks [`Gate::poll_keys`] once a tick,
//! and the core says whether to fetch, counts and logs. Where the host has a store that all its
//! workers share (proxy-wasm shared data), the core keeps [`SharedJwks`] there through the
//! [`SharedStore`] the adapter hands it, so N workers do not mean N fetches: one takes a lease
//! with a compare-and-swap and fetches for all.

use super::decision::{CallOutcome, Level, LogLine, Outbound};
use super::events::{Event, Events};
use super::store::{SharedStore, StoreError};
use super::{Gate, Portal};
use crate::protocol::oidc::jwks::{KeyCache, SharedJwks};

/// How often a lost compare-and-swap is retried before a publication is given up (the next
/// tick tries again).
const CAS_TRIES: usize = 4;

/// What a tick or a refresh answer comes to.
#[must_use]
#[derive(Debug, Default)]
pub struct KeyPoll {
    /// Send this request and hand its answer to [`Gate::on_keys_answer`]: this worker holds
    /// the lease.
    pub fetch: Option<Outbound>,
    /// What to count.
    pub events: Events,
    /// A line to log, if any.
    pub log: Option<LogLine>,
}

/// The provider's keys are the gate's, not one site's: every site trusts the one provider, so
/// all share one entry in the store and one fetch.
impl Gate {
    /// Once a tick: takes keys other workers published, shares keys a login of this worker
    /// fetched, and, when a refresh is due and no other worker holds the lease, takes it and
    /// asks for the fetch.
    pub fn poll_keys(&self, keys: &mut KeyCache, store: &dyn SharedStore, now: u64) -> KeyPoll {
        let mut poll = KeyPoll::default();
        if let Some(fetched) = keys.take_unshared() {
            // A login of this worker fetched the keys (an unknown `kid`): share them. The
            // login counted the fetch.
            let _ = self.publish(keys, store, now, Ok(&fetched));
        }
        let name = self.key_store_name();
        // A store that cannot be read now is tried again at the next tick; fetching without
        // the lease would be N workers fetching.
        let Ok((bytes, version)) = store.read(&name) else { return poll };
        let state = SharedJwks::decode(bytes.as_deref());
        keys.load_shared(&state);
        let Some(leased) = state.take_lease(now, self.first.config.jwks_refresh_s) else { return poll };
        // Only the worker whose compare-and-swap wins fetches.
        if store.write(&name, &leased.encode(), version).is_err() {
            return poll;
        }
        poll.fetch = Some(self.first.jwks_request());
        poll
    }

    /// Takes keys other workers published into this worker's cache, so a login about to
    /// verify a token does not fetch what another worker already has.
    pub fn sync_keys(&self, keys: &mut KeyCache, store: &dyn SharedStore) {
        if let Ok((bytes, _)) = store.read(&self.key_store_name()) {
            keys.load_shared(&SharedJwks::decode(bytes.as_deref()));
        }
    }

    /// The answer of the fetch [`Gate::poll_keys`] asked for (or [`CallOutcome::Failed`] when
    /// it could not be sent): the keys are kept, or the failure is counted and backed off.
    pub fn on_keys_answer(
        &self,
        keys: &mut KeyCache,
        store: &dyn SharedStore,
        outcome: CallOutcome<'_>,
        now: u64,
    ) -> KeyPoll {
        let (status, result) = match outcome {
            CallOutcome::Answered { status: 200, body } => (Some(200), Ok(body)),
            CallOutcome::Answered { status, .. } => (Some(status), Err(())),
            CallOutcome::Failed => (None, Err(())),
        };
        let failures = self.publish(keys, store, now, result).map_or(1, |s| s.failures);
        if failures == 0 {
            return KeyPoll { events: Events::one(Event::JwksRefreshed), ..KeyPoll::default() };
        }
        let status = status.map_or_else(|| "none".to_string(), |s| s.to_string());
        KeyPoll {
            fetch: None,
            events: Events::one(Event::JwksRefreshFailed),
            log: Some(LogLine {
                level: Level::Warn,
                message: format!(
                    "jwks refresh failed (status {status}); {failures} in a row, keeping the last good keys"
                ),
            }),
        }
    }

    /// Records a fetch's result in the store, retrying on a concurrent update, and takes the
    /// result into this worker's cache. `None` when the store would not take it.
    fn publish(
        &self,
        keys: &mut KeyCache,
        store: &dyn SharedStore,
        now: u64,
        result: Result<&[u8], ()>,
    ) -> Option<SharedJwks> {
        let name = self.key_store_name();
        for _ in 0..CAS_TRIES {
            let Ok((bytes, version)) = store.read(&name) else { break };
            let mut state = SharedJwks::decode(bytes.as_deref()).after_fetch(now, result);
            // A login's fetch for an unknown kid rate-limits every worker's.
            state.kid_fetch_at = state.kid_fetch_at.max(keys.kid_fetched_at().unwrap_or(0));
            match store.write(&name, &state.encode(), version) {
                Err(StoreError::Conflict) => continue,
                Err(StoreError::Failed) => break,
                Ok(()) => {
                    keys.load_shared(&state);
                    return Some(state);
                }
            }
        }
        None
    }

    /// The name of this gate's entry in the shared store: the issuer and the JWKS URL, so a
    /// gate never takes keys fetched for another provider. Both, because a staging emulator may
    /// well claim the production issuer: keys fetched from it must not verify production's
    /// tokens in the gate beside it.
    #[must_use]
    pub fn key_store_name(&self) -> String {
        let config = &self.first.config;
        format!("claveunica_gate.jwks {} {}", config.issuer, config.endpoints.jwks.url)
    }
}

impl Portal {
    /// The GET of the provider's JWKS.
    pub(super) fn jwks_request(&self) -> Outbound {
        self.outbound("GET", &self.config.endpoints.jwks, vec![("accept", "application/json".into())], None)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::super::store::testing::Flaky;
    use super::*;
    use crate::testkit;

    fn gate() -> Gate {
        Gate::new(testkit::config())
    }

    fn doc() -> String {
        testkit::jwks(&[(testkit::KID, &testkit::provider_key())])
    }

    #[test]
    fn one_worker_of_two_fetches_and_both_get_the_keys() {
        let gate = gate();
        let store = Flaky::default();
        let (mut a, mut b) = (KeyCache::default(), KeyCache::default());
        let now = testkit::NOW;
        let fetch = gate.poll_keys(&mut a, &store, now).fetch.expect("nothing held yet: a fetch is due");
        assert_eq!((fetch.method, fetch.scheme, fetch.path.as_str()), ("GET", "https", "/openid/jwks"));
        assert!(gate.poll_keys(&mut b, &store, now).fetch.is_none(), "the other worker sees the lease");
        let done =
            gate.on_keys_answer(&mut a, &store, CallOutcome::Answered { status: 200, body: doc().as_bytes() }, now);
        assert!(done.events.contains(Event::JwksRefreshed) && done.log.is_none());
        assert!(a.get(testkit::KID).is_some());
        let later = gate.poll_keys(&mut b, &store, now + 1);
        assert!(later.fetch.is_none(), "fresh keys: no refresh before jwks_refresh_s");
        assert!(b.get(testkit::KID).is_some(), "the other worker took the published keys");
    }

    #[test]
    fn failures_are_counted_logged_and_backed_off() {
        let gate = gate();
        let store = Flaky::default();
        let mut keys = KeyCache::default();
        let now = testkit::NOW;
        assert!(gate.poll_keys(&mut keys, &store, now).fetch.is_some());
        let failed = gate.on_keys_answer(&mut keys, &store, CallOutcome::Answered { status: 500, body: b"" }, now);
        assert!(failed.events.contains(Event::JwksRefreshFailed));
        let log = failed.log.unwrap();
        assert!(log.message.contains("status 500") && log.message.contains("1 in a row"), "{}", log.message);
        assert!(gate.poll_keys(&mut keys, &store, now + 4).fetch.is_none(), "backs off 5 s after one failure");
        assert!(gate.poll_keys(&mut keys, &store, now + 5).fetch.is_some());
        let failed = gate.on_keys_answer(&mut keys, &store, CallOutcome::Failed, now + 5);
        assert!(failed.log.unwrap().message.contains("status none); 2 in a row"));
        assert!(gate.poll_keys(&mut keys, &store, now + 14).fetch.is_none(), "then 10 s");
        assert!(gate.poll_keys(&mut keys, &store, now + 15).fetch.is_some());
    }

    #[test]
    fn a_lost_compare_and_swap_is_retried() {
        let gate = gate();
        let store = Flaky::default();
        let mut keys = KeyCache::default();
        assert!(gate.poll_keys(&mut keys, &store, testkit::NOW).fetch.is_some());
        store.conflict(2);
        let done = gate.on_keys_answer(
            &mut keys,
            &store,
            CallOutcome::Answered { status: 200, body: doc().as_bytes() },
            testkit::NOW,
        );
        assert!(done.events.contains(Event::JwksRefreshed));
        let stored = store.get(&gate.key_store_name());
        assert!(SharedJwks::decode(stored.as_deref()).body.is_some());
    }

    #[test]
    fn keys_a_login_fetched_are_shared_at_the_next_tick() {
        let gate = gate();
        let store = Flaky::default();
        let (mut a, mut b) = (KeyCache::default(), KeyCache::default());
        let set = crate::protocol::oidc::jwks::parse(doc().as_bytes()).unwrap();
        a.replace_with_source(set, doc().as_bytes(), testkit::NOW);
        let poll = gate.poll_keys(&mut a, &store, testkit::NOW);
        assert!(poll.fetch.is_none(), "the keys are fresh");
        assert_eq!(poll.events, Events::default(), "the login counted its fetch");
        let _ = gate.poll_keys(&mut b, &store, testkit::NOW);
        assert!(b.get(testkit::KID).is_some());
        assert!(a.take_unshared().is_none(), "shared once");
    }

    #[test]
    fn two_gates_for_two_providers_keep_their_own_keys_in_one_store() {
        let production = gate();
        let mut staging_config = testkit::config();
        staging_config.issuer = "http://127.0.0.1:9/openid".into();
        staging_config.endpoints.jwks.url = "http://127.0.0.1:9/openid/jwks".into();
        let staging = Gate::new(staging_config);
        assert_ne!(production.key_store_name(), staging.key_store_name());
        // The same issuer with another JWKS is another entry too.
        let mut elsewhere = testkit::config();
        elsewhere.endpoints.jwks.url = "http://127.0.0.1:9/openid/jwks".into();
        assert_ne!(production.key_store_name(), Gate::new(elsewhere).key_store_name());

        let store = Flaky::default();
        let (mut p, mut s) = (KeyCache::default(), KeyCache::default());
        let now = testkit::NOW;
        // Each fetches its own provider's keys: one gate's lease does not stop the other.
        assert!(production.poll_keys(&mut p, &store, now).fetch.is_some());
        assert!(staging.poll_keys(&mut s, &store, now).fetch.is_some(), "staging waited on production's lease");
        let _ = production.on_keys_answer(
            &mut p,
            &store,
            CallOutcome::Answered { status: 200, body: doc().as_bytes() },
            now,
        );
        let other = testkit::jwks(&[("staging-kid", &testkit::other_key())]);
        let _ = staging.on_keys_answer(
            &mut s,
            &store,
            CallOutcome::Answered { status: 200, body: other.as_bytes() },
            now + 1,
        );
        // A new worker of each gate takes its own provider's keys, never the other's.
        let (mut p2, mut s2) = (KeyCache::default(), KeyCache::default());
        production.sync_keys(&mut p2, &store);
        staging.sync_keys(&mut s2, &store);
        assert!(p2.get(testkit::KID).is_some() && p2.get("staging-kid").is_none(), "{p2:?}");
        assert!(s2.get("staging-kid").is_some() && s2.get(testkit::KID).is_none(), "{s2:?}");
    }
}
