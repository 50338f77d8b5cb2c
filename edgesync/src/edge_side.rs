//! The edge's EdgeSync service: authenticates the dialing hub (a hub
//! certificate from the replica, or the one-time bootstrap secret of a new
//! subscription), applies snapshots and deltas to the replica, and acks.
//! On an open stream it also offers a newly enabled SMTP certificate to the
//! hub (see [`crate::rotation`]) and switches once the hub confirms.

use std::pin::Pin;

use postern_model::{Change, ConfigVersion, ObjectKind, ReplicatedObject, Thumbprint, peer_text};
use postern_proto::edgesync as pb;
use postern_proto::edgesync::edge_sync_server::EdgeSync;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::replica::Replica;
use crate::report::Reporter;
use crate::source::SourceError;
use crate::subscription::secret_hash;

/// The bootstrap secret the edge handed out, as it keeps it (hashed).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Bootstrap {
    /// SHA-256 of the secret.
    pub secret_hash: String,
    /// Expiry, RFC 3339.
    pub expires: String,
    /// Whether a hub has used it.
    pub used: bool,
}

/// Persistent bootstrap state of the edge.
#[derive(Clone)]
pub struct BootstrapStore {
    tree: sled::Tree,
    db: sled::Db,
}

const BOOTSTRAP_KEY: &[u8] = b"current";

impl BootstrapStore {
    /// Opens the tree in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            tree: db.open_tree("edgesync/bootstrap")?,
            db: db.clone(),
        })
    }

    /// Replaces the outstanding secret (a new subscription file).
    pub fn issue(&self, secret: &str, expires: &str) -> Result<(), sled::Error> {
        let record = Bootstrap {
            secret_hash: secret_hash(secret),
            expires: expires.to_owned(),
            used: false,
        };
        self.tree.insert(BOOTSTRAP_KEY, encode(&record)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// The outstanding record; an error when it cannot be read or decoded
    /// (a damaged data directory), never "none issued".
    pub fn current(&self) -> Result<Option<Bootstrap>, String> {
        let Some(v) = self
            .tree
            .get(BOOTSTRAP_KEY)
            .map_err(|e| format!("cannot read the edge's bootstrap record: {e}"))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| format!("the edge's bootstrap record is damaged: {e}"))
    }

    /// Whether a subscription file's secret is outstanding: issued, not
    /// used, not expired. While it is, the handshake lets any client
    /// certificate through to the bootstrap check.
    /// A record that cannot be read counts as none outstanding (the gate
    /// stays closed) and is logged.
    pub fn pending(&self, now: OffsetDateTime) -> bool {
        match self.current() {
            Ok(Some(b)) => {
                !b.used && OffsetDateTime::parse(&b.expires, &Rfc3339).is_ok_and(|expires| now <= expires)
            }
            Ok(None) => false,
            Err(why) => {
                tracing::error!(%why, "no subscription counts as outstanding");
                false
            }
        }
    }

    /// Checks a presented secret; says why it is refused.
    pub fn check(&self, secret: &str, now: OffsetDateTime) -> Result<(), String> {
        let Some(b) = self.current()? else {
            return Err("this edge has issued no subscription".into());
        };
        if b.secret_hash != secret_hash(secret) {
            return Err("the bootstrap secret does not match the edge's current subscription".into());
        }
        if b.used {
            return Err("the bootstrap secret was already used; make a new subscription file".into());
        }
        let expires = OffsetDateTime::parse(&b.expires, &Rfc3339).map_err(|e| e.to_string())?;
        if now > expires {
            return Err(format!("the bootstrap secret expired at {}", b.expires));
        }
        Ok(())
    }

    fn mark_used(&self) -> Result<(), sled::Error> {
        let current = self
            .current()
            .map_err(|e| sled::Error::Io(std::io::Error::other(e)))?;
        if let Some(mut b) = current {
            b.used = true;
            self.tree.insert(BOOTSTRAP_KEY, encode(&b)?)?;
            self.db.flush()?;
        }
        Ok(())
    }
}

/// The stored form of a bootstrap record.
fn encode(b: &Bootstrap) -> Result<Vec<u8>, sled::Error> {
    serde_json::to_vec(b).map_err(|e| sled::Error::Io(std::io::Error::other(e)))
}

/// Thumbprints of every hub certificate in the replica.
pub fn hub_thumbprints(replica: &Replica) -> Result<Vec<Thumbprint>, SourceError> {
    Ok(replica
        .list(ObjectKind::Hub)?
        .into_iter()
        .filter_map(|o| match o {
            ReplicatedObject::Hub(h) => Some(h.certificates),
            _ => None,
        })
        .flatten()
        .map(|der| Thumbprint::of_der(&der))
        .collect())
}

