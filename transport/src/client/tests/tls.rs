//! The hop's TLS policy against servers with and without STARTTLS.

use super::server::{Script, TestServer};
use super::*;
use crate::client::{ClientError, PlainReason};

const DIRECT: TlsRequirement = TlsRequirement {
    encryption: Encryption::Required,
    peer: PeerCheck::DirectTrust,
    client_certificate: ClientCertificate::NotAsked,
};

fn with_tls(config: Arc<rustls::ServerConfig>) -> Script {
    Script {
        starttls: Some(config),
        ..Script::default()
    }
}

#[tokio::test]
async fn direct_trust_with_trusted_server_thumbprint() {
    let (client, server) = (node(HELO), node(SERVER));
    let srv = TestServer::start(with_tls(tls_server(&server, &[], NO_CLIENT_CERTIFICATE))).await;
    let connector = connector(&client, &[server.thumbprint]);
    let mut conn = connector.connect(&hop(vec![srv.host()], DIRECT)).await.unwrap();
    let info = conn.tls_info().unwrap();
    assert_eq!(info.peer_thumbprint(), Some(server.thumbprint));
    assert_eq!(conn.plain_reason(), None);
    let outcomes = conn
        .send(Some("a@client.test"), &rcpts(&["b@mx.test"]), BODY)
        .await
        .unwrap();
    assert_eq!(kinds(&outcomes), [("b@mx.test", "delivered")]);
    conn.quit().await;
    let sessions = srv.sessions();
    assert!(sessions[0].tls);
    assert_eq!(sessions[0].client_cert, None);
    assert_eq!(
        srv.verbs(),
        ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    );
    assert_eq!(sessions[0].messages, [BODY]);
}

#[tokio::test]
async fn direct_trust_with_untrusted_server_fails() {
    let (client, server, other) = (node(HELO), node(SERVER), node("other.test"));
    let srv = TestServer::start(with_tls(tls_server(&server, &[], NO_CLIENT_CERTIFICATE))).await;
    let connector = connector(&client, &[other.thumbprint]);
    let err = connector
        .connect(&hop(vec![srv.host()], DIRECT))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls(..)), "{err}");
    assert!(err.is_tls_failure());
    assert_eq!(srv.sessions().len(), 1, "required TLS never falls back");
    assert!(!srv.verbs().contains(&"MAIL".to_owned()));
}

#[tokio::test]
async fn client_certificate_is_presented() {
    let (client, server) = (node(HELO), node(SERVER));
    let config = tls_server(&server, &[client.thumbprint], TlsRequirement::ORGANISATION);
    let srv = TestServer::start(with_tls(config)).await;
    let connector = connector(&client, &[server.thumbprint]);
    let organisation = hop(vec![srv.host()], TlsRequirement::ORGANISATION);
    let mut conn = connector.connect(&organisation).await.unwrap();
    let outcomes = conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.unwrap();
    assert_eq!(kinds(&outcomes), [("b@mx.test", "delivered")]);
    conn.quit().await;
    assert_eq!(srv.sessions()[0].client_cert, Some(client.thumbprint));
    assert!(srv.commands().contains(&"MAIL FROM:<>".to_owned()));
}

#[tokio::test]
async fn required_tls_without_starttls_sends_nothing() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let err = connector(&client, &[])
        .connect(&hop(vec![srv.host()], DIRECT))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::StartTlsNotOffered(_)), "{err}");
    assert_eq!(srv.verbs(), ["EHLO", "QUIT"]);
}

#[tokio::test]
async fn required_tls_never_falls_back_after_a_failed_handshake() {
    let (client, server) = (node(HELO), node(SERVER));
    let script = Script {
        tls_garbage: true,
        ..with_tls(tls_server(&server, &[], NO_CLIENT_CERTIFICATE))
    };
    let srv = TestServer::start(script).await;
    let err = connector(&client, &[server.thumbprint])
        .connect(&hop(vec![srv.host()], DIRECT))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Tls(..)), "{err}");
    assert_eq!(srv.sessions().len(), 1);
}

#[tokio::test]
async fn opportunistic_without_starttls_delivers_in_plain_text() {
    let client = node(HELO);
    let srv = TestServer::start(Script::default()).await;
    let mut conn = connector(&client, &[])
        .connect(&hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC))
        .await
        .unwrap();
    assert!(conn.tls_info().is_none());
    assert_eq!(conn.plain_reason(), Some(PlainReason::NotOffered));
    let outcomes = conn
        .send(Some("a@client.test"), &rcpts(&["b@mx.test"]), BODY)
        .await
        .unwrap();
    assert_eq!(kinds(&outcomes), [("b@mx.test", "delivered")]);
}

#[tokio::test]
async fn opportunistic_uses_starttls_with_any_certificate_and_offers_ours() {
    let (client, server) = (node(HELO), node(SERVER));
    let srv = TestServer::start(with_tls(tls_server(&server, &[], TlsRequirement::OPPORTUNISTIC))).await;
    // The server's certificate is trusted neither directly nor by PKI.
    let mut conn = connector(&client, &[])
        .connect(&hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC))
        .await
        .unwrap();
    assert_eq!(
        conn.tls_info().unwrap().peer_thumbprint(),
        Some(server.thumbprint)
    );
    conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.unwrap();
    conn.quit().await;
    assert_eq!(srv.sessions()[0].client_cert, Some(client.thumbprint));
}

