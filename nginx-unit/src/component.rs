//! The wasi:http adapter: `wasi:http/incoming-handler` over the core, for NGINX Unit's
//! `wasm-wasi-component` applications and `wasmtime serve`.
//!
//! It only translates, as the Envoy adapter does: facts go in (headers, the wall clock,
//! `wasi:random` bytes, call answers), decisions come out. Unlike Envoy, nothing here forwards
//! the request for us, so the component is the reverse proxy too: provider calls and the
//! forwarded request go out through `wasi:http/outgoing-handler`, and bodies are copied in
//! chunks of [`CHUNK`] bytes in both directions, never held whole.
//!
//! Fail closed: whatever the host fails at (no configuration, a header it refuses, an
//! unreachable application) gets the core's answer for it; no path forwards a request the core
//! did not decide to forward. A panic would abort the instance (the release profile aborts),
//! and the host would answer 500; nothing here unwraps outside input.

use std::cell::RefCell;
use std::rc::Rc;

use claveunica_core::config::{Config, UnitSettings};
use claveunica_core::gate::{
    access_line, fail_closed, AnswerChange, Call, CallOutcome, Decision, Entropy, EntropyUnavailable, Forward, Gate,
    HostFailure, Level, LogLine, Outbound, Request, Response, UpstreamAnswer,
};
use claveunica_core::protocol::oidc::jwks::KeyCache;
use claveunica_core::protocol::oidc::MAX_BODY_LEN;
use url::Url;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingRequest, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, OutgoingResponse, RequestOptions, ResponseOutparam, Scheme,
};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

use crate::forward::{self, Changes, Origin, Target};

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "CLAVEUNICA_GATE_CONFIG";
/// Where the configuration is read from when [`CONFIG_ENV`] is not set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/claveunica-gate/config.json";
/// Bodies move in pieces of at most this size: a 50 MB upload costs the instance 64 KiB.
const CHUNK: u64 = 64 * 1024;
/// Nanoseconds per millisecond, for `RequestOptions`.
const NS_PER_MS: u64 = 1_000_000;

struct Component;

impl wasi::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        serve(request, response_out);
    }
}

// The macro writes the `extern "C"` export the host calls.
#[allow(unsafe_code)]
mod export {
    use super::Component;
    wasi::http::proxy::export!(Component);
}

/// The loaded configuration: one per instance. wasmtime serve (and Unit) may instantiate the
/// component per request, so this is often read once per request; it is small.
struct Loaded {
    gate: Gate,
    upstream: Url,
}

thread_local! {
    static LOADED: RefCell<Option<Rc<Loaded>>> = const { RefCell::new(None) };
    /// ClaveÚnica's keys, per instance: without shared state between instances, a login in a
    /// fresh instance fetches the JWKS once (the core asks when a `kid` is unknown).
    static KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
}

