//! The identity headers the legacy application reads: their names, their values (from
//! templates such as `{run_dotted}`), and the encoding that lets names with accents ("Núñez")
//! travel in an HTTP header: UTF-8, percent-encoded, space as `%20`.

use core::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

use crate::protocol::session::Identity;

/// Control characters, space, `%` and everything beyond ASCII are encoded; other printable
/// ASCII stays as it is, so `{run_dotted}` stays `12.345.678-5` and `RUN={run}` stays readable.
const VALUE_SET: &AsciiSet = &CONTROLS.add(b' ').add(b'%');

/// Percent-encodes a header value.
#[must_use]
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, VALUE_SET).to_string()
}

/// A value a template can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Run,
    RunDotted,
    Numero,
    Dv,
    Nombres,
    Apellidos,
    Sub,
    Pseudonym,
}

impl Var {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "run" => Var::Run,
            "run_dotted" => Var::RunDotted,
            "numero" => Var::Numero,
            "dv" => Var::Dv,
            "nombres" => Var::Nombres,
            "apellidos" => Var::Apellidos,
            "sub" => Var::Sub,
            "pseudonym" => Var::Pseudonym,
            _ => return None,
        })
    }

    fn push(self, identity: &Identity, pseudonym: Option<&str>, out: &mut String) {
        let run = identity.run();
        match self {
            Var::Run => out.push_str(&run.plain()),
            Var::RunDotted => out.push_str(&run.dotted()),
            Var::Numero => out.push_str(&run.numero().to_string()),
            Var::Dv => out.push(run.dv()),
            Var::Nombres => out.push_str(&identity.nombres().join(" ")),
            Var::Apellidos => out.push_str(&identity.apellidos().join(" ")),
            Var::Sub => out.push_str(identity.sub()),
            // The configuration refuses `{pseudonym}` without pseudonyms: never empty in use.
            Var::Pseudonym => out.push_str(pseudonym.unwrap_or_default()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// One identity header: a lower-case name and a value template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderTemplate {
    name: String,
    parts: Vec<Part>,
}

/// Headers a gate must never set: the request line, hop-by-hop headers, and the ones the
/// proxy and the application rely on for something else.
const RESERVED: &[&str] = &[
    "host",
    "cookie",
    "authorization",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
];

/// Why a header name or template is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TemplateError {
    /// The name is not an HTTP token of letters, digits, `-` and `_`.
    BadName,
    /// The name is one the proxy or the application needs for something else.
    Reserved,
    /// The template is longer than 256 bytes or holds control characters.
    TooLongOrControl,
    /// A `{` without its `}`.
    UnclosedBrace,
    /// A `}` without its `{`.
    UnopenedBrace,
    /// `{name}` names no value the gate knows.
    UnknownValue(String),
    /// No `{value}` at all: a constant is not an identity.
    NoValue,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::BadName => f.write_str("is not a valid header name (letters, digits, - and _)"),
            TemplateError::Reserved => f.write_str("is a header the proxy or the application needs for something else"),
            TemplateError::TooLongOrControl => {
                f.write_str("template must be at most 256 characters without control characters")
            }
            TemplateError::UnclosedBrace => f.write_str("has a { without its }"),
            TemplateError::UnopenedBrace => f.write_str("has a } without its {"),
            TemplateError::UnknownValue(name) => write!(
                f,
                "names an unknown value {{{name}}}; known: {{run}} {{run_dotted}} {{numero}} {{dv}} {{nombres}} {{apellidos}} {{sub}}"
            ),
            TemplateError::NoValue => f.write_str("names no value; a constant is not an identity"),
        }
    }
}

/// `name` as a header the gate may set on a forwarded request: lower case, a token, none of
/// the names the proxy and the application rely on for something else.
pub fn header_name(name: &str) -> Result<String, TemplateError> {
    let lower = name.to_ascii_lowercase();
    let token = !lower.is_empty()
        && lower.len() <= 64
        && lower.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !token || lower.starts_with(':') {
        return Err(TemplateError::BadName);
    }
    if RESERVED.contains(&lower.as_str()) || lower.starts_with("x-envoy-") {
        return Err(TemplateError::Reserved);
    }
    Ok(lower)
}

