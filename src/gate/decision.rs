//! What the gate decides, as values: the one [`Decision`] every request and every call's
//! answer yields, the [`AnswerChange`] every upstream answer yields, and their parts. An
//! adapter carries these out verbatim; it adds nothing and leaves nothing out.

use std::sync::Arc;

use super::events::Events;
use super::login::Pending;
use super::register::Record;

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

/// Forward the request upstream with these changes, in this order: remove every copy of each
/// header in `remove`, set each header in `set` (replacing every copy), apply `cookie`. When
/// the upstream answers, hand `upstream` back to [`Gate::on_upstream_response`].
///
/// [`Gate::on_upstream_response`]: super::Gate::on_upstream_response
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Client headers that never reach the application: every header with an identity name
    /// (in any spelling) that `set` does not already replace. Empty on a request without
    /// forged headers, so the common request allocates nothing here.
    pub remove: Vec<String>,
    /// Identity headers to set (replace, never append); empty for an anonymous request.
    /// Shared with the gate's cache of opened sessions, so a repeat request copies nothing.
    pub set: Arc<[(String, String)]>,
    /// The `Cookie` header change.
    pub cookie: CookieHeader,
    /// What the gate needs to see of the upstream's answer.
    pub upstream: Upstream,
    /// What this decision stands for.
    pub events: Events,
    /// A line to log, if any (report-only mode says what it would have done).
    pub log: Option<LogLine>,
    /// The person this request goes upstream for, as the access register names them (see
    /// [`AccessSubject`]); `None` for an anonymous request. The host records it beside the
    /// time of the access: Envoy in its access log (the adapter publishes it to the request's
    /// filter state), the Unit component in a line of its own ([`access_line`]).
    ///
    /// [`AccessSubject`]: crate::config::AccessSubject
    /// [`access_line`]: super::access_line
    pub access: Option<Arc<str>>,
}

/// The continuation of a forwarded request: what the gate will do with the upstream's
/// answer. Opaque, made only by the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The request went with identity, so the answer may ask for a logout.
    pub(super) identified: bool,
    /// For the register, should the answer ask for a logout: who, the request's id, and when
    /// the request came.
    pub(super) record: Option<Box<Record>>,
    /// `Set-Cookie` values to add to the answer (a resealed session, a cleared one, the
    /// canary choice).
    pub(super) set_cookies: Vec<String>,
    /// Which of the gate's sites forwarded the request: the answer goes back to it.
    pub(super) site: usize,
}

impl Upstream {
    /// Whether the gate looks at the answer's status and headers: for a logout the
    /// application asks for, and for the caching of an answer meant for one person. When it
    /// does not, the adapter may hand [`UpstreamAnswer::UNREAD`] instead of reading them.
    #[must_use]
    pub fn reads_answer(&self) -> bool {
        self.identified || !self.set_cookies.is_empty()
    }

    /// The `Set-Cookie` values the answer will carry, unless the gate replaces it.
    #[must_use]
    pub fn set_cookies(&self) -> &[String] {
        &self.set_cookies
    }
}

/// The upstream's answer to a forwarded request, as far as the gate needs it.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAnswer<'a> {
    /// HTTP status.
    pub status: u16,
    /// Every answer header, names in any letter case.
    pub headers: &'a [(&'a str, &'a str)],
}

impl UpstreamAnswer<'_> {
    /// What to hand the gate when [`Upstream::reads_answer`] says it does not look.
    pub const UNREAD: UpstreamAnswer<'static> = UpstreamAnswer { status: 0, headers: &[] };
}

/// What happens to the upstream's answer.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerChange {
    /// Pass it on: first set each header in `set` (replacing every copy the application
    /// sent), then add those in `add` (appended beside the application's own).
    Pass {
        /// Headers to set: a `Cache-Control` that keeps a person's answer out of shared caches.
        set: Vec<(&'static str, String)>,
        /// Headers to add, `Set-Cookie` repeated as needed.
        add: Vec<(&'static str, String)>,
    },
    /// Drop it (its body unread) and answer this instead.
    Replace(Response),
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
    /// What this decision stands for.
    pub events: Events,
    /// A login, logout or refusal for the register: log [`Record::line`] as it is.
    pub register: Option<Record>,
}

/// An HTTP request the gate wants sent to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// `http` or `https`, from the configured endpoint.
    pub scheme: &'static str,
    /// `host[:port]`.
    pub authority: String,
    /// Path and query.
    pub path: String,
    /// Other headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body, for POST.
    pub body: Option<Vec<u8>>,
    /// Timeout in milliseconds.
    pub timeout_ms: u64,
}

/// Send a request to the provider, then resume the login with its answer.
#[derive(Debug)]
pub struct Call {
    /// What to send.
    pub request: Outbound,
    /// Hand this back to [`Gate::on_call_response`] with the answer.
    ///
    /// [`Gate::on_call_response`]: super::Gate::on_call_response
    pub pending: Pending,
    /// A line to log, if any (the shared store held bytes the gate could not read).
    pub log: Option<LogLine>,
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

/// How a call went.
#[derive(Debug, Clone, Copy)]
pub enum CallOutcome<'a> {
    /// The provider answered (any status).
    Answered {
        /// HTTP status.
        status: u16,
        /// Body, read up to one byte more than [`MAX_BODY_LEN`], so a body that is too large
        /// is told from one that just fits.
        ///
        /// [`MAX_BODY_LEN`]: crate::protocol::oidc::MAX_BODY_LEN
        body: &'a [u8],
    },
    /// No answer: connection refused, reset, timed out, or cut short.
    Failed,
}
