//! In-memory authorization codes, access tokens and the provider's own (single sign-on)
//! sessions, and (a test aid) the last codes and tokens issued.
//!
//! Every operation takes `now` (Unix seconds) from the caller instead of reading
//! the clock, so tests can move time forward without sleeping.

use std::collections::{HashMap, VecDeque};

use crate::users::User;

/// Codes live 5 minutes, as the manual says.
pub const CODE_TTL_SECS: u64 = 300;
/// Access tokens live an hour (`expires_in` in the token answer).
pub const ACCESS_TOKEN_TTL_SECS: u64 = 3600;

/// How many of each kind of credential the test aid `GET /__emulator/issued` remembers.
pub const ISSUED_KEPT: usize = 64;

/// What a code was issued for; the token endpoint checks the request against it.
#[derive(Debug, Clone)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    pub user: &'static User,
    pub auth_time: u64,
    pub expires_at: u64,
}

#[derive(Debug, Clone)]
struct AccessGrant {
    user: &'static User,
    expires_at: u64,
}

/// ClaveÚnica's own session in one browser, opened by a login: until it ends, the browser's
/// next authorization request skips the form.
#[derive(Debug, Clone)]
struct SsoSession {
    user: &'static User,
    expires_at: u64,
}

#[derive(Debug, Default)]
pub struct State {
    codes: HashMap<String, CodeGrant>,
    tokens: HashMap<String, AccessGrant>,
    sso: HashMap<String, SsoSession>,
    issued: Issued,
}

/// The last [`ISSUED_KEPT`] codes, access tokens and ID tokens handed out, newest last, kept
/// after use or expiry: tests look for them where they must never be (a proxy's log).
#[derive(Debug, Default)]
struct Issued {
    codes: VecDeque<String>,
    access_tokens: VecDeque<String>,
    id_tokens: VecDeque<String>,
}