fn log(level: Level, message: &str) {
    let level = match level {
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    };
    // stderr is the host's log: Unit's error log, wasmtime serve's stderr. The line is
    // written whole, in one call: std's stderr is unbuffered, so `eprintln!` would hand each
    // formatted piece to the host separately (several host calls each, per line, per request),
    // and lines of instances running at once could interleave mid-line.
    let line = format!("claveunica-gate {level}: {message}\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
}

fn log_line(line: &LogLine) {
    log(line.level, &line.message);
}

fn now() -> u64 {
    wasi::clocks::wall_clock::now().seconds
}

/// `wasi:random`, which the host serves from the operating system's random source.
struct HostEntropy;

impl Entropy for HostEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyUnavailable> {
        let len = u64::try_from(buf.len()).map_err(|_| EntropyUnavailable)?;
        let bytes = wasi::random::random::get_random_bytes(len);
        if bytes.len() != buf.len() {
            return Err(EntropyUnavailable);
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }
}

/// Reads and compiles the configuration, once per instance.
fn load() -> Result<Rc<Loaded>, String> {
    if let Some(loaded) = LOADED.with(|l| l.borrow().clone()) {
        return Ok(loaded);
    }
    let path = std::env::var(CONFIG_ENV).unwrap_or_else(|_| DEFAULT_CONFIG_PATH.to_string());
    let bytes = std::fs::read(&path).map_err(|e| {
        format!("invalid configuration: cannot read {path} ({e}); set {CONFIG_ENV} and give the component access to it")
    })?;
    let (config, UnitSettings { upstream }) =
        Config::for_unit(&bytes, &|name| std::env::var(name).ok()).map_err(|e| e.to_string())?;
    log(
        Level::Info,
        &format!(
            "configured: issuer={} upstream={upstream} callback={} migration={}",
            config.issuer,
            config.callback_path,
            config.migration.mode.as_str()
        ),
    );
    // The ledger of spent login attempts lives in this instance's memory (the core's
    // `MemoryStore`): wasi:http gives instances nothing to share, and wasmtime serve and Unit
    // make an instance per request, so a replayed callback is not caught here as it is on
    // Envoy (nginx-unit/README.md says what holds instead).
    let loaded = Rc::new(Loaded { gate: Gate::new(config), upstream });
    LOADED.with(|l| *l.borrow_mut() = Some(Rc::clone(&loaded)));
    Ok(loaded)
}

fn method_str(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

fn scheme_of(name: &str) -> Scheme {
    match name {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    }
}

/// Fails closed with the core's answer for what the host failed at.
fn fail(out: ResponseOutparam, failure: HostFailure, detail: &str) {
    respond(out, &fail_closed(failure, detail, &mut HostEntropy));
}

/// Everything for one request.
fn serve(request: IncomingRequest, out: ResponseOutparam) {
    let loaded = match load() {
        Ok(loaded) => loaded,
        Err(message) => {
            // No gate, no forwarding: the application stays closed until the file is fixed.
            log(Level::Error, &message);
            return fail(out, HostFailure::NotConfigured, "no configuration loaded");
        }
    };
    let gate = &loaded.gate;
    let method = request.method();
    let path = request.path_with_query().unwrap_or_else(|| "/".into());
    let mut raw: Vec<(String, Vec<u8>)> = request.headers().entries();
    let mut random = [0u8; 16];
    // Without randomness the id is all zeros: still one line per request, just not unique.
    let _ = HostEntropy.fill(&mut random);
    forward::ensure_request_id(&mut raw, random);
    // Values are bytes on the wire; invalid UTF-8 must not fail the request.
    let owned: Vec<(&str, std::borrow::Cow<'_, str>)> =
        raw.iter().map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v))).collect();
    let mut headers: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_ref())).collect();
    // The core picks the site by the request's authority, which wasi:http hands apart from
    // the headers (an HTTP/2 request has no `Host`); it goes to the core only, never upstream.
    let authority = request.authority();
    headers.extend(authority.as_deref().map(|a| (":authority", a)));
    let core_request = Request { method: method_str(&method), path: &path, headers: &headers };
    let mut decision = gate.on_request(&core_request, now(), &mut HostEntropy);
    loop {
        decision = match decision {
            Decision::Call(call) => provider_call(gate, *call),
            Decision::Respond(r) => return respond(out, &r),
            Decision::Forward(f) => {
                if let Some(subject) = &f.access {
                    // The access register (Decreto 9): one line per authenticated access, since
                    // this host has no access log that could carry the person.
                    let id = headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("x-request-id")).map(|(_, v)| *v);
                    log(Level::Info, &access_line(subject, method_str(&method), now(), id));
                }
                return proxy(&loaded, request, out, &method, &path, &raw, f);
            }
        };
    }
}

