//! `claveunica-gate check` as an operator runs it: the built binary on configuration files,
//! judged by exit status and output lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use claveunica_core::testkit::{OLD_SESSION_KEY as OTHER_KEY, SESSION_KEY as KEY};
use serde_json::{json, Value};

/// Variables the test documents name; removed from the child's environment unless a test
/// sets them, so the outcome does not depend on the shell the tests run in.
const VARS: [&str; 9] = [
    "CU_CHECK_TEST_ASSERTION_KEYS",
    "CU_CHECK_TEST_PSEUDONYM_KEY",
    "CU_CHECK_TEST_A_ID",
    "CU_CHECK_TEST_ID",
    "CU_CHECK_TEST_SECRET",
    "CU_CHECK_TEST_KEYS",
    "CLAVEUNICA_CLIENT_ID",
    "CLAVEUNICA_CLIENT_SECRET",
    "CLAVEUNICA_SESSION_KEYS",
];

fn production_like() -> Value {
    json!({
        "issuer": "https://accounts.claveunica.gob.cl/openid",
        "cluster": "claveunica",
        "client_id_env": "CU_CHECK_TEST_ID",
        "client_secret_env": "CU_CHECK_TEST_SECRET",
        "redirect_uri": "https://tramites.example.gob.cl/claveunica/callback",
        "post_logout_redirect": "https://tramites.example.gob.cl/",
        "session_keys": [KEY, OTHER_KEY],
    })
}

/// Writes `doc` to a fresh file under the target's temp dir (one per test name).
fn write(name: &str, doc: &Value) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("claveunica-gate-check");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    path
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn lines(&self, prefix: &str) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    /// The lines after `ok:` that judge the configuration, not the evidence lines
    /// (`endpoint:`, `register:`) every valid configuration prints.
    fn findings(&self) -> Vec<&str> {
        let evidence = ["endpoint: ", "register: ", "access register: "];
        self.stdout.lines().filter(|l| !evidence.iter().any(|e| l.starts_with(e))).skip(1).collect()
    }

    fn has(&self, line_start: &str) -> bool {
        self.stdout.lines().any(|l| l.starts_with(line_start))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.status, self.stdout, self.stderr)
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_claveunica-gate"));
    cmd.args(args);
    for var in VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd
}

fn finish(out: Output) -> Run {
    Run {
        status: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    finish(command(args, env).output().unwrap())
}

fn check(path: &Path, env: &[(&str, &str)]) -> Run {
    run(&["check", path.to_str().unwrap()], env)
}

fn check_strict(path: &Path, env: &[(&str, &str)]) -> Run {
    run(&["check", "--strict", path.to_str().unwrap()], env)
}

const SECRET_SET: &[(&str, &str)] = &[("CU_CHECK_TEST_ID", "abc"), ("CU_CHECK_TEST_SECRET", "s3cret")];

/// What `check` prints for every valid configuration with ClaveÚnica's issuer: the endpoints
/// the review asks evidence of, and what to register.
const EVIDENCE: &str = "\
endpoint: authorize: https://accounts.claveunica.gob.cl/openid/authorize/
endpoint: token: https://accounts.claveunica.gob.cl/openid/token/
endpoint: userinfo: https://accounts.claveunica.gob.cl/openid/userinfo/
endpoint: keys: https://accounts.claveunica.gob.cl/openid/jwks
endpoint: logout: https://accounts.claveunica.gob.cl/api/v1/accounts/app/logout
register: Redirect URI: https://tramites.example.gob.cl/claveunica/callback (exactly as the gate sends it; \
ClaveÚnica compares it as text)
register: Logout URI: https://tramites.example.gob.cl (the origin of post_logout_redirect: ClaveÚnica's logout \
sends the browser back only to a registered Logout URI, and answers 204 otherwise)
access register: run masked (44444444-4 is logged as *****444-4)
";

#[test]
fn a_broken_configuration_exits_1_naming_each_key() {
    let mut doc = production_like();
    doc.as_object_mut().unwrap().remove("client_id_env");
    doc["session_keys"] = json!(["c2hvcnQ="]);
    let path = write("broken", &doc);
    let r = check(&path, SECRET_SET);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.has("error: client_id: is required"), "{r:?}");
    assert!(r.has("error: session_keys[0]: must decode to 32 bytes"), "{r:?}");
    assert!(!r.has("ok:"), "{r:?}");

    let not_json = Path::new(env!("CARGO_TARGET_TMPDIR")).join("claveunica-gate-check/not-json.json");
    std::fs::write(&not_json, "{ nope").unwrap();
    let r = check(&not_json, &[]);
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.has("error: (document): is not valid JSON"), "{r:?}");
}

