//! The send protocol log and the metrics of outbound sessions, against
//! the scripted server: a verbose hop's SEND file over STARTTLS, a hop at
//! level `None`, a refused server certificate, and message outcomes.

use postern_model::ProtocolLoggingLevel;

use super::server::{Script, TestServer};
use super::*;
use crate::metrics::Metrics;
use crate::protocol_log::testing::{columns, lines, tail};
use crate::protocol_log::{Direction, LogConfig, ProtocolLog};

const DIRECT: TlsRequirement = TlsRequirement {
    encryption: Encryption::Required,
    peer: PeerCheck::DirectTrust,
    client_certificate: ClientCertificate::NotAsked,
};

/// A data directory with a send log, and the node's metrics.
struct Observed {
    dir: tempfile::TempDir,
    log: Arc<ProtocolLog>,
    metrics: Arc<Metrics>,
}

impl Observed {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = ProtocolLog::open_in_data_dir(dir.path(), Direction::Send, LogConfig::default()).unwrap();
        Self {
            dir,
            log,
            metrics: Arc::new(Metrics::new()),
        }
    }

    fn connector(&self, client: &TestNode, trusted: &[Thumbprint]) -> Connector {
        connector(client, trusted)
            .with_protocol_log(Arc::clone(&self.log))
            .with_metrics(Arc::clone(&self.metrics))
    }

    /// The event lines written so far.
    fn events(&self) -> Vec<String> {
        self.log.flush().unwrap();
        lines(self.dir.path(), Direction::Send)
            .into_iter()
            .filter(|l| !l.starts_with('#'))
            .collect()
    }

    fn rendered(&self, line: &str) -> bool {
        let text = self.metrics.render().expect("renders");
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        true
    }
}

/// The hop of send connector "Internet Mail" (key `connector:relay`), logged verbosely.
fn verbose(hop: SmtpHop) -> SmtpHop {
    SmtpHop {
        connector: Some("Internet Mail".into()),
        protocol_logging_level: ProtocolLoggingLevel::Verbose,
        ..hop
    }
}

fn with_tls(server: &TestNode) -> Script {
    Script {
        starttls: Some(tls_server(server, &[], NO_CLIENT_CERTIFICATE)),
        ..Script::default()
    }
}

#[tokio::test]
async fn verbose_hop_logs_the_session_but_never_the_message() {
    let (client, server) = (node(HELO), node(SERVER));
    let srv = TestServer::start(with_tls(&server)).await;
    let obs = Observed::new();
    let connector = obs.connector(&client, &[server.thumbprint]);
    let mut conn = connector
        .connect(&verbose(hop(vec![srv.host()], DIRECT)))
        .await
        .unwrap();
    let outcomes = conn
        .send(Some("a@client.test"), &rcpts(&["b@mx.test"]), BODY)
        .await
        .unwrap();
    assert_eq!(kinds(&outcomes), [("b@mx.test", "delivered")]);
    conn.quit().await;

    let headers: Vec<String> = lines(obs.dir.path(), Direction::Send)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .collect();
    assert_eq!(headers[0], "#Software: Postern");
    assert!(headers.contains(&"#Log-type: SMTP Send Protocol Log".to_owned()));
    let logged = obs.events();
    for (i, line) in logged.iter().enumerate() {
        let cols = columns(line);
        // connector-id is the send connector's name, not the hop key.
        assert_eq!(cols[1], "Internet Mail", "{line}");
        assert_eq!(cols[3], i.to_string(), "{line}");
        assert_eq!(cols[5], format!("127.0.0.1:{}", srv.host().port), "{line}");
    }
    let tails: Vec<String> = logged.iter().map(|l| tail(l)).collect();
    let thumb = server.thumbprint.to_string();
    let head = [
        "+,,",
        "<,220 test.server ESMTP,",
        ">,EHLO client.test,",
        "<,250-test.server,",
        "<,250-PIPELINING,",
        "<,250-8BITMIME,",
        "<,250-ENHANCEDSTATUSCODES,",
        "<,250 STARTTLS,",
        ">,STARTTLS,",
        "<,220 2.0.0 Ready to start TLS,",
    ];
    assert_eq!(tails[..head.len()], head, "{tails:#?}");
    let n = head.len();
    assert!(
        tails[n].starts_with("*,,TLS negotiated: TLSv1.3 TLS13_"),
        "{tails:#?}"
    );
    assert!(
        tails[n + 1].starts_with(&format!(
            "*,,Peer certificate: subject=CN=mx.test; issuer=CN=mx.test; thumbprint={thumb}; not-after="
        )),
        "{}",
        tails[n + 1]
    );
    assert_eq!(tails[n + 2], format!("*,,Direct trust: thumbprint {thumb}"));
    // Which TLS policy applied (no Internet TLS lookup: the connector's).
    assert_eq!(tails[n + 3], "*,,TLS policy: connector");
    assert_eq!(tails[n + 4], ">,EHLO client.test,");
    let mail = tails
        .iter()
        .position(|t| t.starts_with(">,MAIL FROM:<a@client.test>"))
        .unwrap();
    let rest = [
        ">,RCPT TO:<b@mx.test>,",
        ">,DATA,",
        "<,250 2.1.0 Sender OK,",
        "<,250 2.1.5 Recipient OK,",
        "<,354 Go ahead,",
        "<,250 2.0.0 Queued as T1,",
        ">,QUIT,",
        "<,221 2.0.0 Bye,",
        "-,,",
    ];
    assert_eq!(tails[mail + 1..], rest, "{tails:#?}");
    assert!(!logged.join("\n").contains("Hello."), "message content logged");

    obs.rendered("postern_smtp_sessions_total{direction=\"send\",connector=\"connector:relay\"} 1");
    obs.rendered("postern_tls_handshakes_total{direction=\"send\",outcome=\"ok\"} 1");
    obs.rendered("postern_messages_total{direction=\"send\",outcome=\"accepted\"} 1");
    obs.rendered(&format!(
        "postern_bytes_total{{direction=\"send\"}} {}",
        BODY.len()
    ));
}

