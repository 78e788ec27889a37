//! Serves [`endpoints::route`] over HTTP/1.1 with hyper on a tokio runtime: one task per
//! connection, so a slow answer holds up no one else. hyper does the protocol (parsing,
//! keep-alive, `Content-Length` and chunked request bodies, `Expect: 100-continue`, refusing
//! malformed requests); this module only turns requests into [`Req`]s and [`Reply`]s into
//! responses.
//!
//! The test faults of [`Transport`] go through hyper too:
//!
//! - `Close`: the service fails, and hyper closes an HTTP/1 connection without an answer.
//! - `TruncateBody`: the response announces the whole body's `Content-Length`, and its body
//!   stream yields half the bytes, then (once hyper has flushed them) an error, on which hyper
//!   drops the connection short of the announced length.
//! - A delay is a `tokio::time::sleep` in the request's own task.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::endpoints::{self, App};
use crate::http::{Reply, Req, Transport, MAX_BODY};

/// A keep-alive connection that sends no request for this long is dropped; so is a request
/// whose body takes longer than this to arrive.
const IDLE: Duration = Duration::from_secs(300);
/// How long a truncated body waits, after its half, before failing: long enough for hyper to
/// have flushed the half to the socket, which it does not do before acting on a body error.
const TRUNCATE_PAUSE: Duration = Duration::from_millis(20);

type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Accepts connections forever, each served on its own task. Must run inside a tokio runtime
/// with I/O and time enabled.
pub async fn serve(listener: std::net::TcpListener, app: Arc<App>, now: fn() -> u64) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut http = hyper::server::conn::http1::Builder::new();
    // Header names go out as endpoints spell them (`Content-Type`, `Cache-Control`), as before.
    http.title_case_headers(true).timer(TokioTimer::new()).header_read_timeout(IDLE);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("accept failed: {e}");
                // Out of file descriptors, say: give connections a moment to finish.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |request| answer(request, Arc::clone(&app), now));
        let connection = http.serve_connection(TokioIo::new(stream), service);
        // Errors here are the peer going away, malformed requests hyper already answered, and
        // the `Close` and `TruncateBody` faults: nothing to report.
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

/// One request's answer; `Err` makes hyper close the connection without one.
async fn answer(request: Request<Incoming>, app: Arc<App>, now: fn() -> u64) -> io::Result<Response<Body>> {
    let req = match read_request(request).await {
        Ok(req) => req,
        Err(Refused::Status(status)) => return Ok(refusal(status)),
        Err(Refused::Gone) => return Err(io::Error::other("request body not received")),
    };
    // `route` is quick but synchronous, and rotating the signing key makes an RSA key: keep it
    // off the connections' thread.
    let reply = tokio::task::spawn_blocking(move || {
        let reply = endpoints::route(&app, &req, now());
        // Only method, path and status: queries and bodies carry codes and secrets.
        eprintln!("{} {} {}", req.method, req.path, reply.status);
        reply
    })
    .await
    .map_err(io::Error::other)?;
    if reply.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(reply.delay_ms)).await;
    }
    respond(reply)
}

/// Why a request was not read.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// Answer with this status and close.
    Status(u16),
    /// The body did not arrive (the peer went away or sent a broken one): close.
    Gone,
}

async fn read_request(request: Request<Incoming>) -> Result<Req, Refused> {
    let (parts, body) = request.into_parts();
    let announced = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // Refused before hyper sends any `100 Continue`, which it does on the first read of the body.
    if announced.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(Refused::Status(413));
    }
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let value = std::str::from_utf8(value.as_bytes()).map_err(|_| Refused::Status(400))?;
        headers.push((name.as_str().to_string(), value.to_string()));
    }
    let body = match tokio::time::timeout(IDLE, Limited::new(body, MAX_BODY).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes().to_vec(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(Refused::Status(413)),
        Ok(Err(_)) | Err(_) => return Err(Refused::Gone),
    };
    Ok(Req {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        body,
    })
}

