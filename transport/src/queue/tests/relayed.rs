//! Messages relayed by another node of the organisation: a repeat of the
//! same (sender node, queue id, recipient) is dropped, across a reopen,
//! until the sender's expiry.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::{Duration, SystemTime};

use postern_model::Domain;

use super::{BODY, envelope, open_db};
use crate::queue::{Queue, QueueConfig, QueueId, RelayOrigin};

fn origin(node: &str, id: QueueId, expires: SystemTime) -> RelayOrigin {
    RelayOrigin {
        node: Domain::parse(node).unwrap(),
        id,
        expires,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_is_dropped_even_after_a_reopen_and_forgotten_after_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let day = Duration::from_secs(24 * 3600);
    let from_edge1 = origin("edge1.adatum.com", QueueId::from_parts(5, 5), now + day);
    let first = {
        let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
        let rcpts = ["a@adatum.com", "b@adatum.com"];
        let first = queue
            .enqueue_relayed(envelope(Some("s@x.org"), &rcpts), BODY.to_vec(), &from_edge1)
            .await
            .unwrap();
        assert!(first.suppressed.is_empty());
        let again = queue
            .enqueue_relayed(envelope(Some("s@x.org"), &rcpts), BODY.to_vec(), &from_edge1)
            .await
            .unwrap();
        assert_eq!(again.id, None, "nothing queued for a repeat");
        assert_eq!(again.suppressed, rcpts);
        assert_eq!(queue.ids().unwrap().len(), 1);
        first.id.unwrap()
    };
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    // After a restart: b repeated, c new; only c is queued.
    let partial = queue
        .enqueue_relayed(
            envelope(Some("s@x.org"), &["b@adatum.com", "c@adatum.com"]),
            BODY.to_vec(),
            &from_edge1,
        )
        .await
        .unwrap();
    assert_eq!(partial.suppressed, ["b@adatum.com"]);
    let queued = queue.get(partial.id.unwrap()).unwrap().unwrap();
    let addresses: Vec<&str> = queued
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(addresses, ["c@adatum.com"]);
    assert!(queue.get(first).unwrap().is_some());
    // The same queue id from another node is another message.
    let other = origin("edge2.adatum.com", QueueId::from_parts(5, 5), now + day);
    let theirs = queue
        .enqueue_relayed(
            envelope(Some("s@x.org"), &["a@adatum.com"]),
            BODY.to_vec(),
            &other,
        )
        .await
        .unwrap();
    assert!(theirs.id.is_some() && theirs.suppressed.is_empty());

    assert_eq!(queue.seen_len(), 4);
    assert_eq!(queue.prune_seen(now).unwrap(), 0, "nothing has expired yet");
    assert_eq!(queue.prune_seen(now + 2 * day).unwrap(), 4);
    let after = queue
        .enqueue_relayed(
            envelope(Some("s@x.org"), &["a@adatum.com"]),
            BODY.to_vec(),
            &from_edge1,
        )
        .await
        .unwrap();
    assert!(after.id.is_some(), "forgotten once the sender's expiry passed");
}
