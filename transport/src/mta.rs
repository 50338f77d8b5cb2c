//! One node's mail engine, assembled: receive connectors feeding the
//! durable queue, the delivery worker draining it to Maildir or through the
//! SMTP client pool, and the metrics endpoint. The roles build an
//! `MtaConfig` from their configuration; tests and benchmarks build one by
//! hand.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::client::{ClientSettings, Connector, Pool};
use crate::delivery::{self, DeliveryContext, Maildir, Relay, WorkerConfig};
use crate::dns::{DnsConfig, shared_resolver};
use crate::http::routes::{Readiness, node_routes};
use crate::internet_tls::{DaneResolver, InternetTls, StsSource};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::node_config::NodeConfigCompiler;
use crate::protocol_log::{Direction, LogConfig, ProtocolLog};
use crate::queue::{Queue, QueueConfig, QueueError, RecipientOutcome, RelayOrigin};
use crate::routing::{Router, SmtpHop};
use crate::server::{ReceiveConnector, ReceiveConnectorConfig, ServerContext, ServerError};
use crate::tls::TrustStore;

/// What to run.
pub struct MtaConfig {
    /// Receive connectors to bind.
    pub receive: Vec<ReceiveConnectorConfig>,
    /// Routing for RCPT and delivery.
    pub router: Arc<dyn Router>,
    /// Queue timers.
    pub queue: QueueConfig,
    /// Delivery concurrency and retry scan.
    pub worker: WorkerConfig,
    /// SMTP client timeouts and connection reuse.
    pub client: ClientSettings,
    /// The node's HTTP endpoint (`/metrics`, `/healthz`, `/readyz`), if any.
    pub metrics_bind: Option<SocketAddr>,
    /// Name servers for hops routed by MX; the default is the system's.
    pub dns: DnsConfig,
    /// DKIM signing and inbound checks (none by default).
    pub message_auth: crate::auth::MessageAuth,
}

