//! The edge's replica of the hub configuration: objects applied from
//! snapshots and deltas, each in one sled transaction, with the applied
//! store id and version. Read by the edge's routing and recipient
//! filtering; written only by EdgeSync.

use std::sync::Arc;

use postern_model::{Change, ChangeOp, ConfigVersion, ObjectKey, ObjectKind, ReplicatedObject};
use sled::Transactional;
use sled::transaction::TransactionError;

use crate::source::SourceError;
use crate::store::{decode, encode};

const VERSION_KEY: &[u8] = b"version";
const STORE_ID_KEY: &[u8] = b"store-id";
const SNAPSHOTS_KEY: &[u8] = b"snapshots";
const FENCE_KEY: &[u8] = b"fence";

/// Where the replica stands: which hub store and version it applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// The hub store's id; empty before the first snapshot.
    pub store_id: String,
    /// The last version applied.
    pub version: ConfigVersion,
    /// How many snapshots (full resyncs) were ever applied.
    pub snapshots: u64,
}

/// Why a snapshot or delta was refused (the edge keeps its previous state).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A delta that does not start where the replica stands.
    #[error(
        "delta from version {from} of store {store} does not follow the replica (store {have_store}, version {have})"
    )]
    Gap {
        /// The delta's store.
        store: String,
        /// The delta's first version minus one.
        from: ConfigVersion,
        /// The replica's store.
        have_store: String,
        /// The replica's version.
        have: ConfigVersion,
    },
    /// The store failed or a record did not parse.
    #[error(transparent)]
    Store(#[from] SourceError),
}

/// Why a hub's stream or update was refused by the fencing check.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// A newer lease was seen: this hub lost the edge.
    #[error(
        "the hub's EdgeSync lease (revision {token}) is older than one this edge has seen (revision {newest}): another hub took this edge over"
    )]
    Stale {
        /// The stream's token.
        token: u64,
        /// The newest token seen.
        newest: u64,
    },
    /// The token could not be recorded.
    #[error(transparent)]
    Store(#[from] SourceError),
}

impl FenceError {
    /// The gRPC status a hub gets for it, `reason` its text: a stale lease
    /// is FailedPrecondition (the hub gives the lease up and stands by),
    /// a store failure Unavailable (the hub retries).
    pub fn status(&self, reason: String) -> tonic::Status {
        match self {
            Self::Stale { .. } => tonic::Status::failed_precondition(reason),
            Self::Store(_) => tonic::Status::unavailable(reason),
        }
    }
}

/// The edge replica.
#[derive(Clone)]
pub struct Replica {
    db: sled::Db,
    objects: sled::Tree,
    meta: sled::Tree,
    tx: Arc<tokio::sync::watch::Sender<Applied>>,
    fence: Arc<std::sync::Mutex<Fence>>,
}

/// The newest EdgeSync lease seen: its store and fencing token.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fence {
    /// The store whose hubs hand the token out.
    pub store_id: String,
    /// The token (the lease key's create revision).
    pub token: u64,
}

