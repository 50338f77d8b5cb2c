//! Edge subscription files (`postern edge-subscription new --file F` on the
//! edge, `import` on a hub): who the edge is, where it listens, its
//! certificate, and a one-time bootstrap secret valid 24 hours. The file is
//! signed with the edge certificate's private key, so a hub refuses a file
//! that was edited on the way.

use std::time::Duration;

use postern_model::{Domain, NodeName, Thumbprint};
use ring::signature;
use rustls::SignatureScheme;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

/// How long a bootstrap secret stays valid.
pub const BOOTSTRAP_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// The signed part of a subscription file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionBody {
    /// File format version (1).
    pub format: u32,
    /// The edge's name.
    pub edge_name: NodeName,
    /// The edge's FQDN.
    pub fqdn: Domain,
    /// Where hubs dial EdgeSync (`host:port`).
    pub edgesync_endpoint: String,
    /// Where hubs send mail to the edge (`host:port`).
    pub smtp_endpoint: String,
    /// The edge's certificate (public), PEM.
    pub certificate_pem: String,
    /// One-time secret the first stream authenticates with.
    pub bootstrap_secret: String,
    /// When the file was made (RFC 3339).
    pub created: String,
    /// When the secret stops working (RFC 3339).
    pub expires: String,
    /// The configuration store whose replica the edge holds when it wrote
    /// the file (empty: none). A hub of another organisation refuses it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscribed_store: String,
}

/// A subscription file: the body and its signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionFile {
    /// What is signed.
    pub body: SubscriptionBody,
    /// The TLS signature scheme used (`RSA_PSS_SHA256`, `ECDSA_NISTP256_SHA256`).
    pub signature_scheme: String,
    /// Hex signature over the body's JSON.
    pub signature: String,
}

/// Why a subscription file is refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// Not JSON of the expected shape.
    #[error("not an edge subscription file: {0}")]
    Malformed(String),
    /// The signature does not verify.
    #[error("the subscription file's signature does not verify: it was changed after the edge wrote it")]
    Tampered,
    /// The certificate inside cannot be read.
    #[error("the subscription file's certificate cannot be read: {0}")]
    BadCertificate(String),
    /// The bootstrap secret has expired.
    #[error("the subscription file expired at {0}; run `postern edge-subscription new` on the edge again")]
    Expired(String),
    /// Signing failed on the edge.
    #[error("cannot sign the subscription file: {0}")]
    Signing(String),
}

impl SubscriptionFile {
    /// Signs `body` with `key` (the edge certificate's key).
    pub fn sign(body: SubscriptionBody, key: &rustls::sign::CertifiedKey) -> Result<Self, SubscriptionError> {
        let message = serde_json::to_vec(&body).map_err(|e| SubscriptionError::Signing(e.to_string()))?;
        let signer = key
            .key
            .choose_scheme(&[
                SignatureScheme::ECDSA_NISTP256_SHA256,
                SignatureScheme::RSA_PSS_SHA256,
            ])
            .ok_or_else(|| {
                SubscriptionError::Signing("the key supports neither ECDSA P-256 nor RSA-PSS".into())
            })?;
        let scheme = signer.scheme();
        let signature = signer
            .sign(&message)
            .map_err(|e| SubscriptionError::Signing(e.to_string()))?;
        Ok(Self {
            body,
            signature_scheme: format!("{scheme:?}"),
            signature: hex(&signature),
        })
    }

    /// Parses and verifies a file's text; checks the signature against the
    /// certificate it carries, and the expiry against `now`.
    pub fn verify(text: &str, now: OffsetDateTime) -> Result<(Self, Vec<u8>), SubscriptionError> {
        let file: SubscriptionFile =
            serde_json::from_str(text).map_err(|e| SubscriptionError::Malformed(e.to_string()))?;
        let der = pem_to_der(&file.body.certificate_pem)?;
        let (_, cert) =
            X509Certificate::from_der(&der).map_err(|e| SubscriptionError::BadCertificate(e.to_string()))?;
        let key_bytes = cert.public_key().subject_public_key.data.as_ref();
        let alg: &dyn signature::VerificationAlgorithm = match file.signature_scheme.as_str() {
            "ECDSA_NISTP256_SHA256" => &signature::ECDSA_P256_SHA256_ASN1,
            "RSA_PSS_SHA256" => &signature::RSA_PSS_2048_8192_SHA256,
            other => {
                return Err(SubscriptionError::Malformed(format!(
                    "unknown signature scheme {other}"
                )));
            }
        };
        let message =
            serde_json::to_vec(&file.body).map_err(|e| SubscriptionError::Malformed(e.to_string()))?;
        let sig = unhex(&file.signature).ok_or(SubscriptionError::Tampered)?;
        signature::UnparsedPublicKey::new(alg, key_bytes)
            .verify(&message, &sig)
            .map_err(|_| SubscriptionError::Tampered)?;
        let expires = OffsetDateTime::parse(&file.body.expires, &Rfc3339)
            .map_err(|e| SubscriptionError::Malformed(format!("expires: {e}")))?;
        if now > expires {
            return Err(SubscriptionError::Expired(file.body.expires.clone()));
        }
        Ok((file, der))
    }

    /// The edge certificate's thumbprint.
    pub fn thumbprint(&self) -> Result<Thumbprint, SubscriptionError> {
        Ok(Thumbprint::of_der(&pem_to_der(&self.body.certificate_pem)?))
    }
}

