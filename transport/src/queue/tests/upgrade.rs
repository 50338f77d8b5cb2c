//! A queue written by an earlier version, whose header records are JSON,
//! is opened, listed and recorded by this one; records are rewritten as
//! protobuf by the next attempt that changes them.

use super::*;

/// Stores `message` and `body` as an earlier version did: the record as
/// `serde_json` of `QueuedMessage`, in one flushed write.
fn write_as_json(db: &sled::Db, message: &QueuedMessage, body: &[u8]) {
    let key = message.id.to_bytes();
    db.open_tree("queue/messages")
        .unwrap()
        .insert(key, serde_json::to_vec(message).unwrap())
        .unwrap();
    db.open_tree("queue/bodies").unwrap().insert(key, body).unwrap();
    db.flush().unwrap();
}

fn stored_record(db: &sled::Db, id: QueueId) -> Option<sled::IVec> {
    db.open_tree("queue/messages")
        .unwrap()
        .get(id.to_bytes())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_queue_is_resumed_and_its_records_are_rewritten_as_protobuf() {
    let dir = tempfile::tempdir().unwrap();
    let id = QueueId::from_parts(1_700_000_000_000, 7);
    let old = QueuedMessage {
        id,
        envelope: envelope(Some("s@adatum.com"), &["a@fabrikam.com", "b@fabrikam.com"]),
        body_len: BODY.len() as u64,
        delay_notified: false,
    };
    {
        let db = open_db(dir.path());
        write_as_json(&db, &old, BODY);
        assert_eq!(stored_record(&db, id).unwrap()[0], b'{');
    }
    let db = open_db(dir.path());
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    assert_eq!(queue.stats().queue_length, 1);
    assert_eq!(queue.get(id).unwrap(), Some(old.clone()));
    assert_eq!(queue.body(id).unwrap().as_deref(), Some(BODY));
    let due = queue.due(SystemTime::now()).unwrap();
    assert_eq!(due.len(), 1, "the resumed message is due");
    assert_eq!(due[0].id, id);
    assert_eq!(due[0].recipients.len(), 2);

    // One recipient delivered, one deferred: the record stays, now binary.
    let report = queue
        .record_attempt(
            id,
            vec![delivered("a@fabrikam.com"), transient("b@fabrikam.com")],
            SystemTime::now(),
        )
        .await
        .unwrap();
    assert!(!report.removed);
    assert_eq!(stored_record(&db, id).unwrap()[0], 1, "rewritten as protobuf");
    let now = queue.get(id).unwrap().unwrap();
    assert!(now.envelope.recipients[0].status.is_final());
    assert_eq!(now.envelope.recipients[1].status.attempts(), 1);
    assert_eq!(now.envelope.sender, old.envelope.sender);
    assert_eq!(now.envelope.received_at, old.envelope.received_at);

    // The last recipient delivered: the message leaves the queue.
    let report = queue
        .record_attempt(id, vec![delivered("b@fabrikam.com")], SystemTime::now())
        .await
        .unwrap();
    assert!(report.removed);
    assert_eq!(queue.get(id).unwrap(), None);
    assert_eq!(queue.stats().queue_length, 0);
}