/// Makes the call the core asked for and hands it the answer.
fn provider_call(gate: &Gate, call: Call) -> Decision {
    if let Some(line) = &call.log {
        log_line(line);
    }
    let answer = fetch(&call.request);
    let outcome = match &answer {
        Ok((status, body)) => CallOutcome::Answered { status: *status, body },
        Err(why) => {
            let r = &call.request;
            log(Level::Warn, &format!("call to {}://{}{} failed: {why}", r.scheme, r.authority, r.path));
            CallOutcome::Failed
        }
    };
    KEYS.with(|keys| match keys.try_borrow_mut() {
        Ok(mut keys) => gate.on_call_response(call.pending, outcome, now(), &mut HostEntropy, &mut keys),
        // Cannot happen on one thread; an empty cache fails the login safely.
        Err(_) => gate.on_call_response(call.pending, outcome, now(), &mut HostEntropy, &mut KeyCache::default()),
    })
}

/// One call to the provider: a small request, an answer read up to one byte more than the
/// core accepts (so it can tell "too large" from "just fits").
fn fetch(call: &Outbound) -> Result<(u16, Vec<u8>), String> {
    let headers = Fields::new();
    for (name, value) in &call.headers {
        headers.append(name, value.as_bytes()).map_err(|e| format!("header {name}: {e:?}"))?;
    }
    if let Some(body) = &call.body {
        // A length, not chunked encoding: providers' form parsers expect one.
        headers.append("content-length", body.len().to_string().as_bytes()).map_err(|e| format!("{e:?}"))?;
    }
    let request = OutgoingRequest::new(headers);
    let method = if call.method == "POST" { Method::Post } else { Method::Get };
    request.set_method(&method).map_err(|()| "method refused".to_string())?;
    request.set_scheme(Some(&scheme_of(call.scheme))).map_err(|()| "scheme refused".to_string())?;
    request.set_authority(Some(&call.authority)).map_err(|()| "authority refused".to_string())?;
    request.set_path_with_query(Some(&call.path)).map_err(|()| "path refused".to_string())?;
    let body = match &call.body {
        Some(_) => Some(request.body().map_err(|()| "no request body".to_string())?),
        None => None,
    };
    let timeout = Some(call.timeout_ms.saturating_mul(NS_PER_MS));
    let options = RequestOptions::new();
    // A host that does not support one of these keeps its default; the call still goes.
    let _ = options.set_connect_timeout(timeout);
    let _ = options.set_first_byte_timeout(timeout);
    let _ = options.set_between_bytes_timeout(timeout);
    let future = outgoing_handler::handle(request, Some(options)).map_err(|e| format!("{e:?}"))?;
    if let (Some(body), Some(bytes)) = (body, &call.body) {
        let stream = body.write().map_err(|()| "no request body stream".to_string())?;
        write_all(&stream, bytes).map_err(|e| stream_error("writing the request", e))?;
        drop(stream);
        OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    }
    let response = wait(&future)?;
    let status = response.status();
    let body = response.consume().map_err(|()| "no response body".to_string())?;
    let answer = read_capped(&body, MAX_BODY_LEN + 1);
    // The trailers are of no interest; finishing releases the body.
    drop(IncomingBody::finish(body));
    Ok((status, answer?))
}

fn wait(future: &FutureIncomingResponse) -> Result<IncomingResponse, String> {
    future.subscribe().block();
    match future.get() {
        Some(Ok(Ok(response))) => Ok(response),
        Some(Ok(Err(code))) => Err(error_code(&code)),
        Some(Err(())) => Err("the answer was already taken".into()),
        None => Err("no answer after waiting".into()),
    }
}

fn error_code(code: &ErrorCode) -> String {
    // The variant names say enough (ConnectionRefused, ConnectionTimeout, ...).
    let text = format!("{code:?}");
    text.chars().take(200).collect()
}

fn stream_error(what: &str, e: StreamError) -> String {
    match e {
        StreamError::Closed => format!("{what}: stream closed"),
        StreamError::LastOperationFailed(e) => format!("{what}: {}", e.to_debug_string()),
    }
}

/// Reads a body up to `cap` bytes; what is beyond stays unread.
fn read_capped(body: &IncomingBody, cap: usize) -> Result<Vec<u8>, String> {
    let stream = body.stream().map_err(|()| "no body stream".to_string())?;
    let mut out = Vec::new();
    while out.len() < cap {
        let want = u64::try_from(cap - out.len()).unwrap_or(CHUNK).min(CHUNK);
        match stream.blocking_read(want) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(stream_error("reading the answer", e)),
        }
    }
    Ok(out)
}

