//! `ConfigSource`: what the hub side of EdgeSync needs from a
//! configuration store — its version, a snapshot, the changes since a
//! version, and a way to wait for the next change. The hub implements it
//! over its authoritative store; `ChangeLogStore` is the sled one.

use postern_model::{Change, ConfigVersion, ReplicatedObject};

/// Why the source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The store failed.
    #[error("configuration store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record cannot be read back.
    #[error("configuration store record is corrupt: {0}")]
    Corrupt(String),
}

/// The hub's configuration as EdgeSync reads it.
pub trait ConfigSource: Send + Sync + 'static {
    /// Names the version space: an edge that applied versions of another
    /// store needs a snapshot.
    fn store_id(&self) -> String;

    /// The current version.
    fn version(&self) -> ConfigVersion;

    /// Every replicated object, at the version returned.
    fn snapshot(&self) -> Result<(ConfigVersion, Vec<ReplicatedObject>), SourceError>;

    /// The changes after `since`, oldest first, or `None` when the log no
    /// longer reaches back that far (the edge then gets a snapshot).
    fn changes_since(&self, since: ConfigVersion) -> Result<Option<Vec<Change>>, SourceError>;

    /// A receiver that sees every new version as it is committed.
    fn watch(&self) -> tokio::sync::watch::Receiver<ConfigVersion>;
}
