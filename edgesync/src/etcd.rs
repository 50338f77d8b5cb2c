//! `EtcdStore`: the hub store of an organisation with several hubs, on
//! etcd v3. Everything lives under one key prefix per organisation:
//!
//! * `obj/<object key>` — each replicated object (JSON);
//! * `side/<space>/<key>` — hub-only records (subscriptions, mailboxes);
//! * `meta/store-id` — the version space's id, made once by the first hub;
//! * `meta/version` — put by every write with replicated changes: its
//!   mod revision is the configuration version, the same on every hub;
//! * `lease/<edge>` — which hub syncs an edge (see `lease`).
//!
//! Each hub keeps a mirror of the prefix, loaded once and then followed by
//! an etcd watch, so reads (routing, the admin API, snapshots) never wait
//! for etcd and keep working while it is unreachable. Writes are one etcd
//! transaction guarded by the revision the writer read. The change feed of
//! an edge is a watch from its version; when etcd has compacted past it
//! the watch is cancelled and the edge gets a snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp, WatchOptions,
};
use postern_model::{Change, ChangeOp, ConfigVersion, ObjectKey, ObjectKind, ReplicatedObject};
use tokio::sync::watch;

use crate::source::{ConfigSource, ConfigStore, SourceError, Write};
use crate::store::{decode, encode};

/// How long one etcd request may take before the store reports etcd unavailable.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const OBJ: &str = "obj/";
const SIDE: &str = "side/";
const LEASE: &str = "lease/";
const VERSION_KEY: &str = "meta/version";
const STORE_ID_KEY: &str = "meta/store-id";

/// Where the mirror stands.
#[derive(Default)]
struct Mirror {
    objects: BTreeMap<String, ReplicatedObject>,
    side: BTreeMap<String, Vec<u8>>,
    holders: BTreeMap<String, String>,
}

/// One client per etcd member, and the member in use: a call that cannot
/// reach its member (refused, no leader) moves on to the next, so one
/// member down is not seen above this.
#[derive(Clone)]
pub(crate) struct Members {
    clients: Arc<Vec<Client>>,
    current: Arc<AtomicUsize>,
}

impl Members {
    async fn connect(endpoints: &[String]) -> Result<Self, SourceError> {
        let mut clients = Vec::new();
        for endpoint in endpoints {
            let options = ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(2))
                // A member that vanished without a word (its address now
                // drops packets) is noticed within 7 s; etcd refuses pings
                // more often than every 5 s.
                .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2))
                .with_keep_alive_while_idle(true);
            clients.push(
                Client::connect([endpoint], Some(options))
                    .await
                    .map_err(unavailable)?,
            );
        }
        if clients.is_empty() {
            return Err(SourceError::Unavailable("no etcd endpoint given".into()));
        }
        Ok(Self {
            clients: Arc::new(clients),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Moves on from member `from` (if still in use).
    pub(crate) fn rotate(&self, from: usize) {
        let next = (from + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The index of the member in use.
    pub(crate) fn index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.clients.len()
    }

    /// Runs `f` against the member in use, moving on to the next member
    /// while the call could not reach one (it was not executed then) or
    /// got no answer within [`REQUEST_TIMEOUT`] (a member that vanished
    /// without a word, or a proposal lost with its leader: it may have
    /// been executed, so `f` must be safe to repeat).
    pub(crate) async fn call<T, F, Fut>(&self, f: F) -> Result<T, SourceError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_within(REQUEST_TIMEOUT, f).await.map(|a| a.value)
    }

    /// Like `call`, with `attempt` as the time one member has to answer;
    /// says whether the call was repeated after a member did not answer.
    pub(crate) async fn call_within<T, F, Fut>(
        &self,
        attempt: Duration,
        f: F,
    ) -> Result<Answer<T>, SourceError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut last = None;
        let mut timed_out = 0;
        for _ in 0..self.clients.len() {
            let i = self.current.load(Ordering::Relaxed) % self.clients.len();
            match tokio::time::timeout(attempt, f(self.clients[i].clone())).await {
                Ok(Ok(value)) => {
                    return Ok(Answer {
                        value,
                        repeated_after_timeout: timed_out > 0,
                    });
                }
                Ok(Err(e)) if unreached(&e) => {
                    self.rotate(i);
                    last = Some(unavailable(e));
                }
                Ok(Err(e)) => return Err(unavailable(e)),
                Err(_) => {
                    self.rotate(i);
                    timed_out += 1;
                }
            }
        }
        if timed_out > 0 {
            return Err(SourceError::Uncertain(format!(
                "{timed_out} of {} members gave no answer within {}s",
                self.clients.len(),
                attempt.as_secs_f32()
            )));
        }
        Err(last.unwrap_or_else(|| SourceError::Unavailable("no etcd member".into())))
    }
}