/// The EdgeSync gRPC service of an edge.
#[derive(Clone)]
pub struct EdgeSyncService {
    edge_name: String,
    replica: Replica,
    bootstrap: BootstrapStore,
    /// The edge's certificates and FQDN, for certificate rotation offers.
    certs: Option<(postern_tls::certs::CertStore, String)>,
    reporter: Option<Reporter>,
}

impl EdgeSyncService {
    /// Serves `replica` for the edge called `edge_name`.
    pub fn new(edge_name: &str, replica: Replica, bootstrap: BootstrapStore) -> Self {
        Self {
            edge_name: edge_name.to_owned(),
            replica,
            bootstrap,
            certs: None,
            reporter: None,
        }
    }

    /// Offers newly enabled SMTP certificates of `certs` (the one naming
    /// `fqdn` is the edge's identity towards the hubs) over open streams.
    pub fn with_certificates(mut self, certs: postern_tls::certs::CertStore, fqdn: &str) -> Self {
        self.certs = Some((certs, fqdn.to_owned()));
        self
    }

    /// Adds the edge's report of itself to its EdgeHello and heartbeat
    /// answers.
    pub fn with_reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    fn report(&self) -> Option<pb::EdgeReport> {
        self.reporter.as_ref().map(|r| r().to_pb())
    }
}

/// How often an open stream checks for a certificate to offer.
const OFFER_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

type EdgeStream = Pin<Box<dyn Stream<Item = Result<pb::EdgeMessage, Status>> + Send>>;

fn message(body: pb::edge_message::Body) -> Result<pb::EdgeMessage, Status> {
    Ok(pb::EdgeMessage { body: Some(body) })
}

#[tonic::async_trait]
impl EdgeSync for EdgeSyncService {
    type SyncStream = EdgeStream;

