//! The login, from the redirect to ClaveÚnica to a sealed session: the flow cookie, the
//! callback, and the token, JWKS and userinfo calls, each a step that only the previous one
//! can produce.

use super::failsafe::reference;
use super::ledger::{Claimed, Refused, SHARD_CAPACITY};
use super::register::Record;
use super::{
    Call, CallOutcome, Decision, Entropy, Event, Events, FailGroup, FailReason, Level, LogLine, Portal, Request,
    Response,
};
use crate::config::Endpoint;
use crate::primitives::run;
use crate::primitives::seal::NONCE_LEN;
use crate::primitives::secret::SecretString;
use crate::protocol::flow::{self, Flow, FlowError, NONCE_BYTES, STATE_BYTES};
use crate::protocol::oidc::id_token::{self, Expectations, IdTokenError, VerifiedIdToken};
use crate::protocol::oidc::jwks::{self, KeyCache};
use crate::protocol::oidc::token::{self, TokenError, TokenResponse};
use crate::protocol::oidc::userinfo;
use crate::protocol::oidc::{authorize, MAX_BODY_LEN};
use crate::protocol::session::Session;
use crate::web::pages;
use crate::web::redirect;

/// The most login attempts a browser keeps in flight (tabs that each started a login); older
/// ones are dropped as new ones start.
pub const MAX_PENDING_FLOWS: usize = 3;
/// The most bytes of flow cookies (`name=value`) a browser is left with when a login starts,
/// unless the new attempt's cookie alone is larger: with a session cookie, well within the
/// 8 KB a proxy allows a request header by default.
pub const FLOW_COOKIE_BUDGET: usize = 4096;

/// A login waiting for a call's answer. Opaque: only the gate makes one, so an adapter cannot
/// skip a step.
#[derive(Debug)]
pub struct Pending {
    step: Step,
    /// Which of the gate's sites the login is for: the answer goes back to it.
    pub(super) site: usize,
}

#[derive(Debug)]
enum Step {
    Token(Box<Login>),
    Jwks(Box<Login>, TokenResponse),
    Userinfo(Box<Login>, VerifiedIdToken, SecretString),
}

#[derive(Debug)]
struct Login {
    flow: Flow,
    flow_cookie: String,
    /// The attempt is spent in the ledger: no token call without it.
    _spent: Claimed,
    /// This login fetched the provider's keys (its ID token named an unknown `kid`): counted
    /// with the login's outcome.
    fetched_keys: bool,
    /// The callback's `X-Request-Id`, for the register's record of the login's outcome.
    request_id: Option<String>,
}

/// The title and message of a failure's page.
fn page_text(group: FailGroup) -> (&'static str, &'static str) {
    match group {
        FailGroup::BadAttempt => (
            "Intento de ingreso no válido o vencido",
            "Este intento de ingreso con ClaveÚnica no es válido o ya expiró. Inicia sesión de nuevo.",
        ),
        FailGroup::Cancelled => {
            ("Ingreso cancelado", "No terminaste el ingreso con ClaveÚnica. Puedes intentarlo de nuevo.")
        }
        FailGroup::ProviderWrong => (
            "ClaveÚnica respondió con un error",
            "ClaveÚnica entregó una respuesta inesperada y no pudimos completar tu ingreso. Inténtalo de nuevo en \
unos minutos.",
        ),
        FailGroup::ProviderDown => (
            "ClaveÚnica no está disponible",
            "No pudimos comunicarnos con ClaveÚnica. Inténtalo de nuevo en unos minutos.",
        ),
        FailGroup::Internal => ("Ocurrió un error", "No pudimos procesar tu ingreso. Inténtalo de nuevo."),
        FailGroup::Busy => (
            "Ingreso no disponible por un momento",
            "No pudimos completar tu ingreso con ClaveÚnica en este momento. Espera unos segundos y vuelve a \
cargar esta página.",
        ),
    }
}

