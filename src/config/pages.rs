//! The pages section: who the gate's pages speak for (the agency, its help contact, its home),
//! and whether a person without a session sees the page with the ClaveÚnica button before
//! going to ClaveÚnica, with the old login as a secondary link while a migration keeps it.

use super::error::ProblemKind;
use super::reader::Reader;
use crate::web::pages::Agency;

/// The top-level keys this section reads.
pub(super) const KEYS: &[&str] = &["pages"];

const PAGE_KEYS: &[&str] = &["agency", "help", "help_url", "home", "button_page", "legacy_login"];

/// The pages section, read; its fields become [`super::Config`]'s.
pub(super) struct Pages {
    pub(super) agency: Agency,
    pub(super) button_page: bool,
    pub(super) legacy_login: Option<String>,
}

/// Reads the section. Nothing in it is required: a wrong value is left at its default, with a
/// problem.
#[inline(never)]
pub(super) fn read(r: &mut Reader<'_>) -> Pages {
    let mut agency = Agency::default();
    let Some(mut s) = r.section("pages", "pages.", PAGE_KEYS) else {
        return Pages { agency, button_page: false, legacy_login: None };
    };
    if let Some(name) = s.string("agency") {
        agency.name = name;
    }
    let help = s.string("help");
    let help_url = link(&mut s, "help_url", true);
    match (help, help_url) {
        (Some(help), url) => (agency.help, agency.help_url) = (help, url),
        // A link without words would be read out as its address: the agency names it.
        (None, Some(_)) => s.problem("help", ProblemKind::Missing),
        (None, None) => {}
    }
    if let Some(home) = link(&mut s, "home", false) {
        agency.home = home;
    }
    let button_page = match s.get("button_page") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => {
            s.problem("button_page", ProblemKind::MustBe("true or false"));
            false
        }
    };
    let legacy_login = link(&mut s, "legacy_login", false);
    r.absorb(s);
    Pages { agency, button_page, legacy_login }
}

/// A link the pages print: a path on this site, an http(s) URL, or (when `contact`) a
/// `mailto:` or `tel:` address. Anything else (`javascript:`, `//host`) is refused.
fn link(s: &mut Reader<'_>, key: &str, contact: bool) -> Option<String> {
    let text = s.string(key)?;
    let plain = text.bytes().all(|b| b.is_ascii_graphic());
    let path = text.starts_with('/') && !text.starts_with("//") && !text.contains('\\');
    let contact_link = contact && (text.starts_with("mailto:") || text.starts_with("tel:"));
    if plain && (path || contact_link) {
        return Some(text);
    }
    if text.starts_with("http") {
        return s.url(key, &text).map(|_| text);
    }
    let must_be =
        if contact { "a path, an http(s) URL, or a mailto: or tel: link" } else { "a path or an http(s) URL" };
    s.problem(key, ProblemKind::MustBe(must_be));
    None
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::super::testing::{assert_refused, base, load, with};
    use super::*;

    #[test]
    fn the_agency_its_help_and_home() {
        let c = load(&with(
            "pages",
            json!({"agency": "Registro Civil", "help": "Llama al 600", "help_url": "tel:600", "home": "https://www.registrocivil.cl/",
                   "button_page": true, "legacy_login": "/login"}),
        ))
        .unwrap();
        assert_eq!(
            c.agency,
            Agency {
                name: "Registro Civil".into(),
                help: "Llama al 600".into(),
                help_url: Some("tel:600".into()),
                home: "https://www.registrocivil.cl/".into(),
            }
        );
        assert!(c.button_page);
        assert_eq!(c.legacy_login.as_deref(), Some("/login"));
        let d = load(&base()).unwrap();
        assert_eq!(d.agency, Agency::default());
        assert!(!d.button_page && d.legacy_login.is_none());
    }

    #[test]
    fn bad_values() {
        assert_refused(&[
            ("pages", json!({"home": "javascript:alert(1)"}), "pages.home"),
            ("pages", json!({"home": "//evil.example"}), "pages.home"),
            ("pages", json!({"legacy_login": "tel:600"}), "pages.legacy_login"),
            ("pages", json!({"help": "x", "help_url": "javascript:x"}), "pages.help_url"),
            ("pages", json!({"help_url": "https://ayuda.example.gob.cl/"}), "pages.help"),
            ("pages", json!({"button_page": "yes"}), "pages.button_page"),
            ("pages", json!({"agency": ""}), "pages.agency"),
            ("pages", json!({"colour": "blue"}), "pages.colour"),
            ("pages", json!(true), "pages"),
        ]);
    }
}
