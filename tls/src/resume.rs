//! TLS session resumption bound to the node's identity: a resumed
//! handshake skips the certificate signatures (the costly part of a
//! handshake with RSA-2048 keys), so it must never outlive the trust that
//! admitted the first one.
//!
//! Both halves are keyed by the identity epoch, the generations of the
//! certificate store and of the trust store (the same pair the connection
//! pool checks, DESIGN §10). When either changes — a certificate enabled,
//! removed or rotated, a thumbprint trusted or dropped — the server's
//! ticket key and the client's session cache are replaced, so every
//! handshake after it is a full one, checked against the trust now in
//! force.
//!
//! - [`IdentityTickets`]: the server's stateless tickets (TLS 1.3 and the
//!   RFC 5077 tickets of TLS 1.2), from rustls's rotating ticketer.
//! - [`SessionCache`]: the client's configs for hops between nodes of the
//!   organisation, each with its store of sessions per server name.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::ClientConfig;
use rustls::server::ProducesTickets;

use crate::TrustStore;
use crate::certs::CertStore;

/// The generations of the certificate store and of the trust store.
pub type IdentityEpoch = (u64, u64);

/// The node's identity epoch now.
pub fn identity_epoch(certs: &CertStore, trust: &TrustStore) -> IdentityEpoch {
    (certs.generation(), trust.generation())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Session tickets whose key is replaced whenever the identity epoch
/// changes: a ticket issued before a trust or certificate change no longer
/// decrypts, and the client falls back to a full handshake.
pub struct IdentityTickets {
    certs: CertStore,
    trust: TrustStore,
    current: Mutex<Option<(IdentityEpoch, Arc<dyn ProducesTickets>)>>,
}

impl IdentityTickets {
    /// Tickets for a server presenting certificates from `certs` and
    /// checking clients against `trust`.
    pub fn new(certs: CertStore, trust: TrustStore) -> Self {
        Self {
            certs,
            trust,
            current: Mutex::new(None),
        }
    }

    /// The ticketer of the epoch in force, made on first use after a change.
    /// `None` when no ticket key can be made (the system RNG failed): no
    /// tickets are issued or accepted then.
    fn ticketer(&self) -> Option<Arc<dyn ProducesTickets>> {
        let epoch = identity_epoch(&self.certs, &self.trust);
        let mut current = lock(&self.current);
        if let Some((made_for, ticketer)) = current.as_ref()
            && *made_for == epoch
        {
            return Some(Arc::clone(ticketer));
        }
        match rustls::crypto::ring::Ticketer::new() {
            Ok(ticketer) => {
                *current = Some((epoch, Arc::clone(&ticketer)));
                Some(ticketer)
            }
            Err(error) => {
                tracing::warn!(%error, "no TLS ticket key can be made; sessions will not resume");
                *current = None;
                None
            }
        }
    }
}

impl fmt::Debug for IdentityTickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityTickets")
    }
}

impl ProducesTickets for IdentityTickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.ticketer().map_or(0, |t| t.lifetime())
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.ticketer()?.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.ticketer()?.decrypt(cipher)
    }
}

/// The client's sessions with servers of the organisation, forgotten
/// whenever the identity epoch changes. rustls resumes a session only
/// under the very verifier and client-certificate resolver that made it,
/// so this keeps one client config (with its session store) per client
/// certificate name for the epoch, rather than one per connection. Its
/// verifier and resolver read the live stores, so a kept config checks
/// exactly what a fresh one would. Cheap to clone; clones share the cache.
#[derive(Clone, Default)]
pub struct SessionCache {
    current: Arc<Mutex<Option<(IdentityEpoch, ConfigsByName)>>>,
}

/// The client configs of one identity epoch, by client certificate name
/// (`None`: no client certificate).
type ConfigsByName = HashMap<Option<String>, Arc<ClientConfig>>;

impl SessionCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The config for handshakes made under `epoch` presenting the client
    /// certificate for `client_name` (`None`: no client certificate): the
    /// one kept while the epoch holds, else `make()`'s, kept from now on.
    pub fn config(
        &self,
        epoch: IdentityEpoch,
        client_name: Option<&str>,
        make: impl FnOnce() -> Arc<ClientConfig>,
    ) -> Arc<ClientConfig> {
        let mut current = lock(&self.current);
        let configs = match &mut *current {
            Some((made_for, configs)) if *made_for == epoch => configs,
            other => &mut other.insert((epoch, HashMap::new())).1,
        };
        Arc::clone(
            configs
                .entry(client_name.map(str::to_ascii_lowercase))
                .or_insert_with(make),
        )
    }
}

impl fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionCache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make() -> Arc<ClientConfig> {
        let trust = TrustStore::new([], &[]);
        crate::client_config(crate::ServerVerification::DirectTrust, &trust, None)
    }

    #[test]
    fn a_config_is_kept_per_client_name_until_the_epoch_changes() {
        let cache = SessionCache::new();
        let a = cache.config((1, 1), Some("edge1.contoso.test"), make);
        let again = cache.config((1, 1), Some("EDGE1.contoso.test"), make);
        assert!(Arc::ptr_eq(&a, &again));
        let other_name = cache.config((1, 1), None, make);
        assert!(!Arc::ptr_eq(&a, &other_name));
        let after_trust_change = cache.config((1, 2), Some("edge1.contoso.test"), make);
        assert!(!Arc::ptr_eq(&a, &after_trust_change));
    }
}
