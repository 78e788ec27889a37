//! Which requests need a ClaveÚnica session: path rules (first match wins), migration modes
//! for running the old login beside ClaveÚnica, and telling API clients from browsers.

use regex_lite::Regex;

/// What a rule asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// A ClaveÚnica session is required (subject to the migration mode).
    Enforce,
    /// Identity headers when a session exists; the request passes either way.
    Optional,
    /// Never a login, never identity headers.
    Public,
}

impl RuleAction {
    /// The configuration's name for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Enforce => "enforce",
            RuleAction::Optional => "optional",
            RuleAction::Public => "public",
        }
    }
}

/// How a rule matches the path (the query is not part of it).
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// The path starts with this.
    Prefix(String),
    /// The path is exactly this.
    Exact(String),
    /// The whole path matches this regular expression (anchored at both ends).
    Regex(Regex),
}

/// Whether rules tell `/Admin` from `/admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathCase {
    /// Letter case counts, as on most servers (Apache, NGINX, Tomcat, Node, PHP).
    #[default]
    Sensitive,
    /// ASCII letter case is ignored, for applications on servers that serve `/ADMIN` as
    /// `/admin` (IIS, ASP.NET): otherwise an `enforce` rule for `/admin` before a broader
    /// `public` one is walked around by `/ADMIN`.
    Insensitive,
}

impl PathCase {
    /// The configuration's name for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PathCase::Sensitive => "sensitive",
            PathCase::Insensitive => "insensitive",
        }
    }
}

/// One rule: a path match, optional methods, an action.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The path match.
    pub path: PathMatch,
    /// Upper-case methods; `None` matches every method.
    pub methods: Option<Vec<String>>,
    /// What the rule asks.
    pub action: RuleAction,
    /// Whether letter case counts; a regex is compiled for it by [`compile_regex`].
    pub case: PathCase,
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = self.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)));
        let same = |a: &str, b: &str| match self.case {
            PathCase::Sensitive => a == b,
            PathCase::Insensitive => a.eq_ignore_ascii_case(b),
        };
        method_ok
            && match &self.path {
                // `get` is `None` off a character boundary: then the prefix is not there.
                PathMatch::Prefix(p) => path.get(..p.len()).is_some_and(|head| same(head, p)),
                PathMatch::Exact(p) => same(path, p),
                PathMatch::Regex(r) => r.is_match(path),
            }
    }
}

/// The action for a request: the first rule that matches, else `enforce`.
///
/// A path that is not in normal form (see [`is_normal_path`]) is enforced whatever the rules
/// say: the application may resolve it to a path the rule never meant to open. Envoy's
/// `normalize_path` and `merge_slashes` fix some of these before the gate sees them; this
/// holds where a proxy was not set up so, and for what no proxy normalises (`;` parameters).
/// Percent-escapes are compared in upper case (`%c3%a9` is `%C3%A9`), as the application
/// decodes both alike.
#[must_use]
pub fn action_for(rules: &[Rule], method: &str, path: &str) -> RuleAction {
    if !is_normal_path(path) {
        return RuleAction::Enforce;
    }
    let path = upper_escapes(path);
    rules.iter().find(|r| r.matches(method, &path)).map_or(RuleAction::Enforce, |r| r.action)
}

