//! `Queue`: enqueue with group commit, the due list for delivery workers,
//! recording attempts (with DSNs queued in the same transaction), restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use postern_model::QueueId;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::queue::attempt::{AttemptEffects, apply_attempt};
use crate::queue::backoff::HopBackoff;
use crate::queue::commit::GroupCommit;
use crate::queue::config::QueueConfig;
use crate::queue::dsn::{Dsn, DsnInput, DsnKind, build_dsn, original_headers};
use crate::queue::envelope::{
    DueMessage, Envelope, QueuedMessage, RecipientOutcome, RecipientState, RecipientStatus,
};
use crate::queue::error::{QueueError, Result};
use crate::queue::stats::{Counters, QueueStats};
use crate::queue::store::{self, BODIES_TREE, MESSAGES_TREE, TxError};

/// How long a message listed by [`Queue::due`] stays leased to the worker
/// that got it, unless it records an attempt first.
const LEASE: Duration = Duration::from_secs(10 * 60);

/// The durable mail queue of one node. Cheap to clone; all clones share one
/// store, one flusher and one set of counters.
#[derive(Clone, Debug)]
pub struct Queue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    messages: sled::Tree,
    bodies: sled::Tree,
    config: QueueConfig,
    commit: GroupCommit,
    backoff: HopBackoff,
    last_id: Mutex<Option<QueueId>>,
    /// Messages found at open: due once, whatever their schedule says.
    resumed: Mutex<HashSet<QueueId>>,
    /// Messages handed to a worker by `due`, until this time.
    leases: Mutex<HashMap<QueueId, SystemTime>>,
    counters: Counters,
    /// Where freshly queued messages are handed to the delivery worker at
    /// once (leased), so new mail does not wait for the next `due` scan.
    fresh: Mutex<Option<tokio::sync::mpsc::UnboundedSender<DueMessage>>>,
}

/// What recording an attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptReport {
    /// The message's state after the attempt.
    pub message: QueuedMessage,
    /// Whether every recipient is final, so the message left the queue.
    pub removed: bool,
    /// DSNs queued for the sender (failure and/or delay notice).
    pub dsns: Vec<QueueId>,
}

impl Queue {
    /// Opens the queue in `db` (creating its trees) and resumes every
    /// message found there: each is due again at once, attempt counters
    /// kept. Must run inside a tokio runtime (it starts the flusher).
    pub fn open(db: &sled::Db, config: QueueConfig) -> Result<Self> {
        config.validate()?;
        let messages = db.open_tree(MESSAGES_TREE)?;
        let bodies = db.open_tree(BODIES_TREE)?;
        let counters = Counters::default();
        let mut resumed = HashSet::new();
        for entry in messages.iter() {
            let (key, value) = entry?;
            match store::decode(&key, &value) {
                Ok(message) => {
                    resumed.insert(message.id);
                }
                // One damaged record must not stop the node's mail: leave it
                // for the administrator and go on.
                Err(error) => tracing::error!(%error, "skipping a damaged queue record"),
            }
        }
        Counters::add(&counters.queue_length, messages.len() as u64);
        let last_id = match messages.last()? {
            Some((key, _)) => QueueId::from_key(&key).ok(),
            None => None,
        };
        tracing::info!(resumed = resumed.len(), "mail queue opened");
        Ok(Self {
            inner: Arc::new(Inner {
                commit: GroupCommit::start(db.clone())?,
                messages,
                bodies,
                config,
                backoff: HopBackoff::new(),
                last_id: Mutex::new(last_id),
                resumed: Mutex::new(resumed),
                leases: Mutex::new(HashMap::new()),
                fresh: Mutex::new(None),
                counters,
            }),
        })
    }