impl Replica {
    /// Opens (creating) the replica trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, SourceError> {
        let objects = db.open_tree("replica/objects")?;
        let meta = db.open_tree("replica/meta")?;
        let applied = read_applied(&meta)?;
        let fence = match meta.get(FENCE_KEY)? {
            Some(v) => decode(&v)?,
            None => Fence::default(),
        };
        let (tx, _) = tokio::sync::watch::channel(applied);
        Ok(Self {
            db: db.clone(),
            objects,
            meta,
            tx: Arc::new(tx),
            fence: Arc::new(std::sync::Mutex::new(fence)),
        })
    }

    /// What has been applied.
    pub fn applied(&self) -> Applied {
        self.tx.borrow().clone()
    }

    /// A receiver that sees every applied version (for routing reloads).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<Applied> {
        self.tx.subscribe()
    }

    /// Replaces the whole replica with a snapshot.
    pub fn apply_snapshot(
        &self,
        store_id: &str,
        version: ConfigVersion,
        objects: &[ReplicatedObject],
    ) -> Result<(), ApplyError> {
        let encoded: Vec<(ObjectKey, Vec<u8>)> = objects
            .iter()
            .map(|o| Ok((o.key(), encode(o)?)))
            .collect::<Result<_, SourceError>>()?;
        let snapshots = self.applied().snapshots + 1;
        let existing: Vec<sled::IVec> = self
            .objects
            .iter()
            .keys()
            .collect::<Result<_, _>>()
            .map_err(SourceError::from)?;
        let result: Result<(), TransactionError<()>> =
            (&self.objects, &self.meta).transaction(|(objs, meta)| {
                for key in &existing {
                    objs.remove(key)?;
                }
                for (key, value) in &encoded {
                    objs.insert(key.0.as_bytes(), value.as_slice())?;
                }
                meta.insert(STORE_ID_KEY, store_id.as_bytes())?;
                meta.insert(VERSION_KEY, &version.0.to_be_bytes())?;
                meta.insert(SNAPSHOTS_KEY, &snapshots.to_be_bytes())?;
                Ok(())
            });
        finish(result)?;
        self.commit(Applied {
            store_id: store_id.to_owned(),
            version,
            snapshots,
        })
    }

    /// Applies changes that follow the replica's version of the same store,
    /// bringing it to `to` (versions may be sparse: a store whose versions
    /// are etcd revisions skips the revisions of other keys). Changes at or
    /// below the applied version are skipped (a replay from another hub is
    /// harmless).
    pub fn apply_delta(
        &self,
        store_id: &str,
        from: ConfigVersion,
        to: ConfigVersion,
        changes: &[Change],
    ) -> Result<(), ApplyError> {
        let have = self.applied();
        if have.store_id != store_id || from > have.version {
            return Err(ApplyError::Gap {
                store: store_id.to_owned(),
                from,
                have_store: have.store_id,
                have: have.version,
            });
        }
        let fresh: Vec<&Change> = changes.iter().filter(|c| c.version > have.version).collect();
        let last = fresh.last().map_or(to, |c| c.version.max(to));
        if last <= have.version {
            return Ok(());
        }
        let encoded: Vec<(ObjectKey, Option<Vec<u8>>)> = fresh
            .iter()
            .map(|c| match &c.op {
                ChangeOp::Put(o) => Ok((o.key(), Some(encode(o)?))),
                ChangeOp::Delete(k) => Ok((k.clone(), None)),
            })
            .collect::<Result<_, SourceError>>()?;
        let result: Result<(), TransactionError<()>> =
            (&self.objects, &self.meta).transaction(|(objs, meta)| {
                for (key, value) in &encoded {
                    match value {
                        Some(v) => objs.insert(key.0.as_bytes(), v.as_slice())?,
                        None => objs.remove(key.0.as_bytes())?,
                    };
                }
                meta.insert(VERSION_KEY, &last.0.to_be_bytes())?;
                Ok(())
            });
        finish(result)?;
        self.commit(Applied {
            store_id: store_id.to_owned(),
            version: last,
            snapshots: have.snapshots,
        })
    }

    /// Admits a stream from a hub of `store_id` holding lease token
    /// `token`: refused (with the newest token seen) when a newer lease of
    /// the same store was seen; otherwise recorded, durably, as the newest.
    pub fn admit_fence(&self, store_id: &str, token: u64) -> Result<(), FenceError> {
        let mut fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        if fence.store_id == store_id && token < fence.token {
            return Err(FenceError::Stale {
                token,
                newest: fence.token,
            });
        }
        if fence.store_id != store_id || token > fence.token {
            let next = Fence {
                store_id: store_id.to_owned(),
                token,
            };
            self.meta
                .insert(FENCE_KEY, encode(&next)?)
                .map_err(SourceError::from)?;
            self.db.flush().map_err(SourceError::from)?;
            *fence = next;
        }
        Ok(())
    }

    /// Whether `token` of `store_id` is still the newest lease (checked
    /// before every update a stream carries).
    pub fn fence_current(&self, store_id: &str, token: u64) -> Result<(), FenceError> {
        let fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        if fence.store_id == store_id && token < fence.token {
            return Err(FenceError::Stale {
                token,
                newest: fence.token,
            });
        }
        Ok(())
    }

    /// The newest lease seen.
    pub fn fence(&self) -> Fence {
        self.fence.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The object under `key`.
    pub fn get(&self, key: &ObjectKey) -> Result<Option<ReplicatedObject>, SourceError> {
        self.objects
            .get(key.0.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Every object of `kind` (`send-connector`, `hub`, …).
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, SourceError> {
        let prefix = kind.key_prefix();
        self.objects
            .scan_prefix(prefix.as_bytes())
            .values()
            .map(|v| decode(&v?))
            .collect()
    }

    /// Every object.
    pub fn all(&self) -> Result<Vec<ReplicatedObject>, SourceError> {
        self.objects.iter().values().map(|v| decode(&v?)).collect()
    }

    fn commit(&self, applied: Applied) -> Result<(), ApplyError> {
        self.db.flush().map_err(SourceError::from)?;
        self.tx.send_replace(applied);
        Ok(())
    }
}

fn finish(result: Result<(), TransactionError<()>>) -> Result<(), ApplyError> {
    result.map_err(|e| match e {
        TransactionError::Storage(e) => ApplyError::Store(SourceError::Store(e)),
        TransactionError::Abort(()) => ApplyError::Store(SourceError::Corrupt("transaction aborted".into())),
    })
}

fn read_applied(meta: &sled::Tree) -> Result<Applied, SourceError> {
    let store_id = meta
        .get(STORE_ID_KEY)?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default();
    let version = match meta.get(VERSION_KEY)? {
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| SourceError::Corrupt("replica version".into()))?;
            ConfigVersion(u64::from_be_bytes(bytes))
        }
        None => ConfigVersion::ZERO,
    };
    let snapshots = match meta.get(SNAPSHOTS_KEY)? {
        Some(v) => u64::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| SourceError::Corrupt("snapshots".into()))?,
        ),
        None => 0,
    };
    Ok(Applied {
        store_id,
        version,
        snapshots,
    })
}

