//! STARTTLS over real sockets with a tokio-rustls client: mail over TLS,
//! plain text injected behind STARTTLS, client certificates under direct
//! trust, `require_tls`, and the connector without a certificate.

use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::*;
use crate::tls::{
    ClientCertResolver, Encryption, PeerTrust, ServerVerification, TlsRequirement, client_config,
};

/// A client that accepts any server certificate, presenting `cert`.
pub(super) fn tls_client(cert: Option<ClientCertResolver>) -> TlsConnector {
    let trust = TrustStore::new([], &[]);
    TlsConnector::from(client_config(
        ServerVerification::DangerEncryptionOnly,
        &trust,
        cert,
    ))
}

/// A client certificate for `name` in a store of its own.
pub(super) struct ClientCert {
    _dir: tempfile::TempDir,
    pub(super) resolver: ClientCertResolver,
    pub(super) thumbprint: Thumbprint,
}

pub(super) fn client_cert(name: &str) -> ClientCert {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let store = CertStore::open(&db).unwrap();
    let thumbprint = self_signed(&store, name);
    ClientCert {
        _dir: dir,
        resolver: ClientCertResolver::new(store, name),
        thumbprint,
    }
}

/// STARTTLS (after EHLO) and the handshake.
pub(super) async fn upgrade(
    mut c: Client<TcpStream>,
    connector: &TlsConnector,
) -> std::io::Result<Client<TlsStream<TcpStream>>> {
    c.cmd("STARTTLS", "220 2.0.0").await;
    assert!(c.parser.next_reply().unwrap().is_none(), "a reply after 220");
    let tls = connector
        .connect(ServerName::try_from(FQDN).unwrap(), c.stream)
        .await?;
    Ok(Client::new(tls))
}

#[tokio::test]
async fn starttls_then_mail_over_tls() {
    let node = Setup::new().start().await;
    let mut c = node.connect().await;
    assert!(has_starttls(&c.cmd("EHLO client.fabrikam.test", "250").await));
    let mut c = upgrade(c, &tls_client(None)).await.unwrap();
    let ehlo = c.cmd("EHLO client.fabrikam.test", "250").await;
    assert!(!has_starttls(&ehlo));
    c.cmd("STARTTLS", "503 5.5.1").await;
    c.mail("alice@fabrikam.test", &["bob@local.test"], BODY).await;
    c.cmd("QUIT", "221 2.0.0").await;
    let (_, body) = node.only_message();
    assert!(
        body.starts_with(
            "Received: from client.fabrikam.test ([127.0.0.1])\r\n\tby mx.local.test with ESMTPS id "
        ),
        "{body}"
    );
    assert!(body.contains("\r\n\t(version=TLSv1.3 cipher=TLS13_"), "{body}");
    assert!(body.ends_with(BODY));
    let record = node.records(1).await.remove(0);
    assert_eq!(record.end, SessionEnd::Quit);
    assert_eq!(record.info.tls.unwrap().version, "TLSv1.3");
    assert_eq!(record.info.peer_trust, PeerTrust::None);
    node.shut_down().await;
}

#[tokio::test]
async fn plaintext_injected_after_starttls_is_ignored() {
    let node = Setup::new().start().await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    // CVE-2011-0411: the RSET rides in the same segment as STARTTLS.
    c.send("STARTTLS\r\nRSET\r\n").await;
    c.expect("220 2.0.0").await;
    assert!(c.parser.next_reply().unwrap().is_none());
    let tls = tls_client(None)
        .connect(ServerName::try_from(FQDN).unwrap(), c.stream)
        .await
        .unwrap();
    let mut c = Client::new(tls);
    // Had the RSET been executed after the handshake, its 250 would come
    // first; the session instead starts afresh and wants EHLO.
    c.cmd("MAIL FROM:<a@fabrikam.test>", "503 5.5.1").await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("QUIT", "221").await;
    node.shut_down().await;
}

#[tokio::test]
async fn directly_trusted_client_certificate_is_an_organisation_node() {
    let edge = client_cert("edge.local.test");
    let node = Setup {
        connector: ReceiveConnectorConfig {
            tls: TlsRequirement {
                encryption: Encryption::Opportunistic,
                ..TlsRequirement::ORGANISATION
            },
            trusted_org: true,
            ..connector()
        },
        trusted: vec![edge.thumbprint],
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO edge.local.test", "250").await;
    let mut c = upgrade(c, &tls_client(Some(edge.resolver.clone())))
        .await
        .unwrap();
    c.cmd("EHLO edge.local.test", "250").await;
    let stamped = "X-Postern-Organization-AuthAs: Partner\r\nSubject: from a partner\r\n\r\nhi\r\n";
    c.mail("partner@northwind.test", &["bob@local.test"], stamped)
        .await;
    c.cmd("QUIT", "221").await;
    let (_, body) = node.only_message();
    assert!(body.ends_with(stamped), "{body}");
    let record = node.records(1).await.remove(0);
    assert_eq!(record.info.peer_trust, PeerTrust::Direct(edge.thumbprint));
    node.shut_down().await;
}

#[tokio::test]
async fn untrusted_client_certificate_is_refused() {
    let stranger = client_cert("stranger.fabrikam.test");
    let node = Setup {
        connector: ReceiveConnectorConfig {
            tls: TlsRequirement {
                encryption: Encryption::Opportunistic,
                ..TlsRequirement::ORGANISATION
            },
            ..connector()
        },
        trusted: vec![client_cert("edge.local.test").thumbprint],
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO stranger.fabrikam.test", "250").await;
    // In TLS 1.3 the client's handshake completes before the server has
    // judged its certificate: the refusal surfaces at the first read.
    if let Ok(mut c) = upgrade(c, &tls_client(Some(stranger.resolver))).await {
        let _ = c.stream.write_all(b"EHLO stranger.fabrikam.test\r\n").await;
        assert!(c.closed().await, "an untrusted client certificate was accepted");
    }
    let record = node.records(1).await.remove(0);
    assert!(matches!(record.end, SessionEnd::TlsFailed(_)), "{:?}", record.end);
    assert!(node.queue.ids().unwrap().is_empty());
    node.shut_down().await;
}

#[tokio::test]
async fn require_tls_refuses_mail_before_starttls() {
    let node = Setup {
        connector: ReceiveConnectorConfig {
            tls: TlsRequirement {
                encryption: Encryption::Required,
                ..connector().tls
            },
            ..connector()
        },
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "530 5.7.0").await;
    let mut c = upgrade(c, &tls_client(None)).await.unwrap();
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.mail("a@fabrikam.test", &["bob@local.test"], BODY).await;
    node.shut_down().await;
}

#[tokio::test]
async fn no_certificate_for_the_fqdn_means_no_starttls() {
    let node = Setup {
        server_cert: false,
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    let ehlo = c.cmd("EHLO client.fabrikam.test", "250").await;
    assert!(!has_starttls(&ehlo), "{ehlo:?}");
    c.cmd("STARTTLS", "502 5.5.1").await;
    c.mail("a@fabrikam.test", &["bob@local.test"], BODY).await;
    node.shut_down().await;
}
