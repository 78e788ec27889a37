//! `claveunica-gate`: operator commands for ClaveÚnica Gate.
//!
//! ```text
//! claveunica-gate check [--strict] <config.json | ->
//! claveunica-gate certify [options] <URL>
//! claveunica-gate --help | --version
//! ```
//!
//! `check` validates a configuration with the code the filter itself runs at load time
//! ([`Config::from_json`]), so "ok" here means the proxy will accept it, then reviews it
//! against ClaveÚnica's certification checklist ([`claveunica_core::check::review`]).
//! Exit status: 0 valid (warnings allowed unless `--strict`), 1 invalid or, with `--strict`,
//! warned about, 2 usage error or unreadable file.
//!
//! `certify` walks a deployed gate through the review's checklist over HTTP ([`certify`]) and
//! writes a Markdown evidence report. Exit status: 0 every item passes, 1 one fails, 2 usage
//! error or the gate cannot be reached.

mod certify;

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use claveunica_core::check::{effective_endpoints, registration, review, Finding, Severity};
use claveunica_core::config::{Config, SITE_KEYS};

const USAGE: &str = "\
usage: claveunica-gate check [--strict] <config.json>
       claveunica-gate certify [options] <URL>
       claveunica-gate --help | --version

Commands:
  check   Validate a ClaveÚnica Gate configuration (a JSON file, or - for standard input)
          with the same code the filter runs, then print what the certification review
          reads: the endpoints in effect (each not on https://accounts.claveunica.gob.cl is
          flagged), what to register with ClaveÚnica (Redirect URI, Logout URI), and a
          warning, worded as the manual words it (required or recommended), for each thing
          to change (http, a port or an IP in redirect_uri, an inline client id or secret, no
          post-logout redirect, a scope other than `openid run name`, ...).

  certify Walk the gate deployed at URL (its public origin, https://tramites.example.gob.cl)
          through the points of the certification review an anonymous browser can see, and
          write a Markdown evidence report: the redirect to the authorize endpoint with the
          exact scope, a state of 30+ characters that changes every time, the redirect_uri
          form, the page with the button, no login inside a frame, logout through
          ClaveÚnica's logout. A failing item says what to change. Follows no redirect.

Options of check:
  --strict        exit 1 on warnings too, not only on errors

Options of certify:
  --out FILE            write the report to FILE (default: standard output)
  --path PATH           a protected page (default /)
  --login-path PATH     the gate's login_path (default /claveunica/login)
  --logout-path PATH    the gate's logout_path (default /claveunica/logout)
  --button-page URL     your own page with the ClaveÚnica button, if the gate does not serve it
  --provider ORIGIN     rehearse against an emulator at ORIGIN instead of ClaveÚnica

  -h, --help      print this help
  -V, --version   print the version

The variables named by client_id_env, client_secret_env and session_keys_env are read
from this shell.
When one is not set, a placeholder stands in and a note says to set it where the proxy runs.

Exit status of check: 0 valid; 1 invalid, or warnings with --strict; 2 usage error or
unreadable file. Of certify: 0 every item passes; 1 one fails; 2 usage error or unreachable.";

/// Where the configuration document comes from.
#[derive(Debug, PartialEq, Eq)]
enum Source {
    Stdin,
    File(PathBuf),
}

#[derive(Debug, PartialEq, Eq)]
enum Command {
    Help,
    Version,
    Check { source: Source, strict: bool },
    Certify { options: Box<certify::Options>, out: Option<PathBuf> },
}

/// Parses the arguments after the program name. `OsString`s, because `std::env::args` panics
/// on a file name that is not Unicode.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else { return Err("missing command".into()) };
    match command.to_str() {
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("-V" | "--version") => return Ok(Command::Version),
        Some("check") => {}
        Some("certify") => return parse_certify(args),
        _ => return Err(format!("unknown command {:?}", command.to_string_lossy())),
    }
    let mut source = None;
    let mut strict = false;
    let mut options_done = false;
    for arg in args {
        let source_arg = match arg.to_str() {
            Some("-h" | "--help") if !options_done => return Ok(Command::Help),
            Some("--strict") if !options_done => {
                strict = true;
                continue;
            }
            Some("--") if !options_done => {
                options_done = true;
                continue;
            }
            Some("-") => Source::Stdin,
            Some(s) if s.starts_with('-') && !options_done => return Err(format!("unknown option {s:?}")),
            _ => Source::File(PathBuf::from(arg)),
        };
        if source.replace(source_arg).is_some() {
            return Err("check takes one configuration file".into());
        }
    }
    let source = source.ok_or("check needs a configuration file (or - for standard input)")?;
    Ok(Command::Check { source, strict })
}

