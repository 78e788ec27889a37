//! The gate's signed assertion, checked as an application should check it: the ES256 signature
//! against the gate's published keys (its JWKS, fetched from the gate and kept as long as the
//! gate says it may be cached), then `iss`, `aud` and `exp`. Plain identity headers say who the
//! person is only if nothing but the gate can reach the application; the assertion still says
//! it when something else can, because only the gate's key can sign one.
//!
//! ```text
//! legacy-app --assertion-jwks URL --assertion-issuer ISS --assertion-audience AUD
//! ```
//!
//! The demo page shows the outcome beside the plain headers, so a person can see the two agree,
//! and what the app would be told if someone reached it around the gate with made-up headers.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use html_escape::encode_quoted_attribute;
use jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256PublicKey};
use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::Duration;
use jwt_simple::token::Token;
use jwt_simple::JWTError;
use serde::Deserialize;

/// The request header the gate puts the assertion in (its `assertion.header` default).
pub const HEADER: &str = "x-claveunica-assertion";

/// How far the app's clock may be from the gate's. Small: the assertion lives minutes, and
/// jwt-simple's default (15 minutes) would keep an expired one good three times its life.
const CLOCK_SKEW_S: u64 = 30;

/// How long fetched keys are used before asking again: the gate's JWKS answer says
/// `cache-control: public, max-age=300`.
const JWKS_MAX_AGE_S: u64 = 300;

/// An assertion signed by a key the app does not know yet (the gate's new key after a rotation)
/// fetches the keys again, but no more often than this: made-up `kid`s must not turn every
/// request into a fetch.
const UNKNOWN_KID_REFETCH_S: u64 = 30;

/// The largest JWKS the app reads; the gate's holds a few keys of ~200 bytes.
const MAX_JWKS_BYTES: u64 = 64 * 1024;

/// What the app expects of an assertion meant for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// `iss`: the gate, as the gate's `assertion.issuer` names it.
    pub issuer: String,
    /// `aud`: this application, as the gate's `assertion.audience` names it.
    pub audience: String,
}

/// The claims beside the registered ones; the gate leaves out those its `claims` leave out.
#[derive(Debug, Default, Deserialize)]
struct Person {
    run: Option<String>,
    nombres: Option<String>,
    apellidos: Option<String>,
}

/// What a verified assertion says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key that signed it.
    pub kid: String,
    /// The RUN, or the person's pseudonym for this application (`subject: pseudonym`).
    pub sub: String,
    pub run: Option<String>,
    pub nombres: Option<String>,
    pub apellidos: Option<String>,
    /// When it stops being valid, in seconds since the epoch.
    pub expires_at: u64,
}

/// Why an assertion was not believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a JWT at all.
    Unreadable,
    /// Another algorithm than ES256 (`none`, or HS256 with the public key as its secret).
    Algorithm(String),
    /// No `kid`, or one that none of the gate's published keys has.
    UnknownKey(Option<String>),
    /// The signature does not match the published key: forged or altered.
    Signature,
    /// Past its `exp`.
    Expired,
    /// Issued in the future by more than the clock skew allowed.
    NotYetValid,
    /// `iss` is not the gate.
    Issuer,
    /// `aud` is not this application: an assertion for another one, replayed here.
    Audience,
    /// A claim the app needs is missing.
    Missing(&'static str),
    /// Some other defect jwt-simple found.
    Invalid(String),
    /// The gate's keys could not be fetched (and none were fetched before).
    KeysUnavailable(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unreadable => write!(f, "no es un JWT"),
            Refusal::Algorithm(alg) => write!(f, "algoritmo {alg}, no ES256"),
            Refusal::UnknownKey(Some(kid)) => write!(f, "firmada con una clave que la puerta no publica (kid {kid})"),
            Refusal::UnknownKey(None) => write!(f, "sin kid"),
            Refusal::Signature => write!(f, "la firma no corresponde a la clave publicada: falsificada o alterada"),
            Refusal::Expired => write!(f, "venció (exp)"),
            Refusal::NotYetValid => write!(f, "emitida en el futuro (iat)"),
            Refusal::Issuer => write!(f, "no la emitió la puerta esperada (iss)"),
            Refusal::Audience => write!(f, "es para otra aplicación (aud)"),
            Refusal::Missing(claim) => write!(f, "le falta {claim}"),
            Refusal::Invalid(e) => write!(f, "inválida: {e}"),
            Refusal::KeysUnavailable(e) => write!(f, "no se pudieron obtener las claves públicas de la puerta: {e}"),
        }
    }
}

