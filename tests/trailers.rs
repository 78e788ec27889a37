#![cfg(not(target_arch = "wasm32"))]
//! Request trailers named like identity headers never reach the application. A client can send
//! fields after the body (after a chunked HTTP/1.1 body's last chunk; on HTTP/2, a HEADERS frame
//! after the DATA); an application that reads trailers as it reads headers would take a forged
//! `x-claveunica-run` there for the verified one. The core names every identity-named trailer
//! for removal (`Gate::on_request_trailers`), in any letter case, `_` spelling, and for the
//! names the configuration sets as well as the default ones.
//!
//! The application here is the legacy app's raw echo (`legacy-app --raw-echo`), which reads
//! requests itself and reports the trailers it got: tiny_http drops them. Every request carries
//! the harmless trailer `x-other: kept` beside the forged ones; where the host passes trailers
//! on (Envoy, with `enable_trailers`, as `envoy/gate.yaml.tmpl` sets), the app must get exactly
//! that one, the positive control that shows trailers do reach it. The Unit component under
//! `wasmtime serve` passes none at all (see [`expected_trailers`]); there the control is the same
//! request sent to the app directly, which reports every trailer.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test trailers
//! ```

#[macro_use]
mod support;

use serde_json::json;
use support::checks::{logged_in, start_gate_before, GateUnderTest, Host};
use support::http2::{h2_request, H2Request};
use support::process::App;
use support::{raw_http1, Response, RUN, SESSION_COOKIE};

/// The dotted RUN the configured `x-rut` header carries for María.
const RUN_DOTTED: &str = "44.444.444-4";
/// What every request's body is.
const BODY: &[u8] = b"hola!";
/// The harmless trailer: it must reach the app where the host passes trailers on.
const KEPT: (&str, &str) = ("x-other", "kept");

/// The forged trailers of the chunked HTTP/1.1 requests, in the spellings the gate must strip:
/// the default name in three letter cases and with `_`, and the configured `x-rut`.
const FORGED_HTTP1: &[(&str, &str)] = &[
    ("X-ClaveUnica-Run", "11111111-1"),
    ("x-claveunica-run", "22222222-2"),
    ("X-CLAVEUNICA-RUN", "33333333-3"),
    ("X_ClaveUnica_Run", "11111111-1"),
    ("X-Rut", "11.111.111-1"),
    ("x_rut", "22.222.222-2"),
];

/// The same over HTTP/2, where field names are lower case by the protocol.
const FORGED_HTTP2: &[(&str, &str)] =
    &[("x-claveunica-run", "11111111-1"), ("x_claveunica_run", "22222222-2"), ("x-rut", "11.111.111-1")];

on_both_hosts!(identity_named_trailers_never_reach_the_app_over_chunked_http1);

/// A `/public/` prefix, and identity headers set by the configuration: `x-rut` beside the
/// default name, so both kinds of identity name are tried.
fn config(c: &mut serde_json::Value) {
    c["rules"] = json!([{"prefix": "/public/", "action": "public"}]);
    c["headers"] = json!({"x-claveunica-run": "{run}", "x-rut": "{run_dotted}"});
}

/// The trailers the app gets on `host` when a request carries the forged ones and [`KEPT`].
/// Envoy passes trailers on (the gate removed the identity-named ones). The Unit component
/// hands its host every trailer the core did not name, but `wasmtime serve`'s HTTP client (hyper)
/// only writes trailers the request's `Trailer` header declares, and the component never
/// forwards `Trailer` (hop-by-hop in nginx-unit/src/forward.rs): the app gets none. NGINX Unit
/// itself drops request trailers before the component.
fn expected_trailers(host: Host) -> Vec<(String, String)> {
    match host {
        Host::Envoy => vec![(KEPT.0.to_string(), KEPT.1.to_string())],
        Host::Unit => Vec::new(),
    }
}

/// `POST path` over HTTP/1.1 written by hand: a chunked body, then `trailers`, declared in a
/// `Trailer` header as a sender should; with a `cookie` if given.
fn chunked_post(base: &str, path: &str, cookie: Option<&str>, trailers: &[(&str, &str)]) -> Response {
    let host = base.trim_start_matches("http://");
    let names: Vec<&str> = trailers.iter().map(|(n, _)| *n).collect();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
         Transfer-Encoding: chunked\r\nTrailer: {}\r\n",
        names.join(", ")
    );
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    request.push_str(&format!("\r\n{:x}\r\n{}\r\n0\r\n", BODY.len(), String::from_utf8_lossy(BODY)));
    for (name, value) in trailers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    Response { url: format!("chunked POST {base}{path}"), ..raw_http1(base, request.as_bytes()) }
}

