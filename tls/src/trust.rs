//! The live trust store: the direct-trust set of certificate thumbprints
//! (edge certificates on a hub, hub certificates on an edge) and the PKI
//! roots (the compiled-in public roots plus roots the administrator added).
//!
//! Readers take a snapshot per handshake; writers replace it, so a change
//! applies to the next handshake.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use postern_model::Thumbprint;
use rustls::RootCertStore;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::provider;

/// How far a peer's certificate is trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerTrust {
    /// No certificate was presented.
    None,
    /// Its thumbprint is in the direct-trust set: a node of this organisation.
    Direct(Thumbprint),
    /// It chains to a trusted root; `names` are its DNS names, to be matched
    /// against the partner domain by the caller.
    Pki {
        /// The certificate's thumbprint.
        thumbprint: Thumbprint,
        /// DNS names of the certificate (SANs, or the CN without SANs).
        names: Vec<String>,
    },
    /// Presented but trusted neither way; says why.
    Untrusted(String),
}

/// Direct-trust thumbprints and PKI roots, shared by every verifier.
#[derive(Clone)]
pub struct TrustStore {
    inner: Arc<RwLock<Snapshot>>,
    /// Bumped at every change, so pooled connections made under the old
    /// trust can be told apart.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Clone)]
struct Snapshot {
    direct: Arc<HashSet<Thumbprint>>,
    roots: Arc<RootCertStore>,
    pki_client: Arc<dyn ClientCertVerifier>,
}

impl TrustStore {
    /// A store with the public roots (webpki-roots), extra administrator
    /// roots and the given direct-trust set.
    pub fn new(
        direct: impl IntoIterator<Item = Thumbprint>,
        extra_roots: &[CertificateDer<'static>],
    ) -> Self {
        let snapshot = build_snapshot(direct.into_iter().collect(), extra_roots);
        Self {
            inner: Arc::new(RwLock::new(snapshot)),
            generation: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        }
    }

    /// Changes whenever the direct-trust set or the roots change.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Replaces the direct-trust set.
    pub fn set_direct(&self, direct: impl IntoIterator<Item = Thumbprint>) {
        let set: HashSet<Thumbprint> = direct.into_iter().collect();
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if *guard.direct != set {
            guard.direct = Arc::new(set);
            drop(guard);
            self.bump();
        }
    }

    /// Adds one thumbprint to the direct-trust set.
    pub fn trust_direct(&self, thumbprint: Thumbprint) {
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let mut set = (*guard.direct).clone();
        if set.insert(thumbprint) {
            guard.direct = Arc::new(set);
            drop(guard);
            self.bump();
        }
    }

    /// Replaces the administrator-added roots (public roots stay).
    pub fn set_extra_roots(&self, extra_roots: &[CertificateDer<'static>]) {
        let direct = (*self.snapshot().direct).clone();
        let snapshot = build_snapshot(direct, extra_roots);
        let mut guard = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let same = guard.roots.roots == snapshot.roots.roots;
        *guard = snapshot;
        drop(guard);
        if !same {
            self.bump();
        }
    }

    /// True when some certificate is directly trusted.
    pub fn has_direct(&self) -> bool {
        !self.snapshot().direct.is_empty()
    }

    /// True when `thumbprint` is directly trusted.
    pub fn is_direct(&self, thumbprint: &Thumbprint) -> bool {
        self.snapshot().direct.contains(thumbprint)
    }

    /// The PKI roots as they are now.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.snapshot().roots
    }

    /// Classifies a presented chain (leaf first): direct trust first, then PKI.
    pub fn classify(&self, chain: &[CertificateDer<'static>]) -> PeerTrust {
        let Some(leaf) = chain.first() else {
            return PeerTrust::None;
        };
        let thumbprint = Thumbprint::of_der(leaf.as_ref());
        let snap = self.snapshot();
        if snap.direct.contains(&thumbprint) {
            return PeerTrust::Direct(thumbprint);
        }
        match snap
            .pki_client
            .verify_client_cert(leaf, &chain[1..], UnixTime::now())
        {
            Ok(_) => PeerTrust::Pki {
                thumbprint,
                names: cert_names(leaf.as_ref()),
            },
            Err(e) => PeerTrust::Untrusted(e.to_string()),
        }
    }

    /// Classifies the chain a server presented in a handshake that passed
    /// `verification`: the verifier already judged it, so direct trust and
    /// PKI are what it checked; encryption-only TLS checked nothing, so
    /// the certificate is `Untrusted` unless directly trusted.
    pub fn classify_server(
        &self,
        chain: &[CertificateDer<'static>],
        verification: super::ServerVerification,
    ) -> PeerTrust {
        use super::ServerVerification;
        let Some(leaf) = chain.first() else {
            return PeerTrust::None;
        };
        let thumbprint = Thumbprint::of_der(leaf.as_ref());
        match verification {
            ServerVerification::DirectTrust => PeerTrust::Direct(thumbprint),
            ServerVerification::Pki => PeerTrust::Pki {
                thumbprint,
                names: cert_names(leaf.as_ref()),
            },
            ServerVerification::DangerEncryptionOnly if self.is_direct(&thumbprint) => {
                PeerTrust::Direct(thumbprint)
            }
            ServerVerification::DangerEncryptionOnly => {
                PeerTrust::Untrusted("not verified (encryption-only TLS)".to_owned())
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn build_snapshot(direct: HashSet<Thumbprint>, extra_roots: &[CertificateDer<'static>]) -> Snapshot {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for root in extra_roots {
        if let Err(e) = roots.add(root.clone()) {
            tracing::warn!(error = %e, "ignoring a trusted root that cannot be parsed");
        }
    }
    let roots = Arc::new(roots);
    let pki_client: Arc<dyn ClientCertVerifier> =
        match rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .allow_unauthenticated()
            .build()
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "PKI client verifier cannot be built; PKI client certificates will be refused");
                Arc::new(super::verify::RefuseAll)
            }
        };
    Snapshot {
        direct: Arc::new(direct),
        roots,
        pki_client,
    }
}

/// DNS names in a certificate: SANs, or the subject CN when it has none.
pub(crate) fn cert_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names
}
