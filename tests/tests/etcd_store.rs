//! The etcd store in process against a real one-member etcd: two stores on
//! one prefix (two hubs) see one version space; guarded writes conflict;
//! the change feed answers from a version, and with `None` once etcd
//! compacted past it. Against three members: a member that stops
//! answering (SIGSTOP, as when its machine vanishes) costs a guarded write
//! time, not success.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use postern_edgesync::{ConfigSource, ConfigStore, EtcdStore, SideWrite, SourceError, Write};
use postern_model::{AcceptedDomain, AcceptedDomainKind, ChangeOp, ConfigVersion, Domain, ReplicatedObject};
use postern_tests::etcd::EtcdCluster;
use postern_tests::require_tool;

fn domain(name: &str) -> ReplicatedObject {
    ReplicatedObject::AcceptedDomain(AcceptedDomain {
        name: Domain::parse(name).unwrap(),
        kind: AcceptedDomainKind::Authoritative,
        delivery: Default::default(),
    })
}

fn put(object: ReplicatedObject, read: Option<ConfigVersion>) -> Write {
    Write {
        ops: vec![ChangeOp::Put(object)],
        side: vec![],
        read,
    }
}

async fn wait_version(store: &EtcdStore, v: ConfigVersion) {
    let mut watch = store.watch();
    tokio::time::timeout(Duration::from_secs(10), watch.wait_for(|x| *x >= v))
        .await
        .unwrap()
        .unwrap();
}

/// A one-member etcd cluster and two hubs' stores on it: the first on
/// prefix `/postern/adatum.com/`, the second on `b_prefix` (the same
/// organisation, spelt with or without the trailing slash).
async fn two_stores(dir: &std::path::Path, b_prefix: &str) -> (EtcdCluster, Arc<EtcdStore>, Arc<EtcdStore>) {
    require_tool("etcd");
    let etcd = EtcdCluster::start(dir, 1).unwrap();
    let endpoints: Vec<String> = etcd.endpoints().split(',').map(str::to_owned).collect();
    let a = EtcdStore::connect(&endpoints, "/postern/adatum.com/", Duration::from_secs(10))
        .await
        .unwrap();
    let b = EtcdStore::connect(&endpoints, b_prefix, Duration::from_secs(10))
        .await
        .unwrap();
    (etcd, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_one_version_space_guarded_writes_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let (etcd, a, b) = two_stores(tmp.path(), "/postern/adatum.com").await;
    assert_eq!(a.store_id(), b.store_id());

    let v1 = a.apply(put(domain("adatum.com"), None)).await.unwrap();
    wait_version(&b, v1).await;
    assert_eq!(b.version(), v1);
    assert_eq!(
        b.list(postern_model::ObjectKind::AcceptedDomain).unwrap(),
        vec![domain("adatum.com")]
    );

    // Two writers from the same read: one wins, the other changes nothing.
    let read = b.read_version();
    let first = a.apply(put(domain("contoso.com"), Some(read))).await.unwrap();
    let second = b.apply(put(domain("contoso.com"), Some(read))).await;
    assert!(matches!(second, Err(SourceError::Conflict)), "{second:?}");
    wait_version(&b, first).await;
    assert_eq!(b.version(), first);

    // The change feed from v1 has the one change; from zero after a
    // compaction there is none (the edge gets a snapshot).
    let changes = b.changes_since(v1).await.unwrap().unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].version, first);
    let last = a.apply(put(domain("fabrikam.com"), None)).await.unwrap();
    etcd.compact().unwrap();
    wait_version(&b, last).await;
    assert!(b.changes_since(v1).await.unwrap().is_none());
    assert_eq!(b.changes_since(last).await.unwrap().unwrap(), vec![]);
    let (version, objects) = b.snapshot().unwrap();
    assert_eq!(version, last);
    assert_eq!(objects.len(), 3);
}

/// A side record (a subscription) written through one hub's store wakes
/// the other hub's side feed, though the version does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_record_written_by_one_hub_wakes_the_other() {
    let tmp = tempfile::tempdir().unwrap();
    let (_etcd, a, b) = two_stores(tmp.path(), "/postern/adatum.com/").await;
    let mut side = b.watch_side();
    side.borrow_and_update();
    let version = b.version();
    let record = SideWrite {
        space: "hub/subscriptions".into(),
        key: b"edge1".to_vec(),
        value: Some(b"{}".to_vec()),
    };
    a.apply(Write {
        side: vec![record],
        ..Write::default()
    })
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), side.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.side_list("hub/subscriptions").unwrap(), vec![b"{}".to_vec()]);
    assert_eq!(b.version(), version, "side records do not move the version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_answering_does_not_fail_writes() {
    require_tool("etcd");
    let tmp = tempfile::tempdir().unwrap();
    let mut etcd = EtcdCluster::start(tmp.path(), 3).unwrap();
    let endpoints: Vec<String> = etcd.endpoints().split(',').map(str::to_owned).collect();
    let a = EtcdStore::connect(&endpoints, "/postern/adatum.com/", Duration::from_secs(10))
        .await
        .unwrap();
    let v1 = a.apply(put(domain("adatum.com"), None)).await.unwrap();

    // The store starts on the first member: it stops answering, without
    // closing a connection.
    etcd.pause(0).unwrap();
    let read = a.read_version();
    let started = std::time::Instant::now();
    let v2 = a
        .apply(put(domain("contoso.com"), Some(read)))
        .await
        .unwrap_or_else(|e| panic!("a guarded write with one member silent: {e}\n{}", etcd.logs()));
    assert!(v2 > v1, "{v2:?} after {v1:?}");
    eprintln!("guarded write with member 0 silent took {:?}", started.elapsed());
    // It is in etcd, as written: read back through the other members.
    let b = EtcdStore::connect(&endpoints[1..], "/postern/adatum.com/", Duration::from_secs(10))
        .await
        .unwrap();
    let mut names: Vec<String> = b
        .list(postern_model::ObjectKind::AcceptedDomain)
        .unwrap()
        .into_iter()
        .map(|o| o.key().0)
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().any(|n| n.contains("contoso.com")), "{names:?}");
    // And later writes keep working with the member still silent.
    let v3 = a.apply(put(domain("fabrikam.com"), None)).await.unwrap();
    assert!(v3 > v2);
    wait_version(&b, v3).await;
    etcd.resume(0).unwrap();
}
