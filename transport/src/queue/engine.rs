//! `Queue`: enqueue with group commit, the due list for delivery workers,
//! recording attempts (with DSNs queued in the same transaction), restart.
//! Only the rarer writes are sled transactions (a DSN with the attempt
//! that queues it, a removal by the administrator, taking back a message
//! whose flush failed): sled writes its log out twice for each, so the
//! common paths are single-key writes in an order a crash cannot make
//! wrong (see [`crate::queue::store`] and [`crate::queue::once`]).
//!
//! # Who holds a message
//! Every message is either free (the [`Queue::due`] scan may list it) or
//! held, in one in-memory map: `Accepting` from before its first write
//! until that write is durable, then either free or `Leased` to exactly one
//! delivery worker until the worker records an attempt (made durable
//! first) or gives the message back. A scan never lists a held message, so
//! no message is leased before its flush, nor to two workers at once.
//! Holds have no timer: a worker always records or releases (the worker
//! releases for a delivery task that panicked), and a restart frees all.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use postern_model::QueueId;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

use crate::queue::QueuedHop;
use crate::queue::attempt::{AttemptEffects, apply_attempt};
use crate::queue::backoff::HopBackoff;
use crate::queue::commit::GroupCommit;
use crate::queue::config::QueueConfig;
use crate::queue::dsn::{Dsn, DsnInput, DsnKind, build_dsn, original_headers};
use crate::queue::envelope::{
    Attempt, DueMessage, Envelope, QueuedMessage, RecipientOutcome, RecipientState, RecipientStatus,
};
use crate::queue::error::{QueueError, Result};
use crate::queue::once::{self, PRUNE_INTERVAL, RelayOrigin, SEEN_TREE};
use crate::queue::spool::header_part;
use crate::queue::stats::{Counters, QueueStats};
use crate::queue::store::{self, BODIES_TREE, MESSAGES_TREE, TxError};
use crate::routing::NextHop;

mod remove;
pub use remove::{REMOVED_REPLY, Removed};

/// Where a new message's stored body value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyIo {
    /// Already in memory: the write runs on the calling task.
    Memory,
    /// Made by committing a spooled file (an fsync): the write runs on a
    /// blocking thread.
    File,
}

/// Why a message is invisible to [`Queue::due`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// Written (or being written) but not yet durable.
    Accepting,
    /// Handed to one delivery worker.
    Leased,
}

/// DSNs one attempt can queue (a failure and a delay notice).
const DSNS_PER_ATTEMPT: usize = 2;

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
    /// (sender node, queue id, recipient) of relayed messages accepted.
    seen: sled::Tree,
    /// The timers in force; replaced whole by [`Queue::set_config`].
    config: std::sync::RwLock<Arc<QueueConfig>>,
    commit: GroupCommit,
    backoff: HopBackoff,
    last_id: Mutex<Option<QueueId>>,
    /// Messages found at open: due once, whatever their schedule says.
    resumed: Mutex<HashSet<QueueId>>,
    /// Messages `due` must not list (see the module's documentation).
    holds: Mutex<HashMap<QueueId, Hold>>,
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

/// What [`Queue::enqueue_relayed`] did with a message from another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayedOutcome {
    /// The id it was queued under; `None` when every recipient was a
    /// repeat, so nothing was queued.
    pub id: Option<QueueId>,
    /// The recipients already accepted earlier for the same sender node
    /// and queue id, dropped (duplicates suppressed).
    pub suppressed: Vec<String>,
}

