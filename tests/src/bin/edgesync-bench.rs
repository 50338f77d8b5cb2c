//! `edgesync-bench`: EdgeSync propagation latency and snapshot cost, in
//! one process, over real loopback gRPC with mutual TLS.
//!
//! ```text
//! edgesync-bench --edges 10 --changes 1000      # commit on the hub → applied on every edge
//! edgesync-bench --snapshot-mailboxes 10000     # one fresh edge pulls a full snapshot
//! edgesync-bench --edges 10 --etcd-members 3    # the same with the hub store on etcd
//! ```
//!
//! With `--etcd-members N` the hub store is an `EtcdStore` on a real
//! N-member etcd cluster (Debian's etcd) started on loopback for the run,
//! and the hub syncs each edge under an EdgeSync lease, as several hubs do.
//!
//! The hub is a `ChangeLogStore` plus a `SyncManager`, exactly as in
//! `edgesync/tests/sync.rs`. Each edge is an in-process tonic server with its
//! own ECDSA P-256 self-signed certificate and its own sled database in a real
//! directory (under `--dir`, default the system temp dir), so every apply is
//! flushed (fsync) like in production. Nothing uses `sled::Config::temporary`,
//! which on Linux may place the database in `/dev/shm`, where fsync is free.
//!
//! Propagation: t0 is taken *before* `ChangeLogStore::apply`, so a sample
//! covers the hub's transaction and flush, the push, the edge's apply and
//! flush, for the slowest edge. The end point is the moment the edge's
//! `Replica::watch()` announces the new version: `Replica` sends it right
//! after its `db.flush()`, and the edge sends its `Ack` right after that, so
//! this is "commit to ack" minus the ack's one loopback hop back to the hub.
//! At the end the hub's statuses are checked: every edge must have acked the
//! last version.
//!
//! It prints a report for people on stderr and one JSON line on stdout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use postern_edgesync::edge_side::{BootstrapStore, EdgeSyncService, follow_hub_trust};
use postern_edgesync::hub_side::{EdgeTarget, SyncManager};
use postern_edgesync::lease::EdgeLeases;
use postern_edgesync::store::DEFAULT_LOG_LIMIT;
use postern_edgesync::{ChangeLogStore, ConfigStore, EtcdStore, Replica, Write};
use postern_model::{
    AcceptedDomain, AcceptedDomainKind, AddressSpace, ChangeOp, Domain, HubInfo, KeySpec, MailboxEntry,
    NodeName, ReplicatedObject, SendConnector, Service, SubjectName, Thumbprint, TransportConfig,
};
use postern_proto::edgesync as pb;
use postern_tests::etcd::EtcdCluster;
use postern_tls::TrustStore;
use postern_tls::certs::{CertStore, NewCertificate};
use prost::Message as _;
use tokio::sync::mpsc;

#[derive(Parser, Debug)]
#[command(about = "EdgeSync propagation latency and snapshot cost (in-process hub and edges)")]
struct Args {
    /// Propagation run: number of in-process edges.
    #[arg(long)]
    edges: Option<usize>,
    /// Propagation run: changes committed one after another (each waits for every edge).
    #[arg(long, default_value_t = 1000)]
    changes: u64,
    /// Propagation run: changes made first and not counted.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Snapshot run: mailboxes in the hub store.
    #[arg(long)]
    snapshot_mailboxes: Option<usize>,
    /// Snapshot run: fresh edges, one after another (the median is reported).
    #[arg(long, default_value_t = 3)]
    snapshot_repeats: usize,
    /// Parent directory for the sled databases (default: the system temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Tokio worker threads (default: the number of CPUs).
    #[arg(long)]
    worker_threads: Option<usize>,
    /// Keep the hub store on a real etcd cluster of this many members
    /// (started on loopback for the run) instead of sled.
    #[arg(long)]
    etcd_members: Option<usize>,
    /// Give up on one change (or one snapshot) after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.edges.is_none() && args.snapshot_mailboxes.is_none() {
        bail!("nothing to do: give --edges N and/or --snapshot-mailboxes K");
    }
    let threads = args
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let parent = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir(),
    };
    let root = tempfile::Builder::new()
        .prefix("edgesync-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("temp dir in {}", parent.display()))?;
    runtime.block_on(async {
        if let Some(n) = args.edges {
            propagation(&args, root.path(), n, threads).await?;
        }
        if let Some(k) = args.snapshot_mailboxes {
            snapshot(&args, root.path(), k, threads).await?;
        }
        anyhow::Ok(())
    })?;
    // Dropping the runtime stops the servers before the directories go.
    drop(runtime);
    Ok(())
}

