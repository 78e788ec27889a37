#![cfg(not(target_arch = "wasm32"))]
//! An attacker's suite: one table whose rows are attacks on the gate, and one loop that checks
//! every row the same way, run on both hosts: the gate in a real Envoy and the NGINX Unit
//! component under `wasmtime serve`. A row passes when
//!
//! - the answer is the clear refusal the row states (a redirect to ClaveÚnica, the gate's
//!   400/502 page, the host's own 400/414/431), or, for rows made *with a verified session*,
//!   the app's echo with exactly the verified identity and nothing forged;
//! - the legacy app received nothing, except the verified requests of such rows (Envoy's
//!   upstream counter; the app's own request log on Unit);
//! - the host's log shows no panic and no wasm trap;
//! - the host still serves: a request with the verified session reaches the app afterwards.
//!
//! A row states where the Unit component answers otherwise (`on_unit`): the one difference is
//! HTTP/2, which neither NGINX Unit nor `wasmtime serve` speaks, so those rows get no answer
//! there. One stack per host serves every row (the emulator's test modes switch the
//! provider's behaviour per row); a full login at the end shows the gate came through it all.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test attacks
//! ```

mod support;

use std::process::Command;

use base64::Engine as _;
use claveunica_core::primitives::run::Run;
use claveunica_core::primitives::seal::{KeyRing, SessionKey};
use claveunica_core::protocol::session::Identity;
use serde_json::json;
use support::checks::{log_caught_up, start_gate, GateUnderTest, Host};
use support::{
    log_line_with, now, parse_http1, random_bytes, raw_http1, seal_session, url_encode, with_param, Authorize, Browser,
    Response, APELLIDOS, CALLBACK_PATH, FLOW_PREFIX, NOMBRES, PASSWORD, RUN, SESSION_COOKIE,
};

/// Identity headers a client might forge, in every spelling the gate must strip.
const SPOOFED: &[(&str, &str)] = &[
    ("x-claveunica-run", "11111111-1"),
    ("X-ClaveUnica-RUN", "22222222-2"),
    ("X-CLAVEUNICA-RUN", "33333333-3"),
    ("x-claveunica-numero", "11111111"),
    ("X-Claveunica-Dv", "K"),
    ("x-claveunica-nombres", "Mallory"),
    ("X-CLAVEUNICA-APELLIDOS", "Impostora"),
    ("x_claveunica_run", "11111111-1"),
    ("X_ClaveUnica_Numero", "11111111"),
    ("x-claveunica_dv", "K"),
];

/// What a row expects of every answer it got.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A 302 to the emulator's authorize endpoint: no session, log in first.
    Login,
    /// The gate's failure page with this status, a reference code, and no session.
    Page(u16),
    /// After a whole login, the 302 back lands on this same-origin path.
    Lands(&'static str),
    /// Refused by Envoy before the gate (one of these statuses).
    Envoy(&'static [u16]),
    /// With a verified session: the app's echo, exactly María's identity, nothing forged.
    Verified,
    /// Either Envoy refuses (one of these statuses) or the app gets exactly the verified
    /// identity.
    VerifiedOrEnvoy(&'static [u16]),
    /// The host does not speak the protocol of the request: no answer at all (status 0), and
    /// nothing reaches the app.
    NotSpoken,
    /// With a verified session, the app answered asking for a logout: the gate's logout page
    /// replaces its answer and the session cookie is deleted. The app got the request once.
    AppLogout,
    /// With a verified session, the request reached the app once, and what the app answered
    /// came back as one of these statuses (the app's own answer, or the host's 502/503 for an
    /// answer it cannot parse): the row is about the host surviving what the app sent.
    AppReached(&'static [u16]),
}

/// What a row's attack can use.
struct Ctx<'a> {
    gate: &'a dyn GateUnderTest,
    /// María's genuine session cookie value.
    session: String,
}

impl Ctx<'_> {
    /// A browser holding María's session.
    fn with_session(&self) -> Browser {
        let mut b = self.gate.browser();
        b.jar.insert(SESSION_COOKIE.into(), self.session.clone());
        b
    }

    /// A browser whose only cookie is a session cookie with `value`.
    fn with_cookie(&self, value: &str) -> Browser {
        let mut b = self.gate.browser();
        b.jar.insert(SESSION_COOKIE.into(), value.to_string());
        b
    }
}

type Attack = fn(&Ctx) -> Vec<Response>;

struct Row {
    name: &'static str,
    /// Emulator test modes for this row (`POST /__emulator/mode`); reset after the row.
    modes: Option<serde_json::Value>,
    attack: Attack,
    expect: Expect,
    /// Where the Unit component, being its own HTTP server, answers otherwise than Envoy: a
    /// real host difference, stated per row.
    on_unit: Option<Expect>,
    /// For failure pages: what the log line with the page's reference must say (the reason).
    logged: Option<&'static str>,
}

impl Row {
    /// What this row expects on `host`.
    fn expect_on(&self, host: Host) -> Expect {
        match (host, self.on_unit) {
            (Host::Unit, Some(expect)) => expect,
            _ => self.expect,
        }
    }

    /// The Unit component answers this row otherwise.
    fn on_unit(self, expect: Expect) -> Row {
        Row { on_unit: Some(expect), ..self }
    }
}

fn row(name: &'static str, attack: Attack, expect: Expect) -> Row {
    Row { name, modes: None, attack, expect, on_unit: None, logged: None }
}

/// A whole login while the emulator is in `modes`: the gate must refuse it with a 502 page
/// whose log line says `logged`.
fn provider_row(name: &'static str, modes: serde_json::Value, logged: &'static str) -> Row {
    Row {
        name,
        modes: Some(modes),
        attack: |ctx| vec![ctx.gate.browser().login("/tramites", RUN, PASSWORD)],
        expect: Expect::Page(502),
        on_unit: None,
        logged: Some(logged),
    }
}

fn identity(run: &str) -> Identity {
    Identity::new(Run::parse(run).expect("a valid RUN"), vec!["Mallory".into()], vec!["Impostora".into()], "1".into())
        .expect("a valid identity")
}

/// A session for `run` sealed with `ring`.
fn sealed(ring: &KeyRing, run: &str, issued_at: u64, expires_at: u64) -> String {
    seal_session(ring, identity(run), issued_at, expires_at, issued_at)
}

/// Sends raw bytes to the host's listener (for what an HTTP client refuses to send: CR, LF or
/// NUL in a header value, a backslash in the path) and parses the answer.
fn raw(gate: &dyn GateUnderTest, request: &[u8]) -> Response {
    raw_http1(&gate.base(), request)
}

/// A GET over HTTP/1.1 by hand with the session cookie and `extra` header lines (raw bytes).
fn raw_get(ctx: &Ctx, path: &str, extra: &[u8], with_session: bool) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n").into_bytes();
    if with_session {
        req.extend_from_slice(format!("Cookie: {SESSION_COOKIE}={}\r\n", ctx.session).as_bytes());
    }
    req.extend_from_slice(extra);
    req.extend_from_slice(b"\r\n");
    raw(ctx.gate, &req)
}

