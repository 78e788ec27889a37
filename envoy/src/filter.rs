//! Adapter for Envoy and Istio: proxy-wasm's root and HTTP contexts over the core.
//!
//! It only translates. Facts go in (headers, the host clock, WASI random bytes, call answers,
//! shared data), decisions come out and are carried out with host calls; events become
//! counters. It uses `hostcalls` directly rather than the SDK's trait helpers, which
//! `unwrap()` host results: a panic here would trap the VM for every request on this worker.
//!
//! The provider's keys live in proxy-wasm shared data, which every worker's VM on the proxy
//! sees. Each worker's root context ticks once a second: it takes newer keys others published,
//! and when a refresh is due one worker takes the lease (a compare-and-swap) and fetches, so
//! N workers do not mean N fetches.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use claveunica_core::config::Config;
use claveunica_core::gate::{
    CallOutcome, CookieHeader, Decision, Entropy, EntropyUnavailable, Event, Events, Gate, Level, LogLine, Pending,
    Request, Response,
};
use claveunica_core::protocol::oidc::jwks::{KeyCache, SharedJwks};
use claveunica_core::protocol::oidc::MAX_BODY_LEN;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The shared-data key holding [`SharedJwks`].
const JWKS_KEY: &str = "claveunica_gate.jwks";
const TICK: Duration = Duration::from_secs(1);

fn log(level: LogLevel, message: &str) {
    // Nothing sensible is left to do if logging itself fails.
    let _ = hostcalls::log(level, message);
}

fn log_line(line: &LogLine) {
    let level = match line.level {
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    log(level, &line.message);
}

fn now() -> u64 {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}

/// WASI's `random_get`, which Envoy serves from the operating system's random source.
struct HostEntropy;

impl Entropy for HostEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyUnavailable> {
        getrandom::getrandom(buf).map_err(|_| EntropyUnavailable)
    }
}

/// Counters, defined on first use.
///
/// The one event of nearly every request, an accepted session, is added up here and handed
/// to the host once a tick (and when the VM stops): a host call per request costs about as
/// much as the rest of the gate's own work on it. The admin's count lags by up to a tick.
#[derive(Default)]
struct Metrics {
    ids: RefCell<Vec<(&'static str, u32)>>,
    accepted: std::cell::Cell<u64>,
}

impl Metrics {
    fn count(&self, event: Event) {
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

    fn count_all(&self, events: &Events) {
        for e in events.iter() {
            self.count(e);
        }
    }

    /// Hands the added-up counts to the host.
    fn flush(&self) {
        let n = self.accepted.replace(0);
        if n > 0 {
            self.add(Event::SessionAccepted, n);
        }
    }
}

/// What every context of this plugin in this VM shares.
struct Shared {
    gate: Gate,
    keys: RefCell<KeyCache>,
    metrics: Metrics,
}

impl Shared {
    /// Takes keys another worker published.
    fn sync_keys(&self) -> SharedJwks {
        let state = match hostcalls::get_shared_data(JWKS_KEY) {
            Ok((bytes, _)) => SharedJwks::decode(bytes.as_deref()),
            Err(_) => SharedJwks::default(),
        };
        if let Ok(mut keys) = self.keys.try_borrow_mut() {
            keys.load_shared(&state);
        }
        state
    }

