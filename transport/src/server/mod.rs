//! The SMTP server's I/O: receive connectors that listen, accept and run
//! one task per connection, driving the sans-IO [`Session`](crate::smtp::Session)
//! over TCP and, after STARTTLS, TLS. Messages are made durable in the
//! [`Queue`] before the client hears 250.
//!
//! * [`config`] — [`ReceiveConnectorConfig`], the connector as data;
//! * `connection` — one client: reading, pipelining, STARTTLS, DATA, queuing;
//! * [`recipients`] — RCPT acceptance through the [`Router`];
//! * [`received`] — the `Received:` trace field;
//! * [`firewall`] — the header firewall for `X-Postern-Organization-*`;
//! * [`record`] — what a session learnt, for logs and counters.
//!
//! Build, then serve: [`ReceiveConnector::bind`] binds (port 0 in tests,
//! [`ReceiveConnector::local_addr`] to learn it), [`ReceiveConnector::serve`]
//! accepts until its shutdown future completes, then tells idle sessions
//! 421 4.3.2 and waits for the others to finish.

pub(crate) mod admission;
pub mod config;
mod connection;
pub mod firewall;
mod incoming;
mod judging;
pub mod received;
pub mod recipients;
pub mod record;
mod stream;

#[cfg(test)]
mod tests;

pub use config::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_DATA_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_LINE_TIMEOUT,
    DEFAULT_MIN_DATA_RATE, ReceiveConnectorConfig,
};
pub use firewall::{Firewall, HeaderError, ORG_HEADER_PREFIX, strip_org_headers};
pub use incoming::SPOOL_ABOVE;
pub use received::ReceivedStamp;
pub use recipients::{RouteBook, RoutingPolicy, SharedOrigin};
pub use record::{ConnectionInfo, SessionEnd, SessionId, SessionRecord};

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postern_model::Domain;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::certs::CertStore;
use crate::metrics::Metrics;
use crate::protocol_log::ProtocolLog;
use crate::queue::Queue;
use crate::routing::Router;
use crate::smtp::{Mailbox, Reply};
use crate::tls::{Encryption, ServerCertResolver, TrustStore, server_config};

/// What every connector of a node shares: the node's name, its queue,
/// certificates, trust, routing, metrics and receive protocol log.
#[derive(Clone)]
pub struct ServerContext {
    /// The node's FQDN (`<Postmaster>` is postmaster@ this name).
    pub node_fqdn: Domain,
    /// Where accepted mail goes.
    pub queue: Queue,
    /// The node's certificates (STARTTLS picks from them per handshake).
    pub certs: CertStore,
    /// The live trust store (client certificates are judged against it).
    pub trust: TrustStore,
    /// Chooses next hops at RCPT.
    pub router: Arc<dyn Router>,
    /// The node's counters: sessions, TLS handshakes, messages, bytes and
    /// the queue length.
    pub metrics: Arc<Metrics>,
    /// The node's receive protocol log (`DATA_DIR/logs/protocol/receive`);
    /// connectors at level `Verbose` write to it. `None`: nothing is logged.
    pub receive_log: Option<Arc<ProtocolLog>>,
    /// DKIM signing (hubs) and SPF/DKIM/DMARC/ARC checks (edges) of
    /// mail that does not come from a node of the organisation.
    pub message_auth: crate::auth::MessageAuth,
    /// Where message data is streamed as it arrives (`DATA_DIR/spool`);
    /// `None`: each message is held in memory until the final dot.
    pub spool_dir: Option<std::path::PathBuf>,
}

impl fmt::Debug for ServerContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerContext")
            .field("node_fqdn", &self.node_fqdn)
            .field("receive_log", &self.receive_log)
            .finish_non_exhaustive()
    }
}

/// Why a receive connector could not start; the operator must act.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is in use, not local, or needs privileges.
    #[error("receive connector {connector:?} cannot listen on {addr}: {source}")]
    Bind {
        /// The connector.
        connector: String,
        /// The address it was configured with.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The node FQDN does not make a postmaster address.
    #[error("node FQDN {0:?} does not make a valid postmaster address")]
    NodeFqdn(String),
}