/// A WebSocket upgrade request (RFC 6455) by hand, with a forged identity header that its
/// `Connection` header also names.
fn websocket_upgrade(ctx: &Ctx, path: &str, with_session: bool) -> Response {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: gate.test\r\nConnection: Upgrade, x-claveunica-run, close\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Claveunica-Run: 11111111-1\r\n"
    );
    if with_session {
        req.push_str(&format!("Cookie: {SESSION_COOKIE}={}\r\n", ctx.session));
    }
    req.push_str("\r\n");
    let r = raw(ctx.gate, req.as_bytes());
    // The demo app switches protocols and sends its echo as the first bytes after the 101
    // (Envoy); the Unit component cannot switch protocols, drops `Upgrade` as hop-by-hop, and
    // the app answers a plain GET with its echo (200). Either way the echo is what it received.
    if r.status == 101 {
        return Response { status: 200, ..r };
    }
    r
}

/// [`raw_get`] once for each of `extras`.
fn raw_each(ctx: &Ctx, path: &str, extras: &[&[u8]], with_session: bool) -> Vec<Response> {
    extras.iter().map(|extra| raw_get(ctx, path, extra, with_session)).collect()
}

/// A GET over HTTP/2 without TLS (prior knowledge), by curl: header names go lower-case. A host
/// that does not speak HTTP/2 (the Unit component's: NGINX Unit has no HTTP/2, nor has
/// `wasmtime serve`) gives no answer: status 0.
fn h2_get(ctx: &Ctx, path: &str, headers: &[(&str, &str)], with_session: bool) -> Response {
    let url = format!("{}{path}", ctx.gate.base());
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--http2-prior-knowledge", "--max-time", "10"]);
    if with_session {
        cmd.args(["-H", &format!("cookie: {SESSION_COOKIE}={}", ctx.session)]);
    }
    for (n, v) in headers {
        cmd.args(["-H", &format!("{}: {v}", n.to_ascii_lowercase())]);
    }
    let out = cmd.arg(&url).output().unwrap_or_else(|e| panic!("cannot run curl: {e}"));
    if ctx.gate.host() == Host::Unit && out.stdout.is_empty() {
        // Only curl's own word that the peer does not speak HTTP/2 counts as "not spoken" (16:
        // HTTP/2 framing error, 18: the connection closed mid-answer, which is what `wasmtime
        // serve`'s HTTP/1 server gives, 52: empty reply, 56: connection reset); a timeout or a
        // refused connection is a failure of the test, not an answer.
        let code = out.status.code();
        assert!(
            matches!(code, Some(16 | 18 | 52 | 56)),
            "curl --http2-prior-knowledge {url} ended with {code:?}, not a protocol refusal: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return Response { url, status: 0, headers: Vec::new(), body: String::new() };
    }
    assert!(out.status.success(), "curl --http2-prior-knowledge {url} failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 "), "curl did not speak HTTP/2 with Envoy: {text}");
    parse_http1(&format!("h2 {url}"), &out.stdout)
}

/// Continues a login that started with `first` (the gate's 302 to the provider, obtained any
/// way) in `browser`, which must hold the flow cookie; returns the gate's answer at the
/// callback.
/// A path on which the app answers 200 with `line` as one of its header lines, byte for byte.
fn app_raw_header(line: &[u8]) -> String {
    let hex: String = line.iter().map(|b| format!("{b:02x}")).collect();
    format!("/?raw_header_hex={hex}")
}

fn finish_login(browser: &mut Browser, first: Response) -> Response {
    let authorize = Authorize::from_redirect(first);
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    browser.callback(&callback)
}

/// A login started by a raw request for `path` (sent as written), finished in the same browser.
fn raw_login(ctx: &Ctx, path: &str) -> Response {
    let mut browser = ctx.gate.browser();
    let first = browser.raw("GET", path, &[]);
    if first.status != 302 {
        return first;
    }
    finish_login(&mut browser, first)
}