    /// Records a fetch's result in shared data, retrying on a concurrent update.
    fn publish(&self, result: Result<&[u8], ()>) -> SharedJwks {
        let mut state = SharedJwks::default();
        for _ in 0..4 {
            let (bytes, cas) = hostcalls::get_shared_data(JWKS_KEY).unwrap_or((None, None));
            state = SharedJwks::decode(bytes.as_deref()).after_fetch(now(), result);
            match hostcalls::set_shared_data(JWKS_KEY, Some(&state.encode()), cas) {
                Err(Status::CasMismatch) => continue,
                _ => break,
            }
        }
        if let Ok(mut keys) = self.keys.try_borrow_mut() {
            keys.load_shared(&state);
        }
        state
    }
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
    /// The JWKS fetch this root context has under way.
    fetching: Option<u32>,
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        if let Some(shared) = &self.shared {
            shared.metrics.flush();
        }
        true
    }

    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        if self.fetching != Some(token_id) {
            return;
        }
        self.fetching = None;
        let Some(shared) = self.shared.clone() else { return };
        let (status, body) = call_answer(num_headers, body_size);
        let result = match status {
            Some(200) => Ok(body.as_slice()),
            _ => Err(()),
        };
        let state = shared.publish(result);
        if state.failures == 0 {
            shared.metrics.count(Event::JwksRefreshed);
        } else {
            shared.metrics.count(Event::JwksRefreshFailed);
            log(
                LogLevel::Warn,
                &format!(
                    "jwks refresh failed (status {}); {} in a row, keeping the last good keys",
                    status.map_or_else(|| "none".to_string(), |s| s.to_string()),
                    state.failures
                ),
            );
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log(LogLevel::Error, "invalid configuration: (document): no plugin configuration was given");
                return false;
            }
        };
        match Config::from_host_bytes(&bytes, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "configured: issuer={} cluster={} callback={} migration={}",
                        config.issuer,
                        config.cluster,
                        config.callback_path,
                        config.migration.mode.as_str()
                    ),
                );
                let shared = Rc::new(Shared {
                    gate: Gate::new(config),
                    keys: RefCell::new(KeyCache::default()),
                    metrics: Metrics::default(),
                });
                shared.metrics.count(Event::ConfigLoaded);
                self.shared = Some(shared);
                let _ = hostcalls::set_tick_period(TICK);
                true
            }
            Err(e) => {
                // Refusing the configuration keeps a running proxy on its previous one, and
                // keeps a starting proxy from serving protected paths with a broken gate.
                log(LogLevel::Error, &e.to_string());
                Metrics::default().count(Event::ConfigRejected);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else { return };
        shared.metrics.flush();
        let state = shared.sync_keys();
        if self.fetching.is_some() {
            return;
        }
        let config = shared.gate.config();
        let Some(leased) = state.take_lease(now(), config.jwks_refresh_s) else { return };
        let cas = match hostcalls::get_shared_data(JWKS_KEY) {
            Ok((_, cas)) => cas,
            Err(_) => return,
        };
        // Only the worker whose compare-and-swap wins fetches.
        if hostcalls::set_shared_data(JWKS_KEY, Some(&leased.encode()), cas).is_err() {
            return;
        }
        let ep = &config.endpoints.jwks;
        let headers = vec![
            (":method", "GET"),
            (":path", ep.path.as_str()),
            (":authority", ep.authority.as_str()),
            ("accept", "application/json"),
        ];
        match hostcalls::dispatch_http_call(
            &config.cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(config.timeout_ms),
        ) {
            Ok(token) => self.fetching = Some(token),
            Err(status) => {
                log(LogLevel::Error, &format!("could not call cluster {} for the jwks: {status:?}", config.cluster));
                shared.publish(Err(()));
                shared.metrics.count(Event::JwksRefreshFailed);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            shared: self.shared.clone(),
            pending: None,
            response_set_cookies: Vec::new(),
            watch_logout: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The status and body of a call's answer; no status when the call failed.
fn call_answer(num_headers: usize, body_size: usize) -> (Option<u16>, Vec<u8>) {
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

struct Filter {
    shared: Option<Rc<Shared>>,
    /// The call under way and the login step waiting for it.
    pending: Option<(u32, Pending)>,
    response_set_cookies: Vec<String>,
    /// The request went upstream with identity: the answer may ask for a logout.
    watch_logout: bool,
}

fn refuse(message: &str) -> Action {
    log(LogLevel::Error, message);
    let _ = hostcalls::send_http_response(
        500,
        vec![("content-type", "text/plain; charset=utf-8")],
        Some("Error interno\n".as_bytes()),
    );
    Action::Pause
}

fn send(shared: &Shared, r: &Response) {
    if let Some(line) = &r.log {
        log_line(line);
    }
    shared.metrics.count_all(&r.events);
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if let Err(status) = hostcalls::send_http_response(u32::from(r.status), headers, Some(r.body.as_bytes())) {
        log(LogLevel::Error, &format!("could not send a local response: {status:?}"));
    }
}

impl Filter {
    /// Fails closed: used only when the gate itself is missing.
    fn unavailable(&self) -> Action {
        log(LogLevel::Error, "no configuration loaded; refusing the request");
        let _ = hostcalls::send_http_response(
            503,
            vec![("content-type", "text/plain; charset=utf-8")],
            Some("Servicio no disponible\n".as_bytes()),
        );
        Action::Pause
    }

    /// Carries out a decision. `resume` says whether the request is paused (after a call) and
    /// must be resumed to go upstream.
    fn apply(&mut self, shared: &Shared, decision: Decision, resume: bool) -> Action {
        match decision {
            Decision::Forward(f) => {
                for (name, value) in f.set.iter() {
                    if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).is_err() {
                        // Forwarding without the identity would hand the app an anonymous
                        // request it believes identified; refuse instead.
                        return refuse("could not set identity headers; refusing the request");
                    }
                }
                let cookie_ok = match &f.cookie {
                    CookieHeader::Unchanged => Ok(()),
                    CookieHeader::Replace(v) => {
                        hostcalls::set_map_value(MapType::HttpRequestHeaders, "cookie", Some(v))
                    }
                    CookieHeader::Remove => hostcalls::set_map_value(MapType::HttpRequestHeaders, "cookie", None),
                };
                if cookie_ok.is_err() {
                    return refuse("could not rewrite the cookie header; refusing the request");
                }
                if let Some(line) = &f.log {
                    log_line(line);
                }
                shared.metrics.count_all(&f.events);
                self.watch_logout = f.identified();
                self.response_set_cookies = f.response_set_cookies;
                if resume {
                    let _ = hostcalls::resume_http_request();
                }
                Action::Continue
            }
            Decision::Respond(r) => {
                send(shared, &r);
                Action::Pause
            }
            Decision::Call(call) => {
                let call = *call;
                let mut headers: Vec<(&str, &str)> =
                    vec![(":method", call.method), (":path", &call.path), (":authority", &call.authority)];
                headers.extend(call.headers.iter().map(|(n, v)| (*n, v.as_str())));
                let sent = hostcalls::dispatch_http_call(
                    &call.cluster,
                    headers,
                    call.body.as_deref(),
                    vec![],
                    Duration::from_millis(call.timeout_ms),
                );
                match sent {
                    Ok(token) => {
                        self.pending = Some((token, call.pending));
                        Action::Pause
                    }
                    Err(status) => {
                        log(LogLevel::Error, &format!("could not call cluster {}: {status:?}", call.cluster));
                        let next = self.resume_core(shared, call.pending, CallOutcome::Failed);
                        self.apply(shared, next, resume)
                    }
                }
            }
        }
    }

    fn resume_core(&self, shared: &Shared, pending: Pending, outcome: CallOutcome<'_>) -> Decision {
        // Keys another worker fetched meanwhile spare this login a fetch.
        shared.sync_keys();
        let mut rng = HostEntropy;
        let Ok(mut keys) = shared.keys.try_borrow_mut() else {
            // Cannot happen in a single-threaded VM; an empty cache fails the login safely.
            return shared.gate.on_call_response(pending, outcome, now(), &mut rng, &mut KeyCache::default());
        };
        let before = keys.version();
        let decision = shared.gate.on_call_response(pending, outcome, now(), &mut rng, &mut keys);
        if keys.version() != before {
            // This login fetched the keys (an unknown kid): share them.
            let source = keys.source().map(<[u8]>::to_vec);
            drop(keys);
            if let Some(source) = source {
                shared.publish(Ok(&source));
                shared.metrics.count(Event::JwksRefreshed);
            }
        }
        decision
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(shared) = self.shared.clone() else {
            self.unavailable();
            return;
        };
        let pending = match self.pending.take() {
            Some((expected, pending)) if expected == token_id => pending,
            other => {
                self.pending = other;
                log(LogLevel::Warn, &format!("answer for unknown call {token_id} ignored"));
                return;
            }
        };
        let (status, body) = call_answer(num_headers, body_size);
        let outcome = match status {
            Some(status) => CallOutcome::Answered { status, body: &body },
            None => CallOutcome::Failed,
        };
        let next = self.resume_core(&shared, pending, outcome);
        self.apply(&shared, next, true);
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else { return self.unavailable() };
        let Ok(raw) = hostcalls::get_map_bytes(MapType::HttpRequestHeaders) else { return self.unavailable() };
        // Values are bytes on the wire; invalid UTF-8 must not trap the VM. Valid values (all
        // of them, in practice) are used in place; the rest are copied, repaired.
        let values: Vec<Cow<'_, str>> = raw.iter().map(|(_, v)| String::from_utf8_lossy(v)).collect();
        let headers: Vec<(&str, &str)> = raw.iter().zip(&values).map(|((n, _), v)| (n.as_str(), v.as_ref())).collect();
        let find = |name: &str| headers.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| *v);
        let request = Request { method: find(":method"), path: find(":path"), headers: &headers };
        let decision = shared.gate.on_request(&request, now(), &mut HostEntropy);
        // Client copies of identity headers never go upstream. The core never reads them, so
        // they are removed when a request is forwarded, and only where setting the verified
        // header (which replaces every copy) does not already do it: on the common request
        // with no forged header this costs no host call.
        if let Decision::Forward(f) = &decision {
            let mut removed: Vec<&str> = Vec::new();
            for (name, _) in &headers {
                let replaced = f.set.iter().any(|(n, _)| n == name);
                if !replaced && shared.gate.is_identity_header(name) && !removed.contains(name) {
                    removed.push(name);
                    if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None).is_err() {
                        return refuse("could not remove a client identity header; refusing the request");
                    }
                }
            }
        }
        self.apply(&shared, decision, false)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.watch_logout {
            if let Some(shared) = self.shared.clone() {
                let asked =
                    hostcalls::get_map_value(MapType::HttpResponseHeaders, shared.gate.logout_response_header());
                if matches!(asked, Ok(Some(_))) {
                    send(&shared, &shared.gate.on_app_logout());
                    return Action::Pause;
                }
            }
        }
        for cookie in self.response_set_cookies.drain(..) {
            let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", &cookie);
        }
        Action::Continue
    }
}
