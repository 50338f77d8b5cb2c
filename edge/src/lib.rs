//! The edge role: a replica of the hub configuration kept by EdgeSync
//! (served here; hubs dial in), the admin API, and (with the organisation
//! mail-flow issue) Internet-facing connectors, recipient filtering and
//! routing to hubs and the Internet.

pub mod admin;
pub mod routing;
pub mod sources;

use std::future::Future;
use std::sync::Arc;

use postern_edgesync::edge_side::{BootstrapStore, EdgeSyncService};
use postern_edgesync::{Replica, SourceError};
use postern_proto::admin::config_server::ConfigServer;
use postern_proto::admin::edge_subscription_file_server::EdgeSubscriptionFileServer;
use postern_proto::admin::edge_sync_status_server::EdgeSyncStatusServer;
use postern_tls::TrustStore;
use postern_transport::mta::NodeMail;
use postern_transport::node::{Node, advertised};
use postern_transport::runtime::{self, NodeRuntime, RunningNode, RuntimeError, RuntimeOptions};

use crate::admin::EdgeAdmin;
use crate::routing::EdgeRouter;
use crate::sources::{ReplicaSources, transport_config_of};

/// How to run an edge node.
#[derive(Clone, Debug)]
pub struct EdgeOptions {
    /// What every node runs with (data directory, metrics, DNS, Internet TLS).
    pub runtime: RuntimeOptions,
    /// EdgeSync gRPC binding.
    pub edgesync_bind: String,
}

/// Why an edge node stopped.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The part every node runs (setup, configuration, mail, admin API).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The replica failed.
    #[error(transparent)]
    Replica(#[from] SourceError),
    /// A store failed.
    #[error("edge store: {0}")]
    Store(#[from] sled::Error),
    /// The EdgeSync endpoint could not bind.
    #[error("EdgeSync binding {0}: {1}")]
    Bind(String, std::io::Error),
}

/// A started edge.
#[derive(Clone)]
pub struct Edge {
    /// The node.
    pub node: Node,
    /// Admin state (replica, bootstrap).
    pub admin: EdgeAdmin,
    /// Hub certificates trusted directly (from the replica).
    pub trust: TrustStore,
    /// Where EdgeSync is bound.
    pub edgesync_addr: std::net::SocketAddr,
    /// The mail engine (receive connectors, queue, delivery).
    pub mail: NodeMail,
}

impl Edge {
    /// Opens (or sets up) the edge and starts serving EdgeSync.
    pub async fn start(opts: &EdgeOptions) -> Result<Self, EdgeError> {
        let runtime = NodeRuntime::open(&opts.runtime).await?;
        let node = runtime.node().clone();
        let replica = Replica::open(&node.db)?;
        let bootstrap = BootstrapStore::open(&node.db)?;
        // The trust store follows the compiled trust anchors: the hubs'
        // published certificates and the organisation's trusted roots.
        let compiled = runtime.compile(ReplicaSources {
            replica: replica.clone(),
        })?;
        let trust = compiled.trust.clone();
        let listener = tokio::net::TcpListener::bind(&opts.edgesync_bind)
            .await
            .map_err(|e| EdgeError::Bind(opts.edgesync_bind.clone(), e))?;
        let edgesync_addr = listener
            .local_addr()
            .map_err(|e| EdgeError::Bind(opts.edgesync_bind.clone(), e))?;
        let fqdn = node.identity.fqdn.to_string();
        let incoming =
            postern_edgesync::channel::tls_incoming(listener, node.certs.clone(), &fqdn, &trust, &bootstrap);
        follow_subscription(replica.clone(), node.certs.clone());
        let router = Arc::new(EdgeRouter::new(
            compiled.compiler.subscribe(),
            node.identity.name.clone(),
            node.identity.fqdn.clone(),
        ));
        // Mail from outside is judged (SPF, DKIM, ARC, DMARC) through the
        // node's name servers; without a resolver it is stamped unjudged.
        let message_auth = postern_transport::auth::MessageAuth {
            signer: None,
            verifier: postern_transport::dns::shared_resolver(runtime.dns()).map(|resolver| {
                postern_transport::auth::Verifier::new(
                    resolver.hickory().clone(),
                    node.identity.fqdn.as_str(),
                )
            }),
        };
        let mail = runtime.start_mail(&compiled, router, message_auth).await?;
        // Served once the mail engine runs: each answer carries the edge's
        // report of its queue and certificates.
        let service = EdgeSyncService::new(node.identity.name.as_str(), replica.clone(), bootstrap.clone())
            .with_certificates(node.certs.clone(), &fqdn)
            .with_reporter(postern_edgesync::report::reporter(
                mail.queue().clone(),
                node.certs.clone(),
            ));
        tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                // Snapshots travel as one message (large organisations);
                // the first message of a stream is capped at 64 KiB.
                .add_service(postern_edgesync::gate::edge_sync_server(service))
                .serve_with_incoming(incoming)
                .await;
            if let Err(e) = result {
                tracing::error!(error = %postern_transport::error_text::chain(&e), "EdgeSync server stopped");
            }
        });
        tracing::info!(addr = %edgesync_addr, "EdgeSync listening");
        if let Some(bind) = opts.runtime.internet_tls.mta_sts_bind {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| EdgeError::Bind(bind.to_string(), e))?;
            tracing::info!(addr = %bind, "serving the organisation's MTA-STS policy");
            let replica = replica.clone();
            tokio::spawn(postern_transport::internet_tls::publish::serve(
                listener,
                node.certs.clone(),
                node.identity.fqdn.clone(),
                Arc::new(move || {
                    // No policy is served while the replica cannot be read;
                    // the log says why.
                    transport_config_of(&replica).unwrap_or_else(|why| {
                        tracing::error!(%why, "cannot read the transport configuration; serving no MTA-STS policy");
                        postern_model::TransportConfig::default()
                    })
                }),
                std::future::pending(),
            ));
        }
        // Hubs send to the connector that takes organisation servers.
        let smtp_endpoint = runtime::smtp_endpoint(&node, &mail).await;
        let admin = EdgeAdmin {
            node: node.clone(),
            replica,
            bootstrap,
            edgesync_endpoint: advertised(&edgesync_addr.to_string(), &fqdn),
            smtp_endpoint,
            receive_connectors: compiled.receive_connectors,
        };
        Ok(Self {
            node,
            admin,
            trust,
            edgesync_addr,
            mail,
        })
    }

    /// The admin router: common services plus the edge's.
    pub fn router(&self) -> tonic::transport::server::Router {
        runtime::admin_router(self)
    }
}

