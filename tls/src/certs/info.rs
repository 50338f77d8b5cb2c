//! Reads what administrators see of a certificate out of its DER:
//! subject, issuer, names, validity, key algorithm.

use postern_model::{CertStatus, Thumbprint};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::CertError;

/// The readable facts of one X.509 certificate.
#[derive(Clone, Debug)]
pub(crate) struct ParsedCert {
    pub thumbprint: Thumbprint,
    pub subject: String,
    pub issuer: String,
    pub domains: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub self_signed: bool,
    pub key_algorithm: String,
    /// The SubjectPublicKeyInfo, DER: what binds a certificate to a key.
    pub spki: Vec<u8>,
    /// Subject and issuer names, DER: what links a chain.
    pub subject_raw: Vec<u8>,
    pub issuer_raw: Vec<u8>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
}

impl ParsedCert {
    /// Parses a DER certificate; trailing bytes are an error.
    pub(crate) fn parse(der: &[u8]) -> Result<Self, CertError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertError::NotACertificate(format!("X.509 parse error: {e}")))?;
        if !rest.is_empty() {
            return Err(CertError::NotACertificate(
                "trailing bytes after the certificate".into(),
            ));
        }
        let mut domains = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => domains.push(d.to_string()),
                    GeneralName::IPAddress(ip) => domains.push(format_ip(ip)),
                    _ => {}
                }
            }
        }
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        if let Some(cn) = cn.filter(|_| domains.is_empty()) {
            domains.push(cn.to_owned());
        }
        Ok(Self {
            thumbprint: Thumbprint::of_der(der),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            domains,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            key_algorithm: key_algorithm(&cert),
            spki: cert.public_key().raw.to_vec(),
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            is_ca: cert.is_ca(),
        })
    }

    /// Valid, expired or not yet valid, at `now`.
    pub(crate) fn status_at(&self, now: OffsetDateTime) -> CertStatus {
        if now < self.not_before {
            CertStatus::NotYetValid
        } else if now > self.not_after {
            CertStatus::Expired
        } else {
            CertStatus::Valid
        }
    }

    /// True when the certificate names `host` (exactly, or by a `*.` wildcard one label deep).
    pub(crate) fn names(&self, host: &str) -> bool {
        self.domains.iter().any(|d| name_matches(d, host))
    }
}

/// RFC 6125 matching of a certificate name against a host name.
pub(crate) fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => pattern == host,
    }
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("rsa-{}", rsa.key_size()),
        Ok(PublicKey::EC(ec)) => format!("ecdsa-{}", ec.key_size()),
        Ok(_) | Err(_) => cert.public_key().algorithm.algorithm.to_id_string(),
    }
}

fn format_ip(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            std::net::Ipv6Addr::from(a).to_string()
        }
        _ => format!("{bytes:02x?}"),
    }
}

/// RFC 3339 text of a time, for lists and JSON.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_one_label() {
        assert!(name_matches("mail.adatum.com", "MAIL.adatum.com."));
        assert!(name_matches("*.adatum.com", "mail.adatum.com"));
        assert!(!name_matches("*.adatum.com", "a.mail.adatum.com"));
        assert!(!name_matches("*.adatum.com", "adatum.com"));
    }
}
