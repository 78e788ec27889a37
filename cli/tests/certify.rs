//! `claveunica-gate certify` as an agency runs it: the built binary against a deployed gate
//! (the demo stack: Envoy with the built gate, the emulator, the legacy app), judged by its
//! exit status and the Markdown evidence report it writes.
//!
//! The stack is a rehearsal (`--provider` names the emulator), so the items about where the
//! gate sends browsers can pass; its `redirect_uri` (`http://127.0.0.1:PORT/…`) is what
//! ClaveÚnica would refuse, so that item must fail and say what to change.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../../tests/support/mod.rs"]
#[macro_use]
mod support;

use std::path::PathBuf;
use std::process::Command;

use support::Stack;

struct Certified {
    status: i32,
    report: String,
    stderr: String,
}

impl std::fmt::Debug for Certified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- report\n{}--- stderr\n{}", self.status, self.report, self.stderr)
    }
}

impl Certified {
    /// The section of item `title` (from its heading to the next), and whether it passed.
    fn item(&self, title: &str) -> (bool, &str) {
        let start = self.report.find(&format!(". {title}: ")).unwrap_or_else(|| panic!("no item {title:?}: {self:?}"));
        let section = &self.report[start..];
        let section = &section[..section[1..].find("\n## ").map_or(section.len(), |end| end + 1)];
        let heading = section.lines().next().unwrap_or_default();
        assert!(heading.ends_with(": PASS") || heading.ends_with(": FAIL"), "{heading}");
        (heading.ends_with(": PASS"), section)
    }

    fn passes(&self, title: &str) -> bool {
        self.item(title).0
    }
}

const AUTHORIZE: &str = "Login sends the browser to ClaveÚnica's authorize endpoint";
const SCOPE: &str = "The authorization request asks for exactly `openid run name`";
const STATE: &str = "`state` has 30 or more characters and changes with every login";
const REDIRECT_URI: &str = "`redirect_uri` has the registered form (https, no query, no port, agency host)";
const BUTTON: &str = "A page with the official ClaveÚnica button";
const FRAME: &str = "ClaveÚnica's login never opens inside a frame";
const LOGOUT: &str = "Logout goes through ClaveÚnica's logout endpoint";

fn certify(name: &str, args: &[&str]) -> Certified {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("claveunica-gate-certify");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}-{}.md", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let run = Command::new(env!("CARGO_BIN_EXE_claveunica-gate"))
        .arg("certify")
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    Certified {
        status: run.status.code().expect("exited, not killed"),
        report: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: String::from_utf8_lossy(&run.stderr).into_owned(),
    }
}

fn rehearse(stack: &Stack, name: &str) -> Certified {
    certify(name, &[stack.base(), "--provider", stack.provider()])
}

#[test]
fn the_demo_gate_passes_the_flow_items_and_fails_on_its_redirect_uri() {
    let stack = Stack::start();
    let r = rehearse(&stack, "demo");
    assert_eq!(r.status, 1, "an item fails: {r:?}");
    assert!(r.report.contains("**Rehearsal**"), "{r:?}");

    for title in [AUTHORIZE, SCOPE, STATE, LOGOUT] {
        assert!(r.passes(title), "{title}: {r:?}");
    }
    let (_, state) = r.item(STATE);
    assert!(state.contains("3 distinct values in 3 logins"), "{state}");
    let (_, logout) = r.item(LOGOUT);
    assert!(logout.contains(&format!("{}/api/v1/accounts/app/logout", stack.provider())), "{logout}");
    assert!(logout.contains("no `redirect` back"), "{logout}");

    let (passed, redirect) = r.item(REDIRECT_URI);
    assert!(!passed, "{r:?}");
    assert!(redirect.contains(&format!("redirect_uri=`{}`", stack.redirect_uri())), "{redirect}");
    assert!(redirect.contains("What to change:"), "{redirect}");
    for needle in ["uses http", "names a port", "IP address"] {
        assert!(redirect.contains(needle), "{needle}: {redirect}");
    }

    // This gate never starts ClaveÚnica's login inside a frame; the default configuration
    // serves no button page, so that item fails and says how to point at the agency's own.
    assert!(r.passes(FRAME), "{r:?}");
    assert!(!r.passes(BUTTON), "{r:?}");
    // Cross-checked with what the harness's browser sees.
    let navigate =
        |dest| stack.browser().get_with_headers("/", &[("sec-fetch-mode", "navigate"), ("sec-fetch-dest", dest)]);
    let to_claveunica =
        |r: &support::Response| r.header("location").is_some_and(|l| l.starts_with(&stack.authorize_endpoint()));
    let framed = [navigate("iframe"), navigate("frame")];
    assert_eq!(r.passes(FRAME), !framed.iter().any(to_claveunica), "{framed:?}\n{r:?}");
    if !r.passes(FRAME) {
        let (_, section) = r.item(FRAME);
        assert_eq!(section.matches("inside the frame").count(), 1, "one line of what to change: {section}");
    }
    let page = navigate("document");
    let button = page.status == 200 && page.body.contains("Iniciar sesión con ClaveÚnica");
    assert_eq!(r.passes(BUTTON), button, "{page:?}\n{r:?}");
    if !button {
        let (_, section) = r.item(BUTTON);
        assert!(section.contains("--button-page"), "says what to change: {section}");
    }
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("FAIL: ")).count(),
        r.report.matches(": FAIL\n").count(),
        "{r:?}"
    );
}