/// Whether a path (without query) reaches the application as the gate reads it, whatever
/// server runs it. Not in normal form, so matching no `public` or `optional` rule:
///
/// - empty, `.` or `..` segments, and a segment ending in `.` (Windows drops trailing dots,
///   so IIS serves `/admin./x` as `/admin/x`);
/// - a backslash, read as `/` by IIS and some Java servers;
/// - `;` anywhere: Tomcat, Jetty and JBoss strip path parameters (`/public/..;/admin` is
///   `/admin` to them), and no proxy does;
/// - a control character, raw or encoded;
/// - a `%` not followed by two hex digits (`%u002e` is IIS's `.`), or an escape of what never
///   needs one: an unreserved character (`%2e`, `%61` for `a`), `/`, `\`, `;` or `%` itself
///   (`%252e` becomes `.` in applications that decode twice);
/// - escapes that do not decode to UTF-8 (overlong `%c0%ae` is `.` to old decoders), and
///   look-alikes of `.`, `/` and `\` that Windows' best-fit mapping turns into them
///   (fullwidth `%EF%BC%8F` and the like).
#[must_use]
pub fn is_normal_path(path: &str) -> bool {
    if !path.starts_with('/') || path.bytes().any(|b| matches!(b, b'\\' | b';') || b.is_ascii_control()) {
        return false;
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            decoded.push(b);
            i += 1;
            continue;
        }
        let hex = |at: usize| bytes.get(at).and_then(|h| char::from(*h).to_digit(16));
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return false;
        };
        let byte = u8::try_from(hi * 16 + lo).unwrap_or(0);
        let needless = byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~');
        if needless || matches!(byte, b'/' | b'\\' | b';' | b'%') || byte.is_ascii_control() {
            return false;
        }
        decoded.push(byte);
        i += 3;
    }
    let Ok(text) = std::str::from_utf8(&decoded) else {
        return false;
    };
    if text.chars().any(is_look_alike) {
        return false;
    }
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        // Windows also drops trailing spaces: `/admin%20/x` is `/admin/x` to IIS.
        if (seg.is_empty() && !last) || seg.ends_with('.') || seg.ends_with("%20") {
            return false;
        }
    }
    true
}

/// Characters Windows' best-fit mapping (IIS, and .NET's ASCII conversions) may turn into
/// `.`, `/` or `\`: the fullwidth and small forms, the one-dot leader, the division slash and
/// the set minus. Whole blocks, as failing closed costs a login on paths nobody uses.
fn is_look_alike(c: char) -> bool {
    matches!(c, '\u{FF00}'..='\u{FFEF}' | '\u{FE50}'..='\u{FE6F}' | '\u{2024}' | '\u{2025}' | '\u{2215}' | '\u{2216}')
}

/// The path with every percent-escape's hex digits in upper case; borrowed when they already
/// are.
pub(crate) fn upper_escapes(path: &str) -> std::borrow::Cow<'_, str> {
    let bytes = path.as_bytes();
    let lower_at = |i: usize| {
        bytes.get(i).is_some_and(|&b| b == b'%')
            && [i + 1, i + 2].iter().any(|&j| bytes.get(j).is_some_and(u8::is_ascii_lowercase))
    };
    if !(0..bytes.len()).any(lower_at) {
        return path.into();
    }
    let mut out = String::with_capacity(path.len());
    let mut upper_left = 0;
    for c in path.chars() {
        if c == '%' {
            upper_left = 2;
            out.push(c);
        } else if upper_left > 0 {
            upper_left -= 1;
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// Compiles a rule's regex so that it must match the whole path, as Envoy's `safe_regex` does,
/// ignoring ASCII letter case when the rules do.
pub fn compile_regex(pattern: &str, case: PathCase) -> Result<Regex, regex_lite::Error> {
    let flags = match case {
        PathCase::Sensitive => "",
        PathCase::Insensitive => "(?i)",
    };
    Regex::new(&format!("{flags}^(?:{pattern})$"))
}

/// How ClaveÚnica and the old login coexist during a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationMode {
    /// ClaveÚnica only.
    Enforce,
    /// Without a ClaveÚnica session, requests pass without identity, to the old login.
    Parallel,
    /// Like parallel, but a share of new visitors is sent to ClaveÚnica.
    Canary,
    /// Nothing is blocked; the gate logs and counts what it would have done.
    ReportOnly,
}

impl MigrationMode {
    /// The configuration's name for it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationMode::Enforce => "enforce",
            MigrationMode::Parallel => "parallel",
            MigrationMode::Canary => "canary",
            MigrationMode::ReportOnly => "report_only",
        }
    }
}

