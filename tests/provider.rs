#![cfg(not(target_arch = "wasm32"))]
//! The gate against ClaveÚnica's own behaviours, as the emulator plays them
//! (`docs/claveunica.md`): its one-minute single sign-on, its logout that sends the browser
//! back only to the authority of a registered Logout URI (204 otherwise), its exact comparison of
//! `redirect_uri` with the registered one, and the page a client whose credentials are not
//! enabled gets. Each is something an agency meets at certification or on its first day in
//! production; the gate must behave right in front of each. On both hosts.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test provider
//! ```

#[macro_use]
mod support;

use serde_json::{json, Value};
use support::checks::{assert_identified, start_gate, GateUnderTest, Host};
use support::client::PROVIDER_SSO_COOKIE;
use support::{logged_in, param, with_param, CALLBACK_PATH, LOGOUT_PATH, PASSWORD, RUN, SESSION_COOKIE};

on_both_hosts! {
    within_the_provider_minute_a_login_skips_the_form_and_the_gate_logout_ends_it,
    the_provider_logout_returns_only_to_a_registered_logout_uri,
    a_redirect_uri_other_than_the_registered_one_stops_at_the_provider,
    a_disabled_client_stops_at_the_provider_and_opens_no_session,
}

/// Where the gate sends the browser after logout, on its own address (registered as the
/// Logout URI by the test stacks).
const GOODBYE_PATH: &str = "/adios";

/// The `href`s of a page, in order, with `&amp;` undone.
fn hrefs(body: &str) -> Vec<String> {
    body.split("href=\"").skip(1).filter_map(|rest| rest.split('"').next()).map(|h| h.replace("&amp;", "&")).collect()
}

/// The gate's logout page's link to ClaveÚnica's logout.
fn provider_logout_link(gate: &dyn GateUnderTest, body: &str) -> String {
    let logout = format!("{}/api/v1/accounts/app/logout", gate.provider());
    let link = hrefs(body).into_iter().find(|h| h.starts_with(&logout));
    link.unwrap_or_else(|| panic!("the logout page has no link to {logout}: {body}"))
}

/// ClaveÚnica keeps its own session for a minute after a login: a browser the gate sends there
/// again within it (the gate's session gone, e.g. a new gate cookie jar) comes straight back
/// with a code for the same person, no form; the gate completes that login like any other (the
/// callback carries the new attempt's `state`). The gate's logout page takes the browser
/// through ClaveÚnica's logout, which ends that session: the next login shows the form again,
/// so whoever sits down next at a shared computer is not logged in as the previous person.
/// The same request without ClaveÚnica's cookie shows the form (the positive control).
fn within_the_provider_minute_a_login_skips_the_form_and_the_gate_logout_ends_it(host: Host) {
    let gate = start_gate(host, &[]);
    let mut first = gate.browser();
    let authorize = first.start_login("/private?format=json");
    let (callback, sso) = first.provider_login_keeping_sso(&authorize, RUN, PASSWORD);
    let r = first.callback(&callback);
    assert_eq!((r.status, r.location()), (302, "/private?format=json"), "{r:?}\n{}", gate.log());

    let mut second = gate.browser();
    let again = second.start_login("/private?format=json");
    let form = second.get_url(&again.url);
    assert_eq!(form.status, 200, "without ClaveÚnica's cookie, its form: {form:?}");
    let skipped = second.get_url_with_headers(&again.url, &[("Cookie", &sso)]);
    assert_eq!(skipped.status, 302, "ClaveÚnica showed its form within its minute: {skipped:?}");
    let back = skipped.location().to_string();
    assert!(back.starts_with(&format!("{}{CALLBACK_PATH}?", gate.base())), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some(again.state.as_str()), "{back}");
    let r = second.callback(&back);
    assert_eq!((r.status, r.location()), (302, "/private?format=json"), "{r:?}\n{}", gate.log());
    assert_identified(&second.get("/private?format=json"));

    let page = second.get(LOGOUT_PATH);
    assert_eq!(page.status, 200, "{page:?}");
    let out = second.get_url_with_headers(&provider_logout_link(gate.as_ref(), &page.body), &[("Cookie", &sso)]);
    assert!(
        out.set_cookie(PROVIDER_SSO_COOKIE).is_some_and(|c| c.contains("Max-Age=0")),
        "ClaveÚnica's logout did not end its session: {out:?}"
    );
    let third = second.start_login("/private");
    let r = second.get_url_with_headers(&third.url, &[("Cookie", &sso)]);
    assert_eq!(r.status, 200, "ClaveÚnica's session outlived the logout the gate sent the browser through: {r:?}");
}

