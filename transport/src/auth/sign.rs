//! DKIM signing on the hub (RFC 6376 with mail-auth): relaxed/relaxed
//! canonicalisation, rsa-sha256 or ed25519-sha256, over the header fields
//! RFC 6376 §5.4.1 recommends. Fields of that list that the message lacks
//! are signed as absent (mail-auth lists them in `h=` once more), and
//! `From` is listed twice, so neither a second `From` nor any of those
//! fields can be added after signing without breaking the signature.
//!
//! A message that already carries a valid signature of the same domain
//! and selector is not signed again; the check uses the key held here, not
//! DNS.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt};
use postern_model::Domain;

use super::keys::{DkimKeyError, DkimKeyStore, SigningKey, dns_name};

/// The header fields signed (RFC 6376 §5.4.1, plus the MIME fields and
/// `Message-ID`); `From` twice, to oversign it.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Resent-Date",
    "Resent-From",
    "Resent-To",
    "Resent-Cc",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Why a message could not be signed (it is then sent unsigned, logged).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Our key store failed.
    #[error(transparent)]
    Keys(#[from] DkimKeyError),
    /// mail-auth refused (a key it cannot use, no header to sign).
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// What signing a message came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Signed {
    /// The `DKIM-Signature` field to prepend (ends in CRLF).
    Field(String),
    /// The `From` domain has no enabled key (or no `From` to read).
    NoKey,
    /// The message already carries a valid signature of this key.
    AlreadySigned,
}

/// Signs outbound mail with the enabled key of its `From` domain.
#[derive(Clone)]
pub struct Signer {
    keys: DkimKeyStore,
    /// A resolver with no name servers: the only key it knows is ours,
    /// from the cache handed to each check.
    local: MessageAuthenticator,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer over the node's key store.
    pub fn new(keys: DkimKeyStore) -> Result<Self, SignError> {
        let local = MessageAuthenticator::new(
            ResolverConfig::from_name_servers(Vec::new()),
            ResolverOpts::default(),
        )
        .map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(Self { keys, local })
    }

    /// Signs `message` (header and body as they will travel).
    pub async fn sign(&self, message: &[u8]) -> Result<Signed, SignError> {
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            return Ok(Signed::NoKey);
        };
        let Some(domain) = from_domain(&parsed) else {
            return Ok(Signed::NoKey);
        };
        let Some(key) = self.keys.signing_key(&domain)? else {
            return Ok(Signed::NoKey);
        };
        if self.already_signed(&parsed, &key).await {
            return Ok(Signed::AlreadySigned);
        }
        let SigningKey {
            domain,
            selector,
            key,
            ..
        } = key;
        let signature = DkimSigner::from_key(key)
            .domain(domain.as_str())
            .selector(selector.as_str())
            .headers(SIGNED_HEADERS.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        Ok(Signed::Field(signature.to_header()))
    }

    /// Whether a signature of `key`'s domain and selector verifies with it.
    async fn already_signed(&self, parsed: &AuthenticatedMessage<'_>, key: &SigningKey) -> bool {
        let ours = |d: &str, s: &str| {
            d.eq_ignore_ascii_case(key.domain.as_str()) && s.eq_ignore_ascii_case(key.selector.as_str())
        };
        if !parsed.dkim_headers.iter().any(|h| ours(&h.header.d, &h.header.s)) {
            return false;
        }
        let Ok(record) = DomainKey::parse(key.txt_record.as_bytes()) else {
            return false;
        };
        let cache = TxtCache::default();
        cache.put(
            format!("{}.", dns_name(&key.domain, &key.selector)),
            Txt::DomainKey(Arc::new(record)),
        );
        let params = Parameters::new(parsed).with_txt_cache(&cache);
        self.local
            .verify_dkim(params)
            .await
            .iter()
            .any(|out| *out.result() == DkimResult::Pass && out.signature().is_some_and(|s| ours(&s.d, &s.s)))
    }
}

/// The domain of the (first) `From` address.
pub(crate) fn from_domain(parsed: &AuthenticatedMessage<'_>) -> Option<Domain> {
    let from = parsed.from.first()?;
    let (_, domain) = from.rsplit_once('@')?;
    Domain::parse(domain).ok()
}

/// A TXT cache for mail-auth holding records we know without DNS.
#[derive(Default)]
pub(crate) struct TxtCache(Mutex<HashMap<Box<str>, Txt>>);

impl TxtCache {
    pub(crate) fn put(&self, name: String, txt: Txt) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(name.into_boxed_str(), txt);
        }
    }
}

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().ok()?.remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _valid_until: std::time::Instant) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use postern_model::{DkimKeyType, Selector};

    use super::*;

    const MESSAGE: &[u8] =
        b"From: Kim <kim@adatum.com>\r\nTo: lee@example.net\r\nSubject: hi\r\n\r\nhello\r\n";

    #[tokio::test]
    async fn signs_with_the_enabled_key_once() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let keys = DkimKeyStore::open(&db).unwrap();
        let domain = Domain::parse("adatum.com").unwrap();
        let selector = Selector::parse("s1").unwrap();
        keys.generate(domain.clone(), selector.clone(), DkimKeyType::Ed25519)
            .unwrap();
        let signer = Signer::new(keys.clone()).unwrap();
        // Made, not yet enabled (its record may not be published).
        assert_eq!(signer.sign(MESSAGE).await.unwrap(), Signed::NoKey);
        keys.enable(&domain, &selector).unwrap();
        let Signed::Field(field) = signer.sign(MESSAGE).await.unwrap() else {
            panic!("not signed")
        };
        for tag in ["d=adatum.com", "s=s1", "a=ed25519-sha256", "c=relaxed/relaxed"] {
            assert!(field.contains(tag), "{tag} in {field}");
        }
        let signed = [field.as_bytes(), MESSAGE].concat();
        assert_eq!(signer.sign(&signed).await.unwrap(), Signed::AlreadySigned);
        // A signature of ours that no longer verifies does not count.
        let changed = [field.as_bytes(), &MESSAGE[..MESSAGE.len() - 4], b"!!\r\n"].concat();
        assert!(matches!(signer.sign(&changed).await.unwrap(), Signed::Field(_)));
        // Other domains are not signed.
        let other = b"From: a@fabrikam.com\r\nSubject: x\r\n\r\nx\r\n";
        assert_eq!(signer.sign(other).await.unwrap(), Signed::NoKey);
    }
}
