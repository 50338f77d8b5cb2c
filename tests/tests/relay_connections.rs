//! Connections that last: an in-process edge subscribed to a hub, as
//! `postern up` makes them. Many messages submitted at once to the edge
//! travel to the hub over a bounded number of kept-open mutual-TLS
//! connections (the pool's per-hop limit, Postfix's destination
//! concurrency of 20), not one connection per few messages. Counted by the
//! hub's own metrics: SMTP sessions and TLS handshakes on its organisation
//! connector.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use postern_edge::{Edge, EdgeOptions};
use postern_hub::Hub;
use postern_model::{AcceptedDomain, AcceptedDomainKind, Domain, NodeRole, ReplicatedObject};
use postern_proto::admin as pb;
use postern_proto::admin::edge_subscription_file_server::EdgeSubscriptionFile;
use postern_transport::client::DEFAULT_CONNECTIONS_PER_HOP;
use postern_transport::metrics::Metrics;
use postern_transport::node::NodeOptions;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MESSAGES: usize = 200;
const SUBMITTERS: usize = 20;

fn opts(dir: &std::path::Path, role: NodeRole, fqdn: &str) -> NodeOptions {
    NodeOptions {
        data_dir: dir.to_path_buf(),
        role,
        name: None,
        fqdn: Some(Domain::parse(fqdn).unwrap()),
        smtp_bind: "127.0.0.1:0".into(),
    }
}

/// A plain SMTP session with the edge, one reply at a time.
struct Submitter {
    stream: BufReader<TcpStream>,
}

impl Submitter {
    async fn connect(addr: SocketAddr) -> Self {
        let mut s = Self {
            stream: BufReader::new(TcpStream::connect(addr).await.unwrap()),
        };
        assert_eq!(s.reply().await, 220);
        assert_eq!(s.command("EHLO submitter.test").await, 250);
        s
    }

    /// The reply's code (multi-line replies read to their last line).
    async fn reply(&mut self) -> u16 {
        loop {
            let mut line = String::new();
            assert!(
                self.stream.read_line(&mut line).await.unwrap() > 0,
                "the edge hung up"
            );
            if line.as_bytes().get(3) != Some(&b'-') {
                return line[..3].parse().unwrap();
            }
        }
    }

    async fn command(&mut self, line: &str) -> u16 {
        self.stream
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }

    /// Sends one message; the edge's code after the final dot.
    async fn send(&mut self, n: usize) -> u16 {
        assert_eq!(self.command("MAIL FROM:<someone@example.org>").await, 250);
        assert_eq!(self.command("RCPT TO:<b@sink.test>").await, 250);
        assert_eq!(self.command("DATA").await, 354);
        let body = format!(
            "Message-ID: <relay-{n}@example.org>\r\nFrom: someone@example.org\r\nTo: b@sink.test\r\nSubject: {n}\r\n\r\nmessage {n}\r\n."
        );
        self.command(&body).await
    }
}

/// Whether the edge takes mail for b@sink.test yet (the configuration
/// reached it over EdgeSync).
async fn edge_accepts(addr: SocketAddr) -> bool {
    let mut s = Submitter::connect(addr).await;
    assert_eq!(s.command("MAIL FROM:<someone@example.org>").await, 250);
    let code = s.command("RCPT TO:<b@sink.test>").await;
    let _ = s.command("QUIT").await;
    code == 250
}

fn counter(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    metrics
        .snapshot()
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .sum()
}