impl Queue {
    /// Opens the queue in `db` (creating its trees) and resumes every
    /// message found there: each is due again at once, attempt counters
    /// kept. Must run inside a tokio runtime (it starts the flusher).
    pub fn open(db: &sled::Db, config: QueueConfig) -> Result<Self> {
        config.validate()?;
        let messages = db.open_tree(MESSAGES_TREE)?;
        let bodies = db.open_tree(BODIES_TREE)?;
        let seen = db.open_tree(SEEN_TREE)?;
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
        let (settled, dropped) = once::settle_pending(&seen, &messages)?;
        if settled + dropped > 0 {
            tracing::info!(
                settled,
                dropped,
                "settled the origins of relayed messages a crash left half-written"
            );
        }
        let orphans = store::remove_orphan_bodies(&messages, &bodies)?;
        if orphans > 0 {
            tracing::info!(
                orphans,
                "removed message bodies left without a record by a crash mid-write"
            );
        }
        Counters::add(&counters.queue_length, messages.len() as u64);
        let last_id = match messages.last()? {
            Some((key, _)) => QueueId::from_key(&key).ok(),
            None => None,
        };
        tracing::info!(resumed = resumed.len(), "mail queue opened");
        let queue = Self {
            inner: Arc::new(Inner {
                commit: GroupCommit::start(db.clone())?,
                messages,
                bodies,
                seen,
                config: std::sync::RwLock::new(Arc::new(config)),
                backoff: HopBackoff::new(),
                last_id: Mutex::new(last_id),
                resumed: Mutex::new(resumed),
                holds: Mutex::new(HashMap::new()),
                fresh: Mutex::new(None),
                counters,
            }),
        };
        tokio::spawn(prune_seen_periodically(Arc::downgrade(&queue.inner)));
        Ok(queue)
    }

    /// Queues a message and returns its id once it is on disk: only then
    /// may the session answer 250. Concurrent calls share flushes (group
    /// commit). The message is invisible to [`Queue::due`] until it is
    /// durable, then handed to the fresh-mail subscriber (leased) if there
    /// is one. If the flush fails the message is taken out again, so the
    /// client's 4xx is true. If the future is dropped after the write, the
    /// message may be queued without the client having seen 250 (a
    /// duplicate at worst). Every recipient starts `Pending`, whatever
    /// status it came with, and a repeated address is queued once.
    pub async fn enqueue(&self, envelope: Envelope, body: Vec<u8>) -> Result<QueueId> {
        let len = body.len() as u64;
        // One copy into sled's buffer; retries of the transaction share it.
        let outcome = self
            .accept(
                envelope,
                len,
                BodyIo::Memory,
                move |_| Ok(sled::IVec::from(body)),
                None,
            )
            .await?;
        outcome.id.ok_or(QueueError::NoRecipients)
    }

    /// Like [`Queue::enqueue`], for a message another node of the
    /// organisation relays and names by `origin`: recipients already
    /// accepted under the same origin are dropped, and the others are
    /// remembered (until the origin's expiry), claimed before the message is
    /// written and settled at the next open if a crash comes between
    /// (see [`crate::queue::once`]). Returns once
    /// the outcome is durable, even when everything was a repeat (the
    /// first copy may still be on its way to disk).
    pub async fn enqueue_relayed(
        &self,
        envelope: Envelope,
        body: Vec<u8>,
        origin: &RelayOrigin,
    ) -> Result<RelayedOutcome> {
        let len = body.len() as u64;
        self.accept(
            envelope,
            len,
            BodyIo::Memory,
            move |_| Ok(sled::IVec::from(body)),
            Some(origin.clone()),
        )
        .await
    }