/// With `pages.button_page` on, the gate's own page with the button passes the item.
#[test]
fn the_gates_button_page_passes() {
    let stack = Stack::builder().edit_config(|c| c["pages"] = serde_json::json!({"button_page": true})).start();
    let r = rehearse(&stack, "button-page");
    let (passed, section) = r.item(BUTTON);
    assert!(passed, "{r:?}");
    assert!(section.contains("present"), "{section}");
    assert!(r.passes(FRAME), "{r:?}");
}

#[test]
fn without_the_rehearsal_the_emulator_is_not_claveunica() {
    let stack = Stack::start();
    let r = certify("not-claveunica", &[stack.base()]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(!r.report.contains("Rehearsal"), "{r:?}");
    let (passed, authorize) = r.item(AUTHORIZE);
    assert!(!passed, "{r:?}");
    assert!(authorize.contains("not `https://accounts.claveunica.gob.cl/openid/authorize/`"), "{authorize}");
    assert!(authorize.contains("set `issuer`"), "{authorize}");
    assert!(!r.passes(LOGOUT), "{r:?}");
    // What does not depend on the provider's address still passes.
    assert!(r.passes(SCOPE) && r.passes(STATE), "{r:?}");
}

#[test]
fn a_scope_other_than_the_manuals_fails_with_the_fix() {
    let stack = Stack::builder()
        .edit_config(|c| {
            c["scope"] = "openid run name email".into();
            c["post_logout_redirect"] = "https://tramites.example.gob.cl/adios".into();
        })
        .start();
    let r = rehearse(&stack, "scope");
    let (passed, scope) = r.item(SCOPE);
    assert!(!passed, "{r:?}");
    assert!(scope.contains("scope=Some(\"openid run name email\")"), "{scope}");
    assert!(scope.contains("remove `scope` from the configuration"), "{scope}");
    assert!(r.passes(AUTHORIZE), "{r:?}");
    // The logout asks ClaveÚnica to send the browser back, and the evidence names what to register.
    let (passed, logout) = r.item(LOGOUT);
    assert!(passed, "{r:?}");
    assert!(
        logout.contains("back to `https://tramites.example.gob.cl/adios`: its origin must be registered"),
        "{logout}"
    );
}

#[test]
fn an_unreachable_gate_exits_2_without_a_report() {
    let port = support::process::free_port();
    let r = certify("unreachable", &[&format!("http://127.0.0.1:{port}")]);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.report.is_empty() && r.stderr.contains("cannot reach the gate"), "{r:?}");
}

/// Serves `pages` (path, HTML) on a loopback port until the test ends: an agency's own page.
fn serve(pages: &'static [(&'static str, &'static str)]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let path = request_line.split(' ').nth(1).unwrap_or_default().to_string();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) =
                pages.iter().find(|(p, _)| *p == path).map_or(("404 Not Found", ""), |(_, b)| ("200 OK", b));
            let _ = write!(
                &stream,
                "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    base
}

const GOOD_PAGE: &str = r#"<!DOCTYPE html><html lang="es"><body><main><h1>Trámites</h1>
<a class="btn-claveunica" href="/claveunica/login?return_to=%2F" aria-label="Iniciar sesión con ClaveÚnica"><img src="/claveunica.svg" alt=""> Iniciar sesión</a>
</main></body></html>"#;

const BAD_PAGE: &str = r#"<!DOCTYPE html><html lang="es"><head>
<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto"></head><body>
<a href="/claveunica/login?return_to=%2F">Entrar</a></body></html>"#;

#[test]
fn an_agencys_own_button_page_is_checked() {
    let stack = Stack::start();
    let own = serve(&[("/inicio", GOOD_PAGE), ("/mala", BAD_PAGE)]);

    let good = format!("{own}/inicio");
    let r = certify("own-button", &[stack.base(), "--provider", stack.provider(), "--button-page", &good]);
    let (passed, section) = r.item(BUTTON);
    assert!(passed, "{r:?}");
    assert!(section.contains(&format!("GET `{good}`")) && section.contains("present"), "{section}");

    let bad = format!("{own}/mala");
    let r = certify("own-button-bad", &[stack.base(), "--provider", stack.provider(), "--button-page", &bad]);
    let (passed, section) = r.item(BUTTON);
    assert!(!passed, "{r:?}");
    for needle in
        ["accessible label", "\"Iniciar sesión\"", "https://fonts.googleapis.com/css?family=Roboto", "other origins"]
    {
        assert!(section.contains(needle), "{needle}: {section}");
    }
}
