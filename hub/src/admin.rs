//! The hub's admin services beyond the common ones: configuration objects,
//! edge subscriptions and EdgeSync operations.

use postern_edgesync::hub_side::SyncManager;
use postern_model::{AdminObjectKind, ObjectKind, ReplicatedObject};
use postern_proto::admin as pb;
use postern_tls::TrustStore;
use postern_transport::receive_connectors::ReceiveConnectorStore;
use tonic::{Request, Response, Status};

use crate::config::{ConfigError, HubConfig};
use crate::subscriptions::{Subscription, SubscriptionError, Subscriptions};

/// Shared state of the hub's admin services.
#[derive(Clone)]
pub struct HubAdmin {
    /// Authoritative configuration.
    pub config: HubConfig,
    /// Edge subscriptions.
    pub subscriptions: Subscriptions,
    /// Direct trust of edge certificates.
    pub trust: TrustStore,
    /// Compiles the trust anchors again after a change.
    pub refresh: crate::sources::TrustRefresh,
    /// EdgeSync tasks.
    pub sync: SyncManager,
    /// This hub's receive connectors (local, not replicated).
    pub receive_connectors: ReceiveConnectorStore,
}

fn config_status(e: ConfigError) -> Status {
    match e {
        ConfigError::NotFound { .. } => Status::not_found(e.to_string()),
        ConfigError::Exists { .. } => Status::already_exists(e.to_string()),
        ConfigError::Invalid(_) | ConfigError::ReadOnly(_) => Status::invalid_argument(e.to_string()),
        ConfigError::Conflict(_) => Status::aborted(e.to_string()),
        ConfigError::Unavailable(_) => Status::unavailable(e.to_string()),
        ConfigError::Store(_) => Status::internal(e.to_string()),
    }
}

fn subscription_status(e: SubscriptionError) -> Status {
    match e {
        SubscriptionError::NotFound(_) => Status::not_found(e.to_string()),
        SubscriptionError::Exists(_) => Status::already_exists(e.to_string()),
        SubscriptionError::AlreadyUsed(..) | SubscriptionError::OtherOrganisation(..) => {
            Status::failed_precondition(e.to_string())
        }
        SubscriptionError::File(_) => Status::invalid_argument(e.to_string()),
        SubscriptionError::Config(c) => config_status(c),
        SubscriptionError::Store(s) => config_status(ConfigError::from(s)),
        SubscriptionError::Corrupt(_) => Status::internal(e.to_string()),
    }
}

fn to_json(o: &ReplicatedObject) -> pb::ObjectJson {
    pb::ObjectJson {
        kind: o.kind().to_string(),
        json: o.inner_json(),
        version: 0,
    }
}

#[tonic::async_trait]
impl pb::config_server::Config for HubAdmin {
    async fn get_object(&self, req: Request<pb::ObjectRef>) -> Result<Response<pb::ObjectJson>, Status> {
        let r = req.into_inner();
        let kind = match postern_transport::admin::object_kind(&r.kind)? {
            AdminObjectKind::ReceiveConnector => {
                return postern_transport::admin::receive_connectors::get(&self.receive_connectors, &r.name)
                    .map(Response::new);
            }
            AdminObjectKind::Replicated(kind) => kind,
        };
        if kind == ObjectKind::Mailbox {
            let address = r.name.trim().to_ascii_lowercase();
            let known = self
                .config
                .mailbox_addresses()
                .map_err(config_status)?
                .contains(&address);
            if !known {
                return Err(Status::not_found(format!("no mailbox named {:?}", r.name)));
            }
            return Ok(Response::new(self.mailbox_json(&address)));
        }
        let read = self.config.read_version();
        let object = self.config.get(kind, &r.name).map_err(config_status)?;
        Ok(Response::new(pb::ObjectJson {
            version: read.0,
            ..to_json(&object)
        }))
    }

    async fn list_objects(
        &self,
        req: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let kind = match postern_transport::admin::object_kind(&req.into_inner().kind)? {
            AdminObjectKind::ReceiveConnector => {
                return postern_transport::admin::receive_connectors::list(&self.receive_connectors)
                    .map(Response::new);
            }
            AdminObjectKind::Replicated(kind) => kind,
        };
        if kind == ObjectKind::Mailbox {
            let addresses = self.config.mailbox_addresses().map_err(config_status)?;
            return Ok(Response::new(pb::ObjectList {
                objects: addresses.iter().map(|a| self.mailbox_json(a)).collect(),
            }));
        }
        let objects = self.config.list(kind).map_err(config_status)?;
        Ok(Response::new(pb::ObjectList {
            objects: objects.iter().map(to_json).collect(),
        }))
    }

