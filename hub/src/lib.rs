//! The hub role: the authoritative configuration, the admin API, EdgeSync
//! to every subscribed edge, and (with the organisation mail-flow issue)
//! routing of inbound mail to mailboxes and outbound mail to edges.

pub mod admin;
pub mod config;
pub mod console;
pub mod dkim;
pub mod rotation;
pub mod routing;
pub mod sources;
pub mod subscriptions;

use std::future::Future;
use std::sync::Arc;

use postern_edgesync::hub_side::{SyncManager, SyncState};
use postern_edgesync::lease::EdgeLeases;
use postern_edgesync::{ConfigStore, EtcdStore};
use postern_model::{ChangeOp, HubInfo, ObjectKind, ReplicatedObject, Service};
use postern_proto::admin::config_server::ConfigServer;
use postern_proto::admin::console_server::ConsoleServer;
use postern_proto::admin::dkim_server::DkimServer;
use postern_proto::admin::edge_subscriptions_server::EdgeSubscriptionsServer;
use postern_proto::admin::edge_sync_start_server::EdgeSyncStartServer;
use postern_proto::admin::edge_sync_status_server::EdgeSyncStatusServer;
use postern_transport::auth::{DkimKeyStore, MessageAuth, Signer};
use postern_transport::metrics::{EdgeSyncSample, Metrics};
use postern_transport::mta::NodeMail;
use postern_transport::node::{Node, NodeError};
use postern_transport::runtime::{self, NodeRuntime, RunningNode, RuntimeError, RuntimeOptions};

use crate::admin::HubAdmin;
use crate::config::{ConfigError, HubConfig};
use crate::dkim::DkimService;
use crate::routing::HubRouter;
use crate::sources::{HubSources, TrustRefresh};
use crate::subscriptions::{SubscriptionError, Subscriptions};

/// How to run a hub node.
#[derive(Clone, Debug)]
pub struct HubOptions {
    /// What every node runs with (data directory, metrics, DNS, Internet TLS).
    pub runtime: RuntimeOptions,
    /// Where the organisation's configuration lives.
    pub store: StoreChoice,
    /// The web console's binding (`ip:port`); no console when `None`.
    pub console_bind: Option<String>,
    /// How long a replaced certificate (an edge's or the hub's) stays
    /// trusted after a rotation ([`rotation::DEFAULT_GRACE`] by default).
    pub certificate_grace: std::time::Duration,
}

/// The configuration store backend.
#[derive(Clone, Debug, Default)]
pub enum StoreChoice {
    /// sled in the data directory: one hub (the default).
    #[default]
    Sled,
    /// etcd v3: several hubs of one organisation.
    Etcd {
        /// The cluster's client endpoints.
        endpoints: Vec<String>,
        /// The organisation's key prefix.
        prefix: String,
    },
}

/// How long a starting hub waits for etcd.
const ETCD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a hub node stopped.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The part every node runs (setup, configuration, mail, admin API).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The configuration store failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The subscriptions could not be loaded.
    #[error(transparent)]
    Subscriptions(#[from] SubscriptionError),
    /// The console could not start.
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    /// The DKIM key store could not be opened.
    #[error(transparent)]
    Dkim(postern_transport::auth::DkimKeyError),
    /// The DKIM signer could not be built.
    #[error(transparent)]
    Signer(postern_transport::auth::sign::SignError),
}

impl From<NodeError> for HubError {
    fn from(e: NodeError) -> Self {
        Self::Runtime(e.into())
    }
}

/// A started hub: its stores, EdgeSync and mail engine.
#[derive(Clone)]
pub struct Hub {
    /// The node.
    pub node: Node,
    /// Its admin state (configuration, subscriptions, trust, sync).
    pub admin: HubAdmin,
    /// The mail engine (receive connectors, queue, delivery).
    pub mail: NodeMail,
    /// The hub's DKIM keys.
    pub dkim: DkimKeyStore,
    /// The web console, when bound.
    pub console: Option<console::Console>,
}

