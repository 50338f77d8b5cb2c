//! Server tests over real sockets on 127.0.0.1:0, with a sled queue and
//! certificate store in a temporary directory: plain sessions and
//! pipelining here, timeouts, shutdown and certificate changes in
//! `lifecycle`, STARTTLS and client certificates in `tls`, real foreign
//! peers (swaks, openssl) in `peers`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod lifecycle;
mod limits;
mod observe;
mod peers;
mod tls;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_model::{Domain, KeySpec, QueueId, Service, SubjectName, Thumbprint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;
use crate::certs::{CertStore, NewCertificate};
use crate::metrics::Metrics;
use crate::protocol_log::{Direction, LogConfig, ProtocolLog};
use crate::queue::{Queue, QueueConfig, QueuedMessage};
use crate::routing::{NextHop, Router, SmtpHop, StaticRouter, TlsRequirement};
use crate::smtp::{Reply, ReplyParser};
use crate::tls::TrustStore;

/// The connector FQDN the server certificate names.
const FQDN: &str = "mx.local.test";
const BODY: &str = "From: a@fabrikam.test\r\nSubject: hello\r\n\r\nHi there.\r\n";

fn domain(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

fn connector() -> ReceiveConnectorConfig {
    ReceiveConnectorConfig::new("Default TEST", "127.0.0.1:0".parse().unwrap(), domain(FQDN))
        .without_abuse_limits()
}

/// local.test is delivered locally; other domains are refused as relaying.
fn local_router() -> Arc<dyn Router> {
    Arc::new(StaticRouter {
        local_domains: vec![domain("local.test")],
        relay: None,
    })
}

/// A self-signed ECDSA certificate for `name`, enabled for SMTP.
fn self_signed(store: &CertStore, name: &str) -> Thumbprint {
    store
        .new_self_signed(&NewCertificate {
            subject: SubjectName::common_name_only(name),
            domains: vec![domain(name)],
            friendly_name: None,
            key: KeySpec::EcdsaP256,
            services: BTreeSet::from([Service::Smtp]),
        })
        .unwrap()
        .thumbprint
}

/// How a test node is set up.
struct Setup {
    connector: ReceiveConnectorConfig,
    router: Arc<dyn Router>,
    server_cert: bool,
    trusted: Vec<Thumbprint>,
    /// Open a receive protocol log under the node's data directory.
    protocol_log: bool,
}

impl Setup {
    fn new() -> Self {
        Self {
            connector: connector(),
            router: local_router(),
            server_cert: true,
            trusted: Vec::new(),
            protocol_log: false,
        }
    }

    async fn start(self) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let queue = Queue::open(&db, QueueConfig::default()).unwrap();
        let certs = CertStore::open(&db).unwrap();
        if self.server_cert {
            self_signed(&certs, FQDN);
        }
        let trust = TrustStore::new(self.trusted, &[]);
        let metrics = Arc::new(Metrics::new());
        let receive_log = self.protocol_log.then(|| {
            ProtocolLog::open_in_data_dir(dir.path(), Direction::Receive, LogConfig::default()).unwrap()
        });
        let ctx = ServerContext {
            node_fqdn: domain("node.local.test"),
            queue: queue.clone(),
            certs: certs.clone(),
            trust,
            router: self.router,
            metrics: Arc::clone(&metrics),
            receive_log: receive_log.clone(),
            message_auth: Default::default(),
            spool_dir: Some(dir.path().join("spool")),
        };
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&records);
        let server = ReceiveConnector::bind(self.connector, ctx)
            .await
            .unwrap()
            .on_session_end(move |r| sink.lock().unwrap().push(r));
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Node {
            _dir: dir,
            queue,
            certs,
            addr,
            records,
            stop: Some(stop),
            served,
            metrics,
            receive_log,
        }
    }
}

/// A running receive connector.
struct Node {
    _dir: tempfile::TempDir,
    queue: Queue,
    certs: CertStore,
    addr: SocketAddr,
    records: Arc<Mutex<Vec<SessionRecord>>>,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<()>,
    metrics: Arc<Metrics>,
    receive_log: Option<Arc<ProtocolLog>>,
}

impl Node {
    async fn connect(&self) -> Client<TcpStream> {
        let mut client = Client::new(TcpStream::connect(self.addr).await.unwrap());
        client.expect("220 mx.local.test").await;
        client
    }