/// Migration settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The mode.
    pub mode: MigrationMode,
    /// Names of the old login's session cookies.
    pub legacy_cookies: Vec<String>,
    /// In canary mode, the share (0-100) of visitors with neither session sent to ClaveÚnica.
    pub canary_percent: u8,
}

impl Default for Migration {
    fn default() -> Self {
        Self { mode: MigrationMode::Enforce, legacy_cookies: Vec::new(), canary_percent: 0 }
    }
}

/// Whether a request without a session is not a top-level browser navigation, and so should
/// get a 401 rather than a redirect: `Sec-Fetch-Mode` other than `navigate`, an
/// `X-Requested-With` header, or an `Accept` that prefers JSON to HTML. A plain `curl`
/// (`Accept: */*`) counts as a navigation.
#[must_use]
pub fn is_api_request<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
    let mut accept_json = None;
    let mut accept_html = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("sec-fetch-mode") {
            if !value.trim().eq_ignore_ascii_case("navigate") {
                return true;
            }
        } else if name.eq_ignore_ascii_case("x-requested-with") {
            return true;
        } else if name.eq_ignore_ascii_case("accept") {
            for item in value.split(',') {
                let mut parts = item.split(';');
                let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let q =
                    parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q_value(q.trim())).unwrap_or(Q_ONE);
                let slot = if media == "application/json" || media.ends_with("+json") {
                    &mut accept_json
                } else if media == "text/html" || media == "application/xhtml+xml" {
                    &mut accept_html
                } else {
                    continue;
                };
                *slot = Some(slot.map_or(q, |old: i64| old.max(q)));
            }
        }
    }
    match (accept_json, accept_html) {
        (Some(json), Some(html)) => json > html,
        (Some(json), None) => json > 0,
        _ => false,
    }
}

/// A q-value of 1 in [`q_value`]'s unit.
const Q_ONE: i64 = 1_000_000_000;

