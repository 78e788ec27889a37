//! The store the host's workers share, as the core sees it: bytes by name, each value with a
//! version for compare-and-swap. On Envoy it is proxy-wasm shared data, which every worker's
//! VM sees; the core keeps the provider's keys there (`keys`) and the ledger of spent login
//! attempts (`ledger`). A host whose instances share nothing gets a [`MemoryStore`], which
//! holds for one instance only.

use std::collections::HashMap;
use std::sync::Mutex;

/// A writer raced this one, or the store refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read: read again and retry.
    Conflict,
    /// The store failed otherwise.
    Failed,
}

/// A byte store shared by every worker of the host, with compare-and-swap: proxy-wasm shared
/// data on Envoy. Several gates may share one store (two listeners of one Envoy, staging and
/// production): the core names every entry, so each gate reads and writes its own.
///
/// Like proxy-wasm shared data, a store need not offer create-if-absent: a name never written
/// reads as `(None, None)`, and writing it with `version: None` writes whatever is there.
pub trait SharedStore {
    /// The bytes stored under `name` (`None` if nothing is), and a version token for
    /// [`SharedStore::write`]. `Err` when the store could not be read, which is not the same
    /// as nothing stored: a caller that must not forget anything fails closed on it.
    fn read(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError>;
    /// Stores `bytes` under `name` if the value is still at `version` (`None`: whatever it is).
    fn write(&self, name: &str, bytes: &[u8], version: Option<u32>) -> Result<(), StoreError>;
}

/// A store in this instance's memory, for a host whose instances share nothing (the `wasi:http`
/// component) and for tests. It behaves as proxy-wasm shared data does: every write bumps the
/// version, a name never written has none.
#[derive(Debug, Default)]
pub struct MemoryStore {
    values: Mutex<HashMap<String, (Vec<u8>, u32)>>,
}

impl SharedStore for MemoryStore {
    fn read(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        let values = self.values.lock().map_err(|_| StoreError::Failed)?;
        Ok(values.get(name).map_or((None, None), |(bytes, version)| (Some(bytes.clone()), Some(*version))))
    }

    fn write(&self, name: &str, bytes: &[u8], version: Option<u32>) -> Result<(), StoreError> {
        let mut values = self.values.lock().map_err(|_| StoreError::Failed)?;
        let next = match (values.get(name), version) {
            (Some((_, current)), Some(expected)) if *current != expected => return Err(StoreError::Conflict),
            (Some((_, current)), _) => current.wrapping_add(1).max(1),
            (None, _) => 1,
        };
        values.insert(name.to_string(), (bytes.to_vec(), next));
        Ok(())
    }
}

/// A store for tests that can play a racing worker or a failing host.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::{MemoryStore, SharedStore, StoreError};

    /// A [`MemoryStore`] that refuses writes with a conflict, or fails, when told to.
    #[derive(Debug, Default)]
    pub struct Flaky {
        pub inner: MemoryStore,
        /// Writes to refuse with a conflict before accepting, to play a racing worker.
        pub conflicts: AtomicUsize,
        /// Reads fail.
        pub failing_reads: AtomicBool,
        /// Writes fail.
        pub failing_writes: AtomicBool,
        /// Writes the store took.
        pub writes: AtomicUsize,
    }

    impl Flaky {
        /// Plays `n` workers winning the race before this one.
        pub fn conflict(&self, n: usize) {
            self.conflicts.store(n, Ordering::SeqCst);
        }

        /// Works again.
        pub fn heal(&self) {
            self.conflict(0);
            self.failing_reads.store(false, Ordering::SeqCst);
            self.failing_writes.store(false, Ordering::SeqCst);
        }

        /// Puts `bytes` under `name` as another writer would.
        pub fn put(&self, name: &str, bytes: &[u8]) {
            self.inner.write(name, bytes, None).unwrap();
        }

        /// The bytes under `name`.
        pub fn get(&self, name: &str) -> Option<Vec<u8>> {
            self.inner.read(name).unwrap().0
        }
    }

    impl SharedStore for Flaky {
        fn read(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
            if self.failing_reads.load(Ordering::SeqCst) {
                return Err(StoreError::Failed);
            }
            self.inner.read(name)
        }

        fn write(&self, name: &str, bytes: &[u8], version: Option<u32>) -> Result<(), StoreError> {
            if self.failing_writes.load(Ordering::SeqCst) {
                return Err(StoreError::Failed);
            }
            if self.conflicts.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(StoreError::Conflict);
            }
            self.inner.write(name, bytes, version)?;
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn a_memory_store_compares_and_swaps_as_shared_data_does() {
        let store = MemoryStore::default();
        assert_eq!(store.read("a"), Ok((None, None)), "a name never written has no version");
        store.write("a", b"one", None).unwrap();
        let (bytes, version) = store.read("a").unwrap();
        assert_eq!(bytes.as_deref(), Some(&b"one"[..]));
        let version = version.unwrap();
        store.write("a", b"two", Some(version)).unwrap();
        assert_eq!(store.write("a", b"late", Some(version)), Err(StoreError::Conflict), "a stale version loses");
        assert_eq!(store.read("a").unwrap().0.as_deref(), Some(&b"two"[..]));
        store.write("a", b"blind", None).unwrap();
        assert_eq!(store.read("a").unwrap().0.as_deref(), Some(&b"blind"[..]), "no version: whatever is there");
        assert_eq!(store.read("b"), Ok((None, None)), "names are apart");
    }
}
