//! In-process hub and edge: a subscribed edge's certificate passes the
//! hub's direct-trust handshake (what the hub's organisation connector
//! asks), and after `edge-subscription remove` the very next handshake is
//! refused, without a restart.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use postern_edge::{Edge, EdgeOptions};
use postern_hub::Hub;
use postern_model::{Domain, NodeRole};
use postern_proto::admin as pb;
use postern_proto::admin::edge_subscription_file_server::EdgeSubscriptionFile;
use postern_tls::{
    ClientCertResolver, ServerCertResolver, ServerVerification, TlsRequirement, client_config, server_config,
};
use postern_transport::node::NodeOptions;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn opts(dir: &std::path::Path, role: NodeRole, fqdn: &str) -> NodeOptions {
    NodeOptions {
        data_dir: dir.to_path_buf(),
        role,
        name: None,
        fqdn: Some(Domain::parse(fqdn).unwrap()),
        smtp_bind: "127.0.0.1:0".into(),
    }
}

/// One mutual-TLS exchange: the hub side asks for a directly trusted client
/// certificate; the edge presents its own. Returns whether data flowed.
async fn handshake(hub: &Hub, edge: &Edge) -> bool {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = server_config(
        ServerCertResolver::new(hub.node.certs.clone(), "van-ex1.adatum.com"),
        &hub.admin.trust,
        &TlsRequirement::ORGANISATION,
    );
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
            let mut buf = [0u8; 4];
            let _ = tls.read_exact(&mut buf).await;
            let _ = tls.write_all(b"pong").await;
            let _ = tls.shutdown().await;
        }
    });
    let client = client_config(
        ServerVerification::DangerEncryptionOnly,
        &edge.trust,
        Some(ClientCertResolver::new(
            edge.node.certs.clone(),
            "edge1.adatum.com",
        )),
    );
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("van-ex1.adatum.com").unwrap();
    let ok = match tokio_rustls::TlsConnector::from(Arc::clone(&client))
        .connect(name, tcp)
        .await
    {
        Ok(mut tls) => {
            // In TLS 1.3 a refused client certificate shows at the first read.
            let _ = tls.write_all(b"ping").await;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.is_ok() && &buf == b"pong"
        }
        Err(_) => false,
    };
    server.await.unwrap();
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_edge_is_refused_at_its_next_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = Hub::start(&postern_hub::HubOptions {
        runtime: postern_transport::runtime::RuntimeOptions {
            node: opts(&tmp.path().join("hub"), NodeRole::Hub, "van-ex1.adatum.com"),
            metrics_bind: None,
            dns_servers: Vec::new(),
            internet_tls: Default::default(),
        },
        store: Default::default(),
        console_bind: None,
        certificate_grace: postern_hub::rotation::DEFAULT_GRACE,
    })
    .await
    .unwrap();
    let edge = Edge::start(&EdgeOptions {
        runtime: postern_transport::runtime::RuntimeOptions {
            node: opts(&tmp.path().join("edge"), NodeRole::Edge, "edge1.adatum.com"),
            metrics_bind: None,
            dns_servers: Vec::new(),
            internet_tls: Default::default(),
        },
        edgesync_bind: "127.0.0.1:0".into(),
    })
    .await
    .unwrap();
    assert!(!handshake(&hub, &edge).await, "an unsubscribed edge was trusted");

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
    assert!(handshake(&hub, &edge).await, "a subscribed edge was refused");

    admin
        .subscriptions
        .remove("edge1", &admin.config, &admin.refresh, &admin.sync)
        .await
        .unwrap();
    assert!(!handshake(&hub, &edge).await, "a removed edge was still trusted");
}
