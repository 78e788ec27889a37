//! A small HTTP/1.1 server over `std::net`: one thread per connection, keep-alive,
//! `Content-Length` and chunked request bodies, `Expect: 100-continue`.
//!
//! The emulator owns its sockets so the test modes can do what a library server will not: close
//! a connection without an answer, send fewer bytes than `Content-Length` announces, or answer
//! late without holding up anyone else's request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::endpoints::{self, App};
use crate::http::{Reply, Req, Transport, MAX_BODY};

/// Longest request line or header line, and most header lines.
const MAX_LINE: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// An idle keep-alive connection is dropped after this long.
const IDLE: Duration = Duration::from_secs(300);

/// Accepts connections forever, each served on its own thread.
pub fn serve(listener: &TcpListener, app: &Arc<App>, now: fn() -> u64) {
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let app = Arc::clone(app);
                std::thread::spawn(move || connection(stream, &app, now));
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
enum ReadError {
    /// The peer closed (or went quiet) between requests.
    Gone,
    /// Not HTTP we serve: answer with this status and close.
    Bad(u16),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Gone
    }
}

fn connection(stream: TcpStream, app: &App, now: fn() -> u64) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE));
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let (req, keep_alive) = match read_request(&mut reader, &mut writer) {
            Ok(r) => r,
            Err(ReadError::Gone) => return,
            Err(ReadError::Bad(status)) => {
                let _ = write_reply(&mut writer, &Reply::text(status, "Bad Request\n"), false);
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        };
        let reply = endpoints::route(app, &req, now());
        // Only method, path and status: queries and bodies carry codes and secrets.
        eprintln!("{} {} {}", req.method, req.path, reply.status);
        if reply.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(reply.delay_ms));
        }
        match reply.transport {
            Transport::Whole => {
                if write_reply(&mut writer, &reply, keep_alive).is_err() || !keep_alive {
                    let _ = writer.shutdown(Shutdown::Both);
                    return;
                }
            }
            Transport::TruncateBody => {
                let half = reply.body.len() / 2;
                let _ = write_head(&mut writer, &reply, reply.body.len(), true)
                    .and_then(|()| writer.write_all(reply.body.get(..half).unwrap_or_default()))
                    .and_then(|()| writer.flush());
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            Transport::Close => {
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}

/// A line up to CRLF (or LF), without it. `Gone` at a clean end of stream.
fn read_line(reader: &mut impl BufRead) -> Result<String, ReadError> {
    let mut line = Vec::new();
    let n = reader.by_ref().take(MAX_LINE as u64 + 2).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(ReadError::Gone);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_LINE { ReadError::Bad(431) } else { ReadError::Gone });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| ReadError::Bad(400))
}

