#![cfg(not(target_arch = "wasm32"))]
//! End to end, the gate's signed assertion checked by a real verifier, on both hosts: the gate
//! (in Envoy, or the Unit component under `wasmtime serve`) forwards to a second Envoy playing
//! the application's sidecar (`envoy/verifier-sidecar.yaml.tmpl`: `jwt_authn` with the gate's
//! issuer and audience, the keys from the gate's JWKS URL, `run` copied to `x-verified-run`,
//! every path requiring it), which forwards to the echo app. So the assertion is proven against
//! an implementation the gate's authors did not write, fetching the keys as an operator's
//! sidecar would.
//!
//! What an application behind such a sidecar can rely on: a request that reaches it without
//! the gate (from a pod in the mesh, say), with no assertion, a forged one or a stale one, is
//! refused at the sidecar and never reaches it; one the gate signed passes, with the verified
//! RUN. A copy of a valid assertion replayed within its lifetime passes too: that is the risk
//! the short lifetime (five minutes by default) bounds, and the test shows it as the positive
//! control of the refusals.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test assertion
//! ```

#[macro_use]
mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use claveunica_core::protocol::assertion::AssertionKey;
use claveunica_core::testkit::{ASSERTION_KEY, NEXT_ASSERTION_KEY};
use jwt_simple::algorithms::{ECDSAP256KeyPairLike, ES256KeyPair};
use jwt_simple::claims::{Audiences, JWTClaims};
use jwt_simple::prelude::Duration;
use serde_json::{json, Value};
use support::checks::{assert_identified, logged_in, GateUnderTest, Host};
use support::unit::UnitStack;
use support::verifier::{Expected, Verifier};
use support::{now, Browser, Response, Stack, RUN};

on_both_hosts! {
    a_login_through_the_gate_reaches_the_app_with_the_run_the_sidecar_verified,
    a_request_that_bypasses_the_gate_reaches_the_app_only_with_a_valid_assertion,
    after_a_key_rotation_the_sidecar_accepts_the_new_key_and_the_old_while_both_are_published,
}

/// The gate's `assertion.issuer`, as the sidecar expects it.
const ISSUER: &str = "https://portal.example.gob.cl/claveunica-gate";
/// The application the assertions are for.
const AUDIENCE: &str = "legacy-portal";
/// The gate's default `assertion.header`, the sidecar's `from_headers`.
const HEADER: &str = "x-claveunica-assertion";
/// Where the sidecar puts the verified `run` claim.
const VERIFIED_RUN: &str = "x-verified-run";
/// Enforced at the gate (no rule names it).
const PRIVATE: &str = "/tramites?format=json";

/// The gate signs with the test key.
fn signs_with_current_key(c: &mut Value) {
    c["assertion"] = json!({"issuer": ISSUER, "audience": AUDIENCE, "signing_keys": [ASSERTION_KEY]});
}

/// The gate signs with the next key, and still publishes the current one.
fn signs_with_next_key(c: &mut Value) {
    c["assertion"] =
        json!({"issuer": ISSUER, "audience": AUDIENCE, "signing_keys": [NEXT_ASSERTION_KEY, ASSERTION_KEY]});
}

/// The gate, its upstream the sidecar, the sidecar's the echo app.
struct Chain {
    gate: Box<dyn GateUnderTest>,
    sidecar: Verifier,
}

/// Starts the gate on `host` with `assertion` applied to its configuration, forwarding to a
/// sidecar that starts next, on a port picked first.
fn start_chain(host: Host, assertion: fn(&mut Value)) -> Chain {
    let port = Verifier::pick_port();
    let gate: Box<dyn GateUnderTest> = match host {
        Host::Envoy => Box::new(Stack::builder().upstream_port(port).edit_config(assertion).start()),
        Host::Unit => {
            let stack = UnitStack::start();
            let mut config = stack.config().clone();
            // As the other tests' Unit stacks: no rules of its own, every path enforced.
            config.as_object_mut().map(|o| o.remove("rules"));
            config["upstream"] = json!(format!("http://127.0.0.1:{port}"));
            assertion(&mut config);
            stack.write_config(&config.to_string());
            Box::new(stack)
        }
    };
    let sidecar = Verifier::start(port, &gate.app(), &gate.base(), Expected { issuer: ISSUER, audience: AUDIENCE });
    Chain { gate, sidecar }
}

