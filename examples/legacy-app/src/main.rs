//! Legacy app: stands in for an agency's old web application behind the
//! ClaveÚnica gate, in the demo and the integration tests.
//!
//! ```text
//! legacy-app [--listen 127.0.0.1:8901] [--raw-echo] [--legacy-login]
//!            [--assertion-jwks URL --assertion-issuer ISS --assertion-audience AUD]
//! ```
//!
//! In the demo it shows the pattern an agency should copy: a home page that anyone may see
//! (the gate's rule makes it `optional`), offering the ClaveÚnica button to a visitor without
//! identity, with the old login as a secondary link while a `parallel` migration keeps it
//! (`--legacy-login`); and `/sesion-cerrada`, a public page where ClaveÚnica's logout lands,
//! rather than a protected page that would send the person straight back to the login form.
//!
//! It trusts whatever identity headers reach it, like the real legacy apps do,
//! which is exactly why the gate must strip forged ones. Given the `--assertion-*` options it
//! also verifies the gate's signed assertion (`assertion.rs`), as an app that might be reached
//! around the gate should, and its page says whether the identity was verified. With `format=json` in the
//! query it echoes the request (every header, in order, duplicates kept) so tests
//! can see what the gate forwarded; otherwise it renders a small HTML portal.
//!
//! For migration demos and tests it also plays the old login it is replacing:
//! `GET /login` shows the old form, `POST /login` with any RUN and clave sets a
//! `PHPSESSID` cookie and sends the browser to `/`. And with `app_logout=1` in the
//! query it answers `x-claveunica-logout: 1`, as an app that does not know the RUN
//! would, to ask the gate to end the ClaveÚnica session; `app_logout_header=NAME` answers
//! `NAME: 1` instead, for a gate configured with another `logout_response_header`. With
//! `cache=public` it answers `Cache-Control: public, max-age=600`, as an app that lets shared
//! caches keep its pages would, so tests can see the gate keep a person's answer out of them.
//!
//! A WebSocket handshake (`Upgrade: websocket`) gets `101 Switching Protocols` and then the
//! echo, raw, on the upgraded connection, so tests see what the upgrade request carried.
//!
//! Test aid: with `raw_header_hex=HEX` in the query it answers 200 with the header line whose
//! bytes are HEX written as they are (no HTTP library would write a non-UTF-8 name or value),
//! so tests can see what the gate does with whatever an application sends (`raw.rs`);
//! `raw_pad=N` appends N bytes `v` to the line (up to 1 MiB), for values longer than a URL.
//!
//! Test aid: with `--raw-echo` it serves nothing but the JSON echo, from its own HTTP/1.1
//! reader, which also reports the request's trailers (`raw_echo.rs`); tiny_http drops them.

mod assertion;
mod bulk;
mod raw;
mod raw_echo;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

// Escapes both quotes as well as `&`, `<` and `>`, so the one function serves element content
// and attribute values alike.
use html_escape::encode_quoted_attribute;

const USAGE: &str = "usage: legacy-app [--listen ADDR:PORT] [--raw-echo] [--legacy-login] \
[--assertion-jwks URL --assertion-issuer ISS --assertion-audience AUD]";
const WORKERS: usize = 4;
/// Identity headers the gate adds start with this (lower-case) prefix.
const IDENTITY_PREFIX: &str = "x-claveunica-";
/// Whether the home and the signed-out page offer the old login (`--legacy-login`), set once
/// at start.
static LEGACY_LOGIN: AtomicBool = AtomicBool::new(false);
/// The assertion's verifier, when the command line asks for one, set once at start.
static VERIFIER: OnceLock<assertion::Verifier> = OnceLock::new();
/// The old login's session cookie.
const LEGACY_COOKIE: &str = "PHPSESSID";
/// Bodies larger than this are not read (the old login form is tiny).
const MAX_BODY: u64 = 64 * 1024;

