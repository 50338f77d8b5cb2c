//! What a crash can leave between the single-key writes of a message
//! arriving or leaving, and what the next open makes of it; and the claim
//! that keeps two sessions carrying one relayed message from both
//! queueing it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::{Duration, SystemTime};

use postern_model::Domain;

use super::{BODY, delivered, envelope, open_db};
use crate::queue::once::{SEEN_TREE, pending_value};
use crate::queue::store::BODIES_TREE;
use crate::queue::{Queue, QueueConfig, QueueId, RelayOrigin};

fn origin(node: &str, n: u128) -> RelayOrigin {
    RelayOrigin {
        node: Domain::parse(node).unwrap(),
        id: QueueId::from_parts(7, n),
        expires: SystemTime::now() + Duration::from_secs(24 * 3600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_its_record_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, orphan) = {
        let db = open_db(dir.path());
        let queue = Queue::open(&db, QueueConfig::default()).unwrap();
        let kept = queue
            .enqueue(envelope(Some("s@adatum.com"), &["a@fabrikam.com"]), BODY.to_vec())
            .await
            .unwrap();
        // A crash after a new message's body and before its record.
        let orphan = QueueId::from_parts(9, 9);
        db.open_tree(BODIES_TREE)
            .unwrap()
            .insert(orphan.to_bytes(), BODY)
            .unwrap();
        db.flush().unwrap();
        (kept, orphan)
    };
    let db = open_db(dir.path());
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    assert_eq!(queue.ids().unwrap(), [kept]);
    assert_eq!(queue.body(kept).unwrap().as_deref(), Some(BODY));
    assert_eq!(queue.body(orphan).unwrap(), None);
    assert_eq!(db.open_tree(BODIES_TREE).unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_message_leaves_with_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    let id = queue
        .enqueue(
            envelope(Some("s@adatum.com"), &["a@fabrikam.com", "b@fabrikam.com"]),
            BODY.to_vec(),
        )
        .await
        .unwrap();
    let partly = queue
        .record_attempt(id, vec![delivered("a@fabrikam.com")], SystemTime::now())
        .await
        .unwrap();
    assert!(!partly.removed);
    assert_eq!(queue.body(id).unwrap().as_deref(), Some(BODY));
    let done = queue
        .record_attempt(id, vec![delivered("b@fabrikam.com")], SystemTime::now())
        .await
        .unwrap();
    assert!(done.removed && done.dsns.is_empty());
    assert_eq!(queue.get(id).unwrap(), None);
    assert_eq!(db.open_tree(BODIES_TREE).unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_left_pending_by_a_crash_are_settled_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (queued, written, lost) = (
        origin("edge1.adatum.com", 1),
        origin("edge1.adatum.com", 2),
        origin("edge1.adatum.com", 3),
    );
    let first = {
        let db = open_db(dir.path());
        let queue = Queue::open(&db, QueueConfig::default()).unwrap();
        let first = queue
            .enqueue_relayed(
                envelope(Some("s@x.org"), &["a@adatum.com"]),
                BODY.to_vec(),
                &queued,
            )
            .await
            .unwrap()
            .id
            .unwrap();
        let seen = db.open_tree(SEEN_TREE).unwrap();
        let until = written.remember_until(SystemTime::now());
        // A crash after the record of `first` and before its origin key
        // for b was marked accepted: the key still names `first`.
        seen.insert(written.key("b@adatum.com"), &pending_value(&until, first)[..])
            .unwrap();
        // A crash after a claim and before the record: the key names a
        // message that was never written (never acknowledged either).
        seen.insert(
            lost.key("c@adatum.com"),
            &pending_value(&until, QueueId::from_parts(9, 9))[..],
        )
        .unwrap();
        db.flush().unwrap();
        first
    };
    let db = open_db(dir.path());
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    let seen = db.open_tree(SEEN_TREE).unwrap();
    assert_eq!(
        seen.get(written.key("b@adatum.com")).unwrap().unwrap().len(),
        8,
        "marked accepted"
    );
    assert_eq!(seen.get(lost.key("c@adatum.com")).unwrap(), None, "dropped");
    // The sender's retries: the one whose record was written is a repeat,
    // the one that never was is queued now.
    let again = queue
        .enqueue_relayed(
            envelope(Some("s@x.org"), &["b@adatum.com"]),
            BODY.to_vec(),
            &written,
        )
        .await
        .unwrap();
    assert_eq!(
        (again.id, again.suppressed.as_slice()),
        (None, &["b@adatum.com".to_owned()][..])
    );
    let retried = queue
        .enqueue_relayed(envelope(Some("s@x.org"), &["c@adatum.com"]), BODY.to_vec(), &lost)
        .await
        .unwrap();
    assert!(retried.id.is_some() && retried.suppressed.is_empty());
    assert!(queue.get(first).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_carrying_one_relayed_message_at_once_queue_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let from = origin("edge1.adatum.com", 4);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (queue, from) = (queue.clone(), from.clone());
            tokio::spawn(async move {
                queue
                    .enqueue_relayed(
                        envelope(Some("s@x.org"), &["a@adatum.com", "b@adatum.com"]),
                        BODY.to_vec(),
                        &from,
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut queued = Vec::new();
    let mut suppressed = 0;
    for task in tasks {
        let outcome = task.await.unwrap();
        queued.extend(outcome.id);
        suppressed += outcome.suppressed.len();
    }
    // Every recipient is queued once, whichever sessions took them.
    let mut recipients: Vec<String> = queued
        .iter()
        .flat_map(|id| queue.get(*id).unwrap().unwrap().envelope.recipients)
        .map(|r| r.address)
        .collect();
    recipients.sort();
    assert_eq!(recipients, ["a@adatum.com", "b@adatum.com"]);
    assert_eq!(suppressed, 8 * 2 - 2);
    assert_eq!(queue.seen_len(), 2);
}
