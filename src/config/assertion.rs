//! The assertion section: a signed statement of who the person is, which the gate adds to every
//! identified request so that the application, or the sidecar in front of it, can check that the
//! identity came from this gate and not from whoever reached it another way. ES256 (P-256), what
//! Envoy's `jwt_authn`, Istio's `RequestAuthentication` and every JWT library verify; the keys are
//! PKCS#8 PEM, newest first: the first signs, all are published at `jwks_path`.

use super::error::ProblemKind;
use super::reader::Reader;
use crate::protocol::assertion::{AssertionKey, AssertionSettings, AssertionSubject};
use crate::web::headers::header_name;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["assertion"];

const SECTION_KEYS: &[&str] = &[
    "header",
    "issuer",
    "audience",
    "jwks_path",
    "signing_keys",
    "signing_keys_env",
    "lifetime_s",
    "subject",
    "claims",
];

/// The claims beside `sub` an assertion may carry, as the document names them.
const CLAIMS: &[&str] = &["run", "nombres", "apellidos"];

/// The header the assertion travels in unless the document names another.
pub const DEFAULT_ASSERTION_HEADER: &str = "x-claveunica-assertion";

/// Where the gate publishes its public keys unless the document names another path.
pub const DEFAULT_JWKS_PATH: &str = "/.well-known/claveunica-gate/jwks.json";

/// Reads the section, if the document has one.
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>, env: &dyn Fn(&str) -> Option<String>) -> Option<AssertionSettings> {
    let mut s = r.section("assertion", "assertion.", SECTION_KEYS)?;
    let header = match s.string("header").map(|h| header_name(&h)) {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            s.problem("header", ProblemKind::BadTemplate(e));
            DEFAULT_ASSERTION_HEADER.to_string()
        }
        None => DEFAULT_ASSERTION_HEADER.to_string(),
    };
    let issuer = s.required_string("issuer");
    let audience = s.required_string("audience");
    let jwks_path = match s.string("jwks_path") {
        Some(p) if super::site::valid_path(&p) => p,
        Some(_) => {
            s.problem("jwks_path", ProblemKind::MustBe("a path starting with / without query, backslash or spaces"));
            DEFAULT_JWKS_PATH.to_string()
        }
        None => DEFAULT_JWKS_PATH.to_string(),
    };
    // Minutes: long enough to be signed once per session for a while, short enough that a
    // copied assertion is soon worthless.
    let lifetime_s = s.integer("lifetime_s", 300, 60, 900);
    let subject = match s.string("subject").as_deref() {
        None | Some("run") => AssertionSubject::Run,
        Some("pseudonym") => AssertionSubject::Pseudonym,
        Some(_) => {
            s.problem("subject", ProblemKind::OneOf(&["run", "pseudonym"]));
            AssertionSubject::Run
        }
    };
    let mut claims = (true, true, true);
    if let Some(items) = s.list("claims", "a list of claims (run, nombres, apellidos)") {
        claims = (false, false, false);
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some("run") => claims.0 = true,
                Some("nombres") => claims.1 = true,
                Some("apellidos") => claims.2 = true,
                _ => s.item_problem("claims", i, ProblemKind::OneOf(CLAIMS)),
            }
        }
    }
    let keys = signing_keys(&mut s, env);
    r.absorb(s);
    Some(AssertionSettings {
        header,
        issuer: issuer?,
        audience: audience?,
        jwks_path,
        lifetime_s,
        subject,
        run_claim: claims.0,
        nombres_claim: claims.1,
        apellidos_claim: claims.2,
        keys: keys?.into(),
    })
}

/// The signing keys, listed in the document or in an environment variable holding the PEM
/// blocks one after another, never both; every one must be a P-256 private key, once.
fn signing_keys(s: &mut Reader<'_>, env: &dyn Fn(&str) -> Option<String>) -> Option<Vec<AssertionKey>> {
    let (key, pems) = s.inline_or_env(
        ("signing_keys", "signing_keys_env"),
        ("a PKCS#8 PEM string", "a list of PKCS#8 PEM keys, newest first"),
        env,
        split_pems,
    )?;
    if pems.is_empty() {
        s.problem(key, ProblemKind::NoKeys);
        return None;
    }
    let mut keys: Vec<AssertionKey> = Vec::with_capacity(pems.len());
    for (i, pem) in pems.iter().enumerate() {
        match AssertionKey::from_pem(pem) {
            Some(k) if keys.iter().any(|known| known.kid() == k.kid()) => {
                s.item_problem(key, i, ProblemKind::RepeatedKey);
            }
            Some(k) => keys.push(k),
            None => s.item_problem(key, i, ProblemKind::MustBe("a P-256 private key in PKCS#8 PEM")),
        }
    }
    (keys.len() == pems.len()).then_some(keys)
}