// ---------------------------------------------------------------- set-up

fn cert_store(db: &sled::Db, fqdn: &str) -> anyhow::Result<(CertStore, Vec<u8>)> {
    let store = CertStore::open(db)?;
    let view = store.new_self_signed(&NewCertificate {
        subject: SubjectName::common_name_only(fqdn),
        domains: vec![Domain::parse(fqdn)?],
        friendly_name: None,
        key: KeySpec::EcdsaP256,
        services: BTreeSet::from([Service::Smtp]),
    })?;
    let key = store.certified_key(&view.thumbprint)?;
    let der = key
        .cert
        .first()
        .context("certificate without a chain")?
        .as_ref()
        .to_vec();
    Ok((store, der))
}

struct Hub {
    store: Arc<dyn ConfigStore>,
    manager: SyncManager,
    _etcd: Option<EtcdCluster>,
}

fn write(ops: Vec<ChangeOp>) -> Write {
    Write {
        ops,
        side: vec![],
        read: None,
    }
}

const HUB_FQDN: &str = "hub1.bench.test";

async fn start_hub(root: &Path, extra: Vec<ChangeOp>, etcd_members: Option<usize>) -> anyhow::Result<Hub> {
    let dir = root.join("hub");
    let db = sled::open(&dir).with_context(|| format!("sled {}", dir.display()))?;
    let (certs, der) = cert_store(&db, HUB_FQDN)?;
    let (store, leases, etcd): (Arc<dyn ConfigStore>, Option<Arc<dyn EdgeLeases>>, _) = match etcd_members {
        None => (
            Arc::new(ChangeLogStore::open(&db, DEFAULT_LOG_LIMIT)?),
            None,
            None,
        ),
        Some(members) => {
            let cluster = EtcdCluster::start(root, members)?;
            let endpoints: Vec<String> = cluster.endpoints().split(',').map(str::to_owned).collect();
            let store =
                EtcdStore::connect(&endpoints, "/postern/bench.test/", Duration::from_secs(30)).await?;
            (store.clone(), Some(store), Some(cluster))
        }
    };
    store
        .apply(write(vec![
            ChangeOp::Put(ReplicatedObject::Hub(HubInfo {
                name: NodeName::parse("hub1")?,
                fqdn: Domain::parse(HUB_FQDN)?,
                smtp_endpoint: "127.0.0.1:25".into(),
                certificates: vec![der],
            })),
            ChangeOp::Put(ReplicatedObject::TransportConfig(TransportConfig::default())),
            ChangeOp::Put(ReplicatedObject::SendConnector(SendConnector::new(
                "Internet",
                vec![AddressSpace::parse("*;100").map_err(anyhow::Error::msg)?],
            ))),
            ChangeOp::Put(ReplicatedObject::AcceptedDomain(AcceptedDomain {
                name: Domain::parse("adatum.com")?,
                kind: AcceptedDomainKind::Authoritative,
                delivery: Default::default(),
            })),
        ]))
        .await?;
    // Big initial contents go in batches: one transaction per batch (etcd
    // takes at most 128 operations in one).
    let mut ops = extra.into_iter().peekable();
    while ops.peek().is_some() {
        let batch: Vec<ChangeOp> = ops.by_ref().take(100).collect();
        store.apply(write(batch)).await?;
    }
    let manager = SyncManager::with_leases(
        store.clone(),
        certs,
        "hub1",
        HUB_FQDN,
        Arc::new(|_: &str| {}),
        leases,
    );
    Ok(Hub {
        store,
        manager,
        _etcd: etcd,
    })
}

struct Edge {
    name: String,
    replica: Replica,
    endpoint: String,
    thumbprint: Thumbprint,
    secret: String,
    dir: PathBuf,
}