/// Writes all of `data`, never more at once than the stream says it takes.
fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), StreamError> {
    if data.is_empty() {
        return Ok(());
    }
    let ready = stream.subscribe();
    while !data.is_empty() {
        let room = stream.check_write()?;
        if room == 0 {
            ready.block();
            continue;
        }
        let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
        let (now, rest) = data.split_at(n);
        stream.write(now)?;
        data = rest;
    }
    drop(ready);
    match stream.blocking_flush() {
        // The host closes a body's stream as soon as the declared Content-Length is written:
        // everything is out, and finishing the body checks the count.
        Ok(()) | Err(StreamError::Closed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why a streamed copy stopped early.
enum CopyError {
    Read(String),
    Write(String),
}

/// Copies a stream to another in chunks; returns the bytes copied.
fn copy(from: &InputStream, to: &OutputStream) -> Result<u64, CopyError> {
    let mut total: u64 = 0;
    loop {
        match from.blocking_read(CHUNK) {
            Ok(chunk) => {
                write_all(to, &chunk).map_err(|e| CopyError::Write(stream_error("write", e)))?;
                total = total.saturating_add(chunk.len() as u64);
            }
            Err(StreamError::Closed) => break,
            Err(e) => return Err(CopyError::Read(stream_error("read", e))),
        }
    }
    Ok(total)
}

/// Forwards the request to the application and streams its answer back.
fn proxy(
    loaded: &Loaded,
    request: IncomingRequest,
    out: ResponseOutparam,
    method: &Method,
    path: &str,
    raw: &[(String, Vec<u8>)],
    f: Forward,
) {
    let gate = &loaded.gate;
    if let Some(line) = &f.log {
        log_line(line);
    }
    let target = forward::upstream_target(&loaded.upstream, path);
    let changes = Changes { remove: &f.remove, set: &f.set, cookie: &f.cookie };
    let public = forward::public_origin(&gate.site_config(&f.upstream).redirect_uri);
    let headers = forward::upstream_headers(raw, changes, Origin { proto: &public.0, host: public.1.as_deref() });
    let fields = Fields::new();
    for (name, value) in &headers {
        if let Err(e) = fields.append(name, value) {
            if f.set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                // Forwarding without the identity would hand the app an anonymous request it
                // believes identified; refuse instead.
                return fail(out, HostFailure::HeaderRewrite, &format!("setting {name}: {e:?}"));
            }
            // The host refuses some names (forbidden in wasi:http); the request goes without.
            log(Level::Warn, &format!("request header {name} not forwarded ({e:?})"));
        }
    }
    let upstream = OutgoingRequest::new(fields);
    let addressed = upstream
        .set_method(method)
        .and_then(|()| upstream.set_scheme(Some(&scheme_of(&target.scheme))))
        .and_then(|()| upstream.set_authority(Some(&target.authority)))
        .and_then(|()| upstream.set_path_with_query(Some(&target.path_with_query)));
    if addressed.is_err() {
        return fail(
            out,
            HostFailure::Internal,
            &format!("could not address the upstream request to {}", target.authority),
        );
    }
    // Whether a body follows is known only by reading it (an HTTP/2 body may come without a
    // length). The first piece is read before the upstream request is made, so that an empty
    // body (a GET) goes upstream as no body at all rather than as an empty chunked one.
    let Ok(down) = request.consume() else {
        return fail(out, HostFailure::Internal, "could not take the request body");
    };
    let Ok(from) = down.stream() else {
        return fail(out, HostFailure::Internal, "could not open the request body");
    };
    let first = match from.blocking_read(CHUNK) {
        Ok(chunk) => Some(chunk),
        Err(StreamError::Closed) => None,
        Err(e) => return fail(out, HostFailure::RequestBody, &stream_error("read", e)),
    };
    let up = match &first {
        Some(_) => match upstream.body() {
            Ok(up) => Some(up),
            Err(()) => return fail(out, HostFailure::Internal, "could not open the upstream request body"),
        },
        None => None,
    };
    let options = RequestOptions::new();
    // Only the connect is bounded: legacy applications may take their time to answer.
    let _ = options.set_connect_timeout(Some(gate.config().timeout_ms.saturating_mul(NS_PER_MS)));
    let future = match outgoing_handler::handle(upstream, Some(options)) {
        Ok(future) => future,
        Err(code) => return app_unavailable(out, &target, &error_code(&code)),
    };
    if let (Some(up), Some(first)) = (up, first) {
        if let Err(why) = upload(&up, &first, &from) {
            // Dropping the body unfinished tells the host the request is incomplete: the
            // application never sees a truncated body as a whole one.
            log(Level::Warn, &format!("request body not forwarded whole: {why}"));
            drop(up);
            drop(future);
            return app_unavailable(out, &target, &why);
        }
        // The stream is the body's child: it goes first. Then the client's trailers, less
        // those the core names (identity never comes from a trailer).
        drop(from);
        let trailers = request_trailers(gate, down);
        if let Err(e) = OutgoingBody::finish(up, trailers) {
            return app_unavailable(out, &target, &error_code(&e));
        }
    } else {
        drop(from);
        drop(IncomingBody::finish(down));
    }
    let answer = match wait(&future) {
        Ok(answer) => answer,
        Err(why) => return app_unavailable(out, &target, &why),
    };
    let status = answer.status();
    let answer_headers = answer.headers().entries();
    let text: Vec<std::borrow::Cow<'_, str>> = answer_headers.iter().map(|(_, v)| String::from_utf8_lossy(v)).collect();
    let seen: Vec<(&str, &str)> =
        answer_headers.iter().zip(&text).map(|((n, _), v)| (n.as_str(), v.as_ref())).collect();
    let (set, add) = match gate.on_upstream_response(f.upstream, &UpstreamAnswer { status, headers: &seen }) {
        AnswerChange::Pass { set, add } => (set, add),
        // The application's answer is replaced; its body is never read.
        AnswerChange::Replace(r) => return respond(out, &r),
    };
    let fields = Fields::new();
    for (name, value) in forward::downstream_headers(&answer_headers, forward::is_bodyless(method_str(method), status))
    {
        // A header the gate sets replaces every copy of the application's.
        if set.iter().any(|(s, _)| s.eq_ignore_ascii_case(&name)) {
            continue;
        }
        if let Err(e) = fields.append(&name, &value) {
            log(Level::Warn, &format!("response header {name} not passed on ({e:?})"));
        }
    }
    for (name, value) in &set {
        if let Err(e) = fields.append(name, value.as_bytes()) {
            // The answer is one person's and could not be marked so: not sent.
            return respond(
                out,
                &fail_closed(HostFailure::HeaderRewrite, &format!("setting {name}: {e:?}"), &mut HostEntropy),
            );
        }
    }
    for (name, value) in &add {
        if let Err(e) = fields.append(name, value.as_bytes()) {
            log(Level::Error, &format!("could not add the gate's {name} ({e:?})"));
        }
    }
    let response = OutgoingResponse::new(fields);
    if response.set_status_code(status).is_err() {
        return app_unavailable(out, &target, &format!("status {status} refused"));
    }
    let (Ok(down), Ok(up)) = (response.body(), answer.consume()) else {
        return app_unavailable(out, &target, "no answer body");
    };
    ResponseOutparam::set(out, Ok(response));
    match download(&up, &down) {
        Ok(()) => {
            drop(IncomingBody::finish(up));
            if let Err(e) = OutgoingBody::finish(down, None) {
                log(Level::Warn, &format!("answer body not finished: {}", error_code(&e)));
            }
        }
        // The status is out already; an unfinished body makes the host cut the answer short,
        // so the browser sees a broken download, not a complete wrong one.
        Err(why) => log(Level::Warn, &format!("answer body cut short: {why}")),
    }
}

/// Sends the request body upstream: the piece already read, then the rest as it comes.
fn upload(up: &OutgoingBody, first: &[u8], from: &InputStream) -> Result<(), String> {
    let to = up.write().map_err(|()| "no upstream body stream".to_string())?;
    write_all(&to, first).map_err(|e| format!("to the application: {}", stream_error("write", e)))?;
    copy(from, &to).map(drop).map_err(|e| match e {
        CopyError::Read(why) => format!("from the client: {why}"),
        CopyError::Write(why) => format!("to the application: {why}"),
    })
}

fn download(up: &IncomingBody, down: &OutgoingBody) -> Result<(), String> {
    let from = up.stream().map_err(|()| "no answer body stream".to_string())?;
    let to = down.write().map_err(|()| "no response body stream".to_string())?;
    copy(&from, &to).map(drop).map_err(|e| match e {
        CopyError::Read(why) => format!("from the application: {why}"),
        CopyError::Write(why) => format!("to the client: {why}"),
    })
}

/// The application did not answer: the core's 502 page, with a reference that is in the log.
fn app_unavailable(out: ResponseOutparam, target: &Target, why: &str) {
    fail(out, HostFailure::AppUnreachable, &format!("upstream={} {why}", target.authority));
}

/// The client's trailers, once the body is read, less those the core names for removal.
fn request_trailers(gate: &Gate, body: IncomingBody) -> Option<Fields> {
    let future = IncomingBody::finish(body);
    future.subscribe().block();
    let trailers = match future.get() {
        Some(Ok(Ok(Some(trailers)))) => trailers.entries(),
        _ => return None,
    };
    let text: Vec<std::borrow::Cow<'_, str>> = trailers.iter().map(|(_, v)| String::from_utf8_lossy(v)).collect();
    let pairs: Vec<(&str, &str)> = trailers.iter().zip(&text).map(|((n, _), v)| (n.as_str(), v.as_ref())).collect();
    let remove = gate.on_request_trailers(&pairs);
    let out = Fields::new();
    for (name, value) in &trailers {
        if !remove.iter().any(|r| r.eq_ignore_ascii_case(name)) && out.append(name, value).is_err() {
            log(Level::Warn, &format!("request trailer {name} not forwarded"));
        }
    }
    Some(out)
}

/// Carries out a `Respond` decision.
fn respond(out: ResponseOutparam, r: &Response) {
    if let Some(line) = &r.log {
        log_line(line);
    }
    if let Some(record) = &r.register {
        log(Level::Info, &record.line());
    }
    write_response(out, r.status, &r.headers, r.body.as_bytes());
}

/// A whole (small) response the component makes itself.
fn write_response(out: ResponseOutparam, status: u16, headers: &[(&'static str, String)], body: &[u8]) {
    let fields = Fields::new();
    let mut ok = headers.iter().all(|(name, value)| fields.append(name, value.as_bytes()).is_ok());
    ok &= fields.append("content-length", body.len().to_string().as_bytes()).is_ok();
    let response = OutgoingResponse::new(fields);
    ok &= response.set_status_code(status).is_ok();
    let outgoing = match response.body() {
        Ok(outgoing) if ok => outgoing,
        _ => {
            // Half a response (a redirect without its cookie) must not go out; the host makes
            // an error answer of this instead.
            log(Level::Error, &format!("could not build a {status} response"));
            return ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some("claveunica-gate".into()))));
        }
    };
    ResponseOutparam::set(out, Ok(response));
    let written = outgoing.write().map_err(|()| "no stream".to_string()).and_then(|stream| {
        let result = write_all(&stream, body).map_err(|e| stream_error("write", e));
        drop(stream);
        result
    });
    match written {
        Ok(()) => {
            if let Err(e) = OutgoingBody::finish(outgoing, None) {
                log(Level::Warn, &format!("response not finished: {}", error_code(&e)));
            }
        }
        Err(why) => log(Level::Warn, &format!("response body not written: {why}")),
    }
}
