//! The edge's admin services beyond the common ones: the replica read
//! through the configuration verbs (writes refused once subscribed), the
//! subscription file, and the edge's view of EdgeSync. The hubs' verbs
//! (subscription import/list/remove, `edgesync start`) are not registered
//! here: an edge answers them Unimplemented.

use postern_edgesync::Replica;
use postern_edgesync::edge_side::BootstrapStore;
use postern_edgesync::subscription::{
    BOOTSTRAP_VALIDITY, SubscriptionBody, SubscriptionFile, der_to_pem, expiry_from, new_secret,
};
use postern_model::{AdminObjectKind, ObjectKey, ObjectKind, ReplicatedObject};
use postern_proto::admin as pb;
use postern_transport::node::Node;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::{Request, Response, Status};

/// Shared state of the edge's admin services.
#[derive(Clone)]
pub struct EdgeAdmin {
    /// The node.
    pub node: Node,
    /// The replica.
    pub replica: Replica,
    /// The bootstrap secret store.
    pub bootstrap: BootstrapStore,
    /// Where EdgeSync listens (as bound).
    pub edgesync_endpoint: String,
    /// Where SMTP listens (as bound).
    pub smtp_endpoint: String,
    /// This edge's receive connectors (local, not replicated).
    pub receive_connectors: postern_transport::receive_connectors::ReceiveConnectorStore,
}

use postern_transport::admin::receive_connectors as local;

fn to_json(o: &ReplicatedObject) -> pb::ObjectJson {
    pb::ObjectJson {
        kind: o.kind().to_string(),
        json: o.inner_json(),
        version: 0,
    }
}

fn local_status(e: postern_edgesync::LocalChangeError) -> Status {
    match e {
        postern_edgesync::LocalChangeError::Managed(_) => Status::failed_precondition(e.to_string()),
        postern_edgesync::LocalChangeError::Store(_) => Status::internal(e.to_string()),
    }
}

#[tonic::async_trait]
impl pb::config_server::Config for EdgeAdmin {
    async fn get_object(&self, req: Request<pb::ObjectRef>) -> Result<Response<pb::ObjectJson>, Status> {
        let r = req.into_inner();
        let kind = match postern_transport::admin::object_kind(&r.kind)? {
            AdminObjectKind::ReceiveConnector => {
                return local::get(&self.receive_connectors, &r.name).map(Response::new);
            }
            AdminObjectKind::Replicated(kind) => kind,
        };
        let key = ObjectKey::of(kind, &r.name);
        match self
            .replica
            .get(&key)
            .map_err(|e| Status::internal(e.to_string()))?
        {
            Some(o) => Ok(Response::new(to_json(&o))),
            None => Err(Status::not_found(format!("no {kind} named {:?}", r.name))),
        }
    }

    async fn list_objects(
        &self,
        req: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<pb::ObjectList>, Status> {
        let kind = match postern_transport::admin::object_kind(&req.into_inner().kind)? {
            AdminObjectKind::ReceiveConnector => {
                return local::list(&self.receive_connectors).map(Response::new);
            }
            AdminObjectKind::Replicated(kind) => kind,
        };
        let objects = self
            .replica
            .list(kind)
            .map_err(|e| Status::internal(e.to_string()))?;
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
                return local::put(&self.receive_connectors, &r).map(Response::new);
            }
            AdminObjectKind::Replicated(kind) => kind,
        };
        if self.replica.is_subscribed() {
            return Err(Status::failed_precondition(format!(
                "{kind} objects are managed by EdgeSync; change it on a hub"
            )));
        }
        let object = if kind == ObjectKind::Mailbox {
            let v: serde_json::Value =
                serde_json::from_str(&r.json).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let address = v["address"].as_str().unwrap_or_default();
            ReplicatedObject::Mailbox(postern_model::MailboxEntry::new(address, None))
        } else {
            ReplicatedObject::from_kind_json(kind, &r.json)
                .map_err(|e| Status::invalid_argument(e.to_string()))?
        };
        let exists = self
            .replica
            .get(&object.key())
            .map_err(|e| Status::internal(e.to_string()))?
            .is_some();
        if r.create_only && exists {
            return Err(Status::already_exists(format!(
                "{kind} {} already exists",
                object.key()
            )));
        }
        if r.replace_only && !exists {
            return Err(Status::not_found(format!("no {kind} {}", object.key())));
        }
        self.replica.put_local(&object).map_err(local_status)?;
        Ok(Response::new(pb::ConfigVersionReply {
            version: self.replica.applied().version.0,
        }))
    }

    async fn remove_object(
        &self,
        req: Request<pb::ObjectRef>,
    ) -> Result<Response<pb::ConfigVersionReply>, Status> {
        let r = req.into_inner();
        let kind = match postern_transport::admin::object_kind(&r.kind)? {
            AdminObjectKind::ReceiveConnector => {
                return local::remove(&self.receive_connectors, &r.name).map(Response::new);
            }
            AdminObjectKind::Replicated(kind) => kind,
        };
        let key = ObjectKey::of(kind, &r.name);
        if !self.replica.remove_local(kind, &key).map_err(local_status)? {
            return Err(Status::not_found(format!("no {kind} named {:?}", r.name)));
        }
        Ok(Response::new(pb::ConfigVersionReply {
            version: self.replica.applied().version.0,
        }))
    }
}

