//! Queue tests over real sled stores in temporary directories: durability
//! across reopen, group commit, the delivery API, DSNs, and a SIGKILL crash.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::routing::NextHop;

mod crash;
mod half_written;
mod leases;
mod relayed;
mod remove;
mod upgrade;

pub(super) const BODY: &[u8] = b"From: s@adatum.com\r\nTo: a@fabrikam.com\r\nSubject: hi\r\n\r\nHello.\r\n";

pub(crate) fn open_db(path: &Path) -> sled::Db {
    // A dropped queue's flusher may hold the db for a moment after the
    // drop; sled's file lock refuses a second open until it lets go.
    for _ in 0..100 {
        if let Ok(db) = sled::open(path) {
            return db;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sled::open(path).unwrap()
}

pub(super) fn envelope(sender: Option<&str>, recipients: &[&str]) -> Envelope {
    let recipients = recipients
        .iter()
        .map(|r| RecipientState::to_domain_of(*r))
        .collect();
    Envelope::new(sender.map(str::to_owned), recipients, SystemTime::now())
}

pub(super) fn delivered(address: &str) -> RecipientOutcome {
    RecipientOutcome::new(address, DeliveryOutcome::Delivered("250 2.0.0 OK".into()))
}

pub(super) fn transient(address: &str) -> RecipientOutcome {
    RecipientOutcome::new(
        address,
        DeliveryOutcome::TransientFailure("451 4.4.1 no answer".into()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueued_message_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
        let id = queue
            .enqueue(envelope(Some("s@adatum.com"), &["a@fabrikam.com"]), BODY.to_vec())
            .await
            .unwrap();
        assert_eq!(queue.stats().queue_length, 1);
        id
    };
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let message = queue.get(id).unwrap().expect("message after reopen");
    assert_eq!(message.envelope.sender.as_deref(), Some("s@adatum.com"));
    assert_eq!(queue.body(id).unwrap().as_deref(), Some(BODY));
    assert_eq!(queue.stats().queue_length, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_enqueues_all_complete_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = {
        let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let queue = queue.clone();
                tokio::spawn(async move {
                    let rcpt = format!("user{i}@fabrikam.com");
                    queue
                        .enqueue(envelope(Some("s@adatum.com"), &[&rcpt]), BODY.to_vec())
                        .await
                })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            ids.push(task.await.unwrap().unwrap());
        }
        let stats = queue.stats();
        assert_eq!(stats.messages_enqueued, 50);
        assert!((1..=50).contains(&stats.flush_batches), "{stats:?}");
        ids
    };
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    ids.sort();
    assert_eq!(queue.ids().unwrap(), ids, "all present, in id (FIFO) order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_backs_off_the_whole_hop() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let first = queue
        .enqueue(envelope(Some("s@adatum.com"), &["a@fabrikam.com"]), BODY.to_vec())
        .await
        .unwrap();
    let now = SystemTime::now();
    let due = queue.due(now).unwrap();
    assert_eq!(due.len(), 1);
    assert!(queue.due(now).unwrap().is_empty(), "leased to the first caller");
    queue
        .record_attempt(first, vec![transient("a@fabrikam.com")], now)
        .await
        .unwrap();

    let second = queue
        .enqueue(envelope(Some("s@adatum.com"), &["b@fabrikam.com"]), BODY.to_vec())
        .await
        .unwrap();
    let other = queue
        .enqueue(envelope(Some("s@adatum.com"), &["c@contoso.com"]), BODY.to_vec())
        .await
        .unwrap();
    let due: Vec<QueueId> = queue.due(now).unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(due, [other], "fabrikam.com is backing off, contoso.com is not");
    queue.release(other);

    let later = now + Duration::from_secs(61);
    let due: Vec<QueueId> = queue.due(later).unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(due, [first, second, other], "after one minute, oldest first");
    let message = queue.get(first).unwrap().unwrap();
    assert_eq!(message.envelope.recipients[0].status.attempts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_now_ends_one_hops_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let now = SystemTime::now();
    let mut ids = Vec::new();
    for rcpt in ["a@fabrikam.com", "c@contoso.com"] {
        let id = queue
            .enqueue(envelope(Some("s@adatum.com"), &[rcpt]), BODY.to_vec())
            .await
            .unwrap();
        assert_eq!(queue.due(now).unwrap().len(), 1);
        queue
            .record_attempt(id, vec![transient(rcpt)], now)
            .await
            .unwrap();
        ids.push(id);
    }
    assert!(queue.due(now).unwrap().is_empty(), "both hops back off");
    let fabrikam: NextHop = "fabrikam.com".parse().unwrap();
    assert!(queue.hop_backoff().retry_at(&fabrikam.clone().into()).is_some());

    assert_eq!(queue.retry_now(Some(&fabrikam)).unwrap(), 1);
    assert!(queue.hop_backoff().is_ready(&fabrikam.into(), now));
    let due: Vec<QueueId> = queue.due(now).unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(due, [ids[0]], "only the hop asked for");
    let nowhere: NextHop = "nowhere.example".parse().unwrap();
    assert_eq!(queue.retry_now(Some(&nowhere)).unwrap(), 0);
    queue.release(ids[0]);
    assert_eq!(queue.retry_now(None).unwrap(), 2, "every hop");
    assert_eq!(queue.due(now).unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_fails_the_message_and_sends_one_dsn() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        reporting_mta: "edge1.adatum.com".into(),
        ..QueueConfig::default()
    };
    let queue = Queue::open(&open_db(dir.path()), config).unwrap();
    let env = envelope(Some("s@adatum.com"), &["a@fabrikam.com"]);
    let id = queue.enqueue(env.clone(), BODY.to_vec()).await.unwrap();
    let late = env.received_at + Duration::from_secs(2 * 24 * 3600 + 1);
    let report = queue
        .record_attempt(id, vec![transient("a@fabrikam.com")], late)
        .await
        .unwrap();
    assert!(report.removed);
    assert_eq!(report.dsns.len(), 1, "a failure DSN; the delay notice is moot");
    assert!(queue.get(id).unwrap().is_none());
    assert!(queue.body(id).unwrap().is_none());

    let dsn = queue.get(report.dsns[0]).unwrap().unwrap();
    assert_eq!(dsn.envelope.sender, None, "DSNs go out with the null sender");
    assert_eq!(
        dsn.envelope.recipients,
        [RecipientState::new(
            "s@adatum.com",
            NextHop::Domain(postern_model::Domain::parse("adatum.com").unwrap())
        )]
    );
    let text = String::from_utf8(queue.body(dsn.id).unwrap().unwrap()).unwrap();
    for needle in [
        "report-type=delivery-status",
        "Reporting-MTA: dns; edge1.adatum.com\r\n",
        &format!("X-Postern-Queue-ID: {id}\r\n"),
        "Final-Recipient: rfc822; a@fabrikam.com\r\nAction: failed\r\nStatus: 4.4.7\r\n",
        "Content-Type: text/rfc822-headers\r\n\r\nFrom: s@adatum.com\r\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let stats = queue.stats();
    assert_eq!(
        (stats.messages_failed, stats.dsns_generated, stats.queue_length),
        (1, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_sender_gets_no_dsn_and_dsns_are_not_bounced() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let id = queue
        .enqueue(envelope(None, &["a@fabrikam.com"]), BODY.to_vec())
        .await
        .unwrap();
    let failure = RecipientOutcome::new(
        "a@fabrikam.com",
        DeliveryOutcome::PermanentFailure("550 5.1.1 no".into()),
    );
    let report = queue
        .record_attempt(id, vec![failure], SystemTime::now())
        .await
        .unwrap();
    assert!(report.removed);
    assert!(report.dsns.is_empty());
    assert!(queue.ids().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_notice_goes_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let env = envelope(Some("s@adatum.com"), &["a@fabrikam.com"]);
    let id = queue.enqueue(env.clone(), BODY.to_vec()).await.unwrap();
    let five_hours = env.received_at + Duration::from_secs(5 * 3600);
    let report = queue
        .record_attempt(id, vec![transient("a@fabrikam.com")], five_hours)
        .await
        .unwrap();
    assert_eq!(report.dsns.len(), 1);
    let text = String::from_utf8(queue.body(report.dsns[0]).unwrap().unwrap()).unwrap();
    assert!(text.contains("Action: delayed\r\nStatus: 4.4.1\r\n"), "{text}");
    let again = queue
        .record_attempt(id, vec![transient("a@fabrikam.com")], five_hours)
        .await
        .unwrap();
    assert!(again.dsns.is_empty());
    assert!(!again.removed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_delivery_keeps_only_the_deferred_recipient_due_then_removes() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let id = queue
        .enqueue(
            envelope(Some("s@adatum.com"), &["a@fabrikam.com", "b@contoso.com"]),
            BODY.to_vec(),
        )
        .await
        .unwrap();
    let now = SystemTime::now();
    let outcomes = vec![delivered("a@fabrikam.com"), transient("b@contoso.com")];
    let report = queue.record_attempt(id, outcomes, now).await.unwrap();
    assert!(!report.removed);
    assert!(queue.due(now).unwrap().is_empty(), "b waits a minute, a is done");
    let due = queue.due(now + Duration::from_secs(60)).unwrap();
    assert_eq!(due.len(), 1);
    let addresses: Vec<&str> = due[0].recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addresses, ["b@contoso.com"]);

    let later = now + Duration::from_secs(60);
    let report = queue
        .record_attempt(id, vec![delivered("b@contoso.com")], later)
        .await
        .unwrap();
    assert!(report.removed && report.dsns.is_empty());
    assert!(queue.get(id).unwrap().is_none() && queue.body(id).unwrap().is_none());
    let stats = queue.stats();
    assert_eq!(
        (
            stats.queue_length,
            stats.messages_delivered,
            stats.recipients_delivered
        ),
        (0, 1, 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_makes_every_message_due_and_keeps_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let id = {
        let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
        let id = queue
            .enqueue(envelope(Some("s@adatum.com"), &["a@fabrikam.com"]), BODY.to_vec())
            .await
            .unwrap();
        queue
            .record_attempt(id, vec![transient("a@fabrikam.com")], now)
            .await
            .unwrap();
        assert!(queue.due(now).unwrap().is_empty());
        id
    };
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let due = queue.due(now).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, id);
    assert_eq!(due[0].recipients[0].status.attempts(), 1);
    let report = queue
        .record_attempt(id, vec![transient("a@fabrikam.com")], now)
        .await
        .unwrap();
    assert_eq!(report.message.envelope.recipients[0].status.attempts(), 2);
    let next = queue
        .enqueue(envelope(None, &["x@contoso.com"]), BODY.to_vec())
        .await
        .unwrap();
    assert!(next > id, "ids keep increasing across a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_what_cannot_be_queued_or_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let empty = queue
        .enqueue(envelope(Some("s@adatum.com"), &[]), BODY.to_vec())
        .await;
    assert!(matches!(empty, Err(QueueError::NoRecipients)));
    let id = queue
        .enqueue(envelope(None, &["a@fabrikam.com"]), BODY.to_vec())
        .await
        .unwrap();
    let unknown = queue
        .record_attempt(id, vec![delivered("z@fabrikam.com")], SystemTime::now())
        .await;
    assert!(matches!(unknown, Err(QueueError::UnknownRecipient { .. })));
    let missing = QueueId::from_parts(1, 1);
    let gone = queue.record_attempt(missing, vec![], SystemTime::now()).await;
    assert!(matches!(gone, Err(QueueError::NotFound(m)) if m == missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_freshly_queued_message_is_a_first_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let mut fresh = queue.subscribe_fresh();
    let id = queue
        .enqueue(envelope(Some("s@adatum.com"), &["a@fabrikam.com"]), BODY.to_vec())
        .await
        .unwrap();
    let handed = fresh.recv().await.unwrap();
    assert_eq!((handed.id, handed.attempt), (id, Attempt::First));
    // Given back without an attempt, the next scan lists it as a possible
    // repeat: a delivery may have happened before the release.
    queue.release(id);
    let due = queue.due(SystemTime::now()).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempt, Attempt::MaybeRepeat);
    drop(queue);
    // So is every message found at start.
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let due = queue.due(SystemTime::now()).unwrap();
    assert_eq!((due[0].id, due[0].attempt), (id, Attempt::MaybeRepeat));
}
