//! The trust store follows the snapshot's trust anchors: one follower per
//! node, the same for hubs and edges.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use tokio::sync::watch;

use super::{NodeConfig, TrustAnchors};
use crate::tls::TrustStore;

/// Puts `anchors` into `trust`. The store's generation (and with it the
/// TLS-resumption identity epoch) moves only when the pinned set or the
/// roots really change.
pub fn apply_trust(anchors: &TrustAnchors, trust: &TrustStore) {
    trust.set_direct(anchors.direct.iter().copied());
    let roots: Vec<CertificateDer<'static>> = anchors
        .roots
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect();
    trust.set_extra_roots(&roots);
}

/// Keeps `trust` equal to the trust anchors of the snapshot in force: sets
/// them now, then at every snapshot whose anchors changed, until the
/// compiler is gone.
pub fn follow_trust(mut snapshots: watch::Receiver<Arc<NodeConfig>>, trust: TrustStore) {
    let mut anchors = Arc::clone(&snapshots.borrow_and_update().trust);
    apply_trust(&anchors, &trust);
    tokio::spawn(async move {
        while snapshots.changed().await.is_ok() {
            let next = Arc::clone(&snapshots.borrow_and_update().trust);
            if !Arc::ptr_eq(&next, &anchors) {
                anchors = next;
                apply_trust(&anchors, &trust);
            }
        }
    });
}
