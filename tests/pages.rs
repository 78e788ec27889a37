#![cfg(not(target_arch = "wasm32"))]
//! End to end, the pages a citizen meets before and around a login, run on both hosts (the
//! gate in a real Envoy and the NGINX Unit component under `wasmtime serve`): the page with the
//! ClaveÚnica button (`pages.button_page`) in front of protected pages and at the login path,
//! a login asked for inside a frame, and the agency every page names. What each page looks like
//! in a real browser (axe-core, screenshots) is in `tests/browser/`.
//!
//! Run with:
//! ```text
//! cargo build --release --target wasm32-wasip1 && \
//! cargo build --release --target wasm32-wasip2 -p claveunica-gate-unit && \
//! cargo build --release -p claveunica-emulator -p legacy-app && \
//! cargo test --test pages
//! ```

#[macro_use]
mod support;

use serde_json::json;
use support::checks::{assert_identified, start_gate, Host};
use support::{assert_sent_to_login, Response, PASSWORD, RUN, SESSION_COOKIE};

on_both_hosts! {
    the_button_page_stands_before_claveunica_and_its_button_logs_in,
    a_login_inside_a_frame_takes_the_top_window_and_never_redirects_the_frame,
}

const AGENCY: &str = "Servicio de Prueba";

fn button_page_config(c: &mut serde_json::Value) {
    c["pages"] = json!({
        "button_page": true,
        "agency": AGENCY,
        "help": "Mesa de ayuda",
        "help_url": "https://ayuda.prueba.gob.cl/",
        "home": "https://www.prueba.gob.cl/",
        "legacy_login": "/login",
    });
}

/// The `href` of the official button on a page of the gate's.
fn button_href(r: &Response) -> String {
    let start = r.body.find("<a class=\"cu-btn\" href=\"").unwrap_or_else(|| panic!("no button: {}", r.body));
    let rest = &r.body[start + "<a class=\"cu-btn\" href=\"".len()..];
    html_escape::decode_html_entities(&rest[..rest.find('"').expect("end of href")]).into_owned()
}

fn the_button_page_stands_before_claveunica_and_its_button_logs_in(host: Host) {
    let gate = start_gate(host, &[button_page_config]);
    let stack = gate.as_ref();
    let before = stack.app_requests();
    let mut browser = stack.browser();
    let page = browser.get("/tramites/certificado?id=7");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{page:?}");
    assert!(page.header("location").is_none() && page.header_all("set-cookie").is_empty(), "{page:?}");
    assert_eq!(stack.app_requests(), before, "the button page let a request reach the app");
    for part in [
        "aria-label=\"Iniciar sesión con ClaveÚnica\"",
        "<span>Iniciar sesión</span>",
        &format!("Ingresa a {AGENCY}"),
        "<a href=\"https://ayuda.prueba.gob.cl/\">Mesa de ayuda</a>",
        "<a href=\"/login\">Ingresa con la clave del servicio</a>",
    ] {
        assert!(page.body.contains(part), "{part} missing: {}", page.body);
    }
    assert_eq!(button_href(&page), "/claveunica/login?return_to=%2Ftramites%2Fcertificado%3Fid%3D7");

    // The button starts the login, which lands where the person was going.
    let authorize = browser.start_login(&button_href(&page));
    let callback = browser.provider_login(&authorize, RUN, PASSWORD);
    let landed = browser.callback(&callback);
    assert_eq!(landed.location(), "/tramites/certificado?id=7", "{landed:?}");
    assert!(browser.jar.contains_key(SESSION_COOKIE));
    assert_identified(&browser.get("/tramites/certificado?id=7&format=json"));

    // The login path without a return path: the same page, whose button comes back home.
    let page = stack.browser().get("/claveunica/login");
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(button_href(&page), "/claveunica/login?return_to=%2F");

    // Positive control: the same gate without the setting sends the browser to ClaveÚnica.
    drop(gate);
    let gate = start_gate(host, &[]);
    assert_sent_to_login(gate.as_ref(), &gate.browser().get("/tramites/certificado?id=7"));
    assert_sent_to_login(gate.as_ref(), &gate.browser().get("/claveunica/login"));
}

fn a_login_inside_a_frame_takes_the_top_window_and_never_redirects_the_frame(host: Host) {
    let gate = start_gate(host, &[]);
    let stack = gate.as_ref();
    for dest in ["iframe", "frame"] {
        for path in ["/tramites?a=1", "/claveunica/login?return_to=%2Ftramites%3Fa%3D1"] {
            let r = stack.browser().get_with_headers(path, &[("Sec-Fetch-Dest", dest), ("Sec-Fetch-Mode", "navigate")]);
            assert_eq!(r.status, 200, "{dest} {path}: {r:?}");
            assert!(r.header("location").is_none(), "{dest} {path}: redirected inside the frame: {r:?}");
            assert!(r.header_all("set-cookie").is_empty(), "{dest} {path}: a login started in the frame: {r:?}");
            assert!(
                r.body.contains("window.top.location.assign(\"/claveunica/login?return_to=%2Ftramites%3Fa%3D1\")"),
                "{}",
                r.body
            );
            assert_eq!(button_href(&r), "/claveunica/login?return_to=%2Ftramites%3Fa%3D1");
            assert!(r.body.contains("target=\"_top\""), "{}", r.body);
        }
    }
    // Positive control: the same navigation in the whole window goes to ClaveÚnica.
    let r = stack.browser().get_with_headers("/tramites?a=1", &[("Sec-Fetch-Dest", "document")]);
    assert_sent_to_login(stack, &r);
}
