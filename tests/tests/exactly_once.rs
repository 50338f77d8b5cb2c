//! Exactly once through hub + edge, as real `postern hub run` and
//! `postern edge run` processes: Internet mail sent to the edge by 20
//! concurrent sessions (one recipient each) reaches the hub mailbox once
//! per acknowledged message — with nothing killed (10,000 messages), and
//! across a `kill -9` of the edge, and separately of the hub, each
//! restarted with the same command. Each test prints its counts. The
//! 10,000-message run is `#[ignore]`d for a plain `cargo nextest run`;
//! `scripts/test.sh` runs it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::dnsmasq::{Dnsmasq, txt};
use postern_model::Domain;
use postern_tests::lab::{free_port, maildir_message_ids};
use postern_tests::{NodeProcess, Role};
use postern_tls::TrustStore;
use postern_tls::certs::CertStore;
use postern_transport::client::{ClientSettings, Connector};
use postern_transport::queue::DeliveryOutcome;
use postern_transport::routing::{HostPort, NextHop, SmtpHop, TlsRequirement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOMAIN: &str = "adatum.com";
const USER: &str = "kim";
const SESSIONS: usize = 20;
/// Messages acknowledged in each kill run, and after how many the node dies.
const KILL_RUN: usize = 2_000;
const KILL_AT: usize = 700;

/// A hub with mailbox kim@adatum.com and one subscribed edge, each bound
/// to fixed loopback ports so a restart with the same command works. Both
/// ask a name server of their own (the edge checks SPF and DMARC of every
/// message from the Internet): the machine's resolver may drop bursts of
/// queries, which made the 10,000-message run wait on time-outs.
struct Pair {
    hub: NodeProcess,
    edge: NodeProcess,
    edge_smtp: SocketAddr,
    hub_dir: PathBuf,
    _dns: Dnsmasq,
}

/// The sender's domain (SPF passes from 127.0.0.1, no DMARC record) and
/// the client's HELO name, and nothing else, in the test's name server.
fn name_server(dir: &Path) -> Dnsmasq {
    Dnsmasq::start(
        &dir.join("dns"),
        &[
            "--address=/example.org/".to_owned(),
            "--address=/outsider.example/".to_owned(),
            txt("example.org", "v=spf1 ip4:127.0.0.1 -all"),
        ],
    )
}

impl Pair {
    fn start(dir: &Path) -> Self {
        let dns = name_server(dir);
        let dns_server = dns.addr.to_string();
        let hub_dir = dir.join("hub");
        let hub_smtp = free_port().to_string();
        let hub = NodeProcess::start_with(
            Role::Hub,
            &hub_dir,
            "hub1.adatum.com",
            &["--smtp-bind", &hub_smtp, "--dns-server", &dns_server],
        )
        .unwrap();
        hub.ok(&["accepted-domain", "new", DOMAIN]);
        hub.ok(&["mailbox", "new", &format!("{USER}@{DOMAIN}")]);
        let edge_smtp = free_port();
        let (smtp, sync) = (edge_smtp.to_string(), free_port().to_string());
        let edge = NodeProcess::start_with(
            Role::Edge,
            &dir.join("edge"),
            "edge1.adatum.com",
            &[
                "--smtp-bind",
                &smtp,
                "--edgesync-bind",
                &sync,
                "--dns-server",
                &dns_server,
            ],
        )
        .unwrap();
        let sub = dir.join("edge1.sub");
        edge.ok(&["edge-subscription", "new", "--file", sub.to_str().unwrap()]);
        hub.ok(&["edge-subscription", "import", "--file", sub.to_str().unwrap()]);
        Self {
            hub,
            edge,
            edge_smtp,
            hub_dir,
            _dns: dns,
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- hub:\n{}\n--- edge:\n{}",
            tail(&self.hub.log_text()),
            tail(&self.edge.log_text())
        )
    }

    /// Message-IDs in the hub mailbox, with how often each is there.
    fn delivered(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for id in maildir_message_ids(&self.hub_dir, DOMAIN, USER) {
            *counts.entry(id).or_default() += 1;
        }
        counts
    }

    /// The hub's duplicates-suppressed counter (`postern counters`).
    fn suppressed(&self) -> u64 {
        let all = self.hub.json(&["counters"]);
        all.as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["counter"] == "postern_duplicates_suppressed_total")
            .filter_map(|c| c["value"].as_u64())
            .sum()
    }

    fn queues_empty(&self) -> bool {
        [&self.hub, &self.edge].iter().all(|node| {
            node.json(&["queue", "list"])
                .as_array()
                .is_some_and(Vec::is_empty)
        })
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn plain_hop(addr: SocketAddr) -> SmtpHop {
    SmtpHop {
        connector: None,
        key: NextHop::connector("load", None),
        hosts: vec![HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        }],
        tls: TlsRequirement::DANGER_PLAIN_TEXT,
        helo: Domain::parse("loadgen.example").unwrap(),
        protocol_logging_level: Default::default(),
        mx_domain: None,
    }
}

/// The Internet side: sessions sending one message after another to the
/// edge until `target` are acknowledged, reconnecting when a connection
/// fails (the edge was killed). Each message has its own Message-ID.
struct Load {
    connector: Connector,
    addr: SocketAddr,
    target: usize,
    acked: Mutex<Vec<String>>,
    count: AtomicUsize,
    _store: tempfile::TempDir,
}

impl Load {
    fn new(addr: SocketAddr, target: usize) -> Arc<Self> {
        let store = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .temporary(true)
            .path(store.path())
            .open()
            .unwrap();
        let connector = Connector::new(
            CertStore::open(&db).unwrap(),
            TrustStore::new([], &[]),
            ClientSettings::default(),
        );
        Arc::new(Self {
            connector,
            addr,
            target,
            acked: Mutex::new(Vec::new()),
            count: AtomicUsize::new(0),
            _store: store,
        })
    }

    fn acked_count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    fn done(&self) -> bool {
        self.acked_count() >= self.target
    }

    /// One session's loop.
    async fn session(self: Arc<Self>, worker: usize) {
        let mut n = 0;
        while !self.done() {
            let Ok(mut conn) = self.connector.connect(&plain_hop(self.addr)).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            while !self.done() {
                n += 1;
                let id = format!("<load-{worker}-{n}@test>");
                let body = format!(
                    "Message-ID: {id}\r\nFrom: load@example.org\r\nSubject: load\r\n\r\n{}\r\n",
                    "x".repeat(400)
                );
                let rcpt = [format!("{USER}@{DOMAIN}")];
                match conn.send(Some("load@example.org"), &rcpt, body.as_bytes()).await {
                    Ok(outcomes) if matches!(outcomes[0].outcome, DeliveryOutcome::Delivered(_)) => {
                        self.acked.lock().unwrap().push(id);
                        self.count.fetch_add(1, Ordering::SeqCst);
                    }
                    // Refused (the edge has no replica yet): try again soon.
                    Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(_) => break,
                }
            }
            conn.quit().await;
        }
    }

    fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        (0..SESSIONS)
            .map(|worker| tokio::spawn(Arc::clone(self).session(worker)))
            .collect()
    }
}