/// A local change to the replica of an edge that has no subscription yet.
#[derive(Debug, thiserror::Error)]
pub enum LocalChangeError {
    /// The edge is subscribed: EdgeSync owns its replicated objects.
    #[error("{0} objects are managed by EdgeSync; change it on a hub")]
    Managed(ObjectKind),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] SourceError),
}

impl Replica {
    /// Whether a hub has synced this replica (its objects are then read-only).
    pub fn is_subscribed(&self) -> bool {
        !self.applied().store_id.is_empty()
    }

    /// Stores an object made locally on a standalone edge; the first
    /// snapshot of a subscription replaces all of them.
    pub fn put_local(&self, object: &ReplicatedObject) -> Result<(), LocalChangeError> {
        if self.is_subscribed() {
            return Err(LocalChangeError::Managed(object.kind()));
        }
        self.objects
            .insert(object.key().0.as_bytes(), encode(object)?)
            .map_err(SourceError::from)?;
        self.db.flush().map_err(SourceError::from)?;
        let applied = self.applied();
        self.tx.send_replace(applied);
        Ok(())
    }

    /// Removes a locally made object of a standalone edge.
    pub fn remove_local(&self, kind: ObjectKind, key: &ObjectKey) -> Result<bool, LocalChangeError> {
        if self.is_subscribed() {
            return Err(LocalChangeError::Managed(kind));
        }
        let removed = self
            .objects
            .remove(key.0.as_bytes())
            .map_err(SourceError::from)?
            .is_some();
        self.db.flush().map_err(SourceError::from)?;
        let applied = self.applied();
        self.tx.send_replace(applied);
        Ok(removed)
    }
}
