//! The edge role: perimeter node with a replica of the hub configuration, Internet-facing connectors, recipient filtering and routing to hubs.
//!
//! Today it sets the node up and serves the admin API; SMTP, EdgeSync and
//! routing arrive with their issues.

use std::future::Future;

use postern_transport::admin::{self, AdminError};
use postern_transport::node::{Node, NodeError, NodeOptions, Startup};

/// How to run a edge node.
#[derive(Clone, Debug)]
pub struct EdgeOptions {
    /// Data directory and identity flags.
    pub node: NodeOptions,
    /// Prometheus metrics binding (served from the SMTP engine issue on).
    pub metrics_bind: Option<String>,
    /// EdgeSync gRPC binding (served from the EdgeSync issue on).
    pub edgesync_bind: String,
}

/// Why a edge node stopped.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
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
pub async fn run(opts: EdgeOptions, shutdown: impl Future<Output = ()> + Send) -> Result<(), EdgeError> {
    let node_opts = opts.node.clone();
    let (node, startup) = tokio::task::spawn_blocking(move || Node::open_or_setup(&node_opts)).await??;
    match startup {
        Startup::SetUp => {
            tracing::info!(name = %node.identity.name, fqdn = %node.identity.fqdn, dir = %node.data_dir.display(), "edge node set up")
        }
        Startup::Reused => {
            tracing::info!(name = %node.identity.name, fqdn = %node.identity.fqdn, dir = %node.data_dir.display(), "edge node opened")
        }
    }
    let socket = node.admin_socket();
    tracing::info!(socket = %socket.display(), "admin API listening");
    admin::serve(admin::router(&node), &socket, shutdown).await?;
    node.db.flush_async().await.map_err(NodeError::from)?;
    tracing::info!("edge node stopped");
    Ok(())
}