/// The public keys of a JWKS the app can verify ES256 with, each with its `kid`; other keys
/// are left aside rather than failing the set (a JWKS may publish keys of other kinds).
pub fn parse_jwks(json: &str) -> Result<Vec<ES256PublicKey>, String> {
    let doc: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("JWKS is not JSON: {e}"))?;
    let keys = doc.get("keys").and_then(serde_json::Value::as_array).ok_or("JWKS without a keys list")?;
    Ok(keys
        .iter()
        .filter_map(|k| ES256PublicKey::from_jwk(&k.to_string()).ok())
        .filter(|k| k.key_id().is_some())
        .collect())
}

/// Verifies `token` against `keys`, at `now` (seconds since the epoch) or the clock's time.
pub fn verify(
    token: &str,
    keys: &[ES256PublicKey],
    expected: &Expected,
    now: Option<u64>,
) -> Result<Verified, Refusal> {
    let metadata = Token::decode_metadata(token).map_err(|_| Refusal::Unreadable)?;
    // Checked before the key is chosen: the algorithm is the token's claim, never a reason to
    // treat the key as anything but a P-256 public key.
    if metadata.algorithm() != "ES256" {
        return Err(Refusal::Algorithm(metadata.algorithm().to_string()));
    }
    let kid = metadata.key_id().ok_or(Refusal::UnknownKey(None))?;
    let key = keys
        .iter()
        .find(|k| k.key_id().as_deref() == Some(kid))
        .ok_or_else(|| Refusal::UnknownKey(Some(kid.to_string())))?;
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([expected.issuer.clone()])),
        allowed_audiences: Some(HashSet::from([expected.audience.clone()])),
        time_tolerance: Some(Duration::from_secs(CLOCK_SKEW_S)),
        artificial_time: now.map(Duration::from_secs),
        ..VerificationOptions::default()
    };
    let claims = key.verify_token::<Person>(token, Some(options)).map_err(|e| refusal(&e))?;
    // jwt-simple accepts a token without `exp` as never expiring: the gate always sets one, so
    // one without it was not made by the gate.
    let expires_at = claims.expires_at.ok_or(Refusal::Missing("exp"))?.as_secs();
    let sub = claims.subject.ok_or(Refusal::Missing("sub"))?;
    Ok(Verified {
        kid: kid.to_string(),
        sub,
        run: claims.custom.run,
        nombres: claims.custom.nombres,
        apellidos: claims.custom.apellidos,
        expires_at,
    })
}

fn refusal(e: &jwt_simple::Error) -> Refusal {
    match e.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature) => Refusal::Signature,
        Some(JWTError::TokenHasExpired) => Refusal::Expired,
        Some(JWTError::ClockDrift | JWTError::TokenNotValidYet) => Refusal::NotYetValid,
        Some(JWTError::RequiredIssuerMismatch) => Refusal::Issuer,
        Some(JWTError::RequiredIssuerMissing) => Refusal::Missing("iss"),
        Some(JWTError::RequiredAudienceMismatch) => Refusal::Audience,
        Some(JWTError::RequiredAudienceMissing) => Refusal::Missing("aud"),
        _ => Refusal::Invalid(e.to_string()),
    }
}

/// What the app concluded about a request's assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No assertion came: a request without identity, or a gate without the `assertion` section.
    Absent,
    Verified(Verified),
    Refused(Refusal),
}

/// The gate's keys, fetched when first needed and kept for the time the gate allows.
#[derive(Default)]
struct KeyCache {
    keys: Vec<ES256PublicKey>,
    /// When the keys were last asked for, whatever the outcome.
    asked_at: Option<Instant>,
}

