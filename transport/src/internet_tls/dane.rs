//! DANE for SMTP (RFC 7672): TLSA records and the rustls verifier that
//! checks a server certificate against them.
//!
//! * DANE-EE (usage 3): the leaf certificate (selector 0) or its public key
//!   (selector 1) matches, exactly or by SHA-256/512; names and dates are
//!   not checked (RFC 7672 §3.1.1);
//! * DANE-TA (usage 2): a certificate the server sent matches and the leaf
//!   chains to it with the MX host's name (RFC 7672 §3.1.2);
//! * PKIX-TA/PKIX-EE (usages 0 and 1) are unusable for SMTP (§3.1.3).
//!
//! No rustls DANE verifier crate exists, so the matching is written here
//! (a few lines over x509-parser and sha2); chain building for DANE-TA is
//! rustls' webpki verifier with the matched certificate as the only root.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256, Sha512};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::tls::provider;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage: 2 DANE-TA, 3 DANE-EE (0, 1 unusable for SMTP).
    pub usage: u8,
    /// 0: full certificate, 1: SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0: exact, 1: SHA-256, 2: SHA-512.
    pub matching: u8,
    /// The association data.
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Whether RFC 7672 lets SMTP use this record.
    pub fn is_usable(&self) -> bool {
        matches!(self.usage, 2 | 3) && self.selector <= 1 && self.matching <= 2
    }

    /// Whether `cert` (DER) matches this record's selector and matching type.
    pub fn matches(&self, cert: &[u8]) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.to_vec(),
            1 => match X509Certificate::from_der(cert) {
                Ok((_, parsed)) => parsed.tbs_certificate.subject_pki.raw.to_vec(),
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data,
            1 => Sha256::digest(&selected).as_slice() == self.data.as_slice(),
            2 => Sha512::digest(&selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

impl fmt::Display for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        for b in &self.data {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The validated TLSA RRset of one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsaSet {
    records: Vec<Tlsa>,
}

impl TlsaSet {
    /// A set of records (usable or not).
    pub fn new(records: Vec<Tlsa>) -> Self {
        Self { records }
    }

    /// Whether any record is usable (RFC 7672 §2.2).
    pub fn has_usable(&self) -> bool {
        self.records.iter().any(Tlsa::is_usable)
    }

    /// The usable records.
    pub fn usable(&self) -> impl Iterator<Item = &Tlsa> {
        self.records.iter().filter(|r| r.is_usable())
    }
}

/// The certificate matched no usable TLSA record.
#[derive(Debug)]
pub struct DaneMismatch(pub String);

impl fmt::Display for DaneMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server certificate matches no TLSA record of {}", self.0)
    }
}

impl std::error::Error for DaneMismatch {}

/// Checks a server certificate against the MX host's TLSA records.
pub struct DaneVerifier {
    tlsa: Arc<TlsaSet>,
}

impl DaneVerifier {
    /// A verifier for `tlsa`.
    pub fn new(tlsa: Arc<TlsaSet>) -> Self {
        Self { tlsa }
    }

    /// DANE-TA: `ta` matched; the leaf must chain to it and name `server`.
    fn chains_to(
        ta: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server: &ServerName<'_>,
        now: UnixTime,
    ) -> bool {
        let mut roots = RootCertStore::empty();
        if roots.add(ta.clone().into_owned()).is_err() {
            return false;
        }
        let Ok(verifier) = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider()).build()
        else {
            return false;
        };
        let rest: Vec<CertificateDer<'_>> = intermediates.iter().filter(|c| *c != ta).cloned().collect();
        verifier
            .verify_server_cert(end_entity, &rest, server, &[], now)
            .is_ok()
    }
}

impl fmt::Debug for DaneVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DaneVerifier").field("tlsa", &self.tlsa).finish()
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        for record in self.tlsa.usable() {
            let ok = match record.usage {
                3 => record.matches(end_entity.as_ref()),
                2 => intermediates
                    .iter()
                    .chain(std::iter::once(end_entity))
                    .filter(|c| record.matches(c.as_ref()))
                    .any(|ta| Self::chains_to(ta, end_entity, intermediates, server_name, now)),
                _ => false,
            };
            if ok {
                return Ok(ServerCertVerified::assertion());
            }
        }
        Err(Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(DaneMismatch(server_name.to_str().into_owned()))),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}

