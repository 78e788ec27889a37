//! The identity headers the legacy application reads, and their encoding. Names arrive from
//! userinfo as UTF-8 with accents ("Núñez"), which an HTTP header cannot carry safely, so
//! every value is percent-encoded (space as `%20`).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::session::Identity;

/// Everything but RFC 3986's unreserved characters is encoded.
const VALUE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The RUN as `12345678-5`.
pub const RUN: &str = "x-claveunica-run";
/// The RUN's body, `12345678`.
pub const NUMERO: &str = "x-claveunica-numero";
/// The RUN's check digit, `5` or `K`.
pub const DV: &str = "x-claveunica-dv";
/// Given names, joined with spaces, percent-encoded.
pub const NOMBRES: &str = "x-claveunica-nombres";
/// Surnames, joined with spaces, percent-encoded.
pub const APELLIDOS: &str = "x-claveunica-apellidos";

/// Every identity header name. Client copies of each are removed from every request.
pub const IDENTITY_HEADERS: [&str; 5] = [RUN, NUMERO, DV, NOMBRES, APELLIDOS];

/// Whether a client-sent header name is an identity header in disguise: any letter case, and
/// `_` read as `-`, because PHP, CGI, Rack and WSGI servers map `x_claveunica_run` and
/// `x-claveunica-run` to the same variable, so a forged underscore spelling could shadow the
/// verified header.
#[must_use]
pub fn is_identity_name(name: &str) -> bool {
    IDENTITY_HEADERS.iter().any(|id| {
        id.len() == name.len()
            && id.bytes().zip(name.bytes()).all(|(a, b)| a == b.to_ascii_lowercase() || (a == b'-' && b == b'_'))
    })
}

/// Percent-encodes a header value.
#[must_use]
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, VALUE_SET).to_string()
}

/// The identity headers for a verified identity, in a fixed order.
#[must_use]
pub fn identity_headers(identity: &Identity) -> Vec<(&'static str, String)> {
    let run = identity.run();
    vec![
        (RUN, run.plain()),
        (NUMERO, run.numero().to_string()),
        (DV, run.dv().to_string()),
        (NOMBRES, encode(&identity.nombres().join(" "))),
        (APELLIDOS, encode(&identity.apellidos().join(" "))),
    ]
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::run::Run;

    #[test]
    fn names_are_percent_encoded_utf8() {
        assert_eq!(encode("María Carmen"), "Mar%C3%ADa%20Carmen");
        assert_eq!(encode("De los Ríos Núñez"), "De%20los%20R%C3%ADos%20N%C3%BA%C3%B1ez");
        assert_eq!(encode("a\r\nb"), "a%0D%0Ab");
    }

    #[test]
    fn identity_names_in_every_spelling() {
        for n in ["x-claveunica-run", "X-ClaveUnica-RUN", "x_claveunica_run", "X_CLAVEUNICA_DV", "x-claveunica_nombres"]
        {
            assert!(is_identity_name(n), "{n}");
        }
        for n in ["x-claveunica-runx", "x-claveunica", "cookie", "x-claveunica-ru"] {
            assert!(!is_identity_name(n), "{n}");
        }
    }

    #[test]
    fn headers_for_an_identity() {
        let id = Identity::new(
            Run::new(44_444_444, '4').unwrap(),
            vec!["María".into(), "Carmen".into()],
            vec!["Peña".into()],
            "2594".into(),
        )
        .unwrap();
        let h = identity_headers(&id);
        assert_eq!(
            h,
            vec![
                (RUN, "44444444-4".to_string()),
                (NUMERO, "44444444".to_string()),
                (DV, "4".to_string()),
                (NOMBRES, "Mar%C3%ADa%20Carmen".to_string()),
                (APELLIDOS, "Pe%C3%B1a".to_string()),
            ]
        );
    }
}