/// A JWT's header and payload, decoded.
fn parts(token: &str) -> (Value, Value) {
    let decode = |segment: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(segment).unwrap_or_else(|e| panic!("{segment:?} is not base64url: {e}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{segment:?} is not JSON: {e}"))
    };
    let mut segments = token.split('.');
    match (segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some(header), Some(payload), Some(_), None) => (decode(header), decode(payload)),
        _ => panic!("not a compact JWS: {token:?}"),
    }
}

/// The `kid` the gate names `pem` by.
fn kid_of(pem: &str) -> String {
    AssertionKey::from_pem(pem).unwrap_or_else(|| panic!("not a P-256 key")).kid().to_string()
}

/// What one assertion says, beside who signed it.
struct Claims<'a> {
    issuer: &'a str,
    audience: &'a str,
    issued_at: u64,
    expires_at: u64,
}

impl Claims<'_> {
    /// What the gate would say about María now.
    fn valid() -> Self {
        let now = now();
        Claims { issuer: ISSUER, audience: AUDIENCE, issued_at: now, expires_at: now + 300 }
    }
}

/// An ES256 assertion about María with `claims`, signed by `pair` under the header `kid`.
fn sign(pair: &ES256KeyPair, kid: &str, claims: &Claims<'_>) -> String {
    let person = json!({"run": RUN, "nombres": "María Carmen", "apellidos": "De los Ríos Núñez"});
    let claims = JWTClaims {
        issued_at: Some(Duration::from_secs(claims.issued_at)),
        expires_at: Some(Duration::from_secs(claims.expires_at)),
        invalid_before: None,
        issuer: Some(claims.issuer.to_string()),
        subject: Some(RUN.to_string()),
        audiences: Some(Audiences::AsString(claims.audience.to_string())),
        jwt_id: Some("test-assertion".to_string()),
        nonce: None,
        custom: person,
    };
    // `with_key_id` takes the pair, which is not `Clone`: a copy from its bytes.
    let pair = ES256KeyPair::from_bytes(&pair.to_bytes()).unwrap_or_else(|e| panic!("copying a key pair: {e}"));
    pair.with_key_id(kid).sign(claims).unwrap_or_else(|e| panic!("signing a test assertion: {e}"))
}

/// The key pair of a test key's PEM.
fn pair(pem: &str) -> ES256KeyPair {
    ES256KeyPair::from_pem(pem).unwrap_or_else(|e| panic!("not a P-256 key: {e}"))
}

/// `token` with its payload's run changed in one byte, the signature kept.
fn with_one_payload_byte_changed(token: &str) -> String {
    let segments: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = segments.as_slice() else { panic!("not a compact JWS: {token:?}") };
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap_or_default()).unwrap_or_default();
    let changed = text.replacen(&format!("\"run\":\"{RUN}\""), "\"run\":\"44444444-5\"", 1);
    assert_ne!(changed, text, "no run claim to change in {text}");
    format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(changed))
}

/// An unsigned assertion (`alg: none`) with valid claims, naming the gate's key.
fn unsigned(kid: &str) -> String {
    let claims = Claims::valid();
    let header = json!({"alg": "none", "typ": "JWT", "kid": kid});
    let payload = json!({"iss": claims.issuer, "aud": claims.audience, "sub": RUN, "run": RUN,
                         "iat": claims.issued_at, "exp": claims.expires_at});
    format!("{}.{}.", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(payload.to_string()))
}

/// A browser that talks to the sidecar directly, as a pod in the mesh could.
fn straight_to(chain: &Chain) -> Browser {
    Browser::new(chain.sidecar.base(), &chain.gate.provider())
}