/// The provider endpoint a call went to, for naming its failures.
#[derive(Clone, Copy)]
enum Called {
    Token,
    Jwks,
    Userinfo,
}

impl Called {
    fn unreachable(self) -> FailReason {
        match self {
            Called::Token => FailReason::TokenUnreachable,
            Called::Jwks => FailReason::JwksUnreachable,
            Called::Userinfo => FailReason::UserinfoUnreachable,
        }
    }

    fn unavailable(self) -> FailReason {
        match self {
            Called::Token => FailReason::TokenUnavailable,
            Called::Jwks => FailReason::JwksUnavailable,
            Called::Userinfo => FailReason::UserinfoUnavailable,
        }
    }
}

/// A failure: its reason (which knows its group), a detail for the log only, and when to
/// come back, if the failure passes by itself.
#[derive(Debug)]
struct Failed {
    reason: FailReason,
    detail: String,
    retry_after_s: Option<u64>,
}

impl Failed {
    fn new(reason: FailReason) -> Self {
        Self { reason, detail: String::new(), retry_after_s: None }
    }

    fn with(reason: FailReason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into(), retry_after_s: None }
    }

    fn retry_after(self, seconds: u64) -> Self {
        Self { retry_after_s: Some(seconds), ..self }
    }
}

/// When to come back after the shared store failed or kept losing races: soon, since a race
/// is over in a moment, and a longer wait would not mend a store that keeps failing.
const STORE_RETRY_AFTER_S: u64 = 5;

impl Login {
    /// The events of the login's outcome.
    fn events(&self, outcome: Event) -> Events {
        let mut events = Events::one(outcome);
        if self.fetched_keys {
            events.push(Event::JwksRefreshed);
        }
        events
    }
}

impl Portal {
    /// A failure page, its log line, and any cookies to clear.
    fn fail(&self, failed: Failed, rng: &mut dyn Entropy, clear: &[&str], retry: Option<&str>) -> Decision {
        let Failed { reason, detail, retry_after_s } = failed;
        let group = reason.group();
        let reference = reference(rng);
        let (title, message) = page_text(group);
        let mut headers =
            vec![("content-type", "text/html; charset=utf-8".to_string()), ("cache-control", "no-store".to_string())];
        headers.extend(retry_after_s.map(|s| ("retry-after", s.to_string())));
        headers.extend(clear.iter().map(|name| ("set-cookie", self.attrs.delete(name))));
        let level = match group {
            FailGroup::BadAttempt | FailGroup::Cancelled => Level::Warn,
            _ => Level::Error,
        };
        // The detail is outside text (a provider's error code, a parser's words): no RUN in it.
        let detail = if detail.is_empty() { String::new() } else { format!(" detail={}", run::mask_runs(&detail)) };
        Decision::Respond(Response {
            status: group.status(),
            headers,
            body: pages::error(&self.config.agency, title, message, &reference, retry),
            log: Some(LogLine {
                level,
                message: format!(
                    "login failed: status={} reason={} ref={reference}{detail}",
                    group.status(),
                    reason.as_str()
                ),
            }),
            events: Events::one(Event::LoginFailed(reason)),
            register: Some(Record {
                reason: Some(reason.as_str()),
                reference: Some(reference),
                ..Record::new("refused")
            }),
        })
    }