async fn start_edge(root: &Path, name: &str) -> anyhow::Result<Edge> {
    let dir = root.join(name);
    let db = sled::open(&dir).with_context(|| format!("sled {}", dir.display()))?;
    let fqdn = format!("{name}.bench.test");
    let (certs, der) = cert_store(&db, &fqdn)?;
    let replica = Replica::open(&db)?;
    let bootstrap = BootstrapStore::open(&db)?;
    let secret = format!("secret-{name}");
    bootstrap.issue(&secret, "2999-01-01T00:00:00Z")?;
    let trust = TrustStore::new([], &[]);
    follow_hub_trust(replica.clone(), trust.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = listener.local_addr()?.to_string();
    let incoming = postern_edgesync::channel::tls_incoming(listener, certs, &fqdn, &trust, &bootstrap);
    let service = EdgeSyncService::new(name, replica.clone(), bootstrap);
    let edge_name = name.to_owned();
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(postern_edgesync::gate::edge_sync_server(service))
            .serve_with_incoming(incoming)
            .await
        {
            eprintln!("edge {edge_name}: server stopped: {e}");
        }
    });
    Ok(Edge {
        name: name.to_owned(),
        replica,
        endpoint,
        thumbprint: Thumbprint::of_der(&der),
        secret,
        dir,
    })
}

fn subscribe(hub: &Hub, edge: &Edge) {
    hub.manager.start(EdgeTarget {
        name: edge.name.clone(),
        endpoint: edge.endpoint.clone(),
        thumbprint: edge.thumbprint,
        bootstrap_secret: Some(edge.secret.clone()),
    });
}

/// Adds the hub's last error per edge (why a sync did not arrive).
fn with_hub_errors(e: anyhow::Error, hub: &Hub) -> anyhow::Error {
    let errors: Vec<String> = hub
        .manager
        .statuses()
        .into_iter()
        .filter_map(|s| s.last_error.map(|err| format!("{}: {err}", s.edge)))
        .take(5)
        .collect();
    if errors.is_empty() {
        e
    } else {
        e.context(format!("hub reports: {}", errors.join("; ")))
    }
}

/// Forwards every version an edge announces, with the instant it was seen.
fn forward_versions(index: usize, edge: &Edge, tx: mpsc::UnboundedSender<(usize, u64, Instant)>) {
    let mut rx = edge.replica.watch();
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let at = Instant::now();
            let version = rx.borrow_and_update().version.0;
            if tx.send((index, version, at)).is_err() {
                return;
            }
        }
    });
}

/// Waits until every edge in `have` reports `target`; returns the instant
/// the last one did.
async fn wait_all(
    rx: &mut mpsc::UnboundedReceiver<(usize, u64, Instant)>,
    have: &mut [u64],
    target: u64,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let mut pending = have.iter().filter(|&&h| h < target).count();
    let mut last = Instant::now();
    let deadline = tokio::time::Instant::now() + timeout;
    while pending > 0 {
        let (edge, version, at) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "version {target}: {pending} edge(s) still behind after {}s",
                    timeout.as_secs()
                )
            })?
            .context("version channel closed")?;
        if have[edge] < target && version >= target {
            pending -= 1;
            last = at;
        }
        have[edge] = have[edge].max(version);
    }
    Ok(last)
}

// ---------------------------------------------------------------- propagation

fn change(i: u64) -> anyhow::Result<ChangeOp> {
    Ok(if i.is_multiple_of(2) {
        let mut c = SendConnector::new(
            "Bench",
            vec![AddressSpace::parse("*.bench.example;10").map_err(anyhow::Error::msg)?],
        );
        c.port = 1024 + (i % 60000) as u16;
        ChangeOp::Put(ReplicatedObject::SendConnector(c))
    } else {
        ChangeOp::Put(ReplicatedObject::AcceptedDomain(AcceptedDomain {
            name: Domain::parse(&format!("d{}.bench.example", i % 100))?,
            kind: if i % 4 == 1 {
                AcceptedDomainKind::InternalRelay
            } else {
                AcceptedDomainKind::Authoritative
            },
            delivery: Default::default(),
        }))
    })
}

