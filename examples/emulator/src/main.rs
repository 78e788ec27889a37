//! ClaveÚnica emulator: a single-process, in-memory stand-in for the real
//! ClaveÚnica OpenID Connect service, so agencies can develop without sandbox
//! credentials and the integration tests can drive a full login over HTTP.
//!
//! ```text
//! claveunica-emulator [--listen 127.0.0.1:8900] [--issuer URL]
//!                     [--client-id ID] [--client-secret S]
//!                     [--redirect-uri URL] [--logout-uri URL]...
//!                     [--client ID,SECRET,REDIRECT_URI[,LOGOUT_URI]...]... [--numero-as-string]
//! ```
//!
//! `--redirect-uri` and `--logout-uri` are what an agency registers with its credentials: the
//! one redirect URI accepted (exact comparison), and the Logout URIs whose authorities
//! (`host[:port]`, all ClaveÚnica registers of them) the logout endpoint redirects to (a URL or a
//! bare authority; repeat the flag, or separate with commas, for several). Without either, the emulator accepts any
//! http(s) redirect URI and logout target, a development convenience the real service lacks.
//!
//! `--client` registers a further client beside the one of `--client-id` (one agency running
//! several portals, each with its own credentials): its id, secret, its one redirect URI (exact
//! comparison) and its Logout URIs, separated by commas (so none of them may contain one).
//! Repeat it for more. Each client is checked on its own: at the authorization endpoint its
//! id and its redirect URI, at the token endpoint its id and secret, and the code must have
//! been issued to it. The logout endpoint names no client, so it accepts the Logout URIs of
//! all of them.
//!
//! Once bound it prints `claveunica-emulator listening on http://ADDR` on stdout
//! (tests wait for that line), then logs one line per request on stderr.
//!
//! Test aids, not part of ClaveÚnica:
//!
//! - `GET /__emulator/stats` answers `{"jwks": n, "token": n, "userinfo": n, "authorize": n}`,
//!   how many requests each endpoint has received since start (any method, any outcome), so
//!   tests can check how often a relying party calls the provider.
//! - `POST /__emulator/mode` switches the provider into a misbehaving mode at run time: broken
//!   ID tokens, bad userinfo, and faults (slow, 500, HTML, truncated, closed connection) on the
//!   token, userinfo or JWKS endpoint. The JSON it takes is described in `src/modes.rs`;
//!   `GET /__emulator/mode` shows the settings in force.
//! - `POST /__emulator/rotate-key` makes a new signing key with a new kid and answers
//!   `{"kid": "..."}`. The JWKS then publishes only the new key, or with
//!   `{"keep_old": true}` the old ones too.
//! - `GET /__emulator/issued` answers `{"codes": [...], "access_tokens": [...], "id_tokens":
//!   [...]}`, the last 64 of each handed out (newest last; used, expired and deliberately broken
//!   ones too), so tests can check that a relying party never logs them.
//!
//! HTTP is served by hyper on a single-threaded tokio runtime, each connection on its own task
//! (see `src/server.rs`), so a slow answer holds up no one else.

mod endpoints;
mod http;
mod modes;
mod server;
mod state;
mod tokens;
mod users;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use endpoints::{App, Client, Config};

const USAGE: &str = "usage: claveunica-emulator [--listen ADDR:PORT] [--issuer URL] \
[--client-id ID] [--client-secret SECRET] [--redirect-uri URL] [--logout-uri URL]... \
[--client ID,SECRET,REDIRECT_URI[,LOGOUT_URI]...]... [--numero-as-string]";

const VALUE_FLAGS: &[&str] =
    &["--listen", "--issuer", "--client-id", "--client-secret", "--redirect-uri", "--logout-uri", "--client"];

#[derive(Debug)]
struct Args {
    listen: String,
    issuer: Option<String>,
    client_id: String,
    client_secret: String,
    redirect_uri: Option<String>,
    logout_uris: Vec<String>,
    /// The clients of `--client`, after the one above.
    more_clients: Vec<Client>,
    numero_as_string: bool,
}

