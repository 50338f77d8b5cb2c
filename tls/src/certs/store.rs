//! `CertStore`: installed certificates and pending requests in sled.
//!
//! Trees: `certificates` (thumbprint → certificate chain, key, services),
//! `cert_requests` (request thumbprint → request and its key) and
//! `cert_rotation` (thumbprint → its place in a rotation, see
//! [`super::Rotation`]). Every change is flushed before the call returns.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use postern_model::{CertStatus, Domain, KeySpec, Service, SubjectName, Thumbprint};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use time::OffsetDateTime;

use super::CertError;
use super::import::{KeyFormat, StoredKey, read_bundle};
use super::info::{ParsedCert, rfc3339};
use super::keys::NewKey;
use super::name::to_x509_name;
use super::rotation::Rotation;

/// Validity of self-signed certificates, as Exchange Setup makes them.
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600 + 24 * 3600);

/// What an administrator sees of a certificate or pending request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateView {
    /// SHA-1 of the certificate DER (of the request DER for a pending request).
    pub thumbprint: Thumbprint,
    /// The administrator's label.
    pub friendly_name: String,
    /// Subject DN as text.
    pub subject: String,
    /// Issuer DN as text (empty for a pending request).
    pub issuer: String,
    /// DNS names (SANs, or the CN when there are none).
    pub domains: Vec<String>,
    /// Start of validity, RFC 3339 (empty for a pending request).
    pub not_before: String,
    /// End of validity, RFC 3339 (empty for a pending request).
    pub not_after: String,
    /// Services the certificate is enabled for.
    pub services: Vec<Service>,
    /// Issued by itself.
    pub self_signed: bool,
    /// Valid, pending request, expired or not yet valid.
    pub status: CertStatus,
    /// Whether this node holds the private key.
    pub has_private_key: bool,
    /// `rsa-2048`, `ecdsa-256`, …
    pub key_algorithm: String,
    /// Number of CA certificates stored above the leaf.
    pub chain_length: u32,
    /// Whole days until `not_after` (negative once expired; 0 for a request).
    pub days_left: i64,
    /// Its place in a rotation towards the organisation's peers, if any.
    pub rotation: Option<Rotation>,
    /// Whether the private key may be exported.
    pub exportable: bool,
}

/// Parameters of `cert new`.
#[derive(Clone, Debug)]
pub struct NewCertificate {
    /// Subject DN.
    pub subject: SubjectName,
    /// DNS names for the subject alternative name extension.
    pub domains: Vec<Domain>,
    /// Label; defaults to the subject's CN.
    pub friendly_name: Option<String>,
    /// Key to generate.
    pub key: KeySpec,
    /// Services to enable (self-signed only).
    pub services: BTreeSet<Service>,
}

#[derive(Serialize, Deserialize)]
struct StoredCertificate {
    /// Leaf first, then the chain as imported.
    chain: Vec<Vec<u8>>,
    key: Option<StoredKey>,
    friendly_name: String,
    services: BTreeSet<Service>,
    added: String,
    /// Whether the key may be exported (`--private-key-exportable`).
    #[serde(default)]
    exportable: bool,
}

#[derive(Serialize, Deserialize)]
struct PendingRequest {
    csr_der: Vec<u8>,
    csr_pem: String,
    key: StoredKey,
    key_spec: KeySpec,
    /// SubjectPublicKeyInfo of the key: the issued certificate must carry it.
    spki: Vec<u8>,
    subject: String,
    domains: Vec<String>,
    friendly_name: String,
    created: String,
    /// Whether the key may be exported once the certificate is imported.
    #[serde(default)]
    exportable: bool,
}

