//! `ConfigSource`: what the hub side of EdgeSync needs from a
//! configuration store — its version, a snapshot, the changes since a
//! version, and a way to wait for the next change. `ConfigStore` adds what
//! the hub's administration needs — reads, guarded writes and side spaces
//! (hub-only records such as subscriptions and mailbox addresses). Two
//! implementations: `ChangeLogStore` (sled, one hub) and `EtcdStore`
//! (etcd v3, several hubs of one organisation).

use postern_model::{Change, ChangeOp, ConfigVersion, ObjectKey, ObjectKind, ReplicatedObject};

/// The refusal of a write whose read is no longer current.
pub const CONFLICT: &str = "changed by another administrator since you read it; read again";

/// Why the source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store failed.
    #[error("configuration store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record cannot be read back.
    #[error("configuration store record is corrupt: {0}")]
    Corrupt(String),
    /// etcd did not answer or refused (nothing was changed).
    #[error("configuration store etcd is unavailable ({0}); nothing was changed, try again when it is back")]
    Unavailable(String),
    /// A guarded write lost against a concurrent one (nothing was changed).
    #[error("{CONFLICT}")]
    Conflict,
    /// No etcd member answered a write in time: it may have been applied.
    #[error(
        "configuration store etcd did not answer ({0}); the change may or may not have been applied: read again before repeating it"
    )]
    Uncertain(String),
}

/// The hub's configuration as EdgeSync reads it.
#[tonic::async_trait]
pub trait ConfigSource: Send + Sync + 'static {
    /// Names the version space: an edge that applied versions of another
    /// store needs a snapshot.
    fn store_id(&self) -> String;

    /// The current version.
    fn version(&self) -> ConfigVersion;

    /// Every replicated object, at the version returned.
    fn snapshot(&self) -> Result<(ConfigVersion, Vec<ReplicatedObject>), SourceError>;

    /// The changes after `since` up to the current version, oldest first,
    /// or `None` when the log no longer reaches back that far (the edge
    /// then gets a snapshot).
    async fn changes_since(&self, since: ConfigVersion) -> Result<Option<Vec<Change>>, SourceError>;

    /// A receiver that sees every new version as it is committed.
    fn watch(&self) -> tokio::sync::watch::Receiver<ConfigVersion>;
}

/// A write to a space outside the replicated set, made in the same
/// transaction (e.g. the hub's readable mailbox list).
#[derive(Clone, Debug)]
pub struct SideWrite {
    /// The space (a sled tree, an etcd key prefix).
    pub space: String,
    /// The key.
    pub key: Vec<u8>,
    /// The value, or `None` to remove.
    pub value: Option<Vec<u8>>,
}

/// One atomic write: replicated changes plus side writes, guarded by the
/// version the writer read.
#[derive(Clone, Debug, Default)]
pub struct Write {
    /// Replicated changes.
    pub ops: Vec<ChangeOp>,
    /// Hub-only records.
    pub side: Vec<SideWrite>,
    /// The version the writer's decision rests on: the write is refused
    /// (`SourceError::Conflict`) when a key it touches changed after it.
    /// `None` writes unconditionally.
    pub read: Option<ConfigVersion>,
}

/// The hub's authoritative store.
#[tonic::async_trait]
pub trait ConfigStore: ConfigSource {
    /// The object stored under `key`.
    fn get(&self, key: &ObjectKey) -> Result<Option<ReplicatedObject>, SourceError>;

    /// Every object of `kind`.
    fn list(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, SourceError>;

    /// A side record.
    fn side_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, SourceError>;

    /// Every side record of `space`, in key order.
    fn side_list(&self, space: &str) -> Result<Vec<Vec<u8>>, SourceError>;

    /// Applies `write` atomically; returns the new version. An empty write
    /// changes nothing.
    async fn apply(&self, write: Write) -> Result<ConfigVersion, SourceError>;

    /// A receiver woken at every change of a side record, whichever hub
    /// wrote it (side writes do not move the version): the change feed of
    /// subscriptions and other hub-only records. It carries how many
    /// batches of side changes the store has seen.
    fn watch_side(&self) -> tokio::sync::watch::Receiver<u64>;

    /// The version a guarded write's checks stand on: every change the
    /// hub has seen, side records included.
    fn read_version(&self) -> ConfigVersion {
        self.version()
    }

    /// Which hub holds each edge's EdgeSync lease (several-hub stores only).
    fn lease_holders(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}
