//! The host services the core asks for, over proxy-wasm's host calls: the clock, WASI random
//! bytes, the log, counters, the store every worker shares, and the answers of calls. Every host status
//! is handled and every header is read as bytes: a panic here would trap the VM for every
//! request on this worker, so this uses the adapter's own host calls (`abi.rs`), never the
//! SDK's helpers, which panic on statuses and bytes they do not expect.

use std::cell::{Cell, RefCell};

use claveunica_core::gate::{Entropy, EntropyUnavailable, Event, Events, Level, LogLine, SharedStore, StoreError};
use claveunica_core::protocol::oidc::MAX_BODY_LEN;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

use crate::abi::{self, Status};
use crate::pairs::Pair;

pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    // Nothing sensible is left to do if logging itself fails.
    let _ = abi::log(level, message);
}

pub fn log_line(line: Option<&LogLine>) {
    if let Some(line) = line {
        log(line.level, &line.message);
    }
}

pub fn now() -> u64 {
    abi::now_nanos().map_or(0, |ns| ns / 1_000_000_000)
}

/// WASI's `random_get`, which Envoy serves from the operating system's random source.
pub struct HostEntropy;

impl Entropy for HostEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyUnavailable> {
        getrandom::getrandom(buf).map_err(|_| EntropyUnavailable)
    }
}

/// proxy-wasm shared data, which every worker's VM on the proxy sees, and every gate in it: the
/// core names each gate's entries (`Gate::key_store_name`, and its ledger of spent login
/// attempts).
pub struct SharedData;

impl SharedStore for SharedData {
    fn read(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        // `NotFound` is nothing stored (`abi` says so); any other status is a store that
        // failed, which the ledger must not take for an empty one.
        abi::get_shared_data(name).map_err(|_| StoreError::Failed)
    }

    fn write(&self, name: &str, bytes: &[u8], version: Option<u32>) -> Result<(), StoreError> {
        match abi::set_shared_data(name, bytes, version) {
            Ok(()) => Ok(()),
            Err(Status::CAS_MISMATCH) => Err(StoreError::Conflict),
            Err(_) => Err(StoreError::Failed),
        }
    }
}

/// Counters, defined on first use.
///
/// The one event of nearly every request, an accepted session, is added up here and handed
/// to the host once a tick (and when the VM stops): a host call per request costs about as
/// much as the rest of the gate's own work on it. The admin's count lags by up to a tick.
#[derive(Default)]
pub struct Metrics {
    ids: RefCell<Vec<(&'static str, u32)>>,
    accepted: Cell<u64>,
}

impl Metrics {
    pub fn count(&self, event: Event) {
        if event == Event::SessionAccepted {
            self.accepted.set(self.accepted.get().saturating_add(1));
            return;
        }
        self.add(event, 1);
    }

    fn add(&self, event: Event, n: u64) {
        let name = event.metric();
        let Ok(mut ids) = self.ids.try_borrow_mut() else { return };
        let id = match ids.iter().find(|(n, _)| *n == name) {
            Some((_, id)) => *id,
            None => match abi::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    ids.push((name, id));
                    id
                }
                Err(_) => return,
            },
        };
        let _ = abi::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn count_all(&self, events: &Events) {
        for e in events.iter() {
            self.count(e);
        }
    }

    /// Hands the added-up counts to the host.
    pub fn flush(&self) {
        let n = self.accepted.replace(0);
        if n > 0 {
            self.add(Event::SessionAccepted, n);
        }
    }
}

/// The status and body of a call's answer; no status when the call failed.
pub fn call_answer(num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
    // A failed call (reset, timeout, an answer cut short) has no response headers, and asking
    // Envoy for one then returns BadArgument, on which the SDK panics: ask nothing.
    if num_headers == 0 {
        return (None, Vec::new());
    }
    let status = abi::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
    // One byte more than the core accepts, so it can tell "too large" from "just fits".
    let body = if body_size > 0 {
        abi::get_buffer(BufferType::HttpCallResponseBody, 0, body_size.min(MAX_BODY_LEN + 1))
            .ok()
            .flatten()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    (status, body)
}

/// A header map read from the host. Names and values are bytes on the wire; invalid UTF-8
/// must not trap the VM, so it is repaired (U+FFFD) in the text the core reads. No identity
/// name or cookie name has a non-ASCII byte, so a repaired name never passes for one.
pub struct HeaderMap(Vec<Pair>);

impl HeaderMap {
    /// Reads a whole map with one host call.
    pub fn read(map: MapType) -> Result<Self, Status> {
        abi::get_map(map).map(Self)
    }

    /// No headers.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// Lends the map to `f` as the `(name, value)` text pairs the core reads.
    pub fn with_pairs<R>(&self, f: impl FnOnce(&[(&str, &str)]) -> R) -> R {
        let text: Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> =
            self.0.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))).collect();
        let pairs: Vec<(&str, &str)> = text.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
        f(&pairs)
    }
}
