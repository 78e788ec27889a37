//! What happened, for the proxy's counters: each decision carries the events it stands for,
//! and the adapter turns them into metrics. Names are stable: dashboards rely on them.

use crate::policy::MigrationMode;

/// The kinds of failure a person can meet, each with its status and page: every
/// [`FailReason`] belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailGroup {
    /// The login attempt itself is bad or stale (400): a forged, replayed or expired `state`.
    BadAttempt,
    /// The person cancelled at ClaveÚnica, or ClaveÚnica said no (401).
    Cancelled,
    /// ClaveÚnica answered, but wrongly (502).
    ProviderWrong,
    /// ClaveÚnica did not answer, or answered that it is down (503).
    ProviderDown,
    /// The gate could not do its part (500): no randomness, a seal that failed.
    Internal,
    /// The gate cannot record that an attempt is spent right now (its ledger is full, or the
    /// shared store fails), so it makes no token call (503, with Retry-After): the attempt is
    /// not spent, and reloading the callback later may complete it.
    Busy,
}

impl FailGroup {
    /// The HTTP status a person gets.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            FailGroup::BadAttempt => 400,
            FailGroup::Cancelled => 401,
            FailGroup::ProviderWrong => 502,
            FailGroup::ProviderDown => 503,
            FailGroup::Internal => 500,
            FailGroup::Busy => 503,
        }
    }
}

/// Declares the failure reasons once: each with its group and its stable name, from which
/// the log name and the counter name are both made.
macro_rules! fail_reasons {
    ($($(#[$doc:meta])* $variant:ident => $group:ident, $name:literal;)*) => {
        /// Why a login failed. Stable names, one counter each.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum FailReason {
            $($(#[$doc])* $variant,)*
        }

        impl FailReason {
            /// The name in logs.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FailReason::$variant => $name,)*
                }
            }

            /// The counter this reason increments.
            #[must_use]
            pub fn metric(self) -> &'static str {
                match self {
                    $(FailReason::$variant => concat!("claveunica_gate.login_failures.", $name),)*
                }
            }

            /// The kind of failure, which sets the status and the page.
            #[must_use]
            pub fn group(self) -> FailGroup {
                match self {
                    $(FailReason::$variant => FailGroup::$group,)*
                }
            }

            /// Every reason, for tables and tests.
            pub const ALL: &'static [FailReason] = &[$(FailReason::$variant,)*];
        }
    };
}

fail_reasons! {
    /// The callback had no `state`.
    NoState => BadAttempt, "no_state";
    /// `state` is not one the gate could have drawn.
    BadState => BadAttempt, "bad_state";
    /// `code`, `state` or `error` came more than once.
    RepeatedParameter => BadAttempt, "repeated_parameter";
    /// No flow cookie for this `state`: another browser, or a replay after the cookie went.
    NoFlowCookie => BadAttempt, "no_flow_cookie";
    /// The flow cookie does not open, or holds another `state`.
    StateMismatch => BadAttempt, "state_mismatch";
    /// The login attempt is older than the flow lifetime.
    FlowExpired => BadAttempt, "flow_expired";
    /// ClaveÚnica sent `error` (the person cancelled, or consent was refused).
    ProviderError => Cancelled, "provider_error";
    /// The callback had no usable `code`.
    NoCode => BadAttempt, "no_code";
    /// The attempt made its token call already: a replayed callback, whatever its `code`.
    AttemptUsed => BadAttempt, "attempt_used";
    /// The ledger of spent attempts has no room left where this attempt falls.
    AttemptLedgerFull => Busy, "attempt_ledger_full";
    /// The ledger of spent attempts could not be read or written.
    AttemptLedgerUnavailable => Busy, "attempt_ledger_unavailable";
    /// The token endpoint did not answer.
    TokenUnreachable => ProviderDown, "token_unreachable";
    /// The token endpoint answered 502, 503 or 504.
    TokenUnavailable => ProviderDown, "token_unavailable";
    /// The code was refused (`invalid_grant`): used already, or expired.
    TokenInvalidGrant => BadAttempt, "token_invalid_grant";
    /// The token endpoint refused the request for another reason.
    TokenRejected => ProviderWrong, "token_rejected";
    /// The token answer is not one the gate can read.
    TokenMalformed => ProviderWrong, "token_malformed";
    /// The ID token failed verification.
    IdTokenInvalid => ProviderWrong, "id_token_invalid";
    /// The JWKS endpoint did not answer.
    JwksUnreachable => ProviderDown, "jwks_unreachable";
    /// The JWKS endpoint answered 502, 503 or 504.
    JwksUnavailable => ProviderDown, "jwks_unavailable";
    /// The JWKS answer is not a key set the gate can use.
    JwksInvalid => ProviderWrong, "jwks_invalid";
    /// The userinfo endpoint did not answer.
    UserinfoUnreachable => ProviderDown, "userinfo_unreachable";
    /// The userinfo endpoint answered 502, 503 or 504.
    UserinfoUnavailable => ProviderDown, "userinfo_unavailable";
    /// The userinfo endpoint answered with another error status.
    UserinfoRejected => ProviderWrong, "userinfo_rejected";
    /// The userinfo answer holds no valid RUN or identity.
    UserinfoInvalid => ProviderWrong, "userinfo_invalid";
    /// The host gave no random bytes.
    EntropyUnavailable => Internal, "entropy_unavailable";
    /// A cookie could not be sealed.
    SealFailed => Internal, "seal_failed";
}