    /// A 302 to ClaveÚnica with a new flow cookie. `set_cookies` and `events` come from what
    /// the request showed before (a session cookie to clear, a canary choice).
    #[inline(never)]
    pub(super) fn start_login(
        &self,
        req: &Request<'_>,
        wanted: &str,
        now: u64,
        rng: &mut dyn Entropy,
        set_cookies: Vec<String>,
        mut events: Events,
    ) -> Decision {
        if is_framed(req) {
            // ClaveÚnica's form must be a whole page with its address in view: never a redirect
            // inside the frame. The login starts again from the top window.
            let body = pages::frame_breakout(&self.config.agency, &self.login_href(wanted));
            return Decision::Respond(page_response(body, set_cookies, events));
        }
        let return_to = self.return_path(wanted);
        let mut state = [0u8; STATE_BYTES];
        let mut nonce = [0u8; NONCE_BYTES];
        let mut seal_nonce = [0u8; NONCE_LEN];
        let drawn = rng.fill(&mut state).and(rng.fill(&mut nonce)).and(rng.fill(&mut seal_nonce));
        if drawn.is_err() {
            return self.fail(Failed::new(FailReason::EntropyUnavailable), rng, &[], None);
        }
        let flow = Flow::new(state, nonce, return_to.to_string(), now);
        let Some(sealed) = flow.seal(&self.ring, seal_nonce) else {
            return self.fail(Failed::new(FailReason::SealFailed), rng, &[], None);
        };
        let name = flow.cookie_name(&self.config.flow.cookie_prefix);
        let mut headers = vec![
            ("location", authorize::authorize_url(&self.config, &flow)),
            ("set-cookie", self.attrs.set(&name, &sealed, self.config.flow.max_age_s)),
            ("cache-control", "no-store".to_string()),
        ];
        headers.extend(set_cookies.into_iter().map(|c| ("set-cookie", c)));
        let mut dropped = self.older_attempts_to_drop(req, name.len() + sealed.len());
        dropped.retain(|n| *n != name);
        headers.extend(dropped.iter().map(|n| ("set-cookie", self.attrs.delete(n))));
        events.push(Event::LoginStarted);
        Decision::Respond(Response { status: 302, headers, body: String::new(), log: None, events, register: None })
    }

    /// The page with the ClaveÚnica button, whose button starts a login that comes back to
    /// `wanted`; inside a frame, the page that takes the top window there instead.
    #[inline(never)]
    pub(super) fn button_page(
        &self,
        req: &Request<'_>,
        wanted: &str,
        set_cookies: Vec<String>,
        events: Events,
    ) -> Decision {
        let href = self.login_href(wanted);
        let body = if is_framed(req) {
            pages::frame_breakout(&self.config.agency, &href)
        } else {
            pages::button_page(&self.config.agency, &href, self.config.legacy_login.as_deref())
        };
        Decision::Respond(page_response(body, set_cookies, events))
    }

    /// The login path with the return path a login for `wanted` comes back to.
    pub(super) fn login_href(&self, wanted: &str) -> String {
        format!(
            "{}?return_to={}",
            self.config.login_path,
            url::form_urlencoded::byte_serialize(self.return_path(wanted).as_bytes()).collect::<String>()
        )
    }