#[tokio::test]
async fn opportunistic_falls_back_to_plain_text_after_a_failed_handshake() {
    let (client, server) = (node(HELO), node(SERVER));
    let script = Script {
        tls_garbage: true,
        ..with_tls(tls_server(&server, &[], NO_CLIENT_CERTIFICATE))
    };
    let srv = TestServer::start(script).await;
    let mut conn = connector(&client, &[])
        .connect(&hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC))
        .await
        .unwrap();
    assert_eq!(conn.plain_reason(), Some(PlainReason::HandshakeFailed));
    let outcomes = conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.unwrap();
    assert_eq!(kinds(&outcomes), [("b@mx.test", "delivered")]);
    let sessions = srv.sessions();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].commands, ["EHLO client.test", "STARTTLS"]);
    assert!(!sessions[1].commands.contains(&"STARTTLS".to_owned()));
    assert_eq!(sessions[1].messages, [BODY]);
}

#[tokio::test]
async fn ignore_starttls_never_sends_starttls() {
    let (client, server) = (node(HELO), node(SERVER));
    let srv = TestServer::start(with_tls(tls_server(&server, &[], NO_CLIENT_CERTIFICATE))).await;
    let mut conn = connector(&client, &[server.thumbprint])
        .connect(&hop(vec![srv.host()], TlsRequirement::DANGER_PLAIN_TEXT))
        .await
        .unwrap();
    assert!(conn.capabilities().starttls);
    assert_eq!(conn.plain_reason(), Some(PlainReason::DangerIgnoreStartTls));
    conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.unwrap();
    conn.quit().await;
    assert_eq!(srv.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);
}

/// Opens an organisation connection, sends one message and quits;
/// whether its handshake resumed an earlier session.
async fn organisation_session(connector: &Connector, srv: &TestServer) -> bool {
    let organisation = hop(vec![srv.host()], TlsRequirement::ORGANISATION);
    let mut conn = connector.connect(&organisation).await.unwrap();
    let resumed = conn.tls_info().unwrap().resumed;
    let outcomes = conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.unwrap();
    assert_eq!(kinds(&outcomes), [("b@mx.test", "delivered")]);
    conn.quit().await;
    resumed
}

#[tokio::test]
async fn a_second_organisation_connection_resumes_the_session() {
    let (client, server) = (node(HELO), node(SERVER));
    let config = tls_server(&server, &[client.thumbprint], TlsRequirement::ORGANISATION);
    let srv = TestServer::start(with_tls(config)).await;
    let connector = connector(&client, &[server.thumbprint]);
    assert!(
        !organisation_session(&connector, &srv).await,
        "the first handshake is a full one"
    );
    assert!(
        organisation_session(&connector, &srv).await,
        "the second did not resume"
    );
    // The resumed session still names the client the first one proved.
    let sessions = srv.sessions();
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s.client_cert == Some(client.thumbprint)));
}

#[tokio::test]
async fn a_trust_change_on_either_side_ends_resumption() {
    let (client, server, other) = (node(HELO), node(SERVER), node("other.test"));
    let server_trust = TrustStore::new([client.thumbprint], &[]);
    let config = server_config(
        ServerCertResolver::new(server.certs.clone(), SERVER),
        &server_trust,
        &TlsRequirement::ORGANISATION,
    );
    let srv = TestServer::start(with_tls(config)).await;
    let connector = connector(&client, &[server.thumbprint]);
    assert!(!organisation_session(&connector, &srv).await);
    assert!(organisation_session(&connector, &srv).await);

    // Our trust changes: the client forgets its sessions.
    connector.trust.trust_direct(other.thumbprint);
    assert!(
        !organisation_session(&connector, &srv).await,
        "resumed across a client trust change"
    );
    assert!(organisation_session(&connector, &srv).await);

    // The server's trust changes: its old tickets no longer open.
    server_trust.trust_direct(other.thumbprint);
    assert!(
        !organisation_session(&connector, &srv).await,
        "resumed across a server trust change"
    );

    // A client the server stops trusting cannot resume its way in.
    assert!(organisation_session(&connector, &srv).await);
    server_trust.set_direct([other.thumbprint]);
    let organisation = hop(vec![srv.host()], TlsRequirement::ORGANISATION);
    let refused = match connector.connect(&organisation).await {
        Err(_) => true,
        // TLS 1.3: a refused client certificate shows at the first read.
        Ok(mut conn) => conn.send(None, &rcpts(&["b@mx.test"]), BODY).await.is_err(),
    };
    assert!(refused, "a client no longer trusted resumed its session");
}

#[tokio::test]
async fn hops_outside_the_organisation_do_not_resume() {
    let (client, server) = (node(HELO), node(SERVER));
    let srv = TestServer::start(with_tls(tls_server(&server, &[], NO_CLIENT_CERTIFICATE))).await;
    let connector = connector(&client, &[]);
    for _ in 0..2 {
        let opportunistic = hop(vec![srv.host()], TlsRequirement::OPPORTUNISTIC);
        let conn = connector.connect(&opportunistic).await.unwrap();
        assert!(!conn.tls_info().unwrap().resumed);
        conn.quit().await;
    }
}
