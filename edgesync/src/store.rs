//! `ChangeLogStore`: a sled-backed, monotonically versioned object store
//! with a bounded change log — the hub's authoritative configuration.
//!
//! Trees: `config/objects` (key → object JSON), `config/log` (version, big
//! endian → change JSON), `config/meta` (version, store id). Each `apply`
//! is one transaction (objects, log and version together), flushed before
//! it returns, then announced on a watch channel: EdgeSync pushes on
//! commit, no polling.

use std::sync::Arc;

use postern_model::{Change, ChangeOp, ConfigVersion, ObjectKey, ObjectKind, ReplicatedObject};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::source::{ConfigSource, ConfigStore, SideWrite, SourceError, Write};

const VERSION_KEY: &[u8] = b"version";
const STORE_ID_KEY: &[u8] = b"store-id";

/// Changes kept in the log; edges further behind get a snapshot.
pub const DEFAULT_LOG_LIMIT: u64 = 10_000;

/// The versioned store.
#[derive(Clone)]
pub struct ChangeLogStore {
    db: sled::Db,
    objects: sled::Tree,
    log: sled::Tree,
    meta: sled::Tree,
    store_id: String,
    log_limit: u64,
    tx: Arc<tokio::sync::watch::Sender<ConfigVersion>>,
    /// Bumped after every write with side records.
    side_tx: Arc<tokio::sync::watch::Sender<u64>>,
}