    /// Queues a message and returns its id once it is on disk: only then
    /// may the session answer 250. Concurrent calls share flushes (group
    /// commit). If the future is dropped after the write, the message may
    /// be queued without the client having seen 250 (a duplicate at worst).
    /// Every recipient starts `Pending`, whatever status it came with, and
    /// a repeated address is queued once.
    pub async fn enqueue(&self, mut envelope: Envelope, body: Vec<u8>) -> Result<QueueId> {
        let mut seen = HashSet::new();
        envelope.recipients.retain(|r| seen.insert(r.address.clone()));
        for recipient in &mut envelope.recipients {
            recipient.status = RecipientStatus::Pending;
        }
        if envelope.recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        let inner = Arc::clone(&self.inner);
        let id = blocking(move || {
            let message = QueuedMessage {
                id: inner.next_id(SystemTime::now()),
                envelope,
                body_len: body.len() as u64,
                delay_notified: false,
            };
            let record = store::encode(&message)?;
            // One copy into sled's buffer; retries of the closure share it.
            let body = sled::IVec::from(body);
            let key = message.id.to_bytes();
            (&inner.messages, &inner.bodies)
                .transaction(|(messages, bodies)| {
                    messages.insert(&key, record.as_slice())?;
                    bodies.insert(&key, body.clone())?;
                    Ok::<_, TxError>(())
                })
                .map_err(store::from_tx)?;
            Ok((
                message.id,
                (
                    message.envelope.sender,
                    message.envelope.recipients,
                    message.envelope.require_tls,
                ),
            ))
        })
        .await?;
        self.inner.commit.durable().await?;
        Counters::add(&self.inner.counters.queue_length, 1);
        Counters::add(&self.inner.counters.messages_enqueued, 1);
        self.hand_over(id.0, id.1);
        Ok(id.0)
    }