/// A q-value (`0.8`, `1`, `.5`; RFC 9110 allows three decimals, clients may write more) in
/// billionths, compared exactly as decimals: an optional sign, digits, and a fraction of which
/// the first nine digits count. `None` for anything else (an exponent, `inf`, `nan`), which
/// counts as no q-value. Parsing it as an `f32` compared every decimal the same way (to its
/// seven digits) and pulled 17 KB of float parsing and tables into the module
/// (benches/PROFILE.md, "Size").
fn q_value(text: &str) -> Option<i64> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..)?),
        Some(b'+') => (false, text.get(1..)?),
        _ => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    let number = |digits: &mut dyn Iterator<Item = u8>| {
        digits.fold(0i64, |n, d| n.saturating_mul(10).saturating_add(i64::from(d - b'0')))
    };
    let whole = number(&mut whole.bytes());
    let fraction = number(&mut fraction.bytes().chain(std::iter::repeat(b'0')).take(9));
    let value = whole.saturating_mul(Q_ONE).saturating_add(fraction);
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn rule(path: PathMatch, methods: Option<&[&str]>, action: RuleAction) -> Rule {
        Rule {
            path,
            methods: methods.map(|ms| ms.iter().map(|m| m.to_string()).collect()),
            action,
            case: PathCase::Sensitive,
        }
    }

    #[test]
    fn first_match_wins_and_no_match_enforces() {
        let rules = vec![
            rule(PathMatch::Exact("/".into()), None, RuleAction::Optional),
            rule(PathMatch::Prefix("/static/".into()), None, RuleAction::Public),
            rule(PathMatch::Prefix("/static/private/".into()), None, RuleAction::Enforce),
            rule(
                PathMatch::Regex(compile_regex("/api/v[0-9]+/health", PathCase::Sensitive).unwrap()),
                Some(&["GET"]),
                RuleAction::Public,
            ),
        ];
        for (method, path, want) in [
            ("GET", "/", RuleAction::Optional),
            ("GET", "/index.html", RuleAction::Enforce),
            ("GET", "/static/app.css", RuleAction::Public),
            // The earlier, broader rule wins.
            ("GET", "/static/private/x", RuleAction::Public),
            ("GET", "/api/v2/health", RuleAction::Public),
            ("get", "/api/v2/health", RuleAction::Public),
            ("POST", "/api/v2/health", RuleAction::Enforce),
            // Anchored: a regex does not match part of a path.
            ("GET", "/api/v2/health/x", RuleAction::Enforce),
            ("GET", "/x/api/v2/health", RuleAction::Enforce),
            ("GET", "/tramites", RuleAction::Enforce),
        ] {
            assert_eq!(action_for(&rules, method, path), want, "{method} {path}");
        }
        assert_eq!(action_for(&[], "GET", "/"), RuleAction::Enforce);
        assert!(compile_regex("(", PathCase::Sensitive).is_err());
    }

    #[test]
    fn paths_that_could_climb_out_of_a_public_prefix_are_enforced() {
        let rules = vec![
            rule(PathMatch::Prefix("/static/".into()), None, RuleAction::Public),
            rule(PathMatch::Prefix("/pub/".into()), None, RuleAction::Optional),
        ];
        for path in ["/static/app.css", "/static/", "/static/a/b.png", "/static/caf%C3%A9.css", "/static/a%20b.png"] {
            assert_eq!(action_for(&rules, "GET", path), RuleAction::Public, "{path}");
        }
        assert_eq!(action_for(&rules, "GET", "/pub/x"), RuleAction::Optional);
        for path in [
            "/static/../admin",
            "/static/./x",
            "/static/%2e%2e/admin",
            "/static/%2E%2E/admin",
            "/static/..%2fadmin",
            "/static//x",
            "/static/..\\admin",
            "/static/%5c..%5cadmin",
            "/static/..",
            // Path parameters, which Tomcat, Jetty and JBoss strip.
            "/static/..;/admin",
            "/static;x/../admin",
            "/static/x;jsessionid=1",
            "/pub/..;/admin",
            // Double-encoded dots and slashes, and escapes of what needs none.
            "/static/%252e%252e/admin",
            "/static/%252e%252e%252fadmin",
            "/static/%25%32%65",
            "/static/%2561dmin",
            "/static/%61dmin",
            "/static/%3b/../admin",
            "/static/%3Bx",
            "/static/%00",
            "/static/%0a",
            // Malformed escapes: IIS's `%u002e`, a lone `%`.
            "/static/%u002e%u002e/admin",
            "/static/%",
            "/static/%2",
            "/static/%zz",
            // Overlong and invalid UTF-8, best-fit look-alikes.
            "/static/%c0%ae%c0%ae/admin",
            "/static/%C0%AF",
            "/static/%ff",
            "/static/%EF%BC%8F..%EF%BC%8Fadmin",
            "/static/%EF%BC%8E%EF%BC%8E/admin",
            "/static/%E2%88%95admin",
            // Windows drops trailing dots and spaces.
            "/static./x",
            "/static/x.",
            "/static%20/x",
            // Raw control characters.
            "/static/\tx",
        ] {
            assert_eq!(action_for(&rules, "GET", path), RuleAction::Enforce, "{path:?}");
            assert!(!is_normal_path(path), "{path:?}");
        }
    }

    #[test]
    fn escapes_compare_in_upper_case_and_case_insensitive_rules_ignore_letter_case() {
        let rules = vec![
            rule(PathMatch::Prefix("/admin/".into()), None, RuleAction::Enforce),
            rule(PathMatch::Prefix("/caf%C3%A9/".into()), None, RuleAction::Public),
            rule(PathMatch::Prefix("/".into()), None, RuleAction::Public),
        ];
        assert_eq!(action_for(&rules, "GET", "/caf%c3%a9/x"), RuleAction::Public);
        assert_eq!(action_for(&rules, "GET", "/admin/x"), RuleAction::Enforce);
        // Case-sensitive rules: `/ADMIN/` is another path (right for Apache, wrong for IIS).
        assert_eq!(action_for(&rules, "GET", "/ADMIN/x"), RuleAction::Public);
        let insensitive: Vec<Rule> = rules.into_iter().map(|r| Rule { case: PathCase::Insensitive, ..r }).collect();
        for path in ["/ADMIN/x", "/Admin/x", "/aDmIn/", "/%41dmin/x"] {
            assert_eq!(action_for(&insensitive, "GET", path), RuleAction::Enforce, "{path}");
        }
        assert_eq!(action_for(&insensitive, "GET", "/CAF%C3%A9/x"), RuleAction::Public);
        assert_eq!(action_for(&insensitive, "GET", "/public"), RuleAction::Public);
        // A prefix longer than the path, or ending inside a character, is not there.
        assert_eq!(action_for(&insensitive[..1], "GET", "/adm"), RuleAction::Enforce);
        let accented = vec![rule(PathMatch::Prefix("/ab".into()), None, RuleAction::Public)];
        assert_eq!(action_for(&accented, "GET", "/\u{e9}x"), RuleAction::Enforce);
        let re = compile_regex("/api/v[0-9]+/health", PathCase::Insensitive).unwrap();
        assert!(re.is_match("/API/V2/Health") && !re.is_match("/api/v2/health/x"));
    }

    #[test]
    fn api_clients_are_told_from_browsers() {
        let api = |h: &[(&str, &str)]| is_api_request(h.iter().copied());
        // Browsers and curl.
        assert!(!api(&[]));
        assert!(!api(&[("accept", "*/*")]));
        assert!(!api(&[("Sec-Fetch-Mode", "navigate"), ("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]));
        assert!(!api(&[("accept", "text/html, application/json;q=0.9")]));
        // API and XHR clients.
        assert!(api(&[("sec-fetch-mode", "cors")]));
        assert!(api(&[("Sec-Fetch-Mode", "no-cors")]));
        assert!(api(&[("X-Requested-With", "XMLHttpRequest")]));
        assert!(api(&[("accept", "application/json")]));
        assert!(api(&[("accept", "application/problem+json, text/html;q=0.5")]));
        assert!(!api(&[("accept", "application/json;q=0")]));
    }

    #[test]
    fn q_values_compare_as_the_decimals_they_are() {
        let api = |accept: &str| is_api_request([("accept", accept)]);
        // Positive control: the higher q wins, whichever type it is on.
        assert!(api("text/html;q=0.5, application/json;q=0.51"));
        assert!(!api("text/html;q=0.51, application/json;q=0.5"));
        // Equal values written differently are equal: HTML is not outranked.
        assert!(!api("text/html;q=.5, application/json;q=0.500"));
        assert!(!api("text/html;q=1, application/json;q=1.0"));
        assert!(!api("text/html;q=+0.5, application/json;q=0.5"));
        // A tiny q is still more than none, a negative one less.
        assert!(api("application/json;q=0.0001"));
        assert!(!api("application/json;q=-0.5"));
        assert!(api("text/html;q=-2, application/json;q=-1"));
        // Not a number: as if no q was given (1), or the next q= that is one.
        assert!(api("application/json;q=x"));
        assert!(!api("application/json;q=1e-1;q=0"));
        assert!(!api("text/html, application/json;q=."));
        assert_eq!(q_value("0.8"), Some(800_000_000));
        assert_eq!(q_value("1"), Some(Q_ONE));
        assert_eq!(q_value("0.1234567891"), q_value("0.123456789"), "nine decimals count");
        assert_eq!(q_value("-"), None);
        assert_eq!(q_value(""), None);
    }
}
