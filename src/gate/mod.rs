//! The decision engine: for each request, each answer of a call it asked for, and each
//! answer of the application, one decision. This is where configuration, rules, sessions,
//! login flows and OpenID Connect meet; the host adapters only carry out what it decides.
//!
//! `sites` holds the gate: which of its sites serves a request, and the answer when none
//! does; `mod.rs` one site's request path, the [`Portal`]; `decision` the values they return;
//! `request` what it is told of a request; `login` the login from the redirect to the
//! session; `upstream` the forwarded request's way there and back; `keys` keeping the
//! provider's keys fresh; `store` the store the host's workers share; `ledger` the login
//! attempts already spent, kept there; `failsafe` the answers when the host fails; `events`
//! what gets counted; `known` the cache of opened session cookies; `register` the lines of
//! the access register.

mod decision;
mod events;
mod failsafe;
mod keys;
mod known;
mod ledger;
mod login;
mod register;
mod request;
mod sites;
mod store;
mod upstream;

pub use decision::{
    AnswerChange, Call, CallOutcome, CookieHeader, Decision, Forward, Level, LogLine, Outbound, Response, Upstream,
    UpstreamAnswer,
};
pub use events::{Event, Events, FailGroup, FailReason};
pub use failsafe::{fail_closed, HostFailure};
pub use keys::KeyPoll;
pub use known::{Asserted, Known, KnownSessions, GENERATION};
pub use login::Pending;
pub use register::{access_line, utc, Record};
pub use request::{Entropy, EntropyUnavailable, Request};
pub use sites::Gate;
pub use store::{MemoryStore, SharedStore, StoreError};

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::config::{Config, Endpoint};
use crate::policy::{self, MigrationMode, RuleAction};
use crate::primitives::run;
use crate::primitives::seal::{KeyRing, NONCE_LEN};
use crate::protocol::assertion::AssertionSettings;
use crate::protocol::session::Session;
use crate::web::cookies::{self, CookieAttrs};
use crate::web::headers::IdentityHeaders;
use crate::web::pages;
use failsafe::reference;
use ledger::Ledger;
use request::split_query;

/// The name of a gate's ledger of spent login attempts in the shared store (each shard's value
/// adds `/<shard>`): the token endpoint and the client, since what the ledger bounds is token
/// calls made with this client's credentials. Gates that share them (two listeners with one
/// configuration) share the ledger, so a flow cookie one accepts cannot buy a second call at
/// the other; gates for other clients keep theirs apart, so one's load never fills another's.
/// `v1` is the value's format: a gate that writes another uses another name.
fn ledger_name(config: &Config) -> String {
    format!("claveunica_gate.spent.v1 {} {}", config.endpoints.token.url, config.client_id)
}

/// The request's `X-Request-Id`, for the register: Envoy gives every request one.
fn request_id(req: &Request<'_>) -> Option<String> {
    req.header_values("x-request-id").next().map(|id| run::mask_runs(id).chars().take(128).collect())
}

/// The canary cookie: the sticky per-browser choice in canary mode.
const CANARY_COOKIE: &str = "claveunica_canary";
/// How long a browser keeps its canary choice.
const CANARY_MAX_AGE_S: u64 = 30 * 24 * 3600;
/// An idle-timed session is resealed (its last-seen time moved) at most this often.
const RESEAL_INTERVAL_S: u64 = 60;

/// What the request's cookies say about a ClaveÚnica session.
enum SessionState {
    Valid {
        known: Arc<Known>,
        reseal: bool,
    },
    Expired,
    Rejected,
    /// Session cookies that open to different people (one tossed in by a sibling site or a
    /// deeper `Path`): none of them is served.
    Conflict,
    Absent,
}

/// One site of the gate: its compiled configuration, its prepared keys, its cache of opened
/// sessions, and the ledger of the login attempts it spent. [`Gate`] picks the one that serves
/// a request.
#[derive(Debug)]
pub(crate) struct Portal {
    config: Config,
    ring: KeyRing,
    attrs: CookieAttrs,
    canary_cookie: String,
    known: KnownSessions,
    ledger: Ledger,
    /// The identity headers of every site of the gate: a client's copy of any of them never
    /// reaches an application, whichever site forwards it (two sites may well share one).
    identity_names: Arc<[IdentityHeaders]>,
}

