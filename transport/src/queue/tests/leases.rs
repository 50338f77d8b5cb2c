//! Leasing under concurrency: enqueues, the due scan and delivery workers
//! (the fresh-mail subscriber and the scanner) all run at once, for many
//! rounds. Every message must be leased exactly once, and never while the
//! flush that makes it durable has not happened (flushes are held back
//! for half the rounds while the scanner keeps scanning).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{BODY, delivered, envelope, open_db};
use crate::queue::{DueMessage, Queue, QueueConfig, QueueId};

const ROUNDS: usize = 40;
const PER_ROUND: usize = 25;

/// What the workers saw.
#[derive(Default)]
struct Ledger {
    leased: HashMap<QueueId, u32>,
    violations: Vec<String>,
}

struct Harness {
    queue: Queue,
    /// True while flushes are held back: nothing new may be leased.
    paused: AtomicBool,
    ledger: Mutex<Ledger>,
}

impl Harness {
    /// A worker got `message`: check and count the lease, then deliver it.
    fn leased(self: &Arc<Self>, message: DueMessage) {
        {
            let mut ledger = self.ledger.lock().unwrap();
            if self.paused.load(Ordering::SeqCst) {
                ledger
                    .violations
                    .push(format!("{} leased before its flush", message.id));
            }
            let count = {
                let n = ledger.leased.entry(message.id).or_default();
                *n += 1;
                *n
            };
            if count > 1 {
                ledger
                    .violations
                    .push(format!("{} leased {count} times", message.id));
            }
        }
        let harness = Arc::clone(self);
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            let outcomes = message.recipients.iter().map(|r| delivered(&r.address)).collect();
            if let Err(e) = harness
                .queue
                .record_attempt(message.id, outcomes, SystemTime::now())
                .await
            {
                let text = format!("cannot record a delivery attempt: {e}");
                harness.ledger.lock().unwrap().violations.push(text);
            }
        });
    }

    fn leased_total(&self) -> usize {
        self.ledger.lock().unwrap().leased.len()
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..6_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueue_scan_and_workers_lease_each_message_once_and_only_after_its_flush() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let mut fresh = queue.subscribe_fresh();
    let harness = Arc::new(Harness {
        queue: queue.clone(),
        paused: AtomicBool::new(false),
        ledger: Mutex::new(Ledger::default()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let scanner = {
        let (harness, stop) = (Arc::clone(&harness), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut scans = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for message in harness.queue.due(SystemTime::now()).unwrap() {
                    harness.leased(message);
                }
                scans += 1;
                tokio::task::yield_now().await;
            }
            scans
        })
    };
    let subscriber = {
        let harness = Arc::clone(&harness);
        tokio::spawn(async move {
            while let Some(message) = fresh.recv().await {
                harness.leased(message);
            }
        })
    };

    for round in 0..ROUNDS {
        let hold_flushes = round % 2 == 0;
        let pause = if hold_flushes {
            let guard = queue.pause_flushes().await;
            harness.paused.store(true, Ordering::SeqCst);
            Some(guard)
        } else {
            None
        };
        let enqueues: Vec<_> = (0..PER_ROUND)
            .map(|i| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let rcpt = format!("r{round}-{i}@fabrikam.com");
                    queue
                        .enqueue(envelope(Some("s@adatum.com"), &[&rcpt]), BODY.to_vec())
                        .await
                        .unwrap()
                })
            })
            .collect();
        if let Some(guard) = pause {
            // Every write of the round is in the store, none durable: the
            // scanner keeps scanning meanwhile.
            wait_until("the round's writes are in the store", || {
                queue.ids().unwrap().len() == PER_ROUND
            })
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            harness.paused.store(false, Ordering::SeqCst);
            drop(guard);
        }
        for task in enqueues {
            task.await.unwrap();
        }
        let expected = (round + 1) * PER_ROUND;
        // Delivered: recorded, durable, and counted.
        wait_until("every message is leased and delivered", || {
            harness.leased_total() == expected
                && queue.ids().unwrap().is_empty()
                && queue.stats().messages_delivered == expected as u64
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let scans = scanner.await.unwrap();
    subscriber.abort();

    let ledger = harness.ledger.lock().unwrap();
    assert!(ledger.violations.is_empty(), "{:#?}", ledger.violations);
    assert_eq!(ledger.leased.len(), ROUNDS * PER_ROUND);
    assert!(ledger.leased.values().all(|&n| n == 1));
    assert!(scans > ROUNDS as u64, "the scanner ran only {scans} times");
    let stats = queue.stats();
    assert_eq!(stats.messages_delivered, (ROUNDS * PER_ROUND) as u64);
    assert_eq!(stats.queue_length, 0);
}
