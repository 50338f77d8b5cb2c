//! Transactions against the scripted server: pipelining, reply mapping,
//! refusals, SIZE, 8BITMIME, HELO fallback, host order, broken peers.

use std::collections::HashMap;

use super::server::{Script, TestServer};
use super::*;
use crate::client::{ClientConnection, ClientError};

async fn plain(script: Script) -> (TestServer, ClientConnection, TestNode) {
    let client = node(HELO);
    let srv = TestServer::start(script).await;
    let conn = connector(&client, &[])
        .connect(&hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC))
        .await
        .unwrap();
    (srv, conn, client)
}

fn rcpt_replies() -> HashMap<String, String> {
    HashMap::from([
        ("later@mx.test".to_owned(), "450 4.2.1 Mailbox busy".to_owned()),
        ("never@mx.test".to_owned(), "550 5.1.1 No such user".to_owned()),
    ])
}

const THREE: [&str; 3] = ["ok@mx.test", "later@mx.test", "never@mx.test"];

#[tokio::test]
async fn pipelined_replies_map_per_recipient() {
    let (srv, mut conn, _c) = plain(Script {
        rcpt: rcpt_replies(),
        ..Script::default()
    })
    .await;
    let outcomes = conn
        .send(Some("a@client.test"), &rcpts(&THREE), BODY)
        .await
        .unwrap();
    assert_eq!(
        kinds(&outcomes),
        [
            ("ok@mx.test", "delivered"),
            ("later@mx.test", "transient"),
            ("never@mx.test", "permanent")
        ]
    );
    assert_eq!(
        outcomes[0].outcome,
        DeliveryOutcome::Delivered("250 2.0.0 Queued as T1".into())
    );
    assert_eq!(
        outcomes[2].outcome,
        DeliveryOutcome::PermanentFailure("550 5.1.1 No such user".into())
    );
    assert_eq!(srv.verbs(), ["EHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA"]);
    assert_eq!(srv.sessions()[0].messages, [BODY]);
}

#[tokio::test]
async fn without_pipelining_one_command_at_a_time() {
    let (srv, mut conn, _c) = plain(Script {
        keywords: vec![],
        rcpt: rcpt_replies(),
        ..Script::default()
    })
    .await;
    assert!(!conn.capabilities().pipelining);
    // Dot-stuffing and the missing final CRLF survive the round trip.
    let body = b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nlast line";
    let outcomes = conn.send(None, &rcpts(&THREE), body).await.unwrap();
    assert_eq!(
        kinds(&outcomes),
        [
            ("ok@mx.test", "delivered"),
            ("later@mx.test", "transient"),
            ("never@mx.test", "permanent")
        ]
    );
    let expected = b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nlast line\r\n";
    assert_eq!(srv.sessions()[0].messages, [expected]);
}

#[tokio::test]
async fn final_reply_applies_to_every_accepted_recipient() {
    let (_srv, mut conn, _c) = plain(Script {
        rcpt: rcpt_replies(),
        end_reply: "451 4.3.0 Disk full".into(),
        ..Script::default()
    })
    .await;
    let outcomes = conn
        .send(
            None,
            &rcpts(&["ok@mx.test", "also@mx.test", "never@mx.test"]),
            BODY,
        )
        .await
        .unwrap();
    assert_eq!(
        kinds(&outcomes),
        [
            ("ok@mx.test", "transient"),
            ("also@mx.test", "transient"),
            ("never@mx.test", "permanent")
        ]
    );
    assert_eq!(
        outcomes[0].outcome,
        DeliveryOutcome::TransientFailure("451 4.3.0 Disk full".into())
    );
}

#[tokio::test]
async fn no_recipient_accepted_sends_rset_not_the_body() {
    for (data_reply, expected) in [
        (
            "554 5.5.1 No valid recipients",
            vec!["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "RSET"],
        ),
        // The server said 354 anyway: an empty message ends DATA (RFC 2920).
        (
            "354 Go ahead",
            vec!["EHLO", "MAIL", "RCPT", "RCPT", "DATA", ".", "RSET"],
        ),
    ] {
        let (srv, mut conn, _c) = plain(Script {
            rcpt: rcpt_replies(),
            data_reply: data_reply.into(),
            ..Script::default()
        })
        .await;
        let outcomes = conn
            .send(None, &rcpts(&["later@mx.test", "never@mx.test"]), BODY)
            .await
            .unwrap();
        assert_eq!(
            kinds(&outcomes),
            [("later@mx.test", "transient"), ("never@mx.test", "permanent")]
        );
        // The scripted server logs the empty message's dot as no command;
        // compare verbs, and make sure no body line arrived.
        let verbs: Vec<String> = srv.verbs();
        let expected: Vec<&str> = expected.into_iter().filter(|v| *v != ".").collect();
        assert_eq!(verbs, expected, "{data_reply}");
        let messages = &srv.sessions()[0].messages;
        assert!(messages.iter().all(|m| m.is_empty()), "{messages:?}");
        // RSET answered: the connection is clean for the next message.
        assert!(conn.is_reusable());
    }
}

#[tokio::test]
async fn refused_sender_fails_every_recipient() {
    let (srv, mut conn, _c) = plain(Script {
        mail_reply: "553 5.1.8 Sender domain does not exist".into(),
        data_reply: "503 5.5.1 No sender".into(),
        ..Script::default()
    })
    .await;
    let outcomes = conn
        .send(Some("a@nowhere.test"), &rcpts(&THREE), BODY)
        .await
        .unwrap();
    assert!(
        outcomes.iter().all(|o| o.outcome
            == DeliveryOutcome::PermanentFailure("553 5.1.8 Sender domain does not exist".into()))
    );
    assert_eq!(srv.verbs().last().map(String::as_str), Some("RSET"));
}

#[tokio::test]
async fn server_closing_mid_data_is_an_error() {
    let (_srv, mut conn, _c) = plain(Script {
        close_in_data: true,
        ..Script::default()
    })
    .await;
    let err = conn.send(None, &rcpts(&["ok@mx.test"]), BODY).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Closed { .. } | ClientError::Io { .. }),
        "{err}"
    );
    assert!(!conn.is_reusable());
    let deferred = err.outcomes(&rcpts(&["ok@mx.test"]));
    assert!(matches!(
        deferred[0].outcome,
        DeliveryOutcome::TransientFailure(_)
    ));
}

