#![no_main]
//! Feeds `Gate::on_request` a `GET /claveunica/callback?<query>` on a gate built from the fixed
//! valid configuration: the first line of the input is the query, the next lines (up to a
//! `--` line) are `Cookie` header values, and what follows `--` is the token endpoint's answer,
//! used if the gate goes on to call it. Later calls (JWKS, userinfo) fail.
//! Pass: no panic; the callback is never forwarded; a refusal is a 400, 401 or 500 that sets
//! no cookie (it only clears); the gate calls the token endpoint only when the query holds
//! one `state` whose genuine flow cookie this browser sent; no session is ever made.
//! Each input gets a gate of its own: a gate spends an attempt at its first token call, so a
//! shared one would refuse every later input's genuine flow before the token answer is read.

use claveunica_core::gate::{CallOutcome, Decision, Gate, Request};
use claveunica_core::protocol::flow::Flow;
use claveunica_core::web::cookies;
use claveunica_gate_fuzz::{gates, is_genuine_flow, key_cache, ring, SeqEntropy, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let gate = &Gate::new(gates()[0].config().clone());
    let config = gate.config();
    let text = String::from_utf8_lossy(data);
    let (request, token_answer) = text.split_once("\n--\n").unwrap_or((&text, ""));
    let (query, jar) = request.split_once('\n').unwrap_or((request, ""));
    let headers: Vec<(&str, &str)> = jar.split('\n').map(|v| ("cookie", v)).collect();
    let path = format!("{}?{query}", config.callback_path);
    let req = Request { method: "GET", path: &path, headers: &headers };
    let mut rng = SeqEntropy(0);

    match gate.on_request(&req, NOW, &mut rng) {
        Decision::Forward(f) => panic!("the callback was forwarded: {f:?}"),
        Decision::Respond(r) => {
            assert!([400, 401, 500].contains(&r.status), "callback answered {}", r.status);
            for (name, value) in &r.headers {
                if name.eq_ignore_ascii_case("set-cookie") {
                    assert!(value.contains("Max-Age=0"), "a refused callback sets a cookie: {value}");
                }
            }
        }
        Decision::Call(call) => {
            // Only a genuine attempt of this browser goes on: one state, its genuine cookie.
            let states: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
                .filter(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
                .collect();
            assert_eq!(states.len(), 1, "a call without exactly one state");
            let jar: Vec<(&str, &str)> = cookies::pairs(jar.split('\n')).collect();
            let lookup = |name: &str| jar.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
            let prefix = &config.flow.cookie_prefix;
            assert!(Flow::resume(ring(), prefix, &states[0], lookup, NOW, config.flow.max_age_s).is_ok());
            let cookie = claveunica_core::protocol::flow::cookie_name_for(prefix, &states[0]).and_then(|n| lookup(&n));
            assert!(cookie.is_some_and(is_genuine_flow), "a call on a forged flow cookie");
            assert_eq!(
                (call.request.method, call.request.path.as_str()),
                ("POST", config.endpoints.token.path.as_str())
            );

            // Go on with the fuzzed token answer; JWKS and userinfo calls then fail.
            let mut keys = key_cache();
            let answer = CallOutcome::Answered { status: 200, body: token_answer.as_bytes() };
            let mut decision = gate.on_call_response(call.pending, answer, NOW, &mut rng, &mut keys);
            for _ in 0..4 {
                match decision {
                    Decision::Call(call) => {
                        decision = gate.on_call_response(call.pending, CallOutcome::Failed, NOW, &mut rng, &mut keys)
                    }
                    _ => break,
                }
            }
            match decision {
                Decision::Respond(r) => {
                    let session = format!("{}=", config.session.cookie_name);
                    for (name, value) in &r.headers {
                        let made = value.strip_prefix(&session).is_some_and(|v| !v.starts_with(';'));
                        assert!(!(name.eq_ignore_ascii_case("set-cookie") && made), "a session was made: {value}");
                    }
                }
                other => panic!("a login ended in {other:?}"),
            }
        }
    }
});