/// The PEM blocks of a variable that holds one or more, one after another.
fn split_pems(text: &str) -> Vec<String> {
    const END: &str = "-----END PRIVATE KEY-----";
    let mut pems = Vec::new();
    let mut rest = text;
    while let Some(end) = rest.find(END) {
        let (block, after) = rest.split_at(end + END.len());
        pems.push(block.trim().to_string());
        rest = after;
    }
    if !rest.trim().is_empty() {
        // Text after the last block: kept, so it is refused as a key rather than ignored.
        pems.push(rest.trim().to_string());
    }
    pems
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::super::testing::{kind_of, load, with};
    use super::super::{Config, ProblemKind};
    use crate::protocol::assertion::AssertionSubject;
    use crate::testkit::{ASSERTION_KEY, NEXT_ASSERTION_KEY};

    fn section(changes: Value) -> Value {
        let mut a = json!({"issuer": "https://portal.example.gob.cl/gate", "audience": "portal",
                           "signing_keys": [ASSERTION_KEY]});
        for (k, v) in changes.as_object().unwrap() {
            a[k] = v.clone();
        }
        with("assertion", a)
    }

    #[test]
    fn defaults_and_what_may_be_set() {
        let c = load(&section(json!({}))).unwrap();
        let a = c.assertion.unwrap();
        assert_eq!(
            (a.header.as_str(), a.jwks_path.as_str(), a.lifetime_s),
            ("x-claveunica-assertion", "/.well-known/claveunica-gate/jwks.json", 300)
        );
        assert_eq!(a.subject, AssertionSubject::Run);
        assert!(a.run_claim && a.nombres_claim && a.apellidos_claim);
        assert!(c.headers.is_identity_name("X-ClaveUnica-Assertion"), "a client's copy is stripped");
        let c = load(&section(json!({"header": "X-Asercion", "claims": ["run"], "lifetime_s": 120.0}))).unwrap();
        let a = c.assertion.unwrap();
        assert_eq!((a.header.as_str(), a.lifetime_s), ("x-asercion", 120));
        assert!(a.run_claim && !a.nombres_claim && !a.apellidos_claim);
        assert!(load(&with("rules", json!([]))).unwrap().assertion.is_none(), "off unless configured");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (json!({"issuer": null}), "assertion.issuer", ProblemKind::Missing),
            (json!({"signing_keys": []}), "assertion.signing_keys", ProblemKind::NoKeys),
            (
                json!({"signing_keys": ["not a key"]}),
                "assertion.signing_keys[0]",
                ProblemKind::MustBe("a P-256 private key in PKCS#8 PEM"),
            ),
            (
                json!({"signing_keys": [ASSERTION_KEY, ASSERTION_KEY]}),
                "assertion.signing_keys[1]",
                ProblemKind::RepeatedKey,
            ),
            (json!({"lifetime_s": 3600}), "assertion.lifetime_s", ProblemKind::NotWholeNumber { min: 60, max: 900 }),
            (json!({"subject": "email"}), "assertion.subject", ProblemKind::OneOf(&["run", "pseudonym"])),
            (json!({"claims": ["run", "email"]}), "assertion.claims[1]", ProblemKind::OneOf(super::CLAIMS)),
            (
                json!({"jwks_path": "jwks.json"}),
                "assertion.jwks_path",
                ProblemKind::MustBe("a path starting with / without query, backslash or spaces"),
            ),
            (json!({"colour": "blue"}), "assertion.colour", ProblemKind::UnknownKey),
            (
                json!({"jwks_path": "/claveunica/logout"}),
                "assertion.jwks_path",
                ProblemKind::MustBe("a path other than the callback, login and logout paths"),
            ),
        ];
        for (changes, key, kind) in cases {
            let err = load(&section(changes.clone())).unwrap_err();
            assert_eq!(kind_of(&err, key), Some(kind), "{changes}: {err}");
        }
        let err = load(&section(json!({"header": "Cookie"}))).unwrap_err();
        assert!(err.names("assertion.header"), "{err}");
        // An RSA key is no P-256 key.
        let rsa = include_str!("../testdata/provider_key.pem");
        assert!(load(&section(json!({"signing_keys": [rsa]}))).unwrap_err().names("assertion.signing_keys[0]"));
    }

    #[test]
    fn keys_from_the_environment_one_pem_after_another() {
        let mut v = section(json!({}));
        v["assertion"].as_object_mut().unwrap().remove("signing_keys");
        v["assertion"]["signing_keys_env"] = json!("CU_ASSERTION_KEYS");
        let both = format!("{ASSERTION_KEY}\n{NEXT_ASSERTION_KEY}");
        let env = |k: &str| (k == "CU_ASSERTION_KEYS").then(|| both.clone());
        let c = Config::from_json(v.to_string().as_bytes(), &env).unwrap();
        let keys = &c.assertion.unwrap().keys;
        assert_eq!(keys.len(), 2);
        assert_ne!(keys[0].kid(), keys[1].kid());
        let trailing = format!("{ASSERTION_KEY}\njunk");
        let env = |k: &str| (k == "CU_ASSERTION_KEYS").then(|| trailing.clone());
        let err = Config::from_json(v.to_string().as_bytes(), &env).unwrap_err();
        assert!(err.names("assertion.signing_keys_env[1]"), "{err}");
        let err = Config::from_json(v.to_string().as_bytes(), &|_| None).unwrap_err();
        assert_eq!(
            kind_of(&err, "assertion.signing_keys_env"),
            Some(ProblemKind::EnvUnset("CU_ASSERTION_KEYS".into()))
        );
        let debug = format!("{:?}", load(&section(json!({}))).unwrap());
        assert!(!debug.contains("PRIVATE KEY") && !debug.contains(&ASSERTION_KEY[30..60]), "{debug}");
    }
}
