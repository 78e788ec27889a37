//! Test modes: a provider that misbehaves on purpose, switched at run time through
//! `POST /__emulator/mode`, so one running emulator can play many attacks and faults.
//!
//! The body is a JSON object; each field present replaces the current setting, absent ones
//! stay as they are:
//!
//! ```json
//! {"id_token": "normal", "userinfo": "normal",
//!  "fault": {"endpoint": "token", "kind": "none"}, "slow_ms": 7000,
//!  "iat_offset_s": 0, "exp_offset_s": 600, "logout": "normal",
//!  "client": "enabled", "sso_s": 60}
//! ```
//!
//! - `id_token` (what the token endpoint signs): `normal`, `alg_none`, `hs256_confusion`
//!   (HMAC-SHA256 keyed with the RSA public key's PEM), `unknown_kid`, `crit` (a critical
//!   header extension), `huge` (a 100 KB claim), `typ_at_jwt`, `wrong_nonce`, `wrong_issuer`,
//!   `wrong_audience`, `expired`, `multi_audience` (`aud` this client and another, no `azp`),
//!   `multi_audience_wrong_azp` (the same with `azp` the other client), `wrong_azp` (`aud` this
//!   client alone, `azp` another).
//! - `userinfo`: `normal`, `numero_missing`, `numero_null`, `numero_negative`, `numero_text`,
//!   `wrong_dv`, `tipo_dni`, `names_100k`, `invalid_utf8`.
//! - `fault.endpoint`: `token`, `userinfo`, `jwks` or `all` (the three); `fault.kind`: `none`,
//!   `slow` (answers after `slow_ms`, other requests unaffected), `status_500`, `html` (a 200
//!   maintenance page instead of JSON), `truncate_json` (half the JSON, with a correct
//!   `Content-Length`), `truncate_body` (a `Content-Length` larger than what is sent, then the
//!   connection is closed), `close` (the connection is closed without an answer).
//! - `iat_offset_s`, `exp_offset_s` (seconds, may be negative, at most a day either way): the
//!   ID token's `iat` and `exp` are the emulator's clock plus these (defaults 0 and 600, a
//!   genuine token's). `iat_offset_s: 5` plays a provider whose clock runs 5 s ahead;
//!   `exp_offset_s: -5` a token that expired 5 s ago. They apply to every `id_token` mode but
//!   `expired`, which sets its own.
//! - `logout`: `normal` (a 302 to `redirect` when its authority is a registered Logout URI's,
//!   else 204, as ClaveÚnica does; see `src/endpoints/logout.rs`), `no_content` (204 even for a
//!   registered one, as ClaveÚnica's logout has also been seen answering).
//! - `client`: `enabled`, or `disabled`: the client's credentials are not (or no longer) enabled,
//!   as production credentials are until certification. The authorization endpoint then shows
//!   the error page "La institución no está habilitada en ClaveÚnica" and sends nothing back,
//!   and the token endpoint answers `invalid_client`.
//! - `sso_s` (seconds, at most an hour, 0 for none): how long ClaveÚnica's own session lasts
//!   after a login (default 60, as the real one): within it, the same browser's next
//!   authorization request skips the form and goes straight back with a code.
//!
//! The answer is the settings now in force, as `GET /__emulator/mode` shows them.

use serde_json::{json, Value};

use crate::tokens::ID_TOKEN_TTL_SECS;

/// Names and values of a mode enum, for parsing and showing.
trait Named: Copy + PartialEq + 'static {
    const ALL: &'static [(&'static str, Self)];

    fn parse(field: &str, v: &Value) -> Result<Self, String> {
        let name = v.as_str().ok_or_else(|| format!("{field}: not a string"))?;
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, m)| *m).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|(n, _)| *n).collect();
            format!("{field}: unknown mode {name:?} (known: {})", known.join(", "))
        })
    }

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, m)| *m == self).map_or("?", |(n, _)| n)
    }
}

/// What the token endpoint puts in `id_token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdTokenMode {
    #[default]
    Normal,
    AlgNone,
    Hs256Confusion,
    UnknownKid,
    Crit,
    Huge,
    TypAtJwt,
    WrongNonce,
    WrongIssuer,
    WrongAudience,
    Expired,
    MultiAudience,
    MultiAudienceWrongAzp,
    WrongAzp,
}