/// A fresh random bootstrap secret (256 bits, hex).
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// SHA-256 of a secret, hex: what the edge keeps.
pub fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(secret.as_bytes()))
}

/// PEM of a DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der).unwrap_or_default()
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, SubscriptionError> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| SubscriptionError::BadCertificate(e.to_string()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `now + validity` as RFC 3339.
pub fn expiry_from(now: OffsetDateTime, validity: Duration) -> String {
    (now + validity).format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use postern_model::{KeySpec, Service, SubjectName};
    use postern_tls::certs::{CertStore, NewCertificate};

    use super::*;

    fn body(expires: &str, der: &[u8]) -> SubscriptionBody {
        SubscriptionBody {
            format: 1,
            edge_name: NodeName::parse("edge1").unwrap(),
            fqdn: Domain::parse("edge1.adatum.com").unwrap(),
            edgesync_endpoint: "127.0.0.1:1".into(),
            smtp_endpoint: "127.0.0.1:2".into(),
            certificate_pem: der_to_pem(der),
            bootstrap_secret: new_secret(),
            created: "2000-01-01T00:00:00Z".into(),
            expires: expires.into(),
            subscribed_store: String::new(),
        }
    }

    #[test]
    fn an_expired_file_is_refused_and_an_edited_one_too() {
        let (key, der) = signer();
        let now = OffsetDateTime::now_utc();
        let expired = SubscriptionFile::sign(body("2001-01-01T00:00:00Z", der), key).unwrap();
        let text = serde_json::to_string(&expired).unwrap();
        assert!(matches!(
            SubscriptionFile::verify(&text, now),
            Err(SubscriptionError::Expired(_))
        ));
        let fresh = SubscriptionFile::sign(body("2999-01-01T00:00:00Z", der), key).unwrap();
        let text = serde_json::to_string(&fresh).unwrap();
        assert!(SubscriptionFile::verify(&text, now).is_ok());
        // A file written before `subscribed_store` existed still verifies:
        // an empty store is not serialised.
        assert!(!text.contains("subscribed_store"));
        let mut edited = fresh.clone();
        edited.body.subscribed_store = "someone-else".into();
        let text = serde_json::to_string(&edited).unwrap();
        assert!(matches!(
            SubscriptionFile::verify(&text, now),
            Err(SubscriptionError::Tampered)
        ));
    }

    /// A signing key and its certificate's DER, made once.
    fn signer() -> &'static (std::sync::Arc<rustls::sign::CertifiedKey>, Vec<u8>) {
        static SIGNER: std::sync::OnceLock<(std::sync::Arc<rustls::sign::CertifiedKey>, Vec<u8>)> =
            std::sync::OnceLock::new();
        SIGNER.get_or_init(|| {
            let store = CertStore::open(&sled::Config::new().temporary(true).open().unwrap()).unwrap();
            let view = store
                .new_self_signed(&NewCertificate {
                    subject: SubjectName::common_name_only("edge1.adatum.com"),
                    domains: vec![Domain::parse("edge1.adatum.com").unwrap()],
                    friendly_name: None,
                    key: KeySpec::EcdsaP256,
                    services: BTreeSet::from([Service::Smtp]),
                })
                .unwrap();
            let key = store.certified_key(&view.thumbprint).unwrap();
            let der = key.cert[0].as_ref().to_vec();
            (key, der)
        })
    }

    fn signed_text() -> &'static str {
        static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        TEXT.get_or_init(|| {
            let (key, der) = signer();
            let file = SubscriptionFile::sign(body("2999-01-01T00:00:00Z", der), key).unwrap();
            serde_json::to_string_pretty(&file).unwrap()
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn any_text_is_refused_or_read_never_a_panic(text in "[ -~\\n\\t]{0,400}") {
            let _ = SubscriptionFile::verify(&text, OffsetDateTime::now_utc());
        }

        #[test]
        fn whatever_the_endpoints_and_secret_hold_a_signed_file_verifies(
            edgesync_endpoint in "\\PC{0,40}",
            smtp_endpoint in "[\\x00-\\x7f]{0,40}",
            bootstrap_secret in "\\PC{0,40}",
        ) {
            let (key, der) = signer();
            let body = SubscriptionBody {
                edgesync_endpoint,
                smtp_endpoint,
                bootstrap_secret,
                ..body("2999-01-01T00:00:00Z", der)
            };
            let file = SubscriptionFile::sign(body.clone(), key).unwrap();
            let text = serde_json::to_string(&file).unwrap();
            let (read, read_der) = SubscriptionFile::verify(&text, OffsetDateTime::now_utc()).unwrap();
            proptest::prop_assert_eq!(read.body, body);
            proptest::prop_assert_eq!(&read_der, der);
        }

        #[test]
        fn an_edited_file_never_verifies_with_another_body(
            at in proptest::prelude::any::<proptest::sample::Index>(),
            by in proptest::prelude::any::<char>(),
        ) {
            let original: SubscriptionFile = serde_json::from_str(signed_text()).unwrap();
            let mut chars: Vec<char> = signed_text().chars().collect();
            let i = at.index(chars.len());
            chars[i] = by;
            let edited: String = chars.into_iter().collect();
            if let Ok((read, _)) = SubscriptionFile::verify(&edited, OffsetDateTime::now_utc()) {
                proptest::prop_assert_eq!(read.body, original.body);
            }
        }
    }
}
