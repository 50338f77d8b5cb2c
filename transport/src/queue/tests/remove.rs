//! `Queue::remove` (Remove-Message): with and without a report, a held
//! message refused, an unknown id refused; survives a reopen.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_with_a_report_tells_the_sender_about_the_waiting_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        reporting_mta: "hub1.adatum.com".into(),
        ..QueueConfig::default()
    };
    let queue = Queue::open(&open_db(dir.path()), config.clone()).unwrap();
    let now = SystemTime::now();
    let id = queue
        .enqueue(
            envelope(Some("s@adatum.com"), &["a@fabrikam.com", "b@contoso.com"]),
            BODY.to_vec(),
        )
        .await
        .unwrap();
    // One recipient delivered, one still waiting.
    assert_eq!(queue.due(now).unwrap().len(), 1);
    queue
        .record_attempt(
            id,
            vec![delivered("a@fabrikam.com"), transient("b@contoso.com")],
            now,
        )
        .await
        .unwrap();

    let removed = queue.remove(id, true).await.unwrap();
    assert_eq!(removed.undelivered, ["b@contoso.com"]);
    let ndr = removed.ndr.expect("a report for the sender");
    assert!(queue.get(id).unwrap().is_none(), "the message left the queue");
    assert!(queue.body(id).unwrap().is_none());
    let report = queue.get(ndr).unwrap().expect("the report is queued");
    assert_eq!(report.envelope.sender, None);
    assert_eq!(report.envelope.recipients[0].address, "s@adatum.com");
    let text = String::from_utf8(queue.body(ndr).unwrap().unwrap()).unwrap();
    assert!(text.contains("b@contoso.com"), "{text}");
    assert!(!text.contains("Final-Recipient: rfc822;a@fabrikam.com"), "{text}");
    assert!(text.contains("5.3.0"), "{text}");
    assert!(text.contains("Reporting-MTA: dns; hub1.adatum.com"), "{text}");
    assert_eq!(queue.stats().queue_length, 1, "only the report is queued");
    drop(queue);

    // Durable: after a reopen the message is gone and the report is there.
    let queue = Queue::open(&open_db(dir.path()), config).unwrap();
    assert!(queue.get(id).unwrap().is_none());
    assert!(queue.get(ndr).unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_removed_spooled_message_quotes_its_headers() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(&dir.path().join("db")), QueueConfig::default()).unwrap();
    let mut spool = crate::queue::spool::SpoolWriter::create(&dir.path().join("spool")).unwrap();
    spool.append(&[b'x'; 8192]).unwrap();
    let head = b"Subject: the spooled one\r\n\r\n".to_vec();
    let outcome = queue
        .enqueue_spooled(
            envelope(Some("s@adatum.com"), &["a@fabrikam.com"]),
            head,
            spool,
            None,
        )
        .await
        .unwrap();
    let removed = queue.remove(outcome.id.unwrap(), true).await.unwrap();
    let report = queue.body(removed.ndr.unwrap()).unwrap().unwrap();
    let text = String::from_utf8_lossy(&report);
    assert!(text.contains("Subject: the spooled one"), "{text}");
    assert!(!text.contains("postern-spool"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_without_a_report_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let id = queue
        .enqueue(envelope(Some("s@adatum.com"), &["a@fabrikam.com"]), BODY.to_vec())
        .await
        .unwrap();
    let removed = queue.remove(id, false).await.unwrap();
    assert_eq!(removed.undelivered, ["a@fabrikam.com"]);
    assert_eq!(removed.ndr, None);
    assert!(queue.ids().unwrap().is_empty());
    assert_eq!(queue.stats().queue_length, 0);
    assert!(matches!(queue.remove(id, true).await, Err(QueueError::NotFound(m)) if m == id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_being_delivered_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
    let id = queue
        .enqueue(envelope(Some("s@adatum.com"), &["a@fabrikam.com"]), BODY.to_vec())
        .await
        .unwrap();
    assert_eq!(
        queue.due(SystemTime::now()).unwrap().len(),
        1,
        "leased to a worker"
    );
    assert!(matches!(queue.remove(id, true).await, Err(QueueError::Busy(m)) if m == id));
    assert!(queue.get(id).unwrap().is_some(), "still queued");
    queue.release(id);
    queue.remove(id, true).await.unwrap();
    assert!(queue.get(id).unwrap().is_none());
}
