//! Failing closed when the host fails: the answers an adapter sends when it cannot carry out
//! a decision or cannot reach the application. Built here, so Envoy and NGINX Unit say the same
//! thing with the same status, page and reference id, and nothing is forwarded.

use super::decision::{Level, LogLine, Response};
use super::request::Entropy;
use crate::primitives::run::mask_runs;
use crate::web::pages;

/// What went wrong on the host's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFailure {
    /// No configuration is loaded (none given, or the one given was refused): 503, and the
    /// application stays closed until it is fixed.
    NotConfigured,
    /// A header the decision names could not be set or removed: 500, since forwarding anyway
    /// would hand the application a request it believes identified, or a forged header.
    HeaderRewrite,
    /// The host would not take the answer or the call the decision asked for: 500.
    Internal,
    /// The client's request body could not be read: 400.
    RequestBody,
    /// The application did not answer, or its answer could not be passed on: 502, like
    /// Envoy's answer for an unreachable cluster.
    AppUnreachable,
}

impl HostFailure {
    fn status(self) -> u16 {
        match self {
            HostFailure::NotConfigured => 503,
            HostFailure::HeaderRewrite | HostFailure::Internal => 500,
            HostFailure::RequestBody => 400,
            HostFailure::AppUnreachable => 502,
        }
    }

    fn name(self) -> &'static str {
        match self {
            HostFailure::NotConfigured => "not_configured",
            HostFailure::HeaderRewrite => "header_rewrite",
            HostFailure::Internal => "internal",
            HostFailure::RequestBody => "request_body",
            HostFailure::AppUnreachable => "app_unreachable",
        }
    }

    fn text(self) -> (&'static str, &'static str) {
        match self {
            HostFailure::NotConfigured => (
                "Servicio no disponible",
                "El ingreso con ClaveÚnica no está disponible por ahora. Inténtalo más tarde.",
            ),
            HostFailure::HeaderRewrite | HostFailure::Internal => {
                ("Ocurrió un error", "No pudimos procesar tu solicitud. Inténtalo de nuevo.")
            }
            HostFailure::RequestBody => ("Solicitud incompleta", "Tu solicitud no llegó completa. Inténtalo de nuevo."),
            HostFailure::AppUnreachable => (
                "La aplicación no está disponible",
                "No pudimos comunicarnos con el servicio. Inténtalo de nuevo en unos minutos.",
            ),
        }
    }
}

/// The answer for a host failure, with a reference id in the page and in the log line.
/// `detail` goes to the log only (the host's error text); it must hold no secret.
#[must_use]
pub fn fail_closed(failure: HostFailure, detail: &str, rng: &mut dyn Entropy) -> Response {
    let reference = reference(rng);
    let (title, message) = failure.text();
    // The host's error text may quote a request (a header, a URL): no RUN in it.
    let detail = if detail.is_empty() { String::new() } else { format!(" detail={}", mask_runs(detail)) };
    Response {
        register: None,
        status: failure.status(),
        headers: vec![
            ("content-type", "text/html; charset=utf-8".to_string()),
            ("cache-control", "no-store".to_string()),
        ],
        body: pages::error(&pages::Agency::default(), title, message, &reference, None),
        log: Some(LogLine {
            level: Level::Error,
            message: format!(
                "failed closed: status={} reason={} ref={reference}{detail}",
                failure.status(),
                failure.name()
            ),
        }),
        events: super::Events::default(),
    }
}

/// A short id a person can read out to support, found again in the log.
pub(crate) fn reference(rng: &mut dyn Entropy) -> String {
    let mut bytes = [0u8; 4];
    match rng.fill(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => "sin-ref".into(),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::testkit::{NoEntropy, SeqEntropy};

    #[test]
    fn every_failure_has_its_status_page_and_reference() {
        let table = [
            (HostFailure::NotConfigured, 503, "Servicio no disponible"),
            (HostFailure::HeaderRewrite, 500, "Ocurrió un error"),
            (HostFailure::Internal, 500, "Ocurrió un error"),
            (HostFailure::RequestBody, 400, "Solicitud incompleta"),
            (HostFailure::AppUnreachable, 502, "La aplicación no está disponible"),
        ];
        for (failure, status, title) in table {
            let r = fail_closed(failure, "ConnectionRefused", &mut SeqEntropy(0));
            assert_eq!(r.status, status, "{failure:?}");
            assert!(r.body.contains(title), "{failure:?}: {}", r.body);
            assert!(r.body.contains("01020304"), "the page names the reference: {}", r.body);
            let log = r.log.unwrap();
            assert_eq!(log.level, Level::Error);
            assert!(log.message.contains("ref=01020304"), "{}", log.message);
            assert!(log.message.contains("detail=ConnectionRefused"), "{}", log.message);
            assert!(r.headers.contains(&("cache-control", "no-store".to_string())));
        }
    }

    #[test]
    fn a_host_without_randomness_still_fails_closed() {
        let r = fail_closed(HostFailure::NotConfigured, "", &mut NoEntropy);
        assert_eq!(r.status, 503);
        assert!(r.body.contains("sin-ref"));
        assert!(!r.log.unwrap().message.contains("detail="));
    }
}
