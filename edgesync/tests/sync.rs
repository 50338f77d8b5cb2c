#![allow(clippy::unwrap_used)]

//! EdgeSync end to end over loopback: a hub store and sync manager, edges
//! serving gRPC over mutual TLS, snapshots, pushed deltas, refusals.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use postern_edgesync::edge_side::{BootstrapStore, EdgeSyncService, follow_hub_trust};
use postern_edgesync::hub_side::{EdgeTarget, SyncManager, SyncStatus};
use postern_edgesync::{ChangeLogStore, ConfigSource, Replica};
use postern_model::{
    ChangeOp, ConfigVersion, Domain, HubInfo, KeySpec, NodeName, ReplicatedObject, Service, SubjectName,
    Thumbprint, TransportConfig,
};
use postern_tls::TrustStore;
use postern_tls::certs::{CertStore, NewCertificate};

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

async fn start_edge(name: &str, secret: &str) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let fqdn = format!("{name}.adatum.com");
    let (certs, der) = cert_store(&db, &fqdn);
    let replica = Replica::open(&db).unwrap();
    let bootstrap = BootstrapStore::open(&db).unwrap();
    bootstrap.issue(secret, "2999-01-01T00:00:00Z").unwrap();
    let trust = TrustStore::new([], &[]);
    follow_hub_trust(replica.clone(), trust.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let incoming = postern_edgesync::channel::tls_incoming(listener, certs, &fqdn, &trust, &bootstrap);
    let service = EdgeSyncService::new(name, replica.clone(), bootstrap);
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

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn status_of(manager: &SyncManager, edge: &str) -> SyncStatus {
    manager.statuses().into_iter().find(|s| s.edge == edge).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_pushed_deltas_reach_every_edge() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub_db = sled::open(hub_dir.path()).unwrap();
    let (hub_certs, hub_der) = cert_store(&hub_db, "hub1.adatum.com");
    let store = Arc::new(ChangeLogStore::open(&hub_db, 100).unwrap());
    store
        .apply(
            vec![
                ChangeOp::Put(ReplicatedObject::Hub(HubInfo {
                    name: NodeName::parse("hub1").unwrap(),
                    fqdn: Domain::parse("hub1.adatum.com").unwrap(),
                    smtp_endpoint: "127.0.0.1:25".into(),
                    certificates: vec![hub_der.clone()],
                })),
                ChangeOp::Put(ReplicatedObject::TransportConfig(TransportConfig::default())),
            ],
            vec![],
        )
        .unwrap();
    let bootstrapped = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let hook_log = bootstrapped.clone();
    let manager = SyncManager::new(
        store.clone(),
        hub_certs.clone(),
        "hub1",
        "hub1.adatum.com",
        Arc::new(move |edge: &str| hook_log.lock().unwrap().push(edge.to_owned())),
    );
    let edges = [
        start_edge("edge1", "secret-1").await,
        start_edge("edge2", "secret-2").await,
    ];
    for (edge, (name, secret)) in edges.iter().zip([("edge1", "secret-1"), ("edge2", "secret-2")]) {
        manager.start(EdgeTarget {
            name: name.into(),
            endpoint: edge.endpoint.clone(),
            thumbprint: edge.thumbprint,
            bootstrap_secret: Some(secret.into()),
        });
    }
    for edge in &edges {
        wait_for("snapshot", || edge.replica.applied().version == ConfigVersion(2)).await;
        assert_eq!(edge.replica.applied().snapshots, 1);
    }
    // The hub marks an edge bootstrapped when its ack arrives, a moment
    // after the edge applied the snapshot.
    wait_for("both edges marked bootstrapped", || {
        bootstrapped.lock().map(|b| b.len() == 2).unwrap_or(false)
    })
    .await;
    assert_eq!(bootstrapped.lock().unwrap().len(), 2);

    // A change is pushed without polling.
    let config = TransportConfig {
        tls_send_domain_secure_list: vec![Domain::parse("northwindtraders.com").unwrap()],
        ..TransportConfig::default()
    };
    let v = store
        .apply(
            vec![ChangeOp::Put(ReplicatedObject::TransportConfig(config.clone()))],
            vec![],
        )
        .unwrap();
    for edge in &edges {
        wait_for("delta", || edge.replica.applied().version == v).await;
        let got = edge
            .replica
            .list(postern_model::ObjectKind::TransportConfig)
            .unwrap();
        assert_eq!(got, vec![ReplicatedObject::TransportConfig(config.clone())]);
        assert_eq!(edge.replica.applied().snapshots, 1, "a delta, not a snapshot");
    }
    let s = status_of(&manager, "edge1");
    assert_eq!(s.lag(), 0);
    assert_eq!(s.snapshots_sent, 1);
    assert!(s.deltas_sent >= 1);

    // A hub certificate the edge does not know, without a secret, is refused.
    let other_dir = tempfile::tempdir().unwrap();
    let other_db = sled::open(other_dir.path()).unwrap();
    let (other_certs, _) = cert_store(&other_db, "rogue.adatum.com");
    let rogue = SyncManager::new(
        store.clone(),
        other_certs,
        "rogue",
        "rogue.adatum.com",
        Arc::new(|_: &str| {}),
    );
    rogue.start(EdgeTarget {
        name: "edge1".into(),
        endpoint: edges[0].endpoint.clone(),
        thumbprint: edges[0].thumbprint,
        bootstrap_secret: Some("secret-1".into()),
    });
    wait_for("rogue refusal", || {
        status_of(&rogue, "edge1").last_error.is_some()
    })
    .await;
    // The edge trusts hub1 and has no bootstrap pending: the rogue's
    // certificate fails the TLS handshake, before any message is read.
    let err = status_of(&rogue, "edge1").last_error.unwrap();
    assert!(
        !err.contains("already used"),
        "the service read the rogue's Hello: {err}"
    );

    // An edge presenting another certificate than its subscription's is refused.
    manager.start(EdgeTarget {
        name: "edge2".into(),
        endpoint: edges[0].endpoint.clone(),
        thumbprint: edges[1].thumbprint,
        bootstrap_secret: None,
    });
    wait_for("pinning refusal", || {
        status_of(&manager, "edge2").last_error.is_some()
    })
    .await;
    let err = status_of(&manager, "edge2").last_error.unwrap();
    assert!(err.contains("presented certificate"), "{err}");
    assert!(store.version() >= v);
}
