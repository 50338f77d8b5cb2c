//! Export-ExchangeCertificate: the public certificate as PEM (to hand to a
//! partner for his trusted roots), or certificate, chain and key as PKCS#12
//! (PBES2 with AES-256-CBC and an HMAC-SHA256 MAC, which OpenSSL 3 and
//! Windows read) — only for keys marked exportable when they were made or
//! imported.

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
use postern_model::Thumbprint;

use super::CertError;
use super::import::{KeyFormat, StoredKey};

/// PEM of a DER certificate.
pub(crate) fn public_pem(der: &[u8]) -> String {
    use der::pem::{LineEnding, encode_string};
    encode_string("CERTIFICATE", LineEnding::LF, der).unwrap_or_default()
}

/// The key as PKCS#8 DER, whatever it was stored as.
fn pkcs8(key: &StoredKey) -> Result<Vec<u8>, CertError> {
    match key.format {
        KeyFormat::Pkcs8 => Ok(key.der.clone()),
        KeyFormat::Pkcs1 => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::EncodePrivateKey;
            let k = rsa::RsaPrivateKey::from_pkcs1_der(&key.der)
                .map_err(|e| CertError::UnusableKey(e.to_string()))?;
            k.to_pkcs8_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|e| CertError::UnusableKey(e.to_string()))
        }
        KeyFormat::Sec1 => {
            use p256::pkcs8::EncodePrivateKey;
            let k = p256::SecretKey::from_sec1_der(&key.der)
                .map_err(|e| CertError::UnusableKey(format!("only P-256 SEC1 keys can be exported: {e}")))?;
            k.to_pkcs8_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(|e| CertError::UnusableKey(e.to_string()))
        }
    }
}

/// PKCS#12 of `chain` (leaf first) and `key`, protected by `password`.
pub(crate) fn pkcs12(
    thumbprint: &Thumbprint,
    chain: &[Vec<u8>],
    key: &StoredKey,
    password: &str,
) -> Result<Vec<u8>, CertError> {
    let certs = chain
        .iter()
        .map(|d| Certificate::from_der(d).map_err(|e| CertError::Build(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKey::from_der(&pkcs8(key)?).map_err(|e| CertError::Build(e.to_string()))?;
    let entry = PrivateKeyChain::new(thumbprint.as_bytes().to_vec(), key, certs);
    let mut store = KeyStore::new();
    store.add_entry(&thumbprint.to_string(), KeyStoreEntry::PrivateKeyChain(entry));
    store
        .writer(password)
        .write()
        .map_err(|e| CertError::Build(format!("PKCS#12: {e}")))
}
