//! A test aid: `legacy-app --raw-echo` serves, instead of the portal, an HTTP/1.1 echo that
//! reads each request itself so it can report the request's trailers (the fields after a
//! chunked body's last chunk), which tiny_http reads past and drops. Every request, whatever
//! its path, gets the portal's JSON echo plus `"trailers"`, names lower-cased and values as
//! received, and the connection closes after the answer, so a proxy never reuses it.
//!
//! The request is parsed with httparse (the parser under hyper) within fixed bounds: one that is
//! malformed, framed in a way this echo does not read, or larger than [`MAX_REQUEST`] gets a
//! 400 or 413 and the connection closes; nothing a client sends can make it panic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::{echo_value, raw, Seen};

/// The most a request may take, head, body and trailers together: tests send little.
pub const MAX_REQUEST: usize = 1 << 20;
/// The most header fields, and the most trailer fields, a request may have.
const MAX_FIELDS: usize = 128;
/// A client that stops sending mid-request is given up on after this.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Fields as the echo reports them: lower-cased names, values as received (invalid UTF-8
/// replaced), in arrival order, repeats kept.
pub type Fields = Vec<(String, String)>;

/// Why a request is not echoed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not HTTP/1.1 as this echo reads it (400).
    Malformed(&'static str),
    /// Larger than [`MAX_REQUEST`] (413).
    TooLarge,
    /// The connection failed or closed before the request was whole (no answer can be sent
    /// that anyone would read, but one is tried).
    Io(String),
}

/// How the body after the head is framed.
enum Framing {
    None,
    Length(usize),
    Chunked,
}

/// Accepts connections for ever, one thread each.
pub fn serve(listener: &TcpListener) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                std::thread::spawn(move || answer(stream));
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

fn answer(mut stream: TcpStream) {
    if let Err(e) = stream.set_read_timeout(Some(READ_TIMEOUT)) {
        eprintln!("raw echo: no read timeout: {e}");
        return;
    }
    let bytes = match read_request(&mut stream) {
        Ok((seen, trailers)) => {
            eprintln!("{} {} 200 (raw echo, {} trailers)", seen.method, seen.path, trailers.len());
            let mut echo = echo_value(&seen);
            echo["trailers"] = serde_json::json!(pairs(&trailers));
            raw::closing_answer("200 OK", b"", "application/json; charset=utf-8", echo.to_string().as_bytes())
        }
        Err(refusal) => {
            eprintln!("raw echo refused a request: {refusal:?}");
            let status = if refusal == Refusal::TooLarge { "413 Content Too Large" } else { "400 Bad Request" };
            let body = serde_json::json!({ "error": format!("{refusal:?}") }).to_string();
            raw::closing_answer(status, b"", "application/json", body.as_bytes())
        }
    };
    if let Err(e) = stream.write_all(&bytes).and_then(|()| stream.flush()) {
        eprintln!("write failed: {e}");
    }
}

fn pairs(fields: &Fields) -> Vec<[&str; 2]> {
    fields.iter().map(|(n, v)| [n.as_str(), v.as_str()]).collect()
}

/// Reads from `from` until one whole request is in, then takes it apart.
pub fn read_request(from: &mut impl Read) -> Result<(Seen, Fields), Refusal> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 16 * 1024];
    loop {
        if let Some(done) = parse(&buf)? {
            return Ok(done);
        }
        if buf.len() >= MAX_REQUEST {
            return Err(Refusal::TooLarge);
        }
        let n = from.read(&mut piece).map_err(|e| Refusal::Io(e.to_string()))?;
        if n == 0 {
            return Err(Refusal::Io("the connection closed before the request was whole".into()));
        }
        buf.extend_from_slice(piece.get(..n).unwrap_or_default());
    }
}

fn fields(parsed: &[httparse::Header<'_>]) -> Fields {
    parsed.iter().map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned())).collect()
}

/// One request from the start of `buf`: `None` while more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Seen, Fields)>, Refusal> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut slots);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Refusal::Malformed("request head")),
    };
    let headers = fields(request.headers);
    let (method, target) = (request.method.unwrap_or_default(), request.path.unwrap_or_default());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = buf.get(head_len..).unwrap_or_default();
    let (body_len, trailers) = match framing(&headers)? {
        Framing::None => (0, Vec::new()),
        Framing::Length(n) if rest.len() < n => return Ok(None),
        Framing::Length(n) => (n, Vec::new()),
        Framing::Chunked => match chunked(rest)? {
            Some(done) => done,
            None => return Ok(None),
        },
    };
    let seen = Seen {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body_len: body_len as u64,
        body: Vec::new(),
    };
    Ok(Some((seen, trailers)))
}

