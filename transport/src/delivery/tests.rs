//! The worker against a real sled queue and real Maildirs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postern_model::Domain;

use super::*;
use crate::queue::QueuedHop;
use crate::queue::{Envelope, Queue, QueueConfig, RecipientOutcome, RecipientState};
use crate::routing::{HostPort, NextHop, SmtpHop, StaticRouter, TlsRequirement};

struct Unreachable;

impl Relay for Unreachable {
    fn relay<'a>(
        &'a self,
        hop: &'a SmtpHop,
        _sender: Option<&'a str>,
        _recipients: &'a [String],
        _body: &'a [u8],
        _origin: &'a crate::queue::RelayOrigin,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>>
    {
        Box::pin(async move { Err(format!("421 4.4.1 cannot connect to {}", hop.key)) })
    }

    fn lmtp<'a>(
        &'a self,
        hop: &'a SmtpHop,
        _sender: Option<&'a str>,
        _recipients: &'a [String],
        _body: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>>
    {
        Box::pin(async move { Err(format!("421 4.4.1 cannot connect to {}", hop.key)) })
    }
}

/// The hop of [`router`]'s relay: a connector named "smarthost".
fn smarthost() -> NextHop {
    NextHop::connector("smarthost", None)
}

fn router() -> Arc<StaticRouter> {
    Arc::new(StaticRouter {
        local_domains: vec![Domain::parse("adatum.com").unwrap()],
        relay: Some(SmtpHop {
            connector: None,
            key: smarthost(),
            hosts: vec![HostPort {
                host: "127.0.0.1".into(),
                port: 9,
            }],
            tls: TlsRequirement::OPPORTUNISTIC,
            mx_domain: None,
            helo: Domain::parse("hub1.adatum.com").unwrap(),
            protocol_logging_level: postern_model::ProtocolLoggingLevel::None,
        }),
    })
}

/// A delivery worker over `queue` with [`router`], Maildir under `dir`
/// and a relay that never answers; stopped by sending on the returned
/// sender.
/// Message `id` once its second recipient (the remote one, which stays
/// queued) has been attempted; fails the test after 10 s.
async fn remote_attempted(queue: &Queue, id: postern_model::QueueId) -> crate::queue::QueuedMessage {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let message = queue
            .get(id)
            .unwrap()
            .expect("still queued for the remote recipient");
        if message.envelope.recipients[1].status.attempts() > 0 {
            return message;
        }
        assert!(tokio::time::Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spawn_worker(
    queue: &Queue,
    dir: &std::path::Path,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let ctx = DeliveryContext {
        queue: queue.clone(),
        router: router(),
        maildir: Maildir::new(dir.join("mailboxes"), "hub1"),
        relay: Arc::new(Unreachable),
        dns: None,
        metrics: None,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run(ctx, WorkerConfig::default(), async {
        let _ = stop_rx.await;
    }));
    (stop_tx, worker)
}

#[tokio::test]
async fn local_mail_lands_in_maildir_and_remote_mail_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("db")).unwrap();
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    let (stop_tx, worker) = spawn_worker(&queue, tmp.path());
    let envelope = Envelope::new(
        Some("sender@northwindtraders.com".into()),
        vec![
            RecipientState::new("kim@adatum.com", NextHop::Local),
            RecipientState::new("someone@fabrikam.com", smarthost()),
        ],
        SystemTime::now(),
    );
    let id = queue
        .enqueue(envelope, b"Subject: hi\r\n\r\nbody\r\n".to_vec())
        .await
        .unwrap();

    let new_dir = tmp.path().join("mailboxes/adatum.com/kim/Maildir/new");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&new_dir).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no local delivery");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The remote recipient stays queued, deferred with the relay's reason.
    let message = remote_attempted(&queue, id).await;
    let remote = &message.envelope.recipients[1];
    assert!(message.envelope.recipients[0].status.is_final());
    assert!(format!("{:?}", remote.status).contains("cannot connect"));
    stop_tx.send(()).unwrap();
    worker.await.unwrap();
}

/// A partner that refuses every recipient with `451 4.7.1`.
struct RefusesForSecurity;

impl Relay for RefusesForSecurity {
    fn lmtp<'a>(
        &'a self,
        hop: &'a SmtpHop,
        _sender: Option<&'a str>,
        _recipients: &'a [String],
        _body: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>>
    {
        Box::pin(async move { Err(format!("no LMTP server behind {}", hop.key)) })
    }

    fn relay<'a>(
        &'a self,
        _hop: &'a SmtpHop,
        _sender: Option<&'a str>,
        recipients: &'a [String],
        _body: &'a [u8],
        _origin: &'a crate::queue::RelayOrigin,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>>
    {
        Box::pin(async move {
            Ok(recipients
                .iter()
                .map(|r| {
                    RecipientOutcome::new(
                        r.clone(),
                        crate::queue::DeliveryOutcome::TransientFailure(
                            "451 4.7.1 domain security required".into(),
                        ),
                    )
                })
                .collect())
        })
    }
}

/// The static router, with its relay hop domain-secured.
struct Secured(Arc<StaticRouter>);

