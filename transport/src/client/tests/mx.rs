//! Delivery over a hop routed by MX: the worker looks up the recipient
//! domain's MX in a real DNS server (dnsmasq on loopback), the client
//! resolves the MX host with the same server and relays to the scripted
//! server listening where that record points.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::server::{Script, TestServer};
use super::*;
use crate::client::Pool;
use crate::delivery::{self, DeliveryContext, Maildir, WorkerConfig};
use crate::dns::testing::Dnsmasq;
use crate::dns::{DnsConfig, MxResolver};
use crate::queue::{Envelope, Queue, QueueConfig, RecipientState};
use crate::routing::StaticRouter;

/// `mail.test`: a backup MX with no address, and the preferred MX on
/// loopback; `nomail.test`: a null MX.
const RECORDS: &[&str] = &[
    "--local=/test/",
    "--mx-host=mail.test,backup.mail.test,20",
    "--mx-host=mail.test,mx.mail.test,10",
    "--host-record=mx.mail.test,127.0.0.1",
    "--dns-rr=nomail.test,15,000000",
    // The preferred MX refuses connections (nothing listens on 127.0.0.2);
    // the next one answers.
    "--mx-host=fallback.test,dead.fallback.test,10",
    "--mx-host=fallback.test,alive.fallback.test,20",
    "--host-record=dead.fallback.test,127.0.0.2",
    "--host-record=alive.fallback.test,127.0.0.1",
];

/// A hop routed by the MX of `domain`, contacting MX hosts on `port`; the
/// host name given is never used.
fn mx_hop(domain: &str, port: u16) -> SmtpHop {
    SmtpHop {
        connector: None,
        key: crate::routing::NextHop::Mx(Domain::parse(domain).unwrap()),
        hosts: vec![HostPort {
            host: "unused.invalid".into(),
            port,
        }],
        mx_domain: Some(Domain::parse(domain).unwrap()),
        ..hop(Vec::new(), TlsRequirement::OPPORTUNISTIC)
    }
}

/// Runs the delivery worker for one message to `rcpt` over `hop` (our
/// own domain, `client.test`, is local) until `done` says so.
async fn deliver_one(dir: &Path, dns: &Dnsmasq, hop: SmtpHop, rcpt: &str, done: impl Fn() -> bool) {
    let client = node(HELO);
    let resolver = Arc::new(
        MxResolver::new(&DnsConfig {
            servers: vec![dns.addr],
            timeout: Duration::from_secs(2),
            ..DnsConfig::default()
        })
        .unwrap(),
    );
    let pool = Pool::new(connector(&client, &[]).with_resolver(resolver.clone()));
    let db = sled::open(dir.join("db")).unwrap();
    let queue = Queue::open(&db, QueueConfig::default()).unwrap();
    let key = hop.key.clone();
    let ctx = DeliveryContext {
        queue: queue.clone(),
        router: Arc::new(StaticRouter {
            local_domains: vec![Domain::parse(HELO).unwrap()],
            relay: Some(hop),
        }),
        maildir: Maildir::new(dir.join("mailboxes"), HELO),
        relay: Arc::new(pool.clone()),
        dns: Some(resolver),
        metrics: None,
    };
    // Bounces are picked up by the retry scan: scan often.
    let config = WorkerConfig {
        scan_interval: Duration::from_millis(100),
        ..WorkerConfig::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(delivery::run(ctx, config, async {
        let _ = stop_rx.await;
    }));
    let envelope = Envelope::new(
        Some(format!("sender@{HELO}")),
        vec![RecipientState::new(rcpt, key)],
        SystemTime::now(),
    );
    queue.enqueue(envelope, BODY.to_vec()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "delivery did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(()).unwrap();
    worker.await.unwrap();
    pool.close_all().await;
}

#[tokio::test]
async fn a_hop_routed_by_mx_reaches_the_host_its_mx_points_to() {
    let Some(dns) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let srv = TestServer::start(Script::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    deliver_one(
        tmp.path(),
        &dns,
        mx_hop("mail.test", srv.host().port),
        "kim@mail.test",
        || srv.sessions().iter().any(|s| !s.messages.is_empty()),
    )
    .await;
    let commands = srv.commands();
    assert!(
        commands.iter().any(|c| c == "RCPT TO:<kim@mail.test>"),
        "{commands:?}"
    );
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with(&format!("MAIL FROM:<sender@{HELO}>"))),
        "{commands:?}"
    );
}

#[tokio::test]
async fn a_null_mx_bounces_the_recipient_at_once() {
    let Some(dns) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The bounce comes back to the sender, a local mailbox.
    let bounces = tmp.path().join(format!("mailboxes/{HELO}/sender/Maildir/new"));
    let bounce = || {
        std::fs::read_dir(&bounces)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.unwrap().path()).ok())
    };
    deliver_one(
        tmp.path(),
        &dns,
        mx_hop("nomail.test", 25),
        "kim@nomail.test",
        || bounce().is_some(),
    )
    .await;
    let dsn = bounce().unwrap();
    assert!(dsn.contains("5.1.10"), "{dsn}");
    assert!(dsn.contains("kim@nomail.test"), "{dsn}");
}

#[tokio::test]
async fn a_refusing_mx_host_is_passed_over_for_the_next_preference() {
    let Some(dns) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let srv = TestServer::start(Script::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    deliver_one(
        tmp.path(),
        &dns,
        mx_hop("fallback.test", srv.host().port),
        "kim@fallback.test",
        || srv.sessions().iter().any(|s| !s.messages.is_empty()),
    )
    .await;
    assert!(srv.commands().iter().any(|c| c == "RCPT TO:<kim@fallback.test>"));
}

#[test]
fn hops_share_connections_whatever_the_order_of_their_hosts() {
    let resolved = |hosts: &[&str]| SmtpHop {
        connector: None,
        hosts: hosts
            .iter()
            .map(|h| HostPort {
                host: (*h).to_owned(),
                port: 2525,
            })
            .collect(),
        ..mx_hop("mail.test", 2525)
    };
    let a = resolved(&["one.mail.test", "two.mail.test"]);
    let b = resolved(&["two.mail.test", "one.mail.test"]);
    assert_ne!(a, b);
    assert!(a.shares_connections_with(&b));
    // Another TLS policy or port never shares.
    let strict = SmtpHop {
        connector: None,
        tls: TlsRequirement::DANGER_PLAIN_TEXT,
        ..b.clone()
    };
    assert!(!a.shares_connections_with(&strict));
    assert!(!a.shares_connections_with(&mx_hop("mail.test", 25)));
    // Hops with fixed hosts share when they list the same hosts, in any
    // order (an edge rotates its hubs per message), never other hosts.
    let fixed = hop(a.hosts.clone(), TlsRequirement::OPPORTUNISTIC);
    let reordered = hop(b.hosts.clone(), TlsRequirement::OPPORTUNISTIC);
    assert!(fixed.shares_connections_with(&fixed.clone()));
    assert!(fixed.shares_connections_with(&reordered));
    let fewer = hop(a.hosts[..1].to_vec(), TlsRequirement::OPPORTUNISTIC);
    assert!(!fixed.shares_connections_with(&fewer));
    assert!(!fewer.shares_connections_with(&fixed));
}
