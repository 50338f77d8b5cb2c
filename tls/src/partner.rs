//! Partner names for domain security (DESIGN §5): a partner certificate is
//! valid for domain D when a DNS name in it is D or a host under D
//! (`mail.northwindtraders.com` serves `northwindtraders.com`), RFC 6125
//! wildcards included (`*.northwindtraders.com`) — Postfix's `nexthop,
//! dot-nexthop` rule. `northwindtraders.com.evil.test` and
//! `evilnorthwindtraders.com` do not name `northwindtraders.com`.
//!
//! [`PartnerServerVerifier`] applies the rule on the sending side: the
//! chain is checked by webpki against the trusted roots as usual, with the
//! name webpki checks being the certificate's own name that satisfies the
//! rule (webpki alone would ask for D exactly).

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Whether the certificate name `name` (a DNS name or `*.` wildcard)
/// names `domain` or a host under it.
pub fn names_domain(name: &str, domain: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return false;
    }
    let under = |host: &str| host.ends_with(&format!(".{domain}"));
    match name.strip_prefix("*.") {
        // A wildcard names hosts one label under its base: under D when
        // the base is D or under D.
        Some(base) => base == domain || under(base),
        None => name == domain || under(&name),
    }
}

/// A concrete host name for which webpki accepts `name` (a wildcard gets a
/// label in front).
fn concrete(name: &str) -> String {
    match name.strip_prefix("*.") {
        Some(base) => format!("postern-wildcard-check.{base}"),
        None => name.to_owned(),
    }
}

/// Server verification for PKI hops: webpki chain validation to the
/// trusted roots, and a certificate name that is the hop's domain or a host
/// under it.
pub struct PartnerServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
}

impl PartnerServerVerifier {
    /// Wraps a webpki verifier built over the trusted roots.
    pub fn new(inner: Arc<WebPkiServerVerifier>) -> Self {
        Self { inner }
    }
}

impl fmt::Debug for PartnerServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PartnerServerVerifier")
    }
}

impl ServerCertVerifier for PartnerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let ServerName::DnsName(domain) = server_name else {
            // An address: webpki checks IP SANs itself.
            return self
                .inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        };
        let names = super::trust::cert_names(end_entity.as_ref());
        let Some(name) = names.iter().find(|n| names_domain(n, domain.as_ref())) else {
            return Err(Error::InvalidCertificate(CertificateError::NotValidForName));
        };
        let checked = ServerName::try_from(concrete(name))
            .map_err(|_| Error::InvalidCertificate(CertificateError::NotValidForName))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &checked, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_or_a_host_under_it() {
        let d = "northwindtraders.com";
        assert!(names_domain("northwindtraders.com", d));
        assert!(names_domain("Mail.NorthwindTraders.com.", d));
        assert!(names_domain("a.b.northwindtraders.com", d));
        assert!(names_domain("*.northwindtraders.com", d));
        assert!(names_domain("*.mail.northwindtraders.com", d));
        assert!(!names_domain("northwindtraders.com.evil.test", d));
        assert!(!names_domain("evilnorthwindtraders.com", d));
        assert!(!names_domain("*.com", d));
        assert!(!names_domain("*.evilnorthwindtraders.com", d));
        assert!(!names_domain("adatum.com", d));
        assert!(!names_domain("", d));
    }
}
