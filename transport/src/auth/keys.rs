//! `DkimKeyStore`: the hub's DKIM keys, kept like its certificates' keys —
//! in the node's sled store (the data directory is 0700, the database
//! files 0600), never replicated, never sent over the admin API. The
//! administrator sees the public half: the TXT record to publish at
//! `selector._domainkey.domain`.
//!
//! New keys start disabled: the TXT record must be published before mail
//! is signed with them (`dkim enable` after publishing). Enabling a key
//! disables the other keys of its domain, so one key signs per domain and
//! rotation is "new, publish, enable, remove the old one".

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use postern_model::{DkimKeyType, Domain, Selector};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Why a DKIM key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DkimKeyError {
    /// A key for this selector and domain exists.
    #[error("a DKIM key for {0} exists; remove it first or choose another selector")]
    Exists(String),
    /// No such key.
    #[error("no DKIM key for {0}")]
    NotFound(String),
    /// The administrator's file is not a usable private key.
    #[error("not a usable DKIM private key: {0}")]
    BadKey(String),
    /// Key generation failed (local RNG or library).
    #[error("DKIM key generation failed: {0}")]
    Generation(String),
    /// The store failed.
    #[error("DKIM key store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record could not be read (local corruption).
    #[error("DKIM key store record is corrupt: {0}")]
    Corrupt(String),
}

/// What an administrator sees of a DKIM key (never the private half).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKeyView {
    /// The signing domain (`d=`).
    pub domain: Domain,
    /// The selector (`s=`).
    pub selector: Selector,
    /// RSA-2048 or Ed25519.
    pub key_type: DkimKeyType,
    /// Whether this key signs outbound mail of its domain.
    pub enabled: bool,
    /// When it was made or imported, RFC 3339.
    pub created: String,
    /// Where the record goes: `selector._domainkey.domain`.
    pub dns_name: String,
    /// The TXT record to publish there.
    pub txt_record: String,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    domain: Domain,
    selector: Selector,
    key_type: DkimKeyType,
    enabled: bool,
    created: String,
    /// PKCS#8 DER of the private key.
    pkcs8: Vec<u8>,
    /// The `p=` value: SubjectPublicKeyInfo DER for RSA (what OpenDKIM
    /// and every verifier read), the raw 32 bytes for Ed25519 (RFC 8463).
    public: Vec<u8>,
}

impl StoredKey {
    fn view(&self) -> DkimKeyView {
        DkimKeyView {
            domain: self.domain.clone(),
            selector: self.selector.clone(),
            key_type: self.key_type,
            enabled: self.enabled,
            created: self.created.clone(),
            dns_name: dns_name(&self.domain, &self.selector),
            txt_record: format!(
                "v=DKIM1; k={}; p={}",
                self.key_type.dns_k(),
                BASE64.encode(&self.public)
            ),
        }
    }
}

/// A key ready to sign, with the names it signs under.
pub struct SigningKey {
    /// `d=`.
    pub domain: Domain,
    /// `s=`.
    pub selector: Selector,
    /// The key, for mail-auth's signer.
    pub key: DkimKey,
    /// The public half as published, for checking a signature locally.
    pub txt_record: String,
}

/// `selector._domainkey.domain`.
pub fn dns_name(domain: &Domain, selector: &Selector) -> String {
    format!("{selector}._domainkey.{domain}")
}

/// The node's DKIM keys in the sled tree `dkim-keys`; cheap to clone.
#[derive(Clone)]
pub struct DkimKeyStore {
    tree: sled::Tree,
}

impl std::fmt::Debug for DkimKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKeyStore").finish_non_exhaustive()
    }
}

impl DkimKeyStore {
    /// Opens the store in the node's database.
    pub fn open(db: &sled::Db) -> Result<Self, DkimKeyError> {
        Ok(Self {
            tree: db.open_tree("dkim-keys")?,
        })
    }