/// What the app looks at in a request, detached from tiny_http for testing.
#[derive(Debug, Default)]
struct Seen {
    method: String,
    path: String,
    query: String,
    /// Lower-cased names, values as received, in arrival order.
    headers: Vec<(String, String)>,
    body_len: u64,
    /// The body, up to [`MAX_BODY`] bytes.
    body: Vec<u8>,
}

/// What the app answers.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn wants_json(&self) -> bool {
        self.query_has("format", "json")
    }

    /// A query parameter's value (the first, if repeated), decoded.
    fn query_value(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
    }

    fn query_has(&self, name: &str, value: &str) -> bool {
        url::form_urlencoded::parse(self.query.as_bytes()).any(|(k, v)| k == name && v == value)
    }

    /// Whether the old login's session cookie came with the request.
    fn has_legacy_session(&self) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .any(|pair| pair.split_once('=').is_some_and(|(n, _)| n.trim() == LEGACY_COOKIE))
    }
}

/// Percent-decodes a header value and reads it as UTF-8, replacing invalid
/// sequences. `+` stays a plus: this is header encoding, not form encoding.
fn percent_decode_lossy(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(decoded) = hex {
                out.push(decoded);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The echo of a request, as JSON.
fn echo_value(seen: &Seen) -> serde_json::Value {
    let headers: Vec<[&str; 2]> = seen.headers.iter().map(|(n, v)| [n.as_str(), v.as_str()]).collect();
    serde_json::json!({
        "method": seen.method,
        "path": seen.path,
        "query": seen.query,
        "headers": headers,
        "body_len": seen.body_len,
    })
}

fn echo_json(seen: &Seen) -> String {
    echo_value(seen).to_string()
}

/// The home and every page behind the gate; `assertion` is the verdict on the request's signed
/// assertion when the app verifies them.
fn portal_html(seen: &Seen, legacy_login: bool, assertion: Option<&assertion::Verdict>) -> String {
    let decoded = |name: &str| percent_decode_lossy(seen.header(name).unwrap_or_default());
    let mut h = String::from(
        "<!DOCTYPE html>\n<html lang=\"es\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>Portal Legado — Demo</title>\n<style>\
body{font-family:Georgia,serif;background:#f4f1e8;margin:2em;color:#333}\
h1{color:#7a3e00}table{border-collapse:collapse;margin:1em 0}\
td,th{border:1px solid #b9a98a;padding:4px 10px;text-align:left;font-family:monospace;\
max-width:40em;overflow-wrap:anywhere}\
th{background:#e6dcc4}.hola{font-size:1.4em}.nada{color:#a00}.verificada{color:#060;font-weight:bold}\
</style>\n</head>\n<body>\n<h1>Portal Legado — Demo</h1>\n",
    );
    match seen.header("x-claveunica-run") {
        Some(run) => {
            h.push_str(&format!(
                "<p class=\"hola\">Hola, {} {}</p>\n<p>RUN {}</p>\n",
                encode_quoted_attribute(&decoded("x-claveunica-nombres")),
                encode_quoted_attribute(&decoded("x-claveunica-apellidos")),
                encode_quoted_attribute(run),
            ));
        }
        None => {
            h.push_str("<p class=\"nada\">No llegó identidad ClaveÚnica a esta aplicación</p>\n");
            if seen.has_legacy_session() {
                h.push_str("<p class=\"hola\">Sesión del login antiguo activa</p>\n");
            } else {
                h.push_str(&login_offer(legacy_login));
            }
        }
    }

    h.push_str("<h2>Cabeceras de identidad recibidas</h2>\n<table>\n<tr><th>cabecera</th><th>valor recibido</th><th>valor decodificado</th></tr>\n");
    for (name, value) in seen.headers.iter().filter(|(n, _)| n.starts_with(IDENTITY_PREFIX)) {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            encode_quoted_attribute(name),
            encode_quoted_attribute(value),
            encode_quoted_attribute(&percent_decode_lossy(value)),
        ));
    }
    h.push_str("</table>\n");
    if let Some(verdict) = assertion {
        h.push_str(&assertion::html(verdict));
    }

    let cookies: Vec<&str> = seen.headers.iter().filter(|(n, _)| n == "cookie").map(|(_, v)| v.as_str()).collect();
    let cookie_text = if cookies.is_empty() { "(ninguna)".to_string() } else { cookies.join(" | ") };
    let asked = if seen.query.is_empty() { seen.path.clone() } else { format!("{}?{}", seen.path, seen.query) };
    h.push_str(&format!(
        "<p>Cookie recibida: <code>{}</code></p>\n<p>Ruta pedida: <code>{} {}</code></p>\n",
        encode_quoted_attribute(&cookie_text),
        encode_quoted_attribute(&seen.method),
        encode_quoted_attribute(&asked),
    ));
    h.push_str(
        "<ul>\n\
<li><a href=\"/\">Inicio</a></li>\n\
<li><a href=\"/tramites/certificado?id=7\">Certificado de antecedentes (trámite 7)</a></li>\n\
<li><a href=\"/tramites/solicitudes\">Mis solicitudes</a></li>\n\
<li><a href=\"/?format=json\">Ver esta petición como JSON</a></li>\n\
<li><a href=\"/claveunica/logout\">Cerrar sesión</a></li>\n\
</ul>\n</body>\n</html>\n",
    );
    h
}