    /// Returns a receiver of messages as they are queued, each already
    /// leased to the receiver as [`Queue::due`] would. Replaces any earlier
    /// receiver. Messages queued while nobody listens are found by `due`.
    pub fn subscribe_fresh(&self) -> tokio::sync::mpsc::UnboundedReceiver<DueMessage> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *lock(&self.inner.fresh) = Some(tx);
        rx
    }

    fn hand_over(
        &self,
        id: QueueId,
        (sender, recipients, require_tls): (Option<String>, Vec<RecipientState>, bool),
    ) {
        let mut fresh = lock(&self.inner.fresh);
        let Some(tx) = fresh.as_ref() else { return };
        lock(&self.inner.leases).insert(id, SystemTime::now() + LEASE);
        if tx
            .send(DueMessage {
                id,
                sender,
                recipients,
                require_tls,
            })
            .is_err()
        {
            *fresh = None;
            self.release(id);
        }
    }

    /// Messages with recipients to try at `now`, oldest first, each with
    /// just those recipients: pending or past their retry time, through a
    /// hop not backing off. Listed messages are leased to the caller (not
    /// listed again) until it records an attempt or ten minutes pass.
    /// Scans the whole queue: fine for thousands of messages; a schedule
    /// index would come before millions.
    pub fn due(&self, now: SystemTime) -> Result<Vec<DueMessage>> {
        let inner = &self.inner;
        let resumed = lock(&inner.resumed).clone();
        let mut leases = lock(&inner.leases);
        leases.retain(|_, until| *until > now);
        let mut due = Vec::new();
        for entry in inner.messages.iter() {
            let (key, value) = entry?;
            let Ok(message) = store::decode(&key, &value) else {
                continue;
            };
            if leases.contains_key(&message.id) {
                continue;
            }
            let resumed = resumed.contains(&message.id);
            let recipients: Vec<RecipientState> = message
                .envelope
                .recipients
                .into_iter()
                .filter(|r| !r.status.is_final())
                .filter(|r| resumed || (r.status.is_due(now) && inner.backoff.is_ready(&r.next_hop, now)))
                .collect();
            if !recipients.is_empty() {
                leases.insert(message.id, now + LEASE);
                due.push(DueMessage {
                    id: message.id,
                    sender: message.envelope.sender,
                    recipients,
                    require_tls: message.envelope.require_tls,
                });
            }
        }
        Ok(due)
    }

    /// Gives back a message listed by [`Queue::due`] without an attempt.
    pub fn release(&self, id: QueueId) {
        lock(&self.inner.leases).remove(&id);
    }

    /// Records what an attempt came to for some recipients of `id`, as of
    /// `now`: updates their state and the hops' back-off, expires the
    /// message if it is too old, queues the failure or delay DSN (not for a
    /// null sender), and removes the message once every recipient is final.
    /// All of it is one transaction, made durable before returning.
    pub async fn record_attempt(
        &self,
        id: QueueId,
        outcomes: Vec<RecipientOutcome>,
        now: SystemTime,
    ) -> Result<AttemptReport> {
        let inner = Arc::clone(&self.inner);
        let (report, effects) = blocking(move || {
            (&inner.messages, &inner.bodies)
                .transaction(|(messages, bodies)| {
                    let mut message = store::tx_get(messages, id)?;
                    let effects = apply_attempt(&mut message, &outcomes, now, &inner.config)
                        .map_err(ConflictableTransactionError::Abort)?;
                    let body = bodies.get(id.to_bytes())?.unwrap_or_default();
                    let mut dsns = Vec::new();
                    for (kind, indices) in [
                        (DsnKind::Failure, &effects.failed),
                        (DsnKind::Delay, &effects.delayed),
                    ] {
                        let Some(dsn) = inner.dsn(&message, kind, indices, original_headers(&body), now)
                        else {
                            continue;
                        };
                        let notice = QueuedMessage {
                            id: inner.next_id(SystemTime::now()),
                            envelope: Envelope::new(None, vec![RecipientState::to_domain_of(dsn.to)], now),
                            body_len: dsn.message.len() as u64,
                            delay_notified: false,
                        };
                        store::tx_put(messages, &notice)?;
                        bodies.insert(&notice.id.to_bytes(), dsn.message)?;
                        dsns.push(notice.id);
                    }
                    let removed = message.envelope.is_final();
                    if removed {
                        store::tx_remove(messages, bodies, id)?;
                    } else {
                        store::tx_put(messages, &message)?;
                    }
                    let report = AttemptReport {
                        message,
                        removed,
                        dsns,
                    };
                    Ok((report, effects.clone()))
                })
                .map_err(store::from_tx)
        })
        .await?;
        self.inner.commit.durable().await?;
        self.inner.after_attempt(&report, &effects, now);
        Ok(report)
    }

    /// The header record of `id`, if queued.
    pub fn get(&self, id: QueueId) -> Result<Option<QueuedMessage>> {
        let key = id.to_bytes();
        match self.inner.messages.get(key)? {
            Some(value) => store::decode(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    /// The body of `id`, if queued.
    pub fn body(&self, id: QueueId) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.bodies.get(id.to_bytes())?.map(|v| v.to_vec()))
    }

    /// Every queued message's id, oldest first.
    pub fn ids(&self) -> Result<Vec<QueueId>> {
        let mut ids = Vec::new();
        for key in self.inner.messages.iter().keys() {
            if let Ok(id) = QueueId::from_key(&key?) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// The shared per-hop back-off (for `postern queue` and tests).
    pub fn hop_backoff(&self) -> &HopBackoff {
        &self.inner.backoff
    }

    /// The configuration the queue runs with.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> QueueStats {
        self.inner.counters.snapshot(self.inner.commit.batches())
    }
}

impl Inner {
    /// A fresh id, strictly greater than every id this queue made or found.
    fn next_id(&self, now: SystemTime) -> QueueId {
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let mut last = lock(&self.last_id);
        let fresh = QueueId::from_parts(millis, rand::random::<u128>());
        let id = match *last {
            Some(prev) if prev.unix_millis() >= fresh.unix_millis() => prev.successor(),
            _ => fresh,
        };
        *last = Some(id);
        id
    }

    /// The DSN of `kind` reporting the recipients at `indices` of `message`.
    fn dsn(
        &self,
        message: &QueuedMessage,
        kind: DsnKind,
        indices: &[usize],
        headers: &[u8],
        now: SystemTime,
    ) -> Option<Dsn> {
        let recipients = indices
            .iter()
            .filter_map(|i| message.envelope.recipients.get(*i))
            .collect();
        build_dsn(&DsnInput {
            kind,
            id: message.id,
            envelope: &message.envelope,
            recipients,
            original_headers: headers,
            reporting_mta: &self.config.reporting_mta,
            now,
            will_retry_until: Some(message.envelope.received_at + self.config.expiration),
        })
    }

    /// In-memory bookkeeping once an attempt is committed.
    fn after_attempt(&self, report: &AttemptReport, effects: &AttemptEffects, now: SystemTime) {
        let id = report.message.id;
        lock(&self.resumed).remove(&id);
        lock(&self.leases).remove(&id);
        for (hop, answered) in &effects.hops {
            self.backoff.record(hop, *answered, now, &self.config);
        }
        let c = &self.counters;
        Counters::add(&c.recipients_delivered, effects.delivered.len() as u64);
        Counters::add(&c.recipients_failed, effects.failed.len() as u64);
        let dsns = report.dsns.len() as u64;
        Counters::add(&c.dsns_generated, dsns);
        Counters::add(&c.messages_enqueued, dsns);
        Counters::add(&c.queue_length, dsns);
        if report.removed {
            c.message_left();
            let recipients = &report.message.envelope.recipients;
            let any_failed = recipients
                .iter()
                .any(|r| matches!(r.status, RecipientStatus::Failed { .. }));
            let outcome = if any_failed {
                &c.messages_failed
            } else {
                &c.messages_delivered
            };
            Counters::add(outcome, 1);
        }
    }
}

/// Runs sled work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| QueueError::Task(e.to_string()))?
}

/// Locks `mutex`, carrying on after a panic elsewhere (the guarded maps
/// stay consistent: each update is one insert or remove).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