impl MtaConfig {
    /// Defaults for everything but connectors and routing.
    pub fn new(receive: Vec<ReceiveConnectorConfig>, router: Arc<dyn Router>) -> Self {
        Self {
            receive,
            router,
            queue: QueueConfig::default(),
            worker: WorkerConfig::default(),
            client: ClientSettings::default(),
            metrics_bind: None,
            dns: DnsConfig::default(),
            message_auth: Default::default(),
        }
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum MtaError {
    /// The queue could not be opened.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// A receive connector could not bind.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The metrics endpoint could not bind.
    #[error("metrics endpoint {0}: {1}")]
    Metrics(SocketAddr, std::io::Error),
}

/// A running engine.
pub struct Mta {
    receive: Vec<RunningConnector>,
    ctx: ServerContext,
    metrics_addr: Option<SocketAddr>,
    queue: Queue,
    metrics: Arc<Metrics>,
    ready: Readiness,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    internet: Arc<InternetTls>,
    reporter: Arc<TlsReporter>,
}

struct RunningConnector {
    config: ReceiveConnectorConfig,
    addr: SocketAddr,
    /// A descriptor of the listening socket, for a successor on the same
    /// binding.
    socket: std::net::TcpListener,
    /// Its connection counts, handed to a successor with the socket.
    admission: crate::server::admission::Admission,
    stop: watch::Sender<bool>,
}

/// Sends the node's TLS reports (RFC 8460): daily, and on demand from the
/// admin API.
pub struct TlsReporter {
    internet: Arc<InternetTls>,
    dns: Option<Arc<crate::dns::MxResolver>>,
    queue: Queue,
    router: Arc<dyn Router>,
    submitter: crate::internet_tls::rpt::Submitter,
}

impl TlsReporter {
    /// A reporter queueing into `queue` through `router`, finding `rua`
    /// addresses with `dns`.
    pub fn new(
        internet: Arc<InternetTls>,
        dns: Option<Arc<crate::dns::MxResolver>>,
        queue: Queue,
        router: Arc<dyn Router>,
        submitter: crate::internet_tls::rpt::Submitter,
    ) -> Self {
        Self {
            internet,
            dns,
            queue,
            router,
            submitter,
        }
    }

    /// The figures counted since the last run.
    pub fn counters(&self) -> &crate::internet_tls::TlsCounters {
        &self.internet.counters
    }

    /// Queues today's reports; returns how many.
    pub async fn run(&self) -> usize {
        let Some(dns) = &self.dns else {
            tracing::warn!("no DNS resolver: no TLS reports");
            return 0;
        };
        crate::internet_tls::rpt::send_reports(
            &self.internet.counters,
            dns,
            &self.queue,
            self.router.as_ref(),
            &self.submitter,
            std::time::SystemTime::now(),
        )
        .await
    }
}

/// Who signs a node's TLS reports: the organisation is the node's domain
/// (its FQDN without the first label), the contact its postmaster.
fn submitter(node: &Node) -> crate::internet_tls::rpt::Submitter {
    let fqdn = node.identity.fqdn.to_string();
    let org = fqdn
        .split_once('.')
        .map_or(fqdn.as_str(), |(_, rest)| rest)
        .to_owned();
    crate::internet_tls::rpt::Submitter {
        contact: format!("postmaster@{org}"),
        organization: org,
        host: fqdn,
    }
}

/// The node's DANE resolver and MTA-STS source as `dns` asks (each off
/// when it cannot be built, logged).
fn internet_tls(node: &Node, trust: &TrustStore, dns: &DnsConfig) -> InternetTls {
    let dane = dns.dane_trust_anchor.as_ref().and_then(|anchor| {
        DaneResolver::new(dns, anchor)
            .inspect_err(|e| tracing::error!(error = %e, "DANE is off: no DNSSEC resolver"))
            .ok()
    });
    let sts = dns.mta_sts_port.and_then(|port| {
        StsSource::new(dns, trust.clone(), &node.db, port)
            .inspect_err(|e| tracing::error!(error = %e, "MTA-STS is off"))
            .ok()
    });
    InternetTls {
        dane,
        sts,
        counters: Arc::default(),
    }
}

impl Relay for Pool {
    fn relay<'a>(
        &'a self,
        hop: &'a SmtpHop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
        origin: &'a RelayOrigin,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>> {
        self.relay_with(
            hop,
            sender,
            recipients,
            body,
            origin,
            crate::client::SendOptions::default(),
        )
    }

    fn relay_with<'a>(
        &'a self,
        hop: &'a SmtpHop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
        origin: &'a RelayOrigin,
        options: crate::client::SendOptions,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>> {
        Box::pin(async move {
            self.deliver_relayed(hop, sender, recipients, body, Some(origin), options)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn lmtp<'a>(
        &'a self,
        hop: &'a SmtpHop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>> {
        Box::pin(async move {
            self.deliver_lmtp(hop, sender, recipients, body)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// Removes spooled bodies whose message has left the queue, now and
/// every ten minutes.
fn sweep_spool(queue: Queue, dir: std::path::PathBuf) {
    tokio::spawn(async move {
        loop {
            let (q, d) = (queue.clone(), dir.clone());
            match tokio::task::spawn_blocking(move || crate::queue::spool::sweep(&q, &d)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(removed = n, "spooled bodies of delivered messages removed"),
                Ok(Err(error)) => tracing::warn!(%error, "cannot sweep the spool"),
                Err(error) => tracing::warn!(%error, "spool sweep task failed"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
    });
}

impl Mta {
    /// Opens the queue in the node's store, binds every connector and the
    /// metrics endpoint, and starts serving and delivering.
    pub async fn start(node: &Node, trust: TrustStore, config: MtaConfig) -> Result<Self, MtaError> {
        let queue = Queue::open(&node.db, config.queue)?;
        let metrics = Arc::new(Metrics::new());
        let ready = Readiness::new();
        crate::metrics::spawn_expiry_watch(node.certs.clone(), metrics.clone());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let receive_log = open_log(&node.data_dir, Direction::Receive);
        sweep_spool(queue.clone(), node.data_dir.join("spool"));
        let send_log = open_log(&node.data_dir, Direction::Send);
        let ctx = ServerContext {
            node_fqdn: node.identity.fqdn.clone(),
            queue: queue.clone(),
            certs: node.certs.clone(),
            trust: trust.clone(),
            router: config.router.clone(),
            metrics: metrics.clone(),
            receive_log,
            message_auth: config.message_auth,
            spool_dir: Some(node.data_dir.join("spool")),
        };
        let mut receive = Vec::new();
        for connector in config.receive {
            receive.push(start_connector(connector, &ctx, &mut tasks).await?);
        }
        let metrics_addr = match config.metrics_bind {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| MtaError::Metrics(addr, e))?;
                let local = listener.local_addr().map_err(|e| MtaError::Metrics(addr, e))?;
                tasks.spawn(crate::http::serve(
                    listener,
                    node_routes(metrics.clone(), ready.clone()),
                    stopped(stop_rx.clone()),
                    crate::http::LIMITS,
                ));
                Some(local)
            }
            None => None,
        };
        let trust_for_policies = trust.clone();
        let mut connector =
            Connector::new(node.certs.clone(), trust, config.client).with_metrics(metrics.clone());
        if let Some(log) = send_log {
            connector = connector.with_protocol_log(log);
        }
        // A node without a usable resolver still delivers locally and to
        // smart hosts; hops routed by MX are deferred (logged here).
        let dns = shared_resolver(&config.dns);
        if let Some(resolver) = &dns {
            connector = connector.with_resolver(resolver.clone());
        }
        let internet = Arc::new(internet_tls(node, &trust_for_policies, &config.dns));
        connector = connector.with_internet_tls(internet.clone());
        let pool = Pool::new(connector);
        let reaper = pool.spawn_reaper();
        let reporter = Arc::new(TlsReporter {
            internet: internet.clone(),
            dns: dns.clone(),
            queue: queue.clone(),
            router: config.router.clone(),
            submitter: submitter(node),
        });
        let daily = reporter.clone();
        let mut report_stop = stop_rx.clone();
        tasks.spawn(async move {
            let day = std::time::Duration::from_secs(24 * 3600);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(day) => { daily.run().await; }
                    _ = report_stop.changed() => break,
                }
            }
        });
        let delivery_ctx = DeliveryContext {
            queue: queue.clone(),
            router: config.router,
            maildir: Maildir::new(node.data_dir.join("mailboxes"), node.identity.fqdn.as_str()),
            relay: Arc::new(pool.clone()),
            dns,
            metrics: Some(metrics.clone()),
        };
        let worker_stop = stopped(stop_rx);
        tasks.spawn(async move {
            delivery::run(delivery_ctx, config.worker, worker_stop).await;
            pool.close_all().await;
            drop(reaper);
        });
        ready.set(true);
        Ok(Self {
            receive,
            ctx,
            metrics_addr,
            queue,
            metrics,
            ready,
            stop,
            tasks,
            internet,
            reporter,
        })
    }

    /// Brings the receive connectors to `configs` (a definition changed):
    /// a connector whose configuration is unchanged keeps running; one whose
    /// binding is unchanged hands its listening socket to its successor (the
    /// port never closes, sessions in progress finish under the settings
    /// they started with); removed ones stop accepting; new ones bind. A
    /// binding still held by a stopping connector is retried for a moment.
    pub async fn apply_connectors(&mut self, configs: Vec<ReceiveConnectorConfig>) -> Result<(), MtaError> {
        let mut running: Vec<RunningConnector> = self.receive.drain(..).collect();
        let mut wanted = Vec::new();
        for config in configs {
            if let Some(i) = running.iter().position(|r| r.config == config) {
                self.receive.push(running.swap_remove(i));
            } else {
                wanted.push(config);
            }
        }
        let mut fresh = Vec::new();
        for config in wanted {
            match running.iter().position(|r| r.config.bind == config.bind) {
                Some(i) => {
                    let old = running.swap_remove(i);
                    let socket = old.socket.try_clone().map_err(|source| ServerError::Bind {
                        connector: config.name.clone(),
                        addr: config.bind,
                        source,
                    })?;
                    let bound = ReceiveConnector::with_listener(socket, config, self.ctx.clone())?
                        .with_admission(old.admission.clone());
                    let _ = old.stop.send(true);
                    self.receive.push(spawn_connector(bound, &mut self.tasks)?);
                }
                None => fresh.push(config),
            }
        }
        for old in running {
            let _ = old.stop.send(true);
        }
        for config in fresh {
            let mut attempt = 0;
            loop {
                match start_connector(config.clone(), &self.ctx, &mut self.tasks).await {
                    Ok(running) => {
                        self.receive.push(running);
                        break;
                    }
                    Err(e) if attempt < 30 => {
                        attempt += 1;
                        tracing::debug!(error = %e, "binding still held; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The bound address of the receive connector called `name`.
    pub fn receive_addr(&self, name: &str) -> Option<SocketAddr> {
        self.receive
            .iter()
            .find(|c| c.config.name == name)
            .map(|c| c.addr)
    }

    /// Every receive connector and its bound address.
    pub fn receive_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.receive
            .iter()
            .map(|c| (c.config.name.clone(), c.addr))
            .collect()
    }

    /// Where metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The node's queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The node's DANE / MTA-STS machinery and TLS-RPT counters.
    pub fn internet_tls(&self) -> &Arc<InternetTls> {
        &self.internet
    }

    /// The node's TLS reporter.
    pub fn tls_reporter(&self) -> &Arc<TlsReporter> {
        &self.reporter
    }

    /// Whether the engine is ready (what `/readyz` reports).
    pub fn readiness(&self) -> &Readiness {
        &self.ready
    }

    /// Stops accepting, lets sessions and deliveries in flight finish, and
    /// returns when everything has stopped.
    pub async fn shutdown(mut self) {
        self.ready.set(false);
        let _ = self.stop.send(true);
        for c in &self.receive {
            let _ = c.stop.send(true);
        }
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn start_connector(
    config: ReceiveConnectorConfig,
    ctx: &ServerContext,
    tasks: &mut JoinSet<()>,
) -> Result<RunningConnector, MtaError> {
    let bound = ReceiveConnector::bind(config, ctx.clone()).await?;
    spawn_connector(bound, tasks)
}

fn spawn_connector(bound: ReceiveConnector, tasks: &mut JoinSet<()>) -> Result<RunningConnector, MtaError> {
    let config = bound.config().clone();
    let addr = bound.local_addr();
    let socket = bound.share_listener().map_err(|source| ServerError::Bind {
        connector: config.name.clone(),
        addr: config.bind,
        source,
    })?;
    let admission = bound.admission();
    let (stop, rx) = watch::channel(false);
    tasks.spawn(bound.serve(stopped(rx)));
    Ok(RunningConnector {
        config,
        addr,
        socket,
        admission,
        stop,
    })
}

/// Opens a protocol log under `DATA_DIR/logs/protocol/`; a node whose log
/// cannot be opened still carries mail (logged at error).
fn open_log(data_dir: &std::path::Path, direction: Direction) -> Option<Arc<ProtocolLog>> {
    match ProtocolLog::open_in_data_dir(data_dir, direction, LogConfig::default()) {
        Ok(log) => Some(log),
        Err(e) => {
            tracing::error!(error = %e, ?direction, "protocol log cannot be opened; connectors will not log");
            None
        }
    }
}

/// Completes when the stop flag is raised.
async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A node's mail engine kept in step with its receive connectors: every
/// change to a connector definition rebinds the connectors, without a
/// node restart. What the roles run.
#[derive(Clone)]
pub struct NodeMail {
    mta: Arc<tokio::sync::Mutex<Option<Mta>>>,
    metrics: Arc<Metrics>,
    queue: Queue,
    internet: Arc<InternetTls>,
    reporter: Arc<TlsReporter>,
    compiler: NodeConfigCompiler,
}

impl NodeMail {
    /// Starts the engine with the compiled configuration in force and
    /// follows every later snapshot: receive connectors are brought to it
    /// (unchanged bindings keep their sockets) and the queue takes its
    /// timers, without a node restart. `message_auth` signs (hubs) or
    /// judges (edges) mail from outside the organisation.
    pub async fn start(
        node: &Node,
        trust: TrustStore,
        router: Arc<dyn Router>,
        compiler: NodeConfigCompiler,
        metrics_bind: Option<SocketAddr>,
        dns: DnsConfig,
        message_auth: crate::auth::MessageAuth,
    ) -> Result<Self, MtaError> {
        let mut snapshots = compiler.subscribe();
        let current = snapshots.borrow_and_update().clone();
        let mut config = MtaConfig::new(current.receive.clone(), router);
        config.metrics_bind = metrics_bind;
        config.dns = dns;
        config.message_auth = message_auth;
        config.queue = current.queue.clone();
        let mta = Mta::start(node, trust, config).await?;
        let metrics = mta.metrics().clone();
        let queue = mta.queue().clone();
        let internet = mta.internet_tls().clone();
        let reporter = mta.tls_reporter().clone();
        let shared = Arc::new(tokio::sync::Mutex::new(Some(mta)));
        let follower = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut applied = current;
            while snapshots.changed().await.is_ok() {
                let snapshot = snapshots.borrow_and_update().clone();
                // Routing and trust read the snapshot themselves; a change
                // of theirs alone leaves the listeners and the queue be.
                if snapshot.receive == applied.receive && snapshot.queue == applied.queue {
                    tracing::debug!(
                        generation = snapshot.generation,
                        "configuration changed; listeners and queue unchanged"
                    );
                    continue;
                }
                let mut guard = follower.lock().await;
                let Some(mta) = guard.as_mut() else { break };
                // What failed is tried again at the next snapshot.
                let mut done = true;
                if let Err(e) = mta.queue.set_config(snapshot.queue.clone()) {
                    done = false;
                    tracing::error!(error = %e, "queue timers not applied; the previous ones stay in force");
                }
                match mta.apply_connectors(snapshot.receive.clone()).await {
                    Ok(()) => tracing::info!(generation = snapshot.generation, "configuration applied"),
                    Err(e) => {
                        done = false;
                        tracing::error!(error = %e, "receive connectors could not be rebound");
                    }
                }
                if done {
                    applied = Arc::clone(&snapshot);
                }
            }
        });
        Ok(Self {
            mta: shared,
            metrics,
            queue,
            internet,
            reporter,
            compiler,
        })
    }

    /// The node's TLS reporter (admin API).
    pub fn tls_reporter(&self) -> &Arc<TlsReporter> {
        &self.reporter
    }

    /// The node's DANE / MTA-STS machinery and TLS-RPT counters.
    pub fn internet_tls(&self) -> &Arc<InternetTls> {
        &self.internet
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The node's queue.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Every receive connector and its bound address.
    pub async fn receive_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.mta
            .lock()
            .await
            .as_ref()
            .map(Mta::receive_addrs)
            .unwrap_or_default()
    }

    /// Where the connector that takes organisation servers listens (what
    /// peers of the organisation are told), else the first connector.
    pub async fn organisation_addr(&self) -> Option<SocketAddr> {
        let org = self
            .compiler
            .current()
            .receive
            .iter()
            .find(|c| c.trusted_org)
            .map(|c| c.name.clone());
        let addrs = self.receive_addrs().await;
        addrs
            .iter()
            .find(|(name, _)| Some(name) == org.as_ref())
            .or(addrs.first())
            .map(|(_, a)| *a)
    }

    /// The node's compiled configuration (snapshot in force, status).
    pub fn compiler(&self) -> &NodeConfigCompiler {
        &self.compiler
    }

    /// Stops the engine (sessions and deliveries in flight finish).
    pub async fn shutdown(&self) {
        let taken = self.mta.lock().await.take();
        if let Some(mta) = taken {
            mta.shutdown().await;
        }
    }
}
