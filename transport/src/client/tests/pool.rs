//! The connection cache: reuse, limits, dead and expired connections.

use super::server::{Script, TestServer};
use super::*;
use crate::client::Pool;

fn pool_with(client: &TestNode, settings: ClientSettings) -> Pool {
    Pool::new(Connector::new(
        client.certs.clone(),
        TrustStore::new([], &[]),
        settings,
    ))
}

#[tokio::test]
async fn messages_share_one_connection() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let pool = pool_with(&client, settings());
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    for i in 0..3 {
        let outcomes = pool
            .deliver(
                &relay,
                Some("a@client.test"),
                &rcpts(&[&format!("r{i}@mx.test")]),
                BODY,
            )
            .await
            .unwrap();
        assert_eq!(kinds(&outcomes)[0].1, "delivered");
        assert_eq!(pool.idle_count(&relay_key()), 1);
    }
    pool.close_all().await;
    assert_eq!(pool.idle_count(&relay_key()), 0);
    let sessions = srv.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].messages.len(), 3);
    assert_eq!(
        srv.verbs(),
        [
            "EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA",
            "QUIT"
        ]
    );
    // The RSET before a reused connection's transaction went in one write
    // with MAIL, RCPT and DATA: no round trip of its own.
    assert_eq!(
        sessions[0].pipelined,
        ["RCPT", "DATA", "MAIL", "RCPT", "DATA", "MAIL", "RCPT", "DATA"]
    );
}

#[tokio::test]
async fn cached_connection_refusing_rset_is_replaced_without_deferring() {
    let client = node(HELO);
    let srv = TestServer::start(Script {
        rset_reply: Some("421 4.3.2 Shutting down".into()),
        ..Script::default()
    })
    .await;
    let pool = pool_with(&client, settings());
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    for i in 0..3 {
        let outcomes = pool
            .deliver(&relay, None, &rcpts(&[&format!("r{i}@mx.test")]), BODY)
            .await
            .unwrap();
        assert_eq!(kinds(&outcomes)[0].1, "delivered", "message {i}");
    }
    // Each reused connection answered RSET with 421 and was dropped; the
    // message went at once on a new connection, which carried it.
    let counts: Vec<usize> = srv.sessions().iter().map(|s| s.messages.len()).collect();
    assert_eq!(counts, [1, 1, 1]);
}

#[tokio::test]
async fn connection_closed_after_max_messages() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let pool = pool_with(
        &client,
        ClientSettings {
            max_messages_per_connection: 2,
            ..settings()
        },
    );
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    for _ in 0..3 {
        pool.deliver(&relay, None, &rcpts(&["b@mx.test"]), BODY)
            .await
            .unwrap();
    }
    let counts: Vec<usize> = srv.sessions().iter().map(|s| s.messages.len()).collect();
    assert_eq!(counts, [2, 1]);
}

#[tokio::test]
async fn dead_cached_connection_is_replaced() {
    let client = node(HELO);
    let srv = TestServer::start(Script {
        hang_up_after_message: true,
        ..Script::default()
    })
    .await;
    let pool = pool_with(&client, settings());
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    for _ in 0..2 {
        let outcomes = pool
            .deliver(&relay, None, &rcpts(&["b@mx.test"]), BODY)
            .await
            .unwrap();
        assert_eq!(kinds(&outcomes)[0].1, "delivered");
    }
    let counts: Vec<usize> = srv.sessions().iter().map(|s| s.messages.len()).collect();
    assert_eq!(counts, [1, 1]);
}

#[tokio::test]
async fn idle_connections_expire() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let pool = pool_with(
        &client,
        ClientSettings {
            idle_keep: Duration::from_millis(300),
            ..settings()
        },
    );
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    pool.deliver(&relay, None, &rcpts(&["b@mx.test"]), BODY)
        .await
        .unwrap();
    assert_eq!(pool.reap().await, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(pool.reap().await, 1);
    assert_eq!(pool.idle_count(&relay_key()), 0);
    assert_eq!(srv.verbs().last().map(String::as_str), Some("QUIT"));

    // The reaper does the same on its own.
    let _reaper = pool.spawn_reaper();
    pool.deliver(&relay, None, &rcpts(&["b@mx.test"]), BODY)
        .await
        .unwrap();
    assert_eq!(pool.idle_count(&relay_key()), 1);
    // Expired after 300 ms, seen by a sweep every 150 ms.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(pool.idle_count(&relay_key()), 0);
    assert_eq!(srv.sessions().len(), 2);
}

