//! The console's way to the hub: the same admin API the CLI speaks, over
//! the hub's own admin socket, so a page shows what `postern … --json`
//! shows and an action does what the CLI verb does.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use postern_proto::admin as pb;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

/// Why the admin API could not answer a page.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    /// The admin socket could not be reached.
    #[error("admin socket {0}: {1}")]
    Connect(PathBuf, tonic::transport::Error),
    /// The admin API refused or failed.
    #[error("{}", .0.message())]
    Status(#[from] tonic::Status),
}

/// A lazily connected channel to the hub's admin socket.
#[derive(Clone, Debug)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    /// A client of the admin API served at `socket`.
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    async fn channel(&self) -> Result<Channel, AdminCallError> {
        let path = self.socket.clone();
        // The URI is required by tonic but unused: the connector dials the socket.
        Endpoint::from_static("http://postern.admin")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|e| AdminCallError::Connect(self.socket.clone(), e))
    }

    /// `postern node-info`.
    pub async fn identity(&self) -> Result<pb::NodeIdentity, AdminCallError> {
        let mut c = pb::node_client::NodeClient::new(self.channel().await?);
        Ok(c.get_identity(pb::GetIdentityRequest {}).await?.into_inner())
    }

    /// `postern queue list`.
    pub async fn queue(&self) -> Result<Vec<pb::QueuedMessage>, AdminCallError> {
        let mut c = pb::node_client::NodeClient::new(self.channel().await?);
        Ok(c.list_queue(pb::ListQueueRequest {}).await?.into_inner().messages)
    }

    /// `postern queue retry --hop H`.
    pub async fn retry(&self, hop: &str) -> Result<u32, AdminCallError> {
        let mut c = pb::node_client::NodeClient::new(self.channel().await?);
        let request = pb::RetryQueueRequest { hop: hop.to_owned() };
        Ok(c.retry_queue(request).await?.into_inner().messages)
    }

    /// `postern edgesync test`.
    pub async fn sync_status(&self) -> Result<Vec<pb::SyncStatus>, AdminCallError> {
        let mut c = pb::edge_sync_status_client::EdgeSyncStatusClient::new(self.channel().await?);
        Ok(c.test_sync(pb::TestSyncRequest {}).await?.into_inner().edges)
    }

    /// `postern edge-subscription list`.
    pub async fn subscriptions(&self) -> Result<Vec<pb::SubscriptionInfo>, AdminCallError> {
        let mut c = pb::edge_subscriptions_client::EdgeSubscriptionsClient::new(self.channel().await?);
        Ok(c.list_subscriptions(pb::ListSubscriptionsRequest {})
            .await?
            .into_inner()
            .subscriptions)
    }

    /// `postern cert list`.
    pub async fn certificates(&self) -> Result<Vec<pb::Certificate>, AdminCallError> {
        let mut c = pb::certificates_client::CertificatesClient::new(self.channel().await?);
        Ok(c.list_certificates(pb::ListCertificatesRequest {})
            .await?
            .into_inner()
            .certificates)
    }

    /// The configuration objects of `kind`, as JSON.
    pub async fn objects(
        &self,
        kind: impl Into<postern_model::AdminObjectKind>,
    ) -> Result<Vec<serde_json::Value>, AdminCallError> {
        let mut c = pb::config_client::ConfigClient::new(self.channel().await?);
        let list = c
            .list_objects(pb::ListObjectsRequest {
                kind: kind.into().to_string(),
            })
            .await?
            .into_inner();
        Ok(list
            .objects
            .iter()
            .filter_map(|o| serde_json::from_str(&o.json).ok())
            .collect())
    }
}
