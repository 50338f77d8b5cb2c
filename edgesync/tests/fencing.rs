#![allow(clippy::unwrap_used)]

//! The edge's fencing check over loopback gRPC and mutual TLS: hub A syncs
//! the edge under lease token 5, hub B takes it over with token 7, and
//! every later push of A — which does not know it lost the lease — is
//! refused by the edge, while B's pushes are applied.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use postern_edgesync::edge_side::{BootstrapStore, EdgeSyncService, follow_hub_trust};
use postern_edgesync::hub_side::{EdgeTarget, SyncManager, SyncState, SyncStatus};
use postern_edgesync::lease::{EdgeLeases, Held};
use postern_edgesync::{ChangeLogStore, Replica};
use postern_model::{
    ChangeOp, Domain, HubInfo, KeySpec, NodeName, ReplicatedObject, Service, SubjectName, Thumbprint,
    TransportConfig,
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

/// A lease that is always held with a fixed token; counts how often it
/// was given up.
struct FixedLease(u64, std::sync::atomic::AtomicUsize);

#[tonic::async_trait]
impl EdgeLeases for FixedLease {
    async fn acquire(&self, _: &str, _: &str) -> Held {
        Held::never_lost(self.0)
    }
    async fn release(&self, _: &str, _: &str) {
        self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn holder(&self, _: &str) -> Option<String> {
        None
    }
}

fn hub(name: &str, der: &[u8]) -> ChangeOp {
    ChangeOp::Put(ReplicatedObject::Hub(HubInfo {
        name: NodeName::parse(name).unwrap(),
        fqdn: Domain::parse(&format!("{name}.adatum.com")).unwrap(),
        smtp_endpoint: "127.0.0.1:25".into(),
        certificates: vec![der.to_vec()],
    }))
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

fn status_of(manager: &SyncManager) -> SyncStatus {
    manager
        .statuses()
        .into_iter()
        .find(|s| s.edge == "edge1")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_lost_the_lease_cannot_push() {
    // Hubs A and B share one store (as etcd hubs do).
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("hubs")).unwrap();
    let a_db = sled::open(dir.path().join("a")).unwrap();
    let b_db = sled::open(dir.path().join("b")).unwrap();
    let (a_certs, a_der) = cert_store(&a_db, "huba.adatum.com");
    let (b_certs, b_der) = cert_store(&b_db, "hubb.adatum.com");
    let store = Arc::new(ChangeLogStore::open(&db, 100).unwrap());
    store
        .apply(
            vec![
                hub("huba", &a_der),
                hub("hubb", &b_der),
                ChangeOp::Put(ReplicatedObject::TransportConfig(TransportConfig::default())),
            ],
            vec![],
        )
        .unwrap();

    // The edge.
    let edge_db = sled::open(dir.path().join("edge")).unwrap();
    let (edge_certs, edge_der) = cert_store(&edge_db, "edge1.adatum.com");
    let replica = Replica::open(&edge_db).unwrap();
    let bootstrap = BootstrapStore::open(&edge_db).unwrap();
    bootstrap.issue("secret", "2999-01-01T00:00:00Z").unwrap();
    let trust = TrustStore::new([], &[]);
    follow_hub_trust(replica.clone(), trust.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = listener.local_addr().unwrap().to_string();
    let incoming =
        postern_edgesync::channel::tls_incoming(listener, edge_certs, "edge1.adatum.com", &trust, &bootstrap);
    let service = EdgeSyncService::new("edge1", replica.clone(), bootstrap);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(postern_edgesync::gate::edge_sync_server(service))
            .serve_with_incoming(incoming),
    );
    let target = |secret: Option<&str>| EdgeTarget {
        name: "edge1".into(),
        endpoint: endpoint.clone(),
        thumbprint: Thumbprint::of_der(&edge_der),
        bootstrap_secret: secret.map(str::to_owned),
    };
    let manager = |certs: CertStore, name: &str, lease: Arc<FixedLease>| {
        SyncManager::with_leases(
            store.clone(),
            certs,
            name,
            &format!("{name}.adatum.com"),
            Arc::new(|_: &str| {}),
            Some(lease),
        )
    };
    let a_lease = Arc::new(FixedLease(5, Default::default()));
    let b_lease = Arc::new(FixedLease(7, Default::default()));
    let released = |lease: &FixedLease| lease.1.load(std::sync::atomic::Ordering::SeqCst);

    // A syncs the edge under token 5.
    let a = manager(a_certs, "huba", a_lease.clone());
    a.start(target(Some("secret")));
    wait_for("A in sync", || status_of(&a).state == SyncState::InSync).await;
    assert_eq!(replica.fence().token, 5);

    // B takes the edge over with token 7 (A does not know).
    let b = manager(b_certs, "hubb", b_lease.clone());
    b.start(target(None));
    wait_for("B in sync", || status_of(&b).state == SyncState::InSync).await;
    assert_eq!(replica.fence().token, 7);

    // A change: A's push is refused, B's applied.
    let config = TransportConfig {
        max_recipients: 42,
        ..TransportConfig::default()
    };
    let v = store
        .apply(
            vec![ChangeOp::Put(ReplicatedObject::TransportConfig(config.clone()))],
            vec![],
        )
        .unwrap();
    wait_for("the change on the edge", || replica.applied().version == v).await;
    assert_eq!(
        replica.list(postern_model::ObjectKind::TransportConfig).unwrap(),
        vec![ReplicatedObject::TransportConfig(config)]
    );
    wait_for("A refused", || status_of(&a).last_error.is_some()).await;
    let err = status_of(&a).last_error.unwrap();
    assert!(err.contains("another hub took this edge over"), "{err}");
    assert!(
        status_of(&b).last_error.is_none(),
        "{:?}",
        status_of(&b).last_error
    );
    // A's fresh stream is refused at its Hello too; B stays in sync.
    a.force_full();
    wait_for("A refused again", || {
        status_of(&a).last_error.as_deref().is_some_and(|e| e != err)
    })
    .await;
    let again = status_of(&a).last_error.unwrap();
    assert!(again.contains("another hub took this edge over"), "{again}");
    assert_eq!(replica.applied().version, v);
    assert_eq!(status_of(&b).state, SyncState::InSync);
    // A does not redial forever under its stale token: it gives the lease
    // up and stands by (asking again later); B keeps its own.
    wait_for("A gives its lease up", || released(&a_lease) >= 1).await;
    wait_for("A standing by", || status_of(&a).state == SyncState::Standby).await;
    assert_eq!(released(&b_lease), 0);
    assert_eq!(status_of(&b).state, SyncState::InSync);
}

/// A lease that is always held and counts how often it was given up.
#[derive(Default)]
struct CountingLease {
    released: std::sync::atomic::AtomicUsize,
}

#[tonic::async_trait]
impl EdgeLeases for CountingLease {
    async fn acquire(&self, _: &str, _: &str) -> Held {
        Held::never_lost(3)
    }
    async fn release(&self, _: &str, _: &str) {
        self.released.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn holder(&self, _: &str) -> Option<String> {
        None
    }
}

/// Restarting an edge's sync (the subscription import after the
/// organisation's follower already started it; a changed target) keeps the
/// lease. Giving it up raced the new task's acquire: the release deleted
/// the key the new task had found held, and another hub took the edge
/// while this one kept streaming under a token the edge then refused
/// (seen in deploy/e2e.sh H0: adatum-hub2 took adatum-edge3 at once).
/// Only a real stop gives the lease up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_an_edges_sync_keeps_its_lease_and_only_stop_gives_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("hub")).unwrap();
    let (certs, _) = cert_store(&db, "huba.adatum.com");
    let store = Arc::new(ChangeLogStore::open(&db, 100).unwrap());
    let leases = Arc::new(CountingLease::default());
    let manager = SyncManager::with_leases(
        store,
        certs,
        "huba",
        "huba.adatum.com",
        Arc::new(|_: &str| {}),
        Some(leases.clone()),
    );
    // Nothing listens there: the tasks only hold the lease and redial.
    let target = EdgeTarget {
        name: "edge1".into(),
        endpoint: "127.0.0.1:9".into(),
        thumbprint: Thumbprint::of_der(b"edge1"),
        bootstrap_secret: None,
    };
    for _ in 0..5 {
        manager.start(target.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    manager.ensure(target.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let released = || leases.released.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(released(), 0, "a restart gave the lease up");
    assert_eq!(manager.edges(), vec!["edge1".to_owned()]);

    manager.stop("edge1");
    wait_for("the lease given up", || released() == 1).await;
    assert!(manager.edges().is_empty());
    // Stopping an edge that is not synced gives nothing up.
    manager.stop("edge1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(released(), 1);
}