/// The node's certificates, backed by sled.
#[derive(Clone)]
pub struct CertStore {
    db: sled::Db,
    certs: sled::Tree,
    requests: sled::Tree,
    rotations: sled::Tree,
    /// While set, a certificate newly enabled for SMTP is offered to the
    /// peers before it is presented; the text says what the offer waits for.
    hold: Arc<Mutex<Option<String>>>,
    /// Bumped after every change, so caches (the TLS resolvers) know to
    /// reread and followers (the hub's `HubInfo`) wake.
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl CertStore {
    /// Opens (creating when absent) the certificate trees of `db`.
    pub fn open(db: &sled::Db) -> Result<Self, CertError> {
        Ok(Self {
            db: db.clone(),
            certs: db.open_tree("certificates")?,
            requests: db.open_tree("cert_requests")?,
            rotations: db.open_tree("cert_rotation")?,
            hold: Arc::new(Mutex::new(None)),
            generation: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// Changes every time a certificate is added, enabled or removed.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// The generation and its every change: wakes whoever follows the
    /// certificates without polling.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Makes a change durable and tells the caches.
    fn changed(&self) -> Result<(), CertError> {
        self.db.flush()?;
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }

    /// Creates and installs a self-signed certificate.
    pub fn new_self_signed(&self, params: &NewCertificate) -> Result<CertificateView, CertError> {
        let domains = effective_domains(params)?;
        let key = NewKey::generate(params.key)?;
        let der = key.self_signed(to_x509_name(&params.subject)?, &domains, SELF_SIGNED_VALIDITY)?;
        let stored = StoredCertificate {
            chain: vec![der],
            key: Some(StoredKey {
                format: KeyFormat::Pkcs8,
                der: key.to_pkcs8_der()?,
            }),
            friendly_name: friendly_name(params),
            services: params.services.clone(),
            added: rfc3339(OffsetDateTime::now_utc()),
            exportable: false,
        };
        let thumbprint = self.insert_new(&stored)?;
        self.get(&thumbprint)
    }

    /// Generates a key and a PKCS#10 request; the key waits as a pending
    /// request until the issued certificate is imported. Returns the view
    /// and the request as PEM.
    pub fn new_request(&self, params: &NewCertificate) -> Result<(CertificateView, String), CertError> {
        let domains = effective_domains(params)?;
        let key = NewKey::generate(params.key)?;
        let (csr_der, csr_pem) = key.request(to_x509_name(&params.subject)?, &domains)?;
        let spki = spki_of_request(&csr_der)?;
        let thumbprint = Thumbprint::of_der(&csr_der);
        let pending = PendingRequest {
            csr_der,
            csr_pem: csr_pem.clone(),
            key: StoredKey {
                format: KeyFormat::Pkcs8,
                der: key.to_pkcs8_der()?,
            },
            key_spec: params.key,
            spki,
            subject: params.subject.to_string(),
            domains: domains.iter().map(ToString::to_string).collect(),
            friendly_name: friendly_name(params),
            created: rfc3339(OffsetDateTime::now_utc()),
            exportable: false,
        };
        self.requests.insert(thumbprint.as_bytes(), encode(&pending)?)?;
        self.changed()?;
        Ok((pending_view(thumbprint, &pending), csr_pem))
    }

    /// Imports a PEM, DER or PKCS#12 file. A certificate without a key binds
    /// to the pending request whose key it certifies.
    pub fn import(
        &self,
        data: &[u8],
        password: &str,
        friendly: Option<&str>,
        services: &BTreeSet<Service>,
    ) -> Result<CertificateView, CertError> {
        let bundle = read_bundle(data, password)?;
        let (mut chain, key) = order_chain(bundle.chain, bundle.key.as_ref())?;
        if key.is_none() {
            // A leaf for a pending request goes first (PKCS#7 bundles list
            // certificates in any order).
            if let Some(pos) = self.position_of_requested(&chain)? {
                let leaf = chain.remove(pos);
                chain.insert(0, leaf);
            } else if let Some(completed) = self.complete_chains(&chain)? {
                return self.get(&completed);
            } else if let Some(pos) = chain
                .iter()
                .position(|d| ParsedCert::parse(d).is_ok_and(|c| !c.is_ca))
            {
                let leaf = chain.remove(pos);
                chain.insert(0, leaf);
            }
        }
        let chain = issuer_order(chain);
        let leaf = ParsedCert::parse(&chain[0])?;
        if self.certs.contains_key(leaf.thumbprint.as_bytes())? {
            return Err(CertError::AlreadyInstalled(leaf.thumbprint));
        }
        let now = rfc3339(OffsetDateTime::now_utc());
        let mut stored = StoredCertificate {
            chain,
            key,
            friendly_name: friendly.map(str::to_owned).unwrap_or_default(),
            services: services.clone(),
            added: now,
            exportable: false,
        };
        let bound_request = match &stored.key {
            Some(_) => None,
            None => {
                let (request_tp, pending) = self
                    .find_request_for(&leaf.spki)?
                    .ok_or(CertError::NoPrivateKey(leaf.thumbprint))?;
                stored.key = Some(pending.key.clone());
                stored.exportable = pending.exportable;
                if stored.friendly_name.is_empty() {
                    stored.friendly_name = pending.friendly_name;
                }
                Some(request_tp)
            }
        };
        if stored.friendly_name.is_empty() {
            stored.friendly_name = leaf.domains.first().cloned().unwrap_or_default();
        }
        check_key_usable(&stored, &leaf)?;
        if !stored.services.is_empty() {
            check_enable(&leaf, &stored)?;
        }
        let value = encode(&stored)?;
        (&self.certs, &self.requests)
            .transaction(|(certs, requests)| {
                certs.insert(leaf.thumbprint.as_bytes().as_slice(), value.clone())?;
                if let Some(tp) = &bound_request {
                    requests.remove(tp.as_bytes().as_slice())?;
                }
                Ok(())
            })
            .map_err(|e: sled::transaction::TransactionError<()>| match e {
                sled::transaction::TransactionError::Storage(e) => CertError::Store(e),
                sled::transaction::TransactionError::Abort(()) => {
                    CertError::Corrupt("transaction aborted".into())
                }
            })?;
        if stored.services.contains(&Service::Smtp) {
            self.hold_for_peers(&leaf.thumbprint)?;
        }
        self.changed()?;
        self.get(&leaf.thumbprint)
    }

    /// Adds services to an installed certificate.
    pub fn enable(
        &self,
        thumbprint: &Thumbprint,
        services: &BTreeSet<Service>,
    ) -> Result<CertificateView, CertError> {
        let mut stored = self.load_cert(thumbprint)?;
        let leaf = ParsedCert::parse(leaf_der(&stored)?)?;
        check_enable(&leaf, &stored)?;
        let was_smtp = stored.services.contains(&Service::Smtp);
        stored.services.extend(services.iter().copied());
        self.certs.insert(thumbprint.as_bytes(), encode(&stored)?)?;
        if !was_smtp && stored.services.contains(&Service::Smtp) {
            self.hold_for_peers(thumbprint)?;
        }
        self.changed()?;
        self.get(thumbprint)
    }

    /// Every installed certificate and pending request.
    pub fn list(&self) -> Result<Vec<CertificateView>, CertError> {
        let mut out = Vec::new();
        for item in self.certs.iter() {
            let (k, v) = item?;
            let view = cert_view(&decode::<StoredCertificate>(&v)?, thumbprint_key(&k)?)?;
            out.push(self.with_rotation(view)?);
        }
        for item in self.requests.iter() {
            let (k, v) = item?;
            out.push(pending_view(thumbprint_key(&k)?, &decode(&v)?));
        }
        Ok(out)
    }

    /// One certificate or pending request.
    pub fn get(&self, thumbprint: &Thumbprint) -> Result<CertificateView, CertError> {
        if let Some(v) = self.certs.get(thumbprint.as_bytes())? {
            return self.with_rotation(cert_view(&decode(&v)?, *thumbprint)?);
        }
        if let Some(v) = self.requests.get(thumbprint.as_bytes())? {
            return Ok(pending_view(*thumbprint, &decode(&v)?));
        }
        Err(CertError::NotFound(*thumbprint))
    }

    /// Removes a certificate or pending request; refuses to remove the last
    /// valid SMTP certificate.
    pub fn remove(&self, thumbprint: &Thumbprint) -> Result<(), CertError> {
        if self.requests.remove(thumbprint.as_bytes())?.is_some() {
            self.changed()?;
            return Ok(());
        }
        let view = self.get(thumbprint)?;
        if view.rotation.is_none() && view.services.contains(&Service::Smtp) {
            // While a certificate is offered, what is presented for its
            // names (what the peers trust) stays as it is.
            let offered = self.list()?.into_iter().find(|c| {
                c.rotation.as_ref().is_some_and(Rotation::is_offered)
                    && c.domains.iter().any(|d| view.domains.contains(d))
            });
            if let Some(offered) = offered {
                return Err(CertError::OfferPending(*thumbprint, offered.thumbprint));
            }
        }
        if view.services.contains(&Service::Smtp) && view.status == CertStatus::Valid {
            let others = self.list()?.into_iter().any(|c| {
                c.thumbprint != *thumbprint
                    && c.status == CertStatus::Valid
                    && c.has_private_key
                    && c.services.contains(&Service::Smtp)
            });
            if !others {
                return Err(CertError::OnlySmtpCertificate(*thumbprint));
            }
        }
        self.certs.remove(thumbprint.as_bytes())?;
        self.rotations.remove(thumbprint.as_bytes())?;
        self.changed()?;
        Ok(())
    }

    /// The PKCS#10 request of a pending request, as PEM.
    pub fn request_pem(&self, thumbprint: &Thumbprint) -> Result<String, CertError> {
        let v = self
            .requests
            .get(thumbprint.as_bytes())?
            .ok_or(CertError::NotFound(*thumbprint))?;
        Ok(decode::<PendingRequest>(&v)?.csr_pem)
    }

    /// The chain and key of an installed certificate, ready for rustls.
    pub fn certified_key(
        &self,
        thumbprint: &Thumbprint,
    ) -> Result<Arc<rustls::sign::CertifiedKey>, CertError> {
        let stored = self.load_cert(thumbprint)?;
        let key = stored
            .key
            .as_ref()
            .ok_or(CertError::NoKeyForService(*thumbprint, Service::Smtp))?;
        let chain = stored
            .chain
            .iter()
            .map(|d| rustls_pki_types::CertificateDer::from(d.clone()))
            .collect();
        // The key was checked against the certificate when it was stored.
        Ok(Arc::new(rustls::sign::CertifiedKey::new(
            chain,
            load_signer(key)?,
        )))
    }

    /// The certificate STARTTLS presents for `host`, as DESIGN §5 chooses
    /// it: valid, enabled for SMTP, holding its key and naming `host`;
    /// CA-issued before self-signed, then the latest expiry.
    pub fn select_smtp(&self, host: &str) -> Result<Option<Thumbprint>, CertError> {
        let now = OffsetDateTime::now_utc();
        // (presented, CA-issued, expiry): a certificate in a rotation
        // (offered, retiring, retired) only when nothing else names `host`.
        let mut best: Option<(bool, bool, OffsetDateTime, Thumbprint)> = None;
        for item in self.certs.iter() {
            let (k, v) = item?;
            let stored: StoredCertificate = decode(&v)?;
            let leaf = ParsedCert::parse(leaf_der(&stored)?)?;
            let usable = stored.key.is_some()
                && stored.services.contains(&Service::Smtp)
                && leaf.status_at(now) == CertStatus::Valid
                && leaf.names(host);
            if !usable {
                continue;
            }
            let presented = !self.rotations.contains_key(&k)?;
            let rank = (presented, !leaf.self_signed, leaf.not_after, leaf.thumbprint);
            if best
                .as_ref()
                .is_none_or(|b| (b.0, b.1, b.2) < (rank.0, rank.1, rank.2))
            {
                best = Some(rank);
            }
        }
        Ok(best.map(|b| b.3))
    }

    /// While `Some(note)`, a certificate newly enabled for SMTP is held as
    /// [`Rotation::Offered`] (with `note` saying what it waits for) instead
    /// of being presented: set by an edge once subscribed, by a hub that has
    /// edges, whose peers pin the certificate they know.
    pub fn hold_new_smtp_certificates(&self, note: Option<String>) {
        *self.hold.lock().unwrap_or_else(|p| p.into_inner()) = note;
    }

    fn hold_for_peers(&self, thumbprint: &Thumbprint) -> Result<(), CertError> {
        let note = self.hold.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(note) = note {
            let record = Rotation::Offered {
                since: rfc3339(OffsetDateTime::now_utc()),
                note,
            };
            self.rotations.insert(thumbprint.as_bytes(), encode(&record)?)?;
            tracing::info!(%thumbprint, "certificate enabled for SMTP; offered to the organisation's peers before it is presented");
        }
        Ok(())
    }

    /// Marks the key of a certificate or pending request exportable
    /// (`--private-key-exportable`).
    pub fn mark_exportable(&self, thumbprint: &Thumbprint) -> Result<(), CertError> {
        if let Some(v) = self.requests.get(thumbprint.as_bytes())? {
            let mut pending: PendingRequest = decode(&v)?;
            pending.exportable = true;
            self.requests.insert(thumbprint.as_bytes(), encode(&pending)?)?;
            return self.changed();
        }
        let mut stored = self.load_cert(thumbprint)?;
        stored.exportable = true;
        self.certs.insert(thumbprint.as_bytes(), encode(&stored)?)?;
        self.changed()
    }

    /// The certificate alone, PEM: what a partner adds to his trusted roots.
    pub fn export_public(&self, thumbprint: &Thumbprint) -> Result<String, CertError> {
        let stored = self.load_cert(thumbprint)?;
        Ok(super::export::public_pem(leaf_der(&stored)?))
    }

    /// Certificate, chain and key as PKCS#12 protected by `password`;
    /// refused unless the key was marked exportable.
    pub fn export_pkcs12(&self, thumbprint: &Thumbprint, password: &str) -> Result<Vec<u8>, CertError> {
        let stored = self.load_cert(thumbprint)?;
        let key = stored
            .key
            .as_ref()
            .ok_or(CertError::NoPrivateKeyHere(*thumbprint))?;
        if !stored.exportable {
            return Err(CertError::NotExportable(*thumbprint));
        }
        if password.is_empty() {
            return Err(CertError::EmptyPassword);
        }
        super::export::pkcs12(thumbprint, &stored.chain, key, password)
    }

    /// A certificate's place in a rotation (`None`: presented normally).
    pub fn rotation(&self, thumbprint: &Thumbprint) -> Result<Option<Rotation>, CertError> {
        self.rotations
            .get(thumbprint.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Sets (or with `None` clears) a certificate's place in a rotation.
    pub fn set_rotation(
        &self,
        thumbprint: &Thumbprint,
        rotation: Option<&Rotation>,
    ) -> Result<(), CertError> {
        match rotation {
            Some(r) => self.rotations.insert(thumbprint.as_bytes(), encode(r)?)?,
            None => self.rotations.remove(thumbprint.as_bytes())?,
        };
        self.changed()
    }

    /// Every certificate with a rotation record.
    pub fn rotations(&self) -> Result<Vec<(Thumbprint, Rotation)>, CertError> {
        let mut out = Vec::new();
        for item in self.rotations.iter() {
            let (k, v) = item?;
            out.push((thumbprint_key(&k)?, decode(&v)?));
        }
        Ok(out)
    }

    /// The public chain (DER, leaf first) of an installed certificate.
    pub fn chain(&self, thumbprint: &Thumbprint) -> Result<Vec<Vec<u8>>, CertError> {
        Ok(self.load_cert(thumbprint)?.chain)
    }

    fn with_rotation(&self, mut view: CertificateView) -> Result<CertificateView, CertError> {
        view.rotation = self.rotation(&view.thumbprint)?;
        Ok(view)
    }

    fn load_cert(&self, thumbprint: &Thumbprint) -> Result<StoredCertificate, CertError> {
        match self.certs.get(thumbprint.as_bytes())? {
            Some(v) => decode(&v),
            None if self.requests.contains_key(thumbprint.as_bytes())? => {
                Err(CertError::Pending(*thumbprint))
            }
            None => Err(CertError::NotFound(*thumbprint)),
        }
    }

    fn insert_new(&self, stored: &StoredCertificate) -> Result<Thumbprint, CertError> {
        let thumbprint = Thumbprint::of_der(leaf_der(stored)?);
        self.certs.insert(thumbprint.as_bytes(), encode(stored)?)?;
        if stored.services.contains(&Service::Smtp) {
            self.hold_for_peers(&thumbprint)?;
        }
        self.changed()?;
        Ok(thumbprint)
    }

    fn position_of_requested(&self, chain: &[Vec<u8>]) -> Result<Option<usize>, CertError> {
        for (i, der) in chain.iter().enumerate() {
            let parsed = ParsedCert::parse(der)?;
            if self.find_request_for(&parsed.spki)?.is_some() {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Appends the CA certificates of `certs` that continue an installed
    /// certificate's chain (an intermediate or root imported after the
    /// certificate itself), so handshakes send the whole chain. Returns
    /// the first certificate whose chain grew.
    fn complete_chains(&self, certs: &[Vec<u8>]) -> Result<Option<Thumbprint>, CertError> {
        let cas: Vec<(Vec<u8>, ParsedCert)> = certs
            .iter()
            .map(|d| ParsedCert::parse(d).map(|p| (d.clone(), p)))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|(_, p)| p.is_ca)
            .collect();
        if cas.is_empty() {
            return Ok(None);
        }
        let mut first = None;
        for item in self.certs.iter() {
            let (k, v) = item?;
            let mut stored: StoredCertificate = decode(&v)?;
            let before = stored.chain.len();
            loop {
                let top = ParsedCert::parse(stored.chain.last().map(Vec::as_slice).unwrap_or_default())?;
                if top.self_signed {
                    break;
                }
                let next = cas
                    .iter()
                    .find(|(der, ca)| ca.subject_raw == top.issuer_raw && !stored.chain.contains(der));
                match next {
                    Some((der, _)) => stored.chain.push(der.clone()),
                    None => break,
                }
            }
            if stored.chain.len() > before {
                let tp = thumbprint_key(&k)?;
                self.certs.insert(&k, encode(&stored)?)?;
                tracing::info!(thumbprint = %tp, added = stored.chain.len() - before, "certificate chain completed");
                first.get_or_insert(tp);
            }
        }
        if first.is_some() {
            self.changed()?;
        }
        Ok(first)
    }

    fn find_request_for(&self, spki: &[u8]) -> Result<Option<(Thumbprint, PendingRequest)>, CertError> {
        for item in self.requests.iter() {
            let (k, v) = item?;
            let pending: PendingRequest = decode(&v)?;
            if pending.spki == spki {
                return Ok(Some((thumbprint_key(&k)?, pending)));
            }
        }
        Ok(None)
    }
}

fn effective_domains(params: &NewCertificate) -> Result<Vec<Domain>, CertError> {
    if !params.domains.is_empty() {
        return Ok(params.domains.clone());
    }
    params
        .subject
        .common_name()
        .and_then(|cn| Domain::parse(cn).ok())
        .map(|d| vec![d])
        .ok_or(CertError::NoDomains)
}

fn friendly_name(params: &NewCertificate) -> String {
    params
        .friendly_name
        .clone()
        .or_else(|| params.subject.common_name().map(str::to_owned))
        .unwrap_or_default()
}

/// Puts the certificate that matches the key (or else the first one that
/// is not a CA's) first, keeping the rest in file order.
fn order_chain(
    mut chain: Vec<Vec<u8>>,
    key: Option<&StoredKey>,
) -> Result<(Vec<Vec<u8>>, Option<StoredKey>), CertError> {
    if let Some(key) = key {
        let signer = load_signer(key)?;
        let spki = signer.public_key().map(|s| s.as_ref().to_vec());
        if let Some(spki) = spki {
            let pos = chain
                .iter()
                .position(|der| ParsedCert::parse(der).is_ok_and(|c| c.spki == spki))
                .ok_or_else(|| {
                    CertError::KeyMismatch(Thumbprint::of_der(
                        chain.first().map(Vec::as_slice).unwrap_or_default(),
                    ))
                })?;
            let leaf = chain.remove(pos);
            chain.insert(0, leaf);
        }
    }
    Ok((chain, key.cloned()))
}

/// Leaf first, then each certificate's issuer as far as the file goes,
/// then whatever else the file held.
fn issuer_order(mut rest: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    if rest.is_empty() {
        return rest;
    }
    let mut ordered = vec![rest.remove(0)];
    loop {
        let Some(Ok(top)) = ordered.last().map(|d| ParsedCert::parse(d)) else {
            break;
        };
        if top.self_signed {
            break;
        }
        let pos = rest
            .iter()
            .position(|d| ParsedCert::parse(d).is_ok_and(|c| c.subject_raw == top.issuer_raw));
        match pos {
            Some(p) => ordered.push(rest.remove(p)),
            None => break,
        }
    }
    ordered.extend(rest);
    ordered
}

fn check_key_usable(stored: &StoredCertificate, leaf: &ParsedCert) -> Result<(), CertError> {
    let Some(key) = &stored.key else { return Ok(()) };
    let signer = load_signer(key)?;
    // Compared here rather than by rustls's `keys_match`, which parses with
    // webpki and refuses version 1 certificates that some CAs still issue.
    match signer.public_key() {
        Some(spki) if spki.as_ref() == leaf.spki.as_slice() => Ok(()),
        Some(_) => Err(CertError::KeyMismatch(leaf.thumbprint)),
        None => Err(CertError::UnusableKey("its public key cannot be derived".into())),
    }
}

fn load_signer(key: &StoredKey) -> Result<Arc<dyn rustls::sign::SigningKey>, CertError> {
    rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key.to_rustls())
        .map_err(|e| CertError::UnusableKey(e.to_string()))
}

fn check_enable(leaf: &ParsedCert, stored: &StoredCertificate) -> Result<(), CertError> {
    if stored.key.is_none() {
        return Err(CertError::NoKeyForService(leaf.thumbprint, Service::Smtp));
    }
    if leaf.status_at(OffsetDateTime::now_utc()) == CertStatus::Expired {
        return Err(CertError::Expired(leaf.thumbprint, rfc3339(leaf.not_after)));
    }
    Ok(())
}

fn leaf_der(stored: &StoredCertificate) -> Result<&[u8], CertError> {
    stored
        .chain
        .first()
        .map(Vec::as_slice)
        .ok_or_else(|| CertError::Corrupt("empty chain".into()))
}

fn cert_view(stored: &StoredCertificate, thumbprint: Thumbprint) -> Result<CertificateView, CertError> {
    let leaf = ParsedCert::parse(leaf_der(stored)?)?;
    Ok(CertificateView {
        thumbprint,
        friendly_name: stored.friendly_name.clone(),
        subject: leaf.subject.clone(),
        issuer: leaf.issuer.clone(),
        domains: leaf.domains.clone(),
        not_before: rfc3339(leaf.not_before),
        not_after: rfc3339(leaf.not_after),
        services: stored.services.iter().copied().collect(),
        self_signed: leaf.self_signed,
        status: leaf.status_at(OffsetDateTime::now_utc()),
        has_private_key: stored.key.is_some(),
        key_algorithm: leaf.key_algorithm.clone(),
        chain_length: u32::try_from(stored.chain.len().saturating_sub(1)).unwrap_or(u32::MAX),
        days_left: (leaf.not_after - OffsetDateTime::now_utc()).whole_days(),
        rotation: None,
        exportable: stored.exportable && stored.key.is_some(),
    })
}

fn pending_view(thumbprint: Thumbprint, p: &PendingRequest) -> CertificateView {
    CertificateView {
        thumbprint,
        friendly_name: p.friendly_name.clone(),
        subject: p.subject.clone(),
        issuer: String::new(),
        domains: p.domains.clone(),
        not_before: String::new(),
        not_after: String::new(),
        services: Vec::new(),
        self_signed: false,
        status: CertStatus::PendingRequest,
        has_private_key: true,
        key_algorithm: p.key_spec.to_string(),
        chain_length: 0,
        days_left: 0,
        rotation: None,
        exportable: p.exportable,
    }
}

fn spki_of_request(csr_der: &[u8]) -> Result<Vec<u8>, CertError> {
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|e| CertError::Build(format!("generated request does not parse: {e}")))?;
    Ok(csr.certification_request_info.subject_pki.raw.to_vec())
}

fn thumbprint_key(k: &[u8]) -> Result<Thumbprint, CertError> {
    let bytes: [u8; 20] = k
        .try_into()
        .map_err(|_| CertError::Corrupt("key is not a thumbprint".into()))?;
    Ok(Thumbprint::from_bytes(bytes))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CertError> {
    serde_json::to_vec(value).map_err(|e| CertError::Corrupt(e.to_string()))
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CertError> {
    serde_json::from_slice(bytes).map_err(|e| CertError::Corrupt(e.to_string()))
}
