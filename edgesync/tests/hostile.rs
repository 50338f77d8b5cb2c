#![allow(clippy::unwrap_used)]

//! EdgeSync before authentication, against a real edge over loopback
//! mutual TLS: an oversized `Hello` is refused from its length prefix, an
//! unauthenticated `Hello` is refused without its words echoed, and once
//! the edge holds a hub certificate (bootstrap used) any other client
//! certificate is refused in the TLS handshake.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use postern_edgesync::channel::connect_edge;
use postern_edgesync::edge_side::{BootstrapStore, EdgeSyncService, follow_hub_trust};
use postern_edgesync::hub_side::{EdgeTarget, SyncManager};
use postern_edgesync::{ChangeLogStore, Replica};
use postern_model::{
    ChangeOp, ConfigVersion, Domain, HubInfo, KeySpec, NodeName, ReplicatedObject, Service, SubjectName,
    Thumbprint,
};
use postern_proto::edgesync as pb;
use postern_proto::edgesync::edge_sync_client::EdgeSyncClient;
use postern_tls::certs::{CertStore, NewCertificate};
use postern_tls::{ClientCertResolver, ServerVerification, TrustStore, client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn cert_store(db: &sled::Db, fqdn: &str) -> (CertStore, Vec<u8>) {
    let store = CertStore::open(db).unwrap();
    let view = store
        .new_self_signed(&NewCertificate {
            subject: SubjectName::common_name_only(fqdn),
            domains: vec![Domain::parse(fqdn).unwrap()],
            friendly_name: None,
            key: KeySpec::EcdsaP256,
            services: BTreeSet::from([Service::Smtp]),
        })
        .unwrap();
    let der = store.certified_key(&view.thumbprint).unwrap().cert[0]
        .as_ref()
        .to_vec();
    (store, der)
}

struct Edge {
    _dir: tempfile::TempDir,
    replica: Replica,
    endpoint: String,
    thumbprint: Thumbprint,
}

async fn start_edge(secret: &str) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let fqdn = "edge1.adatum.com";
    let (certs, der) = cert_store(&db, fqdn);
    let replica = Replica::open(&db).unwrap();
    let bootstrap = BootstrapStore::open(&db).unwrap();
    bootstrap.issue(secret, "2999-01-01T00:00:00Z").unwrap();
    let trust = TrustStore::new([], &[]);
    follow_hub_trust(replica.clone(), trust.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let incoming = postern_edgesync::channel::tls_incoming(listener, certs, fqdn, &trust, &bootstrap);
    let service = EdgeSyncService::new("edge1", replica.clone(), bootstrap);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(postern_edgesync::gate::edge_sync_server(service))
            .serve_with_incoming(incoming),
    );
    Edge {
        _dir: dir,
        replica,
        endpoint,
        thumbprint: Thumbprint::of_der(&der),
    }
}

/// A stranger with a self-signed certificate for `fqdn`.
fn stranger(fqdn: &str) -> (tempfile::TempDir, CertStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let (certs, _) = cert_store(&db, fqdn);
    (dir, certs)
}

/// Opens a stream whose first message is `hello`; the edge's answer.
async fn say_hello(edge: &Edge, certs: CertStore, hello: pb::Hello) -> Result<(), tonic::Status> {
    let channel = connect_edge(
        &edge.endpoint,
        postern_tls::Pins::new([edge.thumbprint]),
        certs,
        "rogue.example",
        postern_edgesync::channel::SessionSlot::default(),
    )
    .unwrap();
    let mut client = EdgeSyncClient::new(channel).max_encoding_message_size(usize::MAX);
    let first = pb::HubMessage {
        body: Some(pb::hub_message::Body::Hello(hello)),
    };
    let outbound = tokio_stream::iter([first]).chain(tokio_stream::pending());
    let response = client.sync(outbound).await?;
    let mut inbound = response.into_inner();
    match inbound.message().await {
        Ok(_) => Ok(()),
        Err(status) => Err(status),
    }
}