/// The body's framing (RFC 9112, section 6.3), refusing what a proxy must not send: a transfer
/// coding other than a final `chunked`, or lengths that disagree or are not numbers.
fn framing(headers: &Fields) -> Result<Framing, Refusal> {
    let codings: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .flat_map(|(_, v)| v.split(',').map(|c| c.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect();
    if let Some(last) = codings.last() {
        return match (last.as_str(), codings.len()) {
            ("chunked", 1) => Ok(Framing::Chunked),
            _ => Err(Refusal::Malformed("a transfer coding other than chunked")),
        };
    }
    let mut length = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        let digits = value.trim();
        let n = match digits.bytes().all(|b| b.is_ascii_digit()) {
            true => digits.parse::<usize>().map_err(|_| Refusal::TooLarge)?,
            false => return Err(Refusal::Malformed("content-length")),
        };
        if length.is_some_and(|l| l != n) {
            return Err(Refusal::Malformed("two content-lengths"));
        }
        length = Some(n);
    }
    Ok(match length {
        Some(n) if n > MAX_REQUEST => return Err(Refusal::TooLarge),
        Some(n) => Framing::Length(n),
        None => Framing::None,
    })
}

/// A chunked body and its trailer section from the start of `buf`: the body's length and the
/// trailers, or `None` while more bytes are needed.
fn chunked(buf: &[u8]) -> Result<Option<(usize, Fields)>, Refusal> {
    let mut at = 0;
    let mut body_len: usize = 0;
    loop {
        let rest = buf.get(at..).unwrap_or_default();
        let (used, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(Refusal::Malformed("chunk size")),
        };
        at += used;
        if size == 0 {
            break;
        }
        // A chunk larger than the whole request could be is refused before it is waited for.
        let size = usize::try_from(size).ok().filter(|s| *s <= MAX_REQUEST).ok_or(Refusal::TooLarge)?;
        let end = at + size + 2;
        let Some(data) = buf.get(at..end) else { return Ok(None) };
        if !data.ends_with(b"\r\n") {
            return Err(Refusal::Malformed("a chunk not followed by CRLF"));
        }
        body_len += size;
        at = end;
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
    match httparse::parse_headers(buf.get(at..).unwrap_or_default(), &mut slots) {
        Ok(httparse::Status::Complete((_, trailers))) => Ok(Some((body_len, fields(trailers)))),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(Refusal::Malformed("trailer section")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: &[u8]) -> (Seen, Fields) {
        parse(bytes).unwrap().unwrap()
    }

    const CHUNKED: &[u8] = b"POST /a/b?format=json&x=1 HTTP/1.1\r\nHost: app\r\nX-Claveunica-Run: 44444444-4\r\n\
Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-ClaveUnica-Run: 11111111-1\r\nx-other: kept\r\n\r\n";

    #[test]
    fn a_chunked_body_with_trailers_is_echoed_with_them() {
        let (seen, trailers) = parsed(CHUNKED);
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str(), seen.query.as_str()),
            ("POST", "/a/b", "format=json&x=1")
        );
        assert_eq!(seen.header("x-claveunica-run"), Some("44444444-4"));
        assert_eq!(seen.body_len, 6);
        assert_eq!(trailers, [("x-claveunica-run".into(), "11111111-1".into()), ("x-other".into(), "kept".into())]);
        let echo = echo_value(&seen);
        assert_eq!(echo["path"], "/a/b");
        assert_eq!(echo["body_len"], 6);
    }

    #[test]
    fn every_prefix_of_a_request_waits_for_more() {
        for end in 0..CHUNKED.len() {
            assert_eq!(parse(&CHUNKED[..end]).map(|p| p.is_some()), Ok(false), "{end}");
        }
        let (_, trailers) = parsed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert!(trailers.is_empty());
        let (seen, trailers) = parsed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!((seen.body_len, trailers.len()), (3, 0));
        assert!(parse(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab").unwrap().is_none());
        assert_eq!(parsed(b"GET / HTTP/1.1\r\n\r\n").0.body_len, 0);
    }

    #[test]
    fn what_it_does_not_read_is_refused_never_a_panic() {
        let refused = |bytes: &[u8]| parse(bytes).err();
        let malformed = |bytes: &[u8]| matches!(refused(bytes), Some(Refusal::Malformed(_)));
        assert!(malformed(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"));
        assert!(malformed(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"));
        assert!(malformed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"));
        assert!(malformed(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"));
        assert!(malformed(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"));
        assert!(malformed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"));
        assert!(malformed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n"));
        assert!(malformed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n"));
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n"),
            Some(Refusal::TooLarge)
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Some(Refusal::TooLarge)
        );
        assert_eq!(refused(b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n"), Some(Refusal::TooLarge));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x-{i}: v\r\n")).collect();
        assert!(malformed(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()));
        // Values that are not UTF-8 are reported with the invalid bytes replaced.
        let (_, trailers) = parsed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx-a: \xff\r\n\r\n");
        assert_eq!(trailers, [("x-a".into(), "\u{fffd}".into())]);
    }

    #[test]
    fn a_request_that_never_ends_is_bounded() {
        let endless = std::io::repeat(b'a');
        let head = &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n"[..];
        let chunks = b"1\r\na\r\n".repeat(MAX_REQUEST / 6 + 1);
        let mut from = head.chain(chunks.as_slice()).chain(endless);
        assert_eq!(read_request(&mut from).err(), Some(Refusal::TooLarge));
        let mut cut = &b"POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab"[..];
        assert!(matches!(read_request(&mut cut), Err(Refusal::Io(_))));
    }
}