#[test]
fn a_production_like_configuration_is_ok_and_shows_the_evidence_without_a_warning() {
    let path = write("clean", &production_like());
    let r = check(&path, SECRET_SET);
    assert_eq!(r.status, 0, "{r:?}");
    assert_eq!(
        r.stdout,
        format!("ok: {} is a valid ClaveÚnica Gate configuration\n{EVIDENCE}", path.display()),
        "{r:?}"
    );
    assert_eq!(check_strict(&path, SECRET_SET).status, 0);
}

#[test]
fn an_endpoint_override_is_shown_in_effect_and_flagged() {
    let mut doc = production_like();
    doc["token_endpoint"] = json!("https://proxy.example.gob.cl/token/");
    let path = write("override", &doc);
    let r = check(&path, SECRET_SET);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.has("endpoint: token: https://proxy.example.gob.cl/token/"), "{r:?}");
    assert!(r.has("endpoint: userinfo: https://accounts.claveunica.gob.cl/openid/userinfo/"), "{r:?}");
    assert!(
        r.has("warning: token_endpoint: the token endpoint is https://proxy.example.gob.cl/token/, not on"),
        "{r:?}"
    );
    assert_eq!(r.lines("warning:").len(), 1, "{r:?}");
    assert_eq!(check_strict(&path, SECRET_SET).status, 1);
}

#[test]
fn the_logout_uri_to_register_is_the_post_logout_redirects_origin() {
    let mut doc = production_like();
    doc["post_logout_redirect"] = json!("https://portal.example.gob.cl/sesion-cerrada");
    let r = check(&write("logout-origin", &doc), SECRET_SET);
    assert!(r.has("register: Logout URI: https://portal.example.gob.cl (the origin of post_logout_redirect"), "{r:?}");
    assert!(!r.stdout.contains("register: Logout URI: https://tramites"), "{r:?}");
    // Without one there is no Logout URI to register, and the warning says it is a recommendation.
    doc.as_object_mut().unwrap().remove("post_logout_redirect");
    let r = check(&write("no-logout", &doc), SECRET_SET);
    assert!(!r.has("register: Logout URI"), "{r:?}");
    assert!(r.has("warning: post_logout_redirect: is not set: recommended, not required"), "{r:?}");
}

#[test]
fn an_inline_client_id_warns_like_an_inline_secret() {
    let mut doc = production_like();
    doc.as_object_mut().unwrap().remove("client_id_env");
    doc["client_id"] = json!("abc");
    let r = check(&write("inline-id", &doc), SECRET_SET);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(
        r.has("warning: client_id: is written in the configuration") && r.stdout.contains("client_id_env"),
        "{r:?}"
    );
    // From the environment, unset here: a note, like the secret's.
    let r = check(&write("clean", &production_like()), &[("CU_CHECK_TEST_SECRET", "s3cret")]);
    assert!(r.has("note: client_id_env: environment variable CU_CHECK_TEST_ID is not set"), "{r:?}");
    assert!(!r.has("warning:"), "{r:?}");
}

#[test]
fn http_redirect_and_inline_secret_warn_and_fail_only_when_strict() {
    let mut doc = production_like();
    doc["redirect_uri"] = json!("http://tramites.example.gob.cl/claveunica/callback");
    doc.as_object_mut().unwrap().remove("client_secret_env");
    doc["client_secret"] = json!("s3cret");
    let path = write("http-inline", &doc);

    let r = check(&path, SECRET_SET);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.has(&format!("ok: {}", path.display())), "{r:?}");
    assert!(r.has("warning: redirect_uri: uses http"), "{r:?}");
    assert!(r.has("warning: client_secret: ") && r.stdout.contains("client_secret_env"), "{r:?}");
    assert_eq!(r.lines("warning:").len(), 2, "{r:?}");
    // The secret's value is never printed.
    assert!(!r.stdout.contains("s3cret") && !r.stderr.contains("s3cret"), "{r:?}");

    let strict = check_strict(&path, SECRET_SET);
    assert_eq!(strict.status, 1, "{strict:?}");
    assert_eq!(strict.stdout, r.stdout);
}