/// A member's answer, and whether the call was repeated on another member
/// after one gave none in time (an earlier attempt may have been executed).
pub(crate) struct Answer<T> {
    pub(crate) value: T,
    pub(crate) repeated_after_timeout: bool,
}

/// After a write was repeated and its guards failed: the revision of the
/// keys when every one of them holds what the write wanted (the attempt
/// that got no answer was applied), else `None` (another write won).
fn applied_already(resp: &etcd_client::TxnResponse, write: &Write, keys: &[String]) -> Option<i64> {
    let wanted: Vec<Option<Vec<u8>>> = write
        .ops
        .iter()
        .map(|op| match op {
            ChangeOp::Put(object) => encode(object).ok(),
            ChangeOp::Delete(_) => None,
        })
        .chain(write.side.iter().map(|s| s.value.clone()))
        .collect();
    let current: Vec<Option<(Vec<u8>, i64)>> = resp
        .op_responses()
        .into_iter()
        .map(|op| match op {
            etcd_client::TxnOpResponse::Get(get) => get
                .kvs()
                .first()
                .map(|kv| (kv.value().to_vec(), kv.mod_revision())),
            _ => None,
        })
        .collect();
    if current.len() != keys.len() || wanted.len() != keys.len() {
        return None;
    }
    let mut revision = 0;
    for (now, want) in current.iter().zip(&wanted) {
        match (now, want) {
            (Some((value, modified)), Some(v)) if value == v => revision = revision.max(*modified),
            (None, None) => {}
            _ => return None,
        }
    }
    Some(revision)
}

/// Whether a failed call never reached a member able to execute it.
fn unreached(e: &etcd_client::Error) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    [
        "connect",
        "unavailable",
        "no leader",
        "broken pipe",
        "connection reset",
    ]
    .iter()
    .any(|t| text.contains(t))
}

/// The etcd-backed store of one organisation.
pub struct EtcdStore {
    pub(crate) members: Members,
    pub(crate) prefix: String,
    store_id: String,
    mirror: Mutex<Mirror>,
    version: watch::Sender<ConfigVersion>,
    /// The highest etcd revision the mirror has applied.
    seen: watch::Sender<i64>,
    /// Bumped whenever the mirror's side records change (any hub's write).
    side: watch::Sender<u64>,
    pub(crate) lease: crate::lease::HubLease,
}

