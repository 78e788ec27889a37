//! What the configuration tests share: a minimal valid document, ways to vary it, and the
//! table check that a bad value is refused naming the right key.

use serde_json::{json, Value};

use super::{Config, ConfigError, ProblemKind};

/// A valid session key (32 random-looking bytes, base64).
pub(super) use crate::testkit::SESSION_KEY as KEY;

/// The smallest valid document.
pub(super) fn base() -> Value {
    json!({
        "issuer": "https://accounts.claveunica.gob.cl/openid",
        "cluster": "claveunica",
        "client_id": "abc",
        "client_secret": "s3cret",
        "redirect_uri": "https://portal.example.gob.cl/claveunica/callback",
        "session_keys": [KEY],
    })
}

pub(super) fn no_env(_: &str) -> Option<String> {
    None
}

pub(super) fn load(v: &Value) -> Result<Config, ConfigError> {
    Config::from_json(v.to_string().as_bytes(), &no_env)
}

pub(super) fn without(key: &str) -> Value {
    let mut v = base();
    v.as_object_mut().unwrap().remove(key);
    v
}

pub(super) fn with(key: &str, value: Value) -> Value {
    let mut v = base();
    v.as_object_mut().unwrap().insert(key.into(), value);
    v
}

/// For each `(key, value, named)`: [`base`] with `key` set to `value` is refused, and a
/// problem names `named`.
pub(super) fn assert_refused(cases: &[(&str, Value, &str)]) {
    for (key, value, named) in cases {
        let err = load(&with(key, value.clone())).unwrap_err();
        assert!(err.names(named), "{key}={value}: {err}");
    }
}

/// For each `(key, value, named, kind)`: [`base`] with `key` set to `value` is refused, and
/// the first problem naming `named` says `kind`.
pub(super) fn assert_kinds(cases: &[(&str, Value, &str, ProblemKind)]) {
    for (key, value, named, kind) in cases {
        let err = load(&with(key, value.clone())).unwrap_err();
        assert_eq!(kind_of(&err, named).as_ref(), Some(kind), "{key}={value}: {err}");
    }
}

/// What is wrong with `key` in the first problem naming it.
pub(super) fn kind_of(err: &ConfigError, key: &str) -> Option<ProblemKind> {
    err.problems.iter().find(|p| p.key == key).map(|p| p.kind.clone())
}
