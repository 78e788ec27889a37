//! The decision engine driven through whole logins against a scripted provider, with a fixed
//! clock and repeatable randomness.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use std::sync::atomic::Ordering;

use super::store::testing::Flaky;
use super::*;
use crate::protocol::oidc::jwks::{self, KeyCache};
use crate::protocol::oidc::MAX_BODY_LEN;
use crate::testkit::{self, claims, id_token, SeqEntropy, KID, NOW};

const USERINFO: &str = r#"{"sub":"2594","RolUnico":{"DV":"4","numero":44444444,"tipo":"RUN"},
    "name":{"apellidos":["De los Ríos","Núñez"],"nombres":["María","Carmen"]}}"#;

struct Harness {
    gate: Gate,
    keys: KeyCache,
    rng: SeqEntropy,
    now: u64,
    /// The `:authority` requests name, if any.
    authority: Option<&'static str>,
}

fn harness() -> Harness {
    harness_for(testkit::config())
}

fn harness_for(config: Config) -> Harness {
    Harness { gate: Gate::new(config), keys: KeyCache::default(), rng: SeqEntropy(0), now: NOW, authority: None }
}

fn get<'a>(path: &'a str, cookie: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![(":method", "GET"), (":path", path)];
    if let Some(c) = cookie {
        h.push(("cookie", c));
    }
    h
}

fn header<'a>(r: &'a Response, name: &str) -> Vec<&'a str> {
    r.headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| v.as_str()).collect()
}

