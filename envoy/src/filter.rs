//! proxy-wasm's root and HTTP contexts over the core. Each callback reads the host's facts,
//! asks the core, and carries out its decision with host calls; nothing is decided here.
//!
//! The root context of each worker loads the configuration and ticks once a second, asking
//! the core about the provider's keys (kept for all workers in shared data). Each request gets
//! an HTTP context that holds, between callbacks, the login step waiting for a call's answer
//! or the continuation waiting for the application's answer.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use claveunica_core::config::{Config, EnvoySettings};
use claveunica_core::gate::{
    fail_closed, AnswerChange, CallOutcome, CookieHeader, Decision, Event, Gate, HostFailure, Level, Outbound, Pending,
    Request, Response, Upstream, UpstreamAnswer,
};
use claveunica_core::protocol::oidc::jwks::KeyCache;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, MapType};

use proxy_wasm::hostcalls;

use crate::abi;
use crate::call;
use crate::host::{self, HeaderMap, HostEntropy, Metrics, SharedData};

/// The property (filter state `wasm.claveunica_gate.subject`) that holds the person an
/// identified request went upstream for, as the core names them for the access register:
/// Envoy's access log records it (`envoy/production.yaml`, `envoy/README.md`).
const SUBJECT_PROPERTY: &str = "claveunica_gate.subject";

/// The tick, in milliseconds: once a second.
const TICK_MS: u32 = 1000;

/// What every context of this plugin in this VM shares.
struct Shared {
    gate: Gate,
    /// The Envoy cluster that reaches the provider.
    cluster: String,
    keys: RefCell<KeyCache>,
    metrics: Metrics,
    /// The time requests are judged at, in seconds: the host's clock read once a tick rather
    /// than once a request, since a host call costs about as much as the core's own work on an
    /// authenticated request (benches/PROFILE.md). It lags the clock by at most a tick (one
    /// second, the resolution lifetimes are counted in). `None` while ticks are not delivered
    /// (the tick period could not be set): then every request reads the clock, so time never
    /// stands still and a session always expires.
    ticked_now: Cell<Option<u64>>,
}

impl Shared {
    /// The time a request is judged at.
    fn now(&self) -> u64 {
        self.ticked_now.get().unwrap_or_else(host::now)
    }
}

/// Sends a request to the provider through the cluster; the token of the call, or why not.
fn dispatch(cluster: &str, request: &Outbound) -> Result<u32, String> {
    // The SDK's helper, not `abi`: the dispatcher must learn the call's token (see abi.rs).
    hostcalls::dispatch_http_call(
        cluster,
        call::headers(request),
        request.body.as_deref(),
        vec![],
        Duration::from_millis(request.timeout_ms),
    )
    .map_err(|status| format!("could not call cluster {cluster}: {status:?}"))
}

/// Answers the request directly.
fn send(metrics: Option<&Metrics>, r: &Response) {
    host::log_line(r.log.as_ref());
    if let Some(record) = &r.register {
        host::log(Level::Info, &record.line());
    }
    if let Some(metrics) = metrics {
        metrics.count_all(&r.events);
    }
    let headers: Vec<(&str, &str)> = r.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    if let Err(status) = abi::send_local_response(u32::from(r.status), &headers, r.body.as_bytes()) {
        host::log(Level::Error, &format!("could not send a local response: {status:?}"));
    }
}

/// Fails closed: the core's answer for a host failure.
fn fail(failure: HostFailure, detail: &str) -> Action {
    send(None, &fail_closed(failure, detail, &mut HostEntropy));
    Action::Pause
}

/// A worker's root context: what the host creates first in each VM, and the maker of every
/// request's context.
pub fn root_context() -> Box<dyn RootContext> {
    Box::new(Root::default())
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
    /// The key refresh this root context has under way.
    fetching: Option<u32>,
}