/// A refused request's answer; the connection closes after it.
fn refusal(status: u16) -> Response<Body> {
    let mut response = whole(Reply::text(status, "Bad Request\n"));
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

fn respond(mut reply: Reply) -> io::Result<Response<Body>> {
    match reply.transport {
        Transport::Whole => Ok(whole(reply)),
        Transport::TruncateBody => {
            let announced = reply.body.len();
            reply.body.truncate(announced / 2);
            let half = stream::iter([Ok(Frame::data(Bytes::from(std::mem::take(&mut reply.body))))]);
            let cut = stream::once(async {
                tokio::time::sleep(TRUNCATE_PAUSE).await;
                Err(io::Error::other("truncated on purpose"))
            });
            let mut response = head(&reply, StreamBody::new(half.chain(cut)).boxed_unsync());
            response.headers_mut().insert(CONTENT_LENGTH, HeaderValue::from(announced));
            Ok(response)
        }
        Transport::Close => Err(io::Error::other("closed on purpose")),
    }
}

/// Status, headers and the whole body; hyper adds `Content-Length` (none on a 204).
fn whole(mut reply: Reply) -> Response<Body> {
    let body = Full::new(Bytes::from(std::mem::take(&mut reply.body)));
    head(&reply, body.map_err(|never: Infallible| match never {}).boxed_unsync())
}

/// The reply's status and headers, with `body`.
fn head(reply: &Reply, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &reply.headers {
        // Endpoints only build printable ASCII values; anything else is dropped, not sent.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    /// A live server on a loopback port, with the test app.
    fn live() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(crate::endpoints::tests::app(None));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(serve(listener, app, || 1_700_000_000))
        });
        addr
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends raw bytes on a new connection and reads until the server closes.
    fn exchange(addr: SocketAddr, raw: &str) -> Vec<u8> {
        let mut s = connect(addr);
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    fn exchange_text(addr: SocketAddr, raw: &str) -> String {
        String::from_utf8(exchange(addr, raw)).unwrap()
    }

    fn set_mode(addr: SocketAddr, body: &str) {
        let raw = format!(
            "POST /__emulator/mode HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let out = exchange_text(addr, &raw);
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    }

    /// Status line, header lines and body of one response on a kept-alive connection.
    fn read_response(reader: &mut impl BufRead) -> (String, Vec<String>, Vec<u8>) {
        let mut line = String::new();
        let mut next_line = |reader: &mut dyn BufRead| {
            line.clear();
            reader.read_line(&mut line).unwrap();
            line.trim_end_matches(['\r', '\n']).to_string()
        };
        let status = next_line(reader);
        let mut head = Vec::new();
        loop {
            let l = next_line(reader);
            if l.is_empty() {
                break;
            }
            head.push(l);
        }
        let length = head.iter().find_map(|l| l.strip_prefix("Content-Length: ")).map_or(0, |v| v.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        (status, head, body)
    }

    const JWKS: &str = "GET /openid/jwks HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn keep_alive_serves_several_requests_on_one_connection() {
        let addr = live();
        let mut s = connect(addr);
        let mut reader = BufReader::new(s.try_clone().unwrap());
        for _ in 0..3 {
            s.write_all(JWKS.as_bytes()).unwrap();
            let (status, head, body) = read_response(&mut reader);
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert!(head.iter().any(|l| l.starts_with("Content-Type: application/json")), "{head:?}");
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
        }
    }

    #[test]
    fn request_bodies_by_length_chunked_and_after_100_continue() {
        let addr = live();
        let body = r#"{"fault": {"endpoint": "jwks", "kind": "status_500"}}"#;
        let raw = format!(
            "POST /__emulator/mode HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
             5\r\n{}\r\n{:x};ext=1\r\n{}\r\n0\r\nTrailer: t\r\n\r\n",
            &body[..5],
            body.len() - 5,
            &body[5..]
        );
        let out = exchange_text(addr, &raw);
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        assert!(exchange_text(addr, &JWKS.replace("Host: x", "Connection: close")).starts_with("HTTP/1.1 500 "));

        // The client waits for `100 Continue` before it sends the body.
        let mut s = connect(addr);
        let body = r#"{"fault": {"endpoint": "jwks", "kind": "none"}}"#;
        let head =
            format!("POST /__emulator/mode HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
        reader.read_line(&mut line).unwrap();
        s.write_all(body.as_bytes()).unwrap();
        let (status, _, _) = read_response(&mut reader);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(exchange_text(addr, &JWKS.replace("Host: x", "Connection: close")).starts_with("HTTP/1.1 200 "));
    }

    #[test]
    fn what_is_refused() {
        let addr = live();
        let big = format!("POST /__emulator/mode HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert!(exchange_text(addr, &big).starts_with("HTTP/1.1 413 "));
        // Too big only once it arrives, chunk by chunk.
        let chunk = "a".repeat(MAX_BODY / 2 + 1);
        let chunked = format!(
            "POST /__emulator/mode HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
             {n:x}\r\n{chunk}\r\n{n:x}\r\n{chunk}\r\n0\r\n\r\n",
            n = chunk.len()
        );
        assert!(exchange_text(addr, &chunked).starts_with("HTTP/1.1 413 "));
        for bad in
            ["GET /\r\n\r\n", "GET / HTTP/1.1\r\nno colon\r\n\r\n", "POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"]
        {
            assert!(exchange_text(addr, bad).starts_with("HTTP/1.1 400 "), "{bad:?}");
        }
    }

    #[test]
    fn replies_carry_their_length_and_no_body_for_204() {
        let addr = live();
        let out = exchange_text(addr, "GET /openid/jwks HTTP/1.1\r\nConnection: close\r\n\r\n");
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())), "{head}");
        let logout = format!("GET {} HTTP/1.1\r\nConnection: close\r\n\r\n", crate::endpoints::LOGOUT_PATH);
        let out = exchange_text(addr, &logout);
        assert!(out.starts_with("HTTP/1.1 204 No Content\r\n"), "{out}");
        assert!(!out.contains("Content-Length") && out.ends_with("\r\n\r\n"), "{out}");
    }

    #[test]
    fn close_and_truncate_body_break_the_connection() {
        let addr = live();
        set_mode(addr, r#"{"fault": {"endpoint": "jwks", "kind": "close"}}"#);
        assert!(exchange(addr, JWKS).is_empty(), "a closed connection answered");

        set_mode(addr, r#"{"fault": {"kind": "truncate_body"}}"#);
        let out = exchange(addr, JWKS);
        let text = String::from_utf8_lossy(&out);
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let announced: usize =
            head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.parse().ok()).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(!body.is_empty() && body.len() < announced, "{} of {announced} bytes", body.len());
    }

    #[test]
    fn a_slow_answer_holds_up_no_one_else() {
        let addr = live();
        set_mode(addr, r#"{"fault": {"endpoint": "jwks", "kind": "slow"}, "slow_ms": 1500}"#);
        let started = std::time::Instant::now();
        let slow = std::thread::spawn(move || exchange(addr, &JWKS.replace("Host: x", "Connection: close")));
        std::thread::sleep(Duration::from_millis(100));
        let quick = exchange(addr, "GET /__emulator/stats HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(started.elapsed() < Duration::from_millis(1000), "a slow answer blocked another request");
        assert!(String::from_utf8_lossy(&quick).starts_with("HTTP/1.1 200 "));
        let slow = slow.join().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(1500));
        assert!(String::from_utf8_lossy(&slow).starts_with("HTTP/1.1 200 "));
    }
}