    /// [`enqueue`](Self::enqueue) or [`enqueue_relayed`](Self::enqueue_relayed)
    /// with the stored body value made by `value` once the id is known (a
    /// spooled body's reference, see [`crate::queue::spool`]); `body_len`
    /// is the message's length.
    pub(crate) async fn accept(
        &self,
        mut envelope: Envelope,
        body_len: u64,
        io: BodyIo,
        value: impl FnOnce(QueueId) -> Result<sled::IVec> + Send + 'static,
        origin: Option<RelayOrigin>,
    ) -> Result<RelayedOutcome> {
        let mut seen = HashSet::new();
        envelope.recipients.retain(|r| seen.insert(r.address.clone()));
        for recipient in &mut envelope.recipients {
            recipient.status = RecipientStatus::Pending;
        }
        if envelope.recipients.is_empty() {
            return Err(QueueError::NoRecipients);
        }
        let id = self.inner.next_id(SystemTime::now());
        // Held before the write: no scan may see it until it is durable.
        let guard = AcceptGuard::new(&self.inner, id);
        let (queued, suppressed) = match io {
            // sled writes into its in-memory log buffer (its own threads
            // write the buffer out): a hand-off to a blocking thread and
            // back would cost more than the write.
            BodyIo::Memory => self
                .inner
                .write_new(id, envelope, body_len, value(id)?, origin.as_ref())?,
            BodyIo::File => {
                let inner = Arc::clone(&self.inner);
                let written_origin = origin.clone();
                blocking(move || inner.write_new(id, envelope, body_len, value(id)?, written_origin.as_ref()))
                    .await?
            }
        };
        if let Err(error) = self.inner.commit.durable().await {
            if let Some(due) = &queued {
                let keys = match &origin {
                    Some(origin) => due.recipients.iter().map(|r| origin.key(&r.address)).collect(),
                    None => Vec::new(),
                };
                self.inner.take_back(id, keys).await;
            }
            guard.free();
            return Err(error);
        }
        match queued {
            Some(due) => {
                Counters::add(&self.inner.counters.queue_length, 1);
                Counters::add(&self.inner.counters.messages_enqueued, 1);
                guard.disarm();
                self.hand_over(due);
                Ok(RelayedOutcome {
                    id: Some(id),
                    suppressed,
                })
            }
            None => {
                guard.free();
                Ok(RelayedOutcome { id: None, suppressed })
            }
        }
    }

