//! LMTP (RFC 2033) against the scripted server speaking it: LHLO, one
//! reply per recipient after the message (each recipient's own fate),
//! a connection failing among those replies, STARTTLS and reuse.

use std::collections::HashMap;

use super::server::{Script, TestServer};
use super::*;
use crate::client::{ClientError, Dialect, Pool};

const THREE: [&str; 3] = ["ok@mx.test", "later@mx.test", "never@mx.test"];

/// An LMTP server that saves `ok@`, is over quota for `later@` and
/// refuses `never@` after the message (as Dovecot does for a mailbox it
/// cannot write or a message it will not take).
fn lmtp_script() -> Script {
    Script {
        lmtp: Some(HashMap::from([
            (
                "later@mx.test".to_owned(),
                "452 4.2.2 Mailbox over quota".to_owned(),
            ),
            (
                "never@mx.test".to_owned(),
                "552 5.2.2 Mailbox full for good".to_owned(),
            ),
        ])),
        ..Script::default()
    }
}

fn pool(client: &TestNode) -> Pool {
    Pool::new(Connector::new(
        client.certs.clone(),
        TrustStore::new([], &[]),
        settings(),
    ))
}

#[tokio::test]
async fn each_recipient_has_its_own_reply_after_the_message() {
    let client = node(HELO);
    let srv = TestServer::start(lmtp_script()).await;
    let pool = pool(&client);
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    let outcomes = pool
        .deliver_lmtp(&relay, Some("a@client.test"), &rcpts(&THREE), BODY)
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
        outcomes[1].outcome,
        DeliveryOutcome::TransientFailure("452 4.2.2 Mailbox over quota".into())
    );
    // The retry carries only the deferred recipient, on the same
    // connection.
    let retry = pool
        .deliver_lmtp(&relay, Some("a@client.test"), &rcpts(&["ok@mx.test"]), BODY)
        .await
        .unwrap();
    assert_eq!(kinds(&retry), [("ok@mx.test", "delivered")]);
    assert_eq!(pool.idle_count(&relay_key()), 1);
    pool.close_all().await;
    assert_eq!(srv.sessions().len(), 1, "the connection was reused");
    assert_eq!(
        srv.verbs(),
        [
            "LHLO", "MAIL", "RCPT", "RCPT", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "QUIT"
        ]
    );
    assert_eq!(srv.sessions()[0].messages, [BODY, BODY]);
}

#[tokio::test]
async fn recipients_refused_at_rcpt_expect_no_reply_after_the_message() {
    let client = node(HELO);
    let srv = TestServer::start(Script {
        rcpt: HashMap::from([(
            "never@mx.test".to_owned(),
            "550 5.1.1 User doesn't exist".to_owned(),
        )]),
        ..lmtp_script()
    })
    .await;
    let outcomes = pool(&client)
        .deliver_lmtp(
            &hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC),
            None,
            &rcpts(&["never@mx.test", "ok@mx.test", "later@mx.test"]),
            BODY,
        )
        .await
        .unwrap();
    assert_eq!(
        kinds(&outcomes),
        [
            ("never@mx.test", "permanent"),
            ("ok@mx.test", "delivered"),
            ("later@mx.test", "transient")
        ]
    );
}

#[tokio::test]
async fn a_connection_lost_among_the_replies_keeps_what_was_delivered() {
    let client = node(HELO);
    let srv = TestServer::start(Script {
        lmtp_hang_up_after: Some(1),
        ..lmtp_script()
    })
    .await;
    let pool = pool(&client);
    let outcomes = pool
        .deliver_lmtp(
            &hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC),
            Some("a@client.test"),
            &rcpts(&["ok@mx.test", "other@mx.test", "third@mx.test"]),
            BODY,
        )
        .await
        .unwrap();
    // The first was saved and must not be sent again; the others are.
    assert_eq!(
        kinds(&outcomes),
        [
            ("ok@mx.test", "delivered"),
            ("other@mx.test", "transient"),
            ("third@mx.test", "transient")
        ]
    );
    assert_eq!(
        pool.idle_count(&relay_key()),
        0,
        "a broken connection is not cached"
    );
}

#[tokio::test]
async fn starttls_when_the_server_offers_it() {
    let (client, server) = (node(HELO), node(SERVER));
    let srv = TestServer::start(Script {
        starttls: Some(tls_server(&server, &[], NO_CLIENT_CERTIFICATE)),
        ..lmtp_script()
    })
    .await;
    let conn = connector(&client, &[])
        .connect_lmtp(&hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC))
        .await
        .unwrap();
    assert_eq!(conn.dialect(), Dialect::Lmtp);
    assert!(conn.tls_info().is_some());
    conn.quit().await;
    assert!(srv.sessions()[0].tls);
    assert_eq!(srv.verbs(), ["LHLO", "STARTTLS", "LHLO", "QUIT"]);
}

#[tokio::test]
async fn an_smtp_server_is_not_an_lmtp_server() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let err = connector(&client, &[])
        .connect_lmtp(&hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { stage: "LHLO", .. }),
        "{err}"
    );
    // An SMTP connection to the same hop key is never handed to LMTP.
    let pool = pool(&client);
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    pool.deliver(&relay, None, &rcpts(&["ok@mx.test"]), BODY)
        .await
        .unwrap();
    assert_eq!(pool.idle_count(&relay_key()), 1);
    assert!(
        pool.deliver_lmtp(&relay, None, &rcpts(&["ok@mx.test"]), BODY)
            .await
            .is_err()
    );
    assert_eq!(srv.verbs().iter().filter(|v| *v == "LHLO").count(), 2);
}