fn respond(d: Decision) -> Response {
    match d {
        Decision::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn call(d: Decision) -> Call {
    match d {
        Decision::Call(c) => *c,
        other => panic!("expected a call, got {other:?}"),
    }
}

fn query(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn param(url: &str, name: &str) -> String {
    query(url).into_iter().find(|(k, _)| k == name).map(|(_, v)| v).unwrap_or_default()
}

/// `name=value` of a Set-Cookie.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

/// A started login: the redirect and the flow cookie.
struct Started {
    authorize: String,
    flow_cookie: String,
}

impl Harness {
    fn request(&mut self, path: &str, cookie: Option<&str>) -> Decision {
        let mut headers = get(path, cookie);
        headers.extend(self.authority.map(|a| (":authority", a)));
        let req = Request { method: "GET", path, headers: &headers };
        self.gate.on_request(&req, self.now, &mut self.rng)
    }

    fn answer(&mut self, pending: Pending, status: u16, body: &str) -> Decision {
        self.gate.on_call_response(
            pending,
            CallOutcome::Answered { status, body: body.as_bytes() },
            self.now,
            &mut self.rng,
            &mut self.keys,
        )
    }

    fn fail_call(&mut self, pending: Pending) -> Decision {
        self.gate.on_call_response(pending, CallOutcome::Failed, self.now, &mut self.rng, &mut self.keys)
    }

    fn start(&mut self, path: &str) -> Started {
        let r = respond(self.request(path, None));
        assert_eq!(r.status, 302);
        Started {
            authorize: header(&r, "location")[0].to_string(),
            flow_cookie: cookie_pair(header(&r, "set-cookie")[0]),
        }
    }

    /// The callback for a started login, as the provider would send the browser back.
    fn callback(&mut self, s: &Started) -> Decision {
        let path = format!("/claveunica/callback?code=c0de&state={}", param(&s.authorize, "state"));
        self.request(&path, Some(&s.flow_cookie))
    }

    /// Token answer for a started login.
    fn token_body(&self, s: &Started) -> String {
        // Issued to the client that asked, as a provider does (a gate's sites each have theirs).
        let mut claims = claims(&param(&s.authorize, "nonce"));
        claims["aud"] = json!(param(&s.authorize, "client_id"));
        json!({"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600, "id_token": id_token(&claims)})
            .to_string()
    }

    /// A whole login; the final answer.
    fn login(&mut self, path: &str) -> Response {
        let s = self.start(path);
        let token_call = call(self.callback(&s));
        let body = self.token_body(&s);
        let mut next = self.answer(token_call.pending, 200, &body);
        if let Decision::Call(c) = next {
            if c.request.method == "GET" {
                let set = testkit::jwks(&[(KID, &testkit::provider_key())]);
                next = self.answer(c.pending, 200, &set);
            } else {
                next = Decision::Call(c);
            }
        }
        let userinfo = call(next);
        respond(self.answer(userinfo.pending, 200, USERINFO))
    }
}

#[test]
fn a_visitor_without_session_is_sent_to_claveunica() {
    let mut h = harness();
    let r = respond(h.request("/tramites/certificado?id=7", None));
    assert_eq!(r.status, 302);
    let location = header(&r, "location")[0];
    assert!(location.starts_with("https://idp.test/openid/authorize/?"), "{location}");
    assert_eq!(param(location, "client_id"), "cid");
    assert_eq!(param(location, "response_type"), "code");
    assert_eq!(param(location, "scope"), "openid run name");
    assert!(location.contains("scope=openid%20run%20name"));
    assert_eq!(param(location, "redirect_uri"), "https://portal.test/claveunica/callback");
    let state = param(location, "state");
    assert!(state.len() >= 30, "{state}");
    assert!(!param(location, "nonce").is_empty());
    let set = header(&r, "set-cookie");
    assert_eq!(set.len(), 1);
    assert!(set[0].starts_with(&format!("__Host-claveunica_flow_{}=", &state[..12])), "{}", set[0]);
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure", "Max-Age=600"] {
        assert!(set[0].contains(attr), "{attr} in {}", set[0]);
    }
    assert_eq!(header(&r, "cache-control"), ["no-store"]);
}

#[test]
fn each_login_gets_its_own_state_and_nonce() {
    let mut h = harness();
    let (a, b) = (h.start("/a"), h.start("/b"));
    assert_ne!(param(&a.authorize, "state"), param(&b.authorize, "state"));
    assert_ne!(param(&a.authorize, "nonce"), param(&b.authorize, "nonce"));
    assert_ne!(a.flow_cookie.split('=').next(), b.flow_cookie.split('=').next());
}

#[test]
fn a_whole_login_then_requests_with_identity() {
    let mut h = harness();
    let s = h.start("/tramites/certificado?id=7");
    let token_call = call(h.callback(&s));
    assert_eq!((token_call.request.method, token_call.request.scheme), ("POST", "https"));
    assert_eq!(
        (token_call.request.authority.as_str(), token_call.request.path.as_str()),
        ("idp.test", "/openid/token/")
    );
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(token_call.request.body.as_deref().unwrap()).into_owned().collect();
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(field("grant_type"), Some("authorization_code"));
    assert_eq!(field("code"), Some("c0de"));
    assert_eq!(field("client_id"), Some("cid"));
    assert_eq!(field("client_secret"), Some("s3cret"));
    assert_eq!(field("redirect_uri"), Some("https://portal.test/claveunica/callback"));
    assert_eq!(field("state").map(str::to_string), Some(param(&s.authorize, "state")));

    // No keys yet: the gate fetches the JWKS, then calls userinfo with the bearer token.
    let body = h.token_body(&s);
    let jwks_call = call(h.answer(token_call.pending, 200, &body));
    assert_eq!((jwks_call.request.method, jwks_call.request.path.as_str()), ("GET", "/openid/jwks"));
    let userinfo_call = call(h.answer(jwks_call.pending, 200, &testkit::jwks(&[(KID, &testkit::provider_key())])));
    assert_eq!((userinfo_call.request.method, userinfo_call.request.path.as_str()), ("POST", "/openid/userinfo/"));
    assert!(userinfo_call.request.headers.contains(&("authorization", "Bearer at-1".to_string())));

    let done = respond(h.answer(userinfo_call.pending, 200, USERINFO));
    assert_eq!(done.events.iter().collect::<Vec<_>>(), [Event::LoginCompleted, Event::JwksRefreshed]);
    assert_eq!(done.status, 302);
    assert_eq!(header(&done, "location"), ["/tramites/certificado?id=7"]);
    let set = header(&done, "set-cookie");
    let session = set.iter().find(|c| c.starts_with("__Host-claveunica_session=")).unwrap();
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Secure", "Max-Age=28800"] {
        assert!(session.contains(attr), "{attr} in {session}");
    }
    assert!(session.len() < 1024);
    let flow_name = s.flow_cookie.split('=').next().unwrap();
    assert!(set.iter().any(|c| c.starts_with(&format!("{flow_name}=;")) && c.contains("Max-Age=0")));
    let log = done.log.clone().unwrap();
    assert!(log.message.contains("*****444-4") && !log.message.contains("44444444"), "{}", log.message);

    // The next request carries the session: forwarded with identity, gate cookies removed.
    let cookie = format!("theme=dark; {}; {}", cookie_pair(session), s.flow_cookie);
    match h.request("/tramites/certificado?id=7", Some(&cookie)) {
        Decision::Forward(f) => {
            let want = [
                ("x-claveunica-run", "44444444-4"),
                ("x-claveunica-numero", "44444444"),
                ("x-claveunica-dv", "4"),
                ("x-claveunica-nombres", "Mar%C3%ADa%20Carmen"),
                ("x-claveunica-apellidos", "De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez"),
            ];
            assert_eq!(*f.set, want.map(|(n, v)| (n.to_string(), v.to_string())));
            assert_eq!(f.cookie, CookieHeader::Replace("theme=dark".into()));
            assert!(f.upstream.set_cookies().is_empty());
            assert_eq!(f.events, Events::one(Event::SessionAccepted));
        }
        other => panic!("{other:?}"),
    }
    // A second login reuses the cached keys: no JWKS call.
    let s2 = h.start("/b");
    let token_call = call(h.callback(&s2));
    let body = h.token_body(&s2);
    let next = call(h.answer(token_call.pending, 200, &body));
    assert_eq!(next.request.path, "/openid/userinfo/");
    let done = respond(h.answer(next.pending, 200, USERINFO));
    assert_eq!(done.events, Events::one(Event::LoginCompleted), "no fetch, nothing counted for keys");
}

#[test]
fn parallel_logins_each_land_on_their_own_page() {
    let mut h = harness();
    let a = h.start("/a");
    let b = h.start("/b");
    for (s, want) in [(&b, "/b"), (&a, "/a")] {
        // Both flow cookies are in the jar, as in a browser with two tabs.
        let path = format!("/claveunica/callback?code=x&state={}", param(&s.authorize, "state"));
        let jar = format!("{}; {}", a.flow_cookie, b.flow_cookie);
        let token_call = call(h.request(&path, Some(&jar)));
        let body = h.token_body(s);
        let mut next = h.answer(token_call.pending, 200, &body);
        if let Decision::Call(c) = &next {
            if c.request.method == "GET" {
                let Decision::Call(c) = next else { unreachable!() };
                next = h.answer(c.pending, 200, &testkit::jwks(&[(KID, &testkit::provider_key())]));
            }
        }
        let done = respond(h.answer(call(next).pending, 200, USERINFO));
        assert_eq!(header(&done, "location"), [want]);
    }
}

fn assert_error_page(r: &Response, status: u16) {
    assert_eq!(r.status, status, "{}", r.body);
    let log = r.log.as_ref().expect("a failure is logged");
    let reference = log.message.split("ref=").nth(1).and_then(|r| r.split(' ').next()).expect("log names a reference");
    assert_eq!(reference.len(), 8, "{}", log.message);
    assert!(r.events.iter().any(|e| matches!(e, Event::LoginFailed(_))), "{:?}", r.events);
    assert!(r.body.contains(&format!("<code>{reference}</code>")), "{}", r.body);
    assert!(r.body.contains("lang=\"es\""));
    assert!(header(r, "location").is_empty());
    assert!(!header(r, "set-cookie").iter().any(|c| c.contains("session=") && !c.contains("Max-Age=0")));
}

#[test]
fn a_callback_with_bad_state_gets_400_and_no_provider_call() {
    let mut h = harness();
    let s = h.start("/a");
    let state = param(&s.authorize, "state");
    let other = h.start("/b");
    let cases: Vec<(String, Option<String>)> = vec![
        ("/claveunica/callback?code=x".into(), Some(s.flow_cookie.clone())),
        (format!("/claveunica/callback?code=x&state={state}X"), Some(s.flow_cookie.clone())),
        (format!("/claveunica/callback?code=x&state={state}"), None),
        // Another browser's flow cookie.
        (format!("/claveunica/callback?code=x&state={state}"), Some(other.flow_cookie.clone())),
        (format!("/claveunica/callback?code=x&state={}", &state[..20]), Some(s.flow_cookie.clone())),
        (format!("/claveunica/callback?code=x&code=y&state={state}"), Some(s.flow_cookie.clone())),
        (format!("/claveunica/callback?code=x&state={state}&state={state}"), Some(s.flow_cookie.clone())),
        (format!("/claveunica/callback?state={state}"), Some(s.flow_cookie.clone())),
        // Same cookie name, tampered value.
        (
            format!("/claveunica/callback?code=x&state={state}"),
            Some(format!("{}x", s.flow_cookie.replace(['A', 'B', 'C'], "D"))),
        ),
    ];
    for (path, cookie) in cases {
        let d = h.request(&path, cookie.as_deref());
        assert_error_page(&respond(d), 400);
    }
    // Too late.
    h.now += 601;
    assert_error_page(&respond(h.callback(&s)), 400);
}

#[test]
fn the_provider_reporting_an_error_shows_a_cancelled_page() {
    let mut h = harness();
    let s = h.start("/a");
    let path = format!("/claveunica/callback?error=access_denied&state={}", param(&s.authorize, "state"));
    let r = respond(h.request(&path, Some(&s.flow_cookie)));
    assert_error_page(&r, 401);
    assert!(r.body.contains("cancelado"));
    assert!(r.body.contains("href=\"/a\""));
}

fn after_token(status: Option<u16>, body: &str) -> Response {
    let mut h = harness();
    let s = h.start("/a");
    let c = call(h.callback(&s));
    respond(match status {
        Some(status) => h.answer(c.pending, status, body),
        None => h.fail_call(c.pending),
    })
}

#[test]
fn token_endpoint_failures() {
    assert_error_page(&after_token(None, ""), 503);
    assert_error_page(&after_token(Some(503), "busy"), 503);
    assert_error_page(&after_token(Some(504), ""), 503);
    assert_error_page(&after_token(Some(500), "<html>oops</html>"), 502);
    assert_error_page(&after_token(Some(200), "<html>not json</html>"), 502);
    assert_error_page(&after_token(Some(200), r#"{"access_token":"a","token_type":"bearer"}"#), 502);
    assert_error_page(&after_token(Some(400), r#"{"error":"invalid_client"}"#), 502);
    assert_error_page(&after_token(Some(400), r#"{"error":"invalid_grant"}"#), 400);
    assert_error_page(&after_token(Some(200), &"x".repeat(MAX_BODY_LEN + 1)), 502);
}

impl Harness {
    /// Keys fetched an hour ago, so a refetch is allowed.
    fn with_known_keys(mut self) -> Self {
        let set = jwks::parse(testkit::jwks(&[(KID, &testkit::provider_key())]).as_bytes()).unwrap();
        self.keys.replace(set, self.now - 3600);
        self
    }

    /// A login whose ID token is signed with a key the gate does not hold yet: the gate fetches
    /// the JWKS, which now holds it, and the login goes on to userinfo.
    fn login_signed_with_a_new_key(&mut self) {
        let s = self.start("/a");
        let c = call(self.callback(&s));
        let body = self.token_body_with_kid(&s, "rotated");
        let jwks_call = call(self.answer(c.pending, 200, &body));
        assert_eq!((jwks_call.request.method, jwks_call.request.path.as_str()), ("GET", "/openid/jwks"));
        let set = testkit::jwks(&[("rotated", &testkit::other_key())]);
        let next = call(self.answer(jwks_call.pending, 200, &set));
        assert_eq!(next.request.path, "/openid/userinfo/");
    }

    /// A token answer whose ID token names `kid` and is signed by the other test key.
    fn token_body_with_kid(&self, s: &Started, kid: &str) -> String {
        let token = testkit::sign_rs256(
            &json!({"alg": "RS256", "kid": kid}),
            &claims(&param(&s.authorize, "nonce")),
            &testkit::other_key(),
        );
        json!({"access_token": "a", "token_type": "bearer", "id_token": token}).to_string()
    }
}

/// Runs a login up to the ID token check with this token answer.
fn with_id_token(token: &str) -> Decision {
    let mut h = harness();
    h.keys.replace(jwks::parse(testkit::jwks(&[(KID, &testkit::provider_key())]).as_bytes()).unwrap(), NOW);
    let s = h.start("/a");
    let c = call(h.callback(&s));
    let body = json!({"access_token": "a", "token_type": "bearer", "id_token": token}).to_string();
    h.answer(c.pending, 200, &body)
}

#[test]
fn a_bad_id_token_stops_the_login() {
    let mut wrong_nonce = claims("not-the-flows");
    assert_error_page(&respond(with_id_token(&id_token(&wrong_nonce))), 502);
    wrong_nonce["nonce"] = Value::Null;
    assert_error_page(&respond(with_id_token(&id_token(&wrong_nonce))), 502);
    assert_error_page(&respond(with_id_token(&testkit::unsigned(&claims("x")))), 502);
    assert_error_page(&respond(with_id_token("garbage")), 502);
}

#[test]
fn an_unknown_kid_is_fetched_once_then_refused() {
    let mut h = harness().with_known_keys();
    h.login_signed_with_a_new_key();

    // A kid nobody knows, right after a fetch: refused without another fetch.
    let s = h.start("/b");
    let c = call(h.callback(&s));
    let body = h.token_body_with_kid(&s, "nowhere");
    assert_error_page(&respond(h.answer(c.pending, 200, &body)), 502);
}

#[test]
fn a_key_rotated_just_after_a_fetch_is_fetched_by_the_next_login() {
    // The keys were fetched this very second (first fetch or scheduled refresh), then the
    // provider signs with a new key: the login fetches again at once and goes on.
    let mut h = harness();
    h.keys.replace(jwks::parse(testkit::jwks(&[(KID, &testkit::provider_key())]).as_bytes()).unwrap(), h.now);
    h.login_signed_with_a_new_key();
}

#[test]
fn a_jwks_failure_keeps_the_last_good_keys() {
    let mut h = harness().with_known_keys();
    let s = h.start("/a");
    let c = call(h.callback(&s));
    let body = h.token_body_with_kid(&s, "new");
    let jwks_call = call(h.answer(c.pending, 200, &body));
    assert_error_page(&respond(h.fail_call(jwks_call.pending)), 503);
    // Logins signed with the known key still complete.
    let done = h.login("/c");
    assert_eq!(header(&done, "location"), ["/c"]);
}

#[test]
fn userinfo_failures() {
    let cases: [(Option<u16>, &str, u16); 6] = [
        (Some(200), r#"{"sub":"1","RolUnico":{"DV":"5","numero":44444444,"tipo":"RUN"}}"#, 502),
        (Some(200), r#"{"sub":"1","RolUnico":{"DV":"4","numero":44444444,"tipo":"PASAPORTE"}}"#, 502),
        (Some(200), "<html>", 502),
        (Some(401), r#"{"error":"invalid_token"}"#, 502),
        (Some(503), "", 503),
        (None, "", 503),
    ];
    for (outcome, answer_body, status) in cases {
        let mut h = harness();
        let s = h.start("/a");
        let c = call(h.callback(&s));
        let body = h.token_body(&s);
        let jwks_call = call(h.answer(c.pending, 200, &body));
        let u = call(h.answer(jwks_call.pending, 200, &testkit::jwks(&[(KID, &testkit::provider_key())])));
        let r = respond(match outcome {
            Some(st) => h.answer(u.pending, st, answer_body),
            None => h.fail_call(u.pending),
        });
        assert_error_page(&r, status);
    }
}

fn session_cookie(done: &Response) -> String {
    cookie_pair(header(done, "set-cookie").iter().find(|c| c.contains("_session=")).unwrap())
}

#[test]
fn a_tampered_or_expired_session_means_logging_in_again() {
    let mut h = harness();
    let cookie = session_cookie(&h.login("/"));
    let (name, value) = cookie.split_once('=').unwrap();
    let flipped: String = value.chars().rev().collect();
    for bad in [
        format!("{name}={flipped}"),
        format!("{name}=garbage"),
        format!("{name}="),
        format!("{name}={}", "A".repeat(8192)),
    ] {
        let r = respond(h.request("/private", Some(&bad)));
        assert_eq!(r.status, 302);
        assert!(header(&r, "set-cookie").iter().any(|c| c.starts_with(&format!("{name}=;"))));
    }
    h.now += 8 * 3600;
    assert_eq!(respond(h.request("/private", Some(&cookie))).status, 302);
}

#[test]
fn a_rotated_key_still_opens_and_reseals() {
    let mut old = harness();
    let cookie = session_cookie(&old.login("/"));
    let mut v = testkit::config_json();
    v["session_keys"] = json!([testkit::OLD_SESSION_KEY, testkit::SESSION_KEY]);
    let mut h = Harness { gate: Gate::new(testkit::config_from(&v)), ..harness() };
    match h.request("/private", Some(&cookie)) {
        Decision::Forward(f) => assert!(f.upstream.set_cookies()[0].starts_with("__Host-claveunica_session=")),
        other => panic!("{other:?}"),
    }
    // Once the old key is retired, its cookies no longer open.
    v["session_keys"] = json!([testkit::OLD_SESSION_KEY]);
    let mut h = Harness { gate: Gate::new(testkit::config_from(&v)), ..harness() };
    assert_eq!(respond(h.request("/private", Some(&cookie))).status, 302);
}

#[test]
fn return_to_never_leaves_the_origin() {
    for evil in [
        "//evil.test",
        "/\\evil.test",
        "https://evil.test",
        "/%2F%2Fevil.test",
        "javascript:alert(1)",
        "/claveunica/logout",
    ] {
        assert_eq!(landing_after_login(evil), ["/"], "{evil}");
    }
    let mut h = harness();
    assert_eq!(
        header(&h.login("/claveunica/login?return_to=%2Fmis-tramites%3Fa%3D1"), "location"),
        ["/mis-tramites?a=1"]
    );
}

/// Where a whole login started at the login path with `return_to` set to `wanted` sends the
/// browser at its end.
fn landing_after_login(wanted: &str) -> Vec<String> {
    let path = format!(
        "/claveunica/login?return_to={}",
        url::form_urlencoded::byte_serialize(wanted.as_bytes()).collect::<String>()
    );
    header(&harness().login(&path), "location").into_iter().map(str::to_string).collect()
}

#[test]
fn a_login_never_lands_on_the_gates_own_paths() {
    for wanted in [
        "/claveunica/logout",
        "/claveunica/logout#x",
        "/claveunica/logout?x=1#y",
        "/claveunica/logout/",
        "/claveunica/logout;x",
        "/ClaveUnica/Logout",
        "/claveunica/%6cogout",
        "/claveunica/logout%23x",
        "/x/../claveunica/logout",
        "/claveunica/x/../logout",
        "/claveunica/./logout",
        "/claveunica/%2e/logout",
        "/x/%2E%2E/claveunica/logout",
        "/x/..;/claveunica/logout",
        "/claveunica/login#",
        "/claveunica/login?return_to=/claveunica/logout",
        "/claveunica/callback#x",
    ] {
        assert_eq!(landing_after_login(wanted), ["/"], "{wanted}");
    }
    // Paths beside the gate's own are the application's, and kept.
    for kept in ["/claveunica/logoutx", "/tramites#logout", "/claveunica/logout-info", "/a/b?c=1#d"] {
        assert_eq!(landing_after_login(kept), [kept], "{kept}");
    }
}

#[test]
fn no_randomness_no_login() {
    let h = harness();
    let headers = get("/a", None);
    let r = respond(h.gate.on_request(
        &Request { method: "GET", path: "/a", headers: &headers },
        NOW,
        &mut testkit::NoEntropy,
    ));
    assert_eq!(r.status, 500);
    assert!(header(&r, "location").is_empty());
}

#[test]
fn logout_ends_the_session_and_goes_through_claveunica() {
    let mut h = harness();
    let cookie = session_cookie(&h.login("/"));
    let r = respond(h.request("/claveunica/logout", Some(&format!("{cookie}; __Host-claveunica_flow_abc=1"))));
    assert_eq!(r.status, 200);
    let set = header(&r, "set-cookie");
    assert!(set.iter().any(|c| c.starts_with("__Host-claveunica_session=;") && c.contains("Max-Age=0")));
    assert!(set.iter().any(|c| c.starts_with("__Host-claveunica_flow_abc=;")));
    let provider = "https://idp.test/api/v1/accounts/app/logout?redirect=https%3A%2F%2Fportal.test%2F";
    assert!(r.body.contains(&format!("href=\"{provider}\"")), "{}", r.body);
    assert!(r.body.contains("setTimeout"));
    assert!(r.log.unwrap().message.contains("*****444-4"));
}

fn harness_with(edit: impl FnOnce(&mut Value)) -> Harness {
    let mut v = testkit::config_json();
    edit(&mut v);
    Harness { gate: Gate::new(testkit::config_from(&v)), ..harness() }
}

fn forward(d: Decision) -> Forward {
    match d {
        Decision::Forward(f) => f,
        other => panic!("expected to forward, got {other:?}"),
    }
}

fn request_with(h: &mut Harness, method: &str, path: &str, headers: &[(&str, &str)]) -> Decision {
    let mut all = vec![(":method", method), (":path", path)];
    all.extend_from_slice(headers);
    let req = Request { method, path, headers: &all };
    h.gate.on_request(&req, h.now, &mut h.rng)
}

#[test]
fn rules_decide_which_paths_need_a_session() {
    let mut h = harness_with(|v| {
        v["rules"] = json!([
            {"prefix": "/static/", "action": "public"},
            {"exact": "/", "action": "optional"},
            {"regex": "/api/v[0-9]+/status", "methods": ["GET"], "action": "public"},
        ])
    });
    let cookie = session_cookie(&h.login("/private"));
    // Public: passes without a session, and never carries identity even with one.
    for path in ["/static/app.css", "/api/v1/status"] {
        let f = forward(h.request(path, None));
        assert!(f.set.is_empty() && f.events == Events::default(), "{path}");
        assert!(forward(h.request(path, Some(&cookie))).set.is_empty(), "{path}");
    }
    // The regex rule is for GET only.
    assert_eq!(respond(request_with(&mut h, "POST", "/api/v1/status", &[])).status, 302);
    // Optional: identity when there is a session, a pass either way.
    assert!(forward(h.request("/", None)).set.is_empty());
    assert!(!forward(h.request("/", Some(&cookie))).set.is_empty());
    // No rule matches: enforced.
    assert_eq!(respond(h.request("/tramites", None)).status, 302);
    // The gate's cookies never go upstream, on public paths either.
    assert_eq!(
        forward(h.request("/static/x", Some(&format!("a=1; {cookie}")))).cookie,
        CookieHeader::Replace("a=1".into())
    );
}

#[test]
fn api_clients_get_a_401_with_the_login_url() {
    let mut h = harness();
    for headers in [
        vec![("accept", "application/json")],
        vec![("x-requested-with", "XMLHttpRequest")],
        vec![("sec-fetch-mode", "cors"), ("accept", "*/*")],
    ] {
        let r = respond(request_with(&mut h, "GET", "/api/datos?x=1", &headers));
        assert_eq!(r.status, 401, "{headers:?}");
        assert!(header(&r, "set-cookie").is_empty(), "no flow cookie for an API client");
        assert!(header(&r, "location").is_empty());
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "login_required");
        assert_eq!(body["login_url"], "/claveunica/login?return_to=%2Fapi%2Fdatos%3Fx%3D1");
        assert_eq!(r.events, {
            let mut e = Events::default();
            e.push(Event::ApiUnauthorized);
            e
        });
    }
    // A browser navigation and a plain curl are sent to log in.
    assert_eq!(respond(request_with(&mut h, "GET", "/x", &[("sec-fetch-mode", "navigate")])).status, 302);
    assert_eq!(respond(request_with(&mut h, "GET", "/x", &[("accept", "*/*")])).status, 302);
}

#[test]
fn parallel_mode_lets_the_old_login_work() {
    let mut h = harness_with(|v| v["migration"] = json!({"mode": "parallel", "legacy_cookies": ["PHPSESSID"]}));
    let f = forward(h.request("/tramites", Some("PHPSESSID=old")));
    assert!(f.set.is_empty());
    assert_eq!(f.cookie, CookieHeader::Unchanged);
    assert!(f.events.contains(Event::MigrationPassThrough(MigrationMode::Parallel)));
    // Neither session: passes too, to the old login page.
    assert!(forward(h.request("/tramites", None)).set.is_empty());
    // A ClaveÚnica session still gives identity.
    let cookie = session_cookie(&h.login("/claveunica/login?return_to=/tramites"));
    assert_eq!(forward(h.request("/tramites", Some(&format!("PHPSESSID=old; {cookie}")))).set[0].1, "44444444-4");
}

#[test]
fn canary_mode_sends_a_sticky_share_to_claveunica() {
    let canary = |percent: u8| {
        harness_with(move |v| {
            v["migration"] = json!({"mode": "canary", "legacy_cookies": ["PHPSESSID"], "canary_percent": percent})
        })
    };
    // 0 %: nobody new is sent, and the choice is remembered.
    let mut h = canary(0);
    let f = forward(h.request("/tramites", None));
    assert!(f.set.is_empty());
    assert!(f.upstream.set_cookies()[0].starts_with("__Host-claveunica_canary=0;"), "{:?}", f.upstream.set_cookies());
    // 100 %: everybody new is sent to ClaveÚnica, remembered too.
    let mut h = canary(100);
    let r = respond(h.request("/tramites", None));
    assert_eq!(r.status, 302);
    assert!(header(&r, "set-cookie").iter().any(|c| c.starts_with("__Host-claveunica_canary=1;")));
    // The sticky choice wins over the percentage, and the legacy session over both.
    assert_eq!(respond(h.request("/tramites", Some("__Host-claveunica_canary=1"))).status, 302);
    let f = forward(h.request("/tramites", Some("__Host-claveunica_canary=0")));
    assert!(f.upstream.set_cookies().is_empty() && f.set.is_empty());
    assert_eq!(f.cookie, CookieHeader::Remove, "the canary cookie is the gate's, not the app's");
    assert!(forward(h.request("/tramites", Some("PHPSESSID=old"))).set.is_empty());
    // Around 30 % of new browsers at 30 %.
    let mut h = canary(30);
    let sent = (0..400).filter(|_| matches!(h.request("/t", None), Decision::Respond(_))).count();
    assert!((80..=160).contains(&sent), "{sent} of 400");
}

#[test]
fn report_only_blocks_nothing_and_says_what_it_would_do() {
    let mut h = harness_with(|v| v["migration"] = json!({"mode": "report_only"}));
    let f = forward(h.request("/tramites", None));
    assert!(f.set.is_empty());
    assert!(f.events.contains(Event::ReportOnlyWouldLogin));
    assert!(f.log.unwrap().message.contains("would require a ClaveÚnica login for GET /tramites"));
    let cookie = session_cookie(&h.login("/claveunica/login?return_to=/tramites"));
    assert!(!forward(h.request("/tramites", Some(&cookie))).set.is_empty());
}

#[test]
fn no_log_line_holds_a_full_run_from_a_path_or_a_provider() {
    let mut h = harness_with(|v| v["migration"] = json!({"mode": "report_only"}));
    for path in ["/perfil/44.444.444-4", "/perfil/44444444-4", "/perfil/444444444", "/p/44%2E444%2E444%2D4"] {
        let message = forward(h.request(path, None)).log.map(|l| l.message).unwrap_or_default();
        assert!(message.contains("for GET /p") && message.contains("*****444-4"), "{message}");
        assert!(!message.contains("444444") && !message.contains("444.444"), "{message}");
    }
    // A provider's error code is quoted in the failure's log line, masked.
    let mut h = harness();
    let s = h.start("/");
    let path = format!("/claveunica/callback?error=44444444-4&state={}", param(&s.authorize, "state"));
    let r = respond(h.request(&path, Some(&s.flow_cookie)));
    let message = r.log.map(|l| l.message).unwrap_or_default();
    assert!(message.contains("detail=*****444-4"), "{message}");
    // And a host's error text.
    let r = fail_closed(HostFailure::Internal, "header x-rut: 44.444.444-4 refused", &mut SeqEntropy(0));
    let message = r.log.map(|l| l.message).unwrap_or_default();
    assert!(message.contains("x-rut: *****444-4 refused"), "{message}");
}

#[test]
fn a_run_outside_the_pilot_list_gets_403_and_is_logged_out_at_claveunica() {
    let mut h = harness_with(|v| v["allowed_runs"] = json!(["55.555.555-5"]));
    let cookie = session_cookie(&h.login("/"));
    let r = respond(h.request("/tramites/pago", Some(&cookie)));
    assert_eq!(r.status, 403);
    assert!(r.events.contains(Event::Forbidden));
    // The gate's session ends, at the path it was asked from too (a cookie tossed in deeper).
    let set = header(&r, "set-cookie");
    assert!(set.iter().any(|c| c.starts_with("__Host-claveunica_session=;") && c.contains("Max-Age=0")), "{set:?}");
    // And the page goes through ClaveÚnica's logout, like the logout path's page.
    let provider = "https://idp.test/api/v1/accounts/app/logout?redirect=https%3A%2F%2Fportal.test%2F";
    assert!(r.body.contains(&format!("href=\"{provider}\"")), "{}", r.body);
    assert!(r.body.contains(&format!("var p=\"{provider}\"")), "{}", r.body);
    assert!(r.log.is_some_and(|l| l.message.contains("session ended") && l.message.contains("*****444-4")));
    let mut h = harness_with(|v| v["allowed_runs"] = json!(["44444444-4"]));
    let cookie = session_cookie(&h.login("/"));
    assert!(!forward(h.request("/tramites", Some(&cookie))).set.is_empty());
}

#[test]
fn an_identified_request_names_its_person_for_the_access_register() {
    let mut h = harness_with(|v| v["rules"] = json!([{"prefix": "/public/", "action": "public"}]));
    let cookie = session_cookie(&h.login("/"));
    let f = forward(h.request("/tramites", Some(&cookie)));
    assert_eq!(f.access.as_deref(), Some("*****444-4"));
    // Anonymous requests name nobody.
    assert_eq!(forward(h.request("/public/x", None)).access, None);
    let mut h = harness_with(|v| v["access_log"] = json!({"run": "full"}));
    let cookie = session_cookie(&h.login("/"));
    assert_eq!(forward(h.request("/tramites", Some(&cookie))).access.as_deref(), Some("44444444-4"));
}

#[test]
fn logins_logouts_and_refusals_are_one_register_record_each() {
    let mut h = harness_with(|v| v["allowed_runs"] = json!(["55.555.555-5"]));
    // A login: who, when, and the callback's request id, carried through the provider calls.
    let s = h.start("/");
    let path = format!("/claveunica/callback?code=c0de&state={}", param(&s.authorize, "state"));
    let token_call = call(request_with(&mut h, "GET", &path, &[("cookie", &s.flow_cookie), ("x-request-id", "cb-1")]));
    let body = h.token_body(&s);
    let mut next = call(h.answer(token_call.pending, 200, &body));
    if next.request.method == "GET" {
        next = call(h.answer(next.pending, 200, &testkit::jwks(&[(KID, &testkit::provider_key())])));
    }
    let r = respond(h.answer(next.pending, 200, USERINFO));
    let login = r.register.clone().unwrap();
    assert_eq!((login.event, login.subject.as_deref()), ("login", Some("*****444-4")));
    assert_eq!((login.request_id.as_deref(), login.time), (Some("cb-1"), h.now));
    // A refusal: the RUN is outside the pilot list.
    let session = session_cookie(&r);
    let d = request_with(&mut h, "GET", "/x", &[("cookie", &session), ("x-request-id", "rq-2")]);
    let refused = respond(d).register.unwrap();
    assert_eq!((refused.event, refused.reason), ("refused", Some("not_in_allowed_runs")));
    assert_eq!((refused.subject.as_deref(), refused.request_id.as_deref()), (Some("*****444-4"), Some("rq-2")));
    // A failed login is a refusal too, with its reason.
    let bad = respond(request_with(&mut h, "GET", "/claveunica/callback?code=x", &[("x-request-id", "rq-3")]));
    let record = bad.register.unwrap();
    assert_eq!(
        (record.event, record.reason, record.request_id.as_deref()),
        ("refused", Some("no_state"), Some("rq-3"))
    );
    // A logout, and one the application asks for.
    let mut h = harness();
    let session = session_cookie(&h.login("/"));
    let out = respond(request_with(&mut h, "GET", "/claveunica/logout", &[("cookie", &session)])).register.unwrap();
    assert_eq!((out.event, out.subject.as_deref(), out.request_id), ("logout", Some("*****444-4"), None));
    let f = forward(request_with(&mut h, "GET", "/x", &[("cookie", &session), ("x-request-id", "rq-4")]));
    let answer = UpstreamAnswer { status: 200, headers: &[("x-claveunica-logout", "1")] };
    let AnswerChange::Replace(r) = h.gate.on_upstream_response(f.upstream, &answer) else { panic!("not replaced") };
    let out = r.register.unwrap();
    assert_eq!((out.event, out.reason, out.request_id.as_deref()), ("logout", Some("application"), Some("rq-4")));
    // Forwards and redirects to ClaveÚnica are no record (the access register has those).
    assert!(respond(h.request("/y", None)).register.is_none());
}

#[test]
fn custom_header_templates_replace_the_defaults() {
    let mut h = harness_with(|v| v["headers"] = json!({"X-Rut": "{run_dotted}", "x-nombre": "{nombres} {apellidos}"}));
    let cookie = session_cookie(&h.login("/"));
    let f = forward(h.request("/", Some(&cookie)));
    assert_eq!(
        *f.set,
        vec![
            ("x-rut".to_string(), "44.444.444-4".to_string()),
            ("x-nombre".to_string(), "Mar%C3%ADa%20Carmen%20De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez".to_string()),
        ]
    );
    assert!(h.gate.is_identity_header("X_RUT"));
    assert!(h.gate.is_identity_header("x-claveunica-run"), "the default names are stripped too");
}

#[test]
fn idle_sessions_end_and_active_ones_are_resealed_once_a_minute() {
    let mut h = harness_with(|v| v["session"] = json!({"max_age_s": 3600, "idle_timeout_s": 600}));
    let cookie = session_cookie(&h.login("/"));
    // Within the minute: no reseal.
    h.now += 30;
    assert!(forward(h.request("/", Some(&cookie))).upstream.set_cookies().is_empty());
    // After a minute of use: resealed with a new last-seen time.
    h.now += 270;
    let f = forward(h.request("/", Some(&cookie)));
    let fresh = cookie_pair(&f.upstream.set_cookies()[0]);
    // The fresh cookie keeps the session alive past the old one's idle limit.
    h.now += 500;
    assert!(forward(h.request("/", Some(&fresh))).set.len() == 5);
    let r = respond(h.request("/", Some(&cookie)));
    assert_eq!(r.status, 302);
    assert!(r.events.contains(Event::SessionExpired));
}

#[test]
fn the_application_can_end_the_session() {
    let mut h = harness();
    let cookie = session_cookie(&h.login("/"));
    let asked = [(":status", "200"), ("X-ClaveUnica-Logout", "1"), ("content-type", "text/html")];
    let answer = UpstreamAnswer { status: 200, headers: &asked };
    let f = forward(h.request("/", Some(&cookie)));
    assert!(f.upstream.reads_answer(), "an identified request's answer is looked at");
    let r = match h.gate.on_upstream_response(f.upstream, &answer) {
        AnswerChange::Replace(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.status, 200);
    assert!(header(&r, "set-cookie").iter().any(|c| c.starts_with("__Host-claveunica_session=;")));
    assert!(r.body.contains("/api/v1/accounts/app/logout"));
    assert!(r.events.contains(Event::AppLogout));
    // Without the header, the answer passes, kept out of shared caches.
    let f = forward(h.request("/", Some(&cookie)));
    let plain = UpstreamAnswer { status: 200, headers: &asked[2..] };
    assert_eq!(
        h.gate.on_upstream_response(f.upstream, &plain),
        AnswerChange::Pass { set: vec![("cache-control", "private".into())], add: vec![("vary", "Cookie".into())] }
    );
}

#[test]
fn a_persons_answer_never_stays_in_a_shared_cache() {
    let mut h = harness_with(|v| {
        v["rules"] = json!([{"prefix": "/public", "action": "public"}]);
        v["session"] = json!({"idle_timeout_s": 600});
    });
    let cookie = session_cookie(&h.login("/"));
    let shared = [("content-type", "text/html"), ("Cache-Control", "public, max-age=600")];
    let answer = UpstreamAnswer { status: 200, headers: &shared };
    // Identified: private, and varying by cookie.
    let f = forward(h.request("/tramites", Some(&cookie)));
    let want = AnswerChange::Pass {
        set: vec![("cache-control", "private, max-age=600".into())],
        add: vec![("vary", "Cookie".into())],
    };
    assert_eq!(h.gate.on_upstream_response(f.upstream, &answer), want);
    // Carrying a resealed session cookie: private too, the cookie added.
    h.now += 120;
    let f = forward(h.request("/tramites", Some(&cookie)));
    assert!(!f.upstream.set_cookies().is_empty(), "no reseal to test with");
    match h.gate.on_upstream_response(f.upstream, &answer) {
        AnswerChange::Pass { set, add } => {
            assert_eq!(set, [("cache-control", "private, max-age=600".to_string())]);
            assert!(add.iter().any(|(n, v)| *n == "set-cookie" && v.starts_with("__Host-claveunica_session=")));
            assert!(add.contains(&("vary", "Cookie".to_string())), "{add:?}");
        }
        other => panic!("{other:?}"),
    }
    // An anonymous public answer is the application's to cache as it likes.
    let f = forward(h.request("/public/app.css", None));
    assert!(!f.upstream.reads_answer());
    let untouched = AnswerChange::Pass { set: vec![], add: vec![] };
    assert_eq!(h.gate.on_upstream_response(f.upstream, &answer), untouched);
    // Already private or no-store: left as the application said, `Vary` added once.
    let f = forward(h.request("/tramites", Some(&cookie)));
    let private = [("cache-control", "no-store"), ("vary", "Accept-Encoding, Cookie")];
    let private = UpstreamAnswer { status: 200, headers: &private };
    match h.gate.on_upstream_response(f.upstream, &private) {
        AnswerChange::Pass { set, add } => assert!(set.is_empty() && add.iter().all(|(n, _)| *n != "vary"), "{add:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_anonymous_answer_cannot_log_anyone_out_and_carries_the_gates_cookies() {
    let mut h = harness_with(|v| v["rules"] = json!([{"exact": "/public", "action": "optional"}]));
    assert!(!forward(h.request("/public", None)).upstream.reads_answer());
    let f = forward(h.request("/public", Some("__Host-claveunica_session=garbage")));
    assert!(f.upstream.reads_answer(), "an answer with the gate's cookie is kept from shared caches");
    let asked = [("x-claveunica-logout", "1")];
    let change = h.gate.on_upstream_response(f.upstream, &UpstreamAnswer { status: 200, headers: &asked });
    match change {
        AnswerChange::Pass { set, add } => {
            assert_eq!(set, [("cache-control", "private".to_string())]);
            assert_eq!(add.len(), 2, "{add:?}");
            assert_eq!(add[0].0, "set-cookie");
            assert!(add[0].1.starts_with("__Host-claveunica_session=;"), "{add:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn forged_identity_headers_are_named_for_removal_on_every_forward() {
    let mut h = harness_with(|v| v["rules"] = json!([{"exact": "/public", "action": "public"}]));
    let cookie = session_cookie(&h.login("/"));
    let forged = |path: &'static str, cookie: Option<&'static str>| {
        let mut headers = vec![
            (":path", path),
            ("X-ClaveUnica-RUN", "11111111-1"),
            ("x_claveunica_run", "11111111-1"),
            ("X-CLAVEUNICA-NOMBRES", "Mallory"),
            ("x-claveunica-nombres", "Mallory"),
            ("x-other", "kept"),
        ];
        headers.extend(cookie.map(|c| ("cookie", c)));
        headers
    };
    // Anonymous: every identity spelling goes, each once.
    let headers = forged("/public", None);
    let f =
        forward(h.gate.on_request(&Request { method: "GET", path: "/public", headers: &headers }, h.now, &mut h.rng));
    assert_eq!(f.remove, ["x-claveunica-run", "x_claveunica_run", "x-claveunica-nombres"]);
    // Identified: the verified headers replace the exact names, the other spellings go.
    let cookie: &'static str = Box::leak(cookie.into_boxed_str());
    let headers = forged("/", Some(cookie));
    let f = forward(h.gate.on_request(&Request { method: "GET", path: "/", headers: &headers }, h.now, &mut h.rng));
    assert_eq!(f.remove, ["x_claveunica_run"]);
    assert!(f.set.iter().any(|(n, v)| n == "x-claveunica-run" && v == "44444444-4"));
    // A request without forged headers allocates no removal list.
    let f = forward(h.request("/", Some(cookie)));
    assert!(f.remove.is_empty() && f.remove.capacity() == 0);
    // Trailers: identity names never reach the application from there either.
    assert_eq!(
        h.gate.on_request_trailers(&[("x-claveunica-run", "1-9"), ("X-ClaveUnica-Dv", "9"), ("grpc-status", "0")]),
        ["x-claveunica-run", "x-claveunica-dv"]
    );
}

#[test]
fn a_tampered_session_counts_as_rejected() {
    let mut h = harness();
    let r = respond(h.request("/", Some("__Host-claveunica_session=garbage")));
    assert!(r.events.contains(Event::SessionRejected) && r.events.contains(Event::LoginStarted));
}

#[test]
fn a_session_seen_before_is_still_checked_on_every_request() {
    let mut h = harness();
    let cookie = session_cookie(&h.login("/"));
    let (name, value) = cookie.split_once('=').unwrap();
    // The first request opens the cookie, the next ones find it opened: same identity.
    let first = forward(h.request("/private", Some(&cookie)));
    let again = forward(h.request("/private", Some(&cookie)));
    assert_eq!(first.set, again.set);
    assert_eq!(h.gate.first.known.len(), 1);
    // What did not open is never kept, whatever a client sends.
    for bad in [format!("{name}={}", value.chars().rev().collect::<String>()), format!("{name}={value}x")] {
        assert_eq!(respond(h.request("/private", Some(&bad))).status, 302);
    }
    assert_eq!(h.gate.first.known.len(), 1);
    // A session the gate knows still ends on time.
    h.now += 8 * 3600;
    let r = respond(h.request("/private", Some(&cookie)));
    assert_eq!(r.status, 302);
    assert!(r.events.contains(Event::SessionExpired));
    // And a new configuration starts with nothing known.
    let h = harness();
    assert!(h.gate.first.known.is_empty());
}

/// A session cookie for `run`, sealed with the test configuration's key as the gate would.
fn sealed_for(h: &Harness, run: crate::primitives::run::Run) -> String {
    let m = testkit::maria();
    let who =
        crate::protocol::session::Identity::new(run, m.nombres().to_vec(), m.apellidos().to_vec(), "1".into()).unwrap();
    let s = crate::protocol::session::Session::insecure_from_parts(who, h.now - 10, h.now + 3600, h.now - 10);
    let value = s.seal(&testkit::key_ring(&[testkit::SESSION_KEY]), [7; NONCE_LEN]).unwrap();
    format!("{}={value}", h.gate.first.config.session.cookie_name)
}

#[test]
fn two_session_cookies_for_two_people_serve_neither() {
    // Over http the tossed cookie may sit at a deeper path: cleared there too. Over https the
    // cookie is `__Host-`, which only ever has `Path=/`.
    let http = |v: &mut Value| v["redirect_uri"] = json!("http://portal.test/claveunica/callback");
    two_session_cookies_for_two_people(harness_with(http), &["Path=/;", "Path=/tramites;", "Path=/tramites/x;"]);
    two_session_cookies_for_two_people(harness(), &["Path=/;"]);
}

fn two_session_cookies_for_two_people(mut h: Harness, cleared_at: &[&str]) {
    let maria = session_cookie(&h.login("/"));
    let mallory = sealed_for(&h, crate::primitives::run::Run::new(11_111_111, '1').unwrap());
    // Each alone is served.
    assert_eq!(
        forward(h.request("/tramites/x", Some(&mallory))).set.len(),
        forward(h.request("/", Some(&maria))).set.len()
    );
    for jar in [format!("{mallory}; {maria}"), format!("{maria}; {mallory}")] {
        let r = respond(h.request("/tramites/x", Some(&jar)));
        assert_eq!(r.status, 302, "{jar}: {r:?}");
        assert!(header(&r, "location")[0].contains("/authorize"), "a fresh login: {r:?}");
        assert!(r.events.contains(Event::SessionRejected));
        // Every session cookie cleared, the tossed one at its deeper path too.
        let cleared: Vec<&str> = header(&r, "set-cookie").into_iter().filter(|c| c.contains("_session=;")).collect();
        assert_eq!(cleared.len(), cleared_at.len(), "{cleared:?}");
        for path in cleared_at {
            assert!(cleared.iter().any(|c| c.contains(path)), "{path} not cleared: {cleared:?}");
        }
    }
    // Two cookies for the same person (an old and a resealed one) are still that person.
    let again = sealed_for(&h, crate::primitives::run::Run::new(44_444_444, '4').unwrap());
    let f = forward(h.request("/", Some(&format!("{again}; {maria}"))));
    assert!(!f.set.is_empty());
    // A session beside garbage is still served.
    let name = &h.gate.first.config.session.cookie_name.clone();
    let f = forward(h.request("/", Some(&format!("{name}=garbage; {maria}"))));
    assert!(!f.set.is_empty());
}

#[test]
fn two_flow_cookies_of_one_name_at_the_callback_log_no_one_in() {
    let mut h = harness();
    let s = h.start("/a");
    let other = h.start("/b");
    let name = s.flow_cookie.split('=').next().unwrap().to_string();
    let tossed = format!("{name}={}", other.flow_cookie.split_once('=').unwrap().1);
    let path = format!("/claveunica/callback?code=c0de&state={}", param(&s.authorize, "state"));
    for jar in [format!("{}; {tossed}", s.flow_cookie), format!("{tossed}; {}", s.flow_cookie)] {
        let r = respond(h.request(&path, Some(&jar)));
        assert_eq!(r.status, 400, "{jar}: {r:?}");
        assert!(header(&r, "set-cookie").iter().any(|c| c.starts_with(&format!("{name}=;"))), "{r:?}");
        assert!(header(&r, "set-cookie").iter().all(|c| !c.contains("_session=") || c.contains("_session=;")));
    }
    // The genuine cookie alone still logs in.
    assert!(matches!(h.request(&path, Some(&s.flow_cookie)), Decision::Call(_)));
}

/// A browser's cookie jar, kept from the gate's `Set-Cookie`s: `name=value; ...`.
fn apply_set_cookies(jar: &mut std::collections::BTreeMap<String, String>, r: &Response) {
    for c in header(r, "set-cookie") {
        let (name, value) = cookie_pair(c).split_once('=').map(|(n, v)| (n.to_string(), v.to_string())).unwrap();
        if c.contains("Max-Age=0") {
            jar.remove(&name);
        } else {
            jar.insert(name, value);
        }
    }
}

fn jar_header(jar: &std::collections::BTreeMap<String, String>) -> String {
    jar.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
}

#[test]
fn starting_logins_again_and_again_keeps_the_cookie_header_bounded() {
    let mut h = harness();
    let mut jar = std::collections::BTreeMap::new();
    jar.insert("theme".to_string(), "dark".to_string());
    let long = format!("/tramites?q={}", "a".repeat(1900));
    let mut last = None;
    for i in 0..20 {
        h.now += 1;
        let path = if i % 2 == 0 { long.clone() } else { format!("/t{i}") };
        let cookie = jar_header(&jar);
        let r = respond(h.request(&path, Some(&cookie)));
        assert_eq!(r.status, 302);
        apply_set_cookies(&mut jar, &r);
        let flows: Vec<_> = jar.keys().filter(|n| n.contains("claveunica_flow_")).collect();
        assert!(flows.len() <= login::MAX_PENDING_FLOWS, "{} attempts kept", flows.len());
        assert!(
            jar_header(&jar).len() < login::FLOW_COOKIE_BUDGET + 64,
            "a Cookie header of {}",
            jar_header(&jar).len()
        );
        last = Some(header(&r, "location")[0].to_string());
    }
    assert_eq!(jar.get("theme").map(String::as_str), Some("dark"), "the app's cookie is the app's");
    // The newest attempt still completes.
    let state = param(&last.unwrap(), "state");
    let path = format!("/claveunica/callback?code=c0de&state={state}");
    assert!(matches!(h.request(&path, Some(&jar_header(&jar))), Decision::Call(_)));
    // Short return paths: the last three attempts are all kept (three tabs).
    let mut jar = std::collections::BTreeMap::new();
    let mut states = Vec::new();
    for i in 0..5 {
        h.now += 1;
        let cookie = jar_header(&jar);
        let r = respond(h.request(&format!("/tab{i}"), Some(cookie.as_str()).filter(|c| !c.is_empty())));
        apply_set_cookies(&mut jar, &r);
        states.push(param(header(&r, "location")[0], "state"));
    }
    assert_eq!(jar.len(), login::MAX_PENDING_FLOWS);
    for state in &states[2..] {
        let path = format!("/claveunica/callback?code=c0de&state={state}");
        assert!(matches!(h.request(&path, Some(&jar_header(&jar))), Decision::Call(_)), "tab with {state} lost");
    }
    // Logout clears every attempt.
    let r = respond(h.request("/claveunica/logout", Some(&jar_header(&jar))));
    apply_set_cookies(&mut jar, &r);
    assert!(jar.is_empty(), "{jar:?}");
}

/// Two workers of one host: two gates for one configuration over one shared store. Their
/// entropy starts half a turn apart, so they never draw the same state.
fn workers(store: &Arc<Flaky>) -> (Harness, Harness) {
    let worker =
        |seed| Harness { gate: Gate::with_store(testkit::config(), store.clone()), rng: SeqEntropy(seed), ..harness() };
    (worker(0), worker(128))
}

/// A login started on one of two workers sharing a store: the store, the worker, the other,
/// the login and its state.
fn started_on_a_worker(path: &str) -> (Arc<Flaky>, Harness, Harness, Started, String) {
    let store = Arc::new(Flaky::default());
    let (mut h, other) = workers(&store);
    let s = h.start(path);
    let state = param(&s.authorize, "state");
    (store, h, other, s, state)
}

impl Harness {
    /// The callback of a started login with `code`, sending its flow cookie.
    fn callback_with(&mut self, s: &Started, code: &str) -> Decision {
        let path = format!("/claveunica/callback?code={code}&state={}", param(&s.authorize, "state"));
        self.request(&path, Some(&s.flow_cookie))
    }
}

fn assert_attempt_used(r: &Response, return_to: &str) {
    assert_error_page(r, 400);
    assert_eq!(r.events.iter().collect::<Vec<_>>(), [Event::LoginFailed(FailReason::AttemptUsed)]);
    assert!(r.log.as_ref().unwrap().message.contains("reason=attempt_used"), "{:?}", r.log);
    assert!(r.body.contains("no es válido"), "{}", r.body);
    assert!(r.body.contains(&format!("href=\"{return_to}\"")), "no retry link to {return_to}: {}", r.body);
    assert!(header(r, "set-cookie").iter().any(|c| c.contains("claveunica_flow_") && c.contains("Max-Age=0")));
}

#[test]
fn a_replayed_callback_asks_for_no_second_token_call_on_any_worker() {
    let store = Arc::new(Flaky::default());
    let (mut a, mut b) = workers(&store);
    let s = a.start("/tramites?id=7");
    // The first callback asks for the token call (the positive control)...
    let first = call(a.callback(&s));
    assert_eq!((first.request.method, first.request.path.as_str()), ("POST", "/openid/token/"));
    assert!(first.log.is_none());
    // ...and the same flow cookie and state with another code, on this worker or another,
    // asks for none.
    for (on_b, code) in [(false, "c0de"), (true, "other-code"), (false, "third"), (true, "c0de")] {
        let worker = if on_b { &mut b } else { &mut a };
        assert_attempt_used(&respond(worker.callback_with(&s, code)), "/tramites?id=7");
    }
    // Spent even though its token call failed: one call per attempt.
    let s = b.start("/b");
    let failed = call(b.callback(&s));
    assert_error_page(&respond(b.answer(failed.pending, 400, r#"{"error":"invalid_grant"}"#)), 400);
    assert_attempt_used(&respond(a.callback_with(&s, "a-good-code-this-time")), "/b");
    // Other attempts are not touched: a new login on either worker completes.
    assert_eq!(a.login("/c").status, 302);
    assert_eq!(b.login("/d").status, 302);
    // A gate without a shared store keeps its own ledger: within it, the same holds.
    let mut alone = harness();
    let s = alone.start("/e");
    assert!(matches!(alone.callback(&s), Decision::Call(_)));
    assert_attempt_used(&respond(alone.callback_with(&s, "other")), "/e");
}

#[test]
fn a_spent_attempt_is_remembered_while_its_flow_lives_then_forgotten() {
    let (_, mut h, _, s, state) = started_on_a_worker("/a");
    let _ = call(h.callback(&s));
    let config = h.gate.config().clone();
    let lifetime = config.flow.max_age_s;
    // The flow's last second: still spent.
    h.now = NOW + lifetime;
    assert_attempt_used(&respond(h.callback_with(&s, "late")), "/a");
    // Past it the flow itself is refused, as before the ledger.
    h.now = NOW + lifetime + config.clock_leeway_s + 1;
    let r = respond(h.callback_with(&s, "later"));
    assert_error_page(&r, 400);
    assert_eq!(r.events.iter().collect::<Vec<_>>(), [Event::LoginFailed(FailReason::FlowExpired)]);
    // And its entry is pruned: the slot is free again.
    let forget_at = h.now + lifetime;
    assert!(h.gate.first.ledger.claim(&state, forget_at, h.now).result.is_ok(), "the expired entry was kept");
}

/// States that fall in the same ledger shard as `state`.
fn states_beside(state: &str, n: usize) -> Vec<String> {
    let (shard, _) = ledger::slot(state);
    (0u64..).map(|i| format!("{i:043}")).filter(|s| ledger::slot(s).0 == shard).take(n).collect()
}

#[test]
fn a_full_ledger_fails_closed_with_503_and_no_token_call() {
    let (_, mut h, _, s, state) = started_on_a_worker("/a");
    for other in states_beside(&state, ledger::SHARD_CAPACITY) {
        assert!(h.gate.first.ledger.claim(&other, NOW + 100, NOW).result.is_ok());
    }
    let r = respond(h.callback(&s));
    assert_error_page(&r, 503);
    assert_eq!(r.events.iter().collect::<Vec<_>>(), [Event::LoginFailed(FailReason::AttemptLedgerFull)]);
    assert_eq!(header(&r, "retry-after"), ["101"], "the soonest entry is forgotten at NOW + 100");
    let log = r.log.as_ref().unwrap();
    assert_eq!(log.level, Level::Error);
    assert!(log.message.contains("status=503 reason=attempt_ledger_full"), "{}", log.message);
    // Not spent: the flow cookie is kept, and once a slot frees the same callback completes.
    assert!(header(&r, "set-cookie").is_empty(), "{r:?}");
    h.now = NOW + 101;
    assert!(matches!(h.callback(&s), Decision::Call(_)), "a slot freed, the attempt was not spent");
}

#[test]
fn a_store_that_fails_or_keeps_losing_the_race_fails_closed() {
    let store = Arc::new(Flaky::default());
    let (mut h, _) = workers(&store);
    // Lost races are retried: a few conflicts cost nothing.
    store.conflict(3);
    let s = h.start("/a");
    assert!(matches!(h.callback(&s), Decision::Call(_)), "three lost rounds were not retried");
    // Losing every round, or a store that fails, is a 503 with Retry-After, and no call.
    type Break = fn(&Flaky);
    let cases: [(&str, Break); 3] = [
        ("every round lost", |s| s.conflict(usize::MAX)),
        ("reads fail", |s| s.failing_reads.store(true, Ordering::SeqCst)),
        ("writes fail", |s| s.failing_writes.store(true, Ordering::SeqCst)),
    ];
    for (what, break_it) in cases {
        let s = h.start("/b");
        break_it(&store);
        let r = respond(h.callback(&s));
        assert_error_page(&r, 503);
        let events: Vec<_> = r.events.iter().collect();
        assert_eq!(events, [Event::LoginFailed(FailReason::AttemptLedgerUnavailable)], "{what}");
        assert_eq!(header(&r, "retry-after"), ["5"], "{what}");
        assert!(header(&r, "set-cookie").is_empty(), "{what}: the flow cookie was cleared");
        store.heal();
        assert!(matches!(h.callback(&s), Decision::Call(_)), "{what}: the refused callback spent the attempt");
    }
}

#[test]
fn garbage_in_the_ledger_never_stops_a_login_and_is_logged() {
    let garbage: [&[u8]; 5] = [b"\x02another version", b"{\"keys\":[]}", b"\x01truncated", &[0xff; 40], &[1; 49]];
    for bytes in garbage {
        let (store, mut h, mut other, s, state) = started_on_a_worker("/a");
        store.put(&h.gate.first.ledger.shard_name(ledger::slot(&state).0), bytes);
        let c = call(h.callback(&s));
        let log = c.log.unwrap_or_else(|| panic!("{bytes:?} was not logged"));
        assert_eq!(log.level, Level::Error);
        assert!(log.message.starts_with("ledger shard "), "{}", log.message);
        // The shard was written back whole: the claim holds on the other worker.
        assert_attempt_used(&respond(other.callback_with(&s, "again")), "/a");
    }
}

#[test]
fn the_button_page_stands_before_claveunica_when_configured() {
    let mut h = harness_with(|v| {
        v["pages"] = json!({"button_page": true, "agency": "Servicio de Prueba", "legacy_login": "/login"});
    });
    // A protected page: the button page, which leads to the login path with the return path;
    // no flow cookie yet (a login starts only when the button is followed).
    let r = respond(h.request("/tramites/certificado?id=7", None));
    assert_eq!(r.status, 200);
    assert!(header(&r, "location").is_empty() && header(&r, "set-cookie").is_empty(), "{:?}", r.headers);
    assert_eq!(header(&r, "cache-control"), ["no-store"]);
    assert!(
        r.body.contains("href=\"/claveunica/login?return_to=%2Ftramites%2Fcertificado%3Fid%3D7\" target=\"_top\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("Ingresa a Servicio de Prueba") && r.body.contains("href=\"/login\""), "{}", r.body);
    // The login path without a return path shows it too, leading home.
    let r = respond(h.request("/claveunica/login", None));
    assert_eq!(r.status, 200);
    assert!(r.body.contains("href=\"/claveunica/login?return_to=%2F\""), "{}", r.body);
    // Following the button starts the login.
    let r = respond(h.request("/claveunica/login?return_to=%2Ftramites", None));
    assert_eq!(r.status, 302);
    assert!(header(&r, "location")[0].starts_with("https://idp.test/openid/authorize/"));
    // An API client still gets the 401, and a session still passes.
    let api = respond(request_with(&mut h, "GET", "/api/x", &[("accept", "application/json")]));
    assert_eq!(api.status, 401);
    let cookie = session_cookie(&h.login("/claveunica/login?return_to=%2Fa"));
    assert!(!forward(h.request("/tramites", Some(&cookie))).set.is_empty());
    // Positive control: without the setting, the same request goes straight to ClaveÚnica.
    assert_eq!(respond(harness().request("/tramites/certificado?id=7", None)).status, 302);
    assert_eq!(respond(harness().request("/claveunica/login", None)).status, 302);
}

#[test]
fn a_login_inside_a_frame_takes_the_top_window_instead() {
    for button_page in [false, true] {
        let mut h = harness_with(|v| v["pages"] = json!({"button_page": button_page}));
        for dest in ["iframe", "frame", "IFrame"] {
            for path in ["/tramites?a=1", "/claveunica/login?return_to=%2Ftramites%3Fa%3D1"] {
                let r = respond(request_with(&mut h, "GET", path, &[("sec-fetch-dest", dest)]));
                assert_eq!(r.status, 200, "{dest} {path}");
                assert!(header(&r, "location").is_empty(), "{dest} {path}: {:?}", r.headers);
                assert!(header(&r, "set-cookie").is_empty(), "no login attempt starts inside a frame");
                assert!(
                    r.body.contains("window.top.location.assign(\"/claveunica/login?return_to=%2Ftramites%3Fa%3D1\")"),
                    "{}",
                    r.body
                );
                assert!(r.body.contains("target=\"_top\""), "{}", r.body);
            }
        }
        // Positive control: the same requests as a whole page (or from an older browser that
        // does not say) go to ClaveÚnica, or to the button page when configured.
        for dest in [Some("document"), None] {
            let headers: Vec<(&str, &str)> = dest.map(|d| ("sec-fetch-dest", d)).into_iter().collect();
            let r = respond(request_with(&mut h, "GET", "/claveunica/login?return_to=%2Ft", &headers));
            assert_eq!(r.status, 302, "{dest:?}");
            let r = respond(request_with(&mut h, "GET", "/tramites", &headers));
            assert_eq!(r.status, if button_page { 200 } else { 302 }, "{dest:?}");
            assert!(!r.body.contains("window.top"));
        }
    }
}

#[test]
fn every_page_names_the_configured_agency() {
    let mut h = harness_with(|v| {
        v["pages"] = json!({"agency": "Servicio de Prueba", "help": "Mesa de ayuda", "help_url": "tel:600",
                            "home": "https://www.prueba.gob.cl/"});
        v["allowed_runs"] = json!(["55.555.555-5"]);
    });
    let error = respond(h.request("/claveunica/callback?code=x&state=y", None));
    let cookie = session_cookie(&h.login("/a"));
    let forbidden = respond(h.request("/a", Some(&cookie)));
    let logout = respond(h.request("/claveunica/logout", None));
    for (name, r) in [("error", error), ("forbidden", forbidden), ("logout", logout)] {
        assert!(
            r.body.contains("<header><a href=\"https://www.prueba.gob.cl/\">Servicio de Prueba</a></header>"),
            "{name}"
        );
        assert!(r.body.contains("<a href=\"tel:600\">Mesa de ayuda</a>"), "{name}: {}", r.body);
    }
}

/// Two portals on one gate, sharing the session keys: `tramites.test` (client `cid-t`) and
/// every name under `becas.test` (client `cid-b`, its own identity header). With `default`,
/// the top level is a third site serving every other host.
fn two_sites(default: bool) -> Config {
    let mut v = testkit::config_json();
    let map = v.as_object_mut().unwrap();
    if !default {
        map.remove("redirect_uri");
        map.remove("post_logout_redirect");
    }
    map.insert(
        "sites".into(),
        json!([
            {"hosts": ["tramites.test"], "client_id": "cid-t",
             "redirect_uri": "https://tramites.test/claveunica/callback"},
            {"hosts": ["*.becas.test", "becas.test"], "client_id": "cid-b",
             "redirect_uri": "https://becas.test/claveunica/callback",
             "headers": {"x-becas-run": "{run}"}},
        ]),
    );
    testkit::config_from(&v)
}

/// The session cookie a whole login at the harness's current host sets.
fn session_at(h: &mut Harness) -> String {
    let r = h.login("/privado");
    assert_eq!(r.status, 302, "{}", r.body);
    cookie_pair(header(&r, "set-cookie").into_iter().find(|c| c.contains("claveunica_session=")).unwrap())
}

fn identity_of(d: Decision) -> Vec<(String, String)> {
    match d {
        Decision::Forward(f) => f.set.to_vec(),
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn each_site_logs_in_with_its_own_client_and_sets_its_own_headers() {
    let mut h = harness_for(two_sites(false));
    for (host, client, header_name) in
        [("tramites.test", "cid-t", "x-claveunica-run"), ("www.becas.test:8443", "cid-b", "x-becas-run")]
    {
        h.authority = Some(host);
        let s = h.start("/privado");
        assert_eq!(param(&s.authorize, "client_id"), client, "{host}");
        let session = session_at(&mut h);
        let set = identity_of(h.request("/privado", Some(&session)));
        assert!(set.iter().any(|(n, v)| n == header_name && v == "44444444-4"), "{host}: {set:?}");
    }
}

#[test]
fn a_session_made_at_one_site_opens_at_no_other() {
    let mut h = harness_for(two_sites(true));
    h.authority = Some("tramites.test");
    let session = session_at(&mut h);
    // The positive control: the cookie opens where it was made.
    assert!(!identity_of(h.request("/privado", Some(&session))).is_empty());
    for elsewhere in ["becas.test", "portal.test", "otro.test"] {
        h.authority = Some(elsewhere);
        let r = respond(h.request("/privado", Some(&session)));
        assert_eq!(r.status, 302, "{elsewhere}: a login, not the session");
        assert!(header(&r, "location")[0].contains("/authorize/"), "{elsewhere}");
        assert!(
            header(&r, "set-cookie").iter().any(|c| c.starts_with("__Host-claveunica_session=;")),
            "{elsewhere}: the foreign cookie is cleared"
        );
        assert!(r.events.contains(Event::SessionRejected) && r.events.contains(Event::LoginStarted), "{elsewhere}");
    }
    // A session of the default site (sealed as a gate without sites seals) opens at no named
    // site either.
    h.authority = Some("portal.test");
    let default_session = session_at(&mut h);
    h.authority = Some("becas.test");
    assert_eq!(respond(h.request("/privado", Some(&default_session))).status, 302);
}

#[test]
fn a_login_started_at_one_site_cannot_finish_at_another() {
    let mut h = harness_for(two_sites(false));
    h.authority = Some("tramites.test");
    let s = h.start("/privado");
    h.authority = Some("becas.test");
    let r = respond(h.callback(&s));
    assert_eq!(r.status, 400, "no token call: {}", r.body);
    assert_eq!(r.events, Events::one(Event::LoginFailed(FailReason::StateMismatch)));
    // The positive control: the same flow finishes at its own site.
    h.authority = Some("tramites.test");
    assert!(matches!(h.callback(&s), Decision::Call(_)));
}

#[test]
fn a_host_no_site_serves_gets_421_and_nothing_is_forwarded() {
    let mut h = harness_for(two_sites(false));
    for authority in [Some("otro.test"), Some("becas.test.evil.test"), Some("[::1]:8080"), None] {
        h.authority = authority;
        let r = respond(h.request("/privado", None));
        assert_eq!(r.status, 421, "{authority:?}");
        assert!(r.body.contains("Dirección no reconocida"), "{}", r.body);
        assert_eq!(header(&r, "cache-control"), ["no-store"]);
        assert!(header(&r, "set-cookie").is_empty() && header(&r, "location").is_empty());
        assert_eq!(r.events, Events::one(Event::Misdirected));
        assert!(r.log.unwrap().message.starts_with("misdirected: no site serves host="));
    }
    // Other letters, a port and a final dot name the same site.
    h.authority = Some("TRAMITES.test.:443");
    assert_eq!(param(&h.start("/x").authorize, "client_id"), "cid-t");
}

#[test]
fn the_default_site_serves_every_host_no_site_names_but_never_an_ambiguous_one() {
    let mut h = harness_for(two_sites(true));
    h.authority = Some("otro.test");
    assert_eq!(param(&h.start("/x").authorize, "client_id"), "cid");
    h.authority = None;
    assert_eq!(param(&h.start("/x").authorize, "client_id"), "cid");
    // Two different hosts in one request: which one a proxy or the app believes is anyone's
    // guess, so no site answers, not even the default.
    let headers = [(":authority", "tramites.test"), ("host", "becas.test")];
    let r = respond(h.gate.on_request(&Request { method: "GET", path: "/x", headers: &headers }, NOW, &mut h.rng));
    assert_eq!(r.status, 421);
    let same = [(":authority", "tramites.test"), ("host", "Tramites.test")];
    let r = respond(h.gate.on_request(&Request { method: "GET", path: "/x", headers: &same }, NOW, &mut h.rng));
    assert_eq!(param(header(&r, "location")[0], "client_id"), "cid-t");
}

#[test]
fn a_clients_copy_of_any_sites_identity_header_is_removed_at_every_site() {
    let mut h = harness_for(two_sites(false));
    h.authority = Some("tramites.test");
    let headers = [(":authority", "tramites.test"), ("x-becas-run", "11111111-1")];
    let d = h.gate.on_request(&Request { method: "GET", path: "/privado", headers: &headers }, NOW, &mut h.rng);
    // Enforced and without a session: a login, and nothing forwarded at all.
    assert_eq!(respond(d).status, 302);
    let session = session_at(&mut h);
    let cookie = [(":authority", "tramites.test"), ("x-becas-run", "11111111-1"), ("cookie", session.as_str())];
    let Decision::Forward(f) =
        h.gate.on_request(&Request { method: "GET", path: "/p", headers: &cookie }, NOW, &mut h.rng)
    else {
        panic!("expected a forward")
    };
    assert_eq!(f.remove, ["x-becas-run"]);
    assert!(f.set.iter().all(|(n, _)| n != "x-becas-run"));
    assert!(h.gate.is_identity_header("X-Becas-Run") && h.gate.is_identity_header("x-claveunica-run"));
}

use jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};

/// The test configuration with the signed assertion on, signing with `keys` (newest first).
fn asserting(keys: &[&str], lifetime_s: u64) -> Config {
    let mut v = testkit::config_json();
    v["assertion"] = json!({"issuer": "https://portal.test/gate", "audience": "portal",
                            "signing_keys": keys, "lifetime_s": lifetime_s});
    testkit::config_from(&v)
}

fn verify_assertion(token: &str, pem: &str) -> jwt_simple::claims::JWTClaims<Value> {
    let public = ES256KeyPair::from_pem(pem).unwrap().public_key();
    let options = jwt_simple::common::VerificationOptions {
        allowed_issuers: Some(["https://portal.test/gate".to_string()].into()),
        allowed_audiences: Some(["portal".to_string()].into()),
        artificial_time: Some(jwt_simple::prelude::Duration::from_secs(NOW + 1)),
        ..Default::default()
    };
    public.verify_token::<Value>(token, Some(options)).unwrap()
}

fn assertion_of(d: Decision) -> String {
    let set = identity_of(d);
    set.iter().find(|(n, _)| n == "x-claveunica-assertion").map(|(_, v)| v.clone()).expect("no assertion")
}

#[test]
fn an_identified_request_carries_an_assertion_signed_by_the_newest_key() {
    let mut h = harness_for(asserting(&[testkit::ASSERTION_KEY, testkit::NEXT_ASSERTION_KEY], 300));
    let session = session_at(&mut h);
    let token = assertion_of(h.request("/privado", Some(&session)));
    let claims = verify_assertion(&token, testkit::ASSERTION_KEY);
    assert_eq!(claims.subject.as_deref(), Some("44444444-4"));
    assert_eq!(claims.custom["run"], "44444444-4");
    assert_eq!(claims.custom["nombres"], "María Carmen");
    assert_eq!(claims.custom["apellidos"], "De los Ríos Núñez");
    assert_eq!(claims.issued_at.map(|t| t.as_secs()), Some(NOW));
    assert_eq!(claims.expires_at.map(|t| t.as_secs()), Some(NOW + 300));
    assert!(claims.jwt_id.is_some_and(|j| j.len() >= 22));
    // The header names its key by the key's thumbprint, which the JWKS publishes.
    let header = jwt_simple::token::Token::decode_metadata(&token).unwrap();
    assert_eq!(header.algorithm(), "ES256");
    let jwks: Value =
        serde_json::from_str(&respond(h.request("/.well-known/claveunica-gate/jwks.json", None)).body).unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids.len(), 2, "both keys published: {jwks}");
    assert_eq!(header.key_id(), Some(kids[0]));
    // The positive control: the next key (published, not yet signing) does not verify it.
    let next = ES256KeyPair::from_pem(testkit::NEXT_ASSERTION_KEY).unwrap().public_key();
    assert!(next.verify_token::<Value>(&token, None).is_err());
}

#[test]
fn an_assertion_is_signed_once_and_reused_until_shortly_before_it_expires() {
    let mut h = harness_for(asserting(&[testkit::ASSERTION_KEY], 300));
    let session = session_at(&mut h);
    let first = assertion_of(h.request("/a", Some(&session)));
    h.now += 200;
    assert_eq!(assertion_of(h.request("/b", Some(&session))), first, "reused within its life");
    h.now = NOW + 300 - 60;
    let renewed = assertion_of(h.request("/c", Some(&session)));
    assert_ne!(renewed, first, "renewed a minute before it expires");
    let claims = verify_assertion(&renewed, testkit::ASSERTION_KEY);
    assert_eq!(claims.issued_at.map(|t| t.as_secs()), Some(NOW + 240));
    // A clock that goes back never serves an assertion issued in its future.
    h.now = NOW + 100;
    assert_ne!(assertion_of(h.request("/d", Some(&session))), renewed);
}

#[test]
fn an_assertion_never_outlives_its_session() {
    let mut v = testkit::config_json();
    v["session"] = json!({"max_age_s": 120});
    v["assertion"] = json!({"issuer": "https://portal.test/gate", "audience": "portal",
                            "signing_keys": [testkit::ASSERTION_KEY], "lifetime_s": 600});
    let mut h = harness_for(testkit::config_from(&v));
    let session = session_at(&mut h);
    let claims = verify_assertion(&assertion_of(h.request("/a", Some(&session))), testkit::ASSERTION_KEY);
    assert_eq!(claims.expires_at.map(|t| t.as_secs()), Some(NOW + 120));
}

#[test]
fn a_clients_assertion_never_reaches_the_application() {
    let mut h = harness_for(asserting(&[testkit::ASSERTION_KEY], 300));
    let forged = [("X_ClaveUnica_Assertion", "eyJhbGciOiJub25lIn0.e30.")];
    let d = h.gate.on_request(&Request { method: "GET", path: "/privado", headers: &forged }, NOW, &mut h.rng);
    assert_eq!(respond(d).status, 302, "no session: a login, nothing forwarded");
    let session = session_at(&mut h);
    let cookie = [("cookie", session.as_str()), ("x-claveunica-assertion", "forged")];
    let Decision::Forward(f) =
        h.gate.on_request(&Request { method: "GET", path: "/p", headers: &cookie }, NOW, &mut h.rng)
    else {
        panic!("expected a forward")
    };
    let values: Vec<&str> =
        f.set.iter().filter(|(n, _)| n == "x-claveunica-assertion").map(|(_, v)| v.as_str()).collect();
    assert_eq!(values.len(), 1);
    assert_ne!(values[0], "forged", "the gate's replaces the client's");
    assert!(h.gate.is_identity_header("X_CLAVEUNICA_ASSERTION"));
}

#[test]
fn the_jwks_is_answered_to_anyone_and_only_read() {
    let mut h = harness_for(asserting(&[testkit::ASSERTION_KEY], 300));
    let r = respond(h.request("/.well-known/claveunica-gate/jwks.json", None));
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "content-type"), ["application/json"]);
    assert_eq!(header(&r, "cache-control"), ["public, max-age=300"]);
    let jwks: Value = serde_json::from_str(&r.body).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(key.get("d").is_none(), "no private part: {key}");
    let post = [("content-length", "0")];
    let r = respond(h.gate.on_request(
        &Request { method: "POST", path: "/.well-known/claveunica-gate/jwks.json", headers: &post },
        NOW,
        &mut h.rng,
    ));
    assert_eq!((r.status, header(&r, "allow")), (405, vec!["GET, HEAD"]));
    // Without the assertion configured, the path is the application's like any other.
    let mut plain = harness();
    assert_eq!(respond(plain.request("/.well-known/claveunica-gate/jwks.json", None)).status, 302);
}

#[test]
fn an_application_that_needs_no_run_gets_a_pseudonym_and_never_the_run() {
    let config_for = |application: &str| {
        let mut v = testkit::config_json();
        v["headers"] = json!({"x-persona": "{pseudonym}"});
        v["pseudonym"] = json!({"key_env": "CU_PSEUDONYM_KEY", "application": application});
        v["assertion"] = json!({"issuer": "https://portal.test/gate", "audience": "portal",
                                "signing_keys": [testkit::ASSERTION_KEY], "subject": "pseudonym", "claims": []});
        let env = |k: &str| (k == "CU_PSEUDONYM_KEY").then(|| "0123456789abcdef0123456789abcdef".to_string());
        Config::from_json(v.to_string().as_bytes(), &env).unwrap()
    };
    let mut h = harness_for(config_for("tramites"));
    let session = session_at(&mut h);
    let set = identity_of(h.request("/privado", Some(&session)));
    let persona = set.iter().find(|(n, _)| n == "x-persona").map(|(_, v)| v.clone()).unwrap();
    assert_eq!(persona.len(), 32);
    for (name, value) in &set {
        assert!(!value.contains("44444444") && !value.contains("44.444.444"), "{name}: {value}");
    }
    let token = set.iter().find(|(n, _)| n == "x-claveunica-assertion").map(|(_, v)| v.clone()).unwrap();
    let claims = verify_assertion(&token, testkit::ASSERTION_KEY);
    assert_eq!(claims.subject.as_deref(), Some(persona.as_str()), "the assertion's sub is the same pseudonym");
    assert_eq!(claims.custom, json!({}), "no run, no names: {:?}", claims.custom);
    // Stable for the same application; another application knows the same person by another.
    h.now += 10;
    assert_eq!(
        identity_of(h.request("/otra", Some(&session))).iter().find(|(n, _)| n == "x-persona").unwrap().1,
        persona
    );
    let mut other = harness_for(config_for("becas"));
    let session = session_at(&mut other);
    let theirs = identity_of(other.request("/privado", Some(&session)));
    assert_ne!(theirs.iter().find(|(n, _)| n == "x-persona").unwrap().1, persona);
}
