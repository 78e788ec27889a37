//! The pseudonym section: the key and the application name behind each person's pseudonym for
//! this application (`{pseudonym}` in a header template, or the assertion's `sub`), for an
//! application that needs to recognise a person and not to know who they are. The key comes
//! from the environment only, as every secret the agency keeps out of its configuration.

use super::error::ProblemKind;
use super::reader::Reader;
use crate::primitives::pseudonym::{Pseudonyms, MIN_KEY_LEN};
use crate::primitives::secret::SecretString;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["pseudonym"];

/// Reads `{"key_env": "NAME", "application": "tramites"}`; `default_application` names the
/// application when the section does not (the assertion's audience, else the portal's host).
#[inline(never)]
pub(super) fn read(
    r: &mut Reader<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    default_application: Option<&str>,
) -> Option<Pseudonyms> {
    let mut s = r.section("pseudonym", "pseudonym.", &["key_env", "application"])?;
    let key = match s.required_string("key_env") {
        Some(var) => match env(&var) {
            Some(key) if key.len() >= MIN_KEY_LEN => Some(SecretString::new(key)),
            Some(_) => {
                s.problem("key_env", ProblemKind::MustBe("a variable holding at least 32 bytes"));
                None
            }
            None => {
                s.problem("key_env", ProblemKind::EnvUnset(var));
                None
            }
        },
        None => None,
    };
    let application = s.string("application").or_else(|| default_application.map(str::to_string));
    if application.is_none() && !s.named("application") {
        s.problem("application", ProblemKind::Missing);
    }
    r.absorb(s);
    Some(Pseudonyms::new(key?, application?))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::super::testing::{base, kind_of};
    use super::super::{Config, ConfigError, ProblemKind};
    use crate::primitives::run::Run;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn load(v: &Value) -> Result<Config, ConfigError> {
        Config::from_json(v.to_string().as_bytes(), &|k| (k == "CU_PSEUDONYM_KEY").then(|| KEY.to_string()))
    }

    #[test]
    fn a_pseudonym_per_application_in_headers_and_defaults_named_after_the_portal() {
        let mut v = base();
        v["pseudonym"] = json!({"key_env": "CU_PSEUDONYM_KEY"});
        v["headers"] = json!({"x-persona": "{pseudonym}"});
        let c = load(&v).unwrap();
        let p = c.pseudonym.as_ref().unwrap();
        assert_eq!(p.application(), "portal.example.gob.cl", "the portal's host by default");
        let maria = Run::parse("44444444-4").unwrap();
        v["pseudonym"]["application"] = json!("tramites");
        let named = load(&v).unwrap().pseudonym.unwrap();
        assert_eq!(named.application(), "tramites");
        assert_ne!(named.of(&maria), p.of(&maria));
        assert_eq!(c.headers.pseudonym_header(), Some("x-persona"));
    }

    #[test]
    fn a_pseudonym_without_its_key_or_used_without_the_section_is_refused() {
        let mut v = base();
        v["headers"] = json!({"x-persona": "{pseudonym}"});
        let err = load(&v).unwrap_err();
        assert!(err.names("pseudonym"), "{err}");
        assert!(err.to_string().contains("x-persona"), "{err}");
        v["pseudonym"] = json!({"key_env": "NOT_SET_ANYWHERE"});
        assert_eq!(
            kind_of(&load(&v).unwrap_err(), "pseudonym.key_env"),
            Some(ProblemKind::EnvUnset("NOT_SET_ANYWHERE".into()))
        );
        v["pseudonym"] = json!({});
        assert_eq!(kind_of(&load(&v).unwrap_err(), "pseudonym.key_env"), Some(ProblemKind::Missing));
        let short = |_: &str| Some("short".to_string());
        v["pseudonym"] = json!({"key_env": "CU_PSEUDONYM_KEY"});
        let err = Config::from_json(v.to_string().as_bytes(), &short).unwrap_err();
        assert!(err.names("pseudonym.key_env"), "{err}");
    }
}
