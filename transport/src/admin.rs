//! The admin API server: gRPC (`admin.proto`) on a unix socket in the data
//! directory, mode 0600, so only the node's own user can administer it.
//!
//! This module serves the verbs common to both roles (node identity and
//! certificates); each role adds its own services to the router.

use std::collections::BTreeSet;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pb::certificates_server::{Certificates, CertificatesServer};
use pb::node_server::{Node as NodeApi, NodeServer};
use postern_model::{AdminObjectKind, KeySpec, Service, SubjectName, Thumbprint, UnknownObjectKind};
use postern_proto::admin as pb;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;
use tonic::{Request, Response, Status};

use crate::certs::{CertError, CertificateView, NewCertificate};
use crate::node::Node;

/// Why the admin server stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The socket could not be bound or secured.
    #[error("admin socket {0}: {1}")]
    Socket(std::path::PathBuf, std::io::Error),
    /// The gRPC server failed.
    #[error("admin server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A router serving the node and certificate verbs for `node`; counters
/// and the queue come from the node's mail engine.
pub fn router(
    node: &Node,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    queue: Option<crate::queue::Queue>,
) -> Router {
    tonic::transport::Server::builder()
        .add_service(NodeServer::new(NodeService {
            node: node.clone(),
            metrics,
            queue,
            compiler: None,
        }))
        .add_service(CertificatesServer::new(CertificateService { node: node.clone() }))
}

/// The common services of a node running its mail engine: `node-info`
/// also shows the compiled configuration in force.
pub fn node_router(node: &Node, mail: &crate::mta::NodeMail) -> Router {
    tonic::transport::Server::builder()
        .add_service(NodeServer::new(NodeService {
            node: node.clone(),
            metrics: Some(mail.metrics().clone()),
            queue: Some(mail.queue().clone()),
            compiler: Some(mail.compiler().clone()),
        }))
        .add_service(CertificatesServer::new(CertificateService { node: node.clone() }))
}