impl Root {
    fn keys_answered(&mut self, shared: &Shared, outcome: CallOutcome<'_>) {
        let Ok(mut keys) = shared.keys.try_borrow_mut() else { return };
        let done = shared.gate.on_keys_answer(&mut keys, &SharedData, outcome, host::now());
        shared.metrics.count_all(&done.events);
        host::log_line(done.log.as_ref());
    }
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
        let (status, body) = host::call_answer(num_headers, body_size);
        let outcome = match status {
            Some(status) => CallOutcome::Answered { status, body: &body },
            None => CallOutcome::Failed,
        };
        self.keys_answered(&shared, outcome);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match abi::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                host::log(Level::Error, "invalid configuration: (document): no plugin configuration was given");
                return false;
            }
        };
        match Config::for_envoy(&bytes, &|name| std::env::var(name).ok()) {
            Ok((config, EnvoySettings { cluster })) => {
                host::log(
                    Level::Info,
                    &format!(
                        "configured: issuer={} cluster={cluster} callback={} migration={}",
                        config.issuer,
                        config.callback_path,
                        config.migration.mode.as_str()
                    ),
                );
                let shared = Rc::new(Shared {
                    // Shared data for the ledger of spent login attempts: a replayed callback
                    // makes no second token call on another worker.
                    gate: Gate::with_store(config, Arc::new(SharedData)),
                    cluster,
                    keys: RefCell::new(KeyCache::default()),
                    metrics: Metrics::default(),
                    ticked_now: Cell::new(None),
                });
                shared.metrics.count(Event::ConfigLoaded);
                if abi::set_tick_period_ms(TICK_MS).is_ok() {
                    shared.ticked_now.set(Some(host::now()));
                }
                self.shared = Some(shared);
                true
            }
            Err(e) => {
                // Refusing the configuration keeps a running proxy on its previous one, and
                // keeps a starting proxy from serving protected paths with a broken gate.
                host::log(Level::Error, &e.to_string());
                Metrics::default().count(Event::ConfigRejected);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else { return };
        shared.metrics.flush();
        let now = host::now();
        if shared.ticked_now.get().is_some() {
            shared.ticked_now.set(Some(now));
        }
        let poll = match shared.keys.try_borrow_mut() {
            Ok(mut keys) => shared.gate.poll_keys(&mut keys, &SharedData, now),
            Err(_) => return,
        };
        shared.metrics.count_all(&poll.events);
        host::log_line(poll.log.as_ref());
        let Some(request) = poll.fetch else { return };
        match dispatch(&shared.cluster, &request) {
            Ok(token) => self.fetching = Some(token),
            Err(why) => {
                host::log(Level::Error, &format!("{why} (jwks refresh)"));
                self.keys_answered(&shared, CallOutcome::Failed);
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { shared: self.shared.clone(), pending: None, upstream: None }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    shared: Option<Rc<Shared>>,
    /// The call under way and the login step waiting for it.
    pending: Option<(u32, Pending)>,
    /// The request went upstream: what the core does with the answer.
    upstream: Option<Upstream>,
}

impl Filter {
    /// Carries out a decision. `resume` says whether the request is paused (after a call) and
    /// must be resumed to go upstream.
    fn apply(&mut self, shared: &Shared, decision: Decision, resume: bool) -> Action {
        match decision {
            Decision::Forward(f) => {
                for name in &f.remove {
                    if let Err(status) = abi::remove_map_value(MapType::HttpRequestHeaders, name) {
                        return fail(HostFailure::HeaderRewrite, &format!("removing {name}: {status:?}"));
                    }
                }
                for (name, value) in f.set.iter() {
                    if let Err(status) = abi::set_map_value(MapType::HttpRequestHeaders, name, value.as_bytes()) {
                        return fail(HostFailure::HeaderRewrite, &format!("setting {name}: {status:?}"));
                    }
                }
                let cookie = match &f.cookie {
                    CookieHeader::Unchanged => Ok(()),
                    CookieHeader::Replace(v) => abi::set_map_value(MapType::HttpRequestHeaders, "cookie", v.as_bytes()),
                    CookieHeader::Remove => abi::remove_map_value(MapType::HttpRequestHeaders, "cookie"),
                };
                if let Err(status) = cookie {
                    return fail(HostFailure::HeaderRewrite, &format!("cookie: {status:?}"));
                }
                if let Some(subject) = &f.access {
                    // The access register: no access goes upstream unrecorded.
                    if let Err(status) = abi::set_property(SUBJECT_PROPERTY, subject.as_bytes()) {
                        return fail(HostFailure::Internal, &format!("access register: {status:?}"));
                    }
                }
                host::log_line(f.log.as_ref());
                shared.metrics.count_all(&f.events);
                self.upstream = Some(f.upstream);
                if resume {
                    let _ = abi::resume_request();
                }
                Action::Continue
            }
            Decision::Respond(r) => {
                send(Some(&shared.metrics), &r);
                Action::Pause
            }
            Decision::Call(call) => {
                let call = *call;
                host::log_line(call.log.as_ref());
                match dispatch(&shared.cluster, &call.request) {
                    Ok(token) => {
                        self.pending = Some((token, call.pending));
                        Action::Pause
                    }
                    Err(why) => {
                        host::log(Level::Error, &why);
                        let next = self.resume_core(shared, call.pending, CallOutcome::Failed);
                        self.apply(shared, next, resume)
                    }
                }
            }
        }
    }

    fn resume_core(&self, shared: &Shared, pending: Pending, outcome: CallOutcome<'_>) -> Decision {
        let Ok(mut keys) = shared.keys.try_borrow_mut() else {
            // Cannot happen in a single-threaded VM; an empty cache fails the login safely.
            return shared.gate.on_call_response(
                pending,
                outcome,
                host::now(),
                &mut HostEntropy,
                &mut KeyCache::default(),
            );
        };
        // Keys another worker fetched meanwhile spare this login a fetch.
        shared.gate.sync_keys(&mut keys, &SharedData);
        shared.gate.on_call_response(pending, outcome, host::now(), &mut HostEntropy, &mut keys)
    }
}

impl Context for Filter {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let Some(shared) = self.shared.clone() else {
            fail(HostFailure::NotConfigured, "");
            return;
        };
        let pending = match self.pending.take() {
            Some((expected, pending)) if expected == token_id => pending,
            other => {
                self.pending = other;
                host::log(Level::Warn, &format!("answer for unknown call {token_id} ignored"));
                return;
            }
        };
        let (status, body) = host::call_answer(num_headers, body_size);
        let outcome = match status {
            Some(status) => CallOutcome::Answered { status, body: &body },
            None => CallOutcome::Failed,
        };
        let next = self.resume_core(&shared, pending, outcome);
        let _ = self.apply(&shared, next, true);
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else { return fail(HostFailure::NotConfigured, "") };
        let map = match HeaderMap::read(MapType::HttpRequestHeaders) {
            Ok(map) => map,
            Err(status) => return fail(HostFailure::Internal, &format!("request headers: {status:?}")),
        };
        let decision = map.with_pairs(|headers| {
            let find = |name: &str| headers.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| *v);
            let request = Request { method: find(":method"), path: find(":path"), headers };
            shared.gate.on_request(&request, shared.now(), &mut HostEntropy)
        });
        self.apply(&shared, decision, false)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let Some(shared) = self.shared.clone() else { return fail(HostFailure::NotConfigured, "") };
        let map = match HeaderMap::read(MapType::HttpRequestTrailers) {
            Ok(map) => map,
            Err(status) => return fail(HostFailure::Internal, &format!("request trailers: {status:?}")),
        };
        for name in map.with_pairs(|trailers| shared.gate.on_request_trailers(trailers)) {
            if let Err(status) = abi::remove_map_value(MapType::HttpRequestTrailers, &name) {
                return fail(HostFailure::HeaderRewrite, &format!("removing trailer {name}: {status:?}"));
            }
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (Some(shared), Some(upstream)) = (self.shared.clone(), self.upstream.take()) else {
            return Action::Continue;
        };
        // Most answers (anonymous, or identified without a logout to watch for) need no read.
        let change = if upstream.reads_answer() {
            let map = HeaderMap::read(MapType::HttpResponseHeaders).unwrap_or_else(|_| HeaderMap::empty());
            map.with_pairs(|headers| {
                let status =
                    headers.iter().find(|(n, _)| *n == ":status").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
                shared.gate.on_upstream_response(upstream, &UpstreamAnswer { status, headers })
            })
        } else {
            shared.gate.on_upstream_response(upstream, &UpstreamAnswer::UNREAD)
        };
        match change {
            AnswerChange::Pass { set, add } => {
                for (name, value) in &set {
                    if let Err(status) = abi::set_map_value(MapType::HttpResponseHeaders, name, value.as_bytes()) {
                        // The answer is one person's and could not be marked so: not sent.
                        return fail(HostFailure::HeaderRewrite, &format!("setting {name}: {status:?}"));
                    }
                }
                for (name, value) in &add {
                    if let Err(status) = abi::add_map_value(MapType::HttpResponseHeaders, name, value.as_bytes()) {
                        host::log(Level::Error, &format!("could not add {name} to the answer: {status:?}"));
                    }
                }
                Action::Continue
            }
            AnswerChange::Replace(r) => {
                send(Some(&shared.metrics), &r);
                Action::Pause
            }
        }
    }
}