/// Verifies the assertions of requests against the keys at a JWKS URL.
pub struct Verifier {
    jwks_url: String,
    expected: Expected,
    cache: Mutex<KeyCache>,
    /// How soon an unknown `kid` may fetch the keys again ([`UNKNOWN_KID_REFETCH_S`]).
    unknown_kid_refetch_s: u64,
}

impl Verifier {
    #[must_use]
    pub fn new(jwks_url: String, expected: Expected) -> Self {
        Verifier {
            jwks_url,
            expected,
            cache: Mutex::new(KeyCache::default()),
            unknown_kid_refetch_s: UNKNOWN_KID_REFETCH_S,
        }
    }

    /// The verdict on a request whose assertion header holds `token`, if any.
    pub fn check(&self, token: Option<&str>) -> Verdict {
        let Some(token) = token else { return Verdict::Absent };
        let outcome = self.keys(JWKS_MAX_AGE_S).and_then(|keys| verify(token, &keys, &self.expected, None));
        let outcome = match outcome {
            // The gate may have begun signing with a key published after the app last asked.
            Err(Refusal::UnknownKey(Some(_))) => {
                self.keys(self.unknown_kid_refetch_s).and_then(|keys| verify(token, &keys, &self.expected, None))
            }
            other => other,
        };
        match outcome {
            Ok(verified) => Verdict::Verified(verified),
            Err(refusal) => Verdict::Refused(refusal),
        }
    }

    /// The keys, asked for again if they are older than `max_age_s` (or there are none).
    fn keys(&self, max_age_s: u64) -> Result<Vec<ES256PublicKey>, Refusal> {
        // A thread that panicked holding the lock left the cache whole: use it.
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = cache.asked_at.is_some_and(|at| at.elapsed().as_secs() < max_age_s);
        if cache.keys.is_empty() || !fresh {
            cache.asked_at = Some(Instant::now());
            match fetch(&self.jwks_url).and_then(|body| parse_jwks(&body)) {
                Ok(keys) => cache.keys = keys,
                // Keys fetched before stay good until the gate can be asked again.
                Err(e) if !cache.keys.is_empty() => {
                    eprintln!("JWKS {}: {e}; keeping the keys fetched before", self.jwks_url)
                }
                Err(e) => return Err(Refusal::KeysUnavailable(e)),
            }
        }
        Ok(cache.keys.clone())
    }
}

/// GETs the JWKS.
#[cfg(not(target_arch = "wasm32"))]
fn fetch(url: &str) -> Result<String, String> {
    let response = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut body = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(response.into_reader(), MAX_JWKS_BYTES), &mut body)
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok(body)
}

/// No HTTP client in a wasm build (ureq's TLS does not build there).
#[cfg(target_arch = "wasm32")]
fn fetch(url: &str) -> Result<String, String> {
    let _ = MAX_JWKS_BYTES;
    Err(format!("GET {url}: the app fetches keys only in a native build"))
}

