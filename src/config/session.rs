//! The session section: the keys that seal the cookies (newest first, from the document or an
//! environment variable), the session and login-flow cookies' names and lifetimes, and the
//! response header by which the application ends a session.

use base64::Engine as _;

use super::error::ProblemKind;
use super::reader::Reader;
use crate::primitives::seal::SessionKey;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["session_keys", "session_keys_env", "session", "flow", "logout_response_header"];

/// Session cookie settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSettings {
    /// The cookie's full name, `__Host-` prefix included when cookies are `Secure`.
    pub cookie_name: String,
    /// Absolute lifetime in seconds from login.
    pub max_age_s: u64,
    /// Sliding lifetime: a session unused this long ends. `None`: no idle limit.
    pub idle_timeout_s: Option<u64>,
}

/// The longest `flow.max_age_s` a configuration may set: whatever remembers a login attempt
/// for its whole life (the ledger of spent attempts) can rely on it.
pub const FLOW_MAX_AGE_LIMIT_S: u64 = 3600;

/// Login-flow cookie settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSettings {
    /// Prefix of the per-login flow cookie names (a suffix from the state follows).
    pub cookie_prefix: String,
    /// How long a login attempt may take, in seconds.
    pub max_age_s: u64,
}

/// The session section, read; its fields become [`super::Config`]'s.
pub(super) struct Sessions {
    pub(super) keys: Vec<SessionKey>,
    pub(super) session: SessionSettings,
    pub(super) flow: FlowSettings,
    pub(super) logout_response_header: String,
}

/// Reads the section; `None` when the keys are missing or wrong (a problem says which).
/// `secure`: whether cookies are `Secure`, which puts `__Host-` before their names.
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>, env: &dyn Fn(&str) -> Option<String>, secure: bool) -> Option<Sessions> {
    let keys = keys(r, env);
    let prefix = if secure { "__Host-" } else { "" };
    let session = session(r, prefix);
    let mut flow = FlowSettings { cookie_prefix: format!("{prefix}claveunica_flow_"), max_age_s: 600 };
    if let Some(mut s) = r.section("flow", "flow.", &["max_age_s"]) {
        flow.max_age_s = s.integer("max_age_s", flow.max_age_s, 60, FLOW_MAX_AGE_LIMIT_S);
        r.absorb(s);
    }
    let logout_response_header = match r.string("logout_response_header") {
        Some(h) if valid_cookie_name(&h) => h.to_ascii_lowercase(),
        Some(_) => {
            r.problem("logout_response_header", ProblemKind::MustBe("a header name (letters, digits, - _ .)"));
            String::new()
        }
        None => "x-claveunica-logout".to_string(),
    };
    Some(Sessions { keys: keys?, session, flow, logout_response_header })
}

fn session(r: &mut Reader<'_>, prefix: &str) -> SessionSettings {
    let mut session = SessionSettings {
        cookie_name: format!("{prefix}claveunica_session"),
        max_age_s: 8 * 3600,
        idle_timeout_s: None,
    };
    let Some(mut s) = r.section("session", "session.", &["cookie_name", "max_age_s", "idle_timeout_s"]) else {
        return session;
    };
    if let Some(name) = s.string("cookie_name") {
        if valid_cookie_name(&name) && !name.starts_with("__") {
            session.cookie_name = format!("{prefix}{name}");
        } else {
            s.problem(
                "cookie_name",
                ProblemKind::MustBe("letters, digits, - _ . (the __Host- prefix is added by itself)"),
            );
        }
    }
    session.max_age_s = s.integer("max_age_s", session.max_age_s, 60, 30 * 24 * 3600);
    if s.has("idle_timeout_s") {
        // The cookie is resealed at most once a minute, so shorter limits cannot hold.
        let idle = s.integer("idle_timeout_s", 0, 120, 30 * 24 * 3600);
        if idle > 0 && idle >= session.max_age_s {
            s.problem("idle_timeout_s", ProblemKind::NotShorterThan("max_age_s"));
        }
        session.idle_timeout_s = (idle > 0).then_some(idle);
    }
    r.absorb(s);
    session
}