/// The sidecar's refusal, from Envoy's `jwt_authn`, not the app's echo: `status` is 401, or
/// 403 for a valid signature meant for another audience.
fn assert_refused_at_sidecar(chain: &Chain, what: &str, status: u16, r: &Response) {
    assert_eq!(r.status, status, "{what}: {r:?}\nsidecar log:\n{}", chain.sidecar.log());
    assert!(!r.body.contains("\"headers\""), "{what}: the app's echo came back: {}", r.body);
}

/// María logs in through the gate; the app's echo of her next request.
fn login_and_fetch(chain: &Chain) -> support::Echo {
    let mut browser = logged_in(chain.gate.as_ref(), PRIVATE);
    let r = browser.get(PRIVATE);
    assert_eq!(r.status, 200, "through the gate and the sidecar: {r:?}\nsidecar log:\n{}", chain.sidecar.log());
    assert_identified(&r)
}

fn a_login_through_the_gate_reaches_the_app_with_the_run_the_sidecar_verified(host: Host) {
    let chain = start_chain(host, signs_with_current_key);
    // The sidecar has not asked for the keys yet: it fetches them for the first assertion.
    assert_eq!(chain.sidecar.jwks_fetches(), 0);
    let before = chain.sidecar.app_requests();

    let echo = login_and_fetch(&chain);
    assert_eq!(echo.one(VERIFIED_RUN), Some(RUN), "the sidecar's verified claim: {echo:?}");
    let token = echo.one(HEADER).unwrap_or_else(|| panic!("the sidecar did not forward the assertion: {echo:?}"));
    let (header, payload) = parts(token);
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("ES256"), Some(kid_of(ASSERTION_KEY).as_str())));
    assert_eq!((payload["iss"].as_str(), payload["aud"].as_str()), (Some(ISSUER), Some(AUDIENCE)), "{payload}");
    assert_eq!(payload["run"].as_str(), Some(RUN), "{payload}");
    assert!(chain.sidecar.jwks_fetches() >= 1, "the sidecar verified without the gate's JWKS");
    assert_eq!(chain.sidecar.app_requests(), before + 1, "the one request after the login");

    // A client's own x-verified-run, sent through the gate (which knows nothing of that name),
    // is replaced by the sidecar's verified one: the app sees one value, María's.
    let mut browser = logged_in(chain.gate.as_ref(), PRIVATE);
    let echo = assert_identified(&browser.get_with_headers(PRIVATE, &[(VERIFIED_RUN, "11111111-1")]));
    assert_eq!(echo.all(VERIFIED_RUN), [RUN], "{echo:?}");
}

