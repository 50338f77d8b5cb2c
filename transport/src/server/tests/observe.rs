//! The protocol log and the metrics of receive sessions: a verbose
//! connector's RECV file over a real STARTTLS session, a connector at level
//! `None`, and the counters a session moves.

use postern_model::ProtocolLoggingLevel;

use super::tls::{client_cert, tls_client, upgrade};
use super::*;
use crate::protocol_log::testing::{columns, lines, tail};
use crate::tls::{Encryption, TlsRequirement};

/// The event lines (not `#` headers), after the writer has caught up.
async fn events(node: &Node, sessions: usize) -> Vec<String> {
    node.records(sessions).await;
    node.receive_log.as_ref().unwrap().flush().unwrap();
    lines(node._dir.path(), Direction::Receive)
        .into_iter()
        .filter(|l| !l.starts_with('#'))
        .collect()
}

fn verbose() -> ReceiveConnectorConfig {
    ReceiveConnectorConfig {
        protocol_logging_level: ProtocolLoggingLevel::Verbose,
        ..connector()
    }
}

fn rendered(node: &Node, line: &str) -> bool {
    node.metrics.render().expect("renders").lines().any(|l| l == line)
}

#[tokio::test]
async fn verbose_connector_logs_the_session_but_never_the_message() {
    let edge = client_cert("edge.local.test");
    let node = Setup {
        connector: ReceiveConnectorConfig {
            tls: TlsRequirement::OPPORTUNISTIC,
            ..verbose()
        },
        trusted: vec![edge.thumbprint],
        protocol_log: true,
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    let mut c = upgrade(c, &tls_client(Some(edge.resolver.clone())))
        .await
        .unwrap();
    c.cmd("EHLO client.fabrikam.test", "250").await;
    let id = c.mail("alice@fabrikam.test", &["bob@local.test"], BODY).await;
    c.cmd("QUIT", "221 2.0.0").await;
    let logged = events(&node, 1).await;

    let headers: Vec<String> = lines(node._dir.path(), Direction::Receive)
        .into_iter()
        .filter(|l| l.starts_with('#'))
        .collect();
    assert_eq!(headers[0], "#Software: Postern");
    assert!(headers.contains(&"#Log-type: SMTP Receive Protocol Log".to_owned()));
    assert!(headers.iter().any(|h| h.starts_with("#Date: ")));
    assert!(headers.contains(
        &"#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"
            .to_owned()
    ));

    // One session, one connector id, sequence numbers from 0.
    let remote = node.records(1).await[0].info.remote.to_string();
    for (i, line) in logged.iter().enumerate() {
        let cols = columns(line);
        assert_eq!(cols[1], "node.local.test\\Default TEST", "{line}");
        assert_eq!(cols[3], i.to_string(), "{line}");
        assert_eq!(cols[5], remote, "{line}");
    }
    let tails: Vec<String> = logged.iter().map(|l| tail(l)).collect();
    let thumb = edge.thumbprint.to_string();
    let want_prefixes = [
        "+,,".to_owned(),
        ">,220 mx.local.test Postern ESMTP service ready,".to_owned(),
        "<,EHLO client.fabrikam.test,".to_owned(),
        ">,250-mx.local.test Hello client.fabrikam.test,".to_owned(),
    ];
    for (i, want) in want_prefixes.iter().enumerate() {
        assert!(tails[i].starts_with(want.as_str()), "line {i}: {:?}", tails[i]);
    }
    let at = |prefix: &str| {
        tails
            .iter()
            .position(|t| t.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {tails:#?}"))
    };
    assert!(tails.iter().any(|t| t == ">,250-STARTTLS,"), "{tails:#?}");
    let starttls = at("<,STARTTLS,");
    assert!(tails[starttls + 1].starts_with(">,220 2.0.0"), "{tails:#?}");
    assert!(
        tails[starttls + 2].starts_with("*,,TLS negotiated: TLSv1.3 TLS13_"),
        "{tails:#?}"
    );
    let cert = &tails[starttls + 3];
    assert!(
        cert.starts_with(&format!(
            "*,,Peer certificate: subject=CN=edge.local.test; issuer=CN=edge.local.test; thumbprint={thumb}; not-after="
        )),
        "{cert}"
    );
    assert_eq!(
        tails[starttls + 4],
        format!("*,,Direct trust: thumbprint {thumb}")
    );
    assert!(tails[starttls + 5].starts_with("<,EHLO client.fabrikam.test,"));
    let data = at("<,DATA,");
    assert!(tails[data + 1].starts_with(">,354 "), "{tails:#?}");
    // Nothing of the message between the 354 and the final reply.
    assert_eq!(tails[data + 2], format!("*,,Queued mail for delivery: {id}"));
    assert!(tails[data + 3].starts_with(&format!(">,250 2.0.0 Queued mail for delivery as {id}")));
    assert_eq!(tails[data + 4], "<,QUIT,");
    assert!(tails[data + 5].starts_with(">,221 2.0.0"));
    assert_eq!(tails[data + 6], "-,,");
    assert_eq!(tails.len(), data + 7, "{tails:#?}");
    let all = logged.join("\n");
    for secret in ["Hi there.", "Subject: hello", "From: a@fabrikam.test"] {
        assert!(!all.contains(secret), "message content {secret:?} logged:\n{all}");
    }

    for line in [
        "postern_smtp_sessions_total{direction=\"receive\",connector=\"Default TEST\"} 1",
        "postern_tls_handshakes_total{direction=\"receive\",outcome=\"ok\"} 1",
        "postern_tls_handshakes_total{direction=\"receive\",outcome=\"untrusted\"} 0",
        "postern_messages_total{direction=\"receive\",outcome=\"accepted\"} 1",
        "postern_queue_length 1",
        &format!("postern_bytes_total{{direction=\"receive\"}} {}", BODY.len()),
    ] {
        assert!(
            rendered(&node, line),
            "missing {line:?} in\n{}",
            node.metrics.render().expect("renders")
        );
    }
    node.shut_down().await;
}

#[tokio::test]
async fn connector_at_level_none_logs_nothing_but_counts() {
    let node = Setup {
        protocol_log: true,
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.mail("alice@fabrikam.test", &["bob@local.test"], BODY).await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<x@elsewhere.test>", "550 5.7.1").await;
    c.cmd("QUIT", "221").await;
    assert!(
        events(&node, 1).await.is_empty(),
        "a level None connector wrote session lines"
    );
    for line in [
        "postern_smtp_sessions_total{direction=\"receive\",connector=\"Default TEST\"} 1",
        "postern_messages_total{direction=\"receive\",outcome=\"accepted\"} 1",
        "postern_tls_handshakes_total{direction=\"receive\",outcome=\"ok\"} 0",
    ] {
        assert!(
            rendered(&node, line),
            "missing {line:?} in\n{}",
            node.metrics.render().expect("renders")
        );
    }
    node.shut_down().await;
}

#[tokio::test]
async fn refused_direct_trust_certificate_counts_as_untrusted() {
    let stranger = client_cert("stranger.fabrikam.test");
    let node = Setup {
        connector: ReceiveConnectorConfig {
            tls: TlsRequirement {
                encryption: Encryption::Opportunistic,
                ..TlsRequirement::ORGANISATION
            },
            ..verbose()
        },
        trusted: vec![client_cert("edge.local.test").thumbprint],
        protocol_log: true,
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO stranger.fabrikam.test", "250").await;
    if let Ok(mut c) = upgrade(c, &tls_client(Some(stranger.resolver))).await {
        let _ = c.stream.write_all(b"EHLO stranger.fabrikam.test\r\n").await;
        assert!(c.closed().await);
    }
    let tails: Vec<String> = events(&node, 1).await.iter().map(|l| tail(l)).collect();
    assert!(
        tails.iter().any(|t| t.starts_with("*,,TLS negotiation failed: ")),
        "{tails:#?}"
    );
    assert_eq!(tails.last().map(String::as_str), Some("-,,"));
    assert!(rendered(
        &node,
        "postern_tls_handshakes_total{direction=\"receive\",outcome=\"untrusted\"} 1"
    ));
    assert!(rendered(
        &node,
        "postern_tls_handshakes_total{direction=\"receive\",outcome=\"ok\"} 0"
    ));
    node.shut_down().await;
}

#[tokio::test]
async fn self_signed_client_certificate_classifies_untrusted() {
    let stranger = client_cert("stranger.fabrikam.test");
    let node = Setup {
        connector: ReceiveConnectorConfig {
            tls: TlsRequirement::OPPORTUNISTIC,
            ..verbose()
        },
        protocol_log: true,
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO stranger.fabrikam.test", "250").await;
    let mut c = upgrade(c, &tls_client(Some(stranger.resolver))).await.unwrap();
    c.cmd("EHLO stranger.fabrikam.test", "250").await;
    c.cmd("QUIT", "221").await;
    let tails: Vec<String> = events(&node, 1).await.iter().map(|l| tail(l)).collect();
    assert!(
        tails.iter().any(|t| t.starts_with("*,,Untrusted: ")),
        "{tails:#?}"
    );
    assert!(rendered(
        &node,
        "postern_tls_handshakes_total{direction=\"receive\",outcome=\"untrusted\"} 1"
    ));
    node.shut_down().await;
}
