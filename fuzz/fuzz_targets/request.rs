#![no_main]
//! Drives `Gate::on_request` with an arbitrary request on one of five fixed gates (enforce,
//! parallel, canary, report-only with a pilot list, two sites chosen by host): the first byte
//! picks the gate, the first
//! line of the rest is `METHOD PATH`, the other lines are `name: value` headers.
//! The request goes in whole, forged identity headers included: their removal is part of the
//! decision under test.
//! Pass: no panic; identity headers go upstream only with a genuine sealed session cookie
//! (the fuzzer cannot forge one, so a forwarded request without one carries none), and only
//! the configured names; every client header that spells an identity name (any case, `_` for
//! `-`; the names are the target's own list, `identity_names`, not the gate's answer) is
//! removed or replaced by the verified one, and nothing else is removed; the gate's cookies
//! never reach the application; the gate's own paths (callback, login, logout) are answered,
//! never forwarded; no answer sets a session cookie; no call is made outside the callback.
//! The gates are shared by every input, so their cache of opened sessions is exercised too.

use claveunica_core::gate::{CookieHeader, Decision, Request};
use claveunica_core::web::cookies;
use claveunica_gate_fuzz::{gates, identity_names, is_genuine_session, spells, SeqEntropy, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((pick, rest)) = data.split_first() else { return };
    let index = usize::from(*pick) % gates().len();
    let gate = &gates()[index];
    let ids = identity_names(index);
    let is_identity = |name: &str| ids.iter().any(|id| spells(name, id));
    let config = gate.config();
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let line = lines.next().unwrap_or("");
    let (method, path) = line.split_once(' ').unwrap_or(("GET", line));
    let headers: Vec<(&str, &str)> =
        lines.map(|l| l.split_once(':').unwrap_or((l, ""))).map(|(n, v)| (n, v.trim_start())).collect();
    let req = Request { method, path, headers: &headers };

    let session_name = &config.session.cookie_name;
    let cookie_values = || headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("cookie")).map(|(_, v)| *v);
    let canary = format!("{}claveunica_canary", if config.secure_cookies { "__Host-" } else { "" });
    let is_ours = |n: &str| n == session_name || n.starts_with(&config.flow.cookie_prefix) || n == canary;
    let bare_path = path.split_once('?').map_or(path, |(p, _)| p);
    let own_path = [&config.callback_path, &config.login_path, &config.logout_path].contains(&&bare_path.to_string());

    match gate.on_request(&req, NOW, &mut SeqEntropy(*pick)) {
        Decision::Forward(f) => {
            assert!(!own_path, "the gate's own path {bare_path:?} was forwarded");
            if !f.set.is_empty() {
                let genuine = cookies::pairs(cookie_values()).any(|(n, v)| n == session_name && is_genuine_session(v));
                assert!(genuine, "identity forwarded without a genuine session: {:?}", f.set);
            }
            for (name, _) in &f.set[..] {
                assert!(ids.contains(&name.as_str()), "{name:?} set though it is not a configured identity name");
            }
            for (name, _) in &headers {
                if is_identity(name) {
                    let removed = f.remove.iter().any(|r| r.eq_ignore_ascii_case(name));
                    let replaced = f.set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
                    assert!(removed || replaced, "forged {name:?} would reach the application: {f:?}");
                }
            }
            for name in &f.remove {
                assert!(is_identity(name), "{name:?} removed though it is not an identity name");
                assert!(headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)), "{name:?} removed though not sent");
            }
            match &f.cookie {
                CookieHeader::Replace(rest) => {
                    assert!(!rest.is_empty());
                    assert!(cookies::pairs([rest.as_str()]).all(|(n, _)| !is_ours(n)), "our cookie upstream: {rest}");
                }
                CookieHeader::Unchanged => {
                    assert!(cookies::pairs(cookie_values()).all(|(n, _)| !is_ours(n)), "our cookie left upstream");
                }
                CookieHeader::Remove => {}
            }
            for set in f.upstream.set_cookies() {
                if set.starts_with(&format!("{session_name}=")) && !set.starts_with(&format!("{session_name}=;")) {
                    assert!(!f.set.is_empty(), "a session cookie set on an anonymous request: {set}");
                }
            }
        }
        Decision::Respond(r) => {
            for (name, value) in &r.headers {
                let made = value.strip_prefix(&format!("{session_name}=")).is_some_and(|v| !v.starts_with(';'));
                assert!(!(name.eq_ignore_ascii_case("set-cookie") && made), "an answer sets a session: {value}");
            }
        }
        Decision::Call(call) => {
            assert_eq!(bare_path, config.callback_path, "a call outside the callback: {call:?}");
        }
    }
});