impl EtcdStore {
    /// Connects to `endpoints` (`host:port` or URLs), loads the
    /// organisation's prefix and follows it. Waits for etcd up to
    /// `patience` (a hub started beside its etcd cluster).
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        patience: Duration,
    ) -> Result<Arc<Self>, SourceError> {
        let members = Members::connect(endpoints).await?;
        let prefix = if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        let deadline = tokio::time::Instant::now() + patience;
        let store_id = loop {
            match ensure_store_id(&members, &prefix).await {
                Ok(id) => break id,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "waiting for etcd");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let (version, _) = watch::channel(ConfigVersion::ZERO);
        let (seen, _) = watch::channel(0);
        let store = Arc::new(Self {
            members,
            prefix,
            store_id,
            mirror: Mutex::new(Mirror::default()),
            version,
            seen,
            side: watch::channel(0).0,
            lease: crate::lease::HubLease::default(),
        });
        let revision = store.load().await?;
        tokio::spawn(follow(Arc::downgrade(&store), revision));
        tracing::info!(prefix = %store.prefix, store_id = %store.store_id, version = %store.version(), "etcd configuration store loaded");
        Ok(store)
    }

    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Reads the whole prefix into the mirror; returns the revision read at.
    async fn load(&self) -> Result<i64, SourceError> {
        let prefix = self.prefix.clone();
        let mut resp = self
            .members
            .call(|mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        let mut mirror = Mirror::default();
        let mut version = 0;
        for kv in resp.take_kvs() {
            if let Some(v) = self.put_into(&mut mirror, &kv)? {
                version = v;
            }
        }
        *lock(&self.mirror) = mirror;
        self.version.send_replace(ConfigVersion(version as u64));
        self.seen.send_replace(revision);
        // A reload (after compaction) may have replaced any side record.
        self.side.send_modify(|n| *n += 1);
        Ok(revision)
    }

    /// Applies a put to the mirror; returns the version when it is the marker.
    fn put_into(&self, mirror: &mut Mirror, kv: &KeyValue) -> Result<Option<i64>, SourceError> {
        let Some(rest) = self.suffix(kv.key()) else {
            return Ok(None);
        };
        if let Some(key) = rest.strip_prefix(OBJ) {
            mirror.objects.insert(key.to_owned(), decode(kv.value())?);
        } else if let Some(key) = rest.strip_prefix(SIDE) {
            mirror.side.insert(key.to_owned(), kv.value().to_vec());
        } else if let Some(edge) = rest.strip_prefix(LEASE) {
            mirror
                .holders
                .insert(edge.to_owned(), String::from_utf8_lossy(kv.value()).into_owned());
        } else if rest == VERSION_KEY {
            return Ok(Some(kv.mod_revision()));
        }
        Ok(None)
    }

    fn delete_from(&self, mirror: &mut Mirror, kv: &KeyValue) {
        let Some(rest) = self.suffix(kv.key()) else {
            return;
        };
        if let Some(key) = rest.strip_prefix(OBJ) {
            mirror.objects.remove(key);
        } else if let Some(key) = rest.strip_prefix(SIDE) {
            mirror.side.remove(key);
        } else if let Some(edge) = rest.strip_prefix(LEASE) {
            mirror.holders.remove(edge);
        }
    }

    fn suffix<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(key).ok()?.strip_prefix(self.prefix.as_str())
    }

    /// Applies one watch response's events to the mirror.
    fn apply_events(&self, events: &[etcd_client::Event]) -> Result<(), SourceError> {
        let mut highest = 0;
        let mut version = None;
        let mut side_changed = false;
        {
            let mut mirror = lock(&self.mirror);
            for event in events {
                let Some(kv) = event.kv() else { continue };
                highest = highest.max(kv.mod_revision());
                side_changed |= self.suffix(kv.key()).is_some_and(|rest| rest.starts_with(SIDE));
                match event.event_type() {
                    EventType::Put => {
                        if let Some(v) = self.put_into(&mut mirror, kv)? {
                            version = Some(v);
                        }
                    }
                    EventType::Delete => self.delete_from(&mut mirror, kv),
                }
            }
        }
        if let Some(v) = version {
            self.version.send_replace(ConfigVersion(v as u64));
        }
        if side_changed {
            self.side.send_modify(|n| *n += 1);
        }
        if highest > *self.seen.borrow() {
            self.seen.send_replace(highest);
        }
        Ok(())
    }

    /// Waits until the mirror has applied `revision` (read your own write).
    async fn caught_up(&self, revision: i64) {
        let mut seen = self.seen.subscribe();
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, seen.wait_for(|r| *r >= revision)).await;
    }
}

/// Follows the prefix from `revision + 1`, reconnecting as etcd comes and
/// goes; reloads everything when etcd compacted past the mirror.
async fn follow(store: std::sync::Weak<EtcdStore>, mut revision: i64) {
    let mut reported = false;
    loop {
        let Some(this) = store.upgrade() else { return };
        let result = follow_once(&this, &mut revision).await;
        match result {
            Ok(Followed::Compacted) => {
                tracing::warn!("etcd compacted past the configuration mirror; reloading it");
                match this.load().await {
                    Ok(r) => revision = r,
                    Err(e) => tracing::warn!(error = %e, "cannot reload the configuration from etcd"),
                }
            }
            Err(e) => {
                if !reported {
                    tracing::warn!(error = %e, "etcd watch lost; serving the configuration held and retrying");
                    reported = true;
                }
            }
        }
        drop(this);
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(this) = store.upgrade() {
            // A probe: once etcd answers again, say so once.
            let key = this.key(STORE_ID_KEY);
            let probe = this.members.call(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            });
            if reported && probe.await.is_ok() {
                tracing::info!("etcd reachable again; following the configuration");
                reported = false;
            }
        }
    }
}