fn delivered(hub: &Hub) -> usize {
    let dir = hub.node.data_dir.join("mailboxes/sink.test/b/Maildir");
    ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(dir.join(d)).ok())
        .map(|entries| entries.count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_to_a_hub_share_a_bounded_set_of_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(&postern_hub::HubOptions {
        runtime: postern_transport::runtime::RuntimeOptions {
            node: opts(&tmp.path().join("hub"), NodeRole::Hub, "hub1.sink.test"),
            metrics_bind: None,
            dns_servers: Vec::new(),
            internet_tls: Default::default(),
        },
        console_bind: None,
        certificate_grace: postern_hub::rotation::DEFAULT_GRACE,
        store: Default::default(),
    })
    .await
    .unwrap();
    let edge = Edge::start(&EdgeOptions {
        runtime: postern_transport::runtime::RuntimeOptions {
            node: opts(&tmp.path().join("edge"), NodeRole::Edge, "edge1.sink.test"),
            metrics_bind: None,
            dns_servers: Vec::new(),
            internet_tls: Default::default(),
        },
        edgesync_bind: "127.0.0.1:0".into(),
    })
    .await
    .unwrap();
    let file = edge
        .admin
        .new_subscription(tonic::Request::new(pb::NewSubscriptionRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .text;
    let admin = &hub.admin;
    admin
        .subscriptions
        .import(&file, None, &admin.config, &admin.trust, &admin.sync)
        .await
        .unwrap();
    let accepted = AcceptedDomain {
        name: Domain::parse("sink.test").unwrap(),
        kind: AcceptedDomainKind::Authoritative,
        delivery: Default::default(),
    };
    admin
        .config
        .put(ReplicatedObject::AcceptedDomain(accepted), false, false, None)
        .await
        .unwrap();
    admin.subscriptions.refresh_sites(&admin.config).await.unwrap();
    admin
        .config
        .put_json(
            postern_model::ObjectKind::Mailbox,
            r#"{"address":"b@sink.test"}"#,
            false,
            false,
            None,
        )
        .await
        .unwrap();

    let edge_addr = edge.mail.receive_addrs().await[0].1;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !edge_accepts(edge_addr).await {
        assert!(Instant::now() < deadline, "the edge never learnt sink.test");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let hub_metrics = hub.mail.metrics();
    let sessions_before = counter(
        hub_metrics,
        "postern_smtp_sessions_total",
        &[("direction", "receive")],
    );
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|i| {
            tokio::spawn(async move {
                let mut s = Submitter::connect(edge_addr).await;
                for n in (i..MESSAGES).step_by(SUBMITTERS) {
                    assert_eq!(s.send(n).await, 250, "message {n} refused");
                }
                let _ = s.command("QUIT").await;
            })
        })
        .collect();
    for s in submitters {
        s.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered(&hub) < MESSAGES {
        assert!(
            Instant::now() < deadline,
            "{} of {MESSAGES} messages reached the mailbox",
            delivered(&hub)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivered(&hub), MESSAGES, "a message was delivered twice");

    let sessions = counter(
        hub_metrics,
        "postern_smtp_sessions_total",
        &[("direction", "receive")],
    ) - sessions_before;
    let handshakes = counter(
        hub_metrics,
        "postern_tls_handshakes_total",
        &[("direction", "receive"), ("outcome", "ok")],
    );
    let full = handshakes
        - counter(
            hub_metrics,
            "postern_tls_resumed_total",
            &[("direction", "receive")],
        );
    let edge_sent = counter(
        edge.mail.metrics(),
        "postern_smtp_sessions_total",
        &[("direction", "send")],
    );
    eprintln!(
        "{MESSAGES} messages: hub sessions {sessions}, handshakes {handshakes} ({full} full), edge sessions sent {edge_sent}"
    );
    assert!(sessions >= 1);
    assert!(
        sessions as usize <= DEFAULT_CONNECTIONS_PER_HOP,
        "{sessions} sessions for {MESSAGES} messages: connections are not kept open (limit {DEFAULT_CONNECTIONS_PER_HOP})"
    );
    assert!(
        handshakes as usize <= DEFAULT_CONNECTIONS_PER_HOP,
        "{handshakes} TLS handshakes for {MESSAGES} messages"
    );
    assert_eq!(
        edge_sent, sessions,
        "every session the edge opened reached the hub"
    );
}