/// Serves `router` on the unix socket at `path` until `shutdown` completes.
/// A stale socket file from an earlier run is replaced.
pub async fn serve(
    router: Router,
    path: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), AdminError> {
    let sock_err = |e| AdminError::Socket(path.to_path_buf(), e);
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(sock_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(sock_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(sock_err)?;
    let result = router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    let _ = std::fs::remove_file(path);
    Ok(result?)
}

struct NodeService {
    node: Node,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    queue: Option<crate::queue::Queue>,
    compiler: Option<crate::node_config::NodeConfigCompiler>,
}

#[tonic::async_trait]
impl NodeApi for NodeService {
    async fn get_identity(
        &self,
        _: Request<pb::GetIdentityRequest>,
    ) -> Result<Response<pb::NodeIdentity>, Status> {
        let id = &self.node.identity;
        let status = self.compiler.as_ref().map(|c| c.status());
        Ok(Response::new(pb::NodeIdentity {
            config_generation: status.as_ref().map_or(0, |s| s.generation),
            config_failures: status.as_ref().map_or(0, |s| s.failures),
            config_error: status.and_then(|s| s.last_error).unwrap_or_default(),
            name: id.name.to_string(),
            fqdn: id.fqdn.to_string(),
            role: id.role.to_string(),
            data_dir: self.node.data_dir.display().to_string(),
            smtp_bind: id.smtp_bind.clone(),
            created: id.created.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn get_counters(
        &self,
        _: Request<pb::GetCountersRequest>,
    ) -> Result<Response<pb::CounterList>, Status> {
        let samples = self.metrics.as_ref().map(|m| m.snapshot()).unwrap_or_default();
        let counters = samples
            .into_iter()
            .map(|s| pb::Counter {
                name: s.name.to_owned(),
                exchange_name: s.exchange_name.unwrap_or_default().to_owned(),
                labels: s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                value: s.value,
            })
            .collect();
        Ok(Response::new(pb::CounterList { counters }))
    }

    async fn list_queue(&self, _: Request<pb::ListQueueRequest>) -> Result<Response<pb::QueueList>, Status> {
        use crate::queue::RecipientStatus;
        let Some(queue) = &self.queue else {
            return Ok(Response::new(pb::QueueList { messages: Vec::new() }));
        };
        let mut messages = Vec::new();
        for id in queue.ids().map_err(|e| Status::internal(e.to_string()))? {
            let Some(m) = queue.get(id).map_err(|e| Status::internal(e.to_string()))? else {
                continue;
            };
            let recipients = m
                .envelope
                .recipients
                .iter()
                .map(|r| {
                    let (status, last_error) = match &r.status {
                        RecipientStatus::Pending => ("pending", String::new()),
                        RecipientStatus::Deferred { last_error, .. } => ("deferred", last_error.clone()),
                        RecipientStatus::Delivered { remote_reply, .. } => {
                            ("delivered", remote_reply.clone())
                        }
                        RecipientStatus::Failed { reply, .. } => ("failed", reply.clone()),
                    };
                    pb::QueuedRecipient {
                        address: r.address.clone(),
                        next_hop: r.next_hop.to_string(),
                        status: status.into(),
                        attempts: r.status.attempts(),
                        last_error,
                    }
                })
                .collect();
            let received = time::OffsetDateTime::from(m.envelope.received_at)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            messages.push(pb::QueuedMessage {
                id: id.to_string(),
                sender: m.envelope.sender.clone().unwrap_or_default(),
                size: m.body_len,
                received,
                recipients,
            });
        }
        Ok(Response::new(pb::QueueList { messages }))
    }

    async fn retry_queue(
        &self,
        req: Request<pb::RetryQueueRequest>,
    ) -> Result<Response<pb::RetryQueueReply>, Status> {
        let hop = req.into_inner().hop;
        let Some(queue) = &self.queue else {
            return Err(Status::failed_precondition("this node has no mail queue"));
        };
        // Typed (`Hub:HUB2` is `hub:hub2`, as the queue stores it).
        let hop = match hop.trim() {
            "" => None,
            typed => Some(
                typed
                    .parse::<crate::routing::NextHop>()
                    .map_err(|e| Status::invalid_argument(e.to_string()))?,
            ),
        };
        let n = queue
            .retry_now(hop.as_ref())
            .map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(hop = ?hop.as_ref().map(|h| h.to_string().escape_debug().to_string()), messages = n, "queue retry asked for");
        Ok(Response::new(pb::RetryQueueReply {
            messages: u32::try_from(n).unwrap_or(u32::MAX),
        }))
    }

    async fn remove_message(
        &self,
        req: Request<pb::RemoveMessageRequest>,
    ) -> Result<Response<pb::RemoveMessageReply>, Status> {
        let req = req.into_inner();
        let Some(queue) = &self.queue else {
            return Err(Status::failed_precondition("this node has no mail queue"));
        };
        let id: postern_model::QueueId = req.id.trim().parse().map_err(|e| {
            Status::invalid_argument(format!(
                "{:?} is not a queue id (see `postern queue list`): {e}",
                req.id
            ))
        })?;
        let removed = queue.remove(id, !req.without_ndr).await.map_err(|e| match e {
            crate::queue::QueueError::NotFound(_) => Status::not_found(e.to_string()),
            crate::queue::QueueError::Busy(_) => Status::unavailable(e.to_string()),
            e => Status::internal(e.to_string()),
        })?;
        tracing::info!(%id, undelivered = removed.undelivered.len(), ndr = ?removed.ndr.map(|n| n.to_string()), "message removed from the queue by an administrator");
        Ok(Response::new(pb::RemoveMessageReply {
            undelivered: removed.undelivered,
            ndr_id: removed.ndr.map(|n| n.to_string()).unwrap_or_default(),
        }))
    }
}

struct CertificateService {
    node: Node,
}

/// Runs blocking store work (key generation, sled flushes) off the async
/// threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CertError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("task failed: {e}")))?
        .map_err(cert_status)
}

#[tonic::async_trait]
impl Certificates for CertificateService {
    async fn new_certificate(
        &self,
        req: Request<pb::NewCertificateRequest>,
    ) -> Result<Response<pb::NewCertificateReply>, Status> {
        let r = req.into_inner();
        let params = new_params(&r).map_err(cert_status)?;
        let certs = self.node.certs.clone();
        let exportable = r.private_key_exportable;
        let reply = if r.generate_request {
            blocking(move || {
                let (view, pem) = certs.new_request(&params)?;
                if exportable {
                    certs.mark_exportable(&view.thumbprint)?;
                    return Ok((certs.get(&view.thumbprint)?, pem));
                }
                Ok((view, pem))
            })
            .await
            .map(|(view, pem)| pb::NewCertificateReply {
                certificate: Some(to_pb(&view)),
                request_pem: pem,
            })?
        } else {
            blocking(move || {
                let view = certs.new_self_signed(&params)?;
                if exportable {
                    certs.mark_exportable(&view.thumbprint)?;
                    return certs.get(&view.thumbprint);
                }
                Ok(view)
            })
            .await
            .map(|view| pb::NewCertificateReply {
                certificate: Some(to_pb(&view)),
                request_pem: String::new(),
            })?
        };
        Ok(Response::new(reply))
    }

    async fn import_certificate(
        &self,
        req: Request<pb::ImportCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let r = req.into_inner();
        let services = parse_services(&r.enable_services).map_err(cert_status)?;
        let certs = self.node.certs.clone();
        let friendly = Some(r.friendly_name).filter(|f| !f.is_empty());
        let exportable = r.private_key_exportable;
        let view = blocking(move || {
            let view = certs.import(&r.data, &r.password, friendly.as_deref(), &services)?;
            if exportable {
                certs.mark_exportable(&view.thumbprint)?;
                return certs.get(&view.thumbprint);
            }
            Ok(view)
        })
        .await?;
        Ok(Response::new(to_pb(&view)))
    }

    async fn enable_certificate(
        &self,
        req: Request<pb::EnableCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let r = req.into_inner();
        let thumbprint = parse_thumbprint(&r.thumbprint)?;
        let services = parse_services(&r.services).map_err(cert_status)?;
        if services.is_empty() {
            return Err(Status::invalid_argument("give --services smtp"));
        }
        let certs = self.node.certs.clone();
        let view = blocking(move || certs.enable(&thumbprint, &services)).await?;
        Ok(Response::new(to_pb(&view)))
    }

    async fn list_certificates(
        &self,
        _: Request<pb::ListCertificatesRequest>,
    ) -> Result<Response<pb::CertificateList>, Status> {
        let certs = self.node.certs.clone();
        let list = blocking(move || certs.list()).await?;
        Ok(Response::new(pb::CertificateList {
            certificates: list.iter().map(to_pb).collect(),
        }))
    }

    async fn get_certificate(
        &self,
        req: Request<pb::GetCertificateRequest>,
    ) -> Result<Response<pb::Certificate>, Status> {
        let thumbprint = parse_thumbprint(&req.into_inner().thumbprint)?;
        let certs = self.node.certs.clone();
        let view = blocking(move || certs.get(&thumbprint)).await?;
        Ok(Response::new(to_pb(&view)))
    }

    async fn remove_certificate(
        &self,
        req: Request<pb::RemoveCertificateRequest>,
    ) -> Result<Response<pb::RemoveCertificateReply>, Status> {
        let thumbprint = parse_thumbprint(&req.into_inner().thumbprint)?;
        let certs = self.node.certs.clone();
        blocking(move || certs.remove(&thumbprint)).await?;
        Ok(Response::new(pb::RemoveCertificateReply {}))
    }

    async fn export_certificate(
        &self,
        req: Request<pb::ExportCertificateRequest>,
    ) -> Result<Response<pb::ExportCertificateReply>, Status> {
        let r = req.into_inner();
        let thumbprint = parse_thumbprint(&r.thumbprint)?;
        let certs = self.node.certs.clone();
        let data = blocking(move || {
            if r.public_only {
                certs.export_public(&thumbprint).map(String::into_bytes)
            } else {
                certs.export_pkcs12(&thumbprint, &r.password)
            }
        })
        .await?;
        Ok(Response::new(pb::ExportCertificateReply { data }))
    }
}

fn new_params(r: &pb::NewCertificateRequest) -> Result<NewCertificate, CertError> {
    let subject = SubjectName::parse(&r.subject_name)?;
    let domains = r
        .domain_names
        .iter()
        .map(|d| postern_model::Domain::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let key_type = Some(r.key_type.as_str()).filter(|t| !t.is_empty());
    let key_size = Some(r.key_size).filter(|s| *s != 0);
    let key = KeySpec::from_options(key_type, key_size)?;
    Ok(NewCertificate {
        subject,
        domains,
        friendly_name: Some(r.friendly_name.clone()).filter(|f| !f.is_empty()),
        key,
        services: parse_services(&r.services)?,
    })
}

fn parse_services(names: &[String]) -> Result<BTreeSet<Service>, CertError> {
    names
        .iter()
        .flat_map(|n| n.split(','))
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.parse::<Service>().map_err(CertError::from))
        .collect()
}

/// The `kind` word of a `Config` request, parsed once where the request
/// arrives; an unknown word is the caller's error and names every kind.
pub fn object_kind(word: &str) -> Result<AdminObjectKind, Status> {
    word.parse()
        .map_err(|e: UnknownObjectKind| Status::invalid_argument(e.to_string()))
}

fn parse_thumbprint(s: &str) -> Result<Thumbprint, Status> {
    Thumbprint::parse(s).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The one place certificate errors become gRPC statuses.
fn cert_status(e: CertError) -> Status {
    let msg = e.to_string();
    match e {
        CertError::NotFound(_) => Status::not_found(msg),
        CertError::OnlySmtpCertificate(_)
        | CertError::OfferPending(..)
        | CertError::NotExportable(_)
        | CertError::NoPrivateKeyHere(_)
        | CertError::Pending(_)
        | CertError::AlreadyInstalled(_)
        | CertError::NoKeyForService(..)
        | CertError::Expired(..) => Status::failed_precondition(msg),
        e if e.is_user_error() => Status::invalid_argument(msg),
        _ => Status::internal(msg),
    }
}

fn to_pb(v: &CertificateView) -> pb::Certificate {
    pb::Certificate {
        thumbprint: v.thumbprint.to_string(),
        friendly_name: v.friendly_name.clone(),
        subject: v.subject.clone(),
        issuer: v.issuer.clone(),
        domains: v.domains.clone(),
        not_before: v.not_before.clone(),
        not_after: v.not_after.clone(),
        services: v.services.iter().map(ToString::to_string).collect(),
        self_signed: v.self_signed,
        status: v.status.to_string(),
        has_private_key: v.has_private_key,
        key_algorithm: v.key_algorithm.clone(),
        chain_length: v.chain_length,
        days_left: v.days_left,
        rotation: v
            .rotation
            .as_ref()
            .map(|r| r.word().to_owned())
            .unwrap_or_default(),
        rotation_note: v.rotation.as_ref().map(|r| r.note()).unwrap_or_default(),
        exportable: v.exportable,
    }
}

/// Receive connectors through the `Config` service (kind
/// `receive-connector`): the same on both roles, since they are local.
pub mod receive_connectors {
    use postern_model::{AdminObjectKind, ReceiveConnector};
    use postern_proto::admin as pb;
    use tonic::Status;

    use crate::receive_connectors::{ReceiveConnectorError, ReceiveConnectorStore};

    fn status(e: ReceiveConnectorError) -> Status {
        match e {
            ReceiveConnectorError::Invalid(_) => Status::invalid_argument(e.to_string()),
            ReceiveConnectorError::Exists(_) => Status::already_exists(e.to_string()),
            ReceiveConnectorError::NotFound(_) => Status::not_found(e.to_string()),
            ReceiveConnectorError::Store(_) => Status::internal(e.to_string()),
        }
    }

    fn json(c: &ReceiveConnector) -> Result<pb::ObjectJson, Status> {
        Ok(pb::ObjectJson {
            kind: AdminObjectKind::ReceiveConnector.to_string(),
            json: serde_json::to_string(c).map_err(|e| {
                Status::internal(format!("cannot encode receive connector {:?}: {e}", c.name))
            })?,
            version: 0,
        })
    }

    /// `GetObject`.
    pub fn get(store: &ReceiveConnectorStore, name: &str) -> Result<pb::ObjectJson, Status> {
        json(&store.get(name).map_err(status)?)
    }

    /// `ListObjects`.
    pub fn list(store: &ReceiveConnectorStore) -> Result<pb::ObjectList, Status> {
        Ok(pb::ObjectList {
            objects: store
                .list()
                .map_err(status)?
                .iter()
                .map(json)
                .collect::<Result<_, _>>()?,
        })
    }

    /// `PutObject`.
    pub fn put(
        store: &ReceiveConnectorStore,
        r: &pb::PutObjectRequest,
    ) -> Result<pb::ConfigVersionReply, Status> {
        let c: ReceiveConnector = serde_json::from_str(&r.json)
            .map_err(|e| Status::invalid_argument(format!("bad receive connector: {e}")))?;
        store.put(c, r.create_only, r.replace_only).map_err(status)?;
        Ok(pb::ConfigVersionReply { version: 0 })
    }

    /// `RemoveObject`.
    pub fn remove(store: &ReceiveConnectorStore, name: &str) -> Result<pb::ConfigVersionReply, Status> {
        store.remove(name).map_err(status)?;
        Ok(pb::ConfigVersionReply { version: 0 })
    }

    #[cfg(test)]
    mod tests {
        use postern_model::{Domain, NodeIdentity, NodeName, NodeRole};

        use super::*;

        fn store() -> ReceiveConnectorStore {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let identity = NodeIdentity {
                name: NodeName::parse("edge1").unwrap(),
                fqdn: Domain::parse("edge1.contoso.test").unwrap(),
                role: NodeRole::Edge,
                created: String::new(),
                smtp_bind: "127.0.0.1:0".into(),
            };
            ReceiveConnectorStore::open(&db, &identity).unwrap()
        }

        fn request(ranges: &str) -> pb::PutObjectRequest {
            pb::PutObjectRequest {
                kind: AdminObjectKind::ReceiveConnector.to_string(),
                json: format!(
                    r#"{{"name":"Clients","bindings":["127.0.0.1:2587"],"remote_ip_ranges":{ranges},"auth_mechanism":["tls"],"permission_groups":["clients"],"require_tls":false,"domain_secure_enabled":false,"fqdn":null,"protocol_logging_level":"none","max_message_size":null}}"#
                ),
                create_only: true,
                replace_only: false,
                read_version: 0,
            }
        }

        #[test]
        fn a_kind_word_is_parsed_once_and_an_unknown_one_refused_naming_the_kinds() {
            assert_eq!(
                crate::admin::object_kind("receive-connector").unwrap(),
                AdminObjectKind::ReceiveConnector
            );
            assert_eq!(
                crate::admin::object_kind("send-connector").unwrap(),
                AdminObjectKind::Replicated(postern_model::ObjectKind::SendConnector)
            );
            let e = crate::admin::object_kind("connector").unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message()
                    .starts_with("unknown object kind \"connector\"; kinds are transport-config,"),
                "{}",
                e.message()
            );
        }

        #[test]
        fn a_bad_remote_ip_range_is_refused_when_the_connector_is_written() {
            let store = store();
            let e = put(&store, &request(r#"["10.0.0.0/8","ten"]"#)).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(
                e.message().contains("\"ten\" is not an IP range"),
                "{}",
                e.message()
            );
            let e = put(&store, &request(r#"["10.0.0.0/33"]"#)).unwrap_err();
            assert!(e.message().contains("bad prefix length"), "{}", e.message());
            assert!(store.get("Clients").is_err(), "nothing was stored");
        }

        #[test]
        fn ranges_are_stored_and_shown_as_written() {
            let store = store();
            put(&store, &request(r#"["127.0.0.0/8","::1/128","192.0.2.7"]"#)).unwrap();
            let shown: serde_json::Value =
                serde_json::from_str(&get(&store, "Clients").unwrap().json).unwrap();
            assert_eq!(
                shown["remote_ip_ranges"],
                serde_json::json!(["127.0.0.0/8", "::1/128", "192.0.2.7"])
            );
            let stored = store.get("Clients").unwrap();
            assert!(stored.remote_ip_ranges[0].contains("127.0.0.1".parse().unwrap()));
            assert!(!stored.remote_ip_ranges[2].contains("192.0.2.8".parse().unwrap()));
        }
    }
}