/// The options of `certify`; each takes a value.
const CERTIFY_OPTIONS: [&str; 6] = ["--out", "--path", "--login-path", "--logout-path", "--button-page", "--provider"];

/// The arguments of `certify`: options with a value each, and the gate's URL.
fn parse_certify(args: impl Iterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.map(|a| a.into_string().map_err(|a| format!("not Unicode: {a:?}")));
    let mut url = None;
    let mut out = None;
    let mut values: Vec<(&'static str, String)> = Vec::new();
    while let Some(arg) = args.next() {
        let arg = arg?;
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        if let Some(key) = CERTIFY_OPTIONS.into_iter().find(|k| *k == arg) {
            let value = args.next().ok_or(format!("{key} needs a value"))??;
            values.push((key, value));
        } else if arg.starts_with('-') {
            return Err(format!("unknown option {arg:?}"));
        } else if url.replace(arg).is_some() {
            return Err("certify takes one URL".into());
        }
    }
    let url = url.ok_or("certify needs the gate's URL")?;
    let base = url::Url::parse(&url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or(format!("{url:?} is not an http(s) URL"))?;
    let mut options = certify::Options::new(base);
    for (key, value) in values {
        let path = || {
            if value.starts_with('/') {
                Ok(value.clone())
            } else {
                Err(format!("{key} takes a path starting with /"))
            }
        };
        match key {
            "--out" => out = Some(PathBuf::from(&value)),
            "--path" => options.path = path()?,
            "--login-path" => options.login_path = path()?,
            "--logout-path" => options.logout_path = path()?,
            "--button-page" => options.button_page = Some(value),
            _ => options.provider = value,
        }
    }
    Ok(Command::Certify { options: Box::new(options), out })
}

/// Runs `certify` and writes its report; the exit status.
fn run_certify(options: &certify::Options, out: Option<&std::path::Path>) -> ExitCode {
    let items = match certify::certify(options) {
        Ok(items) => items,
        Err(e) => {
            eprintln!("claveunica-gate certify: cannot reach the gate: {e}");
            return ExitCode::from(2);
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let report = certify::report(options, &items, &certify::utc(now));
    let written = match out {
        Some(path) => std::fs::write(path, &report).map_err(|e| format!("{}: {e}", path.display())),
        None => std::io::stdout().lock().write_all(report.as_bytes()).map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        eprintln!("claveunica-gate certify: cannot write the report: {e}");
        return ExitCode::from(2);
    }
    // A summary on stderr, so a report piped to a file still leaves a verdict on the terminal.
    for item in &items {
        eprintln!("{}: {}", if item.passed { "pass" } else { "FAIL" }, item.title);
    }
    ExitCode::from(u8::from(items.iter().any(|i| !i.passed)))
}

/// What `check` prints, one line each, and its exit status.
#[derive(Debug)]
struct Report {
    lines: Vec<String>,
    status: u8,
}

/// A key whose value names an environment variable: the section it is in (top level or a
/// site's when `None`), its name there, how notes name it, and what the variable holds.
struct EnvKey {
    section: Option<&'static str>,
    name: &'static str,
    key: &'static str,
    holds: &'static str,
}

/// The keys whose value names an environment variable, as `Config::from_json` reads them.
const ENV_KEYS: [EnvKey; 6] = [
    EnvKey { section: None, name: "client_id_env", key: "client_id_env", holds: "the client id" },
    EnvKey { section: None, name: "client_secret_env", key: "client_secret_env", holds: "the secret" },
    EnvKey {
        section: None,
        name: "session_keys_env",
        key: "session_keys_env",
        holds: "comma-separated base64 keys, newest first",
    },
    EnvKey {
        section: Some("assertion"),
        name: "signing_keys_env",
        key: "assertion.signing_keys_env",
        holds: "P-256 private keys in PKCS#8 PEM, newest first",
    },
    EnvKey { section: Some("pseudonym"), name: "key_env", key: "pseudonym.key_env", holds: "at least 32 secret bytes" },
    EnvKey {
        section: Some("access_log"),
        name: "hash_key_env",
        key: "access_log.hash_key_env",
        holds: "at least 16 secret bytes",
    },
];

/// What stands for a variable not set in this shell when it names something the gate would
/// refuse in another form: a P-256 key for `assertion.signing_keys_env` (a public throwaway key
/// that never signs anything), a random-looking base64 key for everything else.
const PLACEHOLDER_ASSERTION_KEY: &str = include_str!("placeholder_assertion_key.pem");

/// Where the document names `var`: `sites[i].` when a site does (the first place it is named,
/// top level first), and the key that names it.
fn env_key_naming(text: &[u8], var: &str) -> (String, Option<&'static EnvKey>) {
    let doc: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
    let sites = doc.get("sites").and_then(|s| s.as_array()).map(Vec::as_slice).unwrap_or_default();
    let places = std::iter::once((String::new(), &doc))
        .chain(sites.iter().enumerate().map(|(i, site)| (format!("sites[{i}]."), site)));
    for (place, object) in places {
        let names = |k: &&EnvKey| {
            let holder = match k.section {
                Some(section) => object.get(section),
                None => Some(object),
            };
            holder.and_then(|h| h.get(k.name)).and_then(|v| v.as_str()) == Some(var)
        };
        if let Some(key) = ENV_KEYS.iter().find(names) {
            return (place, Some(key));
        }
    }
    (String::new(), None)
}

/// A syntactically valid session key: 32 random-looking bytes, base64. It only has to pass
/// validation; it never seals anything and is never printed.
fn placeholder_key() -> String {
    let state = RandomState::new();
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&state.hash_one(i).to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Validates and reviews one document. `env` reads this shell's environment; a variable it
/// does not have is replaced by a placeholder, because the shell an operator checks a file in
/// is rarely the environment the proxy runs in, and its absence here proves nothing.
fn check(text: &[u8], name: &str, strict: bool, env: &dyn Fn(&str) -> Option<String>) -> Report {
    let missing = RefCell::new(Vec::<String>::new());
    let placeholder = placeholder_key();
    // Empty counts as unset, as it does for client_secret_env in the gate.
    let lookup = |var: &str| match env(var).filter(|v| !v.is_empty()) {
        Some(value) => Some(value),
        None => {
            missing.borrow_mut().push(var.to_string());
            match env_key_naming(text, var).1 {
                Some(k) if k.name == "signing_keys_env" => Some(PLACEHOLDER_ASSERTION_KEY.to_string()),
                _ => Some(placeholder.clone()),
            }
        }
    };
    let result = Config::from_json(text, &lookup);

    let mut placeholder_keys = false;
    let mut env_notes = Vec::new();
    // Every site that takes a variable looks it up: one note for each variable.
    let mut vars: Vec<String> = Vec::new();
    for var in missing.into_inner() {
        if !vars.contains(&var) {
            vars.push(var);
        }
    }
    let mut placeholder_signing = false;
    for var in vars {
        let (place, named) = env_key_naming(text, &var);
        let key = named.map_or("(environment)", |k| k.key);
        placeholder_keys |= key == "session_keys_env";
        placeholder_signing |= key == "assertion.signing_keys_env";
        let what = named.map_or("the secret", |k| k.holds);
        let message = format!(
            "environment variable {var} is not set in this shell, so it was checked with a placeholder; set it \
             where the proxy runs ({what}; Envoy: vm_config.environment_variables)"
        );
        env_notes.push((place, Finding { severity: Severity::Note, key, message }));
    }

    let mut lines = Vec::new();
    let config = match result {
        Ok(config) => config,
        Err(e) => {
            lines.extend(e.problems.iter().map(|p| format!("error: {p}")));
            lines.extend(env_notes.iter().map(|(place, f)| line(place, f)));
            return Report { lines, status: 1 };
        }
    };
    // Each site is reviewed and registered on its own; what belongs to the provider (one for
    // every site) is said once, with the first.
    let sites: Vec<&Config> = std::iter::once(&config).chain(&config.sites).collect();
    let several = sites.len() > 1;
    let mut findings = Vec::new();
    let mut registrations = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        let label = if several { format!("[{}] ", site_label(site)) } else { String::new() };
        let mut own = review(site);
        if i > 0 {
            own.retain(|f| SITE_KEYS.contains(&f.key));
        }
        findings.extend(own.into_iter().map(|f| (label.clone(), f)));
        registrations.extend(
            registration(site)
                .into_iter()
                .map(|(what, value, why)| format!("register: {label}{what}: {value} ({why})")),
        );
    }
    if placeholder_keys {
        // The placeholder is one key; how many the real variable holds is unknown here.
        findings.retain(|(_, f)| f.key != "session_keys");
    }
    findings.extend(env_notes);
    // Stable: warnings first, each group in the order of the sites and their keys.
    findings.sort_by_key(|(_, f)| f.severity);

    lines.push(format!("ok: {name} is a valid ClaveÚnica Gate configuration"));
    if several {
        let served: Vec<String> = sites.iter().map(|s| site_label(s)).collect();
        lines.push(format!("sites: {}", served.join("; ")));
    }
    // The review asks for evidence of the back-channel calls: these are the URLs they go to.
    lines.extend(effective_endpoints(&config).iter().map(|(_, what, url)| format!("endpoint: {what}: {url}")));
    lines.extend(registrations);
    // How the access register (Decreto 9) will name a person, shown with ClaveÚnica's test RUN.
    if let Ok(run) = claveunica_core::primitives::run::Run::parse("44444444-4") {
        for site in &sites {
            let label = if several { format!("[{}] ", site_label(site)) } else { String::new() };
            let example = site.access_log.name(&run);
            lines.push(format!(
                "access register: {label}run {} (44444444-4 is logged as {example})",
                site.access_log.as_str()
            ));
        }
    }
    // What a verifier of the signed assertion is given: where the keys are and which sign.
    for site in &sites {
        let Some(assertion) = &site.assertion else { continue };
        let label = if several { format!("[{}] ", site_label(site)) } else { String::new() };
        let origin = url::Url::parse(&site.redirect_uri).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        lines.push(format!(
            "assertion: {label}{} in {}, iss {}, aud {}; keys at {origin}{}",
            assertion.subject_name(),
            assertion.header,
            assertion.issuer,
            assertion.audience,
            assertion.jwks_path
        ));
        // A placeholder's kid would be no kid of the agency's.
        for (i, key) in assertion.keys.iter().enumerate().filter(|_| !placeholder_signing) {
            let role = if i == 0 { "signs" } else { "published only" };
            lines.push(format!("assertion: {label}key {} ({role})", key.kid()));
        }
    }
    lines.extend(findings.iter().map(|(label, f)| line(label, f)));
    let warned = findings.iter().any(|(_, f)| f.severity == Severity::Warning);
    Report { lines, status: u8::from(strict && warned) }
}

/// How `check` names a site of a document with several: its hosts, or `default` for the top
/// level serving every host no site names.
fn site_label(site: &Config) -> String {
    if site.hosts.is_empty() {
        return "default".to_string();
    }
    site.hosts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// A finding as a line; `site` is `[hosts] ` in a document with several sites.
fn line(site: &str, f: &Finding) -> String {
    let label = match f.severity {
        Severity::Warning => "warning",
        Severity::Note => "note",
    };
    format!("{label}: {site}{}: {}", f.key, f.message)
}

fn read(source: &Source) -> Result<(Vec<u8>, String), String> {
    match source {
        Source::Stdin => {
            let mut text = Vec::new();
            std::io::stdin().read_to_end(&mut text).map_err(|e| format!("error: standard input: {e}"))?;
            Ok((text, "standard input".into()))
        }
        Source::File(path) => {
            let name = path.display().to_string();
            let text = std::fs::read(path).map_err(|e| format!("error: {name}: cannot read it: {e}"))?;
            Ok((text, name))
        }
    }
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("claveunica-gate: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let (source, strict) = match command {
        Command::Help => {
            // A closed stdout (`| head`) is not worth a panic; there is nobody left to tell.
            let _ = writeln!(out, "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            let _ = writeln!(out, "claveunica-gate {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Check { source, strict } => (source, strict),
        Command::Certify { options, out } => return run_certify(&options, out.as_deref()),
    };
    let (text, name) = match read(&source) {
        Ok(r) => r,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    // Not valid Unicode: pass it on lossily, so the gate's own checks judge the value.
    let env = |var: &str| std::env::var_os(var).map(|v| v.to_string_lossy().into_owned());
    let report = check(&text, &name, strict, &env);
    for l in &report.lines {
        if writeln!(out, "{l}").is_err() {
            break;
        }
    }
    ExitCode::from(report.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn arguments() {
        let file = |p: &str| Source::File(PathBuf::from(p));
        let cases = [
            (vec!["check", "c.json"], Ok(Command::Check { source: file("c.json"), strict: false })),
            (vec!["check", "--strict", "c.json"], Ok(Command::Check { source: file("c.json"), strict: true })),
            (vec!["check", "c.json", "--strict"], Ok(Command::Check { source: file("c.json"), strict: true })),
            (vec!["check", "-"], Ok(Command::Check { source: Source::Stdin, strict: false })),
            (vec!["check", "--", "-x.json"], Ok(Command::Check { source: file("-x.json"), strict: false })),
            (vec!["--help"], Ok(Command::Help)),
            (vec!["check", "-h"], Ok(Command::Help)),
            (vec!["-V"], Ok(Command::Version)),
            (vec!["certify", "-h"], Ok(Command::Help)),
        ];
        for (args, want) in cases {
            assert_eq!(parse(&args), want, "{args:?}");
        }
        for bad in [&[][..], &["chek", "c.json"], &["check"], &["check", "a", "b"], &["check", "--stric", "a"]] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn certify_arguments() {
        let Ok(Command::Certify { options, out }) = parse(&[
            "certify",
            "--path",
            "/tramites",
            "https://tramites.example.gob.cl",
            "--out",
            "evidence.md",
            "--provider",
            "http://127.0.0.1:8900",
        ]) else {
            panic!("not parsed")
        };
        assert_eq!(options.base.as_str(), "https://tramites.example.gob.cl/");
        assert_eq!((options.path.as_str(), options.login_path.as_str()), ("/tramites", "/claveunica/login"));
        assert_eq!(options.provider, "http://127.0.0.1:8900");
        assert_eq!(out, Some(PathBuf::from("evidence.md")));
        let defaults = parse(&["certify", "https://x.gob.cl"]);
        assert!(matches!(defaults, Ok(Command::Certify { ref options, out: None })
            if options.provider == "https://accounts.claveunica.gob.cl" && options.logout_path == "/claveunica/logout"));
        for bad in [
            &["certify"][..],
            &["certify", "ftp://x.gob.cl"],
            &["certify", "tramites.gob.cl"],
            &["certify", "https://a.gob.cl", "https://b.gob.cl"],
            &["certify", "https://a.gob.cl", "--path"],
            &["certify", "https://a.gob.cl", "--path", "tramites"],
            &["certify", "https://a.gob.cl", "--strict"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_placeholder_is_a_valid_distinct_key() {
        let (a, b) = (placeholder_key(), placeholder_key());
        assert_ne!(a, b);
        let doc = format!(
            r#"{{"issuer":"https://accounts.claveunica.gob.cl/openid","cluster":"c","client_id":"i",
               "client_secret_env":"S","redirect_uri":"https://x.gob.cl/cb","session_keys":["{a}","{b}"]}}"#
        );
        assert!(Config::from_json(doc.as_bytes(), &|_| Some("s".into())).is_ok());
    }
}
