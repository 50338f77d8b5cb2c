//! The node runtime both roles start. A hub and an edge differ in where
//! their organisation objects come from (the authoritative store, the
//! replica), in how they route, and in their extras (EdgeSync, rotations,
//! the console, MTA-STS); everything else is done here once:
//!
//! 1. [`NodeRuntime::open`]: the common options checked, the data
//!    directory opened (set up on first start) and logged;
//! 2. [`NodeRuntime::compile`]: the node's configuration compiled from its
//!    receive connectors and the role's [`OrganisationSource`], recompiled
//!    at every change of either, with the trust store following it;
//! 3. [`NodeRuntime::start_mail`]: the mail engine started with the role's
//!    router and message authentication;
//! 4. [`run`]: the listeners logged, the admin socket served (the common
//!    services plus the role's, [`RunningNode::services`]) until shutdown,
//!    then the mail engine stopped, the store flushed and "stopped" logged.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use postern_tls::TrustStore;
use tonic::transport::server::Router as AdminRouter;

use crate::admin::{self as node_admin, AdminError};
use crate::auth::MessageAuth;
use crate::dns::DnsConfig;
use crate::internet_tls::NodeTlsOptions;
use crate::mta::{MtaError, NodeMail};
use crate::node::{Node, NodeError, NodeOptions, Startup, advertised};
use crate::node_config::{
    Changed, CompileError, NodeConfigCompiler, OrganisationSource, StoreSources, follow_trust,
};
use crate::receive_connectors::{ReceiveConnectorError, ReceiveConnectorStore};
use crate::routing::Router;

/// What every node runs with, whatever its role (flags or `POSTERN_*`
/// variables); the roles' options embed it.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// Data directory and identity flags.
    pub node: NodeOptions,
    /// Prometheus metrics binding (`ip:port`).
    pub metrics_bind: Option<String>,
    /// DNS servers for MX lookups (empty: the system's resolv.conf).
    pub dns_servers: Vec<SocketAddr>,
    /// DANE and MTA-STS for mail routed by MX.
    pub internet_tls: NodeTlsOptions,
}