#[tonic::async_trait]
impl pb::edge_subscription_file_server::EdgeSubscriptionFile for EdgeAdmin {
    async fn new_subscription(
        &self,
        req: Request<pb::NewSubscriptionRequest>,
    ) -> Result<Response<pb::SubscriptionFileText>, Status> {
        let r = req.into_inner();
        let id = &self.node.identity;
        let certs = self.node.certs.clone();
        let thumbprint = certs
            .select_smtp(id.fqdn.as_str())
            .map_err(|e| Status::internal(e.to_string()))?
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "no valid SMTP certificate names {}; enable one with `postern cert enable`",
                    id.fqdn
                ))
            })?;
        let key = certs
            .certified_key(&thumbprint)
            .map_err(|e| Status::internal(e.to_string()))?;
        let der = key.cert.first().map(|c| c.as_ref().to_vec()).unwrap_or_default();
        let secret = new_secret();
        let now = OffsetDateTime::now_utc();
        let expires = expiry_from(now, BOOTSTRAP_VALIDITY);
        let body = SubscriptionBody {
            format: 1,
            edge_name: id.name.clone(),
            fqdn: id.fqdn.clone(),
            edgesync_endpoint: Some(r.edgesync_endpoint)
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| self.edgesync_endpoint.clone()),
            smtp_endpoint: Some(r.smtp_endpoint)
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| self.smtp_endpoint.clone()),
            certificate_pem: der_to_pem(&der),
            bootstrap_secret: secret.clone(),
            created: now.format(&Rfc3339).unwrap_or_default(),
            expires: expires.clone(),
            subscribed_store: self.replica.applied().store_id,
        };
        let file = SubscriptionFile::sign(body, &key).map_err(|e| Status::internal(e.to_string()))?;
        self.bootstrap
            .issue(&secret, &expires)
            .map_err(|e| Status::internal(e.to_string()))?;
        let text = serde_json::to_string_pretty(&file).map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(
            expires = %expires,
            "edge subscription file issued; import it on a hub within {} hours",
            BOOTSTRAP_VALIDITY.as_secs() / 3600
        );
        Ok(Response::new(pb::SubscriptionFileText { text }))
    }
}

#[tonic::async_trait]
impl pb::edge_sync_status_server::EdgeSyncStatus for EdgeAdmin {
    async fn test_sync(
        &self,
        _: Request<pb::TestSyncRequest>,
    ) -> Result<Response<pb::SyncStatusList>, Status> {
        let applied = self.replica.applied();
        let fqdn = self.node.identity.fqdn.to_string();
        let presented = self.node.certs.select_smtp(&fqdn).ok().flatten();
        let view = presented.and_then(|t| self.node.certs.get(&t).ok());
        let expires = view.as_ref().map(|v| v.not_after.clone()).unwrap_or_default();
        let days_left = view.as_ref().map(|v| v.days_left).unwrap_or_default();
        // A certificate waiting for the hubs: the edge still presents the
        // old one to them, and says why.
        let offered: Vec<String> = self
            .node
            .certs
            .rotations()
            .map_err(|e| Status::internal(format!("cannot read the certificate rotations: {e}")))?
            .into_iter()
            .filter(|(_, r)| r.is_offered())
            .map(|(t, r)| format!("certificate {t} is not presented yet: {}", r.note()))
            .collect();
        let trust = if offered.is_empty() {
            ("ok", String::new())
        } else {
            ("rotation-pending", offered.join("; "))
        };
        let status = if applied.store_id.is_empty() {
            "not-subscribed"
        } else {
            "replica"
        };
        Ok(Response::new(pb::SyncStatusList {
            edges: vec![pb::SyncStatus {
                edge: self.node.identity.name.to_string(),
                status: status.into(),
                hub_version: 0,
                edge_version: applied.version.0,
                lag: 0,
                last_success: String::new(),
                last_error: String::new(),
                snapshots_sent: 0,
                deltas_sent: 0,
                store_id: applied.store_id,
                snapshots_applied: applied.snapshots,
                lease_holder: String::new(),
                lease_revision: self.replica.fence().token,
                trust: trust.0.into(),
                trust_detail: trust.1,
                edge_certificate: presented.map(|t| t.to_string()).unwrap_or_default(),
                edge_certificate_expires: expires,
                edge_certificate_days_left: days_left,
                ..pb::SyncStatus::default()
            }],
        }))
    }
}