    async fn put_object(
        &self,
        req: Request<pb::PutObjectRequest>,
    ) -> Result<Response<pb::ConfigVersionReply>, Status> {
        let r = req.into_inner();
        let kind = match postern_transport::admin::object_kind(&r.kind)? {
            AdminObjectKind::ReceiveConnector => {
                return postern_transport::admin::receive_connectors::put(&self.receive_connectors, &r)
                    .map(Response::new);
            }
            AdminObjectKind::Replicated(kind) => kind,
        };
        let version = self
            .config
            .put_json(
                kind,
                &r.json,
                r.create_only,
                r.replace_only,
                Some(postern_model::ConfigVersion(r.read_version)).filter(|v| v.0 > 0),
            )
            .await
            .map_err(config_status)?;
        self.after_change(kind).await?;
        Ok(Response::new(pb::ConfigVersionReply {
            version: version.0.max(self.config.version().0),
        }))
    }

    async fn remove_object(
        &self,
        req: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::ConfigVersionReply>, Status> {
        let r = req.into_inner();
        let kind = match postern_transport::admin::object_kind(&r.kind)? {
            AdminObjectKind::ReceiveConnector => {
                return postern_transport::admin::receive_connectors::remove(
                    &self.receive_connectors,
                    &r.name,
                )
                .map(Response::new);
            }
            AdminObjectKind::Replicated(kind) => kind,
        };
        let version = self.config.remove(kind, &r.name).await.map_err(config_status)?;
        self.after_change(kind).await?;
        Ok(Response::new(pb::ConfigVersionReply {
            version: version.0.max(self.config.version().0),
        }))
    }
}

impl HubAdmin {
    /// What follows a change of an object of `kind`: accepted domains
    /// refresh the edges' sites, trusted roots the trust store.
    async fn after_change(&self, kind: ObjectKind) -> Result<(), Status> {
        match kind {
            ObjectKind::AcceptedDomain => self
                .subscriptions
                .refresh_sites(&self.config)
                .await
                .map_err(subscription_status),
            ObjectKind::TrustedRoot => {
                self.refresh.store_changed();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A mailbox as the admin API shows it: address, hash, home hub
    /// (`hub`, null for a mailbox from before homes: whichever hub
    /// receives its mail) and where its mail goes (`home`: the hub, or
    /// the domain's mailbox server).
    fn mailbox_json(&self, address: &str) -> pb::ObjectJson {
        let hash = postern_model::MailboxHash::of(address);
        let hub = match self.config.mailbox_entry(address) {
            Ok(entry) => entry.and_then(|e| e.home).map(|h| h.as_str().to_owned()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a mailbox's home");
                None
            }
        };
        let lmtp = address.rsplit_once('@').and_then(|(_, domain)| {
            match self.config.get(ObjectKind::AcceptedDomain, domain) {
                Ok(ReplicatedObject::AcceptedDomain(d)) => match d.delivery {
                    postern_model::MailboxDelivery::Lmtp(server) => Some(server.to_string()),
                    postern_model::MailboxDelivery::Maildir => None,
                },
                _ => None,
            }
        });
        let home = lmtp
            .or_else(|| hub.clone())
            .unwrap_or_else(|| "any hub".to_owned());
        let json =
            serde_json::json!({ "address": address, "hash": hash.0, "hub": hub, "home": home }).to_string();
        pb::ObjectJson {
            kind: ObjectKind::Mailbox.to_string(),
            json,
            version: 0,
        }
    }
}

fn info(s: &Subscription) -> pb::SubscriptionInfo {
    pb::SubscriptionInfo {
        edge_name: s.edge_name.clone(),
        fqdn: s.fqdn.clone(),
        site: s.site.clone(),
        edgesync_endpoint: s.edgesync_endpoint.clone(),
        smtp_endpoint: s.smtp_endpoint.clone(),
        thumbprint: s.thumbprint.to_string(),
        created: s.created.clone(),
        bootstrapped: s.bootstrap_secret.is_none(),
    }
}

#[tonic::async_trait]
impl pb::edge_subscriptions_server::EdgeSubscriptions for HubAdmin {
    async fn import_subscription(
        &self,
        req: Request<pb::ImportSubscriptionRequest>,
    ) -> Result<Response<pb::SubscriptionInfo>, Status> {
        let r = req.into_inner();
        let site = Some(r.site.as_str()).filter(|s| !s.is_empty());
        let sub = self
            .subscriptions
            .import(&r.text, site, &self.config, &self.trust, &self.sync)
            .await
            .map_err(subscription_status)?;
        Ok(Response::new(info(&sub)))
    }

    async fn list_subscriptions(
        &self,
        _: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::SubscriptionList>, Status> {
        let list = self.subscriptions.list().map_err(subscription_status)?;
        Ok(Response::new(pb::SubscriptionList {
            subscriptions: list.iter().map(info).collect(),
        }))
    }

    async fn remove_subscription(
        &self,
        req: Request<pb::RemoveSubscriptionRequest>,
    ) -> Result<Response<pb::RemoveSubscriptionReply>, Status> {
        let name = req.into_inner().edge_name;
        self.subscriptions
            .remove(&name, &self.config, &self.refresh, &self.sync)
            .await
            .map_err(subscription_status)?;
        Ok(Response::new(pb::RemoveSubscriptionReply {}))
    }
}

#[tonic::async_trait]
impl pb::edge_sync_start_server::EdgeSyncStart for HubAdmin {
    async fn start_sync(
        &self,
        _: Request<pb::StartSyncRequest>,
    ) -> Result<Response<pb::StartSyncReply>, Status> {
        self.sync.force_full();
        Ok(Response::new(pb::StartSyncReply {}))
    }
}

#[tonic::async_trait]
impl pb::edge_sync_status_server::EdgeSyncStatus for HubAdmin {
    async fn test_sync(
        &self,
        _: Request<pb::TestSyncRequest>,
    ) -> Result<Response<pb::SyncStatusList>, Status> {
        let edges = self
            .sync
            .statuses()
            .into_iter()
            .map(|s| pb::SyncStatus {
                edge: s.edge.clone(),
                status: serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                hub_version: s.hub_version,
                edge_version: s.edge_version,
                lag: s.lag(),
                last_success: s.last_success.clone().unwrap_or_default(),
                last_error: s.last_error.clone().unwrap_or_default(),
                snapshots_sent: s.snapshots_sent,
                deltas_sent: s.deltas_sent,
                store_id: String::new(),
                snapshots_applied: 0,
                lease_holder: s.lease_holder.clone(),
                lease_revision: s.lease_revision,
                trust: if s.trust_detail.is_some() {
                    postern_edgesync::trust_status::TRUST_MISMATCH
                } else {
                    "ok"
                }
                .into(),
                trust_detail: s.trust_detail.clone().unwrap_or_default(),
                edge_certificate: s.edge_certificate.map(|t| t.to_string()).unwrap_or_default(),
                edge_certificate_expires: s.edge_certificate_expires.clone().unwrap_or_default(),
                edge_certificate_days_left: s.edge_certificate_days_left.unwrap_or_default(),
                ..report_fields(s.report.as_ref())
            })
            .collect();
        Ok(Response::new(pb::SyncStatusList { edges }))
    }
}

/// The admin API's fields for an edge's report of itself (all empty when
/// none came yet).
fn report_fields(report: Option<&postern_edgesync::report::EdgeReport>) -> pb::SyncStatus {
    let Some(r) = report else {
        return pb::SyncStatus::default();
    };
    pb::SyncStatus {
        report_time: r.time.clone(),
        report_hops: r
            .hops
            .iter()
            .map(|h| pb::QueueHop {
                hop: h.hop.clone(),
                messages: h.messages,
                oldest: h.oldest.clone(),
                last_error: h.last_error.clone(),
            })
            .collect(),
        report_certificates: r
            .certificates
            .iter()
            .map(|c| pb::Certificate {
                thumbprint: c.thumbprint.clone(),
                subject: c.subject.clone(),
                services: c.services.clone(),
                not_after: c.not_after.clone(),
                ..pb::Certificate::default()
            })
            .collect(),
        ..pb::SyncStatus::default()
    }
}
