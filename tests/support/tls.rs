//! TLS for the Envoy stack's listener: a certificate made for each run, and an HTTP client
//! that trusts exactly that certificate (no other root, no verification turned off).

use std::sync::Arc;
use std::time::Duration;

/// A self-signed certificate for `127.0.0.1` and `localhost`, made for one stack.
pub struct TestCert {
    /// The certificate, PEM, for Envoy's `certificate_chain`.
    pub cert_pem: String,
    /// Its private key, PEM, for Envoy's `private_key`.
    pub key_pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl TestCert {
    /// A fresh key pair and certificate.
    pub fn new() -> TestCert {
        let names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let certified = rcgen::generate_simple_self_signed(names).expect("generating a test certificate");
        TestCert {
            cert_pem: certified.cert.pem(),
            key_pem: certified.signing_key.serialize_pem(),
            der: certified.cert.der().clone(),
        }
    }

    /// An agent like [`super::client::agent`] (no redirects followed, `timeout`) whose TLS
    /// trusts this certificate and nothing else.
    pub fn agent(&self, timeout: Duration) -> ureq::Agent {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("the test certificate as a trust anchor");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("rustls' default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        ureq::AgentBuilder::new().redirects(0).timeout(timeout).tls_config(Arc::new(config)).build()
    }
}