impl Hub {
    /// Opens (or sets up) the hub, publishes itself in the configuration
    /// and starts syncing every subscribed edge. Needs a tokio runtime.
    pub async fn start(opts: &HubOptions) -> Result<Self, HubError> {
        let runtime = NodeRuntime::open(&opts.runtime).await?;
        let node = runtime.node().clone();
        let (store, leases): (Arc<dyn ConfigStore>, Option<Arc<dyn EdgeLeases>>) = match &opts.store {
            StoreChoice::Sled => (HubConfig::open_sled(&node.db)?, None),
            StoreChoice::Etcd { endpoints, prefix } => {
                let store = EtcdStore::connect(endpoints, prefix, ETCD_PATIENCE)
                    .await
                    .map_err(ConfigError::from)?;
                (store.clone(), Some(store))
            }
        };
        let config = HubConfig::new(store.clone(), node.identity.name.clone()).await?;
        let subscriptions = Subscriptions::new(store);
        // The trust store follows the compiled trust anchors: every hub's
        // published certificates, the subscribed edges', the trusted roots.
        let compiled = runtime.compile(HubSources {
            config: config.clone(),
            subscriptions: subscriptions.clone(),
        })?;
        let trust = compiled.trust.clone();
        let refresh = TrustRefresh::new(compiled.compiler.clone(), trust.clone());
        if !subscriptions.list()?.is_empty() {
            node.certs
                .hold_new_smtp_certificates(Some(rotation::HUB_HOLD_NOTE.to_owned()));
        }
        let bootstrapped = subscriptions.clone();
        let sync = SyncManager::with_leases(
            config.source(),
            node.certs.clone(),
            node.identity.name.as_str(),
            node.identity.fqdn.as_str(),
            Arc::new(move |edge: &str| {
                let (subs, edge) = (bootstrapped.clone(), edge.to_owned());
                tokio::spawn(async move { subs.mark_bootstrapped(&edge).await });
            }),
            leases,
        );
        let hub_rotation = rotation::HubRotation {
            subscriptions: subscriptions.clone(),
            config: config.clone(),
            trust: trust.clone(),
            refresh: refresh.clone(),
            grace: opts.certificate_grace,
        };
        rotation::install(&hub_rotation, &sync);
        for sub in subscriptions.list()? {
            sync.start(sub.target());
        }
        rotation::spawn(
            hub_rotation,
            node.certs.clone(),
            node.identity.fqdn.to_string(),
            sync.clone(),
        );
        let router = Arc::new(HubRouter::new(
            compiled.compiler.subscribe(),
            node.identity.name.clone(),
            node.identity.fqdn.clone(),
        ));
        let dkim = DkimKeyStore::open(&node.db).map_err(HubError::Dkim)?;
        let message_auth = MessageAuth {
            signer: Some(Signer::new(dkim.clone()).map_err(HubError::Signer)?),
            verifier: None,
        };
        let mail = runtime.start_mail(&compiled, router, message_auth).await?;
        follow_edgesync(sync.clone(), config.clone(), mail.metrics().clone());
        // Edges send inbound mail to the hub's default connector, as bound.
        // The organisation connector (org servers), not client submission.
        let endpoint = runtime::smtp_endpoint(&node, &mail).await;
        publish_self(&node, &config, &subscriptions, &endpoint).await?;
        watch_certificates(node.clone(), config.clone(), subscriptions.clone(), endpoint);
        follow_organisation(
            config.clone(),
            subscriptions.clone(),
            refresh.clone(),
            sync.clone(),
        );
        let console = match &opts.console_bind {
            Some(bind) => {
                let (console, listener) = console::Console::bind(bind, &node, mail.metrics().clone()).await?;
                // The console lives as long as the hub's process.
                console.serve(listener, &node, &trust, std::future::pending());
                tracing::info!(url = %console.url(), "console listening (postern console token prints a login link)");
                Some(console)
            }
            None => None,
        };
        let admin = HubAdmin {
            config,
            subscriptions,
            trust,
            refresh,
            sync,
            receive_connectors: compiled.receive_connectors,
        };
        Ok(Self {
            node,
            admin,
            mail,
            dkim,
            console,
        })
    }

    /// The admin router: common services plus the hub's.
    pub fn router(&self) -> tonic::transport::server::Router {
        runtime::admin_router(self)
    }
}

impl RunningNode for Hub {
    fn node(&self) -> &Node {
        &self.node
    }

    fn mail(&self) -> &NodeMail {
        &self.mail
    }

    /// The configuration, subscriptions, EdgeSync, console, DKIM and
    /// published-records services.
    fn services(&self, router: tonic::transport::server::Router) -> tonic::transport::server::Router {
        router
            .add_service(ConfigServer::new(self.admin.clone()))
            .add_service(EdgeSubscriptionsServer::new(self.admin.clone()))
            .add_service(EdgeSyncStartServer::new(self.admin.clone()))
            .add_service(EdgeSyncStatusServer::new(self.admin.clone()))
            .add_service(ConsoleServer::new(console::ConsoleService::new(
                self.console.clone(),
            )))
            .add_service(DkimServer::new(DkimService {
                keys: self.dkim.clone(),
                config: self.admin.config.clone(),
            }))
            .add_service(postern_transport::internet_tls::admin::service(
                self.mail.tls_reporter().clone(),
                hub_records(self.node.clone()),
            ))
    }
}

