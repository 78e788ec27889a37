//! A test aid: an answer with one header line written byte for byte, as a broken or hostile
//! application might send it (a name or value that is not UTF-8, or far too long). tiny_http
//! only writes ASCII headers, so this writes the whole answer to the connection itself. The
//! raw echo (`raw_echo.rs`) writes its answers with it too.

use std::io::Write;

/// The body of the raw answer, so a test can tell it reached the browser.
pub const BODY: &str = "raw header answer\n";

/// Decodes lower- or upper-case hex; `None` if it is not hex.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits.chunks(2).map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok())).collect()
}

/// The most [`pad`] appends.
pub const MAX_PAD: usize = 1 << 20;

/// Appends `n` bytes `v` (at most [`MAX_PAD`]) to `line`.
pub fn pad(line: &mut Vec<u8>, n: usize) {
    line.resize(line.len() + n.min(MAX_PAD), b'v');
}

/// The whole answer: 200, the raw `line`, a length, and the connection closed after it.
pub fn answer_bytes(line: &[u8]) -> Vec<u8> {
    closing_answer("200 OK", line, "text/plain", BODY.as_bytes())
}

/// An answer with `status` (`200 OK`), the header `line` written as it is (none if empty),
/// `body` with its type and length, and the connection closed after it.
pub fn closing_answer(status: &str, line: &[u8], content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n").into_bytes();
    if !line.is_empty() {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!("Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

/// Writes the answer to the connection.
pub fn answer_with_header(mut writer: Box<dyn Write + Send>, line: &[u8]) {
    if let Err(e) = writer.write_all(&answer_bytes(line)).and_then(|()| writer.flush()) {
        eprintln!("write failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_any_bytes_and_refuses_what_is_not_hex() {
        assert_eq!(decode_hex("78ff0a"), Some(vec![0x78, 0xff, 0x0a]));
        assert_eq!(decode_hex("FF"), Some(vec![0xff]));
        assert_eq!(decode_hex("f"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("é1"), None);
    }

    #[test]
    fn padding_is_bounded() {
        let mut line = b"x: ".to_vec();
        pad(&mut line, 2);
        assert_eq!(line, b"x: vv");
        pad(&mut line, usize::MAX);
        assert_eq!(line.len(), 5 + MAX_PAD);
    }

    #[test]
    fn the_header_line_is_written_byte_for_byte() {
        let out = answer_bytes(b"x-claveunica-logout: \xff\xfe");
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\nx-claveunica-logout: \xff\xfe\r\n"));
        assert!(out.ends_with(BODY.as_bytes()));
        let plain = closing_answer("400 Bad Request", b"", "application/json", b"{}");
        assert_eq!(
            plain,
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }
}