fn login_with_return_to(ctx: &Ctx, return_to: &str) -> Vec<Response> {
    let mut b = ctx.gate.browser();
    vec![b.login(&format!("/claveunica/login?return_to={}", url_encode(return_to)), RUN, PASSWORD)]
}

/// A whole login for each return path, each in a new browser.
fn login_with_each_return_to(ctx: &Ctx, return_tos: &[&str]) -> Vec<Response> {
    return_tos.iter().flat_map(|r| login_with_return_to(ctx, r)).collect()
}

fn rows() -> Vec<Row> {
    use Expect::*;
    vec![
        // --- Session cookies -------------------------------------------------------------
        row(
            "forged session cookie (random envelope-shaped bytes)",
            |ctx| {
                let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<180>());
                vec![ctx.with_cookie(&format!("v1.{forged}")).get("/tramites"), ctx.with_cookie(&forged).get("/")]
            },
            Login,
        ),
        row(
            "truncated session cookie",
            |ctx| {
                let s = &ctx.session;
                vec![ctx.with_cookie(&s[..s.len() - 10]).get("/tramites"), ctx.with_cookie(&s[..20]).get("/")]
            },
            Login,
        ),
        row(
            "oversized (8 KB) session cookie",
            |ctx| {
                let big = format!("{}{}", ctx.session, "A".repeat(8 * 1024));
                vec![ctx.with_cookie(&big).get("/tramites"), ctx.with_cookie(&"B".repeat(8 * 1024)).get("/")]
            },
            Login,
        ),
        row(
            "duplicated session cookie, both forged",
            |ctx| {
                let b = ctx.gate.browser();
                vec![b.clone().get_with_headers(
                    "/tramites",
                    &[("Cookie", &format!("{SESSION_COOKIE}=forged1; {SESSION_COOKIE}=forged2"))],
                )]
            },
            Login,
        ),
        row(
            "duplicated session cookie: a forged copy before the real one, and in a second Cookie header",
            |ctx| {
                let pair = format!("{SESSION_COOKIE}=forged; {SESSION_COOKIE}={}", ctx.session);
                let mut b = ctx.gate.browser();
                let one = b.get_with_headers("/?format=json", &[("Cookie", &pair)]);
                let raw_two =
                    raw_get(ctx, "/?format=json", format!("Cookie: {SESSION_COOKIE}=forged\r\n").as_bytes(), true);
                vec![one, raw_two]
            },
            Verified,
        ),
        row(
            "mixed-case session cookie name carrying a genuine session",
            |ctx| {
                let mut out = Vec::new();
                for name in ["Claveunica_Session", "CLAVEUNICA_SESSION", "claveunica_Session"] {
                    let mut b = ctx.gate.browser();
                    b.jar.insert(name.into(), ctx.session.clone());
                    out.push(b.get("/tramites"));
                }
                out
            },
            Login,
        ),
        row(
            "session cookie sealed with a retired (unknown) key",
            |ctx| {
                let retired = KeyRing::new(&[SessionKey(random_bytes::<32>())]);
                let t = now();
                vec![ctx.with_cookie(&sealed(&retired, RUN, t, t + 3600)).get("/tramites")]
            },
            Login,
        ),
        row(
            "session cookie sealed with the gate's key but expired",
            |ctx| {
                let t = now();
                vec![ctx.with_cookie(&sealed(&ctx.gate.ring(), RUN, t - 7200, t - 3600)).get("/tramites")]
            },
            Login,
        ),
        row(
            "a flow cookie presented as the session cookie",
            |ctx| {
                let mut b = ctx.gate.browser();
                let authorize = b.start_login("/x");
                let flow = b.jar[&authorize.flow_cookie()].clone();
                vec![ctx.with_cookie(&flow).get("/tramites")]
            },
            Login,
        ),
        row(
            "two session cookies for two people: another's tossed in before María's",
            |ctx| {
                let t = now();
                let mallory = sealed(&ctx.gate.ring(), "11111111-1", t, t + 3600);
                let cookie = |a: &str, b: &str| format!("Cookie: {SESSION_COOKIE}={a}; {SESSION_COOKIE}={b}\r\n");
                vec![
                    raw_get(ctx, "/tramites/x", cookie(&mallory, &ctx.session).as_bytes(), false),
                    raw_get(ctx, "/tramites/x", cookie(&ctx.session, &mallory).as_bytes(), false),
                ]
            },
            Login,
        ),
        row(
            "thirty logins started with a 1900-byte return_to, then the site and the logout",
            |ctx| {
                let mut b = ctx.gate.browser();
                let long = format!("/tramites?q={}", "a".repeat(1900));
                for _ in 0..30 {
                    let r = b.get(&format!("/claveunica/login?return_to={}", url_encode(&long)));
                    assert_eq!(r.status, 302, "a login start was refused: {} {:?}", r.status, r.body);
                }
                let header = b.cookie_header().unwrap_or_default();
                assert!(header.len() < 8 * 1024, "the browser's Cookie header grew to {} bytes", header.len());
                let site = b.get("/tramites");
                let logout = b.get("/claveunica/logout");
                assert_eq!(logout.status, 200, "the logout answered {} {:?}", logout.status, logout.body);
                assert!(!b.jar.keys().any(|n| n.starts_with(FLOW_PREFIX)), "the logout left flows: {:?}", b.jar.keys());
                vec![site]
            },
            Login,
        ),
        // --- Flow cookies, state and the callback ---------------------------------------
        Row {
            logged: Some("detail=two flow cookies"),
            ..row(
                "callback with a second flow cookie of the same name tossed in beside the genuine one",
                |ctx| {
                    let mut victim = ctx.gate.browser();
                    let authorize = victim.start_login("/victima");
                    let callback = victim.provider_login(&authorize, RUN, PASSWORD);
                    let genuine = victim.jar[&authorize.flow_cookie()].clone();
                    let mut attacker = ctx.gate.browser();
                    let own = attacker.start_login("/atacante");
                    let tossed = attacker.jar[&own.flow_cookie()].clone();
                    let target = callback.strip_prefix(&ctx.gate.base()).unwrap_or(&callback).to_string();
                    let name = authorize.flow_cookie();
                    [(&tossed, &genuine), (&genuine, &tossed)]
                        .into_iter()
                        .map(|(a, b)| {
                            let cookie = format!("Cookie: {name}={a}; {name}={b}\r\n");
                            raw_get(ctx, &target, cookie.as_bytes(), false)
                        })
                        .collect()
                },
                Page(400),
            )
        },
        row(
            "callback with a flow cookie from another browser (victim's state, attacker's cookie)",
            |ctx| {
                let mut victim = ctx.gate.browser();
                let authorize = victim.start_login("/victima");
                let callback = victim.provider_login(&authorize, RUN, PASSWORD);
                let mut attacker = ctx.gate.browser();
                let own = attacker.start_login("/atacante");
                // The attacker's own sealed flow, under the name the victim's state points to.
                let value = attacker.jar.remove(&own.flow_cookie()).expect("the attacker's flow cookie");
                attacker.jar.insert(authorize.flow_cookie(), value);
                vec![attacker.callback(&callback)]
            },
            Page(400),
        ),
        row(
            "callback without any flow cookie",
            |ctx| {
                let mut victim = ctx.gate.browser();
                let authorize = victim.start_login("/victima");
                let callback = victim.provider_login(&authorize, RUN, PASSWORD);
                vec![ctx.gate.browser().callback(&callback)]
            },
            Page(400),
        ),
        row(
            "state replay: the same callback again, with and without the spent flow cookie",
            |ctx| {
                let mut b = ctx.gate.browser();
                let authorize = b.start_login("/tramites");
                let callback = b.provider_login(&authorize, RUN, PASSWORD);
                let mut before = b.clone();
                let done = b.callback(&callback);
                assert_eq!(done.status, 302, "the genuine callback failed: {done:?}");
                b.jar.remove(SESSION_COOKIE);
                vec![b.callback(&callback), before.callback(&callback)]
            },
            Page(400),
        ),
        row(
            "callback with repeated code or state parameters",
            |ctx| {
                let mut out = Vec::new();
                for dup in ["code", "state", "both"] {
                    let mut b = ctx.gate.browser();
                    let authorize = b.start_login("/tramites");
                    let callback = b.provider_login(&authorize, RUN, PASSWORD);
                    let url = match dup {
                        "code" => format!("{callback}&code=00000000000000000000000000000000"),
                        "state" => format!("{callback}&state={}", authorize.state),
                        _ => format!("{callback}&code=x&state={}", authorize.state),
                    };
                    out.push(b.callback(&url));
                }
                out
            },
            Page(400),
        ),
        row(
            "callback with no code, an empty code, or an 8 KB code",
            |ctx| {
                let mut out = Vec::new();
                for code in [None, Some(String::new()), Some("c".repeat(8 * 1024))] {
                    let mut b = ctx.gate.browser();
                    let authorize = b.start_login("/tramites");
                    let callback = b.provider_login(&authorize, RUN, PASSWORD);
                    out.push(b.callback(&with_param(&callback, "code", code.as_deref())));
                }
                out
            },
            Page(400),
        ),
        row(
            "callback with a forged state of every shape",
            |ctx| {
                let mut out = Vec::new();
                for state in ["", "short", &"A".repeat(43), &"é".repeat(40), &"A".repeat(4096), "../../etc", "%00"] {
                    let mut b = ctx.gate.browser();
                    out.push(b.get(&format!("{CALLBACK_PATH}?code=abc&state={}", url_encode(state))));
                }
                out
            },
            Page(400),
        ),
        // --- Where the browser is sent after login --------------------------------------
        row("return_to //evil", |ctx| login_with_return_to(ctx, "//evil.example/x"), Lands("/")),
        row("return_to /\\evil", |ctx| login_with_return_to(ctx, "/\\evil.example/x"), Lands("/")),
        row("return_to https://evil", |ctx| login_with_return_to(ctx, "https://evil.example/x"), Lands("/")),
        row("return_to javascript:", |ctx| login_with_return_to(ctx, "javascript:alert(document.cookie)"), Lands("/")),
        row(
            "return_to %2F%2Fevil (encoded once more)",
            |ctx| login_with_return_to(ctx, "%2F%2Fevil.example"),
            Lands("/"),
        ),
        row("return_to /%5Cevil (encoded backslash)", |ctx| login_with_return_to(ctx, "/%5Cevil.example"), Lands("/")),
        row("return_to /%2F/evil", |ctx| login_with_return_to(ctx, "/%2F/evil.example"), Lands("/")),
        row(
            "return_to with a tab, CR/LF or NUL",
            |ctx| {
                ["/\t/evil.example", "/\r\nLocation: https://evil.example", "/\0/evil.example", " //evil.example"]
                    .iter()
                    .flat_map(|r| login_with_return_to(ctx, r))
                    .collect()
            },
            Lands("/"),
        ),
        row("return_to the gate's own callback", |ctx| login_with_return_to(ctx, CALLBACK_PATH), Lands("/")),
        row(
            "return_to the gate's logout behind a fragment, a query, a trailing / or ;, another case",
            |ctx| {
                login_with_each_return_to(
                    ctx,
                    &[
                        "/claveunica/logout#x",
                        "/claveunica/logout?x=1#y",
                        "/claveunica/logout/",
                        "/claveunica/logout;x",
                        "/ClaveUnica/LOGOUT",
                        "/claveunica/login#",
                        "/claveunica/callback#x",
                    ],
                )
            },
            Lands("/"),
        ),
        row(
            "return_to the gate's logout behind encodings and dot segments",
            |ctx| {
                login_with_each_return_to(
                    ctx,
                    &[
                        "/claveunica/%6cogout",
                        "/claveunica/logout%23x",
                        "/x/../claveunica/logout",
                        "/claveunica/./logout",
                        "/x/%2e%2e/claveunica/logout",
                        "/x/.%2E/claveunica/logout",
                        "/x/..;/claveunica/logout",
                    ],
                )
            },
            Lands("/"),
        ),
        row(
            "initial path //evil and ///evil",
            |ctx| {
                let mut a = ctx.gate.browser();
                let mut b = ctx.gate.browser();
                vec![a.login("//evil.example/x", RUN, PASSWORD), b.login("///evil.example/x", RUN, PASSWORD)]
            },
            Lands("/"),
        ),
        row(
            "initial path /\\evil sent raw (a client would turn it into //)",
            |ctx| vec![raw_login(ctx, "/\\evil.example/x"), raw_login(ctx, "/%5Cevil.example")],
            Lands("/"),
        ),
        // --- Identity headers sent by the client ----------------------------------------
        row(
            "identity headers in every spelling, without a session",
            |ctx| vec![ctx.gate.browser().get_with_headers("/?format=json", SPOOFED)],
            Login,
        ),
        row(
            "identity headers in every spelling and repeated, with a verified session",
            |ctx| {
                let mut b = ctx.with_session();
                let mut twice: Vec<(&str, &str)> = SPOOFED.to_vec();
                twice.extend_from_slice(SPOOFED);
                vec![b.get_with_headers("/?format=json", &twice)]
            },
            Verified,
        ),
        row(
            "identity headers over HTTP/2 (lower case), with a verified session",
            |ctx| vec![h2_get(ctx, "/?format=json", SPOOFED, true)],
            Verified,
        )
        .on_unit(NotSpoken),
        row(
            "identity headers over HTTP/2, without a session",
            |ctx| vec![h2_get(ctx, "/?format=json", SPOOFED, false)],
            Login,
        )
        .on_unit(NotSpoken),
        row(
            "identity header values with CR, LF or NUL (raw HTTP/1.1), with a session",
            |ctx| {
                [
                    &b"X-Claveunica-Run: 11111111-1\rX-Injected: 1\r\n"[..],
                    b"X-Claveunica-Run: 11111111-1\nX-Claveunica-Dv: K\r\n",
                    b"X-Claveunica-Run: 11111111-1\0\r\n",
                    b"X-Claveunica-Run: \0\r\n",
                    b"X-Claveunica-Run: 1\r\n 11111111-1\r\n",
                    b"X-Claveunica-Run : 11111111-1\r\n",
                    b"X-Claveunica\0-Run: 11111111-1\r\n",
                ]
                .iter()
                .map(|extra| raw_get(ctx, "/?format=json", extra, true))
                .collect()
            },
            VerifiedOrEnvoy(&[400]),
        ),
        row(
            "identity header values with CR, LF or NUL (raw HTTP/1.1), without a session",
            |ctx| {
                [&b"X-Claveunica-Run: 11111111-1\0\r\n"[..], b"X-Claveunica-Run: 1\nX-Claveunica-Dv: K\r\n"]
                    .iter()
                    .map(|extra| raw_get(ctx, "/?format=json", extra, false))
                    .collect()
            },
            Envoy(&[302, 400]),
        ),
        // --- Size -----------------------------------------------------------------------
        row(
            "a 100 KB path",
            |ctx| vec![ctx.with_session().get(&format!("/{}", "a".repeat(100 * 1024)))],
            Envoy(&[414, 431]),
        ),
        row(
            "a 100 KB query string",
            |ctx| vec![ctx.gate.browser().get(&format!("/tramites?q={}", "b".repeat(100 * 1024)))],
            Envoy(&[414, 431]),
        ),
        row(
            "an 8 KB path and query, without a session (return_to too long to keep)",
            |ctx| {
                let mut b = ctx.gate.browser();
                let long = format!("/{}?q={}", "a".repeat(4 * 1024), "b".repeat(4 * 1024));
                let first = b.get(&long);
                assert!(
                    first.header_all("set-cookie").iter().all(|c| c.len() < 4096),
                    "an oversized cookie: {first:?}"
                );
                vec![finish_login(&mut b, first)]
            },
            Lands("/"),
        ),
        row(
            "an 8 KB path and 30 KB query, with a verified session",
            |ctx| {
                vec![ctx.with_session().get(&format!(
                    "/{}?format=json&q={}",
                    "a".repeat(8 * 1024),
                    "b".repeat(30 * 1024)
                ))]
            },
            Verified,
        ),
        // --- Hop-by-hop removal and upgrades --------------------------------------------
        // A `Connection` header naming identity headers makes them hop-by-hop for the host:
        // that must neither remove the verified ones before the app nor let forged ones through.
        row(
            "Connection naming identity headers, with a verified session and forged copies",
            |ctx| {
                let extras = [
                    &b"Connection: x-claveunica-run, X-ClaveUnica-Nombres\r\nX-Claveunica-Run: 11111111-1\r\n"[..],
                    b"Connection: x-claveunica-run\r\nConnection: x_claveunica_dv\r\nX_Claveunica_Dv: K\r\n",
                ];
                raw_each(ctx, "/?format=json", &extras, true)
            },
            Verified,
        ),
        row(
            "Connection naming identity headers, with forged copies and no session",
            |ctx| {
                let extras = [&b"Connection: x-claveunica-run\r\nX-Claveunica-Run: 11111111-1\r\n"[..]];
                raw_each(ctx, "/tramites?format=json", &extras, false)
            },
            Login,
        ),
        row(
            "a WebSocket upgrade with a verified session, forged identity and Connection naming it",
            |ctx| vec![websocket_upgrade(ctx, "/?format=json", true)],
            Verified,
        ),
        row(
            "a WebSocket upgrade with forged identity and no session",
            |ctx| vec![websocket_upgrade(ctx, "/tramites?format=json", false)],
            Login,
        ),
        // --- Bytes that are not UTF-8, and sizes, from the client (raw HTTP/1.1) ----------
        // Read through the adapters' byte-safe calls: nothing a client sends can trap the VM.
        row(
            "identity header values that are not UTF-8, with a verified session",
            |ctx| {
                let extras =
                    [&b"X-Claveunica-Run: \xff\xfe11111111-1\r\n"[..], b"X_Claveunica_Nombres: Mal\xc3\x28ory\r\n"];
                raw_each(ctx, "/?format=json", &extras, true)
            },
            VerifiedOrEnvoy(&[400]),
        ),
        row(
            "header values and a session cookie that are not UTF-8, without a session",
            |ctx| {
                let mut cookie = format!("Cookie: {SESSION_COOKIE}=").into_bytes();
                cookie.extend_from_slice(b"\xff\xfe\x80; other=\xc3\r\n");
                raw_each(ctx, "/tramites", &[b"X-Note: caf\xe9\r\nX-Claveunica-Run: \xff\r\n", &cookie], false)
            },
            Envoy(&[302, 400]),
        ),
        row(
            "a header name that is not UTF-8, with and without a session",
            |ctx| {
                vec![
                    raw_get(ctx, "/?format=json", b"X-Caf\xe9: 1\r\n", true),
                    raw_get(ctx, "/tramites", b"X-Claveunica-R\xfcn: 1\r\n", false),
                ]
            },
            VerifiedOrEnvoy(&[302, 400]),
        ),
        row(
            "a request path that is not UTF-8, without a session",
            |ctx| vec![raw(ctx.gate, b"GET /tr\xe1mites\xff HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\r\n")],
            Envoy(&[302, 400]),
        ),
        row(
            "a 100 KB header value and a 10 KB header name, with a verified session",
            |ctx| {
                let value = format!("X-Claveunica-Run: {}\r\n", "1".repeat(100 * 1024));
                let name = format!("X-{}: 1\r\n", "n".repeat(10 * 1024));
                vec![
                    raw_get(ctx, "/?format=json", value.as_bytes(), true),
                    raw_get(ctx, "/?format=json", name.as_bytes(), true),
                ]
            },
            VerifiedOrEnvoy(&[400, 431]),
        ),
        row(
            "500 headers, with a verified session",
            |ctx| {
                let many: String = (0..500).map(|i| format!("X-Claveunica-Run-{i}: {i}\r\n")).collect();
                vec![raw_get(ctx, "/?format=json", many.as_bytes(), true)]
            },
            VerifiedOrEnvoy(&[400, 431]),
        ),
        // --- Bytes that are not UTF-8, and sizes, from the application ------------------
        // The app writes one header line byte for byte (`raw_header_hex`, see
        // examples/legacy-app/src/raw.rs). The gate reads an identified answer's headers to look
        // for the logout header: none of this may trap it.
        row(
            "the app asks for a logout with a value that is not UTF-8",
            |ctx| vec![ctx.with_session().get(&app_raw_header(b"x-claveunica-logout: \xff\xfe\x80"))],
            AppLogout,
        ),
        row(
            "the app answers header values that are not UTF-8",
            |ctx| {
                [&b"x-note: caf\xe9"[..], b"set-cookie: legacy=\xff\xfe; Path=/", b"x-claveunica-logout-not: \xc3\x28"]
                    .iter()
                    .map(|line| ctx.with_session().get(&app_raw_header(line)))
                    .collect()
            },
            AppReached(&[200]),
        ),
        row(
            "the app answers a header name that is not UTF-8",
            |ctx| vec![ctx.with_session().get(&app_raw_header(b"x-caf\xe9: 1"))],
            AppReached(&[200, 502, 503]),
        ),
        row(
            "the app answers a 90 KB header value and a 10 KB header name",
            |ctx| {
                // 90 KB: past Envoy's 60 KB limit, within what the test client reads (100 KB).
                let value = format!("{}&raw_pad={}", app_raw_header(b"x-big: "), 90 * 1024);
                let name = app_raw_header(format!("x-{}: 1", "n".repeat(10 * 1024)).as_bytes());
                [value, name].iter().map(|path| ctx.with_session().get(path)).collect()
            },
            AppReached(&[200, 502, 503]),
        ),
        // --- ID tokens the provider (or someone in its place) signs badly ---------------
        provider_row("ID token with alg none", json!({"id_token": "alg_none"}), "detail=algorithm(\"none\")"),
        provider_row(
            "ID token HS256 keyed with the RSA public key",
            json!({"id_token": "hs256_confusion"}),
            "detail=algorithm(\"hs256\")",
        ),
        provider_row("ID token with a kid pointing nowhere", json!({"id_token": "unknown_kid"}), "detail=unknownkey"),
        provider_row("ID token with a crit header", json!({"id_token": "crit"}), "reason=id_token_invalid"),
        provider_row("ID token with a 100 KB claim", json!({"id_token": "huge"}), "detail=answer too large"),
        provider_row("ID token with typ at+jwt", json!({"id_token": "typ_at_jwt"}), "reason=id_token_invalid"),
        provider_row("ID token with another login's nonce", json!({"id_token": "wrong_nonce"}), "detail=noncemismatch"),
        provider_row("ID token from another issuer", json!({"id_token": "wrong_issuer"}), "detail=issuer"),
        provider_row("ID token for another client", json!({"id_token": "wrong_audience"}), "detail=audience"),
        provider_row("ID token expired", json!({"id_token": "expired"}), "detail=expired"),
        provider_row(
            "ID token for this client and another, no azp",
            json!({"id_token": "multi_audience"}),
            "detail=authorizedparty",
        ),
        provider_row(
            "ID token for this client and another, azp the other",
            json!({"id_token": "multi_audience_wrong_azp"}),
            "detail=authorizedparty",
        ),
        provider_row(
            "ID token for this client, azp another",
            json!({"id_token": "wrong_azp"}),
            "detail=authorizedparty",
        ),
        provider_row(
            "ID token issued an hour ago, not yet expired",
            json!({"iat_offset_s": -3600, "exp_offset_s": 600}),
            "detail=issuedat",
        ),
        // --- Userinfo -------------------------------------------------------------------
        provider_row("userinfo without numero", json!({"userinfo": "numero_missing"}), "no rolunico.numero"),
        provider_row("userinfo with numero null", json!({"userinfo": "numero_null"}), "no rolunico.numero"),
        provider_row("userinfo with a negative numero", json!({"userinfo": "numero_negative"}), "not a whole number"),
        provider_row("userinfo with a non-numeric numero", json!({"userinfo": "numero_text"}), "not a whole number"),
        provider_row("userinfo with a wrong DV", json!({"userinfo": "wrong_dv"}), "wrongcheckdigit"),
        provider_row("userinfo with tipo DNI", json!({"userinfo": "tipo_dni"}), "detail=notarun"),
        provider_row("userinfo with 100 KB of names", json!({"userinfo": "names_100k"}), "reason=userinfo_invalid"),
        provider_row("userinfo with invalid UTF-8", json!({"userinfo": "invalid_utf8"}), "reason=userinfo_invalid"),
    ]
}