/// A hub publishes no MTA-STS policy of its own (edges face the
/// Internet): the TLSA records of its SMTP certificates only.
fn hub_records(node: Node) -> postern_transport::internet_tls::admin::RecordSource {
    Arc::new(move || {
        let certs =
            postern_transport::internet_tls::publish::smtp_certificates(&node.certs).map_err(|e| {
                postern_transport::internet_tls::admin::RecordsError {
                    what: "the certificate store",
                    why: e.to_string(),
                }
            })?;
        Ok(postern_transport::internet_tls::publish::dns_records(
            &[],
            None,
            &node.identity.fqdn,
            &certs,
        ))
    })
}

/// Sets the hub up (first start) or opens it, then serves until `shutdown`.
pub async fn run(opts: HubOptions, shutdown: impl Future<Output = ()> + Send) -> Result<(), HubError> {
    let hub = Hub::start(&opts).await?;
    Ok(runtime::run(&hub, shutdown).await?)
}

/// Keeps the EdgeSync figures of `metrics` current (once a second).
fn follow_edgesync(sync: SyncManager, config: HubConfig, metrics: Arc<Metrics>) {
    tokio::spawn(async move {
        loop {
            let samples = sync
                .statuses()
                .into_iter()
                .map(|s| EdgeSyncSample {
                    edge: s.edge.clone(),
                    edge_version: s.edge_version,
                    lag: s.lag(),
                    in_sync: s.state == SyncState::InSync,
                    snapshots_sent: s.snapshots_sent,
                    deltas_sent: s.deltas_sent,
                })
                .collect();
            metrics.set_edgesync(config.version().0, samples);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
}

/// Republishes `HubInfo` whenever the certificate store changes (woken by
/// its generation's watch, no polling), so edges learn a newly enabled hub
/// certificate (and forget a removed one); the hub's own trust anchors
/// follow through the compiled configuration.
fn watch_certificates(node: Node, config: HubConfig, subscriptions: Subscriptions, endpoint: String) {
    let mut generations = node.certs.watch();
    tokio::spawn(async move {
        while generations.changed().await.is_ok() {
            generations.borrow_and_update();
            if let Err(e) = publish_self(&node, &config, &subscriptions, &endpoint).await {
                tracing::error!(error = %e, "cannot publish the hub's certificates");
            }
        }
    });
}

/// Writes this hub's `HubInfo` (SMTP endpoint and the public parts of its
/// SMTP certificates; never a private key) into the configuration when it
/// changed, and the sites' inbound connectors that list every hub.
async fn publish_self(
    node: &Node,
    config: &HubConfig,
    subscriptions: &Subscriptions,
    smtp_endpoint: &str,
) -> Result<(), HubError> {
    let certificates: Vec<Vec<u8>> = node
        .certs
        .list()
        .map_err(NodeError::from)?
        .into_iter()
        .filter(|c| c.services.contains(&Service::Smtp) && c.has_private_key)
        .filter(|c| !matches!(c.rotation, Some(postern_tls::certs::Rotation::Retired { .. })))
        .filter_map(|c| node.certs.certified_key(&c.thumbprint).ok())
        .filter_map(|k| k.cert.first().map(|d| d.as_ref().to_vec()))
        .collect();
    let info = HubInfo {
        name: node.identity.name.clone(),
        fqdn: node.identity.fqdn.clone(),
        smtp_endpoint: smtp_endpoint.to_owned(),
        certificates,
    };
    let current = config.get(ObjectKind::Hub, node.identity.name.as_str()).ok();
    if current != Some(ReplicatedObject::Hub(info.clone())) {
        config
            .apply(vec![ChangeOp::Put(ReplicatedObject::Hub(info))])
            .await?;
        subscriptions.refresh_sites(config).await?;
    }
    Ok(())
}

/// Follows the organisation's configuration and subscriptions as this hub
/// and others change them: syncs (or stands by for) every subscribed edge,
/// stops for removed ones, and has the trust anchors compiled again (every
/// subscribed edge and every hub of the organisation: hubs accept each
/// other by direct trust of their published certificates). Woken by the
/// store's version and by its side records' change feed (subscriptions do
/// not move the version), no polling.
fn follow_organisation(
    config: HubConfig,
    subscriptions: Subscriptions,
    refresh: TrustRefresh,
    sync: SyncManager,
) {
    let mut versions = config.source().watch();
    let mut side = subscriptions.watch();
    tokio::spawn(async move {
        loop {
            match subscriptions.list() {
                Ok(subs) => {
                    for sub in &subs {
                        sync.ensure(sub.target());
                    }
                    for edge in sync.edges() {
                        if !subs.iter().any(|s| s.edge_name == edge) {
                            sync.stop(&edge);
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read the subscriptions"),
            }
            refresh.pinned_peers_changed();
            // The store outlives this task (it holds it): a closed feed
            // means the hub is going away.
            let woken = tokio::select! {
                r = versions.changed() => r,
                r = side.changed() => r,
            };
            if woken.is_err() {
                break;
            }
        }
    });
}