/// Called with the record of every session that ends.
pub type SessionObserver = Arc<dyn Fn(SessionRecord) + Send + Sync>;

/// What all connections of one connector share.
pub(crate) struct Shared {
    pub(crate) config: ReceiveConnectorConfig,
    pub(crate) ctx: ServerContext,
    pub(crate) tls: Arc<rustls::ServerConfig>,
    pub(crate) postmaster: Mailbox,
    /// `<node fqdn>\<connector name>`, the protocol log's connector id.
    pub(crate) connector_id: Arc<str>,
    resolver: ServerCertResolver,
    /// The last STARTTLS availability seen, so a change is logged once.
    starttls_missing: AtomicBool,
    observer: Option<SessionObserver>,
}

impl Shared {
    /// Whether STARTTLS can be offered now: configured, and a certificate
    /// enabled for SMTP names the connector FQDN. Losing (or regaining)
    /// it is logged loudly once, never silently.
    pub(crate) fn starttls_available(&self) -> bool {
        if self.config.tls.encryption == Encryption::DangerNever {
            return false;
        }
        let available = self.resolver.for_connector().is_some();
        let was_missing = self.starttls_missing.swap(!available, Ordering::AcqRel);
        if !available && !was_missing {
            tracing::warn!(
                connector = %self.config.name,
                fqdn = %self.config.fqdn,
                require_tls = self.config.tls.encryption == Encryption::Required,
                "STARTTLS is not offered: no valid certificate enabled for SMTP (with its private key) names {}; \
                 enable one with `postern cert enable --services smtp`{}",
                self.config.fqdn,
                if self.config.tls.encryption == Encryption::Required {
                    " — until then require_tls refuses all mail on this connector"
                } else {
                    ""
                }
            );
        } else if available && was_missing {
            tracing::info!(connector = %self.config.name, fqdn = %self.config.fqdn, "a certificate for the connector FQDN is available; STARTTLS is offered again");
        }
        available
    }

    pub(crate) fn finished(&self, record: SessionRecord) {
        if let Some(observer) = &self.observer {
            observer(record);
        }
    }
}

/// A bound receive connector, ready to serve.
pub struct ReceiveConnector {
    listener: TcpListener,
    /// A second descriptor of the listening socket: a successor on the same
    /// binding takes it over, so a reload never closes the port.
    spare: std::net::TcpListener,
    local_addr: SocketAddr,
    shared: Shared,
    /// Connections in progress, in all and per source; a successor on the
    /// same binding takes them over with the socket.
    admission: admission::Admission,
}