impl Portal {
    /// Prepares a site. The default site (no hosts: the only site of a document without
    /// `sites`) seals as a gate always has, so its sessions survive the upgrade; a named site
    /// seals with keys bound to its callback, so its cookies never open at another site even
    /// when both share `session_keys`.
    fn build(
        config: Config,
        store: Arc<dyn SharedStore + Send + Sync>,
        identity_names: Arc<[IdentityHeaders]>,
    ) -> Self {
        let ring = if config.hosts.is_empty() {
            KeyRing::new(&config.session_keys)
        } else {
            KeyRing::for_site(&config.session_keys, &config.redirect_uri)
        };
        let attrs = CookieAttrs { secure: config.secure_cookies };
        let canary_cookie = format!("{}{CANARY_COOKIE}", if config.secure_cookies { "__Host-" } else { "" });
        let ledger = Ledger::new(store, ledger_name(&config));
        Self { config, ring, attrs, canary_cookie, known: KnownSessions::default(), ledger, identity_names }
    }

    fn is_gate_cookie(&self, name: &str) -> bool {
        name == self.config.session.cookie_name
            || name.starts_with(&self.config.flow.cookie_prefix)
            || name == self.canary_cookie
    }

    /// Decides what to do with a request whose headers have arrived.
    pub fn on_request(&self, req: &Request<'_>, now: u64, rng: &mut dyn Entropy) -> Decision {
        let mut d = self.decide(req, now, rng);
        if let Decision::Respond(Response { register: Some(record), .. }) = &mut d {
            record.request_id = request_id(req);
            record.time = now;
        }
        d
    }