/// The ClaveÚnica button as the button manual describes it (the gate's own button page draws
/// the same one), and the old login as a plain secondary link while a migration keeps it.
fn login_offer(legacy_login: bool) -> String {
    let legacy = if legacy_login {
        "<p>¿No tienes ClaveÚnica? <a href=\"/login\">Ingresa con la clave del servicio</a></p>\n"
    } else {
        ""
    };
    format!(
        "<p><a class=\"cu-btn\" href=\"/claveunica/login?return_to=%2F\" aria-label=\"Iniciar sesión con ClaveÚnica\" \
style=\"display:inline-block;min-height:48px;box-sizing:border-box;padding:12px 14px;background:#0F69C4;color:#fff;\
font:700 16px/1.5 Roboto,system-ui,sans-serif;text-decoration:none;border-radius:4px\">Iniciar sesión</a></p>\n{legacy}"
    )
}

/// Where ClaveÚnica's logout sends the browser (the demo's `post_logout_redirect`): a public
/// page that says the session ended and offers to log in again.
fn signed_out_html(legacy_login: bool) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"es\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>Sesión cerrada — Portal Legado</title>\n</head>\n<body>\n<main>\n<h1>Sesión cerrada</h1>\n\
<p>Cerraste tu sesión en el Portal Legado y en ClaveÚnica.</p>\n{}<p><a href=\"/\">Ir al inicio</a></p>\n\
</main>\n</body>\n</html>\n",
        login_offer(legacy_login)
    )
}

/// The old login page this app had before ClaveÚnica.
fn legacy_login_html(error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"nada\">{}</p>\n", encode_quoted_attribute(e))).unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"es\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>Portal Legado — Ingreso</title>\n</head>\n<body>\n\
<h1>Portal Legado — Ingreso con clave del servicio</h1>\n{error}\
<form method=\"post\" action=\"/login\">\n\
<label>RUN <input name=\"run\" autocomplete=\"username\"></label>\n\
<label>Clave <input name=\"clave\" type=\"password\" autocomplete=\"current-password\"></label>\n\
<button type=\"submit\">Ingresar</button>\n</form>\n\
<p><a class=\"boton\" href=\"/claveunica/login?return_to=/\">Ingresar con ClaveÚnica</a></p>\n\
</body>\n</html>\n"
    )
}

/// 16 random bytes as hex, for the old login's session id.
fn random_session_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_err() {
        // Only a demo session id: the time will do.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn html(status: u16, body: String) -> Reply {
    Reply { status, headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())], body }
}

/// Everything the app answers, decided from what it saw.
fn handle(seen: &Seen) -> Reply {
    let mut reply = answer(seen);
    if seen.query_has("cache", "public") {
        reply.headers.push(("Cache-Control".into(), "public, max-age=600".into()));
    }
    reply
}

