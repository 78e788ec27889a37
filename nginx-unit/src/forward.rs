//! The reverse proxy's own header hygiene, without a WASI type in sight so it is tested
//! natively: what Envoy does for the Envoy filter (hop-by-hop headers, `Host`,
//! `X-Forwarded-For`/`-Proto`/`-Host`, the upstream URL) the component must do itself on Unit.
//!
//! The `X-Forwarded-*` headers say only what the component knows: the scheme and host of the
//! configured public origin (`redirect_uri`). Envoy with `use_remote_address` appends the peer's
//! address to `X-Forwarded-For`; wasi:http 0.2 gives a component no peer address, so it cannot
//! mark where the client's list ends, and a list passed on unmarked is whatever the client
//! wrote. Failing closed, the client's `X-Forwarded-For` and `Forwarded` never reach the
//! application: it gets no client address from this component rather than a forged one. What the
//! gate decides (identity headers removed and set, the gate's cookies) is the core's
//! [`Forward`](claveunica_core::gate::Forward), applied here verbatim.

use claveunica_core::gate::CookieHeader;
use url::Url;

/// Headers that belong to one connection, never forwarded (RFC 9110, section 7.6.1), plus the
/// ones wasi:http hosts refuse outright (wasmtime: `http2-settings`, `proxy-connection`).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
];

/// Whether `name` is hop-by-hop (any `proxy-*` header counts: they address this hop).
#[must_use]
pub fn is_hop_by_hop(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&lower.as_str()) || lower.starts_with("proxy-")
}

/// Header names a `Connection` header lists: they are hop-by-hop for this message too.
fn connection_tokens(headers: &[(String, Vec<u8>)]) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v).split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// Where a request goes: scheme, `host[:port]` and path with query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// Path and query.
    pub path_with_query: String,
}

fn authority_of(url: &Url) -> String {
    // `host_str` keeps the brackets of an IPv6 literal.
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The upstream URL for a request path: the upstream's own path (if any) is a prefix.
#[must_use]
pub fn upstream_target(upstream: &Url, path_with_query: &str) -> Target {
    let prefix = upstream.path().trim_end_matches('/');
    // A request target that is not origin-form (`*`, or an absolute URL a client sent) is not
    // something a legacy app expects; it gets the root instead.
    let path = if path_with_query.starts_with('/') { path_with_query } else { "/" };
    Target {
        scheme: upstream.scheme().to_string(),
        authority: authority_of(upstream),
        path_with_query: format!("{prefix}{path}"),
    }
}

/// The public side of the gate, for the `X-Forwarded-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The public scheme, that of `redirect_uri`: Unit often listens on plain http behind the
    /// agency's TLS terminator.
    pub proto: &'a str,
    /// The public `host[:port]`, that of `redirect_uri`; never the client's `Host`, which the
    /// client chooses.
    pub host: Option<&'a str>,
}

/// The scheme and `host[:port]` of the configured public origin (`redirect_uri`, validated
/// by the core's configuration); `http` and no host if it does not parse.
#[must_use]
pub fn public_origin(redirect_uri: &str) -> (String, Option<String>) {
    match Url::parse(redirect_uri) {
        Ok(url) => (url.scheme().to_string(), Some(authority_of(&url)).filter(|a| !a.is_empty())),
        Err(_) => ("http".to_string(), None),
    }
}

/// Client headers that claim where the request came from: the component cannot vouch for them.
const CLIENT_FORWARDING: &[&str] = &["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"];

/// What the core decided for the forwarded request's headers: the parts of a
/// [`Forward`](claveunica_core::gate::Forward).
#[derive(Debug, Clone, Copy)]
pub struct Changes<'a> {
    /// Headers to remove, every copy.
    pub remove: &'a [String],
    /// Headers to set, replacing every copy.
    pub set: &'a [(String, String)],
    /// The `Cookie` header change.
    pub cookie: &'a CookieHeader,
}

/// The headers to send upstream: the client's, with the core's changes applied (removals,
/// identity set, the gate's cookies out), without hop-by-hop ones, `Host` and the client's
/// forwarding headers, then `X-Forwarded-Proto`/`-Host` from the public origin.
#[must_use]
pub fn upstream_headers(
    incoming: &[(String, Vec<u8>)],
    changes: Changes<'_>,
    origin: Origin<'_>,
) -> Vec<(String, Vec<u8>)> {
    let listed = connection_tokens(incoming);
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(incoming.len() + changes.set.len() + 3);
    for (name, value) in incoming {
        let lower = name.to_ascii_lowercase();
        let dropped = is_hop_by_hop(&lower)
            || listed.contains(&lower)
            || lower == "host"
            || CLIENT_FORWARDING.contains(&lower.as_str())
            || changes.remove.iter().any(|r| r.eq_ignore_ascii_case(&lower))
            || changes.set.iter().any(|(n, _)| n.eq_ignore_ascii_case(&lower))
            || (lower == "cookie" && *changes.cookie != CookieHeader::Unchanged);
        if !dropped {
            out.push((lower, value.clone()));
        }
    }
    if let CookieHeader::Replace(cookie) = changes.cookie {
        out.push(("cookie".into(), cookie.clone().into_bytes()));
    }
    out.extend(changes.set.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone().into_bytes())));
    out.push(("x-forwarded-proto".into(), origin.proto.as_bytes().to_vec()));
    if let Some(host) = origin.host {
        out.push(("x-forwarded-host".into(), host.as_bytes().to_vec()));
    }
    out
}