/// Waits until every acknowledged message is in the mailbox and both
/// queues are empty, then asserts each is there exactly once; returns the
/// counts line.
async fn check_exactly_once(pair: &Pair, load: &Load, what: &str) -> String {
    let waiting = Instant::now();
    let acked: BTreeSet<String> = load.acked.lock().unwrap().iter().cloned().collect();
    assert_eq!(
        acked.len(),
        load.acked.lock().unwrap().len(),
        "Message-IDs are unique"
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let delivered = pair.delivered();
        if acked.iter().all(|id| delivered.contains_key(id)) && pair.queues_empty() {
            break;
        }
        if Instant::now() > deadline {
            let missing = acked.iter().filter(|id| !delivered.contains_key(*id)).count();
            panic!("{what}: {missing} acknowledged messages missing\n{}", pair.logs());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "{what}: everything delivered {:?} after the load ended",
        waiting.elapsed()
    );
    // Anything still on its way would be a duplicate: give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered = pair.delivered();
    let lost = acked.iter().filter(|id| !delivered.contains_key(*id)).count();
    let duplicated: Vec<(&String, &usize)> = delivered.iter().filter(|(_, n)| **n > 1).collect();
    let duplicated_acked = duplicated.iter().filter(|(id, _)| acked.contains(*id)).count();
    let unacked_delivered = delivered.keys().filter(|id| !acked.contains(*id)).count();
    let suppressed = pair.suppressed();
    let line = format!(
        "{what}: acknowledged {}, delivered {} distinct ({} files), lost {lost}, duplicated {} ({duplicated_acked} acknowledged), \
         delivered though not acknowledged {unacked_delivered}, duplicates suppressed by the hub {suppressed}",
        acked.len(),
        delivered.len(),
        delivered.values().sum::<usize>(),
        duplicated.len(),
    );
    println!("{line}");
    assert_eq!(lost, 0, "{line}");
    assert!(duplicated.is_empty(), "{line}: {duplicated:?}");
    for log in [pair.hub.log_text(), pair.edge.log_text()] {
        assert!(
            !log.contains("cannot record a delivery attempt"),
            "{what}: a delivery attempt found its message gone\n{}",
            pair.logs()
        );
    }
    line
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn wait_acked(load: &Load, n: usize) {
    while load.acked_count() < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Internet side may not use the parameter: the edge does not offer
/// it, and refuses it (555) on its Internet connector.
async fn outsiders_cannot_name_a_relayed_message(edge: SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(edge).await.unwrap();
    let mut transcript = String::new();
    let once = "edge9.adatum.com:0000000000000000000000000000002A:1800000000";
    for line in [
        "EHLO outsider.example".to_owned(),
        format!("MAIL FROM:<a@example.org> X-POSTERN-ONCE={once}"),
        "QUIT".to_owned(),
    ] {
        stream.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    }
    stream.read_to_string(&mut transcript).await.unwrap();
    let offered = transcript
        .lines()
        .any(|l| l.starts_with("250") && l.get(4..) == Some("X-POSTERN-ONCE"));
    assert!(
        transcript.contains("250 ENHANCEDSTATUSCODES") && !offered,
        "{transcript}"
    );
    assert!(transcript.contains("\n555 5.5.4"), "{transcript}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long (10,000 messages): scripts/test.sh runs it"]
async fn ten_thousand_messages_through_edge_and_hub_arrive_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Instant::now();
    let pair = blocking(|| Pair::start(tmp.path()));
    println!("setup {:?}", setup.elapsed());
    outsiders_cannot_name_a_relayed_message(pair.edge_smtp).await;
    let load = Load::new(pair.edge_smtp, 10_000);
    let started = Instant::now();
    for task in load.spawn() {
        task.await.unwrap();
    }
    println!(
        "10,000 messages acknowledged by the edge in {:?}",
        started.elapsed()
    );
    check_exactly_once(&pair, &load, "nothing killed").await;
    assert_eq!(pair.suppressed(), 0, "no fault, so no repeat to suppress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_minus_nine_of_the_edge_mid_stream_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Instant::now();
    let mut pair = blocking(|| Pair::start(tmp.path()));
    println!("setup {:?}", setup.elapsed());
    let load = Load::new(pair.edge_smtp, KILL_RUN);
    let started = Instant::now();
    let tasks = load.spawn();
    wait_acked(&load, KILL_AT).await;
    println!("{KILL_AT} acknowledged after {:?}", started.elapsed());
    blocking(|| {
        pair.edge.kill9();
        pair.edge.start_again().unwrap();
    });
    for task in tasks {
        task.await.unwrap();
    }
    println!("load done after {:?}", started.elapsed());
    check_exactly_once(&pair, &load, "kill -9 of the edge").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_minus_nine_of_the_hub_mid_stream_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let setup = Instant::now();
    let mut pair = blocking(|| Pair::start(tmp.path()));
    println!("setup {:?}", setup.elapsed());
    let load = Load::new(pair.edge_smtp, KILL_RUN);
    let started = Instant::now();
    let tasks = load.spawn();
    wait_acked(&load, KILL_AT).await;
    println!("{KILL_AT} acknowledged after {:?}", started.elapsed());
    blocking(|| {
        pair.hub.kill9();
        pair.hub.start_again().unwrap();
    });
    for task in tasks {
        task.await.unwrap();
    }
    println!("load done after {:?}", started.elapsed());
    check_exactly_once(&pair, &load, "kill -9 of the hub").await;
}