impl HeaderTemplate {
    /// Parses `name: template`, where the template mixes text with `{run}`, `{run_dotted}`,
    /// `{numero}`, `{dv}`, `{nombres}`, `{apellidos}` and `{sub}`.
    pub fn parse(name: &str, template: &str) -> Result<Self, TemplateError> {
        let lower = header_name(name)?;
        if template.len() > 256 || template.chars().any(char::is_control) {
            return Err(TemplateError::TooLongOrControl);
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TemplateError::UnclosedBrace)?;
            let var = Var::parse(&after[..close]).ok_or_else(|| TemplateError::UnknownValue(after[..close].into()))?;
            parts.push(Part::Var(var));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(TemplateError::UnopenedBrace);
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        if !parts.iter().any(|p| matches!(p, Part::Var(_))) {
            return Err(TemplateError::NoValue);
        }
        Ok(Self { name: lower, parts })
    }

    /// The header name, lower case.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value for an identity, percent-encoded.
    #[must_use]
    pub fn render(&self, identity: &Identity, pseudonym: Option<&str>) -> String {
        let mut raw = String::with_capacity(32);
        for part in &self.parts {
            match part {
                Part::Text(t) => raw.push_str(t),
                Part::Var(v) => v.push(identity, pseudonym, &mut raw),
            }
        }
        encode(&raw)
    }
}

/// The identity headers a gate sets, replacing the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    templates: Vec<HeaderTemplate>,
    /// Further names stripped from client requests (see [`IdentityHeaders::also_strip`]).
    also: Vec<String>,
}

/// The default headers and their templates.
pub const DEFAULTS: [(&str, &str); 5] = [
    ("x-claveunica-run", "{run}"),
    ("x-claveunica-numero", "{numero}"),
    ("x-claveunica-dv", "{dv}"),
    ("x-claveunica-nombres", "{nombres}"),
    ("x-claveunica-apellidos", "{apellidos}"),
];

impl Default for IdentityHeaders {
    fn default() -> Self {
        let templates = DEFAULTS.iter().filter_map(|(n, t)| HeaderTemplate::parse(n, t).ok()).collect();
        Self { templates, also: Vec::new() }
    }
}

impl IdentityHeaders {
    /// Headers from parsed templates.
    #[must_use]
    pub fn new(templates: Vec<HeaderTemplate>) -> Self {
        Self { templates, also: Vec::new() }
    }

    /// Whether a client-sent header name is one of these, or one of the default names, in
    /// disguise: any letter case, and `_` read as `-`, because PHP, CGI, Rack and WSGI servers
    /// map `x_claveunica_run` and `x-claveunica-run` to the same variable, so a forged
    /// underscore spelling could shadow the verified header. The default names are stripped
    /// even when custom ones replace them: an application half-migrated to new names may
    /// still read the old ones.
    #[must_use]
    pub fn is_identity_name(&self, name: &str) -> bool {
        let same = |a: u8, b: u8| {
            let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
            a == b || (matches!(a, b'-' | b'_') && matches!(b, b'-' | b'_'))
        };
        let matches = |id: &str| id.len() == name.len() && id.bytes().zip(name.bytes()).all(|(a, b)| same(a, b));
        self.templates.iter().any(|t| matches(&t.name))
            || DEFAULTS.iter().any(|(id, _)| matches(id))
            || self.also.iter().any(|id| matches(id))
    }

    /// Strips `name` from client requests too, though no template sets it: a header the gate
    /// sets by other means (the signed assertion).
    pub fn also_strip(&mut self, name: &str) {
        self.also.push(name.to_ascii_lowercase());
    }

