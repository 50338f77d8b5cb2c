//! The hub's `Dkim` admin service (`postern dkim new|import|list|enable|
//! remove`) over the node's [`DkimKeyStore`]. Keys are made only for
//! accepted domains of the organisation; replies carry the public TXT
//! record, never the private key.

use postern_model::{AcceptedDomainKind, DkimKeyType, Domain, ObjectKind, ReplicatedObject, Selector};
use postern_proto::admin as pb;
use postern_transport::auth::{DkimKeyError, DkimKeyStore, DkimKeyView};
use tonic::{Request, Response, Status};

use crate::config::HubConfig;

/// The `Dkim` service: the key store and the configuration (for the
/// accepted domains).
#[derive(Clone)]
pub struct DkimService {
    /// The hub's DKIM keys.
    pub keys: DkimKeyStore,
    /// The authoritative configuration.
    pub config: HubConfig,
}

fn key_status(e: DkimKeyError) -> Status {
    match e {
        DkimKeyError::Exists(_) => Status::already_exists(e.to_string()),
        DkimKeyError::NotFound(_) => Status::not_found(e.to_string()),
        DkimKeyError::BadKey(_) => Status::invalid_argument(e.to_string()),
        DkimKeyError::Generation(_) | DkimKeyError::Store(_) | DkimKeyError::Corrupt(_) => {
            Status::internal(e.to_string())
        }
    }
}

fn to_pb(v: DkimKeyView) -> pb::DkimKey {
    pb::DkimKey {
        domain: v.domain.to_string(),
        selector: v.selector.to_string(),
        key_type: v.key_type.to_string(),
        enabled: v.enabled,
        created: v.created,
        dns_name: v.dns_name,
        txt_record: v.txt_record,
    }
}

fn names(domain: &str, selector: &str) -> Result<(Domain, Selector), Status> {
    let domain = Domain::parse(domain).map_err(|e| Status::invalid_argument(format!("--domain: {e}")))?;
    let selector = Selector::parse(selector).map_err(Status::invalid_argument)?;
    Ok((domain, selector))
}

impl DkimService {
    /// Only the organisation's own domains are signed for.
    fn accepted(&self, domain: &Domain) -> Result<(), Status> {
        let ours = self
            .config
            .list(ObjectKind::AcceptedDomain)
            .map_err(|e| Status::internal(e.to_string()))?
            .into_iter()
            .any(|o| {
                matches!(o, ReplicatedObject::AcceptedDomain(d)
                    if d.name == *domain && d.kind != AcceptedDomainKind::ExternalRelay)
            });
        if ours {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "{domain} is not an accepted domain of the organisation; add it with `postern accepted-domain new {domain}` first"
            )))
        }
    }
}

#[tonic::async_trait]
impl pb::dkim_server::Dkim for DkimService {
    async fn new_dkim_key(
        &self,
        req: Request<pb::NewDkimKeyRequest>,
    ) -> Result<Response<pb::DkimKey>, Status> {
        let r = req.into_inner();
        let (domain, selector) = names(&r.domain, &r.selector)?;
        self.accepted(&domain)?;
        let key_type = if r.key_type.trim().is_empty() {
            DkimKeyType::default()
        } else {
            r.key_type
                .parse::<DkimKeyType>()
                .map_err(Status::invalid_argument)?
        };
        let keys = self.keys.clone();
        // RSA generation is seconds of arithmetic: off the async threads.
        let view = tokio::task::spawn_blocking(move || keys.generate(domain, selector, key_type))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(key_status)?;
        tracing::info!(dns_name = %view.dns_name, key_type = %view.key_type, "DKIM key made (disabled until enabled)");
        Ok(Response::new(to_pb(view)))
    }

    async fn import_dkim_key(
        &self,
        req: Request<pb::ImportDkimKeyRequest>,
    ) -> Result<Response<pb::DkimKey>, Status> {
        let r = req.into_inner();
        let (domain, selector) = names(&r.domain, &r.selector)?;
        self.accepted(&domain)?;
        let view = self
            .keys
            .import(domain, selector, &r.private_key_pem)
            .map_err(key_status)?;
        tracing::info!(dns_name = %view.dns_name, "DKIM key imported (disabled until enabled)");
        Ok(Response::new(to_pb(view)))
    }

    async fn list_dkim_keys(
        &self,
        _: Request<pb::ListDkimKeysRequest>,
    ) -> Result<Response<pb::DkimKeyList>, Status> {
        let keys = self.keys.list().map_err(key_status)?;
        Ok(Response::new(pb::DkimKeyList {
            keys: keys.into_iter().map(to_pb).collect(),
        }))
    }

    async fn enable_dkim_key(&self, req: Request<pb::DkimKeyRef>) -> Result<Response<pb::DkimKey>, Status> {
        let r = req.into_inner();
        let (domain, selector) = names(&r.domain, &r.selector)?;
        let view = self.keys.enable(&domain, &selector).map_err(key_status)?;
        tracing::info!(dns_name = %view.dns_name, "DKIM key enabled: outbound mail of its domain is signed with it");
        Ok(Response::new(to_pb(view)))
    }

    async fn remove_dkim_key(
        &self,
        req: Request<pb::DkimKeyRef>,
    ) -> Result<Response<pb::RemoveDkimKeyReply>, Status> {
        let r = req.into_inner();
        let (domain, selector) = names(&r.domain, &r.selector)?;
        self.keys.remove(&domain, &selector).map_err(key_status)?;
        Ok(Response::new(pb::RemoveDkimKeyReply {}))
    }
}