/// Something worth counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A browser was sent to ClaveÚnica.
    LoginStarted,
    /// A login completed and a session was sealed.
    LoginCompleted,
    /// A login failed.
    LoginFailed(FailReason),
    /// A request carried a valid session.
    SessionAccepted,
    /// A session cookie did not open (tampered, foreign key, garbage).
    SessionRejected,
    /// A genuine session was past its absolute or idle lifetime.
    SessionExpired,
    /// An API or XHR client without a session got a 401.
    ApiUnauthorized,
    /// The migration mode let a request without a ClaveÚnica session through.
    MigrationPassThrough(MigrationMode),
    /// Report-only mode: the gate would have required a login here.
    ReportOnlyWouldLogin,
    /// A RUN outside `allowed_runs` was refused.
    Forbidden,
    /// A person logged out at the logout path.
    Logout,
    /// The application asked for a logout with its response header.
    AppLogout,
    /// The provider's keys were fetched.
    JwksRefreshed,
    /// Fetching the provider's keys failed.
    JwksRefreshFailed,
    /// A worker's VM accepted a configuration (at start and at every reload).
    ConfigLoaded,
    /// A worker's VM refused a configuration.
    ConfigRejected,
    /// A request named a host no site of the gate serves: answered 421, never forwarded.
    Misdirected,
}

impl Event {
    /// The counter this event increments.
    #[must_use]
    pub fn metric(self) -> &'static str {
        match self {
            Event::LoginStarted => "claveunica_gate.logins_started",
            Event::LoginCompleted => "claveunica_gate.logins_completed",
            Event::LoginFailed(reason) => reason.metric(),
            Event::SessionAccepted => "claveunica_gate.sessions_accepted",
            Event::SessionRejected => "claveunica_gate.sessions_rejected",
            Event::SessionExpired => "claveunica_gate.sessions_expired",
            Event::ApiUnauthorized => "claveunica_gate.api_unauthorized",
            Event::MigrationPassThrough(MigrationMode::Parallel) => "claveunica_gate.migration_pass_through.parallel",
            Event::MigrationPassThrough(MigrationMode::Canary) => "claveunica_gate.migration_pass_through.canary",
            Event::MigrationPassThrough(MigrationMode::ReportOnly) => {
                "claveunica_gate.migration_pass_through.report_only"
            }
            Event::MigrationPassThrough(MigrationMode::Enforce) => "claveunica_gate.migration_pass_through.enforce",
            Event::ReportOnlyWouldLogin => "claveunica_gate.report_only_would_login",
            Event::Forbidden => "claveunica_gate.forbidden",
            Event::Logout => "claveunica_gate.logouts",
            Event::AppLogout => "claveunica_gate.app_logouts",
            Event::JwksRefreshed => "claveunica_gate.jwks_refreshes",
            Event::JwksRefreshFailed => "claveunica_gate.jwks_refresh_failures",
            Event::ConfigLoaded => "claveunica_gate.config_loads",
            Event::ConfigRejected => "claveunica_gate.config_rejections",
            Event::Misdirected => "claveunica_gate.misdirected",
        }
    }
}

/// The events of one decision: at most a few, kept inline so a request allocates nothing
/// for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    items: [Option<Event>; 3],
}

impl Events {
    /// One event.
    #[must_use]
    pub fn one(event: Event) -> Self {
        Self { items: [Some(event), None, None] }
    }

    /// Adds an event; a fourth one would be dropped, which no decision needs.
    pub fn push(&mut self, event: Event) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(event);
        }
    }

    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.items.iter().flatten().copied()
    }

    /// Whether `event` is among them.
    #[must_use]
    pub fn contains(&self, event: Event) -> bool {
        self.iter().any(|e| e == event)
    }
}