    async fn sync(
        &self,
        request: Request<Streaming<pb::HubMessage>>,
    ) -> Result<Response<EdgeStream>, Status> {
        let session = request
            .extensions()
            .get::<crate::channel::SessionInfo>()
            .cloned()
            .unwrap_or_default();
        let peer = session
            .peer_thumbprint()
            .ok_or_else(|| Status::unauthenticated("EdgeSync requires the hub's client certificate"))?;
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(pb::HubMessage {
                body: Some(pb::hub_message::Body::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => return Err(Status::invalid_argument("EdgeSync stream must start with Hello")),
        };
        let trusted = hub_thumbprints(&self.replica)
            .map_err(|e| {
                Status::unavailable(format!("edge {} cannot read its replica: {e}", self.edge_name))
            })?
            .contains(&peer);
        // Statuses name only what the edge knows (the certificate's
        // thumbprint, its own name); the hub's words go to the log escaped.
        let hub = peer_text(&hello.hub_name).limit(64);
        let bootstrapping = if trusted {
            false
        } else if hello.bootstrap_secret.is_empty() {
            let reason = format!(
                "certificate {peer} is not trusted by edge {} and no bootstrap secret was presented",
                self.edge_name
            );
            tracing::warn!(%hub, "{reason}");
            return Err(crate::trust_status::TrustMismatch::hub_not_trusted_status(
                reason, &peer,
            ));
        } else if let Err(why) = self
            .bootstrap
            .check(&hello.bootstrap_secret, OffsetDateTime::now_utc())
        {
            let reason = format!("certificate {peer} refused by edge {}: {why}", self.edge_name);
            tracing::warn!(%hub, "{reason}");
            return Err(Status::permission_denied(reason));
        } else {
            true
        };
        if let Err(e) = self.replica.admit_fence(&hello.store_id, hello.lease_revision) {
            // The status names only what the edge knows; the hub's words go
            // to the log escaped.
            let reason = format!("a hub was refused by edge {}: {e}", self.edge_name);
            tracing::warn!(%hub, "{reason}");
            return Err(e.status(reason));
        }
        let fence = (hello.store_id.clone(), hello.lease_revision);
        tracing::info!(%hub, %peer, bootstrapping, lease_revision = hello.lease_revision, "EdgeSync stream opened");
        let applied = self.replica.applied();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let first = message(pb::edge_message::Body::Hello(pb::EdgeHello {
            edge_name: self.edge_name.clone(),
            store_id: applied.store_id,
            version: applied.version.0,
            report: self.report(),
        }));
        let _ = tx.send(first).await;
        let this = self.clone();
        let hub_name = hello.hub_name.escape_debug().to_string();
        tokio::spawn(async move {
            let mut bootstrapping = bootstrapping;
            let mut check = tokio::time::interval(OFFER_CHECK);
            // The offer sent on this stream and not answered yet: (old, new).
            let mut in_flight: Option<(Thumbprint, Thumbprint)> = None;
            loop {
                tokio::select! {
                    item = inbound.next() => {
                        let Some(Ok(msg)) = item else { break };
                        if let Err(e) = this.replica.fence_current(&fence.0, fence.1) {
                            tracing::warn!(error = %e, "EdgeSync push of a stale hub refused");
                            if tx.send(Err(e.status(e.to_string()))).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        if let Some(pb::hub_message::Body::CertOfferReply(reply)) = &msg.body {
                            match (in_flight.take(), &this.certs) {
                                (Some((old, _)), Some((certs, _))) => crate::rotation::apply_reply(certs, &old, reply),
                                _ => tracing::warn!("the hub answered a certificate offer this edge did not make"),
                            }
                            continue;
                        }
                        let reply = this.handle(msg, &mut bootstrapping, &peer);
                        if tx.send(reply).await.is_err() {
                            break;
                        }
                    }
                    _ = check.tick(), if !bootstrapping && in_flight.is_none() => {
                        if let Some(offer) = this.offer(&session, &hub_name) {
                            in_flight = Some((offer.0, offer.1));
                            if tx.send(message(pb::edge_message::Body::CertOffer(offer.2))).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            tracing::info!(%peer, "EdgeSync stream closed");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

impl EdgeSyncService {
    /// The next certificate offer to send on a stream, if one is waiting:
    /// (old, new, offer). Records why when it cannot be made.
    fn offer(
        &self,
        session: &crate::channel::SessionInfo,
        hub: &str,
    ) -> Option<(Thumbprint, Thumbprint, pb::CertOffer)> {
        use crate::rotation::{make_offer, note_offer};
        use postern_tls::certs::Rotation;
        let (certs, fqdn) = self.certs.as_ref()?;
        let (new, _) = certs
            .rotations()
            .ok()?
            .into_iter()
            .find(|(_, r)| matches!(r, Rotation::Offered { .. }))?;
        let old = match certs.select_smtp(fqdn) {
            Ok(Some(old)) if old != new => old,
            Ok(_) => {
                // Nothing else names the FQDN: the new certificate is the
                // only one there is, and is presented already.
                if let Err(e) = certs.set_rotation(&new, None) {
                    tracing::error!(%new, error = %e, "cannot record the certificate as presented");
                }
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "certificate store cannot be read");
                return None;
            }
        };
        let Some(binding) = session.binding.as_ref() else {
            note_offer(
                certs,
                &new,
                "the EdgeSync session exported no keying material; offer not sent",
            );
            return None;
        };
        match make_offer(certs, &old, &new, binding) {
            Ok(offer) => {
                let when = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
                note_offer(
                    certs,
                    &new,
                    &format!("offered to hub {hub} at {when}; waiting for its answer"),
                );
                tracing::info!(%old, %new, hub, "offering the new SMTP certificate to the hub");
                Some((old, new, offer))
            }
            Err(e) => {
                tracing::warn!(%new, error = %e, "cannot offer the new certificate to the hub");
                note_offer(certs, &new, &format!("cannot be offered: {e}"));
                None
            }
        }
    }

    fn handle(
        &self,
        msg: pb::HubMessage,
        bootstrapping: &mut bool,
        peer: &Thumbprint,
    ) -> Result<pb::EdgeMessage, Status> {
        let nack = |version: u64, reason: String| {
            // A parse error may quote what the hub sent: escaped, cut.
            let reason = peer_text(&reason).to_string();
            tracing::warn!(version, %reason, "EdgeSync update refused; keeping the previous replica");
            message(pb::edge_message::Body::Nack(pb::Nack { version, reason }))
        };
        match msg.body {
            Some(pb::hub_message::Body::Snapshot(s)) => {
                let objects: Result<Vec<ReplicatedObject>, _> =
                    s.objects.iter().map(|o| serde_json::from_slice(o)).collect();
                let objects = match objects {
                    Ok(o) => o,
                    Err(e) => return nack(s.version, format!("snapshot object does not parse: {e}")),
                };
                if *bootstrapping && !snapshot_names_hub(&objects, peer) {
                    return nack(
                        s.version,
                        format!("the snapshot does not list the certificate {peer} the hub presented"),
                    );
                }
                if let Err(e) = self
                    .replica
                    .apply_snapshot(&s.store_id, ConfigVersion(s.version), &objects)
                {
                    return nack(s.version, e.to_string());
                }
                if *bootstrapping {
                    if let Err(e) = self.bootstrap.mark_used() {
                        tracing::error!(error = %e, "cannot record the bootstrap secret as used");
                    }
                    *bootstrapping = false;
                }
                tracing::info!(
                    version = s.version,
                    objects = objects.len(),
                    "EdgeSync snapshot applied"
                );
                message(pb::edge_message::Body::Ack(pb::Ack { version: s.version }))
            }
            Some(pb::hub_message::Body::Delta(d)) => {
                if *bootstrapping {
                    return nack(d.to_version, "a new subscription needs a snapshot first".into());
                }
                let changes: Result<Vec<Change>, _> =
                    d.changes.iter().map(|c| serde_json::from_slice(c)).collect();
                let changes = match changes {
                    Ok(c) => c,
                    Err(e) => return nack(d.to_version, format!("change does not parse: {e}")),
                };
                match self.replica.apply_delta(
                    &d.store_id,
                    ConfigVersion(d.from_version),
                    ConfigVersion(d.to_version),
                    &changes,
                ) {
                    Ok(()) => {
                        tracing::debug!(version = d.to_version, "EdgeSync delta applied");
                        message(pb::edge_message::Body::Ack(pb::Ack {
                            version: self.replica.applied().version.0,
                        }))
                    }
                    Err(e) => nack(d.to_version, e.to_string()),
                }
            }
            Some(pb::hub_message::Body::Heartbeat(_)) => {
                message(pb::edge_message::Body::Heartbeat(pb::Heartbeat {
                    version: self.replica.applied().version.0,
                    report: self.report(),
                }))
            }
            Some(pb::hub_message::Body::Hello(_) | pb::hub_message::Body::CertOfferReply(_)) | None => Err(
                Status::invalid_argument("unexpected message on an open EdgeSync stream"),
            ),
        }
    }
}

fn snapshot_names_hub(objects: &[ReplicatedObject], peer: &Thumbprint) -> bool {
    objects.iter().any(|o| match o {
        ReplicatedObject::Hub(h) => h.certificates.iter().any(|der| Thumbprint::of_der(der) == *peer),
        _ => false,
    })
}

/// Keeps `trust` equal to the hub certificates (direct trust) and the
/// organisation's trusted roots (PKI) of the replica, now and after every
/// apply, so a new hub certificate is trusted at the next handshake and a
/// removed one is refused. The anchors are compiled and applied by the same
/// code as a node's compiled configuration
/// (`postern_transport::node_config`); an edge node follows its snapshot
/// instead, this is for EdgeSync on its own (tests, the bench).
pub fn follow_hub_trust(replica: Replica, trust: postern_tls::TrustStore) {
    use postern_transport::node_config::{TrustAnchors, apply_trust};
    let apply = move |replica: &Replica, trust: &postern_tls::TrustStore| {
        // A replica that cannot be read leaves the trust in force.
        let (hubs, roots) = match (
            replica.list(ObjectKind::Hub),
            replica.list(ObjectKind::TrustedRoot),
        ) {
            (Ok(hubs), Ok(roots)) => (hubs, roots),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "cannot read the hubs' certificates and trusted roots; trust unchanged");
                return;
            }
        };
        apply_trust(
            &TrustAnchors::compile(hubs.into_iter().chain(roots), Vec::new()),
            trust,
        );
    };
    apply(&replica, &trust);
    let mut watch = replica.watch();
    tokio::spawn(async move {
        while watch.changed().await.is_ok() {
            apply(&replica, &trust);
        }
    });
}

#[cfg(test)]
#[path = "edge_side_properties.rs"]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_secrets_expire_and_are_single_use() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::open(tmp.path()).unwrap();
        let store = BootstrapStore::open(&db).unwrap();
        let now = OffsetDateTime::now_utc();
        assert!(store.check("x", now).unwrap_err().contains("no subscription"));
        store.issue("secret", "2000-01-01T00:00:00Z").unwrap();
        assert!(store.check("secret", now).unwrap_err().contains("expired"));
        store.issue("secret", "2999-01-01T00:00:00Z").unwrap();
        assert!(store.check("wrong", now).unwrap_err().contains("does not match"));
        assert!(store.check("secret", now).is_ok());
        store.mark_used().unwrap();
        assert!(store.check("secret", now).unwrap_err().contains("already used"));
    }
}