/// Gives a request without an `X-Request-Id` one, as Envoy does for every request: the
/// register's lines (logins, logouts, refusals, accesses) then name the request, and the
/// application gets the same id to log beside them. `random` is 16 random bytes, written as a
/// UUID version 4. A request that has a non-empty id keeps it.
pub fn ensure_request_id(headers: &mut Vec<(String, Vec<u8>)>, random: [u8; 16]) {
    if headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("x-request-id") && !v.is_empty()) {
        return;
    }
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case("x-request-id"));
    let mut b = random;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = |r: std::ops::Range<usize>| -> String {
        b.get(r).unwrap_or_default().iter().map(|x| format!("{x:02x}")).collect()
    };
    let id = format!("{}-{}-{}-{}-{}", hex(0..4), hex(4..6), hex(6..8), hex(8..10), hex(10..16));
    headers.push(("x-request-id".into(), id.into_bytes()));
}

/// The application's answer headers to pass to the browser: hop-by-hop ones go, and so does
/// `Content-Length` where no body follows (the host would hold the component to it).
#[must_use]
pub fn downstream_headers(upstream: &[(String, Vec<u8>)], bodyless: bool) -> Vec<(String, Vec<u8>)> {
    let listed = connection_tokens(upstream);
    upstream
        .iter()
        .filter(|(n, _)| {
            let lower = n.to_ascii_lowercase();
            !(is_hop_by_hop(&lower) || listed.contains(&lower) || (bodyless && lower == "content-length"))
        })
        .cloned()
        .collect()
}

