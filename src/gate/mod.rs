//! The decision engine: for each request, and for each answer of a call it asked for, one
//! [`Decision`]. This is where configuration, sessions, login flows and OpenID Connect meet;
//! the host adapters only carry out what it decides.

use crate::config::{Config, Endpoint};
use crate::cookies::{self, CookieAttrs};
use crate::flow::{self, Flow, FlowError, NONCE_BYTES, STATE_BYTES};
use crate::headers;
use crate::oidc::id_token::{self, Expectations, IdTokenError, VerifiedIdToken};
use crate::oidc::jwks::{self, KeyCache};
use crate::oidc::token::{self, TokenError, TokenResponse};
use crate::oidc::userinfo;
use crate::oidc::{authorize, MAX_BODY_LEN};
use crate::pages;
use crate::policy;
use crate::seal::{KeyRing, NONCE_LEN};
use crate::secret::SecretString;
use crate::session::{self, Session};

/// A source of random bytes: the host's WASI random source in production, a fixed sequence
/// in tests.
pub trait Entropy {
    /// Fills `buf` with random bytes, or fails; the gate never proceeds on weak randomness.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyUnavailable>;
}

/// The host could not provide random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntropyUnavailable;

/// What the gate needs to know of an incoming request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path with its query, as on the request line.
    pub path: &'a str,
    /// Every request header, names in any letter case, in order, repeats included.
    pub headers: &'a [(String, String)],
}

impl<'a> Request<'a> {
    fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// How important a log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Routine.
    Info,
    /// A login failed in a way a person may report.
    Warn,
    /// The gate cannot work as configured, or the provider misbehaves.
    Error,
}

/// A line for the proxy's log. Never holds a token, a secret or a full RUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Level.
    pub level: Level,
    /// The line.
    pub message: String,
}

/// What happens to the `Cookie` header sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieHeader {
    /// No cookie of the gate's was there: leave it.
    Unchanged,
    /// Replace every `Cookie` header with this one (the application's cookies only).
    Replace(String),
    /// Remove every `Cookie` header: only the gate's cookies were there.
    Remove,
}

/// Forward the request upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Remove every header with these names (any letter case, any count).
    pub remove: &'static [&'static str],
    /// Then set these headers (replace, never append).
    pub set: Vec<(&'static str, String)>,
    /// The `Cookie` header change.
    pub cookie: CookieHeader,
    /// A `Set-Cookie` to add to the upstream's answer (a session resealed with the newest
    /// key).
    pub response_set_cookie: Option<String>,
}

/// Answer the request directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, `Set-Cookie` repeated as needed.
    pub headers: Vec<(&'static str, String)>,
    /// Body (HTML or JSON).
    pub body: String,
    /// The line to log for this answer, if any.
    pub log: Option<LogLine>,
}

/// Make an HTTP call to the provider, through the proxy, and resume with its answer.
#[derive(Debug)]
pub struct Call {
    /// The proxy's upstream name.
    pub cluster: String,
    /// `GET` or `POST`.
    pub method: &'static str,
    /// `:authority`.
    pub authority: String,
    /// `:path`.
    pub path: String,
    /// Other headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body, for POST.
    pub body: Option<Vec<u8>>,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
    /// Hand this back to [`Gate::on_call_response`] with the answer.
    pub pending: Pending,
}

/// What to do with a request or a call's answer.
#[must_use]
#[derive(Debug)]
pub enum Decision {
    /// Let the request through, with these changes.
    Forward(Forward),
    /// Answer it.
    Respond(Response),
    /// Make a call, then come back.
    Call(Box<Call>),
}

/// A login waiting for a call's answer. Opaque: only the gate makes one, so an adapter cannot
/// skip a step.
#[derive(Debug)]
pub struct Pending(Step);

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
}

/// How a call went.
#[derive(Debug, Clone, Copy)]
pub enum CallOutcome<'a> {
    /// The provider answered (any status).
    Answered {
        /// HTTP status.
        status: u16,
        /// Body.
        body: &'a [u8],
    },
    /// No answer: connection refused, reset, or timed out.
    Failed,
}