/// The answer before the cache header `cache=public` adds.
fn answer(seen: &Seen) -> Reply {
    let custom_logout = seen.query_value("app_logout_header");
    if seen.query_has("app_logout", "1") || custom_logout.is_some() {
        let mut reply = html(200, "<p>RUN desconocido</p>\n".into());
        reply.headers.push((custom_logout.unwrap_or_else(|| "x-claveunica-logout".into()), "1".into()));
        return reply;
    }
    if seen.path == "/login" && !seen.wants_json() {
        match seen.method.as_str() {
            "POST" => {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(&seen.body).into_owned().collect();
                let filled = |name: &str| form.iter().any(|(k, v)| k == name && !v.trim().is_empty());
                if !(filled("run") && filled("clave")) {
                    return html(400, legacy_login_html(Some("Ingrese su RUN y su clave")));
                }
                let cookie = format!("{LEGACY_COOKIE}={}; Path=/; HttpOnly", random_session_id());
                return Reply {
                    status: 303,
                    headers: vec![("Location".into(), "/".into()), ("Set-Cookie".into(), cookie)],
                    body: String::new(),
                };
            }
            _ => return html(200, legacy_login_html(None)),
        }
    }
    if seen.path == "/sesion-cerrada" && !seen.wants_json() {
        return html(200, signed_out_html(LEGACY_LOGIN.load(Ordering::Relaxed)));
    }
    if seen.wants_json() {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json; charset=utf-8".into())],
            body: echo_json(seen),
        }
    } else {
        let verdict = VERIFIER.get().map(|v| v.check(seen.header(assertion::HEADER)));
        html(200, portal_html(seen, LEGACY_LOGIN.load(Ordering::Relaxed), verdict.as_ref()))
    }
}

fn read_seen(request: &mut tiny_http::Request) -> Seen {
    let (path, query) = match request.url().split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (request.url().to_string(), String::new()),
    };
    let headers = request
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_string()))
        .collect();
    let headers: Vec<(String, String)> = headers;
    // The body is kept up to MAX_BODY and counted whole: draining it keeps the connection
    // reusable. An upgrade request (a WebSocket handshake) has no body, and tiny_http hands it
    // the raw connection as its "body", which would never end: the app answers it as a plain
    // GET (its echo, never 101) without reading.
    let mut body = Vec::new();
    let upgrade = headers.iter().any(|(n, _)| n == "upgrade");
    let mut body_len = 0;
    if !upgrade {
        let reader = request.as_reader();
        let kept = std::io::copy(&mut std::io::Read::take(&mut *reader, MAX_BODY), &mut body).unwrap_or(0);
        body_len = kept + std::io::copy(reader, &mut std::io::sink()).unwrap_or(0);
    }
    Seen { method: request.method().as_str().to_string(), path, query, headers, body_len, body }
}

