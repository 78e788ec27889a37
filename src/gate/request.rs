//! What the gate is told of a request, and where its randomness comes from.

use crate::web::cookies;

/// A source of random bytes: the host's WASI random source in production, a fixed sequence
/// in tests.
pub trait Entropy {
    /// Fills `buf` with random bytes, or fails; the gate never proceeds on weak randomness.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyUnavailable>;
}

/// The host could not provide random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntropyUnavailable;

/// What the gate needs to know of an incoming request.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path with its query, as on the request line.
    pub path: &'a str,
    /// Every request header, names in any letter case, in order, repeats included. The
    /// client's forged identity headers too: the gate never reads them, it names them for
    /// removal.
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> Request<'a> {
    pub(super) fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// The host the request names (`:authority`, or `Host` where the host gives no pseudo
    /// header), if any. `Err` when it names two different ones: a proxy and an application
    /// could each believe a different one, so no site may serve it.
    pub(super) fn authority(&self) -> Result<Option<&'a str>, ()> {
        let mut named = self.header_values(":authority").chain(self.header_values("host"));
        let first = named.next();
        match first {
            Some(first) if named.all(|other| other.eq_ignore_ascii_case(first)) => Ok(Some(first)),
            Some(_) => Err(()),
            None => Ok(None),
        }
    }

    pub(super) fn cookies(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        cookies::pairs(self.header_values("cookie"))
    }
}

pub(super) fn split_query(path: &str) -> (&str, &str) {
    path.split_once('?').unwrap_or((path, ""))
}