/// Lines in the host's log that mean the VM crashed or the host itself did (Envoy's, and
/// wasmtime's for the Unit component).
fn crash_lines(log: &str) -> Vec<&str> {
    const MARKS: &[&str] = &[
        "panicked",
        "wasm trap",
        "wasm backtrace",
        "Function: proxy_on_",
        "Wasm VM failed",
        "Caught Segmentation",
        "Backtrace",
    ];
    log.lines().filter(|l| MARKS.iter().any(|m| l.contains(m))).collect()
}

/// María's identity, exactly once each, and nothing forged.
fn check_verified(r: &Response) -> Result<(), String> {
    if r.status != 200 {
        return Err(format!("expected the app's echo with the verified identity, got {} {:?}", r.status, r.body));
    }
    let echo = r.echo();
    for (name, want) in [
        ("x-claveunica-run", RUN),
        ("x-claveunica-numero", "44444444"),
        ("x-claveunica-dv", "4"),
        ("x-claveunica-nombres", NOMBRES),
        ("x-claveunica-apellidos", APELLIDOS),
    ] {
        if echo.all(name) != [want] {
            return Err(format!("{name}: the app got {:?}, not exactly [{want:?}]: {echo:?}", echo.all(name)));
        }
    }
    let underscores: Vec<_> =
        echo.headers.iter().filter(|(n, _)| n.contains('_') && n.contains("claveunica")).collect();
    if !underscores.is_empty() {
        return Err(format!("forged underscore spellings reached the app: {underscores:?}"));
    }
    if echo.cookie_names().iter().any(|n| n == SESSION_COOKIE || n.starts_with(FLOW_PREFIX)) {
        return Err(format!("the gate's cookies reached the app: {:?}", echo.all("cookie")));
    }
    Ok(())
}