impl ChangeLogStore {
    /// Opens (creating) the store in `db`.
    pub fn open(db: &sled::Db, log_limit: u64) -> Result<Self, SourceError> {
        let objects = db.open_tree("config/objects")?;
        let log = db.open_tree("config/log")?;
        let meta = db.open_tree("config/meta")?;
        let store_id = match meta.get(STORE_ID_KEY)? {
            Some(id) => String::from_utf8_lossy(&id).into_owned(),
            None => {
                let id = new_store_id();
                meta.insert(STORE_ID_KEY, id.as_bytes())?;
                db.flush()?;
                id
            }
        };
        let version = read_version(&meta)?;
        let (tx, _) = tokio::sync::watch::channel(version);
        Ok(Self {
            db: db.clone(),
            objects,
            log,
            meta,
            store_id,
            log_limit: log_limit.max(1),
            tx: Arc::new(tx),
            side_tx: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// Applies `ops` atomically (plus `side` writes), bumping the version
    /// once per op; returns the new version. A no-op list changes nothing.
    pub fn apply(&self, ops: Vec<ChangeOp>, side: Vec<SideWrite>) -> Result<ConfigVersion, SourceError> {
        if ops.is_empty() && side.is_empty() {
            return Ok(self.version());
        }
        let encoded: Vec<(ObjectKey, Option<Vec<u8>>, ChangeOp)> = ops
            .into_iter()
            .map(|op| {
                let (key, value) = match &op {
                    ChangeOp::Put(obj) => (obj.key(), Some(encode(obj)?)),
                    ChangeOp::Delete(key) => (key.clone(), None),
                };
                Ok((key, value, op))
            })
            .collect::<Result<_, SourceError>>()?;
        let side_trees: Vec<sled::Tree> = side
            .iter()
            .map(|s| self.db.open_tree(&s.space))
            .collect::<Result<_, _>>()?;
        let mut trees = vec![self.objects.clone(), self.log.clone(), self.meta.clone()];
        trees.extend(side_trees);
        let result: Result<ConfigVersion, TransactionError<SourceError>> =
            trees.as_slice().transaction(|t| {
                let (objects, log, meta) = (&t[0], &t[1], &t[2]);
                let mut version = match meta.get(VERSION_KEY)? {
                    Some(v) => decode_version(&v).map_err(ConflictableTransactionError::Abort)?,
                    None => ConfigVersion::ZERO,
                };
                for (key, value, op) in &encoded {
                    version = version.next();
                    match value {
                        Some(v) => objects.insert(key.0.as_bytes(), v.as_slice())?,
                        None => objects.remove(key.0.as_bytes())?,
                    };
                    let change = Change {
                        version,
                        op: op.clone(),
                    };
                    let change = encode(&change).map_err(ConflictableTransactionError::Abort)?;
                    log.insert(&version.0.to_be_bytes(), change)?;
                    if version.0 > self.log_limit {
                        log.remove(&(version.0 - self.log_limit).to_be_bytes())?;
                    }
                }
                for (i, s) in side.iter().enumerate() {
                    let tree = &t[3 + i];
                    match &s.value {
                        Some(v) => tree.insert(s.key.as_slice(), v.as_slice())?,
                        None => tree.remove(s.key.as_slice())?,
                    };
                }
                meta.insert(VERSION_KEY, &version.0.to_be_bytes())?;
                Ok(version)
            });
        let version = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => SourceError::Store(e),
        })?;
        self.db.flush()?;
        self.tx.send_replace(version);
        if !side.is_empty() {
            self.side_tx.send_modify(|n| *n += 1);
        }
        Ok(version)
    }

    /// The object stored under `key`.
    pub fn get(&self, key: &ObjectKey) -> Result<Option<ReplicatedObject>, SourceError> {
        self.objects
            .get(key.0.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Every object of `kind`.
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, SourceError> {
        let prefix = kind.key_prefix();
        self.objects
            .scan_prefix(prefix.as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// The sled database (for side trees).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

#[tonic::async_trait]
impl ConfigStore for ChangeLogStore {
    fn get(&self, key: &ObjectKey) -> Result<Option<ReplicatedObject>, SourceError> {
        ChangeLogStore::get(self, key)
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, SourceError> {
        ChangeLogStore::list(self, kind)
    }

    fn side_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, SourceError> {
        Ok(self.db.open_tree(space)?.get(key)?.map(|v| v.to_vec()))
    }

    fn side_list(&self, space: &str) -> Result<Vec<Vec<u8>>, SourceError> {
        self.db
            .open_tree(space)?
            .iter()
            .values()
            .map(|v| Ok(v?.to_vec()))
            .collect()
    }

    /// One hub writes here, in one process: the read guard has nothing to
    /// race with, so it is not checked.
    async fn apply(&self, write: Write) -> Result<ConfigVersion, SourceError> {
        ChangeLogStore::apply(self, write.ops, write.side)
    }

    /// Announced by `apply`: one hub writes here, so every side write is
    /// this process's.
    fn watch_side(&self) -> tokio::sync::watch::Receiver<u64> {
        self.side_tx.subscribe()
    }
}

#[tonic::async_trait]
impl ConfigSource for ChangeLogStore {
    fn store_id(&self) -> String {
        self.store_id.clone()
    }

    fn version(&self) -> ConfigVersion {
        *self.tx.borrow()
    }

    fn snapshot(&self) -> Result<(ConfigVersion, Vec<ReplicatedObject>), SourceError> {
        // sled iterators are not snapshots: retry until the version held still.
        loop {
            let before = read_version(&self.meta)?;
            let objects = self
                .objects
                .iter()
                .values()
                .map(|v| decode(&v?))
                .collect::<Result<Vec<_>, _>>()?;
            if read_version(&self.meta)? == before {
                return Ok((before, objects));
            }
        }
    }

    async fn changes_since(&self, since: ConfigVersion) -> Result<Option<Vec<Change>>, SourceError> {
        let current = read_version(&self.meta)?;
        if since >= current {
            return Ok(Some(Vec::new()));
        }
        let first = since.0 + 1;
        let mut changes = Vec::new();
        for item in self.log.range(first.to_be_bytes()..) {
            let (_, v) = item?;
            changes.push(decode::<Change>(&v)?);
        }
        match changes.first() {
            Some(c) if c.version.0 == first => Ok(Some(changes)),
            _ => Ok(None),
        }
    }

    fn watch(&self) -> tokio::sync::watch::Receiver<ConfigVersion> {
        self.tx.subscribe()
    }
}

fn read_version(meta: &sled::Tree) -> Result<ConfigVersion, SourceError> {
    match meta.get(VERSION_KEY)? {
        Some(v) => decode_version(&v),
        None => Ok(ConfigVersion::ZERO),
    }
}

fn decode_version(v: &[u8]) -> Result<ConfigVersion, SourceError> {
    let bytes: [u8; 8] = v
        .try_into()
        .map_err(|_| SourceError::Corrupt("version is not 8 bytes".into()))?;
    Ok(ConfigVersion(u64::from_be_bytes(bytes)))
}

pub(crate) fn new_store_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, SourceError> {
    serde_json::to_vec(value).map_err(|e| SourceError::Corrupt(e.to_string()))
}

pub(crate) fn decode<T: for<'de> serde::Deserialize<'de>>(bytes: &[u8]) -> Result<T, SourceError> {
    serde_json::from_slice(bytes).map_err(|e| SourceError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_model::{AcceptedDomain, AcceptedDomainKind, Domain, TransportConfig};

    fn domain(name: &str) -> ReplicatedObject {
        ReplicatedObject::AcceptedDomain(AcceptedDomain {
            name: Domain::parse(name).unwrap(),
            kind: AcceptedDomainKind::Authoritative,
            delivery: Default::default(),
        })
    }

    #[tokio::test]
    async fn versions_log_snapshot_and_watch() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::open(tmp.path()).unwrap();
        let store = ChangeLogStore::open(&db, 3).unwrap();
        let mut watch = store.watch();
        assert_eq!(store.version(), ConfigVersion::ZERO);
        let v = store
            .apply(
                vec![
                    ChangeOp::Put(domain("adatum.com")),
                    ChangeOp::Put(ReplicatedObject::TransportConfig(TransportConfig::default())),
                ],
                vec![],
            )
            .unwrap();
        assert_eq!(v, ConfigVersion(2));
        watch.changed().await.unwrap();
        assert_eq!(*watch.borrow(), ConfigVersion(2));
        let changes = store.changes_since(ConfigVersion(1)).await.unwrap().unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].version, ConfigVersion(2));
        store
            .apply(vec![ChangeOp::Delete(domain("adatum.com").key())], vec![])
            .unwrap();
        store
            .apply(vec![ChangeOp::Put(domain("contoso.com"))], vec![])
            .unwrap();
        // The log keeps 3 changes: versions 2..=4; version 0 needs a snapshot.
        assert!(store.changes_since(ConfigVersion(0)).await.unwrap().is_none());
        assert_eq!(
            store
                .changes_since(ConfigVersion(1))
                .await
                .unwrap()
                .unwrap()
                .len(),
            3
        );
        let (version, objects) = store.snapshot().unwrap();
        assert_eq!(version, ConfigVersion(4));
        assert_eq!(objects.len(), 2);
        let id = store.store_id();
        drop(store);
        let reopened = ChangeLogStore::open(&db, 3).unwrap();
        assert_eq!(reopened.store_id(), id);
        assert_eq!(reopened.version(), ConfigVersion(4));
        assert_eq!(
            reopened.list(ObjectKind::AcceptedDomain).unwrap(),
            vec![domain("contoso.com")]
        );
    }

    #[tokio::test]
    async fn a_side_write_is_announced_on_the_side_feed_only_when_it_has_side_records() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::open(tmp.path()).unwrap();
        let store = ChangeLogStore::open(&db, 3).unwrap();
        let mut side = ConfigStore::watch_side(&store);
        store
            .apply(vec![ChangeOp::Put(domain("adatum.com"))], vec![])
            .unwrap();
        assert!(!side.has_changed().unwrap(), "no side record was written");
        let record = SideWrite {
            space: "hub/subscriptions".into(),
            key: b"edge1".to_vec(),
            value: Some(b"{}".to_vec()),
        };
        let version = store.apply(vec![], vec![record]).unwrap();
        assert_eq!(version, ConfigVersion(1), "side records do not move the version");
        tokio::time::timeout(std::time::Duration::from_secs(1), side.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*side.borrow_and_update(), 1);
    }
}