/// Why a node could not start or stopped, in the part both roles share;
/// each role's error wraps it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Setup or opening the data directory failed.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The metrics endpoint's binding is not usable.
    #[error("metrics binding {0}: {1}")]
    Metrics(String, std::io::Error),
    /// The admin API failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The mail engine could not start.
    #[error(transparent)]
    Mail(#[from] MtaError),
    /// The receive connectors could not be loaded.
    #[error(transparent)]
    ReceiveConnectors(#[from] ReceiveConnectorError),
    /// The node's configuration does not compile.
    #[error("configuration: {0}")]
    Compile(#[from] CompileError),
    /// A background task panicked.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// An opened node whose mail engine is not started yet: what the role
/// builds its sources and extras on.
pub struct NodeRuntime {
    node: Node,
    metrics_bind: Option<SocketAddr>,
    dns: DnsConfig,
}

/// The node's compiled configuration and what follows it.
#[derive(Clone)]
pub struct Compiled {
    /// The compiler: the snapshot in force and its change feed.
    pub compiler: NodeConfigCompiler,
    /// The certificates trusted directly, following the snapshot's trust
    /// anchors.
    pub trust: TrustStore,
    /// The node's receive connectors (the admin API edits them).
    pub receive_connectors: ReceiveConnectorStore,
}

impl NodeRuntime {
    /// Checks `opts`, then opens the node's data directory (setting it up
    /// on first start) and logs which. Needs a tokio runtime.
    pub async fn open(opts: &RuntimeOptions) -> Result<Self, RuntimeError> {
        let metrics_bind = metrics_bind(opts.metrics_bind.as_deref())?;
        let node_opts = opts.node.clone();
        let (node, startup) = tokio::task::spawn_blocking(move || Node::open_or_setup(&node_opts)).await??;
        let (role, identity, dir) = (node.identity.role, &node.identity, node.data_dir.display());
        match startup {
            Startup::SetUp => {
                tracing::info!(name = %identity.name, fqdn = %identity.fqdn, dir = %dir, "{role} node set up")
            }
            Startup::Reused => {
                tracing::info!(name = %identity.name, fqdn = %identity.fqdn, dir = %dir, "{role} node opened")
            }
        }
        let dns = DnsConfig {
            servers: opts.dns_servers.clone(),
            dane_trust_anchor: opts.internet_tls.dane_trust_anchor.clone(),
            mta_sts_port: opts.internet_tls.mta_sts_port,
            ..Default::default()
        };
        Ok(Self {
            node,
            metrics_bind,
            dns,
        })
    }

    /// The opened node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The name servers and Internet TLS settings mail routed by MX uses.
    pub fn dns(&self) -> &DnsConfig {
        &self.dns
    }

    /// Compiles the node's configuration from its receive connectors and
    /// `organisation`, and again at every change of either; the trust
    /// store follows the compiled trust anchors.
    pub fn compile<S: OrganisationSource>(&self, organisation: S) -> Result<Compiled, RuntimeError> {
        let receive_connectors = ReceiveConnectorStore::open(&self.node.db, &self.node.identity)?;
        let changes = organisation.watch();
        let sources = StoreSources {
            connectors: receive_connectors.clone(),
            organisation,
        };
        let compiler = NodeConfigCompiler::start(self.node.identity.fqdn.clone(), Arc::new(sources))?;
        compiler.follow(receive_connectors.watch(), Changed::ReceiveConnectors);
        compiler.follow(changes, Changed::Organisation);
        let trust = TrustStore::new([], &[]);
        follow_trust(compiler.subscribe(), trust.clone());
        Ok(Compiled {
            compiler,
            trust,
            receive_connectors,
        })
    }

    /// Starts the mail engine on the compiled configuration, routing with
    /// `router`; `message_auth` signs (hubs) or judges (edges) mail from
    /// outside the organisation.
    pub async fn start_mail(
        &self,
        compiled: &Compiled,
        router: Arc<dyn Router>,
        message_auth: MessageAuth,
    ) -> Result<NodeMail, RuntimeError> {
        Ok(NodeMail::start(
            &self.node,
            compiled.trust.clone(),
            router,
            compiled.compiler.clone(),
            self.metrics_bind,
            self.dns.clone(),
            message_auth,
        )
        .await?)
    }
}

/// Where peers of the organisation send this node mail, as they are told:
/// the connector that takes organisation servers as bound, else the
/// binding made at setup.
pub async fn smtp_endpoint(node: &Node, mail: &NodeMail) -> String {
    let bound = mail.organisation_addr().await.map(|a| a.to_string());
    advertised(
        bound.as_deref().unwrap_or(&node.identity.smtp_bind),
        node.identity.fqdn.as_str(),
    )
}

/// A started node of either role, as [`run`] serves it.
pub trait RunningNode {
    /// The node.
    fn node(&self) -> &Node;
    /// Its mail engine.
    fn mail(&self) -> &NodeMail;
    /// Adds the role's admin services to `router` (which has the common
    /// ones).
    fn services(&self, router: AdminRouter) -> AdminRouter;
}

/// The admin router of `started`: the common services plus the role's.
pub fn admin_router(started: &impl RunningNode) -> AdminRouter {
    started.services(node_admin::node_router(started.node(), started.mail()))
}

/// Logs the listeners of `started`, serves its admin socket until
/// `shutdown`, then stops the mail engine and flushes the store.
pub async fn run(
    started: &impl RunningNode,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RuntimeError> {
    let node = started.node();
    for (name, addr) in started.mail().receive_addrs().await {
        tracing::info!(connector = %name, %addr, "receive connector listening");
    }
    let socket = node.admin_socket();
    tracing::info!(socket = %socket.display(), "admin API listening");
    node_admin::serve(admin_router(started), &socket, shutdown).await?;
    started.mail().shutdown().await;
    node.db.flush_async().await.map_err(NodeError::from)?;
    tracing::info!("{} node stopped", node.identity.role);
    Ok(())
}

/// The metrics binding, parsed.
fn metrics_bind(bind: Option<&str>) -> Result<Option<SocketAddr>, RuntimeError> {
    bind.map(|b| {
        b.parse()
            .map_err(|_| RuntimeError::Metrics(b.to_owned(), std::io::Error::other("not ip:port")))
    })
    .transpose()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_metrics_binding_is_ip_and_port() {
        assert_eq!(
            metrics_bind(Some("127.0.0.1:9100")).unwrap(),
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(metrics_bind(None).unwrap(), None);
        let err = metrics_bind(Some("localhost:9100")).unwrap_err();
        assert_eq!(err.to_string(), "metrics binding localhost:9100: not ip:port");
    }
}