/// With `post_logout_redirect` on the gate's address (registered as the Logout URI: ClaveÚnica
/// registers its authority, `host[:port]`), the link on the gate's logout page takes the browser
/// through ClaveÚnica's logout and back to it. ClaveÚnica sends the browser nowhere else: the
/// same logout asking for another address (here the app's, which an agency might configure
/// without registering it) gets a 204 with no `Location`, which is why the gate's page also
/// holds its fallback, the same goodbye page.
fn the_provider_logout_returns_only_to_a_registered_logout_uri(host: Host) {
    let gate = start_gate(
        host,
        &[|c: &mut Value| {
            let origin = c["redirect_uri"].as_str().and_then(|u| u.strip_suffix(CALLBACK_PATH)).map(str::to_string);
            c["post_logout_redirect"] = json!(format!("{}{GOODBYE_PATH}", origin.unwrap_or_default()));
        }],
    );
    let goodbye = format!("{}{GOODBYE_PATH}", gate.base());
    let mut browser = logged_in(gate.as_ref(), "/private");
    let page = browser.get(LOGOUT_PATH);
    assert_eq!(page.status, 200, "{page:?}");
    // The page's own links sit in <main>; the footer's link home follows them.
    let main = page.body.split("<main").nth(1).and_then(|m| m.split("</main>").next()).unwrap_or_default();
    assert_eq!(hrefs(main).last(), Some(&goodbye), "the fallback link: {}", page.body);
    let link = provider_logout_link(gate.as_ref(), &page.body);
    assert_eq!(param(&link, "redirect").as_deref(), Some(goodbye.as_str()), "{link}");
    let r = browser.get_url(&link);
    assert_eq!((r.status, r.location()), (302, goodbye.as_str()), "a registered Logout URI: {r:?}");

    let elsewhere = format!("{}/", gate.app());
    let r = browser.get_url(&with_param(&link, "redirect", Some(&elsewhere)));
    assert_eq!((r.status, r.header("location")), (204, None), "an address not registered: {r:?}");
}

/// A gate whose `redirect_uri` differs from the registered one by a trailing slash (the
/// commonest slip) sends the browser to ClaveÚnica, which stops it on its error page: a 400
/// that names the redirect URI and sends nothing back, so no code ever reaches a callback the
/// agency did not register. The same request with the registered value gets the login form.
fn a_redirect_uri_other_than_the_registered_one_stops_at_the_provider(host: Host) {
    let gate = start_gate(
        host,
        &[|c: &mut Value| {
            let registered = c["redirect_uri"].as_str().unwrap_or_default().to_string();
            c["redirect_uri"] = json!(format!("{registered}/"));
        }],
    );
    let registered = format!("{}{CALLBACK_PATH}", gate.base());
    let before = gate.app_requests();
    let mut browser = gate.browser();
    let authorize = browser.start_login("/private");
    assert_eq!(authorize.param("redirect_uri"), Some(format!("{registered}/").as_str()), "{}", authorize.url);
    let r = browser.get_url(&authorize.url);
    assert_eq!((r.status, r.header("location")), (400, None), "{r:?}");
    assert!(r.body.contains("redirect_uri") && r.body.contains("no está registrada"), "{}", r.body);
    let r = browser.get_url(&with_param(&authorize.url, "redirect_uri", Some(&registered)));
    assert_eq!(r.status, 200, "the registered redirect URI: {r:?}");
    assert_eq!(gate.app_requests(), before, "the app was reached");
}

/// Production credentials stay disabled until certification (the emulator's `client:
/// disabled`): ClaveÚnica shows "La institución no está habilitada en ClaveÚnica" and sends
/// nothing back, and refuses the token call for a code issued just before (`invalid_client`),
/// where the gate shows its error page, opens no session and lets nothing through to the app.
/// Enabled again, a login works (the positive control).
fn a_disabled_client_stops_at_the_provider_and_opens_no_session(host: Host) {
    let gate = start_gate(host, &[]);
    let mut browser = gate.browser();
    let authorize = browser.start_login("/private");
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let before = gate.app_requests();
    let set = gate.set_emulator_mode(&json!({"client": "disabled"}));
    assert_eq!(set["client"], "disabled", "{set}");

    let attempt = browser.start_login("/private");
    let r = browser.get_url(&attempt.url);
    assert_eq!((r.status, r.header("location")), (400, None), "{r:?}");
    assert!(r.body.contains("La institución no está habilitada en ClaveÚnica"), "{}", r.body);

    let r = browser.callback(&callback);
    assert_eq!(r.status, 502, "the token call refused: {r:?}\n{}", gate.log());
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{r:?}");
    assert!(!browser.jar.contains_key(SESSION_COOKIE), "a session opened: {:?}", browser.jar);
    assert_eq!(gate.app_requests(), before, "the app was reached");

    gate.set_emulator_mode(&json!({"client": "enabled"}));
    assert_identified(&logged_in(gate.as_ref(), "/private?format=json").get("/private?format=json"));
}
