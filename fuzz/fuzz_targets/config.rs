#![no_main]
//! Feeds arbitrary bytes, as the configuration document, to `Config::from_json` with an
//! environment that knows `CLAVEUNICA_CLIENT_SECRET` and `CLAVEUNICA_SESSION_KEYS`. An
//! accepted configuration then builds a `Gate`, which answers a few requests (`/`, a static
//! file, its callback, login and logout paths) at the host of its first site's callback.
//! Pass: no panic; parsing is deterministic (the same document gives the same verdict and the
//! same error message twice); a refusal names at least one problem; the gate's own paths are
//! answered, never forwarded.

use claveunica_core::config::Config;
use claveunica_core::gate::{Decision, Gate, Request};
use claveunica_gate_fuzz::{env, SeqEntropy, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = |name: &str| env(name);
    match (Config::from_json(data, &env), Config::from_json(data, &env)) {
        (Ok(a), Ok(b)) => {
            let key =
                |c: &Config| (c.issuer.clone(), c.client_id.clone(), c.redirect_uri.clone(), c.callback_path.clone());
            assert_eq!(key(&a), key(&b));
            assert_eq!((a.rules.len(), &a.session.cookie_name), (b.rules.len(), &b.session.cookie_name));
            assert!(!a.session_keys.is_empty(), "a configuration without session keys");
            let authority = url::Url::parse(&a.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_string));
            let own = [
                format!("{}?state=x&code=y", a.callback_path),
                format!("{}?return_to=/x", a.login_path),
                a.logout_path.clone(),
            ];
            let gate = Gate::new(a);
            let mut headers = vec![("cookie", "a=b")];
            headers.extend(authority.as_deref().map(|host| (":authority", host)));
            for path in ["/", "/static/app.css"].into_iter().map(String::from).chain(own.iter().cloned()) {
                let req = Request { method: "GET", path: &path, headers: &headers };
                let decision = gate.on_request(&req, NOW, &mut SeqEntropy(0));
                if own.contains(&path) {
                    assert!(!matches!(decision, Decision::Forward(_)), "{path} was forwarded");
                }
            }
        }
        (Err(a), Err(b)) => {
            let message = a.to_string();
            assert_eq!(message, b.to_string(), "two loads refuse differently");
            assert!(!message.is_empty());
        }
        (a, b) => panic!("two loads disagree: {:?} / {:?}", a.is_ok(), b.is_ok()),
    }
});