#[test]
fn a_variable_missing_here_is_a_note_not_an_error() {
    let mut doc = production_like();
    doc.as_object_mut().unwrap().remove("session_keys");
    doc["session_keys_env"] = json!("CU_CHECK_TEST_KEYS");
    let path = write("env", &doc);

    let r = check(&path, &[("CU_CHECK_TEST_ID", "abc")]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(!r.has("error:") && !r.has("warning:"), "{r:?}");
    assert!(r.has("note: client_secret_env: environment variable CU_CHECK_TEST_SECRET is not set"), "{r:?}");
    assert!(r.has("note: session_keys_env: environment variable CU_CHECK_TEST_KEYS is not set"), "{r:?}");
    // The placeholder is a single key: no advice on rotating it.
    assert!(!r.has("note: session_keys:"), "{r:?}");
    assert_eq!(check_strict(&path, &[("CU_CHECK_TEST_ID", "abc")]).status, 0);

    // Set in this shell, the real values are checked, and a bad one is an error.
    let all = |keys| [("CU_CHECK_TEST_ID", "abc"), ("CU_CHECK_TEST_SECRET", "s3cret"), ("CU_CHECK_TEST_KEYS", keys)];
    let r = check(&path, &all("c2hvcnQ="));
    assert_eq!(r.status, 1, "{r:?}");
    assert!(r.has("error: session_keys_env[0]: must decode to 32 bytes"), "{r:?}");
    assert!(!r.has("note: client_secret_env"), "{r:?}");
    let keys = format!("{KEY},{OTHER_KEY}");
    let r = check(&path, &all(&keys));
    assert_eq!((r.status, r.findings()), (0, vec![]), "{r:?}");
}

/// The example files an operator starts from.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/config").join(name)
}

#[test]
fn the_production_example_gives_no_warning() {
    let path = example("production.json");
    let r = check_strict(&path, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.has("ok:") && !r.has("warning:") && !r.has("error:"), "{r:?}");
    // Its secrets come from the environment, as certification asks.
    for key in ["client_id_env", "client_secret_env", "session_keys_env"] {
        assert!(r.has(&format!("note: {key}:")), "{key}: {r:?}");
    }
}

#[test]
fn the_demo_example_is_valid_and_says_why_it_is_not_production() {
    let path = example("demo.json");
    let r = check(&path, &[]);
    assert_eq!(r.status, 0, "{r:?}");
    assert!(!r.has("error:"), "{r:?}");
    for start in ["warning: redirect_uri: uses http", "warning: redirect_uri: names a port", "note: issuer:"] {
        assert!(r.has(start), "{start}: {r:?}");
    }
    assert_eq!(check_strict(&path, &[]).status, 1);
}

#[test]
fn standard_input() {
    let mut child = command(&["check", "-"], SECRET_SET).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(production_like().to_string().as_bytes()).unwrap();
    let r = finish(child.wait_with_output().unwrap());
    assert_eq!(r.status, 0, "{r:?}");
    assert!(r.has("ok: standard input is a valid"), "{r:?}");
}

#[test]
fn usage() {
    let help = run(&["--help"], &[]);
    assert_eq!(help.status, 0, "{help:?}");
    assert!(help.stdout.contains("claveunica-gate check"), "{help:?}");
    for args in [&[][..], &["check"], &["frobnicate"], &["check", "--colour", "x.json"]] {
        let r = run(args, &[]);
        assert_eq!(r.status, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains("usage:"), "{args:?}: {r:?}");
    }
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("claveunica-gate-check/does-not-exist.json");
    let r = check(&missing, &[]);
    assert_eq!(r.status, 2, "{r:?}");
    assert!(r.stderr.contains("cannot read"), "{r:?}");
}

/// The production-like document serving `sites` instead of one portal of its own.
fn with_sites(sites: Value) -> Value {
    let mut doc = production_like();
    let top = doc.as_object_mut().unwrap();
    top.remove("redirect_uri");
    top.remove("post_logout_redirect");
    top.insert("sites".into(), sites);
    doc
}

#[test]
fn every_site_is_reviewed_and_registered_under_its_hosts() {
    let doc = with_sites(json!([
            {"hosts": ["tramites.example.gob.cl"],
             "redirect_uri": "https://tramites.example.gob.cl/claveunica/callback",
             "post_logout_redirect": "https://tramites.example.gob.cl/"},
            {"hosts": ["becas.example.cl"], "client_secret": "inline",
             "redirect_uri": "https://becas.example.cl/claveunica/callback"},
    ]));
    let path = write("sites", &doc);
    let r = check(&path, &[("CU_CHECK_TEST_ID", "x"), ("CU_CHECK_TEST_SECRET", "y")]);
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(r.lines("sites: "), ["sites: tramites.example.gob.cl; becas.example.cl"]);
    assert_eq!(
        r.lines("register: "),
        [
            "register: [tramites.example.gob.cl] Redirect URI: https://tramites.example.gob.cl/claveunica/callback \
             (exactly as the gate sends it; ClaveÚnica compares it as text)",
            "register: [tramites.example.gob.cl] Logout URI: https://tramites.example.gob.cl (the origin of \
             post_logout_redirect: ClaveÚnica's logout sends the browser back only to a registered Logout URI, and \
             answers 204 otherwise)",
            "register: [becas.example.cl] Redirect URI: https://becas.example.cl/claveunica/callback (exactly as the \
             gate sends it; ClaveÚnica compares it as text)",
        ]
    );
    let findings = r.findings();
    // The second site's own faults, under its hosts; the first site has none.
    for key in ["client_secret", "redirect_uri", "post_logout_redirect"] {
        assert!(
            findings.iter().any(|l| l.starts_with(&format!("warning: [becas.example.cl] {key}: "))),
            "{key}: {findings:#?}"
        );
    }
    assert!(!findings.iter().any(|l| l.starts_with("warning: [tramites.example.gob.cl]")), "{findings:#?}");
    assert_eq!(r.lines("access register: ").len(), 2);
}