    /// The browser's login attempts in flight to drop as a new one (its cookie `new_len`
    /// bytes) starts, so that starting logins again and again (each with a long return path)
    /// cannot grow the `Cookie` header until the site, and the logout, answer 431. The newest
    /// are kept while at most [`MAX_PENDING_FLOWS`] attempts and [`FLOW_COOKIE_BUDGET`] bytes
    /// of them, the new one included; attempts whose cookie does not open go first.
    fn older_attempts_to_drop<'a>(&self, req: &Request<'a>, new_len: usize) -> Vec<&'a str> {
        let prefix = &self.config.flow.cookie_prefix;
        let mut pending: Vec<(Option<u64>, &'a str, usize)> = req
            .cookies()
            .filter(|(n, _)| n.starts_with(prefix.as_str()))
            .map(|(n, v)| (flow::started_at(&self.ring, v), n, n.len() + v.len()))
            .collect();
        // Newest first; those that do not open last (`None` sorts lowest).
        pending.sort_by_key(|p| std::cmp::Reverse(p.0));
        let (mut kept, mut bytes) = (1, new_len);
        let mut dropped = Vec::new();
        for (started, name, len) in pending {
            if started.is_some() && kept < MAX_PENDING_FLOWS && bytes.saturating_add(len) <= FLOW_COOKIE_BUDGET {
                kept += 1;
                bytes += len;
            } else if !dropped.contains(&name) {
                dropped.push(name);
            }
        }
        dropped
    }

    /// A same-origin path that lands on none of the gate's own, or `/`.
    ///
    /// A login that ended on the logout path would end the session it just made; on the login
    /// or callback path, it would start over or fail. So a return path is compared with them as
    /// a browser and a lenient server would read it (no fragment, decoded, any letter case,
    /// path parameters dropped), and one with dot segments, which could resolve to them,
    /// becomes `/` too.
    pub(super) fn return_path<'a>(&self, wanted: &'a str) -> &'a str {
        let Some(p) = redirect::same_origin_path(wanted) else { return "/" };
        let Some(landing) = redirect::landing_path(p) else { return "/" };
        let ours = [&self.config.callback_path, &self.config.login_path, &self.config.logout_path];
        let ours = ours.iter().filter_map(|o| redirect::landing_path(o));
        if ours.into_iter().any(|o| o == landing) {
            "/"
        } else {
            p
        }
    }

    #[inline(never)]
    pub(super) fn callback(&self, req: &Request<'_>, query: &str, now: u64, rng: &mut dyn Entropy) -> Decision {
        let bad = Failed::new;
        let (mut code, mut state, mut error) = (Vec::new(), Vec::new(), Vec::new());
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "code" => code.push(v),
                "state" => state.push(v),
                "error" => error.push(v),
                _ => {}
            }
        }
        if code.len() > 1 || state.len() > 1 || error.len() > 1 {
            return self.fail(bad(FailReason::RepeatedParameter), rng, &[], Some("/"));
        }
        let Some(state) = state.first() else {
            return self.fail(bad(FailReason::NoState), rng, &[], Some("/"));
        };
        let prefix = &self.config.flow.cookie_prefix;
        let flow_cookie = flow::cookie_name_for(prefix, state).unwrap_or_default();
        let jar: Vec<(&str, &str)> = req.cookies().collect();
        let lookup = |name: &str| jar.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        // Two cookies of this attempt's name: one was tossed in (by a sibling site, or at a
        // deeper path, which the browser sends first). Neither is trusted to say whose login
        // this is.
        if jar.iter().filter(|(n, _)| *n == flow_cookie).count() > 1 {
            let failed = Failed::with(FailReason::StateMismatch, "two flow cookies");
            return self.fail(failed, rng, &[flow_cookie.as_str()], Some("/"));
        }
        let flow = match Flow::resume(&self.ring, prefix, state, lookup, now, self.config.flow.max_age_s) {
            Ok(flow) => flow,
            Err(e) => {
                let reason = match e {
                    FlowError::BadState => FailReason::BadState,
                    FlowError::NoFlow => FailReason::NoFlowCookie,
                    FlowError::Tampered => FailReason::StateMismatch,
                    FlowError::Expired => FailReason::FlowExpired,
                };
                let clear: Vec<&str> = if lookup(&flow_cookie).is_some() { vec![flow_cookie.as_str()] } else { vec![] };
                return self.fail(bad(reason), rng, &clear, Some("/"));
            }
        };
        let retry = flow.return_to().to_string();
        if let Some(error) = error.first() {
            let detail: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect();
            return self.fail(Failed::with(FailReason::ProviderError, detail), rng, &[&flow_cookie], Some(&retry));
        }
        let Some(code) = code.first().filter(|c| !c.is_empty() && c.len() <= 512) else {
            return self.fail(bad(FailReason::NoCode), rng, &[&flow_cookie], Some(&retry));
        };
        // One token call per attempt, whichever worker answers its callback: the attempt is
        // spent before the call is asked for, even if the call then fails. Remembered while
        // the flow cookie could still be resumed, and a leeway longer, should the host's clock
        // step back.
        let forget_at =
            flow.created_at().saturating_add(self.config.flow.max_age_s).saturating_add(self.config.clock_leeway_s);
        let claim = self.ledger.claim(flow.state(), forget_at, now);
        let garbled = claim.garbled.map(|g| format!("ledger shard {} held {g}; that part was dropped", claim.shard));
        let spent = match claim.result {
            Ok(spent) => spent,
            Err(refused) => return self.refused(refused, claim.shard, garbled, &flow_cookie, &retry, rng),
        };
        let body = token::request_body(&self.config, code, flow.state());
        let mut d = self.call(
            "POST",
            &self.config.endpoints.token,
            vec![("content-type", "application/x-www-form-urlencoded".into()), ("accept", "application/json".into())],
            Some(body.into_bytes()),
            Step::Token(Box::new(Login {
                flow,
                flow_cookie,
                _spent: spent,
                fetched_keys: false,
                request_id: super::request_id(req),
            })),
        );
        if let (Decision::Call(call), Some(g)) = (&mut d, garbled) {
            call.log = Some(LogLine { level: Level::Error, message: g });
        }
        d
    }

    /// The page for an attempt the ledger would not claim: spent already (400), or the ledger
    /// cannot say (503, the attempt not spent: the flow cookie stays, so the callback reloaded
    /// after `Retry-After` completes).
    fn refused(
        &self,
        refused: Refused,
        shard: u16,
        garbled: Option<String>,
        flow_cookie: &str,
        retry: &str,
        rng: &mut dyn Entropy,
    ) -> Decision {
        let (failed, clear) = match refused {
            Refused::Used => (Failed::new(FailReason::AttemptUsed), Some(flow_cookie)),
            Refused::Full { retry_after_s } => {
                let detail = format!("shard={shard} entries={SHARD_CAPACITY}");
                (Failed::with(FailReason::AttemptLedgerFull, detail).retry_after(retry_after_s), None)
            }
            Refused::Unavailable(why) => {
                let detail = format!("shard={shard} {why}");
                (Failed::with(FailReason::AttemptLedgerUnavailable, detail).retry_after(STORE_RETRY_AFTER_S), None)
            }
        };
        let failed = match garbled {
            Some(g) if failed.detail.is_empty() => Failed { detail: g, ..failed },
            Some(g) => Failed { detail: format!("{} {g}", failed.detail), ..failed },
            None => failed,
        };
        self.fail(failed, rng, clear.as_slice(), Some(retry))
    }

    /// A call to one of the provider's endpoints.
    fn call(
        &self,
        method: &'static str,
        endpoint: &Endpoint,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        step: Step,
    ) -> Decision {
        Decision::Call(Box::new(Call {
            request: self.outbound(method, endpoint, headers, body),
            pending: Pending { step, site: 0 },
            log: None,
        }))
    }

    /// Continues a login with the answer of the call it asked for. `keys` is the JWKS cache
    /// the adapter keeps for this gate.
    pub fn on_call_response(
        &self,
        pending: Pending,
        outcome: CallOutcome<'_>,
        now: u64,
        rng: &mut dyn Entropy,
        keys: &mut KeyCache,
    ) -> Decision {
        let request_id = match &pending.step {
            Step::Token(login) | Step::Jwks(login, _) | Step::Userinfo(login, _, _) => login.request_id.clone(),
        };
        let mut d = match pending.step {
            Step::Token(login) => self.after_token(login, outcome, now, rng, keys),
            Step::Jwks(login, tokens) => self.after_jwks(login, tokens, outcome, now, rng, keys),
            Step::Userinfo(login, id_token, _access_token) => self.after_userinfo(login, &id_token, outcome, now, rng),
        };
        if let Decision::Respond(Response { register: Some(record), .. }) = &mut d {
            record.request_id = request_id;
            record.time = now;
        }
        d
    }

    /// Sorts a call's answer: the body when the status is `ok_status`, else the failure.
    fn answered<'a>(called: Called, outcome: CallOutcome<'a>, wrong: FailReason) -> Result<&'a [u8], Failed> {
        match outcome {
            CallOutcome::Failed => Err(Failed::new(called.unreachable())),
            CallOutcome::Answered { status: status @ 502..=504, .. } => {
                Err(Failed::with(called.unavailable(), format!("status={status}")))
            }
            CallOutcome::Answered { body, .. } if body.len() > MAX_BODY_LEN => {
                Err(Failed::with(wrong, "answer too large"))
            }
            CallOutcome::Answered { body, .. } => Ok(body),
        }
    }

    fn after_token(
        &self,
        login: Box<Login>,
        outcome: CallOutcome<'_>,
        now: u64,
        rng: &mut dyn Entropy,
        keys: &mut KeyCache,
    ) -> Decision {
        let status = match outcome {
            CallOutcome::Answered { status, .. } => status,
            CallOutcome::Failed => 0,
        };
        let body = match Self::answered(Called::Token, outcome, FailReason::TokenMalformed) {
            Ok(body) => body,
            Err(failed) => return self.fail_login(&login, failed, rng),
        };
        match token::parse(status, body) {
            Ok(tokens) => self.verify_or_fetch(login, tokens, now, rng, keys, true),
            Err(TokenError::InvalidGrant) => self.fail_login(&login, Failed::new(FailReason::TokenInvalidGrant), rng),
            Err(TokenError::Rejected(e)) => self.fail_login(&login, Failed::with(FailReason::TokenRejected, e), rng),
            Err(TokenError::Malformed(m)) => {
                self.fail_login(&login, Failed::with(FailReason::TokenMalformed, format!("status={status} {m}")), rng)
            }
        }
    }

    fn verify_or_fetch(
        &self,
        login: Box<Login>,
        tokens: TokenResponse,
        now: u64,
        rng: &mut dyn Entropy,
        keys: &mut KeyCache,
        may_fetch: bool,
    ) -> Decision {
        let expect = Expectations {
            issuer: &self.config.issuer,
            client_id: &self.config.client_id,
            nonce: login.flow.nonce(),
            now,
            leeway_s: self.config.clock_leeway_s,
        };
        match id_token::verify(&tokens.id_token, keys, &expect) {
            Ok(verified) => {
                let access_token = tokens.access_token;
                self.call(
                    "POST",
                    &self.config.endpoints.userinfo,
                    vec![
                        ("authorization", format!("Bearer {}", access_token.expose())),
                        ("accept", "application/json".into()),
                    ],
                    Some(Vec::new()),
                    Step::Userinfo(login, verified, access_token),
                )
            }
            Err(IdTokenError::UnknownKey)
                if may_fetch && keys.may_fetch(now) && id_token::key_id(&tokens.id_token).is_ok() =>
            {
                Decision::Call(Box::new(Call {
                    request: self.jwks_request(),
                    pending: Pending { step: Step::Jwks(login, tokens), site: 0 },
                    log: None,
                }))
            }
            Err(e) => {
                self.fail_login(&login, Failed::with(FailReason::IdTokenInvalid, format!("{e:?}").to_lowercase()), rng)
            }
        }
    }

    fn after_jwks(
        &self,
        login: Box<Login>,
        tokens: TokenResponse,
        outcome: CallOutcome<'_>,
        now: u64,
        rng: &mut dyn Entropy,
        keys: &mut KeyCache,
    ) -> Decision {
        let ok = matches!(outcome, CallOutcome::Answered { status: 200, .. });
        let parsed = match Self::answered(Called::Jwks, outcome, FailReason::JwksInvalid) {
            Ok(body) if ok => jwks::parse(body)
                .map(|set| (set, body))
                .map_err(|e| Failed::with(FailReason::JwksInvalid, format!("{e:?}").to_lowercase())),
            Ok(_) => Err(Failed::with(FailReason::JwksInvalid, "status")),
            Err(failed) => Err(failed),
        };
        // Only a fetch for a kid unknown among held keys counts for the rate limit.
        keys.fetched_for_kid(now, !keys.is_empty());
        match parsed {
            Ok((set, body)) => {
                keys.replace_with_source(set, body, now);
                let login = Box::new(Login { fetched_keys: true, ..*login });
                self.verify_or_fetch(login, tokens, now, rng, keys, false)
            }
            Err(failed) => {
                // The last good keys stay; the attempt was recorded above, for the rate limit.
                let mut d = self.fail_login(&login, failed, rng);
                if let Decision::Respond(r) = &mut d {
                    r.events.push(Event::JwksRefreshFailed);
                }
                d
            }
        }
    }

    fn after_userinfo(
        &self,
        login: Box<Login>,
        id_token: &VerifiedIdToken,
        outcome: CallOutcome<'_>,
        now: u64,
        rng: &mut dyn Entropy,
    ) -> Decision {
        let ok = matches!(outcome, CallOutcome::Answered { status: 200, .. });
        let body = match Self::answered(Called::Userinfo, outcome, FailReason::UserinfoInvalid) {
            Ok(body) if ok => body,
            Ok(_) => {
                let status = match outcome {
                    CallOutcome::Answered { status, .. } => status,
                    CallOutcome::Failed => 0,
                };
                let failed = Failed::with(FailReason::UserinfoRejected, format!("status={status}"));
                return self.fail_login(&login, failed, rng);
            }
            Err(failed) => return self.fail_login(&login, failed, rng),
        };
        let identity = match userinfo::parse(body) {
            Ok(identity) => identity,
            Err(e) => {
                let failed = Failed::with(FailReason::UserinfoInvalid, format!("{e:?}").to_lowercase());
                return self.fail_login(&login, failed, rng);
            }
        };
        let run = identity.run().masked();
        let subject = self.config.access_log.name(&identity.run());
        let session = Session::start(id_token, identity, now, self.config.session.max_age_s);
        let Some(cookie) = self.seal_session(&session, rng) else {
            return self.fail_login(&login, Failed::new(FailReason::SealFailed), rng);
        };
        let reference = reference(rng);
        let location = self.return_path(login.flow.return_to()).to_string();
        Decision::Respond(Response {
            status: 302,
            headers: vec![
                ("location", location),
                ("set-cookie", cookie),
                ("set-cookie", self.attrs.delete(&login.flow_cookie)),
                ("cache-control", "no-store".into()),
            ],
            body: String::new(),
            log: Some(LogLine { level: Level::Info, message: format!("login completed: run={run} ref={reference}") }),
            events: login.events(Event::LoginCompleted),
            register: Some(Record { subject: Some(subject), reference: Some(reference), ..Record::new("login") }),
        })
    }

    fn fail_login(&self, login: &Login, failed: Failed, rng: &mut dyn Entropy) -> Decision {
        let mut d = self.fail(failed, rng, &[&login.flow_cookie], Some(login.flow.return_to()));
        if let (Decision::Respond(r), true) = (&mut d, login.fetched_keys) {
            r.events.push(Event::JwksRefreshed);
        }
        d
    }
}

/// Whether the browser says this navigation is inside a frame (`Sec-Fetch-Dest`, sent by
/// every current browser). A browser that does not say gets the redirect, and ClaveÚnica's own
/// framing rules.
fn is_framed(req: &Request<'_>) -> bool {
    req.header_values("sec-fetch-dest").any(|v| v.eq_ignore_ascii_case("iframe") || v.eq_ignore_ascii_case("frame"))
}

/// A page of the gate's, answered 200: never cached, with the cookies the request's state
/// asked to set or clear.
fn page_response(body: String, set_cookies: Vec<String>, events: Events) -> Response {
    let mut headers =
        vec![("content-type", "text/html; charset=utf-8".to_string()), ("cache-control", "no-store".to_string())];
    headers.extend(set_cookies.into_iter().map(|c| ("set-cookie", c)));
    Response { status: 200, headers, body, log: None, events, register: None }
}