/// The trailers the app reported, from its echo in `r`.
fn trailers_seen(r: &Response) -> Vec<(String, String)> {
    r.echo().trailers.unwrap_or_else(|| panic!("{}: the answer is not the raw echo's: {}", r.url, r.body))
}

/// `r` is the app's echo of a request that carried forged identity trailers: the app got
/// exactly `expected` as trailers (no identity name among them), the whole body, and as
/// headers exactly the verified identity (`identified`) or none.
fn assert_reached_clean(r: &Response, expected: &[(String, String)], identified: bool) {
    assert_eq!(r.status, 200, "{}: {r:?}", r.url);
    let trailers = trailers_seen(r);
    let forged: Vec<_> = trailers.iter().filter(|(n, _)| is_identity_name(n)).collect();
    assert!(forged.is_empty(), "{}: identity-named trailers reached the app: {forged:?}", r.url);
    assert_eq!(trailers, expected, "{}: the app got other trailers than expected", r.url);
    let echo = r.echo();
    let mut identity: Vec<(&str, &str)> =
        echo.headers.iter().filter(|(n, _)| is_identity_name(n)).map(|(n, v)| (n.as_str(), v.as_str())).collect();
    identity.sort_unstable();
    let verified: &[(&str, &str)] = if identified { &[("x-claveunica-run", RUN), ("x-rut", RUN_DOTTED)] } else { &[] };
    assert_eq!(identity, verified, "{}: the app's identity headers: {echo:?}", r.url);
    let body_len = serde_json::from_str::<serde_json::Value>(&r.body).ok().and_then(|v| v["body_len"].as_u64());
    assert_eq!(body_len, Some(BODY.len() as u64), "{}: the body did not arrive whole: {}", r.url, r.body);
}

/// A name a forged identity could hide behind here: the default prefix or the configured
/// `x-rut`, in any case, `-` or `_`.
fn is_identity_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('_', "-");
    name.starts_with("x-claveunica-") || name == "x-rut"
}

fn identity_named_trailers_never_reach_the_app_over_chunked_http1(host: Host) {
    let gate = start_gate_before(host, App::RawEcho, &[config]);
    let gate: &dyn GateUnderTest = gate.as_ref();
    let browser = logged_in(gate, "/");
    let session = browser.jar.get(SESSION_COOKIE).map(|v| format!("{SESSION_COOKIE}={v}"));
    let mut trailers = FORGED_HTTP1.to_vec();
    trailers.push(KEPT);

    // The control: the app reports every trailer it gets, identity names too.
    let direct = chunked_post(&gate.app(), "/public/x", None, &trailers);
    let sent: Vec<(String, String)> =
        trailers.iter().map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_string())).collect();
    assert_eq!(trailers_seen(&direct), sent, "the raw echo does not report trailers as sent");

    let expected = expected_trailers(host);
    let before = gate.app_requests();
    for (path, cookie) in [("/tramites?format=json", session.as_deref()), ("/public/x?format=json", None)] {
        let r = chunked_post(&gate.base(), path, cookie, &trailers);
        assert_reached_clean(&r, &expected, cookie.is_some());
    }
    // Each request reached the app once; a protected path without a session reaches nothing.
    assert_eq!(gate.app_requests(), before + 2);
    let r = chunked_post(&gate.base(), "/tramites?format=json", None, &trailers);
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(gate.app_requests(), before + 2, "a request without a session reached the app");
}

/// Envoy only: neither NGINX Unit nor `wasmtime serve` speaks HTTP/2 (tests/attacks.rs).
#[test]
fn identity_named_trailers_never_reach_the_app_over_http2() {
    let gate = start_gate_before(Host::Envoy, App::RawEcho, &[config]);
    let gate: &dyn GateUnderTest = gate.as_ref();
    let browser = logged_in(gate, "/");
    let cookie = browser.cookie_header().expect("a session cookie after login");
    let mut trailers = FORGED_HTTP2.to_vec();
    trailers.push(KEPT);
    let expected = expected_trailers(Host::Envoy);
    for (path, identified) in [("/tramites?format=json", true), ("/public/x?format=json", false)] {
        let cookie_header = [("cookie", cookie.as_str())];
        let headers: &[(&str, &str)] = if identified { &cookie_header } else { &[] };
        let request = H2Request { method: "POST", path, headers, body: BODY, trailers: &trailers };
        let r = h2_request(&gate.base(), &request);
        assert_reached_clean(&r, &expected, identified);
    }
}