impl Named for IdTokenMode {
    const ALL: &'static [(&'static str, Self)] = &[
        ("normal", Self::Normal),
        ("alg_none", Self::AlgNone),
        ("hs256_confusion", Self::Hs256Confusion),
        ("unknown_kid", Self::UnknownKid),
        ("crit", Self::Crit),
        ("huge", Self::Huge),
        ("typ_at_jwt", Self::TypAtJwt),
        ("wrong_nonce", Self::WrongNonce),
        ("wrong_issuer", Self::WrongIssuer),
        ("wrong_audience", Self::WrongAudience),
        ("expired", Self::Expired),
        ("multi_audience", Self::MultiAudience),
        ("multi_audience_wrong_azp", Self::MultiAudienceWrongAzp),
        ("wrong_azp", Self::WrongAzp),
    ];
}

/// What userinfo answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserinfoMode {
    #[default]
    Normal,
    NumeroMissing,
    NumeroNull,
    NumeroNegative,
    NumeroText,
    WrongDv,
    TipoDni,
    Names100k,
    InvalidUtf8,
}

impl Named for UserinfoMode {
    const ALL: &'static [(&'static str, Self)] = &[
        ("normal", Self::Normal),
        ("numero_missing", Self::NumeroMissing),
        ("numero_null", Self::NumeroNull),
        ("numero_negative", Self::NumeroNegative),
        ("numero_text", Self::NumeroText),
        ("wrong_dv", Self::WrongDv),
        ("tipo_dni", Self::TipoDni),
        ("names_100k", Self::Names100k),
        ("invalid_utf8", Self::InvalidUtf8),
    ];
}

/// Which back-channel endpoint a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultEndpoint {
    #[default]
    Token,
    Userinfo,
    Jwks,
    All,
}

impl Named for FaultEndpoint {
    const ALL: &'static [(&'static str, Self)] =
        &[("token", Self::Token), ("userinfo", Self::Userinfo), ("jwks", Self::Jwks), ("all", Self::All)];
}

/// How the provider fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultKind {
    #[default]
    None,
    Slow,
    Status500,
    Html,
    TruncateJson,
    TruncateBody,
    Close,
}

impl Named for FaultKind {
    const ALL: &'static [(&'static str, Self)] = &[
        ("none", Self::None),
        ("slow", Self::Slow),
        ("status_500", Self::Status500),
        ("html", Self::Html),
        ("truncate_json", Self::TruncateJson),
        ("truncate_body", Self::TruncateBody),
        ("close", Self::Close),
    ];
}

/// What the logout endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogoutMode {
    #[default]
    Normal,
    NoContent,
}

impl Named for LogoutMode {
    const ALL: &'static [(&'static str, Self)] = &[("normal", Self::Normal), ("no_content", Self::NoContent)];
}

/// Whether the client's credentials are enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientMode {
    #[default]
    Enabled,
    Disabled,
}

impl Named for ClientMode {
    const ALL: &'static [(&'static str, Self)] = &[("enabled", Self::Enabled), ("disabled", Self::Disabled)];
}

/// How long ClaveÚnica's own session lasts after a login, by default.
pub const SSO_DEFAULT_S: u64 = 60;

/// The settings in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modes {
    pub id_token: IdTokenMode,
    pub userinfo: UserinfoMode,
    pub fault_endpoint: FaultEndpoint,
    pub fault_kind: FaultKind,
    pub slow_ms: u64,
    /// The ID token's `iat`, in seconds from the emulator's clock.
    pub iat_offset_s: i64,
    /// The ID token's `exp`, in seconds from the emulator's clock.
    pub exp_offset_s: i64,
    pub logout: LogoutMode,
    pub client: ClientMode,
    /// How long the provider's own session lasts after a login; 0: none.
    pub sso_s: u64,
}

impl Default for Modes {
    fn default() -> Self {
        Modes {
            id_token: IdTokenMode::Normal,
            userinfo: UserinfoMode::Normal,
            fault_endpoint: FaultEndpoint::Token,
            fault_kind: FaultKind::None,
            slow_ms: 7000,
            iat_offset_s: 0,
            exp_offset_s: ID_TOKEN_TTL_SECS as i64,
            logout: LogoutMode::Normal,
            client: ClientMode::Enabled,
            sso_s: SSO_DEFAULT_S,
        }
    }
}