    /// Makes a key (disabled until `enable`).
    pub fn generate(
        &self,
        domain: Domain,
        selector: Selector,
        key_type: DkimKeyType,
    ) -> Result<DkimKeyView, DkimKeyError> {
        self.absent(&domain, &selector)?;
        let (pkcs8, public) = match key_type {
            DkimKeyType::Rsa2048 => {
                let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                    .map_err(|e| DkimKeyError::Generation(e.to_string()))?;
                rsa_parts(&key)?
            }
            DkimKeyType::Ed25519 => {
                let pkcs8 =
                    Ed25519Key::generate_pkcs8().map_err(|e| DkimKeyError::Generation(e.to_string()))?;
                let key = Ed25519Key::from_pkcs8_der(&pkcs8)
                    .map_err(|e| DkimKeyError::Generation(e.to_string()))?;
                (pkcs8, key.public_key())
            }
        };
        self.insert(domain, selector, key_type, pkcs8, public)
    }

    /// Imports a PEM private key (PKCS#8 RSA or Ed25519, or PKCS#1 RSA),
    /// disabled until `enable`: the same key on several hubs.
    pub fn import(
        &self,
        domain: Domain,
        selector: Selector,
        pem: &[u8],
    ) -> Result<DkimKeyView, DkimKeyError> {
        self.absent(&domain, &selector)?;
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| DkimKeyError::BadKey(e.to_string()))?;
        let (key_type, pkcs8, public) = match &der {
            PrivateKeyDer::Pkcs1(k) => {
                let key = rsa::RsaPrivateKey::from_pkcs1_der(k.secret_pkcs1_der())
                    .map_err(|e| DkimKeyError::BadKey(e.to_string()))?;
                let (pkcs8, public) = rsa_parts(&key)?;
                (DkimKeyType::Rsa2048, pkcs8, public)
            }
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_der(bytes) {
                    let (pkcs8, public) = rsa_parts(&key)?;
                    (DkimKeyType::Rsa2048, pkcs8, public)
                } else {
                    let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(bytes)
                        .map_err(|_| DkimKeyError::BadKey("PKCS#8 key is neither RSA nor Ed25519".into()))?;
                    (DkimKeyType::Ed25519, bytes.to_vec(), key.public_key())
                }
            }
            _ => return Err(DkimKeyError::BadKey("an EC (SEC1) key cannot sign DKIM".into())),
        };
        if key_type == DkimKeyType::Rsa2048 {
            let bits = rsa::RsaPrivateKey::from_pkcs8_der(&pkcs8)
                .map(|k| rsa::traits::PublicKeyParts::size(&k) * 8)
                .unwrap_or(0);
            if bits < 1024 {
                return Err(DkimKeyError::BadKey(format!(
                    "RSA key of {bits} bits: verifiers refuse keys under 1024 bits (RFC 8301)"
                )));
            }
        }
        self.insert(domain, selector, key_type, pkcs8, public)
    }

    /// Every key.
    pub fn list(&self) -> Result<Vec<DkimKeyView>, DkimKeyError> {
        self.tree
            .iter()
            .values()
            .map(|v| Ok(decode(&v?)?.view()))
            .collect()
    }

    /// Enables the key and disables the other keys of its domain.
    pub fn enable(&self, domain: &Domain, selector: &Selector) -> Result<DkimKeyView, DkimKeyError> {
        let name = dns_name(domain, selector);
        if !self.tree.contains_key(name.as_bytes())? {
            return Err(DkimKeyError::NotFound(name));
        }
        let mut enabled = None;
        for entry in self.tree.iter() {
            let (k, v) = entry?;
            let mut stored = decode(&v)?;
            if stored.domain != *domain {
                continue;
            }
            stored.enabled = stored.selector == *selector;
            if stored.enabled {
                enabled = Some(stored.view());
            }
            self.tree.insert(k, encode(&stored)?)?;
        }
        self.tree.flush()?;
        enabled.ok_or(DkimKeyError::NotFound(name))
    }

    /// Removes a key (its private half is gone for good).
    pub fn remove(&self, domain: &Domain, selector: &Selector) -> Result<(), DkimKeyError> {
        let name = dns_name(domain, selector);
        if self.tree.remove(name.as_bytes())?.is_none() {
            return Err(DkimKeyError::NotFound(name));
        }
        self.tree.flush()?;
        Ok(())
    }

    /// The enabled key of `domain`, ready to sign, if there is one.
    pub fn signing_key(&self, domain: &Domain) -> Result<Option<SigningKey>, DkimKeyError> {
        for v in self.tree.iter().values() {
            let stored = decode(&v?)?;
            if stored.enabled && stored.domain == *domain {
                let key = match stored.key_type {
                    DkimKeyType::Rsa2048 => {
                        RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(stored.pkcs8.clone().into()))
                            .map(DkimKey::from)
                    }
                    DkimKeyType::Ed25519 => Ed25519Key::from_pkcs8_der(&stored.pkcs8).map(DkimKey::from),
                }
                .map_err(|e| DkimKeyError::Corrupt(e.to_string()))?;
                let txt_record = stored.view().txt_record;
                return Ok(Some(SigningKey {
                    domain: stored.domain,
                    selector: stored.selector,
                    key,
                    txt_record,
                }));
            }
        }
        Ok(None)
    }

    fn absent(&self, domain: &Domain, selector: &Selector) -> Result<(), DkimKeyError> {
        let name = dns_name(domain, selector);
        if self.tree.contains_key(name.as_bytes())? {
            return Err(DkimKeyError::Exists(name));
        }
        Ok(())
    }

    fn insert(
        &self,
        domain: Domain,
        selector: Selector,
        key_type: DkimKeyType,
        pkcs8: Vec<u8>,
        public: Vec<u8>,
    ) -> Result<DkimKeyView, DkimKeyError> {
        let created = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| DkimKeyError::Generation(e.to_string()))?;
        let stored = StoredKey {
            domain,
            selector,
            key_type,
            enabled: false,
            created,
            pkcs8,
            public,
        };
        let name = dns_name(&stored.domain, &stored.selector);
        self.tree.insert(name.as_bytes(), encode(&stored)?)?;
        self.tree.flush()?;
        Ok(stored.view())
    }
}