fn a_request_that_bypasses_the_gate_reaches_the_app_only_with_a_valid_assertion(host: Host) {
    let chain = start_chain(host, signs_with_current_key);
    let echo = login_and_fetch(&chain);
    let captured = echo.one(HEADER).unwrap_or_else(|| panic!("no assertion reached the app: {echo:?}")).to_string();

    let gate_kid = kid_of(ASSERTION_KEY);
    let current = pair(ASSERTION_KEY);
    let next = pair(NEXT_ASSERTION_KEY);
    let never_the_gates = ES256KeyPair::generate();
    let valid = Claims::valid();
    let now = now();
    let forgeries: Vec<(&str, u16, String)> = vec![
        ("alg none", 401, unsigned(&gate_kid)),
        ("signed by a key the gate does not publish", 401, sign(&next, &kid_of(NEXT_ASSERTION_KEY), &valid)),
        ("signed by another key under the gate's kid", 401, sign(&next, &gate_kid, &valid)),
        ("signed by a key the gate never had, under its kid", 401, sign(&never_the_gates, &gate_kid, &valid)),
        ("a real one with one payload byte changed", 401, with_one_payload_byte_changed(&captured)),
        (
            "expired ten minutes ago (beyond the verifier's minute of clock skew)",
            401,
            sign(&current, &gate_kid, &Claims { issued_at: now - 900, expires_at: now - 600, ..Claims::valid() }),
        ),
        (
            "for another application",
            403,
            sign(&current, &gate_kid, &Claims { audience: "another-app", ..Claims::valid() }),
        ),
        (
            "from another issuer",
            401,
            sign(&current, &gate_kid, &Claims { issuer: "https://evil.test/", ..Claims::valid() }),
        ),
        ("not a JWT", 401, "44444444-4".to_string()),
    ];

    let before = chain.sidecar.app_requests();
    let mut direct = straight_to(&chain);
    // No assertion, only the identity headers the gate would have set: anyone can write those.
    let plain = [("x-claveunica-run", RUN), (VERIFIED_RUN, RUN)];
    assert_refused_at_sidecar(&chain, "no assertion", 401, &direct.get_with_headers(PRIVATE, &plain));
    for (what, status, token) in &forgeries {
        let r = direct.get_with_headers(PRIVATE, &[(HEADER, token), (VERIFIED_RUN, RUN)]);
        assert_refused_at_sidecar(&chain, what, *status, &r);
    }
    assert_eq!(chain.sidecar.app_requests(), before, "a refused request reached the app");

    // Positive controls. One signed here with the gate's key and the same claims as the
    // forgeries passes, so each was refused for what was wrong with it, not for how this test
    // signs.
    let ours = sign(&current, &gate_kid, &valid);
    let echo = direct.get_with_headers(PRIVATE, &[(HEADER, &ours)]).echo();
    assert_eq!(echo.one(VERIFIED_RUN), Some(RUN), "{echo:?}");
    // The assertion the app received, replayed by someone who saw it, passes while it lasts:
    // a bearer token, replayable within minutes. That is the accepted risk the short lifetime
    // bounds (and why it travels only inside the mesh, after the gate).
    let echo = direct.get_with_headers(PRIVATE, &[(HEADER, &captured)]).echo();
    assert_eq!(echo.one(VERIFIED_RUN), Some(RUN), "{echo:?}");
    assert_eq!(chain.sidecar.app_requests(), before + 2);
}

fn after_a_key_rotation_the_sidecar_accepts_the_new_key_and_the_old_while_both_are_published(host: Host) {
    let chain = start_chain(host, signs_with_next_key);
    let (next_kid, current_kid) = (kid_of(NEXT_ASSERTION_KEY), kid_of(ASSERTION_KEY));
    let mut direct = straight_to(&chain);
    let before = chain.sidecar.app_requests();
    assert_eq!(chain.sidecar.jwks_fetches(), 0, "the sidecar fetched the keys before it needed them");

    // What the gate signs now, with the new key, passes once the sidecar has the JWKS.
    let echo = login_and_fetch(&chain);
    assert_eq!(echo.one(VERIFIED_RUN), Some(RUN), "{echo:?}");
    let token = echo.one(HEADER).unwrap_or_else(|| panic!("no assertion reached the app: {echo:?}"));
    assert_eq!(parts(token).0["kid"].as_str(), Some(next_kid.as_str()), "the newest key signs");
    // One the old key signed before the rotation, still within its lifetime, passes too.
    let old = sign(&pair(ASSERTION_KEY), &current_kid, &Claims::valid());
    assert_eq!(direct.get_with_headers(PRIVATE, &[(HEADER, &old)]).echo().one(VERIFIED_RUN), Some(RUN));
    assert_eq!(chain.sidecar.app_requests(), before + 2);
    assert_eq!(chain.sidecar.jwks_fetches(), 1, "both keys come from the one JWKS the sidecar fetched");
    // Control: a key that is neither is still refused.
    let stranger = ES256KeyPair::generate();
    let r =
        direct.get_with_headers(PRIVATE, &[(HEADER, &sign(&stranger, &stranger.jwk_thumbprint(), &Claims::valid()))]);
    assert_refused_at_sidecar(&chain, "a key the gate never had", 401, &r);
    assert_eq!(chain.sidecar.app_requests(), before + 2);
}
