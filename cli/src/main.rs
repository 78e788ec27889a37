//! `claveunica-gate`: operator commands for ClaveÚnica Gate.
//!
//! ```text
//! claveunica-gate check [--strict] <config.json | ->
//! claveunica-gate --help | --version
//! ```
//!
//! `check` validates a configuration with the code the filter itself runs at load time
//! ([`Config::from_json`]), so "ok" here means the proxy will accept it, then reviews it
//! against ClaveÚnica's certification checklist ([`claveunica_core::check::review`]).
//! Exit status: 0 valid (warnings allowed unless `--strict`), 1 invalid or, with `--strict`,
//! warned about, 2 usage error or unreadable file.

use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine as _;
use claveunica_core::check::{effective_endpoints, registration, review, Finding, Severity};
use claveunica_core::config::Config;

const USAGE: &str = "\
usage: claveunica-gate check [--strict] <config.json>
       claveunica-gate --help | --version

Commands:
  check   Validate a ClaveÚnica Gate configuration (a JSON file, or - for standard input)
          with the same code the filter runs, then print what the certification review
          reads: the endpoints in effect (each not on https://accounts.claveunica.gob.cl is
          flagged), what to register with ClaveÚnica (Redirect URI, Logout URI), and a
          warning, worded as the manual words it (required or recommended), for each thing
          to change (http, a port or an IP in redirect_uri, an inline client id or secret, no
          post-logout redirect, a scope other than `openid run name`, ...).

Options:
  --strict        exit 1 on warnings too, not only on errors
  -h, --help      print this help
  -V, --version   print the version

The variables named by client_id_env, client_secret_env and session_keys_env are read
from this shell.
When one is not set, a placeholder stands in and a note says to set it where the proxy runs.

Exit status: 0 valid; 1 invalid, or warnings with --strict; 2 usage error or unreadable file.";

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

/// What `check` prints, one line each, and its exit status.
#[derive(Debug)]
struct Report {
    lines: Vec<String>,
    status: u8,
}

/// The keys whose value names an environment variable, as `Config::from_json` reads them.
const ENV_KEYS: [&str; 3] = ["client_id_env", "client_secret_env", "session_keys_env"];

/// Which `*_env` key of the document names `var`, for a note that points at the right key.
fn env_key_naming(text: &[u8], var: &str) -> &'static str {
    let doc: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
    ENV_KEYS.into_iter().find(|k| doc.get(k).and_then(|v| v.as_str()) == Some(var)).unwrap_or("(environment)")
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
            Some(placeholder.clone())
        }
    };
    let result = Config::from_json(text, &lookup);

    let mut placeholder_keys = false;
    let mut env_notes = Vec::new();
    for var in missing.into_inner() {
        let key = env_key_naming(text, &var);
        placeholder_keys |= key == "session_keys_env";
        let what = match key {
            "session_keys_env" => "comma-separated base64 keys, newest first",
            "client_id_env" => "the client id",
            _ => "the secret",
        };
        env_notes.push(Finding {
            severity: Severity::Note,
            key,
            message: format!(
                "environment variable {var} is not set in this shell, so it was checked with a placeholder; set \
                 it where the proxy runs ({what}; Envoy: vm_config.environment_variables)"
            ),
        });
    }

    let mut lines = Vec::new();
    let config = match result {
        Ok(config) => config,
        Err(e) => {
            lines.extend(e.problems.iter().map(|p| format!("error: {p}")));
            lines.extend(env_notes.iter().map(line));
            return Report { lines, status: 1 };
        }
    };
    let mut findings = review(&config);
    if placeholder_keys {
        // The placeholder is one key; how many the real variable holds is unknown here.
        findings.retain(|f| f.key != "session_keys");
    }
    findings.extend(env_notes);
    // Stable: warnings first, each group in the order of the keys.
    findings.sort_by_key(|f| f.severity);

    lines.push(format!("ok: {name} is a valid ClaveÚnica Gate configuration"));
    // The review asks for evidence of the back-channel calls: these are the URLs they go to.
    lines.extend(effective_endpoints(&config).iter().map(|(_, what, url)| format!("endpoint: {what}: {url}")));
    lines.extend(registration(&config).iter().map(|(what, value)| format!("register: {what}: {value}")));
    lines.extend(findings.iter().map(line));
    let warned = findings.iter().any(|f| f.severity == Severity::Warning);
    Report { lines, status: u8::from(strict && warned) }
}

fn line(f: &Finding) -> String {
    let label = match f.severity {
        Severity::Warning => "warning",
        Severity::Note => "note",
    };
    format!("{label}: {}: {}", f.key, f.message)
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
        ];
        for (args, want) in cases {
            assert_eq!(parse(&args), want, "{args:?}");
        }
        for bad in [&[][..], &["chek", "c.json"], &["check"], &["check", "a", "b"], &["check", "--stric", "a"]] {
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
