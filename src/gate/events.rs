//! What happened, for the proxy's counters: each decision carries the events it stands for,
//! and the adapter turns them into metrics. Names are stable: dashboards rely on them.

use crate::policy::MigrationMode;

/// Why a login failed. Stable names, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum FailReason {
    NoState,
    BadState,
    RepeatedParameter,
    NoFlowCookie,
    StateMismatch,
    FlowExpired,
    ProviderError,
    NoCode,
    TokenUnreachable,
    TokenUnavailable,
    TokenInvalidGrant,
    TokenRejected,
    TokenMalformed,
    IdTokenInvalid,
    JwksUnreachable,
    JwksUnavailable,
    JwksInvalid,
    UserinfoUnreachable,
    UserinfoUnavailable,
    UserinfoRejected,
    UserinfoInvalid,
    EntropyUnavailable,
    SealFailed,
}

impl FailReason {
    /// The name in logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        self.names().0
    }

    fn names(self) -> (&'static str, &'static str) {
        use FailReason::*;
        match self {
            NoState => ("no_state", "claveunica_gate.login_failures.no_state"),
            BadState => ("bad_state", "claveunica_gate.login_failures.bad_state"),
            RepeatedParameter => ("repeated_parameter", "claveunica_gate.login_failures.repeated_parameter"),
            NoFlowCookie => ("no_flow_cookie", "claveunica_gate.login_failures.no_flow_cookie"),
            StateMismatch => ("state_mismatch", "claveunica_gate.login_failures.state_mismatch"),
            FlowExpired => ("flow_expired", "claveunica_gate.login_failures.flow_expired"),
            ProviderError => ("provider_error", "claveunica_gate.login_failures.provider_error"),
            NoCode => ("no_code", "claveunica_gate.login_failures.no_code"),
            TokenUnreachable => ("token_unreachable", "claveunica_gate.login_failures.token_unreachable"),
            TokenUnavailable => ("token_unavailable", "claveunica_gate.login_failures.token_unavailable"),
            TokenInvalidGrant => ("token_invalid_grant", "claveunica_gate.login_failures.token_invalid_grant"),
            TokenRejected => ("token_rejected", "claveunica_gate.login_failures.token_rejected"),
            TokenMalformed => ("token_malformed", "claveunica_gate.login_failures.token_malformed"),
            IdTokenInvalid => ("id_token_invalid", "claveunica_gate.login_failures.id_token_invalid"),
            JwksUnreachable => ("jwks_unreachable", "claveunica_gate.login_failures.jwks_unreachable"),
            JwksUnavailable => ("jwks_unavailable", "claveunica_gate.login_failures.jwks_unavailable"),
            JwksInvalid => ("jwks_invalid", "claveunica_gate.login_failures.jwks_invalid"),
            UserinfoUnreachable => ("userinfo_unreachable", "claveunica_gate.login_failures.userinfo_unreachable"),
            UserinfoUnavailable => ("userinfo_unavailable", "claveunica_gate.login_failures.userinfo_unavailable"),
            UserinfoRejected => ("userinfo_rejected", "claveunica_gate.login_failures.userinfo_rejected"),
            UserinfoInvalid => ("userinfo_invalid", "claveunica_gate.login_failures.userinfo_invalid"),
            EntropyUnavailable => ("entropy_unavailable", "claveunica_gate.login_failures.entropy_unavailable"),
            SealFailed => ("seal_failed", "claveunica_gate.login_failures.seal_failed"),
        }
    }
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
}

impl Event {
    /// The counter this event increments.
    #[must_use]
    pub fn metric(self) -> &'static str {
        match self {
            Event::LoginStarted => "claveunica_gate.logins_started",
            Event::LoginCompleted => "claveunica_gate.logins_completed",
            Event::LoginFailed(reason) => reason.names().1,
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