    /// The one queued message.
    fn only_message(&self) -> (QueuedMessage, String) {
        let ids = self.queue.ids().unwrap();
        assert_eq!(ids.len(), 1, "queued: {ids:?}");
        let message = self.queue.get(ids[0]).unwrap().unwrap();
        let body = self.queue.body(ids[0]).unwrap().unwrap();
        (message, String::from_utf8(body).unwrap())
    }

    /// Waits for `n` sessions to have ended; returns their records.
    async fn records(&self, n: usize) -> Vec<SessionRecord> {
        for _ in 0..500 {
            if self.records.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let records = self.records.lock().unwrap().clone();
        assert_eq!(records.len(), n, "{records:?}");
        records
    }

    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.served)
            .await
            .unwrap()
            .unwrap();
    }
}

/// A scripted SMTP client over any stream.
struct Client<S> {
    stream: S,
    parser: ReplyParser,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            parser: ReplyParser::new(),
        }
    }

    async fn send(&mut self, bytes: &str) {
        self.stream.write_all(bytes.as_bytes()).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// The next reply; panics on EOF or after 5 seconds.
    async fn reply(&mut self) -> Reply {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(reply) = self.parser.next_reply().unwrap() {
                return reply;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buf))
                .await
                .expect("no reply within 5 s")
                .unwrap();
            assert!(n > 0, "the server closed the connection");
            self.parser.feed(&buf[..n]);
        }
    }

    /// The next reply, whose last line must start with `prefix`.
    async fn expect(&mut self, prefix: &str) -> Reply {
        let reply = self.reply().await;
        let wire = reply.to_string();
        let last = wire.lines().last().unwrap_or_default();
        assert!(last.starts_with(prefix), "expected {prefix:?}, got {wire:?}");
        reply
    }

    async fn cmd(&mut self, line: &str, prefix: &str) -> Reply {
        self.send(&format!("{line}\r\n")).await;
        self.expect(prefix).await
    }

    /// Whether the server closes (EOF or error) within 5 seconds.
    async fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    /// One message, MAIL to the 250 after the dot; returns the queue id.
    async fn mail(&mut self, from: &str, to: &[&str], body: &str) -> QueueId {
        self.cmd(&format!("MAIL FROM:<{from}>"), "250 2.1.0").await;
        for rcpt in to {
            self.cmd(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5").await;
        }
        self.cmd("DATA", "354").await;
        self.send(&format!("{body}.\r\n")).await;
        let reply = self.expect("250 2.0.0 Queued mail for delivery as ").await;
        let id = reply.lines()[0].rsplit(' ').next().unwrap();
        QueueId::parse(id).unwrap()
    }
}

fn has_starttls(ehlo: &Reply) -> bool {
    ehlo.lines().iter().any(|l| l == "STARTTLS")
}

#[tokio::test]
async fn plain_session_end_to_end() {
    let relay = SmtpHop {
        connector: None,
        key: NextHop::connector("smarthost", None),
        hosts: Vec::new(),
        tls: TlsRequirement::OPPORTUNISTIC,
        mx_domain: None,
        helo: domain(FQDN),
        protocol_logging_level: postern_model::ProtocolLoggingLevel::None,
    };
    let node = Setup {
        router: Arc::new(StaticRouter {
            local_domains: vec![domain("local.test"), domain("node.local.test")],
            relay: Some(relay),
        }),
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    let ehlo = c
        .cmd("EHLO client.fabrikam.test", "250 ENHANCEDSTATUSCODES")
        .await;
    assert!(has_starttls(&ehlo));
    let id = c
        .mail(
            "alice@fabrikam.test",
            &["bob@local.test", "carol@elsewhere.test", "Postmaster"],
            BODY,
        )
        .await;
    c.cmd("QUIT", "221 2.0.0").await;
    assert!(c.closed().await);

    let (message, body) = node.only_message();
    assert_eq!(message.id, id);
    let envelope = &message.envelope;
    assert_eq!(envelope.sender.as_deref(), Some("alice@fabrikam.test"));
    let routed: Vec<(&str, String)> = envelope
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.next_hop.to_string()))
        .collect();
    assert_eq!(
        routed,
        [
            ("bob@local.test", "local".to_owned()),
            ("carol@elsewhere.test", "connector:smarthost".to_owned()),
            ("postmaster@node.local.test", "local".to_owned()),
        ]
    );
    let at = body.find("\r\nFrom: a@fabrikam.test").unwrap() + 2;
    let (received, rest) = body.split_at(at);
    assert!(
        received.starts_with(
            "Received: from client.fabrikam.test ([127.0.0.1])\r\n\tby mx.local.test with ESMTP id "
        ),
        "{body}"
    );
    assert!(received.ends_with(" +0000\r\n"), "{body}");
    assert_eq!(rest, BODY);
    assert!(!received.contains("version="));

    let records = node.records(1).await;
    let record = &records[0];
    assert_eq!(record.end, SessionEnd::Quit);
    assert_eq!(record.queued, [id]);
    assert_eq!(
        record.info.helo.as_ref().unwrap().to_string(),
        "client.fabrikam.test"
    );
    assert_eq!(record.info.remote.ip().to_string(), "127.0.0.1");
    assert!(record.info.tls.is_none());
    node.shut_down().await;
}

