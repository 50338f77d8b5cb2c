//! Certificate rotation on the hub (DESIGN §10), both ways:
//!
//! * an edge's new certificate, offered over EdgeSync and verified there
//!   (`postern_edgesync::rotation`), is recorded here: the subscription
//!   names the new one, the old one stays trusted until the grace period
//!   ends, the `EdgeInfo` replicated to the other edges is updated, and the
//!   trust store follows at once;
//! * the hub's own newly enabled SMTP certificate is held (offered) until
//!   every subscribed edge has applied the configuration version that
//!   carries it in the hub's `HubInfo`; then the hub presents it, and the
//!   one it replaces is withdrawn from `HubInfo` after the grace period.
//!
//! One task ([`spawn`]) drives the timed steps once a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use postern_edgesync::hub_side::SyncManager;
use postern_edgesync::rotation::{RotationHook, VerifiedOffer};
use postern_model::{ChangeOp, ConfigVersion, ObjectKind, ReplicatedObject, Thumbprint};
use postern_tls::TrustStore;
use postern_tls::certs::{CertStore, Rotation};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::HubConfig;
use crate::subscriptions::Subscriptions;

/// How long a replaced certificate stays trusted unless configured.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What the hub's offered certificate waits for.
pub const HUB_HOLD_NOTE: &str = "waiting until every subscribed edge has it over EdgeSync; the previous certificate is presented meanwhile";

/// The hub's rotation state and hook.
#[derive(Clone)]
pub struct HubRotation {
    /// Subscriptions (edge certificates).
    pub subscriptions: Subscriptions,
    /// The configuration (EdgeInfo, HubInfo).
    pub config: HubConfig,
    /// Direct trust of edge certificates.
    pub trust: TrustStore,
    /// Compiles the trust anchors again after a rotation step.
    pub refresh: crate::sources::TrustRefresh,
    /// How long a replaced certificate stays trusted.
    pub grace: Duration,
}

impl HubRotation {
    fn until(&self) -> String {
        let grace = time::Duration::try_from(self.grace).unwrap_or(time::Duration::DAY);
        (OffsetDateTime::now_utc() + grace)
            .format(&Rfc3339)
            .unwrap_or_default()
    }

    fn refresh_trust(&self) {
        // Compiled from the subscriptions and every hub's certificates.
        self.refresh.pinned_peers_changed();
    }
}

impl RotationHook for HubRotation {
    fn edge_certificate_rotated(&self, edge: &str, offer: &VerifiedOffer) -> Result<String, String> {
        let sub = self.subscriptions.get(edge).map_err(|e| e.to_string())?;
        if sub.thumbprint != offer.old && sub.thumbprint != offer.new {
            return Err(format!(
                "edge {edge} is subscribed with certificate {}, not {}",
                sub.thumbprint, offer.old
            ));
        }
        let until = self.until();
        block_on(self.subscriptions.rotate(edge, offer.old, offer.new, &until)).map_err(|e| e.to_string())?;
        self.trust.trust_direct(offer.new);
        // Other edges and hubs learn the edge's new certificate.
        if let Ok(ReplicatedObject::Edge(mut info)) = self.config.get(ObjectKind::Edge, edge) {
            info.thumbprint = offer.new;
            if let Err(e) = block_on(
                self.config
                    .apply(vec![ChangeOp::Put(ReplicatedObject::Edge(info))]),
            ) {
                tracing::error!(edge, error = %e, "cannot replicate the edge's new certificate");
            }
        }
        Ok(until)
    }

    fn edge_certificates(&self, edge: &str) -> Vec<Thumbprint> {
        match self.subscriptions.get(edge) {
            Ok(sub) => std::iter::once(sub.thumbprint)
                .chain(sub.previous.map(|p| p.thumbprint))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Runs a store write from the (synchronous) rotation hook, which EdgeSync
/// calls inside the runtime: on a multi-threaded runtime the worker is
/// handed over while it waits; otherwise it runs on a thread of its own.
fn block_on<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(fut))
        }
        _ => std::thread::scope(|s| {
            let worker = s.spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(fut))
            });
            match worker.join() {
                Ok(Ok(out)) => out,
                Ok(Err(e)) => panic!("cannot start a runtime for a rotation write: {e}"),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }),
    }
}

/// Runs the timed steps of both rotations once a second: retires edge
/// certificates past their grace, presents the hub's offered certificate
/// once every edge has it, retires the hub's replaced one.
pub fn spawn(rotation: HubRotation, certs: CertStore, fqdn: String, sync: SyncManager) {
    tokio::spawn(async move {
        // Offered hub certificate → the configuration version that first
        // carried it in HubInfo.
        let mut published: HashMap<Thumbprint, ConfigVersion> = HashMap::new();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = OffsetDateTime::now_utc();
            match rotation.subscriptions.retire_due(now).await {
                Ok(retired) if !retired.is_empty() => {
                    for (edge, tp) in &retired {
                        tracing::info!(edge, thumbprint = %tp, "edge certificate retired after its grace period; it is refused from now on");
                    }
                    rotation.refresh_trust();
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot retire edge certificates"),
            }
            let has_edges = rotation
                .subscriptions
                .list()
                .map(|l| !l.is_empty())
                .unwrap_or(false);
            certs.hold_new_smtp_certificates(has_edges.then(|| HUB_HOLD_NOTE.to_owned()));
            hub_certificates(&rotation, &certs, &fqdn, &sync, &mut published, now);
        }
    });
}

fn hub_certificates(
    rotation: &HubRotation,
    certs: &CertStore,
    fqdn: &str,
    sync: &SyncManager,
    published: &mut HashMap<Thumbprint, ConfigVersion>,
    now: OffsetDateTime,
) {
    postern_edgesync::rotation::retire_due(certs, now);
    let records = match certs.rotations() {
        Ok(records) => records,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the certificate rotations; trying again at the next check");
            return;
        }
    };
    let carried = match rotation.config.hub_certificates() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the hubs' published certificates; trying again at the next check");
            return;
        }
    };
    for (new, record) in records {
        if !record.is_offered() {
            continue;
        }
        if !carried.contains(&new) {
            continue;
        }
        let since = *published.entry(new).or_insert_with(|| rotation.config.version());
        let statuses = sync.statuses();
        let behind: Vec<String> = statuses
            .iter()
            .filter(|s| s.edge_version < since.0)
            .map(|s| s.edge.clone())
            .collect();
        if !behind.is_empty() {
            postern_edgesync::rotation::note_offer(
                certs,
                &new,
                &format!(
                    "waiting for edge(s) {} to apply configuration version {} that carries it; the previous certificate is presented meanwhile",
                    behind.join(", "),
                    since.0
                ),
            );
            continue;
        }
        let old = certs.select_smtp(fqdn).ok().flatten().filter(|o| *o != new);
        let result = match old {
            Some(old) => certs
                .set_rotation(
                    &old,
                    Some(&Rotation::Retiring {
                        successor: new,
                        until: rotation.until(),
                    }),
                )
                .and_then(|()| certs.set_rotation(&new, None)),
            None => certs.set_rotation(&new, None),
        };
        match result {
            Ok(()) => {
                published.remove(&new);
                tracing::info!(%new, old = ?old, "every edge has the hub's new certificate; presenting it from now on");
            }
            Err(e) => tracing::error!(%new, error = %e, "cannot switch to the hub's new certificate"),
        }
    }
}

/// Shares the hook with the sync manager.
pub fn install(rotation: &HubRotation, sync: &SyncManager) {
    sync.set_rotation_hook(Arc::new(rotation.clone()));
}
