//! Removing a message on an administrator's word (`postern queue remove`,
//! Exchange's Remove-Message): with a non-delivery report to the sender
//! for the recipients still waiting (`-WithNDR $true`, Exchange's default
//! and ours), or silently. One transaction, durable before it returns.

use std::time::SystemTime;

use postern_model::QueueId;
use sled::Transactional;

use super::{AcceptGuard, Hold, Inner, Queue, lock};
use crate::queue::dsn::{DsnKind, original_headers};
use crate::queue::envelope::RecipientStatus;
use crate::queue::error::{QueueError, Result};
use crate::queue::spool::header_part;
use crate::queue::stats::Counters;
use crate::queue::store;

/// The reply written for each recipient removed with a report.
pub const REMOVED_REPLY: &str = "550 5.3.0 the message was removed from the queue by an administrator";

/// What [`Queue::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Recipients that had not been delivered yet (now never will be).
    pub undelivered: Vec<String>,
    /// The non-delivery report queued for the sender, if one was asked for
    /// and the message had a sender and undelivered recipients.
    pub ndr: Option<QueueId>,
}

impl Queue {
    /// Removes message `id` from the queue. With `ndr`, the sender gets a
    /// failure DSN naming the recipients still waiting (each failed with
    /// [`REMOVED_REPLY`]). A message a delivery worker holds right now is
    /// refused ([`QueueError::Busy`]): it may be on the wire; try again.
    pub async fn remove(&self, id: QueueId, ndr: bool) -> Result<Removed> {
        {
            let mut holds = lock(&self.inner.holds);
            if holds.contains_key(&id) {
                return Err(QueueError::Busy(id));
            }
            // Held by us: no scan lists it while it is being removed.
            holds.insert(id, Hold::Leased);
        }
        // The report's id is held until durable, as in `record_attempt`.
        let dsn_id = self.inner.next_id(SystemTime::now());
        let dsn_guard = AcceptGuard::new(&self.inner, dsn_id);
        let inner = std::sync::Arc::clone(&self.inner);
        let result = super::blocking(move || remove_in_store(&inner, id, ndr, dsn_id)).await;
        let done = match result {
            Ok(removed) => self.inner.commit.durable().await.map(|()| removed),
            Err(e) => Err(e),
        };
        lock(&self.inner.holds).remove(&id);
        lock(&self.inner.resumed).remove(&id);
        let removed = done?;
        dsn_guard.free();
        let c = &self.inner.counters;
        c.message_left();
        if removed.ndr.is_some() {
            Counters::add(&c.dsns_generated, 1);
            Counters::add(&c.messages_enqueued, 1);
            Counters::add(&c.queue_length, 1);
        }
        Ok(removed)
    }
}

fn remove_in_store(inner: &Inner, id: QueueId, ndr: bool, dsn_id: QueueId) -> Result<Removed> {
    let now = SystemTime::now();
    (&inner.messages, &inner.bodies)
        .transaction(|(messages, bodies)| {
            let mut message = store::tx_get(messages, id)?;
            let mut waiting = Vec::new();
            for (i, r) in message.envelope.recipients.iter_mut().enumerate() {
                if !r.status.is_final() {
                    waiting.push((i, r.address.clone()));
                    r.status = RecipientStatus::Failed {
                        at: now,
                        reply: REMOVED_REPLY.to_owned(),
                    };
                }
            }
            let mut queued_ndr = None;
            if ndr && !waiting.is_empty() {
                // A body missing from a damaged store gives a report
                // without the original headers rather than no removal.
                let body = bodies.get(id.to_bytes())?;
                // A spooled body is stored as a reference: its head holds
                // the header section.
                let headers = body
                    .as_deref()
                    .map_or(&[][..], |stored| original_headers(header_part(stored)));
                let indices: Vec<usize> = waiting.iter().map(|(i, _)| *i).collect();
                // No DSN for a null sender (build_dsn says none).
                if let Some(dsn) = inner.dsn(&message, DsnKind::Failure, &indices, headers, now) {
                    store::tx_put_dsn(messages, bodies, dsn_id, dsn, now)?;
                    queued_ndr = Some(dsn_id);
                }
            }
            store::tx_remove(messages, bodies, id)?;
            Ok(Removed {
                undelivered: waiting.into_iter().map(|(_, a)| a).collect(),
                ndr: queued_ndr,
            })
        })
        .map_err(store::from_tx)
}