    /// The headers for an identity, in configuration order; `pseudonym` is the person's
    /// pseudonym for this application, when the gate makes them.
    #[must_use]
    pub fn render(&self, identity: &Identity, pseudonym: Option<&str>) -> Vec<(String, String)> {
        self.templates.iter().map(|t| (t.name.clone(), t.render(identity, pseudonym))).collect()
    }

    /// The first header whose template names `{pseudonym}`, if any.
    #[must_use]
    pub fn pseudonym_header(&self) -> Option<&str> {
        self.templates.iter().find(|t| t.parts.contains(&Part::Var(Var::Pseudonym))).map(|t| t.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::primitives::run::Run;

    fn identity() -> Identity {
        Identity::new(
            Run::new(12_345_678, '5').unwrap(),
            vec!["María".into(), "Carmen".into()],
            vec!["Peña".into()],
            "2594".into(),
        )
        .unwrap()
    }

    #[test]
    fn names_are_percent_encoded_utf8() {
        assert_eq!(encode("María Carmen"), "Mar%C3%ADa%20Carmen");
        assert_eq!(encode("De los Ríos Núñez"), "De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez");
        assert_eq!(encode("a\r\nb%"), "a%0D%0Ab%25");
    }

    #[test]
    fn default_headers() {
        let h = IdentityHeaders::default().render(&identity(), None);
        let want = [
            ("x-claveunica-run", "12345678-5"),
            ("x-claveunica-numero", "12345678"),
            ("x-claveunica-dv", "5"),
            ("x-claveunica-nombres", "Mar%C3%ADa%20Carmen"),
            ("x-claveunica-apellidos", "Pe%C3%B1a"),
        ];
        assert_eq!(h, want.map(|(n, v)| (n.to_string(), v.to_string())));
    }

    #[test]
    fn templates() {
        let id = identity();
        for (template, want) in [
            ("{run_dotted}", "12.345.678-5"),
            ("RUN={run}", "RUN=12345678-5"),
            ("{numero}{dv}", "123456785"),
            ("{nombres} {apellidos}", "Mar%C3%ADa%20Carmen%20Pe%C3%B1a"),
            ("{sub}", "2594"),
        ] {
            assert_eq!(HeaderTemplate::parse("X-Rut", template).unwrap().render(&id, None), want, "{template}");
        }
        assert_eq!(HeaderTemplate::parse("X-Rut", "{run}").unwrap().name(), "x-rut");
        for (name, template) in [
            ("x-rut", "{rut}"),
            ("x-rut", "{run"),
            ("x-rut", "run}"),
            ("x-rut", "constant"),
            ("x-rut", "{run}\r\nx: y"),
            ("bad name", "{run}"),
            ("", "{run}"),
            (":path", "{run}"),
            ("Cookie", "{run}"),
            ("host", "{run}"),
            ("x-envoy-original-path", "{run}"),
        ] {
            assert!(HeaderTemplate::parse(name, template).is_err(), "{name}: {template}");
        }
    }

    #[test]
    fn identity_names_in_every_spelling() {
        let h = IdentityHeaders::default();
        for n in ["x-claveunica-run", "X-ClaveUnica-RUN", "x_claveunica_run", "X_CLAVEUNICA_DV", "x-claveunica_nombres"]
        {
            assert!(h.is_identity_name(n), "{n}");
        }
        for n in ["x-claveunica-runx", "x-claveunica", "cookie", "x-claveunica-ru"] {
            assert!(!h.is_identity_name(n), "{n}");
        }
        let custom = IdentityHeaders::new(vec![HeaderTemplate::parse("X_Rut", "{run}").unwrap()]);
        assert!(custom.is_identity_name("x-rut") && custom.is_identity_name("X_RUT"));
        // The defaults stay stripped when custom names replace them.
        assert!(custom.is_identity_name("x-claveunica-run") && custom.is_identity_name("X_CLAVEUNICA_NOMBRES"));
    }
}