/// Checks one answer; returns how many app requests it accounts for.
fn check(gate: &dyn GateUnderTest, expect: Expect, r: &Response) -> Result<u64, String> {
    let authorize = format!("{}?", gate.authorize_endpoint());
    let login = |r: &Response| r.status == 302 && r.header("location").is_some_and(|l| l.starts_with(&authorize));
    let no_session =
        |r: &Response| r.set_cookie(SESSION_COOKIE).is_none_or(|c| c.contains("Max-Age=0") || c.contains("max-age=0"));
    match expect {
        Expect::Login if login(r) && no_session(r) => Ok(0),
        Expect::Login => Err(format!("expected a redirect to login, got {} {:?} {:?}", r.status, r.headers, r.body)),
        Expect::Page(status) => {
            if r.status != status || !r.body.contains("Código de referencia") || !no_session(r) {
                return Err(format!(
                    "expected the gate's {status} page, got {} {:?} {:?}",
                    r.status, r.headers, r.body
                ));
            }
            Ok(0)
        }
        Expect::Lands(path) => {
            if r.status == 302 && r.header("location") == Some(path) {
                Ok(0)
            } else {
                Err(format!("expected a 302 to {path:?} after the login, got {} {:?}", r.status, r.headers))
            }
        }
        Expect::Envoy(statuses) if statuses.contains(&r.status) && (r.status != 302 || login(r)) => Ok(0),
        Expect::Envoy(statuses) => Err(format!("expected one of {statuses:?}, got {} {:?}", r.status, r.body)),
        Expect::Verified => check_verified(r).map(|()| 1),
        Expect::VerifiedOrEnvoy(statuses) if statuses.contains(&r.status) => Ok(0),
        Expect::VerifiedOrEnvoy(_) => check_verified(r).map(|()| 1),
        Expect::AppLogout => {
            let deleted = r.set_cookie(SESSION_COOKIE).is_some_and(|c| c.contains("Max-Age=0"));
            if r.status == 200 && r.body.contains("Sesión cerrada") && deleted {
                Ok(1)
            } else {
                Err(format!("expected the gate's logout page, got {} {:?} {:?}", r.status, r.headers, r.body))
            }
        }
        Expect::AppReached(statuses) if statuses.contains(&r.status) => Ok(1),
        Expect::AppReached(statuses) => Err(format!("expected one of {statuses:?}, got {} {:?}", r.status, r.body)),
        Expect::NotSpoken if r.status == 0 => Ok(0),
        Expect::NotSpoken => Err(format!("expected no answer, got {} {:?}", r.status, r.body)),
    }
}