#[test]
fn a_sites_variable_missing_here_is_one_note_naming_the_site_key() {
    let doc = with_sites(json!([
            {"hosts": ["a.example.gob.cl"], "redirect_uri": "https://a.example.gob.cl/claveunica/callback",
             "client_id_env": "CU_CHECK_TEST_A_ID"},
            {"hosts": ["b.example.gob.cl"], "redirect_uri": "https://b.example.gob.cl/claveunica/callback"},
    ]));
    let path = write("sites-env", &doc);
    let r = check(&path, &[("CU_CHECK_TEST_ID", "x")]);
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    let notes = r.lines("note: ");
    let about = |var: &str| notes.iter().filter(|l| l.contains(&format!("variable {var} "))).count();
    // Both sites take the top level's secret variable: said once, under its own key.
    assert_eq!(about("CU_CHECK_TEST_SECRET"), 1, "{notes:#?}");
    assert!(r.has("note: client_secret_env: environment variable CU_CHECK_TEST_SECRET is not set"), "{notes:#?}");
    assert!(
        r.has(
            "note: sites[0].client_id_env: environment variable CU_CHECK_TEST_A_ID is not set in this shell, so it \
               was checked with a placeholder; set it where the proxy runs (the client id;"
        ),
        "{notes:#?}"
    );
}

#[test]
fn the_assertions_keys_and_where_a_verifier_finds_them_are_shown() {
    let mut doc = production_like();
    doc["assertion"] = json!({"issuer": "https://tramites.example.gob.cl/gate", "audience": "tramites",
        "signing_keys": [claveunica_core::testkit::ASSERTION_KEY, claveunica_core::testkit::NEXT_ASSERTION_KEY]});
    let path = write("assertion", &doc);
    let r = check(&path, &[("CU_CHECK_TEST_ID", "x"), ("CU_CHECK_TEST_SECRET", "y")]);
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    let lines = r.lines("assertion: ");
    assert_eq!(
        lines.first().copied(),
        Some(
            "assertion: sub=run in x-claveunica-assertion, iss https://tramites.example.gob.cl/gate, aud tramites; \
             keys at https://tramites.example.gob.cl/.well-known/claveunica-gate/jwks.json"
        )
    );
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[1].ends_with("(signs)") && lines[2].ends_with("(published only)"), "{lines:#?}");
    assert_ne!(lines[1].split(' ').nth(2), lines[2].split(' ').nth(2), "two kids");
    // A key that is not P-256 is refused by name.
    doc["assertion"]["signing_keys"] = json!(["-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"]);
    let r = check(&write("assertion-bad", &doc), &[("CU_CHECK_TEST_ID", "x"), ("CU_CHECK_TEST_SECRET", "y")]);
    assert_eq!(r.status, 1);
    assert!(r.has("error: assertion.signing_keys[0]: must be a P-256 private key in PKCS#8 PEM"), "{r:?}");
}

#[test]
fn nested_variables_missing_here_are_notes_with_placeholders_the_gate_accepts() {
    let mut doc = production_like();
    doc["assertion"] = json!({"issuer": "https://tramites.example.gob.cl/gate", "audience": "tramites",
        "signing_keys_env": "CU_CHECK_TEST_ASSERTION_KEYS"});
    doc["pseudonym"] = json!({"key_env": "CU_CHECK_TEST_PSEUDONYM_KEY"});
    doc["headers"] = json!({"x-persona": "{pseudonym}"});
    let path = write("nested-env", &doc);
    let r = check(&path, &[("CU_CHECK_TEST_ID", "x"), ("CU_CHECK_TEST_SECRET", "y")]);
    assert_eq!(r.status, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.has("note: assertion.signing_keys_env: environment variable CU_CHECK_TEST_ASSERTION_KEYS is not set"),
        "{r:?}"
    );
    assert!(r.has("note: pseudonym.key_env: environment variable CU_CHECK_TEST_PSEUDONYM_KEY is not set"), "{r:?}");
    // The placeholder's kid is no kid of the agency's: not shown.
    assert_eq!(r.lines("assertion: ").len(), 1, "{r:?}");
}
