//! Queue counters: plain atomics, read as one `QueueStats` snapshot (the
//! metrics exporter reads the snapshot later).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the queue's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages in the queue now (DSNs included).
    pub queue_length: u64,
    /// Messages accepted since the queue was opened (DSNs included).
    pub messages_enqueued: u64,
    /// Messages that left the queue with every recipient delivered.
    pub messages_delivered: u64,
    /// Messages that left the queue with at least one recipient failed.
    pub messages_failed: u64,
    /// Recipients delivered.
    pub recipients_delivered: u64,
    /// Recipients failed (permanent failure or expiry).
    pub recipients_failed: u64,
    /// DSNs generated (failure and delay).
    pub dsns_generated: u64,
    /// Flushes (group commits) done.
    pub flush_batches: u64,
}

/// The live counters behind `QueueStats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub queue_length: AtomicU64,
    pub messages_enqueued: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub messages_failed: AtomicU64,
    pub recipients_delivered: AtomicU64,
    pub recipients_failed: AtomicU64,
    pub dsns_generated: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts one from the queue length, never below zero.
    pub(crate) fn message_left(&self) {
        let _ = self
            .queue_length
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// The snapshot (`flush_batches` comes from the flusher).
    pub(crate) fn snapshot(&self, flush_batches: u64) -> QueueStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QueueStats {
            queue_length: get(&self.queue_length),
            messages_enqueued: get(&self.messages_enqueued),
            messages_delivered: get(&self.messages_delivered),
            messages_failed: get(&self.messages_failed),
            recipients_delivered: get(&self.recipients_delivered),
            recipients_failed: get(&self.recipients_failed),
            dsns_generated: get(&self.dsns_generated),
            flush_batches,
        }
    }
}
