//! Reading the configuration document: a [`Reader`] walks one JSON object, collects every
//! problem with its key path instead of stopping at the first, and refuses keys it does not
//! know. A misspelt optional key would otherwise silently fall back to a default, which for a
//! security gate is the wrong way to fail. Also here: a protobuf `Struct` (what Envoy hands
//! over for a `Struct`-typed configuration) as the JSON object it stands for, and the URL
//! rules every URL-valued key shares.

use serde_json::{Map, Value};
use url::Url;

use super::error::{ConfigError, Problem, ProblemKind, UrlProblem};

/// Collects problems while reading fields, so one pass reports all of them.
pub(super) struct Reader<'a> {
    map: &'a Map<String, Value>,
    prefix: &'static str,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    /// A reader of the document's top level.
    pub(super) fn new(map: &'a Map<String, Value>) -> Self {
        Self { map, prefix: "", problems: Vec::new() }
    }

    /// The raw value of `key`, for shapes the typed readers do not cover.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    /// Whether `key` is given (`null` counts as absent).
    pub(super) fn has(&self, key: &str) -> bool {
        !matches!(self.map.get(key), None | Some(Value::Null))
    }

    pub(super) fn problem(&mut self, key: &str, kind: ProblemKind) {
        let key = format!("{}{}", self.prefix, key);
        self.problems.push(Problem { key, kind });
    }

    /// A problem with the `index`th item of the list under `key`.
    pub(super) fn item_problem(&mut self, key: &str, index: usize, kind: ProblemKind) {
        self.problem(&format!("{key}[{index}]"), kind);
    }

    /// Whether a problem was already recorded for a key starting with `key`.
    pub(super) fn named(&self, key: &str) -> bool {
        let key = format!("{}{}", self.prefix, key);
        self.problems.iter().any(|p| p.key.starts_with(&key))
    }

    /// Refuses every key not in one of the `known` lists.
    pub(super) fn unknown_keys(&mut self, known: &[&[&str]]) {
        let map = self.map;
        for k in map.keys().filter(|k| !known.iter().any(|ks| ks.contains(&k.as_str()))) {
            self.problem(k, ProblemKind::UnknownKey);
        }
    }

    /// The object under `key` read as a nested section (`key.` before its keys), its unknown
    /// keys already refused. Hand it back with [`Reader::absorb`].
    pub(super) fn section(&mut self, key: &str, prefix: &'static str, known: &[&str]) -> Option<Reader<'a>> {
        let map = self.object(key)?;
        let mut section = Reader { map, prefix, problems: Vec::new() };
        section.unknown_keys(&[known]);
        Some(section)
    }

    pub(super) fn absorb(&mut self, section: Reader<'_>) {
        self.problems.extend(section.problems);
    }

    pub(super) fn string(&mut self, key: &str) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.problem(key, ProblemKind::Empty);
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.problem(key, ProblemKind::MustBe("a string"));
                None
            }
        }
    }

    pub(super) fn required_string(&mut self, key: &str) -> Option<String> {
        let present = self.has(key);
        let value = self.string(key);
        if !present {
            self.problem(key, ProblemKind::Missing);
        }
        value
    }

    /// Whole numbers in a range. Istio delivers `pluginConfig` as a protobuf Struct, whose
    /// numbers are doubles, so `600.0` must read as 600.
    pub(super) fn integer(&mut self, key: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(value) = self.map.get(key) else { return default };
        let n = match value {
            Value::Null => return default,
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64).map(|f| f as u64)
            }),
            _ => None,
        };
        match n {
            Some(n) if (min..=max).contains(&n) => n,
            _ => {
                self.problem(key, ProblemKind::NotWholeNumber { min, max });
                default
            }
        }
    }

    pub(super) fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.problem(key, ProblemKind::MustBe("an object"));
                None
            }
        }
    }

    /// The list under `key`, if given; a problem saying it `must be` a list otherwise.
    pub(super) fn list(&mut self, key: &str, must_be: &'static str) -> Option<&'a [Value]> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items),
            Some(_) => {
                self.problem(key, ProblemKind::MustBe(must_be));
                None
            }
        }
    }

    /// Key material given either inline, as a list of strings under `key`, or in the
    /// environment variable named by `env_key`, never both (`split` cuts the variable's text into
    /// items): the key it came from, and its items. `None`, with the problem recorded, when it
    /// is given neither way, both ways, or in the wrong shape. Each list names what it holds:
    /// `item` (`"a base64 string"`) and `list` (`"a list of base64 keys, newest first"`).
    pub(super) fn inline_or_env(
        &mut self,
        (key, env_key): (&'static str, &'static str),
        (item, list): (&'static str, &'static str),
        env: &dyn Fn(&str) -> Option<String>,
        split: fn(&str) -> Vec<String>,
    ) -> Option<(&'static str, Vec<String>)> {
        match (self.get(key), self.string(env_key)) {
            (Some(_), Some(_)) => {
                self.problem(key, ProblemKind::NotBoth(key, env_key));
                None
            }
            (Some(Value::Array(items)), None) => {
                let mut texts = Vec::new();
                for (i, value) in items.iter().enumerate() {
                    match value {
                        Value::String(s) => texts.push(s.clone()),
                        _ => self.item_problem(key, i, ProblemKind::MustBe(item)),
                    }
                }
                Some((key, texts))
            }
            (Some(_), None) => {
                self.problem(key, ProblemKind::MustBe(list));
                None
            }
            (None, Some(var)) => match env(&var) {
                Some(text) => Some((env_key, split(&text))),
                None => {
                    self.problem(env_key, ProblemKind::EnvUnset(var));
                    None
                }
            },
            (None, None) => {
                // An env_key that was given but unusable has been named already.
                if !self.named(env_key) {
                    self.problem(key, ProblemKind::MissingEither(env_key));
                }
                None
            }
        }
    }

    /// `text` as an http(s) URL (see [`http_url`]); a problem on `key` otherwise.
    pub(super) fn url(&mut self, key: &str, text: &str) -> Option<Url> {
        http_url(text).map_err(|e| self.problem(key, ProblemKind::Url(e))).ok()
    }

    /// An http(s) URL without a query, the base others are built on; a problem otherwise.
    pub(super) fn base_url(&mut self, key: &str, text: &str) -> Option<Url> {
        let url = self.url(key, text)?;
        if url.query().is_some() {
            self.problem(key, ProblemKind::Url(UrlProblem::Query));
            return None;
        }
        Some(url)
    }

    /// `value` when no problem was found, else every problem. A missing value without a
    /// problem would be a section's bug; it is refused all the same.
    pub(super) fn finish<T>(self, value: Option<T>) -> Result<T, ConfigError> {
        match value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ if !self.problems.is_empty() => Err(ConfigError { problems: self.problems }),
            _ => Err(ConfigError::document(ProblemKind::Incomplete)),
        }
    }
}

