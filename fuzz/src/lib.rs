//! Fixtures shared by the fuzz targets and the seed generator (`examples/seeds.rs`): fixed
//! session keys, gates built from fixed valid configurations, and the genuine artefacts a
//! fuzzer cannot forge (sealed session and flow cookies, ID tokens signed with the test-only
//! provider key). Targets compare what the gate accepts against these: anything accepted that
//! is not one of them would be a forgery.
//!
//! The generic fixtures (keys, token signing, the entropy source, the sandbox user) are
//! `claveunica_core::testkit`'s; what is here is what only the fuzz targets need.
//!
//! Everything is deterministic (fixed keys, fixed nonces, a fixed clock), so the seeds
//! written once by `examples/seeds.rs` are the very values the targets know as genuine.

use std::sync::OnceLock;

use claveunica_core::config::Config;
use claveunica_core::gate::Gate;
use claveunica_core::primitives::seal::KeyRing;
use claveunica_core::protocol::flow::Flow;
use claveunica_core::protocol::oidc::id_token::Expectations;
use claveunica_core::protocol::oidc::jwks::{self, KeyCache};
use claveunica_core::protocol::session::Session;
use claveunica_core::testkit::{self, key_ring, merged, provider_key, sign_rs256};
pub use claveunica_core::testkit::{SeqEntropy, CLIENT_ID, CLIENT_SECRET, KID, NOW, OLD_SESSION_KEY, SESSION_KEY};
use serde_json::{json, Value};

/// The issuer of the fixed configurations and of the genuine ID tokens: the real provider's,
/// unlike the testkit's, because the committed seeds (`corpus/`) carry it.
pub const ISSUER: &str = "https://accounts.claveunica.gob.cl/openid";
/// The environment the `config` target's `*_env` keys can see.
pub const ENV: [(&str, &str); 2] =
    [("CLAVEUNICA_CLIENT_SECRET", CLIENT_SECRET), ("CLAVEUNICA_SESSION_KEYS", SESSION_KEY)];

/// Looks a variable up in [`ENV`].
pub fn env(name: &str) -> Option<String> {
    ENV.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_string())
}

/// The ring of the fixed configurations: newest key first, the old one second.
pub fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| key_ring(&[SESSION_KEY, OLD_SESSION_KEY]))
}

/// A ring holding only the old key, to seal cookies that open as stale.
fn old_ring() -> KeyRing {
    key_ring(&[OLD_SESSION_KEY])
}

/// The base configuration: https (so `__Host-` cookies), both session keys, an idle timeout,
/// and rules that open `/static/` and the API health check and make `/` optional.
pub fn config_json() -> Value {
    merged(
        &testkit::config_json(),
        &json!({
            "issuer": ISSUER,
            "session_keys": [SESSION_KEY, OLD_SESSION_KEY],
            "session": {"max_age_s": 28800, "idle_timeout_s": 1800},
            "rules": [
                {"prefix": "/static/", "action": "public"},
                {"exact": "/", "action": "optional"},
                {"regex": "/api/v[0-9]+/health", "methods": ["GET"], "action": "public"}
            ]
        }),
    )
}

/// The configurations the gate targets run against: 0 enforce (the base), 1 parallel,
/// 2 canary at 50 %, 3 report-only over http with a pilot list that leaves the genuine
/// identity out and custom identity headers.
pub fn config_variants() -> Vec<Value> {
    let base = config_json();
    let with = |changes: Value| merged(&base, &changes);
    vec![
        base.clone(),
        with(json!({"migration": {"mode": "parallel", "legacy_cookies": ["PHPSESSID"]}})),
        with(json!({"migration": {"mode": "canary", "legacy_cookies": ["PHPSESSID"], "canary_percent": 50}})),
        with(json!({
            "redirect_uri": "http://portal.test/claveunica/callback",
            "migration": {"mode": "report_only"},
            "allowed_runs": ["55.555.555-5"],
            "headers": {"x-rut": "{run_dotted}", "x-nombre": "{nombres} {apellidos}"}
        })),
        // Two sites: the top level serves every host but `becas.test` and its subdomains,
        // whose site has its own client, keys binding and identity header.
        with(json!({"sites": [{
            "hosts": ["becas.test", "*.becas.test"],
            "client_id": "cid-b",
            "redirect_uri": "https://becas.test/claveunica/callback",
            "headers": {"x-becas-run": "{run}"}
        }]})),
    ]
}