fn respond(request: tiny_http::Request) {
    // Large bodies for the streaming tests (`/__bulk`, see bulk.rs).
    let Some(mut request) = bulk::serve(request) else { return };
    let seen = read_seen(&mut request);
    if let Some(mut line) = seen.query_value("raw_header_hex").and_then(|hex| raw::decode_hex(&hex)) {
        raw::pad(&mut line, seen.query_value("raw_pad").and_then(|n| n.parse().ok()).unwrap_or(0));
        eprintln!("{} {} 200 (raw header)", seen.method, seen.path);
        raw::answer_with_header(request.into_writer(), &line);
        return;
    }
    if seen.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        // A WebSocket handshake: switch protocols, send the echo as the first bytes on the
        // upgraded connection (not a WebSocket frame: tests read it raw), and close.
        eprintln!("{} {} 101", seen.method, seen.path);
        let switch = tiny_http::Response::empty(101);
        let mut stream = request.upgrade("websocket", switch);
        if let Err(e) = stream.write_all(echo_json(&seen).as_bytes()).and_then(|()| stream.flush()) {
            eprintln!("write failed: {e}");
        }
        return;
    }
    let reply = handle(&seen);
    let mut response = tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
    for (name, value) in &reply.headers {
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    eprintln!("{} {} {}", seen.method, seen.path, reply.status);
    if let Err(e) = request.respond(response) {
        eprintln!("write failed: {e}");
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    listen: String,
    /// Serve the raw echo (`raw_echo.rs`) instead of the portal.
    raw_echo: bool,
    /// Offer the old login beside ClaveÚnica's button.
    legacy_login: bool,
    /// Verify the gate's assertion: the keys' URL and what `iss` and `aud` must be.
    assertion: Option<(String, assertion::Expected)>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed =
        Args { listen: "127.0.0.1:8901".to_string(), raw_echo: false, legacy_login: false, assertion: None };
    let (mut jwks, mut issuer, mut audience) = (None, None, None);
    while let Some(arg) = args.next() {
        let valued = ["--listen", "--assertion-jwks", "--assertion-issuer", "--assertion-audience"];
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if valued.contains(&name) => (name.to_string(), Some(value.to_string())),
            _ => (arg.clone(), None),
        };
        if valued.contains(&name.as_str()) {
            let value = match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"))?,
            };
            let slot = match name.as_str() {
                "--assertion-jwks" => &mut jwks,
                "--assertion-issuer" => &mut issuer,
                "--assertion-audience" => &mut audience,
                _ => {
                    parsed.listen = value;
                    continue;
                }
            };
            *slot = Some(value);
        } else if arg == "--raw-echo" {
            parsed.raw_echo = true;
        } else if arg == "--legacy-login" {
            parsed.legacy_login = true;
        } else {
            return Err(format!("unknown argument {arg:?}\n{USAGE}"));
        }
    }
    parsed.assertion = match (jwks, issuer, audience) {
        (Some(jwks), Some(issuer), Some(audience)) => Some((jwks, assertion::Expected { issuer, audience })),
        (None, None, None) => None,
        // Verifying without knowing the issuer or the audience would take any gate's assertion
        // for any application.
        _ => return Err(format!("--assertion-jwks, --assertion-issuer and --assertion-audience go together\n{USAGE}")),
    };
    Ok(parsed)
}