/// The kinds of failure a person can meet, each with its status and page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    BadAttempt,
    Cancelled,
    ProviderWrong,
    ProviderDown,
    Internal,
}

impl Failure {
    fn status(self) -> u16 {
        match self {
            Failure::BadAttempt => 400,
            Failure::Cancelled => 401,
            Failure::ProviderWrong => 502,
            Failure::ProviderDown => 503,
            Failure::Internal => 500,
        }
    }

    fn text(self) -> (&'static str, &'static str) {
        match self {
            Failure::BadAttempt => (
                "Intento de ingreso no válido o vencido",
                "Este intento de ingreso con ClaveÚnica no es válido o ya expiró. Vuelva a ingresar.",
            ),
            Failure::Cancelled => ("Ingreso cancelado", "El ingreso con ClaveÚnica fue cancelado o no se completó."),
            Failure::ProviderWrong => (
                "ClaveÚnica respondió con un error",
                "No fue posible completar el ingreso porque ClaveÚnica entregó una respuesta inesperada. \
Intente nuevamente en unos minutos.",
            ),
            Failure::ProviderDown => (
                "ClaveÚnica no está disponible",
                "No fue posible comunicarse con ClaveÚnica. Intente nuevamente en unos minutos.",
            ),
            Failure::Internal => ("Error interno", "Ocurrió un error al procesar el ingreso. Intente nuevamente."),
        }
    }
}

/// The gate: a compiled configuration and its prepared keys.
#[derive(Debug)]
pub struct Gate {
    config: Config,
    ring: KeyRing,
    attrs: CookieAttrs,
}

