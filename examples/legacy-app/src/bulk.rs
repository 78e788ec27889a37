//! Large bodies, for the tests that show a gate streams them: `GET /__bulk?bytes=N` answers N
//! bytes of a fixed pattern, produced as they are sent; `POST` or `PUT /__bulk` reads the
//! body as it arrives and answers its length and checksum as JSON. Neither holds a body in
//! memory, so the app's own footprint does not hide the gate's.
//!
//! The pattern is byte `i` = `i % 251` (a prime, so chunk boundaries never line up with it);
//! the checksum is 64-bit FNV-1a, which a test computes the same way on its side.

use std::io::Read;

/// The path these answers live on; anything else is the app's usual business.
const PATH: &str = "/__bulk";
/// A download larger than this is refused (a demo app on loopback, not a load generator).
const MAX_BYTES: u64 = 1 << 30;

/// The byte at `offset` of the pattern.
#[must_use]
pub fn pattern_byte(offset: u64) -> u8 {
    // Always below 251, so the cast loses nothing.
    (offset % 251) as u8
}

/// 64-bit FNV-1a, fed in pieces.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The checksum, as 16 hex digits.
    #[must_use]
    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The pattern as a reader of `len` bytes, made on demand.
struct Pattern {
    offset: u64,
    len: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = usize::try_from(self.len - self.offset).unwrap_or(usize::MAX);
        let n = buf.len().min(left);
        for (i, b) in buf.iter_mut().take(n).enumerate() {
            *b = pattern_byte(self.offset + i as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

fn json(status: u16, body: String) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let mut r = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        r.add_header(h);
    }
    r
}

/// Answers `/__bulk` requests; hands any other request back untouched.
pub fn serve(mut request: tiny_http::Request) -> Option<tiny_http::Request> {
    let path = request.url().split('?').next().unwrap_or_default();
    if path != PATH {
        return Some(request);
    }
    let method = request.method().as_str().to_string();
    let result = match method.as_str() {
        "GET" => {
            let query = request.url().split_once('?').map_or("", |(_, q)| q);
            let bytes = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "bytes")
                .and_then(|(_, v)| v.parse::<u64>().ok());
            match bytes {
                Some(len) if len <= MAX_BYTES => {
                    let headers = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/octet-stream"[..])
                        .into_iter()
                        .collect();
                    let len_hint = usize::try_from(len).ok();
                    let body = Pattern { offset: 0, len };
                    eprintln!("GET {PATH} 200 ({len} bytes)");
                    {
                        // A length, not chunks, as most legacy apps send for a download: the gate
                        // must pass it and deliver exactly that many bytes.
                        let response =
                            tiny_http::Response::new(tiny_http::StatusCode(200), headers, body, len_hint, None)
                                .with_chunked_threshold(usize::MAX);
                        request.respond(response)
                    }
                }
                _ => request.respond(json(400, format!("{{\"error\":\"bytes must be 0..={MAX_BYTES}\"}}"))),
            }
        }
        "POST" | "PUT" => {
            let mut sum = Fnv1a::default();
            let mut total: u64 = 0;
            let mut buf = vec![0u8; 64 * 1024];
            let reader = request.as_reader();
            let outcome = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        let chunk = buf.get(..n).unwrap_or_default();
                        sum.update(chunk);
                        total += n as u64;
                    }
                    Err(e) => break Err(e),
                }
            };
            eprintln!("{method} {PATH} ({total} bytes read)");
            match outcome {
                Ok(()) => request.respond(json(200, format!("{{\"body_len\":{total},\"fnv1a\":\"{}\"}}", sum.hex()))),
                Err(e) => {
                    request.respond(json(400, format!("{{\"error\":\"body read failed after {total} bytes: {e}\"}}")))
                }
            }
        }
        _ => request.respond(json(405, "{\"error\":\"GET, POST or PUT\"}".into())),
    };
    if let Err(e) = result {
        eprintln!("write failed: {e}");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_reads_in_any_pieces_alike() {
        let mut whole = Vec::new();
        Pattern { offset: 0, len: 1000 }.read_to_end(&mut whole).unwrap();
        assert_eq!(whole.len(), 1000);
        assert_eq!(whole[250], 250);
        assert_eq!(whole[251], 0);
        let mut pieces = Vec::new();
        let mut p = Pattern { offset: 0, len: 1000 };
        let mut buf = [0u8; 7];
        loop {
            let n = p.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            pieces.extend_from_slice(&buf[..n]);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn fnv1a_matches_known_values() {
        assert_eq!(Fnv1a::default().hex(), "cbf29ce484222325");
        let mut a = Fnv1a::default();
        a.update(b"a");
        assert_eq!(a.hex(), "af63dc4c8601ec8c");
    }
}