async fn propagation(args: &Args, root: &Path, n: usize, threads: usize) -> anyhow::Result<()> {
    let root = root.join(format!("propagation-{n}"));
    std::fs::create_dir_all(&root)?;
    let timeout = Duration::from_secs(args.timeout);
    let hub = start_hub(&root, vec![], args.etcd_members).await?;
    let setup = Instant::now();
    let mut edges = Vec::with_capacity(n);
    for i in 0..n {
        edges.push(start_edge(&root, &format!("edge{:03}", i + 1)).await?);
    }
    let edges_started = setup.elapsed();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (i, edge) in edges.iter().enumerate() {
        forward_versions(i, edge, tx.clone());
    }
    drop(tx);
    let mut have = vec![0u64; n];
    let subscribed = Instant::now();
    for edge in &edges {
        subscribe(&hub, edge);
    }
    let v0 = hub.store.version().0;
    wait_all(&mut rx, &mut have, v0, timeout.max(Duration::from_secs(120)))
        .await
        .map_err(|e| with_hub_errors(e, &hub))?;
    let initial = subscribed.elapsed();
    eprintln!(
        "{n} edge(s) started in {:.2}s; initial snapshot (version {v0}) everywhere after {:.2}s",
        edges_started.as_secs_f64(),
        initial.as_secs_f64()
    );

    let mut latencies = Vec::with_capacity(args.changes as usize);
    let mut commits = Vec::with_capacity(args.changes as usize);
    let mut measured_start = Instant::now();
    for i in 1..=(args.warmup + args.changes) {
        if i == args.warmup + 1 {
            measured_start = Instant::now();
        }
        let op = change(i)?;
        let t0 = Instant::now();
        let version = hub.store.apply(write(vec![op])).await?.0;
        let committed = Instant::now();
        let done = wait_all(&mut rx, &mut have, version, timeout)
            .await
            .map_err(|e| with_hub_errors(e, &hub))?;
        if i > args.warmup {
            latencies.push(done.saturating_duration_since(t0));
            commits.push(committed - t0);
        }
    }
    let elapsed = measured_start.elapsed();
    let last = hub.store.version().0;

    // The acks reached the hub: every subscription shows the last version.
    let deadline = Instant::now() + timeout;
    loop {
        let statuses = hub.manager.statuses();
        let behind = statuses.iter().filter(|s| s.edge_version < last).count();
        if statuses.len() == n && behind == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{behind} edge(s) never acked version {last} at the hub");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let snapshots: u64 = hub.manager.statuses().iter().map(|s| s.snapshots_sent).sum();
    if snapshots != n as u64 {
        bail!("{snapshots} snapshots sent to {n} edges: some edge resynchronised");
    }

    let lat = percentiles(&mut latencies);
    let com = percentiles(&mut commits);
    let per_sec = args.changes as f64 / elapsed.as_secs_f64();
    eprintln!(
        "edges={n} changes={} (+{} warm-up) threads={threads}: commit→all edges p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms; hub commit p50 {:.2} ms, p99 {:.2} ms; {:.1} changes/s",
        args.changes, args.warmup, lat.p50, lat.p99, lat.max, lat.mean, com.p50, com.p99, per_sec
    );
    println!(
        "{}",
        serde_json::json!({
            "run": "propagation",
            "store": if args.etcd_members.is_some() { "etcd" } else { "sled" },
            "edges": n,
            "changes": args.changes,
            "warmup": args.warmup,
            "worker_threads": threads,
            "dir": root.display().to_string(),
            "edges_started_secs": edges_started.as_secs_f64(),
            "initial_snapshot_all_secs": initial.as_secs_f64(),
            "p50_ms": lat.p50,
            "p99_ms": lat.p99,
            "max_ms": lat.max,
            "mean_ms": lat.mean,
            "hub_commit_p50_ms": com.p50,
            "hub_commit_p99_ms": com.p99,
            "changes_per_sec": per_sec,
            "final_version": last,
        })
    );
    for edge in &edges {
        hub.manager.stop(&edge.name);
    }
    Ok(())
}

// ---------------------------------------------------------------- snapshot

/// Default limit of a decoded gRPC message in tonic (the edge's server keeps it).
const TONIC_DEFAULT_MAX_DECODE: usize = 4 * 1024 * 1024;

async fn snapshot(args: &Args, root: &Path, k: usize, threads: usize) -> anyhow::Result<()> {
    let root = root.join(format!("snapshot-{k}"));
    std::fs::create_dir_all(&root)?;
    let timeout = Duration::from_secs(args.timeout);
    let mailboxes: Vec<ChangeOp> = (0..k)
        .map(|i| {
            ChangeOp::Put(ReplicatedObject::Mailbox(MailboxEntry::new(
                &format!("user{i}@adatum.com"),
                None,
            )))
        })
        .collect();
    let loading = Instant::now();
    let hub = start_hub(&root, mailboxes, args.etcd_members).await?;
    let load_secs = loading.elapsed().as_secs_f64();
    let version = hub.store.version();

    // The payload exactly as hub_side builds it: serde_json per object.
    let read = Instant::now();
    let (snap_version, objects) = hub.store.snapshot()?;
    let read_secs = read.elapsed().as_secs_f64();
    let encoded: Vec<Vec<u8>> = objects.iter().map(serde_json::to_vec).collect::<Result<_, _>>()?;
    let json_bytes: usize = encoded.iter().map(Vec::len).sum();
    let message = pb::HubMessage {
        body: Some(pb::hub_message::Body::Snapshot(pb::Snapshot {
            store_id: hub.store.store_id(),
            version: snap_version.0,
            objects: encoded,
        })),
    };
    let proto_bytes = message.encoded_len();
    // gRPC length-prefixed message: 1 flag byte + 4 length bytes (no compression).
    let grpc_bytes = proto_bytes + 5;
    if grpc_bytes > TONIC_DEFAULT_MAX_DECODE {
        eprintln!(
            "warning: the snapshot ({grpc_bytes} bytes) exceeds tonic's default 4 MiB decode limit; the edge will refuse it"
        );
    }

    let mut times = Vec::with_capacity(args.snapshot_repeats);
    for r in 0..args.snapshot_repeats.max(1) {
        let edge = start_edge(&root, &format!("fresh{r}")).await?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        forward_versions(0, &edge, tx);
        let mut have = [0u64];
        let t0 = Instant::now();
        subscribe(&hub, &edge);
        let done = wait_all(&mut rx, &mut have, version.0, timeout)
            .await
            .map_err(|e| with_hub_errors(e, &hub))?;
        let secs = done.saturating_duration_since(t0).as_secs_f64();
        let applied = edge.replica.applied();
        if applied.version != version || applied.snapshots != 1 {
            bail!(
                "edge {} applied {:?}, expected one snapshot of {version:?}",
                edge.name,
                applied
            );
        }
        let objects_on_edge = edge.replica.all()?.len();
        if objects_on_edge != objects.len() {
            bail!("edge has {objects_on_edge} objects, hub {}", objects.len());
        }
        hub.manager.stop(&edge.name);
        let disk = dir_size(&edge.dir);
        eprintln!(
            "snapshot {}: {k} mailboxes ({} objects) applied on a fresh edge in {:.1} ms; edge sled dir {:.1} MiB",
            r + 1,
            objects.len(),
            secs * 1000.0,
            disk as f64 / 1048576.0
        );
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    eprintln!(
        "snapshot: {k} mailboxes, {} objects: JSON payload {json_bytes} B, protobuf message {proto_bytes} B, gRPC frame {grpc_bytes} B ({:.1}% of tonic's 4 MiB limit); hub load {load_secs:.2}s, hub snapshot read {:.1} ms; start→applied median {:.1} ms of {:?}",
        objects.len(),
        grpc_bytes as f64 * 100.0 / TONIC_DEFAULT_MAX_DECODE as f64,
        read_secs * 1000.0,
        median * 1000.0,
        times
            .iter()
            .map(|t| (t * 10000.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    println!(
        "{}",
        serde_json::json!({
            "run": "snapshot",
            "mailboxes": k,
            "objects": objects.len(),
            "worker_threads": threads,
            "json_payload_bytes": json_bytes,
            "protobuf_bytes": proto_bytes,
            "grpc_frame_bytes": grpc_bytes,
            "hub_load_secs": load_secs,
            "hub_snapshot_read_ms": read_secs * 1000.0,
            "start_to_applied_ms": times.iter().map(|t| t * 1000.0).collect::<Vec<_>>(),
            "start_to_applied_median_ms": median * 1000.0,
        })
    );
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

// ---------------------------------------------------------------- stats

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

/// Nearest-rank percentiles in milliseconds (as `postern-bench` computes them).
fn percentiles(samples: &mut [Duration]) -> Stats {
    if samples.is_empty() {
        return Stats {
            p50: 0.0,
            p99: 0.0,
            max: 0.0,
            mean: 0.0,
        };
    }
    samples.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| {
        let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        ms(samples[rank.clamp(1, samples.len()) - 1])
    };
    Stats {
        p50: at(50.0),
        p99: at(99.0),
        max: at(100.0),
        mean: samples.iter().map(|d| ms(*d)).sum::<f64>() / samples.len() as f64,
    }
}
