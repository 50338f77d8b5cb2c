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
use crate::metrics::{Metrics, serve_metrics};
use crate::node::Node;
use crate::protocol_log::{Direction, LogConfig, ProtocolLog};
use crate::queue::{Queue, QueueConfig, QueueError, RecipientOutcome};
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
    /// Prometheus endpoint, if any.
    pub metrics_bind: Option<SocketAddr>,
    /// Name servers for hops routed by MX; the default is the system's.
    pub dns: DnsConfig,
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
    receive: Vec<(String, SocketAddr)>,
    metrics_addr: Option<SocketAddr>,
    queue: Queue,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Relay for Pool {
    fn relay<'a>(
        &'a self,
        hop: &'a SmtpHop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>> {
        Box::pin(async move {
            self.deliver(hop, sender, recipients, body)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

impl Mta {
    /// Opens the queue in the node's store, binds every connector and the
    /// metrics endpoint, and starts serving and delivering.
    pub async fn start(node: &Node, trust: TrustStore, config: MtaConfig) -> Result<Self, MtaError> {
        let queue = Queue::open(&node.db, config.queue)?;
        let metrics = Arc::new(Metrics::new());
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let receive_log = open_log(&node.data_dir, Direction::Receive);
        let send_log = open_log(&node.data_dir, Direction::Send);
        let ctx = ServerContext {
            node_fqdn: node.identity.fqdn.clone(),
            queue: queue.clone(),
            certs: node.certs.clone(),
            trust: trust.clone(),
            router: config.router.clone(),
            metrics: metrics.clone(),
            receive_log,
        };
        let mut receive = Vec::new();
        for connector in config.receive {
            let name = connector.name.clone();
            let bound = ReceiveConnector::bind(connector, ctx.clone()).await?;
            receive.push((name, bound.local_addr()));
            tasks.spawn(bound.serve(stopped(stop_rx.clone())));
        }
        let metrics_addr = match config.metrics_bind {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| MtaError::Metrics(addr, e))?;
                let local = listener.local_addr().map_err(|e| MtaError::Metrics(addr, e))?;
                tasks.spawn(serve_metrics(listener, metrics.clone(), stopped(stop_rx.clone())));
                Some(local)
            }
            None => None,
        };
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
        let pool = Pool::new(connector);
        let reaper = pool.spawn_reaper();
        let delivery_ctx = DeliveryContext {
            queue: queue.clone(),
            router: config.router,
            maildir: Maildir::new(node.data_dir.join("mailboxes"), node.identity.fqdn.as_str()),
            relay: Arc::new(pool.clone()),
            dns,
        };
        let worker_stop = stopped(stop_rx);
        tasks.spawn(async move {
            delivery::run(delivery_ctx, config.worker, worker_stop).await;
            pool.close_all().await;
            drop(reaper);
        });
        Ok(Self {
            receive,
            metrics_addr,
            queue,
            metrics,
            stop,
            tasks,
        })
    }

    /// The bound address of the receive connector called `name`.
    pub fn receive_addr(&self, name: &str) -> Option<SocketAddr> {
        self.receive.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Every receive connector and its bound address.
    pub fn receive_addrs(&self) -> &[(String, SocketAddr)] {
        &self.receive
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

    /// Stops accepting, lets sessions and deliveries in flight finish, and
    /// returns when everything has stopped.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
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