/// The sealing keys, listed in the document or comma-separated in an environment variable,
/// never both; every one must decode, be random-looking and appear once.
fn keys(r: &mut Reader<'_>, env: &dyn Fn(&str) -> Option<String>) -> Option<Vec<SessionKey>> {
    let (key_name, texts) = r.inline_or_env(
        ("session_keys", "session_keys_env"),
        ("a base64 string", "a list of base64 keys, newest first"),
        env,
        |text| text.split(',').map(str::to_string).collect(),
    )?;
    if texts.is_empty() {
        r.problem(key_name, ProblemKind::NoKeys);
        return None;
    }
    let mut keys: Vec<SessionKey> = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        match decode_key(t) {
            Ok(k) if keys.contains(&k) => r.item_problem(key_name, i, ProblemKind::RepeatedKey),
            Ok(k) if k.0.iter().all(|b| *b == k.0[0]) => r.item_problem(key_name, i, ProblemKind::WeakKey),
            Ok(k) => keys.push(k),
            Err(e) => r.item_problem(key_name, i, e),
        }
    }
    (keys.len() == texts.len()).then_some(keys)
}

/// Decodes one session key: base64 (standard or URL-safe, padded or not) of 32 bytes.
fn decode_key(text: &str) -> Result<SessionKey, ProblemKind> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .ok_or(ProblemKind::NotBase64)?;
    let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| ProblemKind::KeyLength(b.len()))?;
    Ok(SessionKey(key))
}

/// A cookie (or header) name: RFC 6265 token characters, minus the ones that confuse
/// real-world parsers.
pub(super) fn valid_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::super::testing::{assert_kinds, assert_refused, base, load, with, KEY};
    use super::super::ProblemKind;

    #[test]
    fn bad_values() {
        assert_refused(&[
            ("session_keys", json!([]), "session_keys"),
            ("session_keys", json!("one"), "session_keys"),
            ("session_keys", json!(["c2hvcnQ="]), "session_keys[0]"),
            ("session_keys", json!(["%%%"]), "session_keys[0]"),
            ("session_keys", json!([KEY, KEY]), "session_keys[1]"),
            ("session_keys", json!(["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]), "session_keys[0]"),
            ("session", json!({"max_age_s": 10}), "session.max_age_s"),
            ("session", json!({"cookie_name": "bad name"}), "session.cookie_name"),
            ("session", json!({"colour": 1}), "session.colour"),
            ("session", json!({"max_age_s": 600, "idle_timeout_s": 600}), "session.idle_timeout_s"),
            ("session", json!({"idle_timeout_s": 30}), "session.idle_timeout_s"),
            ("logout_response_header", json!("bad header"), "logout_response_header"),
            ("flow", json!({"max_age_s": 5}), "flow.max_age_s"),
            ("flow", json!({"cookie_prefix": "x"}), "flow.cookie_prefix"),
        ]);
    }

    #[test]
    fn what_is_wrong_is_told_by_kind() {
        let cases = [
            ("session_keys", json!([]), "session_keys", ProblemKind::NoKeys),
            ("session_keys", json!([1]), "session_keys[0]", ProblemKind::MustBe("a base64 string")),
            ("session_keys", json!(["%%%"]), "session_keys[0]", ProblemKind::NotBase64),
            ("session_keys", json!(["c2hvcnQ="]), "session_keys[0]", ProblemKind::KeyLength(5)),
            ("session_keys", json!([KEY, KEY]), "session_keys[1]", ProblemKind::RepeatedKey),
            (
                "session_keys",
                json!(["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]),
                "session_keys[0]",
                ProblemKind::WeakKey,
            ),
            ("session_keys_env", json!("K"), "session_keys", ProblemKind::NotBoth("session_keys", "session_keys_env")),
            (
                "session",
                json!({"max_age_s": 600, "idle_timeout_s": 600}),
                "session.idle_timeout_s",
                ProblemKind::NotShorterThan("max_age_s"),
            ),
            ("session", json!({"colour": 1}), "session.colour", ProblemKind::UnknownKey),
            ("session", json!(1), "session", ProblemKind::MustBe("an object")),
        ];
        assert_kinds(&cases);
    }

    #[test]
    fn lifetimes_and_the_logout_header() {
        let mut v = with("session", json!({"max_age_s": 3600, "idle_timeout_s": 900}));
        v["logout_response_header"] = json!("X-App-Logout");
        v["flow"] = json!({"max_age_s": 300});
        let c = load(&v).unwrap();
        assert_eq!(c.session.idle_timeout_s, Some(900));
        assert_eq!(c.logout_response_header, "x-app-logout");
        assert_eq!((c.session.max_age_s, c.flow.max_age_s), (3600, 300));
        let d = load(&base()).unwrap();
        assert_eq!((d.session.idle_timeout_s, d.logout_response_header.as_str()), (None, "x-claveunica-logout"));
        let named = load(&with("session", json!({"cookie_name": "portal_sid"}))).unwrap();
        assert_eq!(named.session.cookie_name, "__Host-portal_sid");
    }
}