impl fmt::Debug for ReceiveConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiveConnector")
            .field("name", &self.shared.config.name)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ReceiveConnector {
    /// Binds the connector's address and prepares its TLS configuration.
    /// Logs at warn when STARTTLS is configured but cannot be offered.
    pub async fn bind(config: ReceiveConnectorConfig, ctx: ServerContext) -> Result<Self, ServerError> {
        let bind_error = |source| ServerError::Bind {
            connector: config.name.clone(),
            addr: config.bind,
            source,
        };
        let listener = TcpListener::bind(config.bind).await.map_err(bind_error)?;
        let listener = listener.into_std().map_err(bind_error)?;
        Self::with_listener(listener, config, ctx)
    }

    /// Serves `config` on a socket that is already listening (a successor
    /// on an unchanged binding, see [`ReceiveConnector::share_listener`]).
    /// Needs a tokio runtime.
    pub fn with_listener(
        listener: std::net::TcpListener,
        config: ReceiveConnectorConfig,
        ctx: ServerContext,
    ) -> Result<Self, ServerError> {
        let bind_error = |source| ServerError::Bind {
            connector: config.name.clone(),
            addr: config.bind,
            source,
        };
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let spare = listener.try_clone().map_err(bind_error)?;
        let listener = TcpListener::from_std(listener).map_err(bind_error)?;
        let postmaster = Mailbox::parse(&format!("postmaster@{}", ctx.node_fqdn))
            .map_err(|_| ServerError::NodeFqdn(ctx.node_fqdn.to_string()))?;
        let resolver = ServerCertResolver::new(ctx.certs.clone(), config.fqdn.as_str());
        let tls = server_config(resolver.clone(), &ctx.trust, &config.tls);
        let connector_id = Arc::from(format!("{}\\{}", ctx.node_fqdn, config.name));
        let shared = Shared {
            config,
            ctx,
            tls,
            postmaster,
            connector_id,
            resolver,
            starttls_missing: AtomicBool::new(false),
            observer: None,
        };
        shared.starttls_available();
        tracing::info!(connector = %shared.config.name, %local_addr, fqdn = %shared.config.fqdn, "receive connector listening");
        Ok(Self {
            listener,
            spare,
            local_addr,
            shared,
            admission: admission::Admission::default(),
        })
    }

    /// Another descriptor of the listening socket, for a successor on the
    /// same binding: the port stays open while one connector hands over to
    /// the next.
    pub fn share_listener(&self) -> io::Result<std::net::TcpListener> {
        self.spare.try_clone()
    }

    /// The connection counts of this connector (shared, not copied).
    pub(crate) fn admission(&self) -> admission::Admission {
        self.admission.clone()
    }

    /// Counts connections together with `predecessor`'s: sessions still
    /// running on the connector this one replaces keep their places, so a
    /// reload does not reset the limits.
    pub(crate) fn with_admission(mut self, predecessor: admission::Admission) -> Self {
        self.admission = predecessor;
        self
    }

    /// The connector's configuration.
    pub fn config(&self) -> &ReceiveConnectorConfig {
        &self.shared.config
    }

    /// The address actually bound (learns the port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Calls `observer` with the record of every session when it ends
    /// (protocol log, counters, tests).
    pub fn on_session_end(mut self, observer: impl Fn(SessionRecord) + Send + Sync + 'static) -> Self {
        self.shared.observer = Some(Arc::new(observer));
        self
    }

    /// Accepts connections, one task each, until `shutdown` completes;
    /// then stops accepting, answers idle sessions 421 4.3.2, lets
    /// sessions in a transaction finish it, and returns when all are done.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let shared = Arc::new(self.shared);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut sessions = JoinSet::new();
        let admission = self.admission;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, remote)) if !shared.config.allows(remote.ip()) => {
                        tracing::info!(connector = %shared.config.name, %remote, "connection from outside the connector's remote IP ranges refused");
                        tokio::spawn(say_and_close(tcp, b"554 5.7.1 Your address may not use this connector\r\n".to_vec()));
                    }
                    Ok((tcp, remote)) => match admission.admit(&shared.config, remote.ip()) {
                        Some(ticket) => {
                            let shared = Arc::clone(&shared);
                            let stop = stop_rx.clone();
                            sessions.spawn(connection::run(tcp, remote, self.local_addr, shared, stop, ticket));
                        }
                        None => {
                            tracing::debug!(connector = %shared.config.name, %remote, "connection limit reached; 421 4.3.2");
                            let busy = Reply::too_many_connections(shared.config.fqdn.as_str());
                            tokio::spawn(say_and_close(tcp, busy.to_bytes()));
                        }
                    },
                    Err(error) => {
                        // Out of descriptors, typically: back off a little
                        // rather than spin.
                        tracing::warn!(connector = %shared.config.name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = sessions.join_next(), if !sessions.is_empty() => log_join(done),
            }
        }
        drop(self.listener);
        drop(self.spare);
        tracing::info!(connector = %shared.config.name, sessions = sessions.len(), "receive connector stopping");
        // No receiver left only means no session is running.
        let _ = stop_tx.send(true);
        while let Some(done) = sessions.join_next().await {
            log_join(done);
        }
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!(%error, "an SMTP session task failed");
    }
}

/// Tells a refused client why (outside the remote IP ranges, or over a
/// connection limit), then closes; a client that does not read is not
/// waited for.
async fn say_and_close(mut tcp: tokio::net::TcpStream, reply: Vec<u8>) {
    use tokio::io::AsyncWriteExt;
    let say = async {
        let _ = tcp.write_all(&reply).await;
        let _ = tcp.shutdown().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), say).await;
}