/// The longest `slow_ms` accepted: a slow answer holds a thread.
const MAX_SLOW_MS: u64 = 120_000;
/// The longest `sso_s` accepted: an hour.
const MAX_SSO_S: u64 = 3600;
/// The largest `iat_offset_s` or `exp_offset_s` either way: a day.
const MAX_OFFSET_S: i64 = 86_400;

fn offset(field: &str, v: &Value) -> Result<i64, String> {
    v.as_i64()
        .filter(|s| s.abs() <= MAX_OFFSET_S)
        .ok_or_else(|| format!("{field}: not a whole number of seconds within {MAX_OFFSET_S} either way"))
}

impl Modes {
    /// Applies a `POST /__emulator/mode` body. Nothing changes when any field is wrong.
    pub fn apply(&mut self, body: &[u8]) -> Result<(), String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
        let obj = v.as_object().ok_or("not a JSON object")?;
        let mut next = *self;
        for (key, value) in obj {
            match key.as_str() {
                "id_token" => next.id_token = IdTokenMode::parse(key, value)?,
                "userinfo" => next.userinfo = UserinfoMode::parse(key, value)?,
                "logout" => next.logout = LogoutMode::parse(key, value)?,
                "client" => next.client = ClientMode::parse(key, value)?,
                "sso_s" => {
                    next.sso_s = value
                        .as_u64()
                        .filter(|s| *s <= MAX_SSO_S)
                        .ok_or_else(|| format!("sso_s: not a number of seconds up to {MAX_SSO_S}"))?;
                }
                "iat_offset_s" => next.iat_offset_s = offset(key, value)?,
                "exp_offset_s" => next.exp_offset_s = offset(key, value)?,
                "slow_ms" => {
                    next.slow_ms = value
                        .as_u64()
                        .filter(|ms| *ms <= MAX_SLOW_MS)
                        .ok_or_else(|| format!("slow_ms: not a number of milliseconds up to {MAX_SLOW_MS}"))?;
                }
                "fault" => {
                    let fault = value.as_object().ok_or("fault: not an object")?;
                    for (k, v) in fault {
                        match k.as_str() {
                            "endpoint" => next.fault_endpoint = FaultEndpoint::parse("fault.endpoint", v)?,
                            "kind" => next.fault_kind = FaultKind::parse("fault.kind", v)?,
                            other => return Err(format!("fault.{other}: unknown field")),
                        }
                    }
                }
                other => return Err(format!("{other}: unknown field")),
            }
        }
        *self = next;
        Ok(())
    }

    /// The fault a request to `endpoint` meets.
    pub fn fault_for(&self, endpoint: FaultEndpoint) -> FaultKind {
        if self.fault_endpoint == endpoint || self.fault_endpoint == FaultEndpoint::All {
            self.fault_kind
        } else {
            FaultKind::None
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "id_token": self.id_token.name(),
            "userinfo": self.userinfo.name(),
            "fault": {"endpoint": self.fault_endpoint.name(), "kind": self.fault_kind.name()},
            "slow_ms": self.slow_ms,
            "iat_offset_s": self.iat_offset_s,
            "exp_offset_s": self.exp_offset_s,
            "logout": self.logout.name(),
            "client": self.client.name(),
            "sso_s": self.sso_s,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_present_replace_absent_ones_stay() {
        let mut m = Modes::default();
        m.apply(br#"{"id_token": "alg_none", "fault": {"endpoint": "jwks", "kind": "close"}}"#).unwrap();
        assert_eq!(m.id_token, IdTokenMode::AlgNone);
        assert_eq!((m.fault_endpoint, m.fault_kind), (FaultEndpoint::Jwks, FaultKind::Close));
        m.apply(br#"{"userinfo": "names_100k", "slow_ms": 2500}"#).unwrap();
        assert_eq!(m.id_token, IdTokenMode::AlgNone, "an absent field changed");
        assert_eq!((m.userinfo, m.slow_ms), (UserinfoMode::Names100k, 2500));
        m.apply(br#"{"fault": {"kind": "slow"}}"#).unwrap();
        assert_eq!((m.fault_endpoint, m.fault_kind), (FaultEndpoint::Jwks, FaultKind::Slow));
        assert_eq!(
            m.json(),
            json!({"id_token": "alg_none", "userinfo": "names_100k",
                   "fault": {"endpoint": "jwks", "kind": "slow"}, "slow_ms": 2500,
                   "iat_offset_s": 0, "exp_offset_s": 600, "logout": "normal",
                   "client": "enabled", "sso_s": 60})
        );
    }

    #[test]
    fn every_name_round_trips() {
        for (name, mode) in IdTokenMode::ALL {
            assert_eq!(IdTokenMode::parse("id_token", &json!(name)), Ok(*mode));
            assert_eq!(mode.name(), *name);
        }
        for (name, mode) in UserinfoMode::ALL {
            assert_eq!(UserinfoMode::parse("userinfo", &json!(name)), Ok(*mode));
        }
        for (name, kind) in FaultKind::ALL {
            assert_eq!(FaultKind::parse("fault.kind", &json!(name)), Ok(*kind));
        }
    }

    #[test]
    fn a_bad_field_changes_nothing() {
        let mut m = Modes::default();
        for bad in [
            &br#"{"id_token": "alg_none", "userinfo": "nope"}"#[..],
            br#"{"id_token": 3}"#,
            br#"{"colour": "red"}"#,
            br#"{"fault": {"kind": "melt"}}"#,
            br#"{"fault": {"where": "token"}}"#,
            br#"{"slow_ms": -1}"#,
            br#"{"slow_ms": 999999999}"#,
            br#"{"iat_offset_s": 86401}"#,
            br#"{"exp_offset_s": -86401}"#,
            br#"{"exp_offset_s": 1.5}"#,
            br#"{"iat_offset_s": "5"}"#,
            br#"{"logout": "teapot"}"#,
            br#"{"client": "sleepy"}"#,
            br#"{"sso_s": -1}"#,
            br#"{"sso_s": 3601}"#,
            br#"[]"#,
            b"not json",
        ] {
            assert!(m.apply(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(m, Modes::default());
    }

    #[test]
    fn clock_offsets_and_the_logout_mode_are_set_and_shown() {
        let mut m = Modes::default();
        m.apply(br#"{"iat_offset_s": 40, "exp_offset_s": -5, "logout": "no_content"}"#).unwrap();
        assert_eq!((m.iat_offset_s, m.exp_offset_s, m.logout), (40, -5, LogoutMode::NoContent));
        let shown = m.json();
        assert_eq!(
            (&shown["iat_offset_s"], &shown["exp_offset_s"], &shown["logout"]),
            (&json!(40), &json!(-5), &json!("no_content"))
        );
        // What the tests send to go back to normal.
        m.apply(br#"{"iat_offset_s": 0, "exp_offset_s": 600, "logout": "normal"}"#).unwrap();
        assert_eq!(m, Modes::default());
        for (name, mode) in LogoutMode::ALL {
            assert_eq!(LogoutMode::parse("logout", &json!(name)), Ok(*mode));
        }
    }

    #[test]
    fn the_client_and_sso_modes_are_set_shown_and_reset() {
        let mut m = Modes::default();
        m.apply(br#"{"client": "disabled", "sso_s": 0}"#).unwrap();
        assert_eq!((m.client, m.sso_s), (ClientMode::Disabled, 0));
        assert_eq!((&m.json()["client"], &m.json()["sso_s"]), (&json!("disabled"), &json!(0)));
        m.apply(br#"{"client": "enabled", "sso_s": 60}"#).unwrap();
        assert_eq!(m, Modes::default());
    }

    #[test]
    fn faults_hit_their_endpoint_or_all() {
        let mut m = Modes::default();
        m.apply(br#"{"fault": {"endpoint": "userinfo", "kind": "status_500"}}"#).unwrap();
        assert_eq!(m.fault_for(FaultEndpoint::Userinfo), FaultKind::Status500);
        assert_eq!(m.fault_for(FaultEndpoint::Token), FaultKind::None);
        m.apply(br#"{"fault": {"endpoint": "all"}}"#).unwrap();
        for ep in [FaultEndpoint::Token, FaultEndpoint::Userinfo, FaultEndpoint::Jwks] {
            assert_eq!(m.fault_for(ep), FaultKind::Status500);
        }
    }
}
