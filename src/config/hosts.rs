//! The host names a site answers for (`"sites": [{"hosts": [...]}]`), and how a request's
//! authority is compared with them. A name is matched case-insensitively, without its port and
//! without a final dot, against exact names and `*.suffix` wildcards; anything else is no match,
//! so a request the configuration does not name is never served as some other site.

use core::fmt;

use super::error::ProblemKind;

/// One entry of a site's `hosts`: an exact name, or `*.suffix` for any name with at least one
/// label before `.suffix` (never `suffix` itself, as in TLS certificates and Envoy's
/// `domains`, though here the wildcard may cover several labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `tramites.agencia.gob.cl`.
    Exact(String),
    /// `*.agencia.gob.cl`, kept as `.agencia.gob.cl`.
    Suffix(String),
}

impl HostPattern {
    /// Reads one entry: a DNS name in ASCII (an internationalised name in its `xn--` form),
    /// lower-cased, with no port, path or final dot; `*.` only as the first label.
    pub fn parse(text: &str) -> Result<Self, ProblemKind> {
        const SHAPE: &str = "a host name (tramites.agencia.gob.cl) or *.suffix, without port or scheme";
        let lower = text.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if !is_dns_name(name) || (wildcard && !name.contains('.')) {
            return Err(ProblemKind::MustBe(SHAPE));
        }
        Ok(if wildcard { HostPattern::Suffix(format!(".{name}")) } else { HostPattern::Exact(name.to_string()) })
    }

    /// Whether `host` (already as [`request_host`] gives it) is one this pattern names.
    #[must_use]
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(name) => host == name,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// The host of a request's authority (`:authority` or `Host`), as patterns compare it:
/// lower-cased, without the port and without a final dot. `None` for an authority that is no
/// host name (empty, user info, an IP literal's brackets left open, characters a name cannot
/// hold), which no site names.
#[must_use]
pub fn request_host(authority: &str) -> Option<String> {
    let host = if authority.starts_with('[') {
        // An IPv6 literal: `[::1]:8080`. Kept whole; no pattern names one, so it matches none.
        let end = authority.find(']')?;
        let rest = authority.get(end + 1..)?;
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return authority.get(..=end).map(str::to_ascii_lowercase);
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) if is_port(port) => host,
            Some(_) => return None,
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    is_dns_name(&host).then_some(host)
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// Labels of letters, digits and hyphens (not at either end), 1 to 63 bytes, at most 253 in all.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn pattern(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn served(pattern_text: &str, authority: &str) -> bool {
        request_host(authority).is_some_and(|host| pattern(pattern_text).matches(&host))
    }

    #[test]
    fn exact_names_match_in_any_case_with_or_without_port_and_final_dot() {
        for authority in [
            "tramites.agencia.gob.cl",
            "TRAMITES.Agencia.gob.cl",
            "tramites.agencia.gob.cl:443",
            "tramites.agencia.gob.cl.",
            "tramites.agencia.gob.cl.:8443",
        ] {
            assert!(served("Tramites.agencia.gob.cl", authority), "{authority}");
        }
        for authority in [
            "agencia.gob.cl",
            "x.tramites.agencia.gob.cl",
            "tramites.agencia.gob.cl.evil.cl",
            "tramites-agencia.gob.cl",
            "tramites.agencia.gob.cl:",
            "tramites.agencia.gob.cl:abc",
            "user@tramites.agencia.gob.cl",
            "",
        ] {
            assert!(!served("tramites.agencia.gob.cl", authority), "{authority}");
        }
    }

    #[test]
    fn a_wildcard_covers_names_below_its_suffix_never_the_suffix_itself() {
        for authority in ["a.agencia.gob.cl", "a.b.agencia.gob.cl:8080", "A.AGENCIA.GOB.CL"] {
            assert!(served("*.agencia.gob.cl", authority), "{authority}");
        }
        for authority in ["agencia.gob.cl", "xagencia.gob.cl", "a.agencia.gob.cl.evil.cl", "[::1]:8080"] {
            assert!(!served("*.agencia.gob.cl", authority), "{authority}");
        }
    }

    #[test]
    fn patterns_that_name_no_host_are_refused() {
        for text in [
            "",
            "*",
            "*.cl",
            "a.*.gob.cl",
            "tramites.agencia.gob.cl:443",
            "https://tramites.agencia.gob.cl",
            "trámites.gob.cl",
            "-x.gob.cl",
            "a..gob.cl",
            "tramites.agencia.gob.cl.",
        ] {
            assert!(HostPattern::parse(text).is_err(), "{text:?} accepted");
        }
        assert_eq!(pattern("xn--trmites-2wa.gob.cl"), HostPattern::Exact("xn--trmites-2wa.gob.cl".into()));
    }

    #[test]
    fn ip_literals_and_odd_authorities_are_hosts_no_pattern_names() {
        assert_eq!(request_host("[::1]:8080").as_deref(), Some("[::1]"));
        assert_eq!(request_host("[::1").as_deref(), None);
        assert_eq!(request_host("[::1]x").as_deref(), None);
        assert_eq!(request_host("127.0.0.1:8000").as_deref(), Some("127.0.0.1"));
        assert!(!served("tramites.agencia.gob.cl", "127.0.0.1:8000"));
    }
}