/// A `--client ID,SECRET,REDIRECT_URI[,LOGOUT_URI]...` value.
fn parse_client(value: &str) -> Result<Client, String> {
    let mut parts = value.split(',');
    let mut next = |what: &str| {
        parts
            .next()
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("--client {value:?}: no {what} (ID,SECRET,REDIRECT_URI[,LOGOUT_URI]...)"))
    };
    let (id, secret, redirect_uri) = (next("client id")?, next("secret")?, next("redirect URI")?);
    if !endpoints::is_plain_http_url(&redirect_uri) {
        return Err(format!("--client {value:?}: {redirect_uri:?} is not an absolute http(s) URL"));
    }
    let logout_uris: Vec<String> = parts.map(str::to_string).collect();
    if let Some(bad) = logout_uris.iter().find(|u| endpoints::logout_authority(u).is_none()) {
        return Err(format!("--client {value:?}: the Logout URI {bad:?} names no host"));
    }
    Ok(Client { id, secret, redirect_uri: Some(redirect_uri), logout_uris })
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        listen: "127.0.0.1:8900".into(),
        issuer: None,
        client_id: "demo-client".into(),
        client_secret: "demo-secret".into(),
        redirect_uri: None,
        logout_uris: Vec::new(),
        more_clients: Vec::new(),
        numero_as_string: false,
    };
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        if flag == "--numero-as-string" {
            parsed.numero_as_string = true;
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        if !VALUE_FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown argument {arg:?}\n{USAGE}"));
        }
        let value = match inline {
            Some(v) => v,
            None => args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?,
        };
        match flag.as_str() {
            "--listen" => parsed.listen = value,
            "--issuer" => parsed.issuer = Some(value),
            "--client-id" => parsed.client_id = value,
            "--client-secret" => parsed.client_secret = value,
            "--redirect-uri" => parsed.redirect_uri = Some(value),
            "--logout-uri" => parsed.logout_uris.push(value),
            "--client" => parsed.more_clients.push(parse_client(&value)?),
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    let mut ids: Vec<&str> = vec![&parsed.client_id];
    for client in &parsed.more_clients {
        if ids.contains(&client.id.as_str()) {
            return Err(format!("client id {:?} registered twice", client.id));
        }
        ids.push(&client.id);
    }
    Ok(parsed)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    if let Some(uri) = &args.redirect_uri {
        if !endpoints::is_plain_http_url(uri) {
            return Err(format!("--redirect-uri {uri:?} is not an absolute http(s) URL").into());
        }
    }
    for uri in args.logout_uris.iter().flat_map(|u| u.split(',')) {
        if endpoints::logout_authority(uri).is_none() {
            return Err(format!("--logout-uri {uri:?} names no host").into());
        }
    }
    let keys = tokens::Keys::generate()?;
    let listener =
        TcpListener::bind(args.listen.as_str()).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    let issuer = args.issuer.clone().unwrap_or_else(|| format!("http://{addr}/openid"));
    let issuer_url = url::Url::parse(&issuer).map_err(|e| format!("--issuer {issuer:?}: {e}"))?;
    if !matches!(issuer_url.scheme(), "http" | "https") || !issuer_url.has_host() {
        return Err(format!("--issuer {issuer:?} is not an http(s) URL").into());
    }
    let config = Config {
        origin: issuer_url.origin().ascii_serialization(),
        issuer,
        clients: std::iter::once(Client {
            id: args.client_id,
            secret: args.client_secret,
            redirect_uri: args.redirect_uri,
            logout_uris: args.logout_uris,
        })
        .chain(args.more_clients)
        .collect(),
        numero_as_string: args.numero_as_string,
    };
    let app = Arc::new(App::new(config, keys));

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "claveunica-emulator listening on http://{addr}")?;
    stdout.flush()?;
    drop(stdout);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    runtime.block_on(server::serve(listener, app, now_secs))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_and_flags() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.listen, "127.0.0.1:8900");
        assert_eq!(a.client_id, "demo-client");
        assert!(!a.numero_as_string);
        let a = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--client-secret=s3",
            "--numero-as-string",
            "--redirect-uri",
            "http://app.localhost/cb/",
            "--logout-uri",
            "http://app.localhost/",
            "--logout-uri=https://other.example/bye",
        ])
        .unwrap();
        assert_eq!(a.listen, "127.0.0.1:0");
        assert_eq!(a.client_secret, "s3");
        assert!(a.numero_as_string);
        assert_eq!(a.redirect_uri.as_deref(), Some("http://app.localhost/cb/"));
        assert_eq!(a.logout_uris, ["http://app.localhost/", "https://other.example/bye"]);
        assert!(parse(&["--bogus", "x"]).is_err_and(|e| e.contains("unknown")));
        assert!(parse(&["--bogus"]).is_err_and(|e| e.contains("unknown")));
        assert!(parse(&["--issuer"]).is_err());
    }

    #[test]
    fn further_clients_are_registered_beside_the_first() {
        let a = parse(&[
            "--client",
            "client-a,sa,http://a.test:8000/claveunica/callback",
            "--client-id=first",
            "--client=client-b,sb,http://b.test:8000/cb,http://b.test:8000/,c.test",
        ])
        .unwrap();
        assert_eq!(a.client_id, "first", "the single-client flags keep working beside --client");
        let got: Vec<_> = a
            .more_clients
            .iter()
            .map(|c| (c.id.as_str(), c.secret.as_str(), c.redirect_uri.as_deref(), c.logout_uris.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("client-a", "sa", Some("http://a.test:8000/claveunica/callback"), vec![]),
                (
                    "client-b",
                    "sb",
                    Some("http://b.test:8000/cb"),
                    vec!["http://b.test:8000/".to_string(), "c.test".to_string()]
                ),
            ]
        );
        for bad in
            ["client-a", "client-a,sa", "client-a,,http://a.test/cb", "client-a,sa,a.test/cb", "x,s,http://a/cb,"]
        {
            assert!(parse(&["--client", bad]).is_err(), "{bad:?} was accepted");
        }
        assert!(parse(&["--client", "demo-client,s,http://a/cb"]).is_err_and(|e| e.contains("twice")));
        assert!(
            parse(&["--client", "c,s,http://a/cb", "--client", "c,t,http://b/cb"]).is_err_and(|e| e.contains("twice"))
        );
    }
}
