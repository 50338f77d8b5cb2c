//! Group commit: one flusher task makes the writes of many concurrent
//! sessions durable with one `fsync` (sled `flush`) per batch.
//!
//! The protocol: a writer first completes its sled write, then takes a
//! ticket (a counter incremented *after* the write) and wakes the flusher.
//! The flusher reads the latest ticket number, flushes, and publishes that
//! number as the new "durable epoch" on a `watch` channel. Every write whose
//! ticket is at most the published epoch finished before the flush began,
//! so it is on disk; writers that arrive during a flush are covered by the
//! next one. A failed flush is published too, and fails the waiters of its
//! batch (they answer 4xx; their message may still be delivered later,
//! which makes a duplicate at worst, never a loss).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::queue::error::{QueueError, Result};

/// What the flusher has made durable so far.
#[derive(Debug, Clone, Default)]
struct FlushState {
    /// Every ticket up to this one is durable.
    durable: u64,
    /// The last failed batch: tickets up to `.0` failed with `.1`.
    failed: Option<(u64, String)>,
    /// Flushes done (one per batch).
    batches: u64,
}

/// The writers' side of the flusher task; dropping it stops the task.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    tickets: Arc<AtomicU64>,
    wake: Arc<Notify>,
    state: watch::Receiver<FlushState>,
    /// Held by the flusher around each flush; a test holds it to keep
    /// writes from becoming durable for a while (uncontended otherwise).
    #[cfg_attr(not(test), allow(dead_code))]
    gate: Arc<tokio::sync::Mutex<()>>,
    task: JoinHandle<()>,
}

impl GroupCommit {
    /// Starts the flusher for `db` on the current tokio runtime.
    pub(crate) fn start(db: sled::Db) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| QueueError::NoRuntime)?;
        let tickets = Arc::new(AtomicU64::new(0));
        let wake = Arc::new(Notify::new());
        let (publish, state) = watch::channel(FlushState::default());
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let task = runtime.spawn(flusher(
            db,
            Arc::clone(&tickets),
            Arc::clone(&wake),
            Arc::clone(&gate),
            publish,
        ));
        Ok(Self {
            tickets,
            wake,
            state,
            gate,
            task,
        })
    }

    /// Returns once every write this task completed before the call is on
    /// disk. Call it after the write, never before.
    pub(crate) async fn durable(&self) -> Result<()> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let mut state = self.state.clone();
        loop {
            {
                let now = state.borrow_and_update();
                if now.durable >= ticket {
                    return Ok(());
                }
                if let Some((upto, reason)) = &now.failed
                    && *upto >= ticket
                {
                    return Err(QueueError::Flush(reason.clone()));
                }
            }
            state.changed().await.map_err(|_| QueueError::FlusherStopped)?;
        }
    }

    /// Flushes made so far: fewer than durable writes when batching works.
    pub(crate) fn batches(&self) -> u64 {
        self.state.borrow().batches
    }

    /// Keeps the flusher from starting another flush until the guard is
    /// dropped (tests: writes stay not durable meanwhile).
    #[cfg(test)]
    pub(crate) async fn pause(&self) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.gate).lock_owned().await
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn flusher(
    db: sled::Db,
    tickets: Arc<AtomicU64>,
    wake: Arc<Notify>,
    gate: Arc<tokio::sync::Mutex<()>>,
    publish: watch::Sender<FlushState>,
) {
    loop {
        wake.notified().await;
        let _flushing = gate.lock().await;
        let target = tickets.load(Ordering::SeqCst);
        if target <= publish.borrow().durable {
            continue;
        }
        let db = db.clone();
        let result = tokio::task::spawn_blocking(move || db.flush()).await;
        publish.send_modify(|state| match result {
            Ok(Ok(_)) => {
                state.durable = target;
                state.batches += 1;
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "queue flush failed");
                state.failed = Some((target, error.to_string()));
            }
            Err(join) => state.failed = Some((target, join.to_string())),
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let commit = Arc::new(GroupCommit::start(db.clone()).unwrap());
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let (db, commit) = (db.clone(), Arc::clone(&commit));
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), &b"x"[..]).unwrap();
                commit.durable().await
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let batches = commit.batches();
        assert!((1..=50).contains(&batches), "{batches} flushes");
    }

    #[test]
    fn needs_a_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        assert!(matches!(GroupCommit::start(db), Err(QueueError::NoRuntime)));
    }
}
