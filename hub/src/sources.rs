//! Where the hub's compiled configuration comes from: the authoritative
//! store's objects and the subscribed edges' certificates
//! ([`HubSources`]); and [`TrustRefresh`], which has the trust anchors
//! compiled again at once after a subscription or a trusted root changed.

use postern_model::{ConfigVersion, ObjectKind, ReplicatedObject, Thumbprint, TransportConfig};
use postern_tls::TrustStore;
use postern_transport::node_config::{
    Changed, CompileError, NodeConfigCompiler, OrganisationSource, apply_trust,
};
use tokio::sync::watch;

use crate::config::HubConfig;
use crate::subscriptions::Subscriptions;

/// The hub's organisation objects: its store and its subscriptions.
pub struct HubSources {
    /// The authoritative store.
    pub config: HubConfig,
    /// The edge subscriptions (their certificates are pinned).
    pub subscriptions: Subscriptions,
}

fn read(what: &'static str) -> impl Fn(String) -> CompileError {
    move |why| CompileError::Read { what, why }
}

impl OrganisationSource for HubSources {
    type Version = ConfigVersion;

    /// Every version committed to the store (by this hub or another).
    fn watch(&self) -> watch::Receiver<ConfigVersion> {
        postern_edgesync::ConfigSource::watch(self.config.source().as_ref())
    }

    fn transport_config(&self) -> Result<TransportConfig, CompileError> {
        self.config
            .transport_config()
            .map_err(|e| read("the transport configuration")(e.to_string()))
    }

    fn objects(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, CompileError> {
        self.config.list(kind).map_err(|e| CompileError::Read {
            what: "the configuration store",
            why: format!("{kind}: {e}"),
        })
    }

    fn pinned_peers(&self) -> Result<Vec<Thumbprint>, CompileError> {
        // Each edge's certificate, and its previous one during a rotation's grace.
        self.subscriptions
            .trusted()
            .map_err(|e| read("the edge subscriptions")(e.to_string()))
    }
}

/// Has the hub's trust anchors compiled again and put into its trust store
/// now (the follower of the snapshot would a moment later), so a removed
/// subscription or a new trusted root applies to the next handshake.
#[derive(Clone)]
pub struct TrustRefresh {
    compiler: NodeConfigCompiler,
    trust: TrustStore,
}

impl TrustRefresh {
    /// Refreshes `trust` from `compiler`.
    pub fn new(compiler: NodeConfigCompiler, trust: TrustStore) -> Self {
        Self { compiler, trust }
    }

    /// The subscriptions changed: compile the trust anchors again. A
    /// failure keeps the anchors in force (logged and counted by the
    /// compiler).
    pub fn pinned_peers_changed(&self) {
        self.recompile(Changed::PinnedPeers);
    }

    /// The store changed (a trusted root added or removed): compile again.
    pub fn store_changed(&self) {
        self.recompile(Changed::Organisation);
    }

    fn recompile(&self, changed: Changed) {
        if self.compiler.recompile_changed(&[changed]).is_ok() {
            apply_trust(&self.compiler.current().trust, &self.trust);
        }
    }
}
