//! Reads a certificate file as administrators bring it: PEM (a chain,
//! optionally with the key), a bare DER certificate, PKCS#7 (`.p7b`/`.p7c`,
//! certificates only), or PKCS#12 (`.pfx`/`.p12`, modern AES and legacy
//! RC2/3DES encodings).

use p12_keystore::Pkcs12Archive;
use rustls_pki_types::pem::{PemObject, SectionKind};
use serde::{Deserialize, Serialize};

use super::CertError;
use super::info::ParsedCert;

/// How a stored private key is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KeyFormat {
    /// PKCS#8 `PRIVATE KEY`.
    Pkcs8,
    /// PKCS#1 `RSA PRIVATE KEY`.
    Pkcs1,
    /// SEC1 `EC PRIVATE KEY`.
    Sec1,
}

/// A private key as stored on this node (it never leaves it).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredKey {
    pub format: KeyFormat,
    pub der: Vec<u8>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredKey({:?}, {} bytes)", self.format, self.der.len())
    }
}

impl StoredKey {
    /// The key in the form rustls loads.
    pub(crate) fn to_rustls(&self) -> rustls_pki_types::PrivateKeyDer<'static> {
        use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
        match self.format {
            KeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.der.clone())),
            KeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(self.der.clone())),
            KeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(self.der.clone())),
        }
    }
}

/// What a file held: certificates (leaf first once ordered) and maybe a key.
#[derive(Debug)]
pub(crate) struct Bundle {
    pub chain: Vec<Vec<u8>>,
    pub key: Option<StoredKey>,
}

/// Reads `data` in whichever of the supported encodings it is.
pub(crate) fn read_bundle(data: &[u8], password: &str) -> Result<Bundle, CertError> {
    if data.is_empty() {
        return Err(CertError::NotACertificate("the file is empty".into()));
    }
    if super::pkcs7::looks_like_pkcs7(data) {
        return Ok(Bundle {
            chain: super::pkcs7::read_pkcs7(data)?,
            key: None,
        });
    }
    if contains(data, b"-----BEGIN") {
        return read_pem(data);
    }
    if ParsedCert::parse(data).is_ok() {
        return Ok(Bundle {
            chain: vec![data.to_vec()],
            key: None,
        });
    }
    read_pkcs12(data, password)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn read_pem(data: &[u8]) -> Result<Bundle, CertError> {
    if contains(data, b"ENCRYPTED PRIVATE KEY") || contains(data, b"Proc-Type: 4,ENCRYPTED") {
        return Err(CertError::NotACertificate(
            "encrypted PEM private keys are not supported; export a PKCS#12 file instead".into(),
        ));
    }
    let mut chain = Vec::new();
    let mut key = None;
    for item in <(SectionKind, Vec<u8>)>::pem_slice_iter(data) {
        let (kind, der) = item.map_err(|e| CertError::NotACertificate(format!("bad PEM: {e}")))?;
        let format = match kind {
            SectionKind::Certificate => {
                chain.push(der);
                continue;
            }
            SectionKind::PrivateKey => KeyFormat::Pkcs8,
            SectionKind::RsaPrivateKey => KeyFormat::Pkcs1,
            SectionKind::EcPrivateKey => KeyFormat::Sec1,
            SectionKind::Csr => {
                return Err(CertError::NotACertificate(
                    "the file is a certificate request, not a certificate: have a CA sign it first".into(),
                ));
            }
            _ => continue,
        };
        if key.replace(StoredKey { format, der }).is_some() {
            return Err(CertError::NotACertificate(
                "the PEM file holds more than one private key".into(),
            ));
        }
    }
    if chain.is_empty() {
        return Err(CertError::NotACertificate(
            "the PEM file holds no CERTIFICATE block".into(),
        ));
    }
    for der in &chain {
        ParsedCert::parse(der)?;
    }
    Ok(Bundle { chain, key })
}

fn read_pkcs12(data: &[u8], password: &str) -> Result<Bundle, CertError> {
    let archive = Pkcs12Archive::from_pkcs12(data, password).map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) => CertError::WrongPassword,
        other => CertError::NotACertificate(format!(
            "not PEM, DER or PKCS#12 ({other}); use a .pem, .cer/.der or .pfx/.p12 file"
        )),
    })?;
    if archive.keys.len() > 1 {
        return Err(CertError::NotACertificate(
            "the PKCS#12 file holds more than one private key; export one certificate with its key".into(),
        ));
    }
    // Bag order as exported; `order_chain` puts the key's certificate first.
    let chain: Vec<Vec<u8>> = archive.certs.iter().map(|b| b.cert.as_der().to_vec()).collect();
    if chain.is_empty() {
        return Err(CertError::NotACertificate(
            "the PKCS#12 file holds no certificate".into(),
        ));
    }
    let key = archive.keys.first().map(|k| StoredKey {
        format: KeyFormat::Pkcs8,
        der: k.key.as_der().to_vec(),
    });
    Ok(Bundle { chain, key })
}
