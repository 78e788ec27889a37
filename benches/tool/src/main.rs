//! The benchmark's helper, driven by `benches/run.sh`:
//!
//! - `cookie KEY_B64`: a session cookie sealed with the gate's own code and key, as a login
//!   would set it (`name=value` on stdout);
//! - `cookies KEY_B64 N`: N session cookies for N distinct people (distinct RUNs with valid
//!   check digits), one `RUN<TAB>name=value` line each, for the run that rotates through more
//!   sessions than the gate's cache of opened sessions holds;
//! - `jwt DIR [rs256|hs256]`: a JWT for Envoy's `jwt_authn` (stdout) and its JWKS
//!   (`DIR/jwks-rs256.json`: the provider's RSA key; `DIR/jwks-hs256.json`: a `kty: oct` key);
//! - `logins BASE N PARALLEL`: N complete logins through the gate and the emulator;
//! - `core N`: the core's own CPU time per request, natively, for the authenticated path (a
//!   cookie the gate opened before, and 1,200 sessions in turn, each one opened), the
//!   unauthenticated path and a configuration load (no proxy, no Wasm: what the gate's code
//!   costs by itself).

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use claveunica_core::config::Config;
use claveunica_core::gate::{Decision, Gate, Request};
use claveunica_core::primitives::run::{check_digit, Run};
use claveunica_core::primitives::seal::KeyRing;
use claveunica_core::primitives::seal::SessionKey;
use claveunica_core::protocol::session::{Identity, Session};
use claveunica_core::testkit::{self, SeqEntropy};
use hmac::{Hmac, Mac};
use sha2::Sha256;

// Logins need sockets and threads: native only. The rest also builds for wasm32-wasip1, so `core`
// can time the core compiled to Wasm (under wasmtime) as well as natively.
#[cfg(not(target_arch = "wasm32"))]
mod logins;

type Result<T> = std::result::Result<T, String>;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The session every benchmark request carries: the sandbox user's.
fn session(now: u64) -> Session {
    Session::insecure_from_parts(testkit::maria(), now, now + 8 * 3600, now)
}

fn key_ring(key_b64: &str) -> Result<KeyRing> {
    let bytes = STANDARD.decode(key_b64.trim()).map_err(|e| format!("key: {e}"))?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| "key: not 32 bytes".to_string())?;
    Ok(KeyRing::new(&[SessionKey(key)]))
}

/// Seals `session`; `serial` makes the nonce unique among the cookies one run mints.
fn seal(ring: &KeyRing, session: &Session, now: u64, serial: u64) -> Result<String> {
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&now.to_le_bytes());
    nonce[8..16].copy_from_slice(&serial.to_le_bytes());
    session.seal(ring, nonce).ok_or_else(|| "seal failed".into())
}

fn sealed_cookie(key_b64: &str, now: u64) -> Result<String> {
    seal(&key_ring(key_b64)?, &session(now), now, 0)
}

/// `n` cookies of `n` different people: each RUN is distinct and valid, so the gate opens each
/// one as it would a real login's, and the RUN it sets upstream tells which cookie it opened.
fn distinct_cookies(key_b64: &str, n: u32, now: u64) -> Result<Vec<(String, String)>> {
    let ring = key_ring(key_b64)?;
    (0..n)
        .map(|i| {
            let numero = 10_000_000 + i;
            let run = Run::new(numero, check_digit(numero)).map_err(|e| e.to_string())?;
            let names = vec![format!("Persona{i}")];
            let identity = Identity::new(run, names, vec!["Prueba".into()], format!("{}", 100_000 + i))
                .map_err(|e| format!("identity: {e:?}"))?;
            let session = Session::insecure_from_parts(identity, now, now + 8 * 3600, now);
            Ok((run.plain(), format!("claveunica_session={}", seal(&ring, &session, now, u64::from(i) + 1)?)))
        })
        .collect()
}

/// The HMAC key of the HS256 variant (test-only, like the provider's RSA key).
const HS256_KEY: &[u8] = b"claveunica-gate-bench-hs256-key-not-a-secret-0123456789";

fn jwt(dir: &str, alg: &str) -> Result<String> {
    let t = now();
    let claims = serde_json::json!({
        "iss": "https://accounts.claveunica.gob.cl/openid", "aud": "demo-client", "sub": "2594",
        "run": "44444444-4", "iat": t, "exp": t + 8 * 3600,
    });
    let (jwks, token) = match alg {
        "rs256" => {
            let key = testkit::provider_key();
            let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "bench"});
            (testkit::jwks(&[("bench", &key)]), testkit::sign_rs256(&header, &claims, &key))
        }
        "hs256" => {
            let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": "bench"});
            let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
            let input = format!("{}.{}", b64(&header), b64(&claims));
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(HS256_KEY).map_err(|e| e.to_string())?;
            mac.update(input.as_bytes());
            let jwks = serde_json::json!({"keys": [{
                "kty": "oct", "alg": "HS256", "kid": "bench", "k": URL_SAFE_NO_PAD.encode(HS256_KEY),
            }]});
            (jwks.to_string(), format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())))
        }
        other => return Err(format!("jwt: unknown algorithm {other} (rs256 or hs256)")),
    };
    std::fs::write(format!("{dir}/jwks-{alg}.json"), jwks).map_err(|e| format!("jwks-{alg}.json: {e}"))?;
    Ok(token)
}