fn remember(list: &mut VecDeque<String>, value: &str) {
    if list.len() == ISSUED_KEPT {
        list.pop_front();
    }
    list.push_back(value.to_string());
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Stores a new code. Expired entries are swept here so a long-running
    /// emulator does not grow without bound.
    pub fn insert_code(&mut self, code: String, grant: CodeGrant, now: u64) {
        self.sweep(now);
        remember(&mut self.issued.codes, &code);
        self.codes.insert(code, grant);
    }

    /// Takes a code out of the store. The code is gone afterwards whatever the
    /// caller decides, which is what makes codes single use (a failed exchange
    /// burns the code too, as a stolen code should not get a second try).
    pub fn take_code(&mut self, code: &str, now: u64) -> Option<CodeGrant> {
        let grant = self.codes.remove(code)?;
        (now < grant.expires_at).then_some(grant)
    }

    pub fn insert_token(&mut self, token: String, user: &'static User, now: u64) {
        self.sweep(now);
        remember(&mut self.issued.access_tokens, &token);
        self.tokens.insert(token, AccessGrant { user, expires_at: now + ACCESS_TOKEN_TTL_SECS });
    }

    pub fn token_user(&self, token: &str, now: u64) -> Option<&'static User> {
        self.tokens.get(token).filter(|g| now < g.expires_at).map(|g| g.user)
    }

    /// Remembers an ID token the token endpoint signed (whatever the test mode made of it).
    pub fn issued_id_token(&mut self, id_token: &str) {
        remember(&mut self.issued.id_tokens, id_token);
    }

    /// `{"codes": [...], "access_tokens": [...], "id_tokens": [...]}`, newest last.
    pub fn issued_json(&self) -> serde_json::Value {
        serde_json::json!({
            "codes": self.issued.codes,
            "access_tokens": self.issued.access_tokens,
            "id_tokens": self.issued.id_tokens,
        })
    }

    /// Opens a provider session under `id` (the browser's cookie) for `ttl` seconds.
    pub fn open_sso(&mut self, id: String, user: &'static User, now: u64, ttl: u64) {
        self.sweep(now);
        self.sso.insert(id, SsoSession { user, expires_at: now + ttl });
    }

    /// The person of the provider session `id`, while it lasts.
    pub fn sso_user(&self, id: &str, now: u64) -> Option<&'static User> {
        self.sso.get(id).filter(|s| now < s.expires_at).map(|s| s.user)
    }

    /// Ends the provider session `id` (the logout endpoint); whether there was one.
    pub fn end_sso(&mut self, id: &str) -> bool {
        self.sso.remove(id).is_some()
    }

    fn sweep(&mut self, now: u64) {
        self.codes.retain(|_, g| now < g.expires_at);
        self.tokens.retain(|_, g| now < g.expires_at);
        self.sso.retain(|_, s| now < s.expires_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::USERS;

    fn grant(now: u64) -> CodeGrant {
        CodeGrant {
            client_id: "c".into(),
            redirect_uri: "https://x/cb".into(),
            nonce: None,
            user: &USERS[0],
            auth_time: now,
            expires_at: now + CODE_TTL_SECS,
        }
    }

    #[test]
    fn codes_are_single_use() {
        let mut s = State::new();
        s.insert_code("abc".into(), grant(1000), 1000);
        assert!(s.take_code("abc", 1001).is_some());
        assert!(s.take_code("abc", 1002).is_none());
        assert!(s.take_code("other", 1002).is_none());
    }

    #[test]
    fn codes_expire_after_five_minutes() {
        let mut s = State::new();
        s.insert_code("a".into(), grant(1000), 1000);
        s.insert_code("b".into(), grant(1000), 1000);
        assert!(s.take_code("a", 1000 + CODE_TTL_SECS - 1).is_some());
        assert!(s.take_code("b", 1000 + CODE_TTL_SECS).is_none());
    }

    #[test]
    fn the_last_credentials_issued_are_remembered() {
        let mut s = State::new();
        for i in 0..=ISSUED_KEPT {
            s.insert_code(format!("c{i}"), grant(1000), 1000);
        }
        s.insert_token("t".into(), &USERS[0], 1000);
        s.issued_id_token("eyJ.x.y");
        let v = s.issued_json();
        let codes = v["codes"].as_array().unwrap();
        assert_eq!(codes.len(), ISSUED_KEPT, "only the last {ISSUED_KEPT} are kept");
        assert_eq!(
            (codes[0].as_str(), codes[ISSUED_KEPT - 1].as_str()),
            (Some("c1"), Some(&*format!("c{ISSUED_KEPT}")))
        );
        // Taken codes are still listed: the list is what was issued, not what is valid.
        assert!(s.take_code(&format!("c{ISSUED_KEPT}"), 1001).is_some());
        assert_eq!(s.issued_json()["codes"].as_array().unwrap().len(), ISSUED_KEPT);
        assert_eq!(v["access_tokens"], serde_json::json!(["t"]));
        assert_eq!(v["id_tokens"], serde_json::json!(["eyJ.x.y"]));
    }

    #[test]
    fn provider_sessions_last_their_time_and_end_at_logout() {
        let mut s = State::new();
        s.open_sso("a".into(), &USERS[0], 1000, 60);
        s.open_sso("b".into(), &USERS[1], 1000, 60);
        assert_eq!(s.sso_user("a", 1059).map(|u| u.sub), Some("2594"));
        assert!(s.sso_user("a", 1060).is_none(), "a session outlived its 60 s");
        assert!(s.sso_user("nope", 1000).is_none());
        assert!(s.end_sso("b"));
        assert!(s.sso_user("b", 1001).is_none() && !s.end_sso("b"));
    }

    #[test]
    fn access_tokens_expire() {
        let mut s = State::new();
        s.insert_token("t".into(), &USERS[1], 1000);
        assert_eq!(s.token_user("t", 1000).map(|u| u.sub), Some("3187"));
        assert!(s.token_user("t", 1000 + ACCESS_TOKEN_TTL_SECS).is_none());
        assert!(s.token_user("nope", 1000).is_none());
    }
}