#[tokio::test]
async fn pipelined_batch_gets_all_replies_in_order() {
    let node = Setup::new().start().await;
    let mut c = node.connect().await;
    c.send(
        "EHLO client.fabrikam.test\r\nMAIL FROM:<a@fabrikam.test>\r\nRCPT TO:<r1@local.test>\r\n\
         RCPT TO:<x@elsewhere.test>\r\nRCPT TO:<bad address>\r\nRCPT TO:<r2@local.test>\r\nDATA\r\n",
    )
    .await;
    for expected in [
        "250 ENHANCEDSTATUSCODES",
        "250 2.1.0",
        "250 2.1.5",
        "550 5.7.1",
        "501 5.1.3",
        "250 2.1.5",
        "354",
    ] {
        c.expect(expected).await;
    }
    c.send(&format!(
        "{BODY}.\r\nMAIL FROM:<c@fabrikam.test>\r\nRSET\r\nQUIT\r\n"
    ))
    .await;
    for expected in ["250 2.0.0 Queued", "250 2.1.0", "250 2.0.0", "221 2.0.0"] {
        c.expect(expected).await;
    }
    assert!(c.closed().await);
    let (message, _) = node.only_message();
    let addresses: Vec<&str> = message
        .envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(addresses, ["r1@local.test", "r2@local.test"]);
    node.shut_down().await;
}

#[tokio::test]
async fn oversize_message_is_refused_with_552_and_not_queued() {
    let node = Setup {
        connector: ReceiveConnectorConfig {
            max_message_size: 100,
            ..connector()
        },
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    let ehlo = c.cmd("EHLO client.fabrikam.test", "250").await;
    assert!(ehlo.lines().iter().any(|l| l == "SIZE 100"));
    c.cmd("MAIL FROM:<a@fabrikam.test> SIZE=1000", "552 5.3.4").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<bob@local.test>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.send(&format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(300)))
        .await;
    c.expect("552 5.3.4").await;
    c.cmd("NOOP", "250 2.0.0").await;
    assert!(node.queue.ids().unwrap().is_empty());
    node.shut_down().await;
}

#[tokio::test]
async fn peer_vanishing_mid_data_leaves_nothing_queued() {
    let node = Setup::new().start().await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<bob@local.test>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.send("Subject: half\r\n\r\nthe first half of").await;
    drop(c);
    let records = node.records(1).await;
    assert_eq!(records[0].end, SessionEnd::PeerClosed);
    assert!(records[0].queued.is_empty());
    assert!(node.queue.ids().unwrap().is_empty());
    node.shut_down().await;
}

#[tokio::test]
async fn header_firewall_strips_spoofed_org_headers_from_strangers() {
    let node = Setup::new().start().await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    let spoofed = "From: ceo@local.test\r\nX-Postern-Organization-AuthAs: Partner\r\n\
                   X-Postern-Organization-AuthDomain: northwindtraders.test\r\n\tcontinued\r\n\
                   Subject: trust me\r\n\r\nX-Postern-Organization-AuthAs: in the body stays\r\n";
    c.mail("mallory@fabrikam.test", &["bob@local.test"], spoofed)
        .await;
    let (_, body) = node.only_message();
    assert!(
        body.ends_with(
            "From: ceo@local.test\r\nSubject: trust me\r\n\r\nX-Postern-Organization-AuthAs: in the body stays\r\n"
        ),
        "{body}"
    );
    node.shut_down().await;
}
