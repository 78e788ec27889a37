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

/// One rule: a path match, optional methods, an action.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The path match.
    pub path: PathMatch,
    /// Upper-case methods; `None` matches every method.
    pub methods: Option<Vec<String>>,
    /// What the rule asks.
    pub action: RuleAction,
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = self.methods.as_ref().is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)));
        method_ok
            && match &self.path {
                PathMatch::Prefix(p) => path.starts_with(p.as_str()),
                PathMatch::Exact(p) => path == p,
                PathMatch::Regex(r) => r.is_match(path),
            }
    }
}

/// The action for a request: the first rule that matches, else `enforce`.
///
/// A path that is not in normal form (`/static/../admin`, `/static//x`, `%2e%2e`, `%2f`, a
/// backslash) is enforced whatever the rules say: the application may resolve it to a path
/// the rule never meant to open. Envoy's `normalize_path` and `merge_slashes` fix most of
/// these before the gate sees them; this holds where a proxy was not set up so.
#[must_use]
pub fn action_for(rules: &[Rule], method: &str, path: &str) -> RuleAction {
    if !is_normal_path(path) {
        return RuleAction::Enforce;
    }
    rules.iter().find(|r| r.matches(method, path)).map_or(RuleAction::Enforce, |r| r.action)
}

/// Whether a path (without query) has no empty, `.` or `..` segment, no backslash and no
/// percent-encoded `.`, `/` or `\`.
#[must_use]
pub fn is_normal_path(path: &str) -> bool {
    if !path.starts_with('/') || path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e)) {
        return false;
    }
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Compiles a rule's regex so that it must match the whole path, as Envoy's `safe_regex` does.
pub fn compile_regex(pattern: &str) -> Result<Regex, regex_lite::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
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
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let slot = if media == "application/json" || media.ends_with("+json") {
                    &mut accept_json
                } else if media == "text/html" || media == "application/xhtml+xml" {
                    &mut accept_html
                } else {
                    continue;
                };
                *slot = Some(slot.map_or(q, |old: f32| old.max(q)));
            }
        }
    }
    match (accept_json, accept_html) {
        (Some(json), Some(html)) => json > html,
        (Some(json), None) => json > 0.0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn rule(path: PathMatch, methods: Option<&[&str]>, action: RuleAction) -> Rule {
        Rule { path, methods: methods.map(|ms| ms.iter().map(|m| m.to_string()).collect()), action }
    }

    #[test]
    fn first_match_wins_and_no_match_enforces() {
        let rules = vec![
            rule(PathMatch::Exact("/".into()), None, RuleAction::Optional),
            rule(PathMatch::Prefix("/static/".into()), None, RuleAction::Public),
            rule(PathMatch::Prefix("/static/private/".into()), None, RuleAction::Enforce),
            rule(PathMatch::Regex(compile_regex("/api/v[0-9]+/health").unwrap()), Some(&["GET"]), RuleAction::Public),
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
        assert!(compile_regex("(").is_err());
    }

    #[test]
    fn paths_that_could_climb_out_of_a_public_prefix_are_enforced() {
        let rules = vec![rule(PathMatch::Prefix("/static/".into()), None, RuleAction::Public)];
        for path in ["/static/app.css", "/static/", "/static/a/b.png"] {
            assert_eq!(action_for(&rules, "GET", path), RuleAction::Public, "{path}");
        }
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
        ] {
            assert_eq!(action_for(&rules, "GET", path), RuleAction::Enforce, "{path}");
        }
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
}