/// Runs `f` `n` times and returns nanoseconds per run.
fn time(n: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

fn core(n: u32) -> Result<()> {
    let key = STANDARD.encode(core::array::from_fn::<u8, 32, _>(|i| i as u8 * 7 + 1));
    let config = serde_json::json!({
        "issuer": "https://accounts.claveunica.gob.cl/openid", "cluster": "claveunica",
        "client_id": "demo-client", "client_secret": "demo-secret",
        "redirect_uri": "http://127.0.0.1:8000/claveunica/callback", "session_keys": [key],
    });
    let document = config.to_string();
    let config = Config::from_json(document.as_bytes(), &|_| None).map_err(|e| e.to_string())?;
    // What a host that makes an instance per request (wasmtime serve, Unit) pays before each.
    let configure = time(n / 100 + 1, || {
        if let Ok(c) = Config::from_json(document.as_bytes(), &|_| None) {
            std::hint::black_box(Gate::new(c));
        }
    });
    let gate = Gate::new(config);
    let t = now();
    let cookie = format!("claveunica_session={}; JSESSIONID=abc123; theme=dark", sealed_cookie(&key, t)?);
    let base = vec![
        (":authority", "127.0.0.1:8000"),
        (":path", "/private"),
        (":method", "GET"),
        (":scheme", "http"),
        ("user-agent", "wrk"),
        ("accept", "text/html"),
        ("x-claveunica-run", "11111111-1"),
        ("X_CLAVEUNICA_NOMBRES", "forged"),
    ];
    let mut authed = base.clone();
    authed.push(("cookie", &cookie));
    let mut rng = SeqEntropy(0);
    let mut check = |headers: &[(&str, &str)], want_identity: bool| {
        let d = gate.on_request(&Request { method: "GET", path: "/private", headers }, t, &mut rng);
        match d {
            Decision::Forward(f) if want_identity && f.set.len() == 5 => Ok(()),
            Decision::Respond(r) if !want_identity && r.status == 302 => Ok(()),
            other => Err(format!("unexpected decision: {other:?}")),
        }
    };
    check(&authed, true)?;
    check(&base, false)?;
    let mut rng = SeqEntropy(0);
    let strip = time(n, || {
        for (name, _) in &authed {
            std::hint::black_box(gate.is_identity_header(name));
        }
    });
    let a = time(n, || {
        let r = Request { method: "GET", path: "/private", headers: &authed };
        let _ = std::hint::black_box(gate.on_request(&r, t, &mut rng));
    });
    let u = time(n, || {
        let r = Request { method: "GET", path: "/private", headers: &base };
        let _ = std::hint::black_box(gate.on_request(&r, t, &mut rng));
    });
    // More people than the cache of opened sessions keeps, in turn: every request opens its
    // cookie, as variant 3c makes the gate in Envoy do.
    let distinct: Vec<Vec<(&str, &str)>> = {
        let people = distinct_cookies(&key, 1_200, t)?;
        let people: Vec<String> = people.into_iter().map(|(_, c)| c).collect();
        let people: &'static [String] = people.leak();
        people
            .iter()
            .map(|c| {
                let mut h = base.clone();
                h.push(("cookie", c.as_str()));
                h
            })
            .collect()
    };
    for h in &distinct {
        check(h, true)?;
    }
    let mut turn = 0usize;
    let d = time(n, || {
        turn = (turn + 1) % distinct.len();
        if let Some(h) = distinct.get(turn) {
            let r = Request { method: "GET", path: "/private", headers: h };
            let _ = std::hint::black_box(gate.on_request(&r, t, &mut rng));
        }
    });
    println!("core_configure_ns {configure:.0}");
    println!("core_strip_ns {strip:.0}");
    println!("core_authenticated_ns {a:.0}");
    println!("core_unauthenticated_ns {u:.0}");
    println!("core_distinct_ns {d:.0}");
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or_else(|| format!("missing argument {i}"));
    let num = |i: usize| arg(i)?.parse::<usize>().map_err(|e| format!("argument {i}: {e}"));
    match arg(1)? {
        "cookie" => println!("claveunica_session={}", sealed_cookie(arg(2)?, now())?),
        "cookies" => {
            let n = u32::try_from(num(3)?).map_err(|e| e.to_string())?;
            for (run, cookie) in distinct_cookies(arg(2)?, n, now())? {
                println!("{run}\t{cookie}");
            }
        }
        "jwt" => println!("{}", jwt(arg(2)?, args.get(3).map_or("rs256", String::as_str))?),
        #[cfg(not(target_arch = "wasm32"))]
        "logins" => logins::logins(arg(2)?, num(3)?, num(4)?)?,
        "core" => core(u32::try_from(num(2)?).map_err(|e| e.to_string())?)?,
        other => return Err(format!("unknown command {other}; see benches/README.md")),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