/// The identity header names of the gate at `index` in [`config_variants`], written out here
/// rather than asked of the gate, so the `request` target does not take the code under test's
/// word for what it must strip: the five default names on every gate (they are stripped even
/// where custom names replace them), the report-only gate's custom `x-rut` and `x-nombre`, and
/// the two-site gate's `x-becas-run` (stripped at both its sites).
pub fn identity_names(index: usize) -> Vec<&'static str> {
    let mut names = vec![
        "x-claveunica-run",
        "x-claveunica-numero",
        "x-claveunica-dv",
        "x-claveunica-nombres",
        "x-claveunica-apellidos",
    ];
    if index == 3 {
        names.extend(["x-rut", "x-nombre"]);
    }
    if index == 4 {
        names.push("x-becas-run");
    }
    names
}

/// Whether a client header `name` is the identity name `id` (lower case, with `-`) in any
/// spelling an application server may read as the same: any letter case, `_` for `-`.
pub fn spells(name: &str, id: &str) -> bool {
    name.len() == id.len()
        && name.bytes().zip(id.bytes()).all(|(n, i)| n.to_ascii_lowercase() == i || (n == b'_' && i == b'-'))
}

/// The gates built from [`config_variants`].
pub fn gates() -> &'static [Gate] {
    static GATES: OnceLock<Vec<Gate>> = OnceLock::new();
    GATES.get_or_init(|| {
        config_variants()
            .iter()
            .filter_map(|v| Config::from_json(v.to_string().as_bytes(), &|_| None).ok())
            .map(Gate::new)
            .collect()
    })
}

/// Genuine session cookie values, each with a name for its seed file: a fresh one, one
/// sealed with the old key (opens stale, resealed), one idle for longer than the reseal
/// interval, one past its lifetime and one idle past the idle timeout.
pub fn genuine_sessions() -> &'static [(&'static str, String)] {
    static SESSIONS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    SESSIONS.get_or_init(|| {
        let identity = testkit::maria();
        let at = |issued: u64, last: u64| Session::insecure_from_parts(identity.clone(), issued, issued + 28_800, last);
        let old = old_ring();
        [
            ("fresh", at(NOW - 30, NOW - 30), ring(), 1u8),
            ("stale-key", at(NOW - 30, NOW - 30), &old, 2),
            ("reseal", at(NOW - 600, NOW - 300), ring(), 3),
            ("expired", at(NOW - 30_000, NOW - 30_000), ring(), 4),
            ("idle", at(NOW - 7_200, NOW - 3_600), ring(), 5),
        ]
        .into_iter()
        .filter_map(|(name, s, r, n)| s.seal(r, [n; 24]).map(|v| (name, v)))
        .collect()
    })
}

/// Whether `value` is one of the genuine session cookie values.
pub fn is_genuine_session(value: &str) -> bool {
    genuine_sessions().iter().any(|(_, v)| v == value)
}

/// A genuine login attempt and its cookie.
pub struct GenuineFlow {
    /// Its name for seed files.
    pub name: &'static str,
    /// The attempt.
    pub flow: Flow,
    /// The sealed cookie value.
    pub value: String,
}

/// Genuine flow cookies: two fresh attempts (several tabs), one sealed with the old key and
/// one older than the flow lifetime.
pub fn genuine_flows() -> &'static [GenuineFlow] {
    static FLOWS: OnceLock<Vec<GenuineFlow>> = OnceLock::new();
    FLOWS.get_or_init(|| {
        let old = old_ring();
        [
            ("fresh", 0x11u8, "/tramites?id=7", NOW - 20, ring()),
            ("second-tab", 0x22, "/", NOW - 5, ring()),
            ("stale-key", 0x33, "/perfil", NOW - 60, &old),
            ("expired", 0x44, "/", NOW - 3_600, ring()),
        ]
        .into_iter()
        .filter_map(|(name, seed, return_to, at, r)| {
            let flow = Flow::new([seed; 32], [seed.wrapping_add(1); 24], return_to.into(), at);
            let value = flow.seal(r, [seed.wrapping_add(2); 24])?;
            Some(GenuineFlow { name, flow, value })
        })
        .collect()
    })
}

/// Whether `value` is one of the genuine flow cookie values.
pub fn is_genuine_flow(value: &str) -> bool {
    genuine_flows().iter().any(|f| f.value == value)
}

/// A JWKS holding the provider key under [`KID`].
pub fn jwks_json() -> String {
    testkit::jwks(&[(KID, &provider_key())])
}

/// A key cache holding the provider key, as after a JWKS fetch at [`NOW`].
pub fn key_cache() -> KeyCache {
    let mut cache = KeyCache::default();
    if let Ok(keys) = jwks::parse(jwks_json().as_bytes()) {
        cache.replace(keys, NOW);
    }
    cache
}

/// The nonce the genuine ID tokens carry and [`expectations`] ask for.
pub fn nonce() -> &'static str {
    genuine_flows().first().map_or("", |f| f.flow.nonce())
}