    /// Returns a receiver of messages as they are queued, each already
    /// leased to the receiver as [`Queue::due`] would. Replaces any earlier
    /// receiver. Messages queued while nobody listens are found by `due`.
    pub fn subscribe_fresh(&self) -> tokio::sync::mpsc::UnboundedReceiver<DueMessage> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        *lock(&self.inner.fresh) = Some(tx);
        rx
    }

    /// A freshly durable message, held `Accepting`: leased to the
    /// fresh-mail subscriber, or freed for the next scan when there is none.
    fn hand_over(&self, message: DueMessage) {
        let id = message.id;
        let mut fresh = lock(&self.inner.fresh);
        let mut holds = lock(&self.inner.holds);
        match fresh.as_ref() {
            Some(tx) => {
                holds.insert(id, Hold::Leased);
                if tx.send(message).is_err() {
                    *fresh = None;
                    holds.remove(&id);
                }
            }
            None => {
                holds.remove(&id);
            }
        }
    }

    /// Messages with recipients to try at `now`, oldest first, each with
    /// just those recipients: pending or past their retry time, through a
    /// hop not backing off. Listed messages are leased to the caller (not
    /// listed again) until it records an attempt or releases them; messages
    /// not yet durable or leased to another worker are never listed.
    /// Scans the whole queue: fine for thousands of messages; a schedule
    /// index would come before millions.
    pub fn due(&self, now: SystemTime) -> Result<Vec<DueMessage>> {
        let inner = &self.inner;
        let resumed = lock(&inner.resumed).clone();
        let mut holds = lock(&inner.holds);
        let mut due = Vec::new();
        for entry in inner.messages.iter() {
            let (key, value) = entry?;
            let Ok(message) = store::decode(&key, &value) else {
                continue;
            };
            if holds.contains_key(&message.id) {
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
                holds.insert(message.id, Hold::Leased);
                due.push(DueMessage {
                    id: message.id,
                    sender: message.envelope.sender,
                    recipients,
                    require_tls: message.envelope.require_tls,
                    received_at: message.envelope.received_at,
                    attempt: Attempt::MaybeRepeat,
                });
            }
        }
        Ok(due)
    }

    /// Gives back a message listed by [`Queue::due`] without an attempt.
    pub fn release(&self, id: QueueId) {
        let mut holds = lock(&self.inner.holds);
        if holds.get(&id) == Some(&Hold::Leased) {
            holds.remove(&id);
        }
    }

    /// Drops the remembered origins of relayed messages whose sender has
    /// given up on them by `now`; returns how many. Runs every ten minutes
    /// on its own.
    pub fn prune_seen(&self, now: SystemTime) -> Result<usize> {
        let mut pruned = 0;
        for entry in self.inner.seen.iter() {
            let (key, value) = entry?;
            if once::is_expired(&value, now) {
                self.inner.seen.remove(key)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }

    /// Origins of relayed messages remembered now.
    pub fn seen_len(&self) -> usize {
        self.inner.seen.len()
    }

    /// Records what an attempt came to for some recipients of `id`, as of
    /// `now`: updates their state and the hops' back-off, expires the
    /// message if it is too old, queues the failure or delay DSN (not for a
    /// null sender), and removes the message once every recipient is final.
    /// Made durable before returning; an attempt that queues a DSN is one
    /// transaction, any other a few single-key writes (see
    /// [`crate::queue::store`]).
    pub async fn record_attempt(
        &self,
        id: QueueId,
        outcomes: Vec<RecipientOutcome>,
        now: SystemTime,
    ) -> Result<AttemptReport> {
        // The common attempt runs here (single-key writes into sled's
        // memory, as in `accept`); one that queues a DSN reads the body and
        // runs a transaction, on a blocking thread.
        let fast = self
            .inner
            .record_without_dsn(id, &outcomes, now, &self.inner.config());
        let (result, dsn_guards) = match fast {
            Ok(Some(done)) => (Ok(done), Vec::new()),
            Err(error) => (Err(error), Vec::new()),
            Ok(None) => {
                // DSN ids are taken (and held) before the write, so no scan
                // lists a DSN before it is durable.
                let dsn_ids: [QueueId; DSNS_PER_ATTEMPT] =
                    std::array::from_fn(|_| self.inner.next_id(SystemTime::now()));
                let guards = dsn_ids.map(|dsn| AcceptGuard::new(&self.inner, dsn));
                let inner = Arc::clone(&self.inner);
                let result =
                    blocking(move || inner.record_in_transaction(id, &outcomes, now, &dsn_ids)).await;
                (result, Vec::from(guards))
            }
        };
        let (report, effects) = result?;
        self.inner.commit.durable().await?;
        dsn_guards.into_iter().for_each(AcceptGuard::free);
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
        match self.inner.bodies.get(id.to_bytes())? {
            Some(value) => crate::queue::spool::resolve(&value).map(Some),
            None => Ok(None),
        }
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

    /// Ends the back-off of `hop` (every hop when `None`) and makes the
    /// undelivered recipients through it due at the next scan, whatever
    /// their own schedule says (`postern queue retry`, the console's "retry
    /// now"). Returns how many messages were made due.
    pub fn retry_now(&self, hop: Option<&NextHop>) -> Result<usize> {
        let hop = hop.map(|h| QueuedHop::Known(h.clone()));
        let inner = &self.inner;
        let mut made_due = Vec::new();
        for entry in inner.messages.iter() {
            let (key, value) = entry?;
            let Ok(message) = store::decode(&key, &value) else {
                continue;
            };
            let hops: Vec<&QueuedHop> = message
                .envelope
                .recipients
                .iter()
                .filter(|r| !r.status.is_final())
                .filter(|r| hop.as_ref().is_none_or(|h| *h == r.next_hop))
                .map(|r| &r.next_hop)
                .collect();
            if hops.is_empty() {
                continue;
            }
            for h in hops {
                inner.backoff.clear(h);
            }
            made_due.push(message.id);
        }
        if let Some(h) = &hop {
            inner.backoff.clear(h);
        }
        let n = made_due.len();
        lock(&inner.resumed).extend(made_due);
        Ok(n)
    }

    /// The shared per-hop back-off (for `postern queue` and tests).
    pub fn hop_backoff(&self) -> &HopBackoff {
        &self.inner.backoff
    }

    /// The configuration the queue runs with now.
    pub fn config(&self) -> Arc<QueueConfig> {
        self.inner.config()
    }

    /// Replaces the timers (a configuration change: expiry, delay notice,
    /// the reporting name); the next attempt of every message uses them.
    /// A configuration the queue cannot run with is refused and the one in
    /// force kept.
    pub fn set_config(&self, config: QueueConfig) -> Result<()> {
        config.validate()?;
        *self.inner.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> QueueStats {
        self.inner.counters.snapshot(self.inner.commit.batches())
    }

    /// Keeps new writes from becoming durable until the guard is dropped.
    #[cfg(test)]
    pub(crate) async fn pause_flushes(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.inner.commit.pause().await
    }
}

impl Inner {
    /// The timers in force.
    fn config(&self) -> Arc<QueueConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records an attempt that queues no DSN (the common case: delivered,
    /// or deferred with no delay notice due) with single-key writes: the
    /// record is swapped for its new state, or taken out and then its body.
    /// A sled transaction would write the log out twice (sled seals its
    /// I/O buffer before and after every atomic batch, each a write and a
    /// `sync_file_range` on its own I/O thread), on top of the group flush
    /// that makes the attempt durable. The writes reach the log in this
    /// order and sled recovers a prefix of its log, so a crash between them
    /// leaves at worst a body without a record, which [`Queue::open`]
    /// removes. `None`: a DSN is due, or the record changed meanwhile; the
    /// caller runs the whole attempt in one transaction.
    fn record_without_dsn(
        &self,
        id: QueueId,
        outcomes: &[RecipientOutcome],
        now: SystemTime,
        config: &QueueConfig,
    ) -> Result<Option<(AttemptReport, AttemptEffects)>> {
        let key = id.to_bytes();
        let old = self.messages.get(key)?.ok_or(QueueError::NotFound(id))?;
        let mut message = store::decode(&key, &old)?;
        let effects = apply_attempt(&mut message, outcomes, now, config)?;
        let null_sender = message.envelope.sender.as_deref().is_none_or(str::is_empty);
        let dsn_due = !(effects.failed.is_empty() && effects.delayed.is_empty());
        if dsn_due && !null_sender {
            return Ok(None);
        }
        let removed = message.envelope.is_final();
        let new = if removed {
            None
        } else {
            Some(store::encode(&message)?)
        };
        if self.messages.compare_and_swap(key, Some(&old), new)?.is_err() {
            return Ok(None);
        }
        if removed {
            self.bodies.remove(key)?;
        }
        let report = AttemptReport {
            message,
            removed,
            dsns: Vec::new(),
        };
        Ok(Some((report, effects)))
    }

    /// Records an attempt that queues a DSN (or whose record changed under
    /// [`Inner::record_without_dsn`]): the DSNs, under `dsn_ids`, and the
    /// message's new state in one transaction.
    fn record_in_transaction(
        &self,
        id: QueueId,
        outcomes: &[RecipientOutcome],
        now: SystemTime,
        dsn_ids: &[QueueId; DSNS_PER_ATTEMPT],
    ) -> Result<(AttemptReport, AttemptEffects)> {
        let config = self.config();
        (&self.messages, &self.bodies)
            .transaction(|(messages, bodies)| {
                let mut message = store::tx_get(messages, id)?;
                let effects = apply_attempt(&mut message, outcomes, now, &config)
                    .map_err(ConflictableTransactionError::Abort)?;
                let mut dsns = Vec::new();
                let mut ids = dsn_ids.iter();
                // The body is read only for a DSN, which quotes its
                // headers; most attempts build none (and a null sender
                // gets none). A spooled body's file stays unread.
                let mut body: Option<Option<sled::IVec>> = None;
                let null_sender = message.envelope.sender.as_deref().is_none_or(str::is_empty);
                for (kind, indices) in [
                    (DsnKind::Failure, &effects.failed),
                    (DsnKind::Delay, &effects.delayed),
                ] {
                    if indices.is_empty() || null_sender {
                        continue;
                    }
                    let stored = match &mut body {
                        Some(stored) => stored,
                        None => body.insert(bodies.get(id.to_bytes())?),
                    };
                    // A message without a body record still gets its
                    // report, quoting no headers (as before).
                    let headers = stored
                        .as_deref()
                        .map_or(&[][..], |stored| original_headers(header_part(stored)));
                    let Some(dsn) = self.dsn(&message, kind, indices, headers, now) else {
                        continue;
                    };
                    let Some(&dsn_id) = ids.next() else { break };
                    store::tx_put_dsn(messages, bodies, dsn_id, dsn, now)?;
                    dsns.push(dsn_id);
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
    }

    /// Writes a new message (and, for a relayed one, the origins of its
    /// recipients) with single-key writes, in an order that a crash cannot
    /// make wrong: origins claimed as pending, body, record, origins marked
    /// accepted (see [`crate::queue::once`] and
    /// [`Inner::record_without_dsn`]). Returns the message as the delivery
    /// worker takes it (`None`: every recipient was a repeat, nothing was
    /// written) and the recipients dropped as repeats.
    fn write_new(
        &self,
        id: QueueId,
        envelope: Envelope,
        body_len: u64,
        body: sled::IVec,
        origin: Option<&RelayOrigin>,
    ) -> Result<(Option<DueMessage>, Vec<String>)> {
        let Some(origin) = origin else {
            let due = self.write_new_plain(id, envelope, body_len, body)?;
            return Ok((Some(due), Vec::new()));
        };
        let until = origin.remember_until(SystemTime::now());
        let pending = once::pending_value(&until, id);
        let mut envelope = envelope;
        let (mut claimed, mut fresh, mut suppressed) = (Vec::new(), Vec::new(), Vec::new());
        for recipient in std::mem::take(&mut envelope.recipients) {
            let key = origin.key(&recipient.address);
            let claim = self
                .seen
                .compare_and_swap(&key, None::<&[u8]>, Some(&pending[..]));
            match claim {
                Ok(Ok(())) => {
                    claimed.push(key);
                    fresh.push(recipient);
                }
                Ok(Err(_)) => suppressed.push(recipient.address),
                Err(e) => {
                    self.unclaim(&claimed, &pending);
                    return Err(e.into());
                }
            }
        }
        if fresh.is_empty() {
            return Ok((None, suppressed));
        }
        envelope.recipients = fresh;
        let written = self.write_new_plain(id, envelope, body_len, body);
        let accepted = written.and_then(|due| {
            for key in &claimed {
                self.seen.insert(key, &until[..])?;
            }
            Ok(due)
        });
        match accepted {
            Ok(due) => Ok((Some(due), suppressed)),
            Err(e) => {
                let key = id.to_bytes();
                if let Err(error) = self.messages.remove(key).and_then(|_| self.bodies.remove(key)) {
                    tracing::warn!(%id, %error, "cannot take a half-written message back out; the next start removes it");
                }
                self.unclaim(&claimed, &pending);
                Err(e)
            }
        }
    }

    /// Gives back the origin keys this write claimed (a store error midway),
    /// so the sender's retry is not taken for a repeat. Best effort: what
    /// is left pending is settled when the queue next opens.
    fn unclaim(&self, claimed: &[Vec<u8>], pending: &[u8; 24]) {
        for key in claimed {
            if let Err(error) = self.seen.compare_and_swap(key, Some(&pending[..]), None::<&[u8]>) {
                tracing::warn!(%error, "cannot give back a claimed origin; the next start does");
            }
        }
    }

    /// Writes a new message that names no origin: the body, then the
    /// record, each a single-key write (see [`Inner::record_without_dsn`]
    /// for why not a transaction). A crash between the two leaves a body
    /// without a record, removed at the next [`Queue::open`]; scans find
    /// the record only once its body is there.
    fn write_new_plain(
        &self,
        id: QueueId,
        envelope: Envelope,
        body_len: u64,
        body: sled::IVec,
    ) -> Result<DueMessage> {
        let key = id.to_bytes();
        let message = QueuedMessage {
            id,
            envelope,
            body_len,
            delay_notified: false,
        };
        let record = store::encode(&message)?;
        self.bodies.insert(key, body)?;
        self.messages.insert(key, record)?;
        Ok(DueMessage {
            id,
            sender: message.envelope.sender,
            recipients: message.envelope.recipients,
            require_tls: message.envelope.require_tls,
            received_at: message.envelope.received_at,
            attempt: Attempt::First,
        })
    }

    /// Takes a message whose flush failed back out of the store, with the
    /// origin keys written for it (`seen_keys`), so that the sender's retry
    /// after our 4xx is queued rather than suppressed. Best effort.
    async fn take_back(self: &Arc<Self>, id: QueueId, seen_keys: Vec<Vec<u8>>) {
        let inner = Arc::clone(self);
        let removed = blocking(move || {
            (&inner.messages, &inner.bodies, &inner.seen)
                .transaction(|(messages, bodies, seen)| {
                    store::tx_remove(messages, bodies, id)?;
                    for key in &seen_keys {
                        seen.remove(key.as_slice())?;
                    }
                    Ok::<_, TxError>(())
                })
                .map_err(store::from_tx)
        })
        .await;
        if let Err(error) = removed {
            tracing::error!(%id, %error, "cannot take back a message whose flush failed; it may be delivered though the client was told to retry");
        }
    }

    /// Holds `id` as not yet durable.
    fn hold_accepting(&self, id: QueueId) {
        lock(&self.holds).insert(id, Hold::Accepting);
    }

    /// Frees `id` if it is still held as not yet durable.
    fn unhold(&self, id: QueueId) {
        let mut holds = lock(&self.holds);
        if holds.get(&id) == Some(&Hold::Accepting) {
            holds.remove(&id);
        }
    }

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
        let config = self.config();
        build_dsn(&DsnInput {
            kind,
            id: message.id,
            envelope: &message.envelope,
            recipients,
            original_headers: headers,
            reporting_mta: &config.reporting_mta,
            now,
            will_retry_until: Some(message.envelope.received_at + config.expiration),
        })
    }

    /// In-memory bookkeeping once an attempt is committed.
    fn after_attempt(&self, report: &AttemptReport, effects: &AttemptEffects, now: SystemTime) {
        let id = report.message.id;
        lock(&self.resumed).remove(&id);
        lock(&self.holds).remove(&id);
        let config = self.config();
        for (hop, answered) in &effects.hops {
            self.backoff.record(hop, *answered, now, &config);
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

/// Holds a message `Accepting` from before its write until
/// [`AcceptGuard::done`]. Dropped early (the accepting future was
/// cancelled), it frees the message only once whatever was written is
/// durable, so even then no scan lists it before its flush.
struct AcceptGuard {
    inner: Arc<Inner>,
    id: QueueId,
    armed: bool,
}

impl AcceptGuard {
    fn new(inner: &Arc<Inner>, id: QueueId) -> Self {
        inner.hold_accepting(id);
        Self {
            inner: Arc::clone(inner),
            id,
            armed: true,
        }
    }

    /// The caller leases or frees the message itself from here on.
    fn disarm(mut self) {
        self.armed = false;
    }

    /// The write is durable (or was taken back): scans may list it.
    fn free(mut self) {
        self.armed = false;
        self.inner.unhold(self.id);
    }
}

impl Drop for AcceptGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (inner, id) = (Arc::clone(&self.inner), self.id);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if inner.commit.durable().await.is_ok() {
                        inner.unhold(id);
                    }
                });
            }
            // No runtime left: the node is stopping; a restart frees it.
            Err(_) => inner.unhold(id),
        }
    }
}

/// Drops expired origins every [`PRUNE_INTERVAL`] while the queue lives.
async fn prune_seen_periodically(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(PRUNE_INTERVAL).await;
        let Some(inner) = inner.upgrade() else { return };
        let queue = Queue { inner };
        match tokio::task::spawn_blocking(move || queue.prune_seen(SystemTime::now())).await {
            Ok(Ok(n)) if n > 0 => tracing::debug!(pruned = n, "forgot expired origins of relayed messages"),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot prune the origins of relayed messages"),
            Err(error) => tracing::warn!(%error, "origin pruning task failed"),
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
