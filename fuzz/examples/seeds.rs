//! Writes the seed corpus, `fuzz/corpus/<target>/`: small realistic inputs for every target,
//! including genuine sealed cookies and signed ID tokens made with the fixed test keys of
//! `claveunica_gate_fuzz`, and the inputs fuzzing found. Deterministic: running it again
//! rewrites the same files, and `--check` (which `run.sh` runs) fails when the committed corpus
//! is not what it would write, so a seed changed by hand or left stale by a change of format is
//! caught.
//!
//!     cd fuzz && cargo run --example seeds [-- --check]

use std::fs;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use claveunica_core::protocol::oidc::jwks::SharedJwks;
use claveunica_core::testkit::b64json;
use claveunica_gate_fuzz::{
    config_variants, genuine_flows, genuine_id_tokens, genuine_sessions, jwks_json, KID, NOW, OLD_SESSION_KEY,
};
use serde_json::{json, Value};

type Seeds = Vec<(String, Vec<u8>)>;
type Target = (&'static str, fn() -> Seeds);

fn seed(name: &str, body: impl AsRef<[u8]>) -> (String, Vec<u8>) {
    (name.to_string(), body.as_ref().to_vec())
}

/// A token shaped like the provider's but not signed by it.
fn forged_token(alg: &str, kid: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let claims = json!({"iss": "https://accounts.claveunica.gob.cl/openid", "sub": "2594", "aud": "cid",
        "iat": NOW - 5, "exp": NOW + 595, "nonce": "x"});
    format!("{}.{}.{}", b64json(&header), b64json(&claims), URL_SAFE_NO_PAD.encode([7u8; 256]))
}

fn token(name: &str) -> String {
    genuine_id_tokens().iter().find(|(n, _)| *n == name).map(|(_, t)| t.clone()).unwrap_or_default()
}

fn session(name: &str) -> String {
    genuine_sessions().iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default()
}

const FLOW_PREFIX: &str = "__Host-claveunica_flow_";

fn session_cookie() -> Seeds {
    let mut seeds: Seeds = genuine_sessions().iter().map(|(n, v)| seed(&format!("genuine-{n}"), v)).collect();
    let fresh = session("fresh");
    seeds.push(seed("truncated", &fresh[..fresh.len() / 2]));
    seeds.push(seed("foreign-key", URL_SAFE_NO_PAD.encode([1u8; 80])));
    seeds.push(seed("not-base64", "q83vEjRWeJCr ze8SNFZ4kKvN7xI0VniQ=="));
    seeds.push(seed("empty", ""));
    seeds
}

fn flow_cookie() -> Seeds {
    let flows = genuine_flows();
    let mut seeds: Seeds = flows
        .iter()
        .map(|f| {
            let jar = format!("{}={}; PHPSESSID=abc", f.flow.cookie_name(FLOW_PREFIX), f.value);
            seed(&format!("genuine-{}", f.name), format!("{}\n{jar}", f.flow.state()))
        })
        .collect();
    if let [a, b, ..] = flows {
        let tabs = format!(
            "{}\n{}={}\n{}={}",
            b.flow.state(),
            a.flow.cookie_name(FLOW_PREFIX),
            a.value,
            b.flow.cookie_name(FLOW_PREFIX),
            b.value
        );
        seeds.push(seed("two-tabs", tabs));
        let swapped = format!("{}\n{}={}", b.flow.state(), b.flow.cookie_name(FLOW_PREFIX), a.value);
        seeds.push(seed("swapped-value", swapped));
    }
    seeds.push(seed("short-state", "abc\n__Host-claveunica_flow_abc=x"));
    seeds.push(seed("no-cookie", "ERERERERERERERERERERERERERERERERERERERERERE\n"));
    seeds
}

fn callback_query() -> Seeds {
    let flows = genuine_flows();
    let Some(f) = flows.first() else { return Vec::new() };
    let jar = format!("{}={}; PHPSESSID=abc", f.flow.cookie_name(FLOW_PREFIX), f.value);
    let state = f.flow.state();
    let answer = |id_token: &str| {
        json!({"access_token": "at-123", "token_type": "Bearer", "expires_in": 3600, "id_token": id_token}).to_string()
    };
    let mut seeds = vec![
        seed(
            "code-and-state",
            format!("code=abc123&state={state}\n{jar}\n--\n{}", answer(&forged_token("RS256", KID))),
        ),
        seed("unknown-kid", format!("code=abc123&state={state}\n{jar}\n--\n{}", answer(&forged_token("RS256", "k2")))),
        seed("hs256", format!("code=abc123&state={state}\n{jar}\n--\n{}", answer(&forged_token("HS256", KID)))),
        seed("invalid-grant", format!("code=abc123&state={state}\n{jar}\n--\n{{\"error\":\"invalid_grant\"}}")),
        seed("access-denied", format!("error=access_denied&state={state}\n{jar}")),
        seed("no-code", format!("state={state}\n{jar}")),
        seed("repeated-state", format!("code=a&state={state}&state={state}\n{jar}")),
        seed("no-flow-cookie", format!("code=abc123&state={state}\nPHPSESSID=abc")),
        seed("no-state", "code=abc123\n"),
        seed("short-state", "code=abc123&state=xyz\n"),
    ];
    if let Some(expired) = flows.iter().find(|f| f.name == "expired") {
        let jar = format!("{}={}", expired.flow.cookie_name(FLOW_PREFIX), expired.value);
        seeds.push(seed("expired-flow", format!("code=abc&state={}\n{jar}", expired.flow.state())));
    }
    seeds
}

fn jwt() -> Seeds {
    let mut seeds: Seeds = genuine_id_tokens().iter().map(|(n, t)| seed(&format!("genuine-{n}"), t)).collect();
    let claims = json!({"iss": "https://accounts.claveunica.gob.cl/openid", "aud": "cid", "exp": NOW + 60});
    seeds.push(seed("alg-none", format!("{}.{}.", b64json(&json!({"alg": "none", "kid": KID})), b64json(&claims))));
    seeds.push(seed("hs256", forged_token("HS256", KID)));
    seeds.push(seed("bad-signature", forged_token("RS256", KID)));
    seeds.push(seed("unknown-kid", forged_token("RS256", "k2")));
    seeds
        .push(seed("at-jwt", format!("{}.{}.x", b64json(&json!({"alg": "RS256", "typ": "at+jwt"})), b64json(&claims))));
    seeds.push(seed("crit", format!("{}.{}.x", b64json(&json!({"alg": "RS256", "crit": ["b64"]})), b64json(&claims))));
    seeds
}

fn jwks() -> Seeds {
    let doc = jwks_json();
    let key: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
    let rsa = key["keys"][0].clone();
    let mixed = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec1", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa["n"], "e": rsa["e"]},
        {"kty": "RSA", "kid": "short", "alg": "RS256", "n": "AQAB", "e": "AQAB"},
        rsa,
    ]});
    let shared = SharedJwks {
        keys_version: NOW,
        body: Some(doc.clone()),
        last_attempt: NOW,
        failures: 0,
        lease_until: 0,
        kid_fetch_at: 0,
    };
    let failing = SharedJwks { failures: 3, lease_until: NOW + 30, ..shared.clone() };
    vec![
        seed("provider", &doc),
        seed("mixed-keys", mixed.to_string()),
        seed("empty-keys", r#"{"keys":[]}"#),
        seed("not-a-set", r#"{"kty":"RSA"}"#),
        seed("shared-state", shared.encode()),
        seed("shared-failing", failing.encode()),
    ]
}

fn userinfo() -> Seeds {
    vec![
        seed(
            "manual",
            r#"{"sub":"2594","RolUnico":{"DV":"4","numero":44444444,"tipo":"RUN"},"name":{"apellidos":["De los Ríos","Núñez"],"nombres":["María","Carmen"]}}"#,
        ),
        seed(
            "numero-string-k",
            r#"{"sub":1234,"RolUnico":{"DV":"k","numero":"12667869","tipo":"RUN"},"name":{"nombres":["A"],"apellidos":["B"]}}"#,
        ),
        seed("wrong-dv", r#"{"sub":"1","RolUnico":{"DV":"5","numero":44444444,"tipo":"RUN"}}"#),
        seed("pasaporte", r#"{"sub":"1","RolUnico":{"DV":"4","numero":44444444,"tipo":"PASAPORTE"}}"#),
        seed("no-name", r#"{"sub":"9","RolUnico":{"DV":"9","numero":99999999,"tipo":"RUN"}}"#),
    ]
}

fn token_response() -> Seeds {
    let ok = |id: &str| {
        json!({"access_token": "c5b3a7e2-at", "token_type": "bearer", "expires_in": 3600, "id_token": id}).to_string()
    };
    vec![
        seed("ok", format!("0{}", ok(&token("valid")))),
        seed("ok-forged", format!("0{}", ok(&forged_token("HS256", KID)))),
        seed("invalid-grant", r#"1{"error":"invalid_grant","error_description":"Invalid code"}"#),
        seed("invalid-client", r#"2{"error":"invalid_client"}"#),
        seed("server-error", "4<html>500</html>"),
        seed("mac-token", r#"0{"access_token":"x","token_type":"mac","id_token":"a.b.c"}"#),
        seed("no-id-token", r#"0{"access_token":"x","token_type":"Bearer"}"#),
    ]
}

fn config() -> Seeds {
    let mut seeds: Seeds =
        config_variants().iter().enumerate().map(|(i, v)| seed(&format!("variant-{i}.json"), v.to_string())).collect();
    let env = json!({
        "issuer": "https://accounts.claveunica.gob.cl/openid",
        "cluster": "claveunica",
        "client_id": "cid",
        "client_secret_env": "CLAVEUNICA_CLIENT_SECRET",
        "redirect_uri": "https://portal.test/claveunica/callback",
        "session_keys_env": "CLAVEUNICA_SESSION_KEYS",
        "login_path": "/ingresar",
        "logout_path": "/salir",
        "flow": {"max_age_s": 300},
        "timeout_ms": 3000,
        "clock_leeway_s": 30,
        "jwks_refresh_s": 600,
        "logout_response_header": "x-app-logout",
        "allowed_runs": ["44.444.444-4", "55555555-5"],
    });
    seeds.push(seed("env.json", env.to_string()));
    let bad = json!({"issuer": "ftp://x", "client_secret": "a", "client_secret_env": "B",
        "session_keys": ["c2hvcnQ="], "rules": [{"regex": "(", "action": "public"}], "bogus": 1});
    seeds.push(seed("bad.json", bad.to_string()));
    seeds.push(seed("emulator.json", {
        let mut v = config_variants().first().cloned().unwrap_or(Value::Null);
        v["issuer"] = json!("http://127.0.0.1:8900/openid");
        v["session_keys"] = json!([OLD_SESSION_KEY]);
        v.to_string()
    }));
    // Inputs fuzzing found, kept byte for byte: each took an escaped issuer host to a debug
    // assertion in the IDNA adapter, before the configuration reader refused such URLs itself.
    seeds.push(seed("escaped-upper-case-host.json", FOUND_ESCAPED_HOST));
    seeds.push(seed("scheme-without-slashes-escaped-host.json", FOUND_SCHEME_WITHOUT_SLASHES));
    seeds
}

const FOUND_ESCAPED_HOST: &str = r#"{"client_id":"cid","client_secret":"s3cret","cluster":"claveunica","issuer":"https://accountsEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE%EEEEEEEEEEEEEeElv.acEunica.gob.cl/openid","migration":{"canary_percent":50,"legacy_cookies":["PHPSESSID"],"mode":"canary"},"post_logout_pedirect":"https://portal.test/","redirect_uri":"https://portal.test/claveunica/callback","rules":[{"action":"public","prefix(":"/static/"},{"action":"optional","exact":"/"},{"action":"public","m[thods":["GET"],"regex":"/api/v[0-9]+/health"}],"session":{"idle_timeout_s":1800,"max_age_s":28800},"session_keys":["q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=","AQIDBAUGBwgJCgskMDQ4PEBESExQVFhcYGRobHB0eHyA="]}"#;
const FOUND_SCHEME_WITHOUT_SLASHES: &str = r#"{"client_id":"cid","client[secret":"s3cret","cluster":"claveunica","issuer":"https:logout_pathEEEEEEEEEEEEEEEEEEEEEEUEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE%EEEEEEEEEEEEEeElv.acEunica.gob.cl/openid","migration":{"canary_percent":50,"legacy_cookies":["PHPSESSID"],"mode":"canary"},"post_logout_pedirect":"https://portal.test/","redirect_uri":"https://portal.test/claveunica/callbackssss","rules":[{"action":"public","prefix(":"/static/"},{"action":"optoinal","exact":"/"},{"action":"public","m[thods":["GET"],"regex":"/api/v[0-9]+/health"}],"session":{"idle_timeout_s":1800,"max_age_s":28800},"session_keys":["q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=","AQIDBAUGBwgJCgskMDQ4PEBESExQVFhcYGRobHB0eHyA="]}"#;

fn cookie_header() -> Seeds {
    vec![
        seed("gate-and-app", "__Host-claveunica_session=abc; PHPSESSID=xyz; theme=dark\nlang=es"),
        seed("flows", "__Host-claveunica_flow_AAAAAAAAAAAA=v1;__Host-claveunica_flow_BBBBBBBBBBBB=v2; a"),
        seed("malformed", "a=b;;c; =d; e==f ;\t__Host-claveunica_canary=1"),
        seed("paths", "/tramites?id=7\n//evil.com\n/%2F%2Fevil\n/\\evil\n/ /evil\n/static/../admin\n/a%20b"),
        seed(
            "api-headers",
            "accept: application/json, text/html;q=0.9\nsec-fetch-mode: cors\nx-requested-with: XMLHttpRequest",
        ),
    ]
}

fn request() -> Seeds {
    let fresh = session("fresh");
    let s = |gate: u8, lines: &str| {
        let mut v = vec![gate];
        v.extend_from_slice(lines.as_bytes());
        v
    };
    let mut seeds = vec![
        ("anonymous".to_string(), s(0, "GET /tramites\naccept: text/html\nsec-fetch-mode: navigate")),
        ("static".into(), s(0, "GET /static/app.css")),
        ("health".into(), s(0, "GET /api/v1/health")),
        (
            "xhr".into(),
            s(0, "POST /api/datos\nx-requested-with: XMLHttpRequest\ncookie: __Host-claveunica_session=junk"),
        ),
        ("login".into(), s(0, "GET /claveunica/login?return_to=%2Ftramites%3Fid%3D7")),
        ("optional-root".into(), s(0, "GET /\ncookie: theme=dark")),
        ("parallel-legacy".into(), s(1, "GET /app\ncookie: PHPSESSID=abc")),
        ("canary-new".into(), s(2, "GET /app\naccept: text/html")),
        ("canary-chosen".into(), s(2, "GET /app\ncookie: __Host-claveunica_canary=1")),
        ("report-only".into(), s(3, "DELETE /admin/x")),
    ];
    for (name, value) in genuine_sessions() {
        let cookie = format!("cookie: a=1; __Host-claveunica_session={value}; __Host-claveunica_flow_x=y");
        seeds.push((format!("session-{name}"), s(0, &format!("GET /tramites?id=7\n{cookie}\nX-ClaveUnica-Run: 1-9"))));
    }
    let http = format!("cookie: claveunica_session={fresh}; PHPSESSID=abc");
    seeds.push(("forbidden".into(), s(3, &format!("GET /\n{http}"))));
    seeds.push(("logout".into(), s(0, &format!("GET /claveunica/logout\ncookie: __Host-claveunica_session={fresh}"))));
    seeds.push(("optional-session".into(), s(1, &format!("GET /\ncookie: __Host-claveunica_session={fresh}"))));
    // Forged identity in other spellings: on an anonymous request, and on the report-only
    // gate, whose custom names replace the defaults (which it strips all the same).
    seeds.push((
        "forged-anonymous".into(),
        s(0, "GET /\nX_ClaveUnica_Run: 1-9\nx-claveunica-nombres: A\nx-claveunica_dv: 9"),
    ));
    let forged =
        format!("GET /app\ncookie: claveunica_session={fresh}\nX_Rut: 1-9\nx-nombre: A\nx-claveunica-run: 1-9");
    seeds.push(("forged-custom".into(), s(3, &forged)));
    seeds
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let targets: [Target; 10] = [
        ("session_cookie", session_cookie),
        ("flow_cookie", flow_cookie),
        ("callback_query", callback_query),
        ("jwt", jwt),
        ("jwks", jwks),
        ("userinfo", userinfo),
        ("token_response", token_response),
        ("config", config),
        ("cookie_header", cookie_header),
        ("request", request),
    ];
    let mut stale = Vec::new();
    for (target, make) in targets {
        let dir = root.join(target);
        let seeds = make();
        if check {
            stale.extend(differences(&dir, &seeds)?.into_iter().map(|d| format!("{target}/{d}")));
            continue;
        }
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(&dir)?;
        for (name, body) in &seeds {
            fs::write(dir.join(name), body)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    if stale.is_empty() {
        if check {
            println!("seeds: fuzz/corpus/ is what this generator writes");
        }
        return Ok(());
    }
    for d in &stale {
        eprintln!("seeds: fuzz/corpus/{d}");
    }
    eprintln!("seeds: the committed corpus is not what the generator writes; run `cargo run --example seeds` in fuzz/");
    std::process::exit(1);
}

/// What differs between `dir` and the seeds the generator would write there: a file it would
/// write differently or not at all, and a file it would not write.
fn differences(dir: &Path, seeds: &Seeds) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    for (name, body) in seeds {
        match fs::read(dir.join(name)) {
            Ok(on_disk) if on_disk == *body => {}
            Ok(_) => found.push(format!("{name}: differs")),
            Err(_) => found.push(format!("{name}: missing")),
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if !seeds.iter().any(|(n, _)| *n == name) {
                found.push(format!("{name}: not written by the generator"));
            }
        }
    }
    Ok(found)
}
