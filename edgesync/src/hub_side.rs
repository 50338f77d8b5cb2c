//! The hub side of EdgeSync: one task per subscribed edge that dials it,
//! holds the stream, sends a snapshot or the deltas the edge lacks, pushes
//! every committed change at once, heartbeats while idle, and reconnects
//! with jittered back-off. Each task keeps a status for `edgesync test`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_model::{ConfigVersion, Thumbprint};
use postern_proto::edgesync as pb;
use postern_proto::edgesync::edge_sync_client::EdgeSyncClient;
use postern_tls::certs::CertStore;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::StreamExt;

use crate::channel::connect_edge;
use crate::lease::{EdgeLeases, Held};
use crate::report::EdgeReport;
use crate::source::ConfigSource;
use crate::trust_status::TrustMismatch;

/// How long the edge may take to answer an update or heartbeat.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Heartbeat interval on an idle stream.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// An edge to keep in sync.
#[derive(Clone, Debug)]
pub struct EdgeTarget {
    /// The edge's name.
    pub name: String,
    /// Its EdgeSync endpoint (`host:port`).
    pub endpoint: String,
    /// The certificate it must present.
    pub thumbprint: Thumbprint,
    /// The subscription's bootstrap secret, until the first snapshot is acked.
    pub bootstrap_secret: Option<String>,
}

/// Where a subscription's synchronisation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncState {
    /// Dialing or waiting to redial.
    Connecting,
    /// Sending an update.
    Syncing,
    /// The edge has acked the hub's current version.
    InSync,
    /// The last attempt failed; see `last_error`.
    Failed,
    /// Another hub holds the edge's lease; this one takes over if it dies.
    Standby,
    /// A side presents a certificate the other does not trust; see
    /// `trust_detail` for the thumbprints and the fix.
    TrustMismatch,
}

/// The figures `postern edgesync test` prints per edge.
#[derive(Clone, Debug, Serialize)]
pub struct SyncStatus {
    /// The edge.
    pub edge: String,
    /// State of the stream.
    pub state: SyncState,
    /// The hub's configuration version.
    pub hub_version: u64,
    /// The version the edge last acked.
    pub edge_version: u64,
    /// When the edge was last in sync (RFC 3339).
    pub last_success: Option<String>,
    /// The last error, with its time.
    pub last_error: Option<String>,
    /// The hub holding the edge's EdgeSync lease (several hubs), or empty.
    pub lease_holder: String,
    /// The fencing token of this hub's lease on the edge (0: none).
    pub lease_revision: u64,
    /// Full snapshots sent since this hub started.
    pub snapshots_sent: u64,
    /// Deltas sent since this hub started.
    pub deltas_sent: u64,
    /// Why the two sides do not trust each other's certificate, and the fix.
    pub trust_detail: Option<String>,
    /// The certificate the edge presented in the last EdgeSync handshake.
    pub edge_certificate: Option<Thumbprint>,
    /// Its expiry (RFC 3339).
    pub edge_certificate_expires: Option<String>,
    /// Whole days until then.
    pub edge_certificate_days_left: Option<i64>,
    /// The edge's latest report of itself (queues, certificates), kept
    /// in memory; none until the edge sent one.
    pub report: Option<EdgeReport>,
}

impl SyncStatus {
    fn new(edge: &str) -> Self {
        Self {
            edge: edge.to_owned(),
            state: SyncState::Connecting,
            hub_version: 0,
            edge_version: 0,
            last_success: None,
            last_error: None,
            lease_holder: String::new(),
            lease_revision: 0,
            snapshots_sent: 0,
            deltas_sent: 0,
            trust_detail: None,
            edge_certificate: None,
            edge_certificate_expires: None,
            edge_certificate_days_left: None,
            report: None,
        }
    }

    /// Versions the edge is behind.
    pub fn lag(&self) -> u64 {
        self.hub_version.saturating_sub(self.edge_version)
    }
}