fn split_query(path: &str) -> (&str, &str) {
    path.split_once('?').unwrap_or((path, ""))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Gate {
    /// Prepares a gate for a validated configuration.
    #[must_use]
    pub fn new(config: Config) -> Self {
        let ring = KeyRing::new(&config.session_keys);
        let attrs = CookieAttrs { secure: config.secure_cookies };
        Self { config, ring, attrs }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn is_gate_cookie(&self, name: &str) -> bool {
        name == self.config.session.cookie_name || name.starts_with(&self.config.flow.cookie_prefix)
    }

    /// Decides what to do with a request whose headers have arrived.
    pub fn on_request(&self, req: &Request<'_>, now: u64, rng: &mut dyn Entropy) -> Decision {
        let (path, query) = split_query(req.path);
        if path == self.config.callback_path {
            return self.callback(req, query, now, rng);
        }
        if path == self.config.logout_path {
            return self.logout(req, now);
        }
        if path == self.config.login_path {
            let return_to = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "return_to")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| "/".into());
            return self.start_login(&return_to, now, rng, None);
        }
        match self.session(req, now) {
            (Some((session, stale_key)), _) => self.forward(req, &session, stale_key, rng),
            (None, had_cookie) => {
                let clear = had_cookie.then(|| self.attrs.delete(&self.config.session.cookie_name));
                self.start_login(req.path, now, rng, clear)
            }
        }
    }

    /// The request's session, if one opens and is within its lifetime; and whether a session
    /// cookie was there at all.
    fn session(&self, req: &Request<'_>, now: u64) -> (Option<(Session, bool)>, bool) {
        let mut had_cookie = false;
        for (name, value) in cookies::pairs(req.header_values("cookie")) {
            if name != self.config.session.cookie_name {
                continue;
            }
            had_cookie = true;
            if let session::Opened::Valid { session, stale_key } = Session::open(&self.ring, value, now) {
                return (Some((session, stale_key)), true);
            }
        }
        (None, had_cookie)
    }

    fn forward(&self, req: &Request<'_>, session: &Session, stale_key: bool, rng: &mut dyn Entropy) -> Decision {
        let mut ours = false;
        for (name, _) in cookies::pairs(req.header_values("cookie")) {
            ours |= self.is_gate_cookie(name);
        }
        let cookie = if ours {
            match cookies::without(req.header_values("cookie"), |n| self.is_gate_cookie(n)) {
                Some(rest) => CookieHeader::Replace(rest),
                None => CookieHeader::Remove,
            }
        } else {
            CookieHeader::Unchanged
        };
        let response_set_cookie = if stale_key { self.seal_session(session, rng) } else { None };
        Decision::Forward(Forward {
            remove: &headers::IDENTITY_HEADERS,
            set: headers::identity_headers(&session.identity),
            cookie,
            response_set_cookie,
        })
    }

    fn seal_session(&self, session: &Session, rng: &mut dyn Entropy) -> Option<String> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).ok()?;
        let value = session.seal(&self.ring, nonce)?;
        let max_age = session.expires_at.saturating_sub(session.issued_at);
        Some(self.attrs.set(&self.config.session.cookie_name, &value, max_age))
    }

    fn reference(rng: &mut dyn Entropy) -> String {
        let mut bytes = [0u8; 4];
        match rng.fill(&mut bytes) {
            Ok(()) => hex(&bytes),
            Err(_) => "sin-ref".into(),
        }
    }

    /// A failure page, its log line, and any cookies to clear.
    fn fail(
        &self,
        failure: Failure,
        reason: &str,
        rng: &mut dyn Entropy,
        clear: &[&str],
        retry: Option<&str>,
    ) -> Decision {
        let reference = Self::reference(rng);
        let (title, message) = failure.text();
        let mut headers =
            vec![("content-type", "text/html; charset=utf-8".to_string()), ("cache-control", "no-store".to_string())];
        headers.extend(clear.iter().map(|name| ("set-cookie", self.attrs.delete(name))));
        let level = match failure {
            Failure::BadAttempt | Failure::Cancelled => Level::Warn,
            _ => Level::Error,
        };
        Decision::Respond(Response {
            status: failure.status(),
            headers,
            body: pages::error(title, message, &reference, retry),
            log: Some(LogLine {
                level,
                message: format!("login failed: status={} reason={reason} ref={reference}", failure.status()),
            }),
        })
    }

    fn start_login(&self, wanted: &str, now: u64, rng: &mut dyn Entropy, extra_cookie: Option<String>) -> Decision {
        let return_to = self.return_path(wanted);
        let mut state = [0u8; STATE_BYTES];
        let mut nonce = [0u8; NONCE_BYTES];
        let mut seal_nonce = [0u8; NONCE_LEN];
        let drawn = rng.fill(&mut state).and(rng.fill(&mut nonce)).and(rng.fill(&mut seal_nonce));
        if drawn.is_err() {
            return self.fail(Failure::Internal, "entropy_unavailable", rng, &[], None);
        }
        let flow = Flow::new(state, nonce, return_to.to_string(), now);
        let Some(sealed) = flow.seal(&self.ring, seal_nonce) else {
            return self.fail(Failure::Internal, "seal_failed", rng, &[], None);
        };
        let mut headers = vec![
            ("location", authorize::authorize_url(&self.config, &flow)),
            (
                "set-cookie",
                self.attrs.set(&flow.cookie_name(&self.config.flow.cookie_prefix), &sealed, self.config.flow.max_age_s),
            ),
            ("cache-control", "no-store".to_string()),
        ];
        headers.extend(extra_cookie.map(|c| ("set-cookie", c)));
        Decision::Respond(Response { status: 302, headers, body: String::new(), log: None })
    }

    /// A same-origin path that is not one of the gate's own, or `/`.
    fn return_path<'a>(&self, wanted: &'a str) -> &'a str {
        match policy::same_origin_path(wanted) {
            Some(p) => {
                let (path, _) = split_query(p);
                let ours = [&self.config.callback_path, &self.config.login_path, &self.config.logout_path];
                if ours.iter().any(|o| o.as_str() == path) {
                    "/"
                } else {
                    p
                }
            }
            None => "/",
        }
    }

    fn logout(&self, req: &Request<'_>, now: u64) -> Decision {
        let who = match self.session(req, now) {
            (Some((s, _)), _) => s.identity.run().masked(),
            _ => "-".to_string(),
        };
        let mut provider = self.config.endpoints.logout.clone();
        if let Some(target) = &self.config.post_logout_redirect {
            provider.push(if provider.contains('?') { '&' } else { '?' });
            provider.push_str("redirect=");
            provider.extend(url::form_urlencoded::byte_serialize(target.as_bytes()));
        }
        let fallback = self.config.post_logout_redirect.as_deref().unwrap_or("/");
        let mut headers = vec![
            ("content-type", "text/html; charset=utf-8".to_string()),
            ("cache-control", "no-store".to_string()),
            ("set-cookie", self.attrs.delete(&self.config.session.cookie_name)),
        ];
        // Any login attempts in flight end too.
        for (name, _) in cookies::pairs(req.header_values("cookie")) {
            if name.starts_with(&self.config.flow.cookie_prefix) {
                headers.push(("set-cookie", self.attrs.delete(name)));
            }
        }
        Decision::Respond(Response {
            status: 200,
            headers,
            body: pages::logout(&provider, fallback),
            log: Some(LogLine { level: Level::Info, message: format!("logout run={who}") }),
        })
    }

    fn callback(&self, req: &Request<'_>, query: &str, now: u64, rng: &mut dyn Entropy) -> Decision {
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
            return self.fail(Failure::BadAttempt, "repeated_parameter", rng, &[], Some("/"));
        }
        let Some(state) = state.first() else {
            return self.fail(Failure::BadAttempt, "no_state", rng, &[], Some("/"));
        };
        let prefix = &self.config.flow.cookie_prefix;
        let flow_cookie = flow::cookie_name_for(prefix, state).unwrap_or_default();
        let jar: Vec<(&str, &str)> = cookies::pairs(req.header_values("cookie")).collect();
        let lookup = |name: &str| jar.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let flow = match Flow::resume(&self.ring, prefix, state, lookup, now, self.config.flow.max_age_s) {
            Ok(flow) => flow,
            Err(e) => {
                let reason = match e {
                    FlowError::BadState => "bad_state",
                    FlowError::NoFlow => "no_flow_cookie",
                    FlowError::Tampered => "state_mismatch",
                    FlowError::Expired => "flow_expired",
                };
                let clear: Vec<&str> = if lookup(&flow_cookie).is_some() { vec![flow_cookie.as_str()] } else { vec![] };
                return self.fail(Failure::BadAttempt, reason, rng, &clear, Some("/"));
            }
        };
        let retry = flow.return_to().to_string();
        if let Some(error) = error.first() {
            let reason = format!(
                "provider_error:{}",
                error.chars().filter(char::is_ascii_alphanumeric).take(40).collect::<String>()
            );
            return self.fail(Failure::Cancelled, &reason, rng, &[&flow_cookie], Some(&retry));
        }
        let Some(code) = code.first().filter(|c| !c.is_empty() && c.len() <= 512) else {
            return self.fail(Failure::BadAttempt, "no_code", rng, &[&flow_cookie], Some(&retry));
        };
        let body = token::request_body(&self.config, code, flow.state());
        self.call(
            "POST",
            &self.config.endpoints.token,
            vec![("content-type", "application/x-www-form-urlencoded".into()), ("accept", "application/json".into())],
            Some(body.into_bytes()),
            Step::Token(Box::new(Login { flow, flow_cookie })),
        )
    }

    /// A call to one of the provider's endpoints through the configured cluster.
    fn call(
        &self,
        method: &'static str,
        endpoint: &Endpoint,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        step: Step,
    ) -> Decision {
        Decision::Call(Box::new(Call {
            cluster: self.config.cluster.clone(),
            method,
            authority: endpoint.authority.clone(),
            path: endpoint.path.clone(),
            headers,
            body,
            timeout_ms: self.config.timeout_ms,
            pending: Pending(step),
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
        match pending.0 {
            Step::Token(login) => self.after_token(login, outcome, now, rng, keys),
            Step::Jwks(login, tokens) => self.after_jwks(login, tokens, outcome, now, rng, keys),
            Step::Userinfo(login, id_token, access_token) => {
                self.after_userinfo(login, &id_token, &access_token, outcome, now, rng)
            }
        }
    }

    /// Sorts a call's answer: a body to read when the status is 200, else the failure.
    fn answered<'a>(&self, what: &str, outcome: CallOutcome<'a>) -> Result<&'a [u8], (Failure, String)> {
        match outcome {
            CallOutcome::Failed => Err((Failure::ProviderDown, format!("{what}_unreachable"))),
            CallOutcome::Answered { status: 502..=504, .. } => {
                Err((Failure::ProviderDown, format!("{what}_unavailable")))
            }
            CallOutcome::Answered { body, .. } if body.len() > MAX_BODY_LEN => {
                Err((Failure::ProviderWrong, format!("{what}_too_large")))
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
        let body = match self.answered("token", outcome) {
            Ok(body) => body,
            Err((failure, reason)) => return self.fail_login(&login, failure, &reason, rng),
        };
        match token::parse(status, body) {
            Ok(tokens) => self.verify_or_fetch(login, tokens, now, rng, keys, true),
            Err(TokenError::InvalidGrant) => self.fail_login(&login, Failure::BadAttempt, "token_invalid_grant", rng),
            Err(TokenError::Rejected(e)) => {
                self.fail_login(&login, Failure::ProviderWrong, &format!("token_rejected:{e}"), rng)
            }
            Err(TokenError::Malformed(m)) => {
                self.fail_login(&login, Failure::ProviderWrong, &format!("token_malformed status={status} ({m})"), rng)
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
                self.call(
                    "GET",
                    &self.config.endpoints.jwks,
                    vec![("accept", "application/json".into())],
                    None,
                    Step::Jwks(login, tokens),
                )
            }
            Err(e) => self.fail_login(&login, Failure::ProviderWrong, &format!("id_token_{e:?}").to_lowercase(), rng),
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
        let body = match self.answered("jwks", outcome) {
            Ok(body) if ok => body,
            Ok(_) => {
                keys.fetched(now);
                return self.fail_login(&login, Failure::ProviderWrong, "jwks_status", rng);
            }
            Err((failure, reason)) => {
                keys.fetched(now);
                return self.fail_login(&login, failure, &reason, rng);
            }
        };
        match jwks::parse(body) {
            Ok(set) => {
                keys.replace(set, now);
                self.verify_or_fetch(login, tokens, now, rng, keys, false)
            }
            Err(e) => {
                // The last good keys stay; only the attempt is recorded.
                keys.fetched(now);
                self.fail_login(&login, Failure::ProviderWrong, &format!("jwks_{e:?}").to_lowercase(), rng)
            }
        }
    }

    fn after_userinfo(
        &self,
        login: Box<Login>,
        _id_token: &VerifiedIdToken,
        _access_token: &SecretString,
        outcome: CallOutcome<'_>,
        now: u64,
        rng: &mut dyn Entropy,
    ) -> Decision {
        let ok = matches!(outcome, CallOutcome::Answered { status: 200, .. });
        let body = match self.answered("userinfo", outcome) {
            Ok(body) if ok => body,
            Ok(_) => return self.fail_login(&login, Failure::ProviderWrong, "userinfo_status", rng),
            Err((failure, reason)) => return self.fail_login(&login, failure, &reason, rng),
        };
        let identity = match userinfo::parse(body) {
            Ok(identity) => identity,
            Err(e) => {
                return self.fail_login(&login, Failure::ProviderWrong, &format!("userinfo_{e:?}").to_lowercase(), rng);
            }
        };
        let run = identity.run().masked();
        let session =
            Session { identity, issued_at: now, expires_at: now.saturating_add(self.config.session.max_age_s) };
        let Some(cookie) = self.seal_session(&session, rng) else {
            return self.fail_login(&login, Failure::Internal, "seal_failed", rng);
        };
        let reference = Self::reference(rng);
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
        })
    }

    fn fail_login(&self, login: &Login, failure: Failure, reason: &str, rng: &mut dyn Entropy) -> Decision {
        self.fail(failure, reason, rng, &[&login.flow_cookie], Some(login.flow.return_to()))
    }
}

#[cfg(test)]
mod tests;