/// The page's section on the assertion.
pub fn html(verdict: &Verdict) -> String {
    let mut h = String::from("<h2>Aserción firmada</h2>\n");
    match verdict {
        Verdict::Absent => h.push_str("<p class=\"nada\">No llegó aserción firmada</p>\n"),
        Verdict::Refused(refusal) => h.push_str(&format!(
            "<p class=\"nada\">Aserción rechazada: {}</p>\n",
            encode_quoted_attribute(&refusal.to_string())
        )),
        Verdict::Verified(v) => {
            h.push_str(&format!(
                "<p class=\"verificada\">Identidad verificada: firma ES256 de la puerta (kid <code>{}</code>), \
emisor y audiencia correctos, vigente hasta {} (segundos desde 1970)</p>\n<table>\n\
<tr><th>afirmación</th><th>valor</th></tr>\n",
                encode_quoted_attribute(&v.kid),
                v.expires_at,
            ));
            let rows = [
                ("sub", Some(&v.sub)),
                ("run", v.run.as_ref()),
                ("nombres", v.nombres.as_ref()),
                ("apellidos", v.apellidos.as_ref()),
            ];
            for (name, value) in rows {
                let value =
                    value.map_or_else(|| "(no enviada)".to_string(), |v| encode_quoted_attribute(v).into_owned());
                h.push_str(&format!("<tr><td>{name}</td><td>{value}</td></tr>\n"));
            }
            h.push_str("</table>\n");
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use claveunica_core::protocol::assertion::{AssertionKey, AssertionSettings, AssertionSubject};
    use claveunica_core::testkit::{maria, ASSERTION_KEY, NEXT_ASSERTION_KEY, NOW};
    use jwt_simple::algorithms::{ECDSAP256KeyPairLike, ES256KeyPair};
    use jwt_simple::claims::{Audiences, JWTClaims, NoCustomClaims};
    use jwt_simple::prelude::Base64UrlSafeNoPadding;
    use jwt_simple::reexports::ct_codecs::{Decoder, Encoder};

    use super::*;

    const ISSUER: &str = "https://tramites.example.gob.cl";
    const AUDIENCE: &str = "portal-legado";

    /// The gate's own assertion settings, so the app checks exactly what the gate signs and
    /// publishes.
    fn gate(keys: &[&str], audience: &str) -> AssertionSettings {
        let keys: Vec<AssertionKey> = keys.iter().map(|pem| AssertionKey::from_pem(pem).unwrap()).collect();
        AssertionSettings {
            header: HEADER.into(),
            issuer: ISSUER.into(),
            audience: audience.into(),
            jwks_path: "/.well-known/claveunica-gate/jwks.json".into(),
            lifetime_s: 300,
            subject: AssertionSubject::Run,
            run_claim: true,
            nombres_claim: true,
            apellidos_claim: true,
            keys: Arc::from(keys),
        }
    }

    fn signed(settings: &AssertionSettings) -> String {
        settings.sign(&maria(), None, NOW, NOW + 300, "jti-1".into()).unwrap()
    }

    fn expected() -> Expected {
        Expected { issuer: ISSUER.into(), audience: AUDIENCE.into() }
    }

    /// The app's view of the gate's published keys.
    fn published(settings: &AssertionSettings) -> Vec<ES256PublicKey> {
        let keys = parse_jwks(&settings.jwks()).unwrap();
        assert_eq!(keys.len(), settings.keys.len(), "every published key is read");
        keys
    }

    fn at(token: &str, keys: &[ES256PublicKey], now: u64) -> Result<Verified, Refusal> {
        verify(token, keys, &expected(), Some(now))
    }

    #[test]
    fn the_gates_assertion_verifies_and_says_who_the_person_is() {
        let settings = gate(&[ASSERTION_KEY], AUDIENCE);
        let v = at(&signed(&settings), &published(&settings), NOW + 10).unwrap();
        assert_eq!(v.kid, settings.keys[0].kid());
        assert_eq!(v.sub, "44444444-4");
        assert_eq!(v.run.as_deref(), Some("44444444-4"));
        assert_eq!(v.nombres.as_deref(), Some("María Carmen"));
        assert_eq!(v.apellidos.as_deref(), Some("De los Ríos Núñez"));
        assert_eq!(v.expires_at, NOW + 300);
        // Either of two published keys: the gate signs with the first during a rotation.
        let rotating = gate(&[NEXT_ASSERTION_KEY, ASSERTION_KEY], AUDIENCE);
        assert!(at(&signed(&rotating), &published(&rotating), NOW).is_ok());
        assert!(at(&signed(&settings), &published(&rotating), NOW).is_ok(), "the older key still verifies");
    }

    #[test]
    fn a_forged_assertion_is_refused() {
        let settings = gate(&[ASSERTION_KEY], AUDIENCE);
        let keys = published(&settings);
        let genuine = signed(&settings);
        assert!(at(&genuine, &keys, NOW).is_ok(), "positive control");
        let parts: Vec<&str> = genuine.split('.').collect();

        // Signed with another key that claims the published key's kid: the forger copies the
        // header of a genuine assertion onto claims and a signature of their own.
        let other = signed(&gate(&[NEXT_ASSERTION_KEY], AUDIENCE));
        let other_parts: Vec<&str> = other.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], other_parts[1], other_parts[2]);
        assert_eq!(at(&forged, &keys, NOW), Err(Refusal::Signature));

        // A genuine assertion whose claims were changed: another RUN under the gate's signature.
        let claims = String::from_utf8(base64_url_decode(parts[1])).unwrap().replace("44444444-4", "55555555-5");
        let altered = format!("{}.{}.{}", parts[0], base64_url_encode(claims.as_bytes()), parts[2]);
        assert_eq!(at(&altered, &keys, NOW), Err(Refusal::Signature));

        // Signed with a key the gate does not publish, under its own kid.
        assert!(matches!(at(&other, &keys, NOW), Err(Refusal::UnknownKey(Some(_)))));

        // Unsigned (`none`), and HS256 "signed" with the public JWK as a shared secret.
        let none = format!("{}.{}.", base64_url_encode(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert_eq!(at(&none, &keys, NOW), Err(Refusal::Algorithm("none".into())));
        let hs256 = format!("{}.{}.{}", base64_url_encode(br#"{"alg":"HS256","typ":"JWT"}"#), parts[1], parts[2]);
        assert_eq!(at(&hs256, &keys, NOW), Err(Refusal::Algorithm("HS256".into())));
        assert_eq!(at("x-claveunica-run: 44444444-4", &keys, NOW), Err(Refusal::Unreadable));
    }

    #[test]
    fn an_expired_assertion_is_refused() {
        let settings = gate(&[ASSERTION_KEY], AUDIENCE);
        let keys = published(&settings);
        let token = signed(&settings);
        // Good up to its exp plus the clock skew the app allows, and not a second longer.
        assert!(at(&token, &keys, NOW + 300 + CLOCK_SKEW_S).is_ok());
        assert_eq!(at(&token, &keys, NOW + 300 + CLOCK_SKEW_S + 1), Err(Refusal::Expired));
        assert_eq!(at(&token, &keys, NOW + 3600), Err(Refusal::Expired));
        // Nor is one issued in the future.
        assert_eq!(at(&token, &keys, NOW - CLOCK_SKEW_S - 1), Err(Refusal::NotYetValid));
    }

    #[test]
    fn an_assertion_for_another_application_or_from_another_issuer_is_refused() {
        let ours = gate(&[ASSERTION_KEY], AUDIENCE);
        let keys = published(&ours);
        assert!(at(&signed(&ours), &keys, NOW).is_ok(), "positive control");
        // Same gate, same key, another application's audience: replayed here, refused.
        let theirs = gate(&[ASSERTION_KEY], "portal-de-otra-aplicacion");
        assert_eq!(at(&signed(&theirs), &keys, NOW), Err(Refusal::Audience));
        let other_issuer = Expected { issuer: "https://otra-puerta.example.gob.cl".into(), audience: AUDIENCE.into() };
        assert_eq!(verify(&signed(&ours), &keys, &other_issuer, Some(NOW)), Err(Refusal::Issuer));
    }

    #[test]
    fn an_assertion_without_exp_is_refused_though_jwt_simple_would_take_it() {
        let pair = ES256KeyPair::from_pem(ASSERTION_KEY).unwrap();
        let kid = pair.jwk_thumbprint();
        let pair = pair.with_key_id(&kid);
        let keys = published(&gate(&[ASSERTION_KEY], AUDIENCE));
        let claims = |exp: Option<u64>| JWTClaims {
            issued_at: Some(Duration::from_secs(NOW)),
            expires_at: exp.map(Duration::from_secs),
            invalid_before: None,
            issuer: Some(ISSUER.into()),
            subject: Some("44444444-4".into()),
            audiences: Some(Audiences::AsString(AUDIENCE.into())),
            jwt_id: None,
            nonce: None,
            custom: NoCustomClaims {},
        };
        let sign = |exp| pair.sign(claims(exp)).unwrap();
        assert!(at(&sign(Some(NOW + 60)), &keys, NOW).is_ok(), "positive control");
        assert_eq!(at(&sign(None), &keys, NOW), Err(Refusal::Missing("exp")));
    }

    #[test]
    fn the_page_says_whether_the_identity_was_verified() {
        let verified = Verdict::Verified(Verified {
            kid: "k<1>".into(),
            sub: "44444444-4".into(),
            run: Some("44444444-4".into()),
            nombres: Some("María <b>".into()),
            apellidos: None,
            expires_at: NOW,
        });
        let page = html(&verified);
        assert!(page.contains("Identidad verificada"), "{page}");
        assert!(page.contains("<td>nombres</td><td>María &lt;b&gt;</td>"), "{page}");
        assert!(page.contains("<td>apellidos</td><td>(no enviada)</td>"), "{page}");
        assert!(page.contains("kid <code>k&lt;1&gt;</code>"), "{page}");
        let refused = html(&Verdict::Refused(Refusal::Audience));
        assert!(
            refused.contains("Aserción rechazada: es para otra aplicación (aud)") && !refused.contains("verificada")
        );
        assert!(html(&Verdict::Absent).contains("No llegó aserción firmada"));
    }

    #[test]
    fn without_the_gates_keys_nothing_is_verified() {
        // Nothing listens on port 9 of loopback (discard): the keys cannot be had.
        let verifier = Verifier::new("http://127.0.0.1:9/jwks.json".into(), expected());
        let token = signed(&gate(&[ASSERTION_KEY], AUDIENCE));
        assert!(matches!(verifier.check(Some(&token)), Verdict::Refused(Refusal::KeysUnavailable(_))));
        assert_eq!(verifier.check(None), Verdict::Absent);
    }

    /// A gate's JWKS endpoint on loopback: answers whatever `jwks` holds, counting the fetches.
    fn jwks_server(jwks: Arc<Mutex<String>>, fetches: Arc<std::sync::atomic::AtomicUsize>) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/.well-known/claveunica-gate/jwks.json", server.server_addr().to_ip().unwrap());
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = jwks.lock().unwrap().clone();
                let _ = request.respond(tiny_http::Response::from_string(body));
            }
        });
        url
    }

    #[test]
    fn the_keys_are_fetched_once_and_again_when_the_gate_signs_with_a_new_one() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        // Real time: the verifier reads the clock, as in the demo.
        let now = jwt_simple::prelude::Clock::now_since_epoch().as_secs();
        let sign = |s: &AssertionSettings| s.sign(&maria(), None, now, now + 300, "j".into()).unwrap();
        let old = gate(&[ASSERTION_KEY], AUDIENCE);
        let jwks = Arc::new(Mutex::new(old.jwks()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut verifier = Verifier::new(jwks_server(Arc::clone(&jwks), Arc::clone(&fetches)), expected());

        assert!(matches!(verifier.check(Some(&sign(&old))), Verdict::Verified(_)));
        assert!(matches!(verifier.check(Some(&sign(&old))), Verdict::Verified(_)));
        assert_eq!(fetches.load(SeqCst), 1, "the keys are kept between requests");

        // The gate rotated without waiting for the app's cache: it signs with a key the app
        // has not seen. Within the refetch interval the app does not ask again...
        let new = gate(&[NEXT_ASSERTION_KEY, ASSERTION_KEY], AUDIENCE);
        *jwks.lock().unwrap() = new.jwks();
        assert!(matches!(verifier.check(Some(&sign(&new))), Verdict::Refused(Refusal::UnknownKey(Some(_)))));
        assert_eq!(fetches.load(SeqCst), 1, "an unknown kid does not fetch more often than allowed");
        // ...after it, the unknown kid fetches the keys once more and verifies.
        verifier.unknown_kid_refetch_s = 0;
        assert!(matches!(verifier.check(Some(&sign(&new))), Verdict::Verified(_)));
        assert_eq!(fetches.load(SeqCst), 2);
    }

    fn base64_url_decode(s: &str) -> Vec<u8> {
        Base64UrlSafeNoPadding::decode_to_vec(s, None).unwrap()
    }

    fn base64_url_encode(bytes: &[u8]) -> String {
        Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
    }
}