/// What the jwt target verifies against.
pub fn expectations() -> Expectations<'static> {
    Expectations { issuer: ISSUER, client_id: CLIENT_ID, nonce: nonce(), now: NOW, leeway_s: 60 }
}

/// ID tokens genuinely signed with the provider key: one that verifies, and ones refused
/// for their claims (expired, another audience, another nonce, no `iat`).
pub fn genuine_id_tokens() -> &'static [(&'static str, String)] {
    static TOKENS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": KID});
        let claims = merged(&testkit::claims(nonce()), &json!({"iss": ISSUER}));
        let with = |changes: Value| merged(&claims, &changes);
        let key = provider_key();
        [
            ("valid", claims.clone()),
            ("expired", with(json!({"exp": NOW - 3_600}))),
            ("other-audience", with(json!({"aud": ["other", "x"]}))),
            ("other-nonce", with(json!({"nonce": "AAAA"}))),
            ("no-iat", with(json!({"iat": null}))),
        ]
        .into_iter()
        .map(|(name, c)| (name, sign_rs256(&header, &c, &key)))
        .collect()
    })
}

/// The signing input (`header.payload`) of a JWS, which its signature covers.
pub fn signing_input(token: &str) -> Option<&str> {
    token.rsplit_once('.').map(|(input, _)| input)
}

#[cfg(test)]
mod tests {
    //! The fixtures are what the targets take them for (`cargo test` in `fuzz/`, stable).

    use claveunica_core::gate::{Decision, Request};
    use claveunica_core::protocol::flow::Flow;
    use claveunica_core::protocol::oidc::id_token;
    use claveunica_core::protocol::session::{Opened, Session};

    use super::*;

    #[test]
    fn genuine_sessions_open_as_named() {
        let open = |name: &str, idle| {
            let (_, v) = genuine_sessions().iter().find(|(n, _)| *n == name).unwrap();
            Session::open(ring(), v, NOW, idle)
        };
        assert_eq!(genuine_sessions().len(), 5);
        assert!(matches!(open("fresh", Some(1_800)), Opened::Valid { stale_key: false, .. }));
        assert!(matches!(open("stale-key", None), Opened::Valid { stale_key: true, .. }));
        assert!(matches!(open("reseal", Some(1_800)), Opened::Valid { .. }));
        assert!(matches!(open("expired", None), Opened::Expired));
        assert!(matches!(open("idle", Some(1_800)), Opened::Expired));
    }

    #[test]
    fn genuine_flows_resume() {
        let prefix = "__Host-claveunica_flow_";
        for f in genuine_flows() {
            let name = f.flow.cookie_name(prefix);
            let lookup = |n: &str| (n == name).then_some(f.value.as_str());
            let resumed = Flow::resume(ring(), prefix, f.flow.state(), lookup, NOW, 600);
            assert_eq!(resumed.is_ok(), f.name != "expired", "{}", f.name);
        }
    }

    #[test]
    fn only_the_valid_token_verifies() {
        let keys = key_cache();
        assert_eq!(genuine_id_tokens().len(), 5);
        for (name, token) in genuine_id_tokens() {
            assert_eq!(id_token::verify(token, &keys, &expectations()).is_ok(), *name == "valid", "{name}");
        }
    }

    #[test]
    fn identity_names_are_the_gates() {
        for (i, gate) in gates().iter().enumerate() {
            for id in identity_names(i) {
                assert!(gate.is_identity_header(id), "gate {i}: {id}");
            }
        }
        assert!(spells("X_ClaveUnica_RUN", "x-claveunica-run") && !spells("x-claveunica-run", "x-claveunica-ru"));
        assert!(!gates()[0].is_identity_header("x-rut") && gates()[3].is_identity_header("X_Rut"));
    }

    #[test]
    fn gates_and_the_callback() {
        assert_eq!(gates().len(), config_variants().len());
        let f = &genuine_flows()[0];
        let cookie = format!("{}={}", f.flow.cookie_name("__Host-claveunica_flow_"), f.value);
        let headers = vec![("cookie", cookie.as_str())];
        let path = format!("/claveunica/callback?code=abc&state={}", f.flow.state());
        let req = Request { method: "GET", path: &path, headers: &headers };
        assert!(matches!(gates()[0].on_request(&req, NOW, &mut SeqEntropy(0)), Decision::Call(_)));
        let (_, session) = &genuine_sessions()[0];
        let cookie = format!("__Host-claveunica_session={session}");
        let headers = vec![("cookie", cookie.as_str())];
        let req = Request { method: "GET", path: "/tramites", headers: &headers };
        match gates()[0].on_request(&req, NOW, &mut SeqEntropy(0)) {
            Decision::Forward(f) => assert!(!f.set.is_empty()),
            other => panic!("{other:?}"),
        }
    }
}
