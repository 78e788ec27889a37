//! The host services the core asks for, over proxy-wasm's host calls: the clock, WASI random
//! bytes, the log, counters, the shared key store, and the answers of calls. Every host status
//! is handled: the SDK's trait helpers `unwrap()` host results, and a panic here would trap
//! the VM for every request on this worker, so this uses `hostcalls` directly.

use std::cell::{Cell, RefCell};
use std::time::UNIX_EPOCH;

use claveunica_core::gate::{Entropy, EntropyUnavailable, Event, Events, KeyStore, Level, LogLine, StoreError};
use claveunica_core::protocol::oidc::MAX_BODY_LEN;
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType, Status};

pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    // Nothing sensible is left to do if logging itself fails.
    let _ = hostcalls::log(level, message);
}

pub fn log_line(line: Option<&LogLine>) {
    if let Some(line) = line {
        log(line.level, &line.message);
    }
}

pub fn now() -> u64 {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}

/// WASI's `random_get`, which Envoy serves from the operating system's random source.
pub struct HostEntropy;

impl Entropy for HostEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyUnavailable> {
        getrandom::getrandom(buf).map_err(|_| EntropyUnavailable)
    }
}

/// proxy-wasm shared data, which every worker's VM on the proxy sees, and every gate in it: the
/// core names each gate's entry (`Gate::key_store_name`).
pub struct SharedData;

impl KeyStore for SharedData {
    fn read(&self, name: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(name).unwrap_or((None, None))
    }

    fn write(&self, name: &str, bytes: &[u8], version: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(name, Some(bytes), version) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::Conflict),
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
            None => match hostcalls::define_metric(MetricType::Counter, name) {
                Ok(id) => {
                    ids.push((name, id));
                    id
                }
                Err(_) => return,
            },
        };
        let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
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
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| s.parse::<u16>().ok());
    // One byte more than the core accepts, so it can tell "too large" from "just fits".
    let body = if body_size > 0 {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size.min(MAX_BODY_LEN + 1))
            .ok()
            .flatten()
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    (status, body)
}

/// A header map read from the host. Values are bytes on the wire; invalid UTF-8 must not
/// trap the VM, so such a value is repaired in a copy, and valid ones (all of them, in
/// practice) are lent to the core in place.
pub struct HeaderMap(Vec<(String, Vec<u8>)>);

impl HeaderMap {
    /// Reads a whole map with one host call.
    pub fn read(map: MapType) -> Result<Self, Status> {
        hostcalls::get_map_bytes(map).map(Self)
    }

    /// No headers.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// Lends the map to `f` as the `(name, value)` text pairs the core reads.
    pub fn with_pairs<R>(&self, f: impl FnOnce(&[(&str, &str)]) -> R) -> R {
        let values: Vec<std::borrow::Cow<'_, str>> = self.0.iter().map(|(_, v)| String::from_utf8_lossy(v)).collect();
        let pairs: Vec<(&str, &str)> = self.0.iter().zip(&values).map(|((n, _), v)| (n.as_str(), v.as_ref())).collect();
        f(&pairs)
    }
}