impl crate::routing::Router for Secured {
    fn next_hop(&self, rcpt: &crate::smtp::Mailbox) -> Result<NextHop, crate::routing::RouteRefusal> {
        self.0.next_hop(rcpt)
    }
    fn destination(&self, hop: &NextHop) -> Option<crate::routing::Destination> {
        self.0.destination(hop)
    }
    fn is_domain_secured(&self, hop: &NextHop) -> bool {
        *hop == smarthost()
    }
}

#[tokio::test]
async fn a_partners_4_7_refusal_counts_as_a_domain_secured_outbound_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("db")).unwrap();
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let ctx = DeliveryContext {
        queue: queue.clone(),
        router: Arc::new(Secured(router())),
        maildir: Maildir::new(tmp.path().join("mailboxes"), "hub1"),
        relay: Arc::new(RefusesForSecurity),
        dns: None,
        metrics: Some(metrics.clone()),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run(ctx, WorkerConfig::default(), async {
        let _ = stop_rx.await;
    }));
    let envelope = Envelope::new(
        Some("sender@adatum.com".into()),
        vec![RecipientState::new("someone@fabrikam.com", smarthost())],
        SystemTime::now(),
    );
    let id = queue
        .enqueue(envelope, b"Subject: hi\r\n\r\nbody\r\n".to_vec())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue.get(id).unwrap().unwrap().envelope.recipients[0]
        .status
        .attempts()
        == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failures = metrics
        .snapshot()
        .into_iter()
        .find(|s| s.name == "postern_domain_secured_outbound_session_failures_total")
        .unwrap();
    assert_eq!(failures.value, 1);
    let partner = &metrics.partners()[0];
    assert_eq!(partner.partner, "connector:smarthost");
    assert!(partner.last_failure.as_ref().unwrap().1.contains("4.7.1"));
    stop_tx.send(()).unwrap();
    worker.await.unwrap();
}

/// A queue left by an earlier version (its header records are JSON) is
/// delivered by this one: the worker finds the message at start and
/// writes it to the Maildir, and the message leaves the queue.
#[tokio::test]
async fn a_queue_written_by_an_earlier_version_is_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let id = postern_model::QueueId::from_parts(1_700_000_000_000, 7);
    let body = b"Subject: from before the upgrade\r\n\r\nbody\r\n";
    {
        let db = sled::open(tmp.path().join("db")).unwrap();
        let record = crate::queue::QueuedMessage {
            id,
            envelope: Envelope::new(
                Some("sender@northwindtraders.com".into()),
                vec![RecipientState::new("kim@adatum.com", NextHop::Local)],
                SystemTime::now(),
            ),
            body_len: body.len() as u64,
            delay_notified: false,
        };
        // What the earlier version stored: serde_json of the record.
        let json = serde_json::to_vec(&record).unwrap();
        db.open_tree("queue/messages")
            .unwrap()
            .insert(id.to_bytes(), json)
            .unwrap();
        db.open_tree("queue/bodies")
            .unwrap()
            .insert(id.to_bytes(), &body[..])
            .unwrap();
        db.flush().unwrap();
    }
    // sled's own flusher thread may hold the file lock for a moment after
    // the first handle is dropped.
    let db = crate::queue::tests::open_db(&tmp.path().join("db"));
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    let (stop_tx, worker) = spawn_worker(&queue, tmp.path());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while queue.get(id).unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old message was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new_dir = tmp.path().join("mailboxes/adatum.com/kim/Maildir/new");
    let files: Vec<_> = std::fs::read_dir(&new_dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(
        text.ends_with("Subject: from before the upgrade\r\n\r\nbody\r\n"),
        "{text}"
    );
    stop_tx.send(()).unwrap();
    worker.await.unwrap();
}

/// Queued texts that are no next hop (written by something else) are
/// neither dropped nor rewritten: each recipient is routed again by its
/// address, and one that waits keeps its stored text.
#[tokio::test]
async fn recipients_queued_under_unreadable_hops_are_routed_again_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::open(tmp.path().join("db")).unwrap();
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    let (stop_tx, worker) = spawn_worker(&queue, tmp.path());
    let unreadable = |text: &str| QueuedHop::read(text.to_owned());
    let envelope = Envelope::new(
        Some("sender@northwindtraders.com".into()),
        vec![
            RecipientState::new("kim@adatum.com", unreadable("Outbound to adatum")),
            RecipientState::new("someone@fabrikam.com", unreadable("relay:10.0.0.1:25")),
        ],
        SystemTime::now(),
    );
    assert!(envelope.recipients.iter().all(|r| r.next_hop.known().is_none()));
    let id = queue
        .enqueue(envelope, b"Subject: hi\r\n\r\nbody\r\n".to_vec())
        .await
        .unwrap();
    let message = remote_attempted(&queue, id).await;
    let remote = &message.envelope.recipients[1];
    // Local now: delivered. Remote: the relay of today, which fails.
    assert!(message.envelope.recipients[0].status.is_final());
    assert!(format!("{:?}", remote.status).contains("cannot connect"));
    assert_eq!(
        remote.next_hop.to_string(),
        "relay:10.0.0.1:25",
        "stored as it was"
    );
    let new_dir = tmp.path().join("mailboxes/adatum.com/kim/Maildir/new");
    assert_eq!(std::fs::read_dir(&new_dir).unwrap().count(), 1);
    stop_tx.send(()).unwrap();
    worker.await.unwrap();
}