    fn decide(&self, req: &Request<'_>, now: u64, rng: &mut dyn Entropy) -> Decision {
        let (path, query) = split_query(req.path);
        if path == self.config.callback_path {
            return self.callback(req, query, now, rng);
        }
        if path == self.config.logout_path {
            return self.logout(req, now);
        }
        if let Some(assertion) = self.config.assertion.as_ref().filter(|a| a.jwks_path == path) {
            return jwks(req, assertion);
        }
        if path == self.config.login_path {
            let return_to =
                url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "return_to").map(|(_, v)| v);
            return match return_to {
                None if self.config.button_page => self.button_page(req, "/", Vec::new(), Events::default()),
                _ => {
                    let return_to = return_to.unwrap_or_else(|| "/".into());
                    self.start_login(req, &return_to, now, rng, Vec::new(), Events::default())
                }
            };
        }
        let action = policy::action_for(&self.config.rules, req.method, path);
        if action == RuleAction::Public {
            return self.forward_anonymous(req, Vec::new(), Events::default());
        }
        let name = &self.config.session.cookie_name;
        let (mut events, mut set_cookies) = match self.session(req, now) {
            SessionState::Valid { known, reseal } => return self.forward_identified(req, &known, reseal, now, rng),
            SessionState::Expired => (Events::one(Event::SessionExpired), vec![self.attrs.delete(name)]),
            SessionState::Rejected => (Events::one(Event::SessionRejected), vec![self.attrs.delete(name)]),
            // A cookie tossed in at a deeper `Path` is only cleared at that path: clear it at
            // every path this request's cookies could have come from, or the next request
            // meets the same conflict after the login.
            SessionState::Conflict => (Events::one(Event::SessionRejected), self.attrs.delete_on_paths(name, path)),
            SessionState::Absent => (Events::default(), Vec::new()),
        };
        if action == RuleAction::Optional {
            return self.forward_anonymous(req, set_cookies, events);
        }
        let migration = &self.config.migration;
        match migration.mode {
            MigrationMode::Enforce => self.require_login(req, now, rng, set_cookies, events),
            MigrationMode::Parallel => {
                events.push(Event::MigrationPassThrough(MigrationMode::Parallel));
                self.forward_anonymous(req, set_cookies, events)
            }
            MigrationMode::ReportOnly => {
                events.push(Event::ReportOnlyWouldLogin);
                events.push(Event::MigrationPassThrough(MigrationMode::ReportOnly));
                let mut d = self.forward_anonymous(req, set_cookies, events);
                if let Decision::Forward(f) = &mut d {
                    f.log = Some(LogLine {
                        level: Level::Info,
                        message: format!(
                            "report_only: would require a ClaveÚnica login for {} {}",
                            run::mask_runs(req.method),
                            run::mask_runs(path)
                        ),
                    });
                }
                d
            }
            MigrationMode::Canary => {
                let has_legacy = req.cookies().any(|(n, _)| migration.legacy_cookies.iter().any(|l| l == n));
                let chosen = match req.cookies().find(|(n, _)| *n == self.canary_cookie).map(|(_, v)| v) {
                    _ if has_legacy => false,
                    Some("1") => true,
                    Some("0") => false,
                    _ => {
                        // A new browser: draw once, and remember the draw.
                        let mut byte = [0u8; 2];
                        let draw = rng.fill(&mut byte).map(|()| u16::from_le_bytes(byte) % 100).unwrap_or(u16::MAX);
                        let chosen = draw < u16::from(migration.canary_percent);
                        let value = if chosen { "1" } else { "0" };
                        set_cookies.push(self.attrs.set(&self.canary_cookie, value, CANARY_MAX_AGE_S));
                        chosen
                    }
                };
                if chosen {
                    self.require_login(req, now, rng, set_cookies, events)
                } else {
                    events.push(Event::MigrationPassThrough(MigrationMode::Canary));
                    self.forward_anonymous(req, set_cookies, events)
                }
            }
        }
    }

    /// A request on an enforced path without a session: a 401 for API clients, a login for
    /// browsers (or the page with the ClaveÚnica button, when configured).
    #[inline(never)]
    fn require_login(
        &self,
        req: &Request<'_>,
        now: u64,
        rng: &mut dyn Entropy,
        set_cookies: Vec<String>,
        mut events: Events,
    ) -> Decision {
        let api = policy::is_api_request(req.headers.iter().copied());
        if !api && self.config.button_page {
            return self.button_page(req, req.path, set_cookies, events);
        }
        if !api {
            return self.start_login(req, req.path, now, rng, set_cookies, events);
        }
        events.push(Event::ApiUnauthorized);
        let login_url = self.login_href(req.path);
        let body = serde_json::json!({
            "error": "login_required",
            "message": "Se requiere iniciar sesión con ClaveÚnica.",
            "login_url": login_url,
        })
        .to_string();
        let mut headers = vec![
            ("content-type", "application/json; charset=utf-8".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        headers.extend(set_cookies.into_iter().map(|c| ("set-cookie", c)));
        Decision::Respond(Response { status: 401, headers, body, log: None, events, register: None })
    }

    /// The request's ClaveÚnica session, as its cookies say. Every session cookie is opened:
    /// two that open to different people are a conflict, never one of them picked, since the
    /// browser's order is the attacker's to choose (a longer `Path` comes first).
    fn session(&self, req: &Request<'_>, now: u64) -> SessionState {
        let mut state = SessionState::Absent;
        let mut valid: Option<(Arc<Known>, bool)> = None;
        let idle_timeout_s = self.config.session.idle_timeout_s;
        for (name, value) in req.cookies() {
            if name != self.config.session.cookie_name {
                continue;
            }
            let Some(known) = self.known_session(value) else {
                if !matches!(state, SessionState::Expired) {
                    state = SessionState::Rejected;
                }
                continue;
            };
            if known.session.is_over(now, idle_timeout_s) {
                state = SessionState::Expired;
                continue;
            }
            let idle_reseal =
                idle_timeout_s.is_some() && now.saturating_sub(known.session.last_seen()) >= RESEAL_INTERVAL_S;
            let reseal = known.stale_key || idle_reseal;
            match &valid {
                None => valid = Some((known, reseal)),
                Some((first, _)) if first.session.identity().run() == known.session.identity().run() => {}
                Some(_) => return SessionState::Conflict,
            }
        }
        match valid {
            Some((known, reseal)) => SessionState::Valid { known, reseal },
            None => state,
        }
    }

    /// What a session cookie value opens to: from the cache when this gate opened it before.
    fn known_session(&self, value: &str) -> Option<Arc<Known>> {
        if let Some(known) = self.known.get(value) {
            return Some(known);
        }
        let (session, stale_key) = Session::unseal(&self.ring, value)?;
        let pseudonym: Option<Arc<str>> =
            self.config.pseudonym.as_ref().map(|p| Arc::from(p.of(&session.identity().run())));
        let headers = Arc::from(self.config.headers.render(session.identity(), pseudonym.as_deref()));
        let subject = Arc::from(self.config.access_log.name(&session.identity().run()));
        let asserted = Mutex::default();
        let known = Arc::new(Known { session, stale_key, headers, subject, pseudonym, asserted });
        self.known.insert(value, Arc::clone(&known));
        Some(known)
    }

    /// The `Cookie` header upstream, without the gate's cookies.
    fn cookie_header(&self, req: &Request<'_>) -> CookieHeader {
        if !req.cookies().any(|(n, _)| self.is_gate_cookie(n)) {
            return CookieHeader::Unchanged;
        }
        match cookies::without(req.header_values("cookie"), |n| self.is_gate_cookie(n)) {
            Some(rest) => CookieHeader::Replace(rest),
            None => CookieHeader::Remove,
        }
    }

    fn forward_anonymous(&self, req: &Request<'_>, set_cookies: Vec<String>, events: Events) -> Decision {
        Decision::Forward(Forward {
            remove: self.removals(req, &[]),
            set: Arc::from(Vec::new()),
            cookie: self.cookie_header(req),
            upstream: Upstream { identified: false, record: None, set_cookies, site: 0 },
            events,
            log: None,
            access: None,
        })
    }

    fn forward_identified(
        &self,
        req: &Request<'_>,
        known: &Known,
        reseal: bool,
        now: u64,
        rng: &mut dyn Entropy,
    ) -> Decision {
        let session = &known.session;
        if let Some(allowed) = &self.config.allowed_runs {
            if !allowed.contains(&session.identity().run()) {
                return self.forbidden(req, session, rng);
            }
        }
        // Should the application's answer ask for a logout, the register's record of it.
        let record = Record {
            subject: Some(known.subject.to_string()),
            reason: Some("application"),
            request_id: request_id(req),
            time: now,
            ..Record::new("logout")
        };
        let set = match &self.config.assertion {
            None => Arc::clone(&known.headers),
            Some(assertion) => match asserted(known, assertion, now, rng) {
                Some(set) => set,
                // Forwarding without it would hand the application a request it cannot
                // verify, and one it may be told to refuse: fail closed instead.
                None => return Decision::Respond(fail_closed(HostFailure::Internal, "assertion not signed", rng)),
            },
        };
        let mut set_cookies = Vec::new();
        if reseal {
            set_cookies.extend(self.seal_session(&session.touched(now), rng));
        }
        Decision::Forward(Forward {
            remove: self.removals(req, &set),
            set,
            cookie: self.cookie_header(req),
            upstream: Upstream { identified: true, record: Some(Box::new(record)), set_cookies, site: 0 },
            events: Events::one(Event::SessionAccepted),
            log: None,
            access: Some(Arc::clone(&known.subject)),
        })
    }

    /// A RUN outside the pilot list: nothing forwarded, the gate's session ends, and the page
    /// takes the browser through ClaveÚnica's logout, as ClaveÚnica's manual asks of a service
    /// that does not know the RUN that logged in (else ClaveÚnica's single sign-on would log the
    /// same person straight back in).
    fn forbidden(&self, req: &Request<'_>, session: &Session, rng: &mut dyn Entropy) -> Decision {
        let reference = reference(rng);
        let fallback = self.config.post_logout_redirect.as_deref().unwrap_or("/");
        let body = pages::forbidden(&self.config.agency, &self.provider_logout_url(), fallback, &reference);
        let mut headers =
            vec![("content-type", "text/html; charset=utf-8".to_string()), ("cache-control", "no-store".to_string())];
        let (path, _) = split_query(req.path);
        let ended = self.attrs.delete_on_paths(&self.config.session.cookie_name, path);
        headers.extend(ended.into_iter().map(|c| ("set-cookie", c)));
        Decision::Respond(Response {
            status: 403,
            headers,
            body,
            log: Some(LogLine {
                level: Level::Warn,
                message: format!(
                    "forbidden: run={} is not in allowed_runs; session ended, logging out at ClaveÚnica ref={reference}",
                    session.identity().run().masked()
                ),
            }),
            events: Events::one(Event::Forbidden),
            register: Some(Record {
                subject: Some(self.config.access_log.name(&session.identity().run())),
                reason: Some("not_in_allowed_runs"),
                reference: Some(reference),
                ..Record::new("refused")
            }),
        })
    }

    pub(crate) fn seal_session(&self, session: &Session, rng: &mut dyn Entropy) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).ok()?;
        let value = session.seal(&self.ring, nonce)?;
        let max_age = session.expires_at().saturating_sub(session.last_seen().max(session.issued_at()));
        Some(self.attrs.set(&self.config.session.cookie_name, &value, max_age))
    }

    /// The URL of ClaveÚnica's logout, with `redirect` when configured.
    fn provider_logout_url(&self) -> String {
        let mut provider = self.config.endpoints.logout.clone();
        if let Some(target) = &self.config.post_logout_redirect {
            provider.push(if provider.contains('?') { '&' } else { '?' });
            provider.push_str("redirect=");
            provider.extend(url::form_urlencoded::byte_serialize(target.as_bytes()));
        }
        provider
    }

    fn logout_response(
        &self,
        status: u16,
        extra_cookies: Vec<String>,
        log: LogLine,
        events: Events,
        register: Record,
    ) -> Response {
        let fallback = self.config.post_logout_redirect.as_deref().unwrap_or("/");
        let mut headers = vec![
            ("content-type", "text/html; charset=utf-8".to_string()),
            ("cache-control", "no-store".to_string()),
            ("set-cookie", self.attrs.delete(&self.config.session.cookie_name)),
        ];
        headers.extend(extra_cookies.into_iter().map(|c| ("set-cookie", c)));
        let body = pages::logout(&self.config.agency, &self.provider_logout_url(), fallback);
        Response { status, headers, body, log: Some(log), events, register: Some(register) }
    }

    #[inline(never)]
    fn logout(&self, req: &Request<'_>, now: u64) -> Decision {
        let (who, subject) = match self.session(req, now) {
            SessionState::Valid { known, .. } => {
                (known.session.identity().run().masked(), Some(known.subject.to_string()))
            }
            _ => ("-".to_string(), None),
        };
        // Any login attempts in flight end too.
        let mut deleted: Vec<String> = req
            .cookies()
            .filter(|(name, _)| name.starts_with(&self.config.flow.cookie_prefix))
            .map(|(name, _)| self.attrs.delete(name))
            .collect();
        // Session cookies beside the one at `/` (the response deletes that one), tossed in at
        // a deeper path, go too.
        let (path, _) = split_query(req.path);
        deleted.extend(self.attrs.delete_on_paths(&self.config.session.cookie_name, path).into_iter().skip(1));
        let log = LogLine { level: Level::Info, message: format!("logout run={who}") };
        let record = Record { subject, ..Record::new("logout") };
        Decision::Respond(self.logout_response(200, deleted, log, Events::one(Event::Logout), record))
    }

    /// A request to one of the provider's endpoints.
    fn outbound(
        &self,
        method: &'static str,
        endpoint: &Endpoint,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
    ) -> Outbound {
        let scheme = if endpoint.url.starts_with("http:") { "http" } else { "https" };
        Outbound {
            method,
            scheme,
            authority: endpoint.authority.clone(),
            path: endpoint.path.clone(),
            headers,
            body,
            timeout_ms: self.config.timeout_ms,
        }
    }
}

