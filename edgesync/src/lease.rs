//! Who syncs which edge when an organisation has several hubs (Exchange's
//! EdgeSync lease). A hub holds `lease/<edge>` under its own etcd lease
//! (one per hub, kept alive while the hub lives); when the hub dies the
//! lease expires, the keys go and another hub takes the edge. The key's
//! create revision is the fencing token: it grows with every take-over, it
//! travels in the stream's Hello, and the edge refuses a stream or update
//! whose token is older than one it has seen.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::{Mutex, watch};

use crate::etcd::{EtcdStore, Members};
use crate::source::SourceError;

/// The hub's etcd lease lifetime: a dead hub's edges are free after it.
pub const LEASE_TTL: Duration = Duration::from_secs(5);
/// How long one renewal (or opening the renewal stream on one member) may
/// take before the hub renews through the next member.
const RENEW_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a hub that does not hold an edge looks again.
const RETRY: Duration = Duration::from_millis(500);

/// A held edge: the fencing token, and a receiver that turns `true` when
/// the lease is lost (the stream must stop at once).
pub struct Held {
    /// The fencing token (0 when one hub needs none).
    pub fence: u64,
    /// Turns `true` when the lease is lost.
    pub lost: watch::Receiver<bool>,
    _never: Option<Arc<watch::Sender<bool>>>,
}

impl Held {
    /// A lease of a single-hub store: never lost, no token.
    pub fn unfenced() -> Self {
        Self::never_lost(0)
    }

    /// A lease with token `fence` that is never reported lost (one hub; or
    /// a test's hub that does not know it lost its lease).
    pub fn never_lost(fence: u64) -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            fence,
            lost: rx,
            _never: Some(Arc::new(tx)),
        }
    }
}

/// The per-edge leases of a several-hub store.
#[tonic::async_trait]
pub trait EdgeLeases: Send + Sync + 'static {
    /// Waits until this hub (`hub`) holds `edge`.
    async fn acquire(&self, edge: &str, hub: &str) -> Held;

    /// Gives `edge` up (its subscription was removed).
    async fn release(&self, edge: &str, hub: &str);

    /// The hub holding `edge`, if any.
    fn holder(&self, edge: &str) -> Option<String>;
}

/// This hub's etcd lease, granted on first use and again after it expired.
#[derive(Default)]
pub(crate) struct HubLease {
    current: Mutex<Option<(i64, watch::Receiver<bool>)>>,
}

impl HubLease {
    /// The live lease, granting a new one (and its keeper) when needed.
    async fn get(&self, store: &EtcdStore) -> Result<(i64, watch::Receiver<bool>), SourceError> {
        let mut current = self.current.lock().await;
        if let Some((id, lost)) = current.as_ref()
            && !*lost.borrow()
        {
            return Ok((*id, lost.clone()));
        }
        let grant = store
            .members
            .call(|mut c| async move { c.lease_grant(LEASE_TTL.as_secs() as i64, None).await })
            .await?;
        let id = grant.id();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(keep_alive(store.members.clone(), id, tx));
        *current = Some((id, rx.clone()));
        Ok((id, rx))
    }
}

/// Keeps lease `id` alive until etcd says it expired or no keep-alive
/// succeeded for a whole TTL; then reports it lost.
async fn keep_alive(members: Members, id: i64, lost: watch::Sender<bool>) {
    let mut last_ok = tokio::time::Instant::now();
    let mut stream = None;
    loop {
        if last_ok.elapsed() >= LEASE_TTL {
            tracing::warn!(
                lease = id,
                "EdgeSync lease not renewed within its TTL; giving up its edges"
            );
            break;
        }
        if stream.is_none() {
            // A member that vanished must not cost the lease: short attempts.
            stream = members
                .call_within(RENEW_TIMEOUT, |mut c| async move { c.lease_keep_alive(id).await })
                .await
                .ok()
                .map(|a| a.value);
        }
        if let Some((keeper, responses)) = stream.as_mut() {
            let renewed = async {
                keeper.keep_alive().await?;
                responses.message().await
            };
            match tokio::time::timeout(RENEW_TIMEOUT, renewed).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => last_ok = tokio::time::Instant::now(),
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease = id, "EdgeSync lease expired; giving up its edges");
                    break;
                }
                _ => {
                    // Its member may be gone: renew through the next one.
                    members.rotate(members.index());
                    stream = None;
                }
            }
        }
        tokio::time::sleep(LEASE_TTL / 5).await;
    }
    let _ = lost.send(true);
}

#[tonic::async_trait]
impl EdgeLeases for EtcdStore {
    async fn acquire(&self, edge: &str, hub: &str) -> Held {
        let key = self.key(&format!("lease/{edge}"));
        let mut reported = false;
        loop {
            match try_acquire(self, &key, hub).await {
                Ok(Some(held)) => {
                    tracing::info!(edge, fence = held.fence, "EdgeSync lease taken");
                    return held;
                }
                Ok(None) => {}
                Err(e) => {
                    if !reported {
                        tracing::warn!(edge, error = %e, "cannot take the EdgeSync lease; retrying");
                        reported = true;
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn release(&self, edge: &str, hub: &str) {
        let key = self.key(&format!("lease/{edge}"));
        let txn = Txn::new()
            .when([Compare::value(key.as_str(), CompareOp::Equal, hub)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let result = self
            .members
            .call(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(edge, error = %e, "cannot release the EdgeSync lease; it expires with this hub");
        }
    }

    fn holder(&self, edge: &str) -> Option<String> {
        use crate::source::ConfigStore;
        self.lease_holders()
            .into_iter()
            .find(|(e, _)| e == edge)
            .map(|(_, h)| h)
    }
}

/// One attempt: the edge's key if free (or already ours under our lease).
async fn try_acquire(store: &EtcdStore, key: &str, hub: &str) -> Result<Option<Held>, SourceError> {
    let (lease, lost) = store.lease.get(store).await?;
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, hub, Some(PutOptions::new().with_lease(lease)))])
        .or_else([TxnOp::get(key, None)]);
    let resp = store
        .members
        .call(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await?;
    if resp.succeeded() {
        let fence = resp.header().map(|h| h.revision()).unwrap_or(0) as u64;
        return Ok(Some(Held {
            fence,
            lost,
            _never: None,
        }));
    }
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(get) = op
            && let Some(kv) = get.kvs().first()
            && kv.lease() == lease
        {
            return Ok(Some(Held {
                fence: kv.create_revision() as u64,
                lost,
                _never: None,
            }));
        }
    }
    Ok(None)
}