#[tokio::test]
async fn message_bigger_than_size_is_refused_before_mail() {
    let (srv, mut conn, _c) = plain(Script {
        keywords: vec!["PIPELINING".into(), "SIZE 10".into()],
        ..Script::default()
    })
    .await;
    let outcomes = conn
        .send(None, &rcpts(&["a@mx.test", "b@mx.test"]), BODY)
        .await
        .unwrap();
    assert!(
        outcomes.iter().all(
            |o| matches!(&o.outcome, DeliveryOutcome::PermanentFailure(t) if t.starts_with("552 5.3.4"))
        )
    );
    assert_eq!(srv.verbs(), ["EHLO"]);
}

#[tokio::test]
async fn size_and_body_parameters() {
    let (srv, mut conn, _c) = plain(Script {
        keywords: vec!["PIPELINING".into(), "SIZE 1000000".into(), "8BITMIME".into()],
        ..Script::default()
    })
    .await;
    let eight_bit = "Subject: caf\u{e9}\r\n\r\n\u{e9}t\u{e9}\r\n".as_bytes();
    conn.send(Some("a@client.test"), &rcpts(&["b@mx.test"]), BODY)
        .await
        .unwrap();
    conn.send(Some("a@client.test"), &rcpts(&["b@mx.test"]), eight_bit)
        .await
        .unwrap();
    let mails: Vec<String> = srv
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("MAIL"))
        .collect();
    assert_eq!(
        mails,
        [
            format!("MAIL FROM:<a@client.test> SIZE={}", BODY.len()),
            format!("MAIL FROM:<a@client.test> SIZE={} BODY=8BITMIME", eight_bit.len()),
        ]
    );
    assert_eq!(
        srv.verbs(),
        ["EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA"]
    );
}

#[tokio::test]
async fn helo_when_ehlo_is_refused() {
    let (srv, mut conn, _c) = plain(Script {
        ehlo_reply: Some("502 5.5.1 Not implemented".into()),
        ..Script::default()
    })
    .await;
    assert_eq!(conn.capabilities(), &crate::smtp::EhloCapabilities::default());
    let outcomes = conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.unwrap();
    assert_eq!(kinds(&outcomes), [("b@mx.test", "delivered")]);
    assert_eq!(srv.verbs(), ["EHLO", "HELO", "MAIL", "RCPT", "DATA"]);
}

#[tokio::test]
async fn hosts_are_tried_in_order() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    // A port nobody listens on: bind, learn it, release it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = HostPort {
        host: "127.0.0.1".into(),
        port: closed,
    };
    let conn = connector(&client, &[])
        .connect(&hop(
            vec![dead.clone(), srv.host()],
            TlsRequirement::OPPORTUNISTIC,
        ))
        .await
        .unwrap();
    assert_eq!(conn.peer(), &srv.host());
    let err = connector(&client, &[])
        .connect(&hop(vec![dead], TlsRequirement::OPPORTUNISTIC))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err}");
    let err = connector(&client, &[])
        .connect(&hop(vec![], TlsRequirement::OPPORTUNISTIC))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NoHosts(_)), "{err}");
}

#[tokio::test]
async fn unsafe_addresses_never_reach_the_wire() {
    let (srv, mut conn, _c) = plain(Script::default()).await;
    let outcomes = conn
        .send(None, &rcpts(&["ok@mx.test", "x@y>\r\nRSET"]), BODY)
        .await
        .unwrap();
    assert_eq!(
        kinds(&outcomes),
        [("ok@mx.test", "delivered"), ("x@y>\r\nRSET", "permanent")]
    );
    assert_eq!(srv.verbs(), ["EHLO", "MAIL", "RCPT", "DATA"]);
}