/// Says where the app listens, the line the demo and the tests wait for.
fn announce(addr: std::net::SocketAddr) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "legacy-app listening on http://{addr}")?;
    stdout.flush()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Args { listen, raw_echo, legacy_login, assertion } = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    LEGACY_LOGIN.store(legacy_login, Ordering::Relaxed);
    if let Some((jwks, expected)) = assertion {
        // Set once, before any worker reads it.
        let _ = VERIFIER.set(assertion::Verifier::new(jwks, expected));
    }
    if raw_echo {
        let listener =
            std::net::TcpListener::bind(listen.as_str()).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        announce(listener.local_addr()?)?;
        raw_echo::serve(&listener);
        return Ok(());
    }
    let server = tiny_http::Server::http(listen.as_str()).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server.server_addr().to_ip().ok_or("listening socket has no IP address")?;
    announce(addr)?;

    let server = Arc::new(server);
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || loop {
                match server.recv() {
                    Ok(request) => respond(request),
                    Err(e) => eprintln!("accept failed: {e}"),
                }
            })
        })
        .collect();
    for w in workers {
        if w.join().is_err() {
            eprintln!("worker thread panicked");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_chooses_the_address_and_the_raw_echo() {
        let args = |list: &[&str]| parse_args(list.iter().map(|a| (*a).to_string()));
        assert_eq!(
            args(&[]),
            Ok(Args { listen: "127.0.0.1:8901".into(), raw_echo: false, legacy_login: false, assertion: None })
        );
        assert_eq!(
            args(&["--listen", "127.0.0.1:0", "--raw-echo"]),
            Ok(Args { listen: "127.0.0.1:0".into(), raw_echo: true, legacy_login: false, assertion: None })
        );
        assert_eq!(args(&["--listen=[::1]:80"]).map(|a| a.listen), Ok("[::1]:80".into()));
        assert!(args(&["--listen"]).is_err() && args(&["--echo"]).is_err());
        let verify = args(&[
            "--assertion-jwks",
            "http://g/jwks.json",
            "--assertion-issuer=http://g",
            "--assertion-audience",
            "app",
        ]);
        assert_eq!(
            verify.map(|a| a.assertion),
            Ok(Some((
                "http://g/jwks.json".into(),
                assertion::Expected { issuer: "http://g".into(), audience: "app".into() }
            )))
        );
        // All three or none: a verifier that knows no audience would take any application's.
        assert!(args(&["--assertion-jwks", "http://g/jwks.json", "--assertion-issuer", "http://g"]).is_err());
        assert!(args(&["--assertion-audience"]).is_err());
    }

    #[test]
    fn decodes_percent_encoded_utf8() {
        assert_eq!(percent_decode_lossy("De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez"), "De los Ríos Núñez");
        assert_eq!(percent_decode_lossy("a+b%2Bc"), "a+b+c");
        assert_eq!(percent_decode_lossy("100%"), "100%");
        assert_eq!(percent_decode_lossy("%zz%4"), "%zz%4");
        assert_eq!(percent_decode_lossy("%FF"), "\u{FFFD}");
        assert_eq!(percent_decode_lossy("%C3"), "\u{FFFD}");
    }

    #[test]
    fn escapes_html() {
        let html = portal_html(&seen(&[("x-claveunica-run", "<b>\"O'Higgins\" & Ñ</b>")], ""), false, None);
        assert!(html.contains("<p>RUN &lt;b&gt;&quot;O&#x27;Higgins&quot; &amp; Ñ&lt;/b&gt;</p>"));
    }

    fn seen(headers: &[(&str, &str)], query: &str) -> Seen {
        Seen {
            method: "GET".into(),
            path: "/x".into(),
            query: query.into(),
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            body_len: 0,
            body: Vec::new(),
        }
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_old_login_form_offers_claveunica() {
        let mut s = seen(&[], "");
        s.path = "/login".into();
        let reply = handle(&s);
        assert_eq!(reply.status, 200);
        assert!(reply.body.contains("Portal Legado — Ingreso con clave del servicio"));
        assert!(reply.body.contains("name=\"run\"") && reply.body.contains("name=\"clave\""));
        assert!(reply.body.contains("href=\"/claveunica/login?return_to=/\">Ingresar con ClaveÚnica</a>"));
    }

    #[test]
    fn the_old_login_sets_a_session_cookie_for_any_run_and_clave() {
        let mut s = seen(&[("content-type", "application/x-www-form-urlencoded")], "");
        s.method = "POST".into();
        s.path = "/login".into();
        s.body = b"run=12.345.678-5&clave=x".to_vec();
        let reply = handle(&s);
        assert_eq!(reply.status, 303);
        assert_eq!(header(&reply, "location"), Some("/"));
        let cookie = header(&reply, "set-cookie").unwrap();
        let (value, attrs) = cookie.strip_prefix("PHPSESSID=").unwrap().split_once(';').unwrap();
        assert_eq!(value.len(), 32);
        assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(attrs, " Path=/; HttpOnly");
        assert_ne!(random_session_id(), random_session_id());

        for body in ["run=1&clave=", "run=+&clave=x", "clave=x", ""] {
            s.body = body.as_bytes().to_vec();
            let reply = handle(&s);
            assert_eq!(reply.status, 400, "{body}");
            assert!(header(&reply, "set-cookie").is_none());
        }
    }

    #[test]
    fn the_portal_notices_the_old_session_only_without_identity() {
        let old = "Sesión del login antiguo activa";
        assert!(portal_html(&seen(&[("cookie", "a=1; PHPSESSID=ab")], ""), false, None).contains(old));
        assert!(!portal_html(&seen(&[("cookie", "a=1; XPHPSESSID=ab")], ""), false, None).contains(old));
        assert!(!portal_html(&seen(&[], ""), false, None).contains(old));
        let both = seen(&[("x-claveunica-run", "44444444-4"), ("cookie", "PHPSESSID=ab")], "");
        assert!(!portal_html(&both, false, None).contains(old));
    }

    #[test]
    fn app_logout_asks_the_gate_to_end_the_session() {
        let reply = handle(&seen(&[], "a=b&app_logout=1"));
        assert_eq!(reply.status, 200);
        assert_eq!(header(&reply, "x-claveunica-logout"), Some("1"));
        assert!(reply.body.contains("RUN desconocido"));
        assert!(header(&handle(&seen(&[], "app_logout=0")), "x-claveunica-logout").is_none());
        // Another header name, for a gate configured with another one.
        let custom = handle(&seen(&[], "app_logout_header=X-App-Logout"));
        assert_eq!(header(&custom, "x-app-logout"), Some("1"));
        assert!(header(&custom, "x-claveunica-logout").is_none());
        let echo = handle(&seen(&[], "format=json"));
        assert!(header(&echo, "content-type").unwrap().starts_with("application/json"));
        assert!(header(&echo, "cache-control").is_none());
        let cached = handle(&seen(&[], "format=json&cache=public"));
        assert_eq!(header(&cached, "cache-control"), Some("public, max-age=600"));
    }

    #[test]
    fn greets_the_identity_and_escapes_it() {
        let s = seen(
            &[
                ("x-claveunica-run", "44444444-4"),
                ("x-claveunica-nombres", "Mar%C3%ADa%20%3Cb%3E"),
                ("x-claveunica-apellidos", "N%C3%BA%C3%B1ez"),
                ("cookie", "a=1"),
            ],
            "",
        );
        let html = portal_html(&s, false, None);
        assert!(html.contains("Hola, María &lt;b&gt; Núñez"));
        assert!(html.contains("RUN 44444444-4"));
        assert!(html.contains("a=1"));
        assert!(!html.contains("No llegó identidad"));
        assert!(portal_html(&seen(&[], ""), false, None).contains("No llegó identidad ClaveÚnica"));
    }

    #[test]
    fn json_echo_keeps_every_header_in_order() {
        let s = seen(&[("x-a", "1"), ("cookie", "c"), ("x-a", "2")], "a=b&format=json");
        assert!(s.wants_json());
        assert!(!seen(&[], "format=html").wants_json());
        let v: serde_json::Value = serde_json::from_str(&echo_json(&s)).unwrap();
        assert_eq!(v["headers"], serde_json::json!([["x-a", "1"], ["cookie", "c"], ["x-a", "2"]]));
        assert_eq!(v["query"], "a=b&format=json");
        assert_eq!(v["path"], "/x");
    }

    #[test]
    fn the_home_offers_the_button_and_the_old_login_only_when_kept() {
        let button =
            "<a class=\"cu-btn\" href=\"/claveunica/login?return_to=%2F\" aria-label=\"Iniciar sesión con ClaveÚnica\"";
        let legacy = "<a href=\"/login\">Ingresa con la clave del servicio</a>";
        let anonymous = portal_html(&seen(&[], ""), false, None);
        assert!(anonymous.contains(button) && !anonymous.contains(legacy), "{anonymous}");
        let kept = portal_html(&seen(&[], ""), true, None);
        assert!(kept.contains(button) && kept.contains(legacy), "{kept}");
        assert!(kept.find(legacy) > kept.find(button), "the old login comes after the button");
        // With identity, no button.
        assert!(!portal_html(&seen(&[("x-claveunica-run", "44444444-4")], ""), true, None).contains(button));
        let mut s = seen(&[], "");
        s.path = "/sesion-cerrada".into();
        let reply = handle(&s);
        assert_eq!(reply.status, 200);
        assert!(reply.body.contains("<h1>Sesión cerrada</h1>") && reply.body.contains(button), "{}", reply.body);
    }
}