#[tokio::test]
async fn concurrent_deliveries_use_separate_connections() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let pool = pool_with(&client, settings());
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (pool, relay) = (pool.clone(), relay.clone());
            tokio::spawn(async move { pool.deliver(&relay, None, &[format!("r{i}@mx.test")], BODY).await })
        })
        .collect();
    for t in tasks {
        let outcomes = t.await.unwrap().unwrap();
        assert_eq!(kinds(&outcomes)[0].1, "delivered");
    }
    let delivered: usize = srv.sessions().iter().map(|s| s.messages.len()).sum();
    assert_eq!(delivered, 4);
    assert!(pool.idle_count(&relay_key()) >= 1);
    // A changed hop does not reuse connections opened for the old one.
    let changed = SmtpHop {
        connector: None,
        tls: TlsRequirement::DANGER_PLAIN_TEXT,
        ..relay
    };
    let before = srv.sessions().len();
    pool.deliver(&changed, None, &rcpts(&["b@mx.test"]), BODY)
        .await
        .unwrap();
    assert_eq!(srv.sessions().len(), before + 1);
}

#[tokio::test]
async fn identity_or_trust_changes_close_cached_connections() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let trust = TrustStore::new([], &[]);
    let pool = Pool::new(Connector::new(client.certs.clone(), trust.clone(), settings()));
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    let send = |i: usize| {
        let pool = pool.clone();
        let relay = relay.clone();
        async move {
            let to = rcpts(&[&format!("r{i}@mx.test")]);
            let outcomes = pool
                .deliver(&relay, Some("a@client.test"), &to, BODY)
                .await
                .unwrap();
            assert_eq!(kinds(&outcomes)[0].1, "delivered");
        }
    };
    send(0).await;
    send(1).await;
    assert_eq!(
        srv.sessions().len(),
        1,
        "unchanged identity: one connection reused"
    );
    // Trust changes: the cached connection is not reused.
    trust.trust_direct(postern_model::Thumbprint::of_der(b"a new peer"));
    send(2).await;
    assert_eq!(srv.sessions().len(), 2);
    // So does the certificate store (a certificate enabled, rotated, removed).
    let view = client.certs.list().unwrap().remove(0);
    client
        .certs
        .set_rotation(
            &view.thumbprint,
            Some(&crate::certs::Rotation::Offered {
                since: "now".into(),
                note: "test".into(),
            }),
        )
        .unwrap();
    send(3).await;
    assert_eq!(srv.sessions().len(), 3);
    // Nothing changed since: reused again.
    send(4).await;
    assert_eq!(srv.sessions().len(), 3);
    pool.close_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_to_one_hop_share_at_most_the_limit_of_connections() {
    const LIMIT: usize = 5;
    const MESSAGES: usize = 100;
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let pool = Pool::with_limits(
        Connector::new(client.certs.clone(), TrustStore::new([], &[]), settings()),
        LIMIT,
        LIMIT,
    );
    let relay = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
    let deliveries: Vec<_> = (0..MESSAGES)
        .map(|i| {
            let (pool, relay) = (pool.clone(), relay.clone());
            tokio::spawn(async move {
                let to = rcpts(&[&format!("r{i}@mx.test")]);
                pool.deliver(&relay, None, &to, BODY).await.unwrap()
            })
        })
        .collect();
    for d in deliveries {
        assert_eq!(kinds(&d.await.unwrap())[0].1, "delivered");
    }
    let sessions = srv.sessions();
    assert!(
        sessions.len() <= LIMIT,
        "{} connections for {MESSAGES} concurrent messages (limit {LIMIT})",
        sessions.len()
    );
    let carried: usize = sessions.iter().map(|s| s.messages.len()).sum();
    assert_eq!(carried, MESSAGES);
    assert_eq!(
        pool.idle_count(&relay_key()),
        sessions.len(),
        "every connection was kept"
    );
}

/// A hop that rotates its hosts per message (an edge's hubs, a hub's
/// edges) reaches each host it puts first: a cached connection to another
/// host is not taken, so a host that joins gets its share.
#[tokio::test]
async fn a_rotating_hop_reaches_the_host_it_puts_first() {
    let client = node(HELO);
    let one = TestServer::start(Script::default()).await;
    let two = TestServer::start(Script::default()).await;
    let pool = pool_with(&client, settings());
    let one_first = hop(vec![one.host(), two.host()], TlsRequirement::OPPORTUNISTIC);
    let two_first = hop(vec![two.host(), one.host()], TlsRequirement::OPPORTUNISTIC);
    for relay in [&one_first, &two_first, &one_first, &two_first] {
        pool.deliver(relay, None, &rcpts(&["b@mx.test"]), BODY)
            .await
            .unwrap();
    }
    pool.close_all().await;
    // Each host got its two messages over one connection of its own.
    for srv in [&one, &two] {
        let counts: Vec<usize> = srv.sessions().iter().map(|s| s.messages.len()).collect();
        assert_eq!(counts, [2]);
    }
}