/// An absolute http(s) URL naming a host, without fragment or credentials.
fn http_url(text: &str) -> Result<Url, UrlProblem> {
    // A host written with a percent-escape or a non-ASCII character is refused before `url`
    // sees it: such a host goes through IDNA's full mapping, which the module carries only in
    // its ASCII-only form (`idna_adapter` 1.0, benches/PROFILE.md "Size"), and that form
    // asserts, in builds with debug assertions, that it is never handed an upper-case letter,
    // which `%45` or `EXAMPLE%2ecl` would hand it (found by fuzz/config). Such a host is not
    // ASCII as written either way; a configuration gives it in punycode.
    //
    // So the host is found here as `url` would find it, and for that the text is held to the
    // plain form a configuration writes: no spaces, control characters or backslashes (which
    // `url` would strip, trim or read as `/`), and the scheme followed by `://` (`url` also
    // reads `https:host` and `https:///host`). What is left, `url` splits at the first `/`,
    // `?` or `#`, after any run of slashes, and takes the host after the last `@`.
    if text.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\') {
        return Err(UrlProblem::Unwritten);
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(UrlProblem::Scheme);
    };
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return Err(UrlProblem::Scheme);
    }
    let authority = rest.trim_start_matches('/');
    let authority = authority.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials before an `@` are refused below, by their own name.
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.bytes().any(|b| b == b'%' || !b.is_ascii()) {
        return Err(UrlProblem::NotAscii);
    }
    let url = Url::parse(text).map_err(|e| match e {
        url::ParseError::IdnaError => UrlProblem::NotAscii,
        e => UrlProblem::Parse(e),
    })?;
    // The scheme was checked on the text above: `url` lowercases it and keeps it.
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlProblem::NoHost);
    }
    if url.fragment().is_some() {
        return Err(UrlProblem::Fragment);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    Ok(url)
}