#[test]
fn every_attack_is_refused_and_envoy_keeps_serving() {
    every_attack_is_refused_and_the_host_keeps_serving(Host::Envoy);
}

#[test]
fn every_attack_is_refused_and_the_unit_component_keeps_serving() {
    every_attack_is_refused_and_the_host_keeps_serving(Host::Unit);
}

fn every_attack_is_refused_and_the_host_keeps_serving(host: Host) {
    let gate = start_gate(host, &[]);
    let stack = gate.as_ref();
    let mut maria = stack.browser();
    let r = maria.login("/", RUN, PASSWORD);
    assert_eq!(r.status, 302, "the first login failed: {r:?}");
    let ctx = Ctx { gate: stack, session: maria.jar[SESSION_COOKIE].clone() };

    let mut failures = Vec::new();
    let rows = rows();
    for row in &rows {
        if let Some(modes) = &row.modes {
            stack.set_emulator_mode(modes);
        }
        let before = stack.app_requests();
        let responses = (row.attack)(&ctx);
        if row.modes.is_some() {
            stack.set_emulator_mode(
                &json!({"id_token": "normal", "userinfo": "normal", "iat_offset_s": 0, "exp_offset_s": 600}),
            );
        }
        assert!(!responses.is_empty(), "row {:?} sent nothing", row.name);
        let mut forwarded = 0;
        for (i, r) in responses.iter().enumerate() {
            match check(stack, row.expect_on(host), r) {
                Ok(n) => forwarded += n,
                Err(why) => failures.push(format!("{} [answer {i}, {}]: {why}", row.name, r.url)),
            }
        }
        if let Some(logged) = row.logged {
            for r in responses.iter().filter(|r| r.body.contains("Código de referencia")) {
                let needle = format!("ref={}", r.reference());
                let line = log_line_with(stack, &needle);
                if !line.contains(logged) {
                    failures.push(format!("{}: the log line for {needle} does not say {logged:?}: {line:?}", row.name));
                }
            }
        }
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        eprintln!("{:<90} {statuses:?}", row.name);
        let moved = stack.app_requests() - before;
        if moved != forwarded {
            failures
                .push(format!("{}: the app received {moved} requests, {forwarded} with a verified session", row.name));
        }
        let log = stack.log();
        let crashes = crash_lines(&log);
        if !crashes.is_empty() {
            failures.push(format!("{}: the host's log shows a crash: {crashes:?}", row.name));
        }
        // The proxy still serves the verified session.
        if let Err(why) = check_verified(&ctx.with_session().get("/?format=json")) {
            failures.push(format!("{}: afterwards the verified session no longer works: {why}", row.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), rows.len(), failures.join("\n"));

    // The gate came through it all: a whole new login still works.
    let mut browser = stack.browser();
    let r = browser.login("/tramites?format=json", "55555555-5", PASSWORD);
    assert_eq!(r.status, 302, "the final login failed: {r:?}");
    assert_eq!(r.location(), "/tramites?format=json");
    let echo = browser.get("/tramites?format=json").echo();
    assert_eq!(echo.one("x-claveunica-run"), Some("55555555-5"));
    log_caught_up(stack);
    let log = stack.log();
    assert!(crash_lines(&log).is_empty(), "the host's log shows a crash: {:?}", crash_lines(&log));
}