/// Reads one request; also says whether the connection stays open after it.
fn read_request<R: BufRead, W: Write>(reader: &mut R, writer: &mut W) -> Result<(Req, bool), ReadError> {
    let mut request_line = read_line(reader)?;
    // Tolerate the empty lines RFC 9112 allows before a request.
    while request_line.is_empty() {
        request_line = read_line(reader)?;
    }
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") || method.is_empty() || !target.starts_with('/') {
        return Err(ReadError::Bad(400));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader).map_err(|e| if e == ReadError::Gone { ReadError::Bad(400) } else { e })?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(ReadError::Bad(431));
        }
        let (name, value) = line.split_once(':').ok_or(ReadError::Bad(400))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let connection = header("connection").unwrap_or_default().to_ascii_lowercase();
    let keep_alive = if version == "HTTP/1.0" { connection == "keep-alive" } else { connection != "close" };
    if header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        writer.flush()?;
    }
    let body = if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        read_chunked(reader)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|_| ReadError::Bad(400))?;
        if length > MAX_BODY {
            return Err(ReadError::Bad(413));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(|_| ReadError::Bad(400))?;
        body
    } else {
        Vec::new()
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    Ok((Req { method: method.to_ascii_uppercase(), path, query, headers, body }, keep_alive))
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let size_line = read_line(reader)?;
        let size = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| ReadError::Bad(400))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Bad(413));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).map_err(|_| ReadError::Bad(400))?;
        if !read_line(reader)?.is_empty() {
            return Err(ReadError::Bad(400));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// Status line and headers, announcing `length` bytes of body.
fn write_head(writer: &mut impl Write, reply: &Reply, length: usize, close: bool) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (name, value) in &reply.headers {
        // Endpoints only build printable ASCII values; anything else is dropped, not sent.
        if value.bytes().all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if reply.status != 204 && reply.status >= 200 {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())
}

fn write_reply(writer: &mut impl Write, reply: &Reply, keep_alive: bool) -> io::Result<()> {
    write_head(writer, reply, reply.body.len(), !keep_alive)?;
    if reply.status != 204 {
        writer.write_all(&reply.body)?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> (Result<(Req, bool), ReadError>, Vec<u8>) {
        let mut reader = BufReader::new(raw);
        let mut written = Vec::new();
        (read_request(&mut reader, &mut written), written)
    }

    #[test]
    fn a_request_with_a_body_and_keep_alive() {
        let (r, _) = parse(b"POST /openid/token/?a=1 HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
        let (req, keep_alive) = r.unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str(), req.query.as_str()), ("POST", "/openid/token/", "a=1"));
        assert_eq!(req.header("content-type"), Some("text/plain"));
        assert_eq!(req.body, b"hello");
        assert!(keep_alive);
        let (r, _) = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!r.unwrap().1);
        let (r, _) = parse(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!r.unwrap().1);
    }

    #[test]
    fn chunked_bodies_and_expect_continue() {
        let raw = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n";
        let (r, written) = parse(raw);
        assert_eq!(r.unwrap().0.body, b"hello world");
        assert_eq!(written, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn what_is_refused() {
        let big = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + 1);
        assert_eq!(parse(big.as_bytes()).0.unwrap_err(), ReadError::Bad(413));
        assert_eq!(parse(b"GET /\r\n\r\n").0.unwrap_err(), ReadError::Bad(400));
        assert_eq!(parse(b"GET / HTTP/2\r\n\r\n").0.unwrap_err(), ReadError::Bad(400));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nno colon\r\n\r\n").0.unwrap_err(), ReadError::Bad(400));
        assert_eq!(parse(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").0.unwrap_err(), ReadError::Bad(400));
        assert_eq!(parse(b"").0.unwrap_err(), ReadError::Gone);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE + 10));
        assert_eq!(parse(long.as_bytes()).0.unwrap_err(), ReadError::Bad(431));
    }

    #[test]
    fn replies_carry_their_length_and_no_body_for_204() {
        let mut out = Vec::new();
        write_reply(&mut out, &Reply::text(200, "hi"), true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("Content-Length: 2\r\n") && text.ends_with("\r\n\r\nhi"), "{text}");
        assert!(!text.contains("Connection: close"));
        let mut out = Vec::new();
        write_reply(&mut out, &Reply::empty(204), false).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("Content-Length") && text.contains("Connection: close\r\n"), "{text}");
    }

    /// A live server on a loopback port, with the test app.
    fn live() -> (std::net::SocketAddr, Arc<App>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Arc::new(crate::endpoints::tests::app(None));
        let served = Arc::clone(&app);
        std::thread::spawn(move || serve(&listener, &served, || 1_700_000_000));
        (addr, app)
    }

    /// Sends raw bytes on a new connection and reads until the server closes.
    fn exchange(addr: std::net::SocketAddr, raw: &str) -> Vec<u8> {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    fn set_mode(addr: std::net::SocketAddr, body: &str) {
        let raw = format!(
            "POST /__emulator/mode HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let out = String::from_utf8(exchange(addr, &raw)).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    }

    const JWKS: &str = "GET /openid/jwks HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn keep_alive_serves_several_requests_on_one_connection() {
        let (addr, _) = live();
        let mut s = TcpStream::connect(addr).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        for _ in 0..3 {
            s.write_all(JWKS.as_bytes()).unwrap();
            let status = read_line(&mut reader).unwrap();
            assert_eq!(status, "HTTP/1.1 200 OK");
            let mut length = 0;
            loop {
                let line = read_line(&mut reader).unwrap();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    length = v.parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
        }
    }

    #[test]
    fn close_and_truncate_body_break_the_connection() {
        let (addr, _) = live();
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
        let (addr, _) = live();
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