/// Called when an edge has acked its first snapshot, so the hub can
/// forget the bootstrap secret.
pub type BootstrappedHook = Arc<dyn Fn(&str) + Send + Sync>;

struct Task {
    stop: watch::Sender<bool>,
    full: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

/// Runs and tracks the sync tasks of a hub.
#[derive(Clone)]
pub struct SyncManager {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn ConfigSource>,
    certs: CertStore,
    hub_name: String,
    hub_fqdn: String,
    on_bootstrapped: BootstrappedHook,
    leases: Option<Arc<dyn EdgeLeases>>,
    rotation: Mutex<Option<crate::rotation::SharedRotationHook>>,
    tasks: Mutex<HashMap<String, Task>>,
    statuses: Mutex<HashMap<String, SyncStatus>>,
}

impl SyncManager {
    /// A manager pushing `source` as hub `hub_name` (`hub_fqdn` names the
    /// certificate it presents).
    pub fn new(
        source: Arc<dyn ConfigSource>,
        certs: CertStore,
        hub_name: &str,
        hub_fqdn: &str,
        on_bootstrapped: BootstrappedHook,
    ) -> Self {
        Self::with_leases(source, certs, hub_name, hub_fqdn, on_bootstrapped, None)
    }

    /// Like `new`, for one of several hubs: each edge is synced only while
    /// this hub holds its lease in `leases`.
    pub fn with_leases(
        source: Arc<dyn ConfigSource>,
        certs: CertStore,
        hub_name: &str,
        hub_fqdn: &str,
        on_bootstrapped: BootstrappedHook,
        leases: Option<Arc<dyn EdgeLeases>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                certs,
                hub_name: hub_name.to_owned(),
                hub_fqdn: hub_fqdn.to_owned(),
                on_bootstrapped,
                leases,
                rotation: Mutex::new(None),
                tasks: Mutex::new(HashMap::new()),
                statuses: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Takes edges' certificate offers through `hook` (without one they
    /// are refused).
    pub fn set_rotation_hook(&self, hook: crate::rotation::SharedRotationHook) {
        *lock(&self.inner.rotation) = Some(hook);
    }

    /// Starts (or restarts) syncing `target`. A restart keeps the edge's
    /// lease: the new task finds it held by this hub and goes on under the
    /// same token. (Releasing it here raced the new task's acquire: the
    /// release could delete the key the new task had just found ours, and
    /// another hub took the edge while this one kept streaming, refused.)
    pub fn start(&self, target: EdgeTarget) {
        self.end_task(&target.name);
        let (stop_tx, stop_rx) = watch::channel(false);
        let full = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(Notify::new());
        lock(&self.inner.statuses).insert(target.name.clone(), SyncStatus::new(&target.name));
        lock(&self.inner.tasks).insert(
            target.name.clone(),
            Task {
                stop: stop_tx,
                full: full.clone(),
                wake: wake.clone(),
            },
        );
        let inner = self.inner.clone();
        tokio::spawn(run_task(inner, target, stop_rx, full, wake));
    }

    /// Starts syncing `target` unless it is synced already.
    pub fn ensure(&self, target: EdgeTarget) {
        if !lock(&self.inner.tasks).contains_key(&target.name) {
            self.start(target);
        }
    }

    /// The edges being synced.
    pub fn edges(&self) -> Vec<String> {
        lock(&self.inner.tasks).keys().cloned().collect()
    }

    /// Stops syncing the edge called `name` (and gives its lease up).
    pub fn stop(&self, name: &str) {
        if self.end_task(name)
            && let Some(leases) = self.inner.leases.clone()
        {
            let (edge, hub) = (name.to_owned(), self.inner.hub_name.clone());
            tokio::spawn(async move { leases.release(&edge, &hub).await });
        }
        lock(&self.inner.statuses).remove(name);
    }

    /// Ends the task syncing `name`, keeping its lease; `true` when there
    /// was one.
    fn end_task(&self, name: &str) -> bool {
        match lock(&self.inner.tasks).remove(name) {
            Some(task) => {
                let _ = task.stop.send(true);
                true
            }
            None => false,
        }
    }

    /// Sends every edge a full snapshot now (`postern edgesync start`).
    pub fn force_full(&self) {
        for task in lock(&self.inner.tasks).values() {
            task.full.store(true, Ordering::SeqCst);
            task.wake.notify_one();
        }
    }

    /// The status of every subscription.
    pub fn statuses(&self) -> Vec<SyncStatus> {
        let version = self.inner.source.version().0;
        let mut all: Vec<SyncStatus> = lock(&self.inner.statuses)
            .values()
            .cloned()
            .map(|mut s| {
                s.hub_version = version;
                if let Some(leases) = &self.inner.leases {
                    s.lease_holder = leases.holder(&s.edge).unwrap_or_default();
                }
                s
            })
            .collect();
        all.sort_by(|a, b| a.edge.cmp(&b.edge));
        all
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

impl Inner {
    fn update(&self, edge: &str, f: impl FnOnce(&mut SyncStatus)) {
        if let Some(status) = lock(&self.statuses).get_mut(edge) {
            f(status);
        }
    }
}

async fn run_task(
    inner: Arc<Inner>,
    mut target: EdgeTarget,
    mut stop: watch::Receiver<bool>,
    full: Arc<AtomicBool>,
    wake: Arc<Notify>,
) {
    loop {
        let mut held = match &inner.leases {
            None => Held::unfenced(),
            Some(leases) => {
                inner.update(&target.name, |s| s.state = SyncState::Standby);
                tokio::select! {
                    held = leases.acquire(&target.name, &inner.hub_name) => held,
                    _ = stop.changed() => return,
                }
            }
        };
        inner.update(&target.name, |s| s.lease_revision = held.fence);
        match sessions(&inner, &mut target, &mut stop, &full, &wake, &mut held).await {
            SessionsEnd::Stopped => return,
            SessionsEnd::LeaseLost => {
                tracing::warn!(edge = %target.name, "EdgeSync lease lost; another hub may take the edge over");
            }
            SessionsEnd::Superseded => {
                // The edge has seen a newer lease: another hub holds the
                // edge, or this hub's key went away under it. Give the key
                // up (only if it is still this hub's) and ask etcd again:
                // standby behind the other hub, or a new, newer token.
                tracing::warn!(edge = %target.name, "the edge refused this hub's EdgeSync lease as stale; giving it up and standing by");
                if let Some(leases) = &inner.leases {
                    leases.release(&target.name, &inner.hub_name).await;
                }
            }
        }
        inner.update(&target.name, |s| {
            s.state = SyncState::Standby;
            s.lease_revision = 0;
        });
        tokio::select! {
            _ = tokio::time::sleep(STANDBY_PAUSE) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Why a hub stopped streaming to an edge under one lease.
enum SessionsEnd {
    /// The task was stopped.
    Stopped,
    /// The hub's etcd lease was lost.
    LeaseLost,
    /// The edge refused the lease as stale.
    Superseded,
}

/// The pause before a hub that gave an edge up asks for its lease again.
const STANDBY_PAUSE: Duration = Duration::from_secs(1);

/// Streams to the edge while `held` lasts, redialing with back-off, until
/// stopped, the lease is lost, or the edge refuses it as stale.
async fn sessions(
    inner: &Inner,
    target: &mut EdgeTarget,
    stop: &mut watch::Receiver<bool>,
    full: &AtomicBool,
    wake: &Notify,
    held: &mut Held,
) -> SessionsEnd {
    let mut backoff = Duration::from_millis(500);
    loop {
        inner.update(&target.name, |s| s.state = SyncState::Connecting);
        let success_before = lock(&inner.statuses)
            .get(&target.name)
            .and_then(|s| s.last_success.clone());
        let slot = crate::channel::SessionSlot::default();
        let result = session(inner, target, &slot, stop, full, wake, held).await;
        let success_after = lock(&inner.statuses)
            .get(&target.name)
            .and_then(|s| s.last_success.clone());
        if success_after != success_before {
            // The stream worked before it broke: redial promptly.
            backoff = Duration::from_millis(500);
        }
        match result {
            Ok(()) => return SessionsEnd::Stopped,
            Err(e) => {
                tracing::warn!(edge = %target.name, error = %postern_model::peer_text(&e.to_string()), "EdgeSync stream failed; will redial");
                let mismatch = slot
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .refused
                    .as_ref()
                    .map(|m| m.detail(&target.name));
                inner.update(&target.name, |s| {
                    s.state = if mismatch.is_some() {
                        SyncState::TrustMismatch
                    } else {
                        SyncState::Failed
                    };
                    s.trust_detail = mismatch;
                    s.last_error = Some(format!("{}: {e}", now()));
                });
            }
        }
        if *held.lost.borrow() {
            return SessionsEnd::LeaseLost;
        }
        if slot.lock().unwrap_or_else(|p| p.into_inner()).superseded {
            return SessionsEnd::Superseded;
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 2 + 1));
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = stop.changed() => return SessionsEnd::Stopped,
            _ = wake.notified() => {}
            _ = held.lost.changed() => return SessionsEnd::LeaseLost,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connected stream, until it fails (Err) or the task is stopped (Ok).
async fn session(
    inner: &Inner,
    target: &mut EdgeTarget,
    slot: &crate::channel::SessionSlot,
    stop: &mut watch::Receiver<bool>,
    full: &AtomicBool,
    wake: &Notify,
    held: &mut Held,
) -> Result<(), String> {
    let hook = lock(&inner.rotation).clone();
    // The certificates the edge may present: after a rotation, the hook's
    // (new, and the old one during its grace period).
    let pinned = hook
        .as_ref()
        .map(|h| h.edge_certificates(&target.name))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| vec![target.thumbprint]);
    let pins = postern_tls::Pins::new(pinned);
    let channel = connect_edge(
        &target.endpoint,
        pins.clone(),
        inner.certs.clone(),
        &inner.hub_fqdn,
        Arc::clone(slot),
    )
    .map_err(|e| format!("bad endpoint {}: {e}", target.endpoint))?;
    let mut offers = Offers {
        hook,
        edge: target.name.clone(),
        slot: Arc::clone(slot),
        pins,
        tx: None,
    };
    let mut client = EdgeSyncClient::new(channel);
    let (tx, rx) = mpsc::channel(16);
    offers.tx = Some(tx.clone());
    let source = &inner.source;
    let hello = pb::Hello {
        hub_name: inner.hub_name.clone(),
        hub_fqdn: inner.hub_fqdn.clone(),
        store_id: source.store_id(),
        version: source.version().0,
        bootstrap_secret: target.bootstrap_secret.clone().unwrap_or_default(),
        lease_revision: held.fence,
    };
    send(&tx, pb::hub_message::Body::Hello(hello)).await?;
    let mut inbound = client
        .sync(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|status| {
            if let Some(m) = TrustMismatch::from_status(&status) {
                offers.slot.lock().unwrap_or_else(|p| p.into_inner()).refused = Some(m);
            }
            describe(&status, &offers.slot)
        })?
        .into_inner();
    let (edge_store, mut edge_version) = match next(&mut inbound, &mut offers).await? {
        pb::edge_message::Body::Hello(h) => {
            keep_report(inner, &target.name, h.report);
            (h.store_id, ConfigVersion(h.version))
        }
        other => return Err(format!("edge answered Hello with {}", edge_message_kind(&other))),
    };
    let presented = crate::trust_status::presented(&offers.slot);
    inner.update(&target.name, |s| {
        s.trust_detail = None;
        s.edge_certificate = presented.as_ref().map(|p| p.0);
        s.edge_certificate_expires = presented.as_ref().map(|p| p.1.clone());
        s.edge_certificate_days_left = presented.as_ref().map(|p| p.2);
    });
    let mut same_store = edge_store == source.store_id();
    let mut versions = source.watch();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        let current = source.version();
        let delta = if full.swap(false, Ordering::SeqCst) || !same_store {
            None
        } else {
            source
                .changes_since(edge_version)
                .await
                .map_err(|e| e.to_string())?
        };
        match delta {
            None => {
                inner.update(&target.name, |s| s.state = SyncState::Syncing);
                let (version, objects) = source.snapshot().map_err(|e| e.to_string())?;
                let objects = objects
                    .iter()
                    .map(serde_json::to_vec)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("cannot encode the snapshot: {e}"))?;
                let snapshot = pb::Snapshot {
                    store_id: source.store_id(),
                    version: version.0,
                    objects,
                };
                send(&tx, pb::hub_message::Body::Snapshot(snapshot)).await?;
                edge_version = ack(&mut inbound, &mut offers).await?;
                same_store = true;
                inner.update(&target.name, |s| s.snapshots_sent += 1);
                if target.bootstrap_secret.take().is_some() {
                    (inner.on_bootstrapped)(&target.name);
                }
            }
            Some(changes) if !changes.is_empty() || current > edge_version => {
                inner.update(&target.name, |s| s.state = SyncState::Syncing);
                let to = changes.last().map_or(current, |c| c.version.max(current));
                let encoded = changes
                    .iter()
                    .map(serde_json::to_vec)
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("cannot encode the delta: {e}"))?;
                let delta = pb::Delta {
                    store_id: source.store_id(),
                    from_version: edge_version.0,
                    to_version: to.0,
                    changes: encoded,
                };
                send(&tx, pb::hub_message::Body::Delta(delta)).await?;
                edge_version = ack(&mut inbound, &mut offers).await?;
                inner.update(&target.name, |s| s.deltas_sent += 1);
            }
            Some(_) => {}
        }
        let in_sync = edge_version >= source.version();
        inner.update(&target.name, |s| {
            s.edge_version = edge_version.0;
            if in_sync {
                s.state = SyncState::InSync;
                s.last_success = Some(now());
            }
        });
        if !in_sync {
            continue;
        }
        tokio::select! {
            changed = versions.changed() => {
                if changed.is_err() {
                    return Err("configuration store closed".into());
                }
            }
            _ = wake.notified() => {}
            item = inbound.next() => {
                // Between updates the edge speaks only to offer a certificate.
                match item {
                    Some(Ok(pb::EdgeMessage { body: Some(pb::edge_message::Body::CertOffer(offer)) })) => {
                        offers.answer(&offer).await?;
                    }
                    Some(Ok(other)) => {
                        let kind = other.body.as_ref().map_or("an empty message", edge_message_kind);
                        return Err(format!("unexpected message from the edge: {kind}"));
                    }
                    Some(Err(status)) => return Err(describe(&status, &offers.slot)),
                    None => return Err("the edge closed the stream".into()),
                }
            }
            _ = heartbeat.tick() => {
                send(&tx, pb::hub_message::Body::Heartbeat(pb::Heartbeat { version: source.version().0, report: None })).await?;
                match next(&mut inbound, &mut offers).await? {
                    pb::edge_message::Body::Heartbeat(h) => {
                        keep_report(inner, &target.name, h.report);
                        edge_version = ConfigVersion(h.version);
                    }
                    other => return Err(format!("edge answered a heartbeat with {}", edge_message_kind(&other))),
                }
            }
            _ = stop.changed() => return Ok(()),
            _ = held.lost.changed() => return Err("this hub lost the edge's EdgeSync lease".into()),
        }
    }
}

/// Keeps the edge's report of itself, when it sent one.
fn keep_report(inner: &Inner, edge: &str, report: Option<pb::EdgeReport>) {
    if let Some(report) = report {
        let report = EdgeReport::from_pb(report);
        inner.update(edge, |s| s.report = Some(report));
    }
}

async fn send(tx: &mpsc::Sender<pb::HubMessage>, body: pb::hub_message::Body) -> Result<(), String> {
    tx.send(pb::HubMessage { body: Some(body) })
        .await
        .map_err(|_| "stream closed".to_owned())
}

/// The next answer from the edge; certificate offers arriving meanwhile
/// are answered on the way.
async fn next(
    inbound: &mut tonic::Streaming<pb::EdgeMessage>,
    offers: &mut Offers,
) -> Result<pb::edge_message::Body, String> {
    loop {
        let body = match tokio::time::timeout(ANSWER_TIMEOUT, inbound.next()).await {
            Err(_) => {
                return Err(format!(
                    "the edge did not answer within {}s",
                    ANSWER_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => return Err("the edge closed the stream".into()),
            Ok(Some(Err(status))) => return Err(describe(&status, &offers.slot)),
            Ok(Some(Ok(pb::EdgeMessage { body: Some(body) }))) => body,
            Ok(Some(Ok(_))) => return Err("empty message from the edge".into()),
        };
        match body {
            pb::edge_message::Body::CertOffer(offer) => offers.answer(&offer).await?,
            other => return Ok(other),
        }
    }
}

/// Answers the certificate offers of one stream.
struct Offers {
    hook: Option<crate::rotation::SharedRotationHook>,
    edge: String,
    slot: crate::channel::SessionSlot,
    pins: postern_tls::Pins,
    tx: Option<mpsc::Sender<pb::HubMessage>>,
}

impl Offers {
    async fn answer(&mut self, offer: &pb::CertOffer) -> Result<(), String> {
        let session = lock(&self.slot).clone();
        let (reply, verified) =
            crate::rotation::answer_offer(self.hook.as_ref(), &self.edge, offer, &session);
        if let Some(v) = verified {
            let mut pins = self.pins.get();
            pins.push(v.new);
            self.pins.set(pins);
        }
        let tx = self.tx.as_ref().ok_or("stream not open")?;
        send(tx, pb::hub_message::Body::CertOfferReply(reply)).await
    }
}

async fn ack(
    inbound: &mut tonic::Streaming<pb::EdgeMessage>,
    offers: &mut Offers,
) -> Result<ConfigVersion, String> {
    match next(inbound, offers).await? {
        pb::edge_message::Body::Ack(a) => Ok(ConfigVersion(a.version)),
        pb::edge_message::Body::Nack(n) => {
            Err(format!("the edge refused version {}: {}", n.version, n.reason))
        }
        other => Err(format!("expected an ack, got {}", edge_message_kind(&other))),
    }
}

/// A gRPC status as a readable reason (transport errors carry their cause).
/// What kind of message the edge sent, for an error a person reads (the
/// protobuf `Debug` dump would put whole reports and keys in the log).
fn edge_message_kind(body: &pb::edge_message::Body) -> &'static str {
    use pb::edge_message::Body;
    match body {
        Body::Hello(_) => "a Hello",
        Body::Ack(_) => "an Ack",
        Body::Heartbeat(_) => "a Heartbeat",
        Body::Nack(_) => "a Nack",
        Body::CertOffer(_) => "a certificate offer",
    }
}

/// The text of an edge's `status`; a refusal of the hub's lease as stale
/// is noted in `slot` (the hub then stands by).
fn describe(status: &tonic::Status, slot: &crate::channel::SessionSlot) -> String {
    use std::error::Error as _;
    if status.code() == tonic::Code::FailedPrecondition {
        slot.lock().unwrap_or_else(|p| p.into_inner()).superseded = true;
    }
    let mut text = status.message().to_owned();
    let mut source = status.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}