use tokio_stream::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_hello_is_refused_from_its_length() {
    let edge = start_edge("secret-1").await;
    let (_dir, certs) = stranger("rogue.example");
    let hello = pb::Hello {
        hub_name: "A".repeat(1024 * 1024),
        bootstrap_secret: "guess".into(),
        ..pb::Hello::default()
    };
    let status = say_hello(&edge, certs, hello).await.unwrap_err();
    let text = status.message();
    assert!(
        !text.contains("AAAA"),
        "the Hello was echoed: {} bytes",
        text.len()
    );
    assert!(text.len() < 1024, "{}", &text[..200.min(text.len())]);
    assert_eq!(edge.replica.applied().version, ConfigVersion(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_hello_is_refused_without_echo() {
    let edge = start_edge("secret-1").await;
    let (_dir, certs) = stranger("rogue.example");
    for secret in ["", "wrong secret"] {
        let hello = pb::Hello {
            hub_name: "hub1\nERROR forged log line".into(),
            bootstrap_secret: secret.into(),
            ..pb::Hello::default()
        };
        let status = say_hello(&edge, certs.clone(), hello).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
        assert!(!status.message().contains("forged"), "{:?}", status.message());
        assert!(!status.message().contains('\n'), "{:?}", status.message());
    }
}

/// A raw TLS session to the edge with `certs`' certificate: whether the
/// edge answers (HTTP/2 settings) rather than failing the handshake.
async fn edge_answers(edge: &Edge, certs: CertStore, fqdn: &str) -> bool {
    let mut config = (*client_config(
        ServerVerification::DangerEncryptionOnly,
        &TrustStore::new([], &[]),
        Some(ClientCertResolver::new(certs, fqdn)),
    ))
    .clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(&edge.endpoint).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("edge1.adatum.com").unwrap();
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    // The HTTP/2 preface; a refused certificate shows as an alert here (TLS 1.3).
    let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await,
        Ok(Ok(n)) if n > 0
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_a_hub_is_known_other_certificates_fail_the_handshake() {
    let edge = start_edge("secret-1").await;
    let hub_dir = tempfile::tempdir().unwrap();
    let hub_db = sled::open(hub_dir.path()).unwrap();
    let (hub_certs, hub_der) = cert_store(&hub_db, "hub1.adatum.com");
    let (_rogue_dir, rogue) = stranger("rogue.example");
    // Before any hub: a stranger reaches the service (to present a secret).
    assert!(edge_answers(&edge, rogue.clone(), "rogue.example").await);

    let store = Arc::new(ChangeLogStore::open(&hub_db, 100).unwrap());
    store
        .apply(
            vec![ChangeOp::Put(ReplicatedObject::Hub(HubInfo {
                name: NodeName::parse("hub1").unwrap(),
                fqdn: Domain::parse("hub1.adatum.com").unwrap(),
                smtp_endpoint: "127.0.0.1:25".into(),
                certificates: vec![hub_der],
            }))],
            vec![],
        )
        .unwrap();
    let manager = SyncManager::new(
        store,
        hub_certs.clone(),
        "hub1",
        "hub1.adatum.com",
        Arc::new(|_: &str| {}),
    );
    manager.start(EdgeTarget {
        name: "edge1".into(),
        endpoint: edge.endpoint.clone(),
        thumbprint: edge.thumbprint,
        bootstrap_secret: Some("secret-1".into()),
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while edge.replica.applied().version != ConfigVersion(1) {
        assert!(tokio::time::Instant::now() < deadline, "no snapshot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Once the secret is recorded as used and the hub's certificate is
    // trusted (just after the snapshot), strangers fail the handshake.
    while edge_answers(&edge, rogue.clone(), "rogue.example").await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a stranger still gets through"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(edge_answers(&edge, hub_certs, "hub1.adatum.com").await);
}