enum Followed {
    Compacted,
}

async fn follow_once(store: &EtcdStore, revision: &mut i64) -> Result<Followed, SourceError> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(*revision + 1)
        .with_progress_notify();
    let prefix = store.prefix.clone();
    let mut stream = store
        .members
        .call(|mut c| {
            let (prefix, options) = (prefix.clone(), options.clone());
            async move { c.watch(prefix, Some(options)).await }
        })
        .await?;
    loop {
        let message = match stream.message().await {
            Ok(m) => m,
            Err(e) => {
                // Its member went away: the next watch starts on another.
                store.members.rotate(store.members.index());
                return Err(unavailable(e));
            }
        };
        let Some(resp) = message else {
            return Err(SourceError::Unavailable("the watch stream ended".into()));
        };
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                return Ok(Followed::Compacted);
            }
            return Err(SourceError::Unavailable(format!(
                "watch cancelled: {}",
                resp.cancel_reason()
            )));
        }
        if let Err(e) = store.apply_events(resp.events()) {
            tracing::error!(error = %e, "a configuration record from etcd does not parse; skipped");
        }
        if let Some(last) = resp
            .events()
            .iter()
            .filter_map(|e| e.kv())
            .map(|kv| kv.mod_revision())
            .max()
        {
            *revision = (*revision).max(last);
        }
    }
}

async fn ensure_store_id(members: &Members, prefix: &str) -> Result<String, SourceError> {
    let key = format!("{prefix}{STORE_ID_KEY}");
    let fresh = crate::store::new_store_id();
    let txn = Txn::new()
        .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.as_str(), fresh.as_str(), None)])
        .or_else([TxnOp::get(key.as_str(), None)]);
    let resp = members
        .call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    if resp.succeeded() {
        return Ok(fresh);
    }
    for op in resp.op_responses() {
        if let etcd_client::TxnOpResponse::Get(get) = op
            && let Some(kv) = get.kvs().first()
        {
            return Ok(String::from_utf8_lossy(kv.value()).into_owned());
        }
    }
    Err(SourceError::Corrupt(
        "the store id vanished while it was read".into(),
    ))
}

pub(crate) fn unavailable(e: etcd_client::Error) -> SourceError {
    SourceError::Unavailable(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[tonic::async_trait]
impl ConfigSource for EtcdStore {
    fn store_id(&self) -> String {
        self.store_id.clone()
    }

    fn version(&self) -> ConfigVersion {
        *self.version.borrow()
    }

    fn snapshot(&self) -> Result<(ConfigVersion, Vec<ReplicatedObject>), SourceError> {
        let mirror = lock(&self.mirror);
        Ok((self.version(), mirror.objects.values().cloned().collect()))
    }

    async fn changes_since(&self, since: ConfigVersion) -> Result<Option<Vec<Change>>, SourceError> {
        let target = self.version();
        if since >= target {
            return Ok(Some(Vec::new()));
        }
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(since.0 as i64 + 1);
        let prefix = self.prefix.clone();
        let mut stream = self
            .members
            .call(|mut c| {
                let (prefix, options) = (prefix.clone(), options.clone());
                async move { c.watch(prefix, Some(options)).await }
            })
            .await?;
        let marker = self.key(VERSION_KEY);
        let mut changes = Vec::new();
        loop {
            let resp = match tokio::time::timeout(REQUEST_TIMEOUT, stream.message()).await {
                Err(_) => return Err(SourceError::Unavailable("the change feed stalled".into())),
                Ok(r) => r.map_err(unavailable)?,
            };
            let Some(resp) = resp else {
                return Err(SourceError::Unavailable("the change feed ended".into()));
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    return Ok(None);
                }
                return Err(SourceError::Unavailable(resp.cancel_reason().to_owned()));
            }
            let mut done = false;
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision();
                if revision > target.0 as i64 {
                    done = true;
                    continue;
                }
                let Some(key) = self.suffix(kv.key()).and_then(|k| k.strip_prefix(OBJ)) else {
                    if kv.key() == marker.as_bytes() && revision >= target.0 as i64 {
                        done = true;
                    }
                    continue;
                };
                let op = match event.event_type() {
                    EventType::Put => ChangeOp::Put(decode(kv.value())?),
                    EventType::Delete => ChangeOp::Delete(ObjectKey(key.to_owned())),
                };
                changes.push(Change {
                    version: ConfigVersion(revision as u64),
                    op,
                });
            }
            if done {
                break;
            }
        }
        // Dropping the stream closes the watch on the server.
        drop(stream);
        Ok(Some(changes))
    }

    fn watch(&self) -> watch::Receiver<ConfigVersion> {
        self.version.subscribe()
    }
}

