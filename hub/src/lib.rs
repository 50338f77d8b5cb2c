//! The hub role: authoritative configuration, admin API, routing of inbound mail to mailboxes and outbound mail to edges.
//!
//! Today it sets the node up and serves the admin API; SMTP, EdgeSync and
//! routing arrive with their issues.

use std::future::Future;

use postern_transport::admin::{self, AdminError};
use postern_transport::node::{Node, NodeError, NodeOptions, Startup};

/// How to run a hub node.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// Data directory and identity flags.
    pub node: NodeOptions,
    /// Prometheus metrics binding (served from the SMTP engine issue on).
    pub metrics_bind: Option<String>,
}

/// Why a hub node stopped.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Setup or opening the data directory failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The admin API failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A background task panicked.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Sets the node up (first start) or opens it, then serves until
/// `shutdown` completes.
pub async fn run(opts: HubOptions, shutdown: impl Future<Output = ()> + Send) -> Result<(), HubError> {
    let node_opts = opts.node.clone();
    let (node, startup) = tokio::task::spawn_blocking(move || Node::open_or_setup(&node_opts)).await??;
    match startup {
        Startup::SetUp => {
            tracing::info!(name = %node.identity.name, fqdn = %node.identity.fqdn, dir = %node.data_dir.display(), "hub node set up")
        }
        Startup::Reused => {
            tracing::info!(name = %node.identity.name, fqdn = %node.identity.fqdn, dir = %node.data_dir.display(), "hub node opened")
        }
    }
    let socket = node.admin_socket();
    tracing::info!(socket = %socket.display(), "admin API listening");
    admin::serve(admin::router(&node), &socket, shutdown).await?;
    node.db.flush_async().await.map_err(NodeError::from)?;
    tracing::info!("hub node stopped");
    Ok(())
}