/// A protobuf Struct as the JSON object it stands for.
pub(super) fn struct_to_json(s: prost_types::Struct) -> Map<String, Value> {
    // Inserted one by one rather than collected: collecting into the map sorts the pairs first
    // (the Struct's own map has them in order already), and that sort's code, made for these
    // pairs alone, cost the module about 5 KB (benches/PROFILE.md, "Size").
    let mut map = Map::new();
    for (k, v) in s.fields {
        map.insert(k, value_to_json(v));
    }
    map
}

fn value_to_json(v: prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(value_to_json).collect()),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    #[test]
    fn a_host_with_escapes_or_beyond_ascii_is_refused_and_never_reaches_idna() {
        // The fuzzer's input (fuzz/config), shortened: upper-case letters and an escape.
        for url in [
            "https://accountsEEEE%45EEe.acEunica.gob.cl/openid",
            "https://portal%2etest/",
            "https://PORTAL%2Etest/",
            "https://clavéunica.gob.cl/openid",
            "https://user@portal%2Etest/",
            // The forms `url` reads leniently hide the host from a plain `://` split (the
            // second fuzz/config crash was `https:` straight before an escaped host).
            "https:///portal%2Etest/",
            "HTTPS://portal%2Etest/",
        ] {
            assert_eq!(http_url(url).map(|u| u.to_string()), Err(UrlProblem::NotAscii), "{url}");
        }
        for (url, problem) in [
            ("https:logout_pathEEEE%EEEe.acEunica.gob.cl/openid", UrlProblem::Scheme),
            ("https:/portal%2Etest/", UrlProblem::Scheme),
            ("https:portal.test/", UrlProblem::Scheme),
            ("ftp://portal.test/", UrlProblem::Scheme),
            ("https:\\\\portal%2Etest/", UrlProblem::Unwritten),
            ("https://portal\\%2Etest/", UrlProblem::Unwritten),
            ("https://por\ttal%2Etest/", UrlProblem::Unwritten),
            (" https://portal.test/", UrlProblem::Unwritten),
            ("https://portal.test/\n", UrlProblem::Unwritten),
            ("https://portal.test/a b", UrlProblem::Unwritten),
        ] {
            assert_eq!(http_url(url).map(|u| u.to_string()), Err(problem), "{url:?}");
        }
        // An escape in the credentials is the credentials' problem, named as such.
        assert_eq!(http_url("https://user%40x@portal.test/").map(|u| u.to_string()), Err(UrlProblem::Credentials));
        // Upper case alone is ASCII: lowercased, as any URL parser does; escapes in the path
        // are the path's business.
        let url = http_url("https://PORTAL.Test/a%20b").map(|u| u.to_string());
        assert_eq!(url.as_deref(), Ok("https://portal.test/a%20b"));
    }

    /// Runs `read` over `doc` and returns what it read with the problems' `key: kind` texts.
    fn read<T>(doc: Value, read: impl FnOnce(&mut Reader<'_>) -> T) -> (T, Vec<String>) {
        let Value::Object(map) = doc else { panic!("not an object") };
        let mut r = Reader::new(&map);
        let value = read(&mut r);
        (value, r.problems.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn whole_numbers_in_range_or_the_default_with_a_problem() {
        let cases = [
            (json!(600), 600, vec![]),
            // A protobuf Struct's numbers are doubles.
            (json!(600.0), 600, vec![]),
            (json!(null), 7, vec![]),
            (json!(600.5), 7, vec!["n: must be a whole number from 60 to 3600"]),
            (json!(-60), 7, vec!["n: must be a whole number from 60 to 3600"]),
            (json!(59), 7, vec!["n: must be a whole number from 60 to 3600"]),
            (json!("600"), 7, vec!["n: must be a whole number from 60 to 3600"]),
        ];
        for (value, want, problems) in cases {
            let got = read(json!({ "n": value }), |r| r.integer("n", 7, 60, 3600));
            assert_eq!(got, (want, problems.iter().map(ToString::to_string).collect()), "{value}");
        }
        assert_eq!(read(json!({}), |r| r.integer("n", 7, 60, 3600)), (7, vec![]));
    }

    #[test]
    fn strings_are_non_blank_and_required_ones_are_there() {
        let cases = [
            (json!({"s": "x"}), Some("x"), vec![]),
            (json!({"s": " "}), None, vec!["s: must not be empty"]),
            (json!({"s": 1}), None, vec!["s: must be a string"]),
            (json!({"s": null}), None, vec!["s: is required"]),
            (json!({}), None, vec!["s: is required"]),
        ];
        for (doc, want, problems) in cases {
            let (got, found) = read(doc.clone(), |r| r.required_string("s"));
            assert_eq!((got.as_deref(), found), (want, problems.iter().map(ToString::to_string).collect()), "{doc}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_in_sections_too_with_their_path() {
        let doc = json!({"known": 1, "colour": 2, "sub": {"a": 1, "b": 2}});
        let (_, problems) = read(doc, |r| {
            r.unknown_keys(&[&["known"], &["sub"]]);
            let s = r.section("sub", "sub.", &["a"]);
            if let Some(s) = s {
                r.absorb(s);
            }
        });
        assert_eq!(problems, ["colour: unknown key", "sub.b: unknown key"]);
    }

    #[test]
    fn urls() {
        let cases = [
            ("https://x/a?q", "u", None),
            ("https://x/a?q", "b", Some("b: must not have a query")),
            ("ftp://x/", "u", Some("u: must be an http:// or https:// URL")),
            ("https://x/#f", "u", Some("u: must not have a fragment")),
            ("https://u:p@x/", "u", Some("u: must not carry credentials")),
            ("/relative", "u", Some("u: must be an http:// or https:// URL")),
            ("https://é.cl/", "u", Some("u: names a host that is not ASCII; write it in its punycode form (xn--...)")),
        ];
        for (text, key, problem) in cases {
            let (_, found) = read(json!({}), |r| if key == "b" { r.base_url(key, text) } else { r.url(key, text) });
            assert_eq!(found.first().map(String::as_str), problem, "{text}");
        }
    }

    #[test]
    fn finishing_gives_the_value_or_every_problem_and_never_nothing() {
        let map = Map::new();
        assert_eq!(Reader::new(&map).finish(Some(1)), Ok(1));
        let Value::Object(map) = json!({"s": 1}) else { unreachable!() };
        let mut r = Reader::new(&map);
        r.string("s");
        assert_eq!(r.finish(Some(1)).unwrap_err().to_string(), "invalid configuration: s: must be a string");
        // A section that yields nothing without naming why is refused all the same.
        let err = Reader::new(&Map::new()).finish(None::<u8>).unwrap_err();
        assert_eq!(err.problems, [Problem { key: "(document)".into(), kind: ProblemKind::Incomplete }]);
    }
}
