//! Test aids under `/__emulator/`, not part of ClaveÚnica: per-endpoint request counts,
//! switching the test modes, and rotating the signing key. (The last credentials issued,
//! `/__emulator/issued`, are kept with the rest of the state, in `crate::state`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::PoisonError;

use serde_json::json;

use super::{App, AUTHORIZE_PATH, JWKS_PATH, TOKEN_PATH, USERINFO_PATH};
use crate::http::{Reply, Req};
use crate::tokens::Keys;

/// Requests received per endpoint, any method, any outcome; served at [`STATS_PATH`](super::STATS_PATH) so
/// tests can tell how often a relying party called (e.g. that N proxy workers fetched the
/// JWKS once, not N times).
#[derive(Debug, Default)]
pub struct Stats {
    jwks: AtomicU64,
    token: AtomicU64,
    userinfo: AtomicU64,
    authorize: AtomicU64,
}

impl Stats {
    pub(super) fn count(&self, path: &str) {
        let counter = match path {
            JWKS_PATH => &self.jwks,
            TOKEN_PATH => &self.token,
            USERINFO_PATH => &self.userinfo,
            AUTHORIZE_PATH => &self.authorize,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn json(&self) -> serde_json::Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "jwks": n(&self.jwks),
            "token": n(&self.token),
            "userinfo": n(&self.userinfo),
            "authorize": n(&self.authorize),
        })
    }
}

pub(super) fn set_modes(app: &App, req: &Req) -> Reply {
    let mut modes = app.modes.lock().unwrap_or_else(PoisonError::into_inner);
    match modes.apply(&req.body) {
        Ok(()) => {
            eprintln!("modes: {}", modes.json());
            Reply::json(200, &modes.json()).no_store()
        }
        Err(e) => Reply::json(400, &json!({ "error": e })).no_store(),
    }
}

pub(super) fn rotate_key(app: &App, req: &Req) -> Reply {
    let keep_old = if req.body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        match serde_json::from_slice::<serde_json::Value>(&req.body) {
            Ok(v) if v.is_object() => match v.get("keep_old") {
                None => false,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(_) => return Reply::json(400, &json!({"error": "keep_old: not a boolean"})),
            },
            _ => return Reply::json(400, &json!({"error": "not a JSON object"})),
        }
    };
    // Made before taking the lock: generating a key takes a while.
    let new = match Keys::generate() {
        Ok(k) => k,
        Err(e) => return Reply::json(500, &json!({ "error": e.to_string() })),
    };
    let kid = new.kid.clone();
    let mut keys = app.keys.write().unwrap_or_else(PoisonError::into_inner);
    let old = std::mem::replace(&mut keys.current, new);
    if keep_old {
        keys.older.insert(0, old);
    } else {
        keys.older.clear();
    }
    eprintln!("rotated the signing key: kid={kid} keep_old={keep_old}");
    Reply::json(200, &json!({ "kid": kid, "published": keys.jwks()["keys"].as_array().map_or(0, Vec::len) })).no_store()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::endpoints::tests::{app, exchange, get, id_token_parts, login, post_form, post_json, CB, NOW};
    use crate::endpoints::{
        route, App, AUTHORIZE_PATH, DISCOVERY_PATH, ISSUED_PATH, JWKS_PATH, ROTATE_KEY_PATH, STATS_PATH, TOKEN_PATH,
        USERINFO_PATH,
    };

    /// A test aid's answer to a GET: a 200, never cached, in JSON.
    fn aid_json(app: &App, path: &str) -> serde_json::Value {
        let reply = route(app, &get(path, ""), NOW);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("Cache-Control"), Some("no-store"));
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn issued_lists_the_code_and_tokens_of_a_login() {
        let app = app(None);
        let issued = |app: &App| aid_json(app, ISSUED_PATH);
        assert_eq!(issued(&app), json!({"codes": [], "access_tokens": [], "id_tokens": []}));
        let code = login(&app, Some("n"), NOW);
        let answer: serde_json::Value = serde_json::from_slice(&exchange(&app, &code, CB, NOW).body).unwrap();
        let expected = json!({
            "codes": [code],
            "access_tokens": [answer["access_token"]],
            "id_tokens": [answer["id_token"]],
        });
        assert_eq!(issued(&app), expected);
        assert_eq!(route(&app, &post_json(ISSUED_PATH, ""), NOW).status, 404);
    }

    #[test]
    fn stats_count_requests_per_endpoint() {
        let app = app(None);
        let stats = |app: &App| aid_json(app, STATS_PATH);
        assert_eq!(stats(&app), json!({"jwks": 0, "token": 0, "userinfo": 0, "authorize": 0}));
        route(&app, &get(JWKS_PATH, ""), NOW);
        route(&app, &get(JWKS_PATH, ""), NOW);
        // Failures count too: the call was made.
        route(&app, &get(TOKEN_PATH, ""), NOW);
        route(&app, &post_form(USERINFO_PATH, ""), NOW);
        route(&app, &get(AUTHORIZE_PATH, "client_id=nope"), NOW);
        route(&app, &get(DISCOVERY_PATH, ""), NOW);
        assert_eq!(stats(&app), json!({"jwks": 2, "token": 1, "userinfo": 1, "authorize": 1}));
        assert_eq!(route(&app, &post_form(STATS_PATH, ""), NOW).status, 404);
    }

    #[test]
    fn rotating_the_key_publishes_the_new_kid() {
        let app = app(None);
        let kids = |app: &App| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_slice(&route(app, &get(JWKS_PATH, ""), NOW).body).unwrap();
            v["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_string()).collect()
        };
        let first = app.keys().current.kid.clone();
        let reply = route(&app, &post_json(ROTATE_KEY_PATH, r#"{"keep_old": true}"#), NOW);
        assert_eq!(reply.status, 200);
        let second: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let second = second["kid"].as_str().unwrap().to_string();
        assert_eq!(kids(&app), [second.clone(), first.clone()]);
        let (h, _, _) = id_token_parts(&app);
        assert_eq!(h["kid"].as_str(), Some(second.as_str()), "tokens are signed with the new key");

        assert_eq!(route(&app, &post_json(ROTATE_KEY_PATH, ""), NOW).status, 200);
        let now_kids = kids(&app);
        assert_eq!(now_kids.len(), 1, "without keep_old only the new key is published");
        assert!(!now_kids.contains(&first) && !now_kids.contains(&second));
        assert_eq!(route(&app, &post_json(ROTATE_KEY_PATH, r#"{"keep_old": 1}"#), NOW).status, 400);
    }
}
