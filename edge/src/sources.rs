//! Where the edge's compiled configuration comes from: its replica of the
//! hub configuration, kept by EdgeSync.

use postern_edgesync::{Applied, Replica};
use postern_model::{ObjectKey, ObjectKind, ReplicatedObject, Thumbprint, TransportConfig};
use postern_transport::node_config::{CompileError, OrganisationSource};
use tokio::sync::watch;

/// The edge's organisation objects: its replica.
pub struct ReplicaSources {
    /// The replica.
    pub replica: Replica,
}

impl OrganisationSource for ReplicaSources {
    type Version = Applied;

    /// Every snapshot or change applied to the replica.
    fn watch(&self) -> watch::Receiver<Applied> {
        self.replica.watch()
    }

    fn transport_config(&self) -> Result<TransportConfig, CompileError> {
        transport_config_of(&self.replica).map_err(|why| CompileError::Read {
            what: "the replicated transport configuration",
            why,
        })
    }

    fn objects(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, CompileError> {
        self.replica.list(kind).map_err(|e| CompileError::Read {
            what: "the replica",
            why: format!("{kind}: {e}"),
        })
    }

    /// An edge pins no certificate besides the hubs' published ones.
    fn pinned_peers(&self) -> Result<Vec<Thumbprint>, CompileError> {
        Ok(Vec::new())
    }
}

/// The replicated transport configuration; the defaults before the edge
/// is subscribed; an error when the replica cannot be read or holds
/// something else under its key.
pub fn transport_config_of(replica: &Replica) -> Result<TransportConfig, String> {
    match replica.get(&ObjectKey::of(ObjectKind::TransportConfig, "")) {
        Ok(Some(ReplicatedObject::TransportConfig(c))) => Ok(c),
        // Not subscribed yet: the defaults, as Exchange's Edge has.
        Ok(None) => Ok(TransportConfig::default()),
        Ok(Some(other)) => Err(format!("found {:?} under transport-config", other.key())),
        Err(e) => Err(e.to_string()),
    }
}
