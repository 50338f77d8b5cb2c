//! Chooses the certificate a handshake presents, from the node's
//! certificate store (DESIGN §5): for a server, the SMTP certificate naming
//! the SNI host or else the connector FQDN; for a client, the one naming the
//! sending FQDN. Results are cached until the store changes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::certs::CertStore;

/// Certificates found per host name, valid for one store generation.
type HostCache = (u64, HashMap<String, Option<Arc<CertifiedKey>>>);

/// Cached lookups of `CertStore::select_smtp` + `certified_key`.
#[derive(Clone)]
struct CertCache {
    store: CertStore,
    cache: Arc<Mutex<HostCache>>,
}

impl CertCache {
    fn new(store: CertStore) -> Self {
        Self {
            store,
            cache: Arc::new(Mutex::new((u64::MAX, HashMap::new()))),
        }
    }

    fn for_host(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let generation = self.store.generation();
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0 != generation {
            *guard = (generation, HashMap::new());
        }
        if let Some(hit) = guard.1.get(&host) {
            return hit.clone();
        }
        let found = match self.store.select_smtp(&host) {
            Ok(Some(tp)) => match self.store.certified_key(&tp) {
                Ok(key) => Some(key),
                Err(e) => {
                    tracing::warn!(thumbprint = %tp, error = %e, "SMTP certificate cannot be loaded");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "certificate store cannot be read");
                None
            }
        };
        guard.1.insert(host, found.clone());
        found
    }
}

/// Server certificate resolver for one connector.
#[derive(Clone)]
pub struct ServerCertResolver {
    cache: CertCache,
    fqdn: String,
}

impl ServerCertResolver {
    /// Resolves for a connector whose FQDN is `fqdn`.
    pub fn new(store: CertStore, fqdn: &str) -> Self {
        Self {
            cache: CertCache::new(store),
            fqdn: fqdn.to_owned(),
        }
    }

    /// The certificate for the connector FQDN, if any: STARTTLS is offered
    /// only when this is `Some`.
    pub fn for_connector(&self) -> Option<Arc<CertifiedKey>> {
        self.cache.for_host(&self.fqdn)
    }

    /// The certificate store it reads.
    pub(crate) fn store(&self) -> &CertStore {
        &self.cache.store
    }
}

impl fmt::Debug for ServerCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerCertResolver({})", self.fqdn)
    }
}

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|sni| self.cache.for_host(sni))
            .or_else(|| self.for_connector())
    }
}

/// Client certificate resolver: presents the SMTP certificate naming `fqdn`.
#[derive(Clone)]
pub struct ClientCertResolver {
    cache: CertCache,
    fqdn: String,
}

impl ClientCertResolver {
    /// Presents the certificate for `fqdn` (the sending connector's FQDN).
    pub fn new(store: CertStore, fqdn: &str) -> Self {
        Self {
            cache: CertCache::new(store),
            fqdn: fqdn.to_owned(),
        }
    }
}

impl fmt::Debug for ClientCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientCertResolver({})", self.fqdn)
    }
}

impl rustls::client::ResolvesClientCert for ClientCertResolver {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.cache.for_host(&self.fqdn)
    }

    fn has_certs(&self) -> bool {
        true
    }
}
