//! What a refused configuration says: every [`Problem`] found, each naming its key path and
//! what is wrong as a [`ProblemKind`]. The wording of `Display` is what operators read in the
//! proxy's log and what `claveunica-gate check` prints, so it changes only on purpose.

use core::fmt;

use crate::primitives::run::RunError;
use crate::web::headers::TemplateError;

/// What is wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A required key is absent.
    Missing,
    /// A required key is absent, and so is the alternative that may stand for it.
    MissingEither(&'static str),
    /// A key this version does not know (perhaps misspelt).
    UnknownKey,
    /// A string that is empty or blank.
    Empty,
    /// The value is not of the form the key takes; the text says which, in words
    /// (`"a string"`, `"a list of RUNs"`).
    MustBe(&'static str),
    /// The value is not one of these names.
    OneOf(&'static [&'static str]),
    /// Not a whole number in this range.
    NotWholeNumber {
        /// The least accepted.
        min: u64,
        /// The most accepted.
        max: u64,
    },
    /// The value is not an acceptable URL.
    Url(UrlProblem),
    /// The document is not JSON (the parser's explanation).
    NotJson(String),
    /// The host's bytes are neither a JSON object nor a protobuf Struct.
    NotJsonOrStruct(prost::DecodeError),
    /// A value and the environment variable that may stand for it were both given.
    NotBoth(&'static str, &'static str),
    /// The named environment variable is not set.
    EnvUnset(String),
    /// The named environment variable is not set, or is empty.
    EnvUnsetOrEmpty(String),
    /// A list of session keys that holds none.
    NoKeys,
    /// A session key that is not base64.
    NotBase64,
    /// A session key that decodes to this many bytes instead of 32.
    KeyLength(usize),
    /// A session key given twice.
    RepeatedKey,
    /// A session key whose bytes are all equal.
    WeakKey,
    /// The callback's path is also the login or the logout path.
    CallbackClash,
    /// The value is the same as that of the named key.
    SameAs(&'static str),
    /// A scope without `openid`.
    NoOpenid,
    /// A duration not shorter than the named key's.
    NotShorterThan(&'static str),
    /// A rule without `prefix`, `exact` or `regex`.
    RulePathMissing,
    /// A rule with more than one of `prefix`, `exact` and `regex`.
    RulePathTwice,
    /// A rule's `prefix` or `exact` that is not a string starting with `/`, or a `regex` that
    /// is not a string.
    RulePathShape,
    /// A rule's regex that does not compile.
    BadRegex(regex_lite::Error),
    /// Parallel or canary mode without the old login's cookie names.
    LegacyCookiesNeeded,
    /// Canary mode without `canary_percent`.
    CanaryPercentNeeded,
    /// A pilot-list entry that is not a valid RUN.
    BadRun(RunError),
    /// An empty `headers` object.
    NoHeaders,
    /// Two identity headers with the same name.
    RepeatedHeader,
    /// An identity header's name or template that is refused.
    BadTemplate(TemplateError),
    /// A section that something else in the document needs (the text says what).
    NeededBy(String),
    /// A key one gate can only have once (the provider, the host's own keys), set in a site.
    TopLevelOnly,
    /// A host name the `sites` entry at this index already serves.
    HostTaken(usize),
    /// A site's `redirect_uri` names a host the site does not serve: the provider would send
    /// the browser back to another site, or to none.
    HostNotServed,
    /// A section yielded no value without naming why: a bug in the gate, reported rather
    /// than accepting a configuration that was not fully read.
    Incomplete,
}

/// Why a URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlProblem {
    /// The text does not parse as a URL.
    Parse(url::ParseError),
    /// The host is not ASCII (IDNA is built without its Unicode tables).
    NotAscii,
    /// Neither `http://` nor `https://`.
    Scheme,
    /// A space, control character or backslash, which URL parsers silently drop or reinterpret.
    Unwritten,
    /// No host.
    NoHost,
    /// A `#fragment`.
    Fragment,
    /// A user name or password.
    Credentials,
    /// A `?query` where other URLs are built on this one.
    Query,
}

impl fmt::Display for UrlProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlProblem::Parse(e) => write!(f, "is not a URL ({e})"),
            UrlProblem::NotAscii => {
                f.write_str("names a host that is not ASCII; write it in its punycode form (xn--...)")
            }
            UrlProblem::Scheme => f.write_str("must be an http:// or https:// URL"),
            UrlProblem::Unwritten => f.write_str("must not contain spaces, control characters or backslashes"),
            UrlProblem::NoHost => f.write_str("must name a host"),
            UrlProblem::Fragment => f.write_str("must not have a fragment"),
            UrlProblem::Credentials => f.write_str("must not carry credentials"),
            UrlProblem::Query => f.write_str("must not have a query"),
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Missing => f.write_str("is required"),
            ProblemKind::MissingEither(other) => write!(f, "is required (or {other})"),
            ProblemKind::UnknownKey => f.write_str("unknown key"),
            ProblemKind::Empty => f.write_str("must not be empty"),
            ProblemKind::MustBe(what) => write!(f, "must be {what}"),
            ProblemKind::OneOf(names) => {
                f.write_str("must be ")?;
                for (i, name) in names.iter().enumerate() {
                    let sep = match i {
                        0 => "",
                        _ if i + 1 == names.len() => " or ",
                        _ => ", ",
                    };
                    write!(f, "{sep}{name}")?;
                }
                Ok(())
            }
            ProblemKind::NotWholeNumber { min, max } => write!(f, "must be a whole number from {min} to {max}"),
            ProblemKind::Url(u) => fmt::Display::fmt(u, f),
            ProblemKind::NotJson(e) => write!(f, "is not valid JSON: {e}"),
            ProblemKind::NotJsonOrStruct(e) => write!(f, "is neither a JSON object nor a protobuf Struct ({e})"),
            ProblemKind::NotBoth(a, b) => write!(f, "give {a} or {b}, not both"),
            ProblemKind::EnvUnset(var) => write!(f, "environment variable {var} is not set"),
            ProblemKind::EnvUnsetOrEmpty(var) => write!(f, "environment variable {var} is not set or empty"),
            ProblemKind::NoKeys => f.write_str("must hold at least one key"),
            ProblemKind::NotBase64 => f.write_str("is not base64"),
            ProblemKind::KeyLength(n) => write!(f, "must decode to 32 bytes, not {n}"),
            ProblemKind::RepeatedKey => f.write_str("repeats an earlier key"),
            ProblemKind::WeakKey => f.write_str("is not random (all bytes equal)"),
            ProblemKind::CallbackClash => f.write_str("its path must differ from login_path and logout_path"),
            ProblemKind::SameAs(other) => write!(f, "must differ from {other}"),
            ProblemKind::NoOpenid => f.write_str("must include openid"),
            ProblemKind::NotShorterThan(other) => write!(f, "must be shorter than {other}"),
            ProblemKind::RulePathMissing => f.write_str("needs one of prefix, exact or regex"),
            ProblemKind::RulePathTwice => f.write_str("give only one of prefix, exact or regex"),
            ProblemKind::RulePathShape => {
                f.write_str("prefix and exact must be strings starting with /; regex a string")
            }
            ProblemKind::BadRegex(e) => write!(f, "is not a valid regular expression ({e})"),
            ProblemKind::LegacyCookiesNeeded => {
                f.write_str("must name the old login's session cookies in parallel and canary modes")
            }
            ProblemKind::CanaryPercentNeeded => f.write_str("is required in canary mode (0 to 100)"),
            ProblemKind::BadRun(e) => write!(f, "is not a valid RUN ({e})"),
            ProblemKind::NoHeaders => f.write_str("must name at least one header"),
            ProblemKind::RepeatedHeader => f.write_str("repeats a header name"),
            ProblemKind::BadTemplate(e) => fmt::Display::fmt(e, f),
            ProblemKind::NeededBy(user) => write!(f, "is required: {user} uses {{pseudonym}}"),
            ProblemKind::TopLevelOnly => {
                f.write_str("set it at the top level: one gate talks to one provider, for every site")
            }
            ProblemKind::HostTaken(site) => write!(f, "is already served by sites[{site}]"),
            ProblemKind::HostNotServed => f.write_str("names a host that this site's hosts do not cover"),
            ProblemKind::Incomplete => f.write_str("incomplete"),
        }
    }
}

/// One problem with the configuration, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key, as a path (`session.max_age_s`, `rules[0].action`), or `(document)` for the
    /// document as a whole.
    pub key: String,
    /// What is wrong with it.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.kind)
    }
}

/// Every problem found in a configuration document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in the order they were found.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// A refusal of the document as a whole.
    pub(super) fn document(kind: ProblemKind) -> Self {
        Self::one("(document)", kind)
    }

    /// A refusal for one key.
    pub(super) fn one(key: &str, kind: ProblemKind) -> Self {
        Self { problems: vec![Problem { key: key.into(), kind }] }
    }

    /// Whether one of the problems concerns `key`.
    #[must_use]
    pub fn names(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key == key)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            fmt::Display::fmt(p, f)?;
        }
        Ok(())
    }
}
