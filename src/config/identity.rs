//! The identity section: the headers the application reads on authenticated requests, as
//! templates (`{"X-Rut": "{run_dotted}"}`) read into [`crate::web::headers`] types. Without
//! it, the gate sets its default headers.

use super::error::ProblemKind;
use super::reader::Reader;
use crate::web::headers::{HeaderTemplate, IdentityHeaders};

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["headers"];

/// Reads the section; a wrong header is left out, with a problem.
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>) -> IdentityHeaders {
    let Some(m) = r.object("headers") else { return IdentityHeaders::default() };
    if m.is_empty() {
        r.problem("headers", ProblemKind::NoHeaders);
    }
    let mut templates: Vec<HeaderTemplate> = Vec::new();
    for (name, value) in m {
        let key = format!("headers.{name}");
        match value.as_str().map(|t| HeaderTemplate::parse(name, t)) {
            Some(Ok(t)) if templates.iter().any(|o| o.name() == t.name()) => {
                r.problem(&key, ProblemKind::RepeatedHeader);
            }
            Some(Ok(t)) => templates.push(t),
            Some(Err(e)) => r.problem(&key, ProblemKind::BadTemplate(e)),
            None => r.problem(&key, ProblemKind::MustBe("a template string such as \"{run}\"")),
        }
    }
    IdentityHeaders::new(templates)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::super::testing::{assert_kinds, assert_refused, base, load, with};
    use super::super::ProblemKind;
    use crate::web::headers::TemplateError;

    #[test]
    fn headers_are_read_into_templates() {
        let c = load(&with("headers", json!({"X-Rut": "{run_dotted}"}))).unwrap();
        assert!(c.headers.is_identity_name("x-rut"));
        assert!(load(&base()).unwrap().headers.is_identity_name("x-claveunica-run"));
    }

    #[test]
    fn bad_headers_are_named() {
        assert_refused(&[
            ("headers", json!({}), "headers"),
            ("headers", json!({"x-rut": "{rut}"}), "headers.x-rut"),
            ("headers", json!({"cookie": "{run}"}), "headers.cookie"),
            ("headers", json!({"x-rut": 5}), "headers.x-rut"),
        ]);
    }

    #[test]
    fn what_is_wrong_is_told_by_kind() {
        let cases = [
            ("headers", json!({}), "headers", ProblemKind::NoHeaders),
            (
                "headers",
                json!({"cookie": "{run}"}),
                "headers.cookie",
                ProblemKind::BadTemplate(TemplateError::Reserved),
            ),
            (
                "headers",
                json!({"x-rut": "{rut}"}),
                "headers.x-rut",
                ProblemKind::BadTemplate(TemplateError::UnknownValue("rut".into())),
            ),
            ("headers", json!({"x-rut": "{run}", "X-Rut": "{dv}"}), "headers.x-rut", ProblemKind::RepeatedHeader),
            (
                "headers",
                json!({"x-rut": 5}),
                "headers.x-rut",
                ProblemKind::MustBe("a template string such as \"{run}\""),
            ),
        ];
        assert_kinds(&cases);
        let err = load(&with("headers", json!({"x-rut": "{rut}"}))).unwrap_err();
        assert!(err.to_string().ends_with("headers.x-rut: names an unknown value {rut}; known: {run} {run_dotted} {numero} {dv} {nombres} {apellidos} {sub}"), "{err}");
    }
}