/// PKCS#8 of the private key and SubjectPublicKeyInfo of the public key.
fn rsa_parts(key: &rsa::RsaPrivateKey) -> Result<(Vec<u8>, Vec<u8>), DkimKeyError> {
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| DkimKeyError::Generation(e.to_string()))?
        .as_bytes()
        .to_vec();
    let public = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| DkimKeyError::Generation(e.to_string()))?
        .as_bytes()
        .to_vec();
    Ok((pkcs8, public))
}

fn encode(stored: &StoredKey) -> Result<Vec<u8>, DkimKeyError> {
    serde_json::to_vec(stored).map_err(|e| DkimKeyError::Corrupt(e.to_string()))
}

fn decode(raw: &[u8]) -> Result<StoredKey, DkimKeyError> {
    serde_json::from_slice(raw).map_err(|e| DkimKeyError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use rsa::pkcs1::EncodeRsaPrivateKey;

    use super::*;

    fn store() -> DkimKeyStore {
        DkimKeyStore::open(&sled::Config::new().temporary(true).open().unwrap()).unwrap()
    }

    #[test]
    fn import_enable_and_remove() {
        let keys = store();
        let domain = Domain::parse("adatum.com").unwrap();
        let (a, b) = (Selector::parse("a").unwrap(), Selector::parse("b").unwrap());
        let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        let pem = rsa.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        let view = keys.import(domain.clone(), a.clone(), pem.as_bytes()).unwrap();
        assert_eq!(view.key_type, DkimKeyType::Rsa2048);
        assert!(
            view.txt_record.starts_with("v=DKIM1; k=rsa; p=MIG"),
            "{}",
            view.txt_record
        );
        assert!(matches!(
            keys.import(domain.clone(), a.clone(), pem.as_bytes()),
            Err(DkimKeyError::Exists(_))
        ));
        assert!(matches!(
            keys.import(domain.clone(), b.clone(), b"not a key"),
            Err(DkimKeyError::BadKey(_))
        ));
        keys.generate(domain.clone(), b.clone(), DkimKeyType::Ed25519)
            .unwrap();
        keys.enable(&domain, &a).unwrap();
        keys.enable(&domain, &b).unwrap();
        let enabled: Vec<_> = keys.list().unwrap().into_iter().filter(|k| k.enabled).collect();
        assert_eq!(enabled.len(), 1, "one key signs per domain");
        assert_eq!(enabled[0].selector, b);
        assert_eq!(keys.signing_key(&domain).unwrap().unwrap().selector, b);
        keys.remove(&domain, &b).unwrap();
        assert!(keys.signing_key(&domain).unwrap().is_none());
        assert!(matches!(keys.remove(&domain, &b), Err(DkimKeyError::NotFound(_))));
    }
}
