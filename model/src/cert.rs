//! Certificate vocabulary: services a certificate is enabled for, its
//! status, and the key a new certificate is made with.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A service a certificate can be enabled for (Enable-ExchangeCertificate -Services).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// STARTTLS on receive connectors and the client certificate on send connectors.
    Smtp,
}

/// An unknown service name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service {0:?}: the only service is smtp")]
pub struct ServiceError(pub String);

impl FromStr for Service {
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "smtp" => Ok(Service::Smtp),
            _ => Err(ServiceError(s.to_owned())),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Smtp => "smtp",
        })
    }
}

/// Where a certificate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertStatus {
    /// Within its validity period.
    Valid,
    /// A request was generated; the issued certificate has not been imported yet.
    PendingRequest,
    /// Past its not-after date.
    Expired,
    /// Before its not-before date.
    NotYetValid,
}

impl fmt::Display for CertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertStatus::Valid => "valid",
            CertStatus::PendingRequest => "pending-request",
            CertStatus::Expired => "expired",
            CertStatus::NotYetValid => "not-yet-valid",
        })
    }
}

/// The key a new certificate or request is made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySpec {
    /// RSA with the given modulus size in bits (2048, 3072 or 4096).
    Rsa(u32),
    /// ECDSA on NIST P-256.
    EcdsaP256,
}

/// Why a key specification is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySpecError {
    /// RSA smaller than the minimum.
    #[error("RSA keys of {0} bits are refused: the minimum is {min} bits", min = KeySpec::MIN_RSA_BITS)]
    TooSmall(u32),
    /// A size Postern does not generate.
    #[error("RSA key size {0} is not supported: use 2048, 3072 or 4096")]
    UnsupportedSize(u32),
    /// An unknown key type.
    #[error("unknown key type {0:?}: use rsa or ecdsa-p256")]
    UnknownType(String),
    /// A key size given with an ECDSA key.
    #[error("--key-size applies to RSA keys only, not to {0}")]
    SizeWithEcdsa(String),
}

impl KeySpec {
    /// The smallest RSA key Postern makes (Exchange 2010 allowed 1024; CAs no longer do).
    pub const MIN_RSA_BITS: u32 = 2048;

    /// The default: RSA 2048, what Exchange makes and CAs expect.
    pub const DEFAULT: KeySpec = KeySpec::Rsa(2048);

    /// Builds a spec from the CLI's `--key-type` and `--key-size` (either may be absent).
    pub fn from_options(key_type: Option<&str>, key_size: Option<u32>) -> Result<Self, KeySpecError> {
        let kind = key_type.map(|t| t.trim().to_ascii_lowercase());
        match kind.as_deref() {
            None | Some("") | Some("rsa") => Self::rsa(key_size.unwrap_or(2048)),
            Some(t @ ("ecdsa-p256" | "ecdsa" | "p256" | "ec")) => match key_size {
                Some(_) => Err(KeySpecError::SizeWithEcdsa(t.to_owned())),
                None => Ok(KeySpec::EcdsaP256),
            },
            Some(t) => match t.strip_prefix("rsa-").and_then(|n| n.parse().ok()) {
                Some(bits) => Self::rsa(bits),
                None => Err(KeySpecError::UnknownType(t.to_owned())),
            },
        }
    }

    fn rsa(bits: u32) -> Result<Self, KeySpecError> {
        match bits {
            b if b < Self::MIN_RSA_BITS => Err(KeySpecError::TooSmall(b)),
            2048 | 3072 | 4096 => Ok(KeySpec::Rsa(bits)),
            b => Err(KeySpecError::UnsupportedSize(b)),
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySpec::Rsa(bits) => write!(f, "rsa-{bits}"),
            KeySpec::EcdsaP256 => f.write_str("ecdsa-p256"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs() {
        assert_eq!(KeySpec::from_options(None, None), Ok(KeySpec::Rsa(2048)));
        assert_eq!(KeySpec::from_options(None, Some(4096)), Ok(KeySpec::Rsa(4096)));
        assert_eq!(
            KeySpec::from_options(Some("rsa-3072"), None),
            Ok(KeySpec::Rsa(3072))
        );
        assert_eq!(
            KeySpec::from_options(Some("ecdsa-p256"), None),
            Ok(KeySpec::EcdsaP256)
        );
        assert_eq!(
            KeySpec::from_options(None, Some(1024)),
            Err(KeySpecError::TooSmall(1024))
        );
        let msg = KeySpecError::TooSmall(1024).to_string();
        assert!(msg.contains("minimum is 2048"), "{msg}");
        assert!(KeySpec::from_options(Some("dsa"), None).is_err());
        assert!(KeySpec::from_options(Some("ecdsa-p256"), Some(2048)).is_err());
        assert_eq!(
            KeySpec::from_options(None, Some(2049)),
            Err(KeySpecError::UnsupportedSize(2049))
        );
    }

    #[test]
    fn services() {
        assert_eq!("SMTP".parse::<Service>(), Ok(Service::Smtp));
        assert!("iis".parse::<Service>().is_err());
    }
}