#[tonic::async_trait]
impl ConfigStore for EtcdStore {
    fn get(&self, key: &ObjectKey) -> Result<Option<ReplicatedObject>, SourceError> {
        Ok(lock(&self.mirror).objects.get(&key.0).cloned())
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, SourceError> {
        let prefix = kind.key_prefix();
        Ok(lock(&self.mirror)
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn side_get(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>, SourceError> {
        let key = format!("{space}/{}", String::from_utf8_lossy(key));
        Ok(lock(&self.mirror).side.get(&key).cloned())
    }

    fn side_list(&self, space: &str) -> Result<Vec<Vec<u8>>, SourceError> {
        let prefix = format!("{space}/");
        Ok(lock(&self.mirror)
            .side
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect())
    }

    async fn apply(&self, write: Write) -> Result<ConfigVersion, SourceError> {
        if write.ops.is_empty() && write.side.is_empty() {
            return Ok(self.version());
        }
        let mut keys = Vec::new();
        let mut puts = Vec::new();
        for op in &write.ops {
            match op {
                ChangeOp::Put(object) => {
                    let key = self.key(&format!("{OBJ}{}", object.key().0));
                    puts.push(TxnOp::put(key.as_str(), encode(object)?, None));
                    keys.push(key);
                }
                ChangeOp::Delete(key) => {
                    let key = self.key(&format!("{OBJ}{}", key.0));
                    puts.push(TxnOp::delete(key.as_str(), None));
                    keys.push(key);
                }
            }
        }
        for side in &write.side {
            let key = self.key(&format!(
                "{SIDE}{}/{}",
                side.space,
                String::from_utf8_lossy(&side.key)
            ));
            puts.push(match &side.value {
                Some(v) => TxnOp::put(key.as_str(), v.clone(), None),
                None => TxnOp::delete(key.as_str(), None),
            });
            keys.push(key);
        }
        if !write.ops.is_empty() {
            puts.push(TxnOp::put(self.key(VERSION_KEY), "", None));
        }
        let guards: Vec<Compare> = match write.read {
            Some(read) => keys
                .iter()
                .map(|k| Compare::mod_revision(k.as_str(), CompareOp::Less, read.0 as i64 + 1))
                .collect(),
            None => Vec::new(),
        };
        // When the guards fail, the touched keys as they are: after a
        // repeat, they tell whether the first attempt was applied.
        let reads: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
        let txn = Txn::new().when(guards).and_then(puts).or_else(reads);
        let answer = self
            .members
            .call_within(REQUEST_TIMEOUT, |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        let resp = answer.value;
        let revision = if resp.succeeded() {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        } else if answer.repeated_after_timeout
            && let Some(revision) = applied_already(&resp, &write, &keys)
        {
            revision
        } else {
            return Err(SourceError::Conflict);
        };
        self.caught_up(revision).await;
        Ok(if write.ops.is_empty() {
            self.version()
        } else {
            ConfigVersion(revision as u64)
        })
    }

    fn read_version(&self) -> ConfigVersion {
        ConfigVersion((*self.seen.borrow()).max(0) as u64)
    }

    /// Announced as the mirror applies etcd's watch events, so a
    /// subscription another hub writes wakes this hub too.
    fn watch_side(&self) -> watch::Receiver<u64> {
        self.side.subscribe()
    }

    fn lease_holders(&self) -> Vec<(String, String)> {
        lock(&self.mirror)
            .holders
            .iter()
            .map(|(e, h)| (e.clone(), h.clone()))
            .collect()
    }
}