impl RunningNode for Edge {
    fn node(&self) -> &Node {
        &self.node
    }

    fn mail(&self) -> &NodeMail {
        &self.mail
    }

    /// The replica, subscription file, EdgeSync status and
    /// published-records services.
    fn services(&self, router: tonic::transport::server::Router) -> tonic::transport::server::Router {
        router
            .add_service(ConfigServer::new(self.admin.clone()))
            .add_service(EdgeSubscriptionFileServer::new(self.admin.clone()))
            .add_service(EdgeSyncStatusServer::new(self.admin.clone()))
            .add_service(postern_transport::internet_tls::admin::service(
                self.mail.tls_reporter().clone(),
                published_records(self.admin.replica.clone(), self.node.clone()),
            ))
    }
}

/// The DNS records for the organisation's own policy as this edge sees
/// it: its authoritative domains, the replicated MTA-STS policy, and its
/// SMTP certificates.
fn published_records(replica: Replica, node: Node) -> postern_transport::internet_tls::admin::RecordSource {
    Arc::new(move || {
        use postern_transport::internet_tls::admin::RecordsError;
        let config = transport_config_of(&replica).map_err(|why| RecordsError {
            what: "the replicated transport configuration",
            why,
        })?;
        let domains: Vec<postern_model::Domain> = replica
            .list(postern_model::ObjectKind::AcceptedDomain)
            .map_err(|e| RecordsError {
                what: "the replica",
                why: e.to_string(),
            })?
            .into_iter()
            .filter_map(|o| match o {
                postern_model::ReplicatedObject::AcceptedDomain(d)
                    if d.kind == postern_model::AcceptedDomainKind::Authoritative =>
                {
                    Some(d.name)
                }
                _ => None,
            })
            .collect();
        let certs =
            postern_transport::internet_tls::publish::smtp_certificates(&node.certs).map_err(|e| {
                RecordsError {
                    what: "the certificate store",
                    why: e.to_string(),
                }
            })?;
        Ok(postern_transport::internet_tls::publish::dns_records(
            &domains,
            config.mta_sts.as_ref(),
            &node.identity.fqdn,
            &certs,
        ))
    })
}

/// What a subscribed edge's newly enabled SMTP certificate waits for.
pub const EDGE_HOLD_NOTE: &str = "waiting for a hub to open EdgeSync so it can be offered; \
     the hubs still get the previous certificate";

/// Once the edge is subscribed (its hubs pin its certificate), holds newly
/// enabled SMTP certificates for an offer over EdgeSync; moves retiring
/// certificates to retired after their grace; warns, once a minute, about
/// offers that are still not delivered.
fn follow_subscription(replica: Replica, certs: postern_tls::certs::CertStore) {
    let mut applied = replica.watch();
    tokio::spawn(async move {
        let mut warned = std::time::Instant::now();
        loop {
            let subscribed = replica.is_subscribed();
            certs.hold_new_smtp_certificates(subscribed.then(|| EDGE_HOLD_NOTE.to_owned()));
            postern_edgesync::rotation::retire_due(&certs, time::OffsetDateTime::now_utc());
            if warned.elapsed() >= std::time::Duration::from_secs(60) {
                warned = std::time::Instant::now();
                let rotations = certs.rotations().unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot read the certificate rotations to warn about them");
                    Vec::new()
                });
                for (tp, r) in rotations {
                    if r.is_offered() {
                        tracing::warn!(thumbprint = %tp, why = %r.note(), "new certificate not presented to the hubs yet");
                    }
                }
            }
            // The first snapshot sets the hold at once.
            tokio::select! {
                _ = applied.changed() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            }
        }
    });
}

/// Sets the edge up (first start) or opens it, then serves until `shutdown`.
pub async fn run(opts: EdgeOptions, shutdown: impl Future<Output = ()> + Send) -> Result<(), EdgeError> {
    let edge = Edge::start(&opts).await?;
    Ok(runtime::run(&edge, shutdown).await?)
}