#[tokio::test]
async fn hop_at_level_none_logs_nothing_but_counts() {
    let (client, server) = (node(HELO), node(SERVER));
    let srv = TestServer::start(with_tls(&server)).await;
    let obs = Observed::new();
    let connector = obs.connector(&client, &[server.thumbprint]);
    let mut conn = connector.connect(&hop(vec![srv.host()], DIRECT)).await.unwrap();
    conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.unwrap();
    conn.quit().await;
    assert!(obs.events().is_empty(), "a level None hop wrote session lines");
    obs.rendered("postern_smtp_sessions_total{direction=\"send\",connector=\"connector:relay\"} 1");
    obs.rendered("postern_tls_handshakes_total{direction=\"send\",outcome=\"ok\"} 1");
    obs.rendered("postern_messages_total{direction=\"send\",outcome=\"accepted\"} 1");
}

#[tokio::test]
async fn refused_server_certificate_counts_as_untrusted() {
    let (client, server, other) = (node(HELO), node(SERVER), node("other.test"));
    let srv = TestServer::start(with_tls(&server)).await;
    let obs = Observed::new();
    let connector = obs.connector(&client, &[other.thumbprint]);
    connector
        .connect(&verbose(hop(vec![srv.host()], DIRECT)))
        .await
        .unwrap_err();
    let tails: Vec<String> = obs.events().iter().map(|l| tail(l)).collect();
    assert!(
        tails.iter().any(|t| t.starts_with("*,,TLS negotiation failed: ")),
        "{tails:#?}"
    );
    assert_eq!(tails.last().map(String::as_str), Some("-,,"));
    obs.rendered("postern_tls_handshakes_total{direction=\"send\",outcome=\"untrusted\"} 1");
    obs.rendered("postern_tls_handshakes_total{direction=\"send\",outcome=\"ok\"} 0");
}

#[tokio::test]
async fn messages_count_by_outcome() {
    let client = node(HELO);
    let srv = TestServer::start(Script {
        rcpt: [("gone@mx.test".to_owned(), "550 5.1.1 No such user".to_owned())].into(),
        ..Script::default()
    })
    .await;
    let obs = Observed::new();
    let connector = obs.connector(&client, &[]);
    let hop = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    let mut conn = connector.connect(&hop).await.unwrap();
    conn.send(None, &rcpts(&["gone@mx.test"]), BODY).await.unwrap();
    conn.send(None, &rcpts(&["b@mx.test", "gone@mx.test"]), BODY)
        .await
        .unwrap();
    conn.quit().await;
    let deferring = TestServer::start(Script {
        end_reply: "451 4.3.0 Try later".into(),
        ..Script::default()
    })
    .await;
    let other = SmtpHop {
        connector: None,
        hosts: vec![deferring.host()],
        ..hop
    };
    let mut conn = connector.connect(&other).await.unwrap();
    conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.unwrap();
    conn.quit().await;
    obs.rendered("postern_smtp_sessions_total{direction=\"send\",connector=\"connector:relay\"} 2");
    obs.rendered("postern_messages_total{direction=\"send\",outcome=\"accepted\"} 1");
    obs.rendered("postern_messages_total{direction=\"send\",outcome=\"deferred\"} 1");
    obs.rendered("postern_messages_total{direction=\"send\",outcome=\"rejected\"} 1");
    obs.rendered(&format!(
        "postern_bytes_total{{direction=\"send\"}} {}",
        BODY.len()
    ));
    obs.rendered("postern_tls_handshakes_total{direction=\"send\",outcome=\"ok\"} 0");
}
