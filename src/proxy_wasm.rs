//! Adapter for Envoy and Istio: proxy-wasm's root and HTTP contexts over the core.
//!
//! It only translates. Facts go in (headers, the host clock, WASI random bytes, call answers),
//! decisions come out and are carried out with host calls. It uses `hostcalls` directly rather
//! than the SDK's trait helpers, which `unwrap()` host results: a panic here would trap the
//! VM for every request on this worker.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::config::Config;
use crate::gate::{CallOutcome, CookieHeader, Decision, Entropy, EntropyUnavailable, Gate, Level, Pending, Request};
use crate::headers::is_identity_name;
use crate::oidc::jwks::KeyCache;
use crate::oidc::MAX_BODY_LEN;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

fn log(level: LogLevel, message: &str) {
    // Nothing sensible is left to do if logging itself fails.
    let _ = hostcalls::log(level, message);
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

/// What every HTTP context of this plugin shares: the gate and its JWKS cache.
struct Shared {
    gate: Gate,
    keys: RefCell<KeyCache>,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log(LogLevel::Error, "invalid configuration: (document): no plugin configuration was given");
                return false;
            }
        };
        match Config::from_json(&bytes, &|name| std::env::var(name).ok()) {
            Ok(config) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "configured: issuer={} cluster={} callback={}",
                        config.issuer, config.cluster, config.callback_path
                    ),
                );
                self.shared =
                    Some(Rc::new(Shared { gate: Gate::new(config), keys: RefCell::new(KeyCache::default()) }));
                true
            }
            Err(e) => {
                // Refusing the configuration keeps a running proxy on its previous one, and
                // keeps a starting proxy from serving protected paths with a broken gate.
                log(LogLevel::Error, &e.to_string());
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter { shared: self.shared.clone(), pending: None, response_set_cookie: None }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    shared: Option<Rc<Shared>>,
    /// The call under way and the login step waiting for it.
    pending: Option<(u32, Pending)>,
    response_set_cookie: Option<String>,
}

fn level(l: Level) -> LogLevel {
    match l {
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    }
}

impl Filter {
    /// Fails closed: used only when the gate itself is missing.
    fn unavailable(&self) -> Action {
        log(LogLevel::Error, "no configuration loaded; refusing the request");
        let _ = hostcalls::send_http_response(
            503,
            vec![("content-type", "text/plain; charset=utf-8")],
            Some(b"Servicio no disponible\n"),
        );
        Action::Pause
    }

    /// Carries out a decision. `resume` says whether the request is paused (after a call) and
    /// must be resumed to go upstream.
    fn apply(&mut self, shared: &Shared, decision: Decision, resume: bool) -> Action {
        match decision {
            Decision::Forward(f) => {
                for (name, value) in &f.set {
                    if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value)).is_err() {
                        // Forwarding without the identity would hand the app an anonymous
                        // request on a protected path; refuse instead.
                        log(LogLevel::Error, "could not set identity headers; refusing the request");
                        let _ = hostcalls::send_http_response(500, vec![], Some(b"Error interno\n"));
                        return Action::Pause;
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
                    log(LogLevel::Error, "could not rewrite the cookie header; refusing the request");
                    let _ = hostcalls::send_http_response(500, vec![], Some(b"Error interno\n"));
                    return Action::Pause;
                }
                self.response_set_cookie = f.response_set_cookie;
                if resume {
                    let _ = hostcalls::resume_http_request();
                }
                Action::Continue
            }
            Decision::Respond(r) => {
                if let Some(line) = &r.log {
                    log(level(line.level), &line.message);
                }
                let headers: Vec<(&str, &str)> = r.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                if let Err(status) =
                    hostcalls::send_http_response(u32::from(r.status), headers, Some(r.body.as_bytes()))
                {
                    log(LogLevel::Error, &format!("could not send a local response: {status:?}"));
                }
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
        let mut rng = HostEntropy;
        match shared.keys.try_borrow_mut() {
            Ok(mut keys) => shared.gate.on_call_response(pending, outcome, now(), &mut rng, &mut keys),
            // Cannot happen in a single-threaded VM; an empty cache fails the login safely.
            Err(_) => shared.gate.on_call_response(pending, outcome, now(), &mut rng, &mut KeyCache::default()),
        }
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
        let outcome = match status {
            Some(status) if num_headers > 0 => CallOutcome::Answered { status, body: &body },
            _ => CallOutcome::Failed,
        };
        let next = self.resume_core(&shared, pending, outcome);
        self.apply(&shared, next, true);
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else { return self.unavailable() };
        let raw = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(raw) => raw,
            Err(_) => return self.unavailable(),
        };
        // Values are bytes on the wire; invalid UTF-8 must not trap the VM.
        let headers: Vec<(String, String)> =
            raw.into_iter().map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned())).collect();
        // Client copies of identity headers go first, on every path, whatever happens next.
        let mut removed: Vec<&str> = Vec::new();
        for (name, _) in &headers {
            if is_identity_name(name) && !removed.contains(&name.as_str()) {
                removed.push(name);
                if hostcalls::set_map_value(MapType::HttpRequestHeaders, name, None).is_err() {
                    log(LogLevel::Error, "could not remove a client identity header; refusing the request");
                    let _ = hostcalls::send_http_response(500, vec![], Some(b"Error interno\n"));
                    return Action::Pause;
                }
            }
        }
        let find = |name: &str| headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
        let request = Request { method: find(":method"), path: find(":path"), headers: &headers };
        let decision = shared.gate.on_request(&request, now(), &mut HostEntropy);
        self.apply(&shared, decision, false)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(cookie) = self.response_set_cookie.take() {
            let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, "set-cookie", &cookie);
        }
        Action::Continue
    }
}