/// A client config checking the server against `tlsa`, presenting our
/// certificate from `client_cert` when asked.
pub fn dane_client_config(
    tlsa: Arc<TlsaSet>,
    client_cert: Option<crate::tls::ClientCertResolver>,
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| panic!("the ring provider supports the default TLS versions"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DaneVerifier::new(tlsa)));
    Arc::new(match client_cert {
        Some(resolver) => builder.with_client_cert_resolver(Arc::new(resolver)),
        None => builder.with_no_client_auth(),
    })
}

/// The `3 1 1` record of a certificate (DER): what an administrator
/// publishes for DANE-EE.
pub fn tlsa_3_1_1(cert: &[u8]) -> Option<Tlsa> {
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    Some(Tlsa {
        usage: 3,
        selector: 1,
        matching: 1,
        data: Sha256::digest(parsed.tbs_certificate.subject_pki.raw).to_vec(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cert(name: &str) -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap()
    }

    #[test]
    fn ee_records_match_by_key_or_certificate() {
        let a = cert("mx.a.test");
        let b = cert("mx.b.test");
        let der = a.cert.der().as_ref();
        let r311 = tlsa_3_1_1(der).unwrap();
        assert!(r311.matches(der));
        assert!(!r311.matches(b.cert.der().as_ref()));
        let r301 = Tlsa {
            usage: 3,
            selector: 0,
            matching: 1,
            data: Sha256::digest(der).to_vec(),
        };
        assert!(r301.matches(der));
        let r302 = Tlsa {
            usage: 3,
            selector: 0,
            matching: 2,
            data: Sha512::digest(der).to_vec(),
        };
        assert!(r302.matches(der));
        let r300 = Tlsa {
            usage: 3,
            selector: 0,
            matching: 0,
            data: der.to_vec(),
        };
        assert!(r300.matches(der) && !r300.matches(b.cert.der().as_ref()));
        assert_eq!(r311.to_string().len(), "3 1 1 ".len() + 64);
    }

    #[test]
    fn verifier_accepts_a_match_and_refuses_the_rest() {
        let a = cert("mx.a.test");
        let b = cert("mx.b.test");
        let set = Arc::new(TlsaSet::new(vec![tlsa_3_1_1(a.cert.der()).unwrap()]));
        let v = DaneVerifier::new(set);
        let name = ServerName::try_from("mx.a.test").unwrap();
        assert!(
            v.verify_server_cert(a.cert.der(), &[], &name, &[], UnixTime::now())
                .is_ok()
        );
        let e = v
            .verify_server_cert(b.cert.der(), &[], &name, &[], UnixTime::now())
            .unwrap_err();
        assert!(format!("{e:?}").contains("DaneMismatch"), "{e:?}");
        let pkix = TlsaSet::new(vec![Tlsa {
            usage: 1,
            ..tlsa_3_1_1(a.cert.der()).unwrap()
        }]);
        assert!(!pkix.has_usable(), "PKIX-EE is unusable for SMTP");
    }

    #[test]
    fn ta_records_need_a_chain_with_the_name() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["mx.a.test".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let set = Arc::new(TlsaSet::new(vec![Tlsa {
            usage: 2,
            selector: 1,
            matching: 1,
            data: tlsa_3_1_1(ca.der()).unwrap().data,
        }]));
        let v = DaneVerifier::new(set);
        let chain = [ca.der().clone()];
        let good = ServerName::try_from("mx.a.test").unwrap();
        let other = ServerName::try_from("mx.b.test").unwrap();
        assert!(
            v.verify_server_cert(leaf.der(), &chain, &good, &[], UnixTime::now())
                .is_ok()
        );
        assert!(
            v.verify_server_cert(leaf.der(), &chain, &other, &[], UnixTime::now())
                .is_err()
        );
        assert!(
            v.verify_server_cert(leaf.der(), &[], &good, &[], UnixTime::now())
                .is_err(),
            "the TA must be in the chain the server sent"
        );
    }
}