/// The headers to set for a session with the signed assertion: the one signed for it before,
/// while it is fresh, else a new one (kept for the next requests). `None` when it cannot be
/// signed (no randomness for its id, or no signature).
fn asserted(
    known: &Known,
    assertion: &AssertionSettings,
    now: u64,
    rng: &mut dyn Entropy,
) -> Option<Arc<[(String, String)]>> {
    if let Ok(slot) = known.asserted.lock() {
        // A clock that went back would make a kept assertion look issued in the future.
        if let Some(kept) = slot.as_ref().filter(|k| (k.issued_at..k.renew_at).contains(&now)) {
            return Some(Arc::clone(&kept.set));
        }
    }
    let mut id = [0u8; 16];
    rng.fill(&mut id).ok()?;
    // Never outliving the session it speaks for.
    let expires_at = now.saturating_add(assertion.lifetime_s).min(known.session.expires_at());
    let jti = URL_SAFE_NO_PAD.encode(id);
    let token = assertion.sign(known.session.identity(), known.pseudonym.as_deref(), now, expires_at, jti)?;
    let mut set = known.headers.to_vec();
    set.push((assertion.header.clone(), token));
    let set: Arc<[(String, String)]> = set.into();
    // Renewed a little before it expires, so no request carries one about to lapse on its way.
    let margin = (assertion.lifetime_s / 4).min(60);
    if let Ok(mut slot) = known.asserted.lock() {
        *slot = Some(Asserted { set: Arc::clone(&set), issued_at: now, renew_at: expires_at.saturating_sub(margin) });
    }
    Some(set)
}

/// The gate's public keys, for whoever verifies its assertions (a sidecar's `jwt_authn`, Istio's
/// `RequestAuthentication`, the application): to anyone, cacheable for a few minutes, so a
/// verifier picks up a new key well before it signs (keys are published before they sign).
#[inline(never)]
fn jwks(req: &Request<'_>, assertion: &AssertionSettings) -> Decision {
    let (status, body, mut headers) = if matches!(req.method, "GET" | "HEAD") {
        (
            200,
            assertion.jwks(),
            vec![
                ("content-type", "application/json".to_string()),
                ("cache-control", "public, max-age=300".to_string()),
            ],
        )
    } else {
        (405, String::new(), vec![("allow", "GET, HEAD".to_string())])
    };
    headers.push(("x-content-type-options", "nosniff".to_string()));
    Decision::Respond(Response { status, headers, body, log: None, events: Events::default(), register: None })
}

#[cfg(test)]
mod tests;
