//! The node's certificate store: New-/Import-/Enable-/Get-/Remove-
//! ExchangeCertificate, over two sled trees (installed certificates and
//! pending requests). Private keys are stored here and never leave the node.

mod export;
mod import;
mod info;
mod keys;
mod name;
mod pkcs7;
#[cfg(test)]
mod property_tests;
mod rotation;
mod store;

pub use rotation::Rotation;
pub use store::{CertStore, CertificateView, NewCertificate};

use postern_model::{KeySpecError, Service, SubjectNameError, Thumbprint};

/// Why a certificate operation failed; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// No installed certificate or pending request has this thumbprint.
    #[error("no certificate or pending request has thumbprint {0}; see `postern cert list`")]
    NotFound(Thumbprint),
    /// The PKCS#12 integrity check failed.
    #[error("wrong password for the PKCS#12 file (its integrity check failed)")]
    WrongPassword,
    /// The file is not in any supported certificate encoding.
    #[error("the file is not a certificate: {0}")]
    NotACertificate(String),
    /// A certificate without a key that no pending request is waiting for.
    #[error(
        "certificate {0} matches no pending request on this node and the file carries no private key; \
         import it on the node that generated the request, or import a PKCS#12 file that holds the key"
    )]
    NoPrivateKey(Thumbprint),
    /// The file's key does not belong to its certificate.
    #[error("the private key in the file does not belong to certificate {0}")]
    KeyMismatch(Thumbprint),
    /// The key is of a kind rustls cannot sign with.
    #[error("the private key cannot be used for TLS: {0}")]
    UnusableKey(String),
    /// The certificate is installed already.
    #[error("certificate {0} is already installed")]
    AlreadyInstalled(Thumbprint),
    /// The subject name did not parse.
    #[error("bad --subject-name: {0}")]
    Subject(#[from] SubjectNameError),
    /// The key size or type is refused.
    #[error("{0}")]
    KeySpec(#[from] KeySpecError),
    /// A domain name did not parse.
    #[error("bad --domain-name: {0}")]
    Domain(#[from] postern_model::DomainError),
    /// Neither a domain name nor a DNS-like common name was given.
    #[error("give at least one --domain-name (or a CN that is a DNS name)")]
    NoDomains,
    /// An operation that needs an issued certificate was asked of a pending request.
    #[error("{0} is a pending request: import the certificate the CA issued for it first")]
    Pending(Thumbprint),
    /// A certificate without its private key cannot serve SMTP.
    #[error("certificate {0} has no private key on this node, so it cannot be enabled for {1}")]
    NoKeyForService(Thumbprint, Service),
    /// An expired certificate cannot be enabled.
    #[error("certificate {0} expired on {1}; request or create a new one")]
    Expired(Thumbprint, String),
    /// Removing this certificate would leave SMTP without one.
    #[error(
        "certificate {0} is the only valid certificate enabled for SMTP on this node; \
         enable another with `postern cert enable --thumbprint T --services smtp` before removing it"
    )]
    OnlySmtpCertificate(Thumbprint),
    /// A service name that does not exist.
    #[error("{0}")]
    Service(#[from] postern_model::ServiceError),
    /// Key generation failed.
    #[error("could not generate the key: {0}")]
    KeyGeneration(String),
    /// Removing the certificate the peers trust while its successor is
    /// still offered would leave the node presenting one they do not trust.
    #[error(
        "certificate {0} is the one the organisation's peers trust while certificate {1} is offered to them; \
         remove it once the offer is confirmed (`postern cert list` shows the rotation)"
    )]
    OfferPending(Thumbprint, Thumbprint),
    /// Export of a key that was not marked exportable.
    #[error(
        "the private key of certificate {0} is not exportable; only keys made or imported with \
         --private-key-exportable can be exported (export the certificate alone with --public)"
    )]
    NotExportable(Thumbprint),
    /// Export of a certificate whose key is not on this node.
    #[error("this node holds no private key for certificate {0}; export it with --public")]
    NoPrivateKeyHere(Thumbprint),
    /// A PKCS#12 export needs a password.
    #[error("a PKCS#12 export needs a non-empty password (--password-file)")]
    EmptyPassword,
    /// Certificate or request assembly failed.
    #[error("could not build the certificate: {0}")]
    Build(String),
    /// The sled store failed.
    #[error("certificate store I/O: {0}")]
    Store(#[from] sled::Error),
    /// A stored record could not be read back.
    #[error("certificate store record is corrupt: {0}")]
    Corrupt(String),
}

impl CertError {
    /// True when the administrator's input is at fault (as opposed to the node).
    pub fn is_user_error(&self) -> bool {
        !matches!(
            self,
            CertError::Store(_) | CertError::Corrupt(_) | CertError::KeyGeneration(_) | CertError::Build(_)
        )
    }
}