/// Whether an answer to `method` with `status` carries no body (RFC 9110, section 6.4.1).
#[must_use]
pub fn is_bodyless(method: &str, status: u16) -> bool {
    method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 || (100..200).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs.iter().map(|(n, v)| ((*n).to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn a_request_without_an_id_gets_a_uuid_and_one_with_an_id_keeps_it() {
        let mut headers = h(&[("accept", "*/*"), ("x-request-id", "")]);
        ensure_request_id(&mut headers, [0xff; 16]);
        assert_eq!(value(&headers, "x-request-id"), vec!["ffffffff-ffff-4fff-bfff-ffffffffffff"]);
        let mut headers = h(&[]);
        ensure_request_id(&mut headers, [0; 16]);
        assert_eq!(value(&headers, "x-request-id"), vec!["00000000-0000-4000-8000-000000000000"]);
        let mut headers = h(&[("X-Request-Id", "from-the-front-proxy")]);
        ensure_request_id(&mut headers, [0; 16]);
        assert_eq!(headers, h(&[("X-Request-Id", "from-the-front-proxy")]));
    }

    fn names(headers: &[(String, Vec<u8>)]) -> Vec<&str> {
        headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn value<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Vec<&'a str> {
        headers.iter().filter(|(n, _)| n == name).map(|(_, v)| std::str::from_utf8(v).unwrap()).collect()
    }

    fn set(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn joins_the_upstream_prefix_and_the_request_path() {
        let root = Url::parse("http://127.0.0.1:8901").unwrap();
        let t = upstream_target(&root, "/a/b?x=1");
        assert_eq!(
            (t.scheme.as_str(), t.authority.as_str(), t.path_with_query.as_str()),
            ("http", "127.0.0.1:8901", "/a/b?x=1")
        );
        let prefixed = Url::parse("https://app.internal/legacy/").unwrap();
        let t = upstream_target(&prefixed, "/a?x=1");
        assert_eq!(
            (t.scheme.as_str(), t.authority.as_str(), t.path_with_query.as_str()),
            ("https", "app.internal", "/legacy/a?x=1")
        );
        assert_eq!(upstream_target(&prefixed, "*").path_with_query, "/legacy/");
        let v6 = Url::parse("http://[::1]:8080/").unwrap();
        assert_eq!(upstream_target(&v6, "/").authority, "[::1]:8080");
    }

    #[test]
    fn hop_by_hop_host_and_identity_headers_stay_behind() {
        let incoming = h(&[
            ("Host", "portal.gob.cl"),
            ("Connection", "keep-alive, X-Private"),
            ("x-private", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic eA=="),
            ("X-ClaveUnica-RUN", "11111111-1"),
            ("x_claveunica_run", "11111111-1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Accept", "text/html"),
            ("Content-Length", "3"),
        ]);
        let remove = ["x_claveunica_run".to_string()];
        let set = set(&[("x-claveunica-run", "44444444-4")]);
        let changes = Changes { remove: &remove, set: &set, cookie: &CookieHeader::Unchanged };
        let out = upstream_headers(&incoming, changes, Origin { proto: "http", host: Some("portal.gob.cl") });
        assert_eq!(
            names(&out),
            ["accept", "content-length", "x-claveunica-run", "x-forwarded-proto", "x-forwarded-host"]
        );
        assert_eq!(value(&out, "x-claveunica-run"), ["44444444-4"]);
        assert!(value(&out, "x-forwarded-for").is_empty(), "the client's list, unmarked");
        assert_eq!(value(&out, "x-forwarded-proto"), ["http"]);
        assert_eq!(value(&out, "x-forwarded-host"), ["portal.gob.cl"]);
    }

    #[test]
    fn a_connection_header_naming_identity_headers_cannot_remove_the_verified_ones() {
        // `Connection` makes the names it lists hop-by-hop for the client's copies only: what
        // the core sets is added after the client's headers are filtered, so it always arrives,
        // and a forged copy goes whether the core names it or `Connection` does.
        let incoming = h(&[
            ("Connection", "Upgrade, x-claveunica-run, X-ClaveUnica-Nombres"),
            ("Upgrade", "websocket"),
            ("X-ClaveUnica-RUN", "11111111-1"),
            ("x-claveunica-nombres", "Mallory"),
        ]);
        let set = set(&[("x-claveunica-run", "44444444-4"), ("x-claveunica-nombres", "María")]);
        let changes = Changes { remove: &[], set: &set, cookie: &CookieHeader::Unchanged };
        let out = upstream_headers(&incoming, changes, Origin { proto: "https", host: None });
        assert_eq!(value(&out, "x-claveunica-run"), ["44444444-4"]);
        assert_eq!(value(&out, "x-claveunica-nombres"), ["María"]);
        assert!(value(&out, "connection").is_empty() && value(&out, "upgrade").is_empty());
    }

    #[test]
    fn forwarding_headers_come_from_the_public_origin_never_from_the_client() {
        let incoming = h(&[
            ("X-Forwarded-For", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7, 8.8.8.8"),
            ("Forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
            ("Host", "evil.example"),
        ]);
        let (proto, host) = public_origin("https://tramites.example.gob.cl/claveunica/callback");
        assert_eq!((proto.as_str(), host.as_deref()), ("https", Some("tramites.example.gob.cl")));
        let changes = Changes { remove: &[], set: &[], cookie: &CookieHeader::Unchanged };
        let out = upstream_headers(&incoming, changes, Origin { proto: &proto, host: host.as_deref() });
        assert_eq!(names(&out), ["x-forwarded-proto", "x-forwarded-host"]);
        assert_eq!(value(&out, "x-forwarded-host"), ["tramites.example.gob.cl"]);
        assert_eq!(value(&out, "x-forwarded-proto"), ["https"]);
        let (proto, host) = public_origin("http://127.0.0.1:8080/claveunica/callback");
        assert_eq!((proto.as_str(), host.as_deref()), ("http", Some("127.0.0.1:8080")));
    }

    #[test]
    fn cookies_follow_the_core() {
        let incoming = h(&[("cookie", "a=1; claveunica_session=x"), ("cookie", "b=2")]);
        let origin = Origin { proto: "https", host: None };
        let with =
            |cookie: &CookieHeader| upstream_headers(&incoming, Changes { remove: &[], set: &[], cookie }, origin);
        let kept = with(&CookieHeader::Unchanged);
        assert_eq!(value(&kept, "cookie"), ["a=1; claveunica_session=x", "b=2"]);
        let replaced = with(&CookieHeader::Replace("a=1; b=2".into()));
        assert_eq!(value(&replaced, "cookie"), ["a=1; b=2"]);
        let removed = with(&CookieHeader::Remove);
        assert!(value(&removed, "cookie").is_empty());
        assert!(value(&removed, "x-forwarded-host").is_empty());
    }

    #[test]
    fn answers_lose_hop_by_hop_headers_and_a_length_without_body() {
        let upstream = h(&[
            ("Connection", "close"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "10"),
            ("Set-Cookie", "PHPSESSID=1"),
        ]);
        assert_eq!(names(&downstream_headers(&upstream, false)), ["Content-Length", "Set-Cookie"]);
        assert_eq!(names(&downstream_headers(&upstream, true)), ["Set-Cookie"]);
        assert!(is_bodyless("HEAD", 200) && is_bodyless("GET", 304) && is_bodyless("GET", 204));
        assert!(!is_bodyless("GET", 200));
    }
}
