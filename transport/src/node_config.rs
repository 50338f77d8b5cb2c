//! The node's compiled configuration: everything the mail engine acts on —
//! the transport configuration, the receive connectors as server
//! configurations, the queue's timers — read from the node's sources once
//! per change, validated, and published as one [`NodeConfig`] snapshot on a
//! `watch` channel. The listeners and the queue follow the snapshot; none of
//! them reads the store.
//!
//! A source that cannot be read, or a configuration that does not compile,
//! keeps the last good snapshot in force: the failure is logged, counted
//! ([`CompileStatus`]) and shown by `node-info`, and no listener closes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_model::{Domain, ReceiveConnector, TransportConfig};
use tokio::sync::watch;

use crate::queue::QueueConfig;
use crate::receive_connectors::{ReceiveConnectorStore, server_configs};
use crate::server::ReceiveConnectorConfig;

/// Why the node's configuration could not be read or compiled. The last
/// good snapshot stays in force; the administrator (or the store) must act.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A source (store or replica) could not be read.
    #[error("cannot read {what}: {why}")]
    Read {
        /// Which source.
        what: &'static str,
        /// What the store said.
        why: String,
    },
    /// A receive connector's setting does not compile.
    #[error("receive connector {connector:?}: {why}")]
    Connector {
        /// The connector.
        connector: String,
        /// What is wrong.
        why: String,
    },
    /// The queue timers are not usable.
    #[error("queue timers: {0}")]
    Queue(String),
}

/// Where a node's configuration comes from: the hub's store or the edge's
/// replica (transport configuration) and the node's own receive connectors.
pub trait ConfigSources: Send + Sync + 'static {
    /// The organisation's transport configuration.
    fn transport_config(&self) -> Result<TransportConfig, CompileError>;
    /// The node's receive connectors.
    fn receive_connectors(&self) -> Result<Vec<ReceiveConnector>, CompileError>;
    /// Whose defaults a connector's unset limits take (an edge's, the
    /// strictest, unless the source knows better).
    fn role(&self) -> postern_model::NodeRole {
        postern_model::NodeRole::Edge
    }
}

/// The receive connectors of a node's store, with a transport
/// configuration read by the role: what hubs and edges compile from.
pub struct StoreSources<F> {
    /// The node's receive connectors.
    pub connectors: ReceiveConnectorStore,
    /// Reads the role's transport configuration.
    pub transport: F,
}

impl<F> ConfigSources for StoreSources<F>
where
    F: Fn() -> Result<TransportConfig, CompileError> + Send + Sync + 'static,
{
    fn transport_config(&self) -> Result<TransportConfig, CompileError> {
        (self.transport)()
    }

    fn receive_connectors(&self) -> Result<Vec<ReceiveConnector>, CompileError> {
        self.connectors.list().map_err(|e| CompileError::Read {
            what: "the receive connectors",
            why: e.to_string(),
        })
    }

    fn role(&self) -> postern_model::NodeRole {
        self.connectors.role()
    }
}

/// One compiled configuration of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Counts compiled snapshots since start (1 is the first).
    pub generation: u64,
    /// The organisation's transport configuration.
    pub transport: TransportConfig,
    /// Every binding of every receive connector.
    pub receive: Vec<ReceiveConnectorConfig>,
    /// The queue's timers; `reporting_mta` is the node's FQDN.
    pub queue: QueueConfig,
}

impl NodeConfig {
    /// Compiles the configuration of the node `fqdn` from `sources`.
    pub fn compile(
        fqdn: &Domain,
        sources: &dyn ConfigSources,
        generation: u64,
    ) -> Result<Self, CompileError> {
        let transport = sources.transport_config()?;
        let connectors = sources.receive_connectors()?;
        let mut receive = Vec::new();
        for connector in &connectors {
            receive.extend(
                server_configs(connector, sources.role(), fqdn, &transport).map_err(|why| {
                    CompileError::Connector {
                        connector: connector.name.clone(),
                        why,
                    }
                })?,
            );
        }
        let queue = QueueConfig {
            expiration: Duration::from_secs(transport.message_expiration_secs),
            delay_notice_after: Some(Duration::from_secs(transport.delay_notification_secs)),
            reporting_mta: fqdn.to_string(),
            ..QueueConfig::default()
        };
        queue.validate().map_err(|e| CompileError::Queue(e.to_string()))?;
        Ok(Self {
            generation,
            transport,
            receive,
            queue,
        })
    }
}

/// The compiler's state as `node-info` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileStatus {
    /// The generation in force.
    pub generation: u64,
    /// Compilations that failed since start.
    pub failures: u64,
    /// The last failure, while it is the latest outcome.
    pub last_error: Option<String>,
}

/// Compiles the node's configuration whenever a source changes and
/// publishes each good snapshot.
#[derive(Clone)]
pub struct NodeConfigCompiler {
    fqdn: Domain,
    sources: Arc<dyn ConfigSources>,
    tx: Arc<watch::Sender<Arc<NodeConfig>>>,
    status: Arc<Mutex<CompileStatus>>,
}

impl NodeConfigCompiler {
    /// Compiles the first snapshot; a node cannot start without one.
    pub fn start(fqdn: Domain, sources: Arc<dyn ConfigSources>) -> Result<Self, CompileError> {
        let first = NodeConfig::compile(&fqdn, sources.as_ref(), 1)?;
        let (tx, _) = watch::channel(Arc::new(first));
        Ok(Self {
            fqdn,
            sources,
            tx: Arc::new(tx),
            status: Arc::new(Mutex::new(CompileStatus {
                generation: 1,
                ..CompileStatus::default()
            })),
        })
    }

    /// The snapshot in force and its changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<NodeConfig>> {
        self.tx.subscribe()
    }

    /// The snapshot in force.
    pub fn current(&self) -> Arc<NodeConfig> {
        self.tx.borrow().clone()
    }

    /// Where compilation stands.
    pub fn status(&self) -> CompileStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Compiles again from the sources. A snapshot equal to the one in
    /// force is not republished; a failure keeps the one in force.
    pub fn recompile(&self) -> Result<(), CompileError> {
        let generation = self.current().generation + 1;
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match NodeConfig::compile(&self.fqdn, self.sources.as_ref(), generation) {
            Ok(next) => {
                status.last_error = None;
                self.tx.send_if_modified(|current| {
                    let same = current.transport == next.transport
                        && current.receive == next.receive
                        && current.queue == next.queue;
                    if !same {
                        status.generation = next.generation;
                        *current = Arc::new(next);
                    }
                    !same
                });
                Ok(())
            }
            Err(e) => {
                status.failures += 1;
                status.last_error = Some(e.to_string());
                tracing::error!(
                    error = %e,
                    generation = status.generation,
                    "the node's configuration does not compile; the last good configuration stays in force"
                );
                Err(e)
            }
        }
    }

    /// Recompiles whenever `rx` changes (a source's change feed), until
    /// its sender is gone. Call once per source.
    pub fn follow<T: Send + Sync + 'static>(&self, mut rx: watch::Receiver<T>) {
        let compiler = self.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                // A failure is logged and counted by recompile.
                let _ = compiler.recompile();
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use postern_model::{AuthMechanism, PermissionGroup, ProtocolLoggingLevel};

    use super::*;

    /// Sources whose reads can be made to fail.
    struct Flaky {
        fail: AtomicBool,
        transport: Mutex<TransportConfig>,
        connectors: Mutex<Vec<ReceiveConnector>>,
    }

    impl ConfigSources for Flaky {
        fn transport_config(&self) -> Result<TransportConfig, CompileError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(CompileError::Read {
                    what: "the transport configuration",
                    why: "I/O error: disk on fire".into(),
                });
            }
            Ok(self.transport.lock().unwrap().clone())
        }
        fn receive_connectors(&self) -> Result<Vec<ReceiveConnector>, CompileError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(CompileError::Read {
                    what: "the receive connectors",
                    why: "I/O error: disk on fire".into(),
                });
            }
            Ok(self.connectors.lock().unwrap().clone())
        }
    }

    fn connector(name: &str, bind: &str) -> ReceiveConnector {
        ReceiveConnector {
            name: name.into(),
            bindings: vec![bind.into()],
            remote_ip_ranges: Vec::new(),
            auth_mechanism: vec![AuthMechanism::Tls],
            permission_groups: vec![PermissionGroup::Anonymous],
            require_tls: false,
            domain_secure_enabled: false,
            fqdn: None,
            protocol_logging_level: ProtocolLoggingLevel::None,
            max_message_size: None,
            dmarc_enforcement: Default::default(),
            limits: postern_model::ReceiveLimits::default(),
        }
    }

    fn flaky() -> Arc<Flaky> {
        Arc::new(Flaky {
            fail: AtomicBool::new(false),
            transport: Mutex::new(TransportConfig::default()),
            connectors: Mutex::new(vec![connector("Internet", "127.0.0.1:0")]),
        })
    }

    #[tokio::test]
    async fn a_failing_store_keeps_the_last_good_snapshot() {
        let sources = flaky();
        let fqdn = Domain::parse("edge1.adatum.com").unwrap();
        let compiler = NodeConfigCompiler::start(fqdn, sources.clone()).unwrap();
        let rx = compiler.subscribe();
        assert_eq!(rx.borrow().receive.len(), 1);
        assert_eq!(rx.borrow().queue.reporting_mta, "edge1.adatum.com");

        sources.fail.store(true, Ordering::SeqCst);
        let error = compiler.recompile().unwrap_err();
        assert!(error.to_string().contains("disk on fire"), "{error}");
        // Still one connector: an unreadable store is not an empty list.
        assert_eq!(compiler.current().receive.len(), 1);
        assert!(!rx.has_changed().unwrap());
        let status = compiler.status();
        assert_eq!(status.failures, 1);
        assert!(status.last_error.unwrap().contains("disk on fire"));

        sources.fail.store(false, Ordering::SeqCst);
        sources.transport.lock().unwrap().max_message_size = 1024;
        compiler.recompile().unwrap();
        assert!(rx.has_changed().unwrap());
        let now = compiler.current();
        assert_eq!(now.receive[0].max_message_size, 1024);
        assert_eq!(now.generation, 2);
        assert_eq!(compiler.status().last_error, None);
    }

    #[tokio::test]
    async fn a_bad_binding_is_an_error_not_a_silent_drop() {
        let sources = flaky();
        let fqdn = Domain::parse("edge1.adatum.com").unwrap();
        let compiler = NodeConfigCompiler::start(fqdn, sources.clone()).unwrap();
        sources
            .connectors
            .lock()
            .unwrap()
            .push(connector("Broken", "not-an-address"));
        let error = compiler.recompile().unwrap_err();
        assert!(
            matches!(&error, CompileError::Connector { connector, .. } if connector == "Broken"),
            "{error}"
        );
        assert_eq!(compiler.current().receive.len(), 1);
    }

    #[tokio::test]
    async fn an_unchanged_compile_is_not_republished() {
        let sources = flaky();
        let fqdn = Domain::parse("hub1.adatum.com").unwrap();
        let compiler = NodeConfigCompiler::start(fqdn, sources).unwrap();
        let rx = compiler.subscribe();
        compiler.recompile().unwrap();
        assert!(!rx.has_changed().unwrap());
        assert_eq!(compiler.current().generation, 1);
    }

    #[tokio::test]
    async fn queue_timers_follow_the_transport_config() {
        let sources = flaky();
        {
            let mut t = sources.transport.lock().unwrap();
            t.message_expiration_secs = 600;
            t.delay_notification_secs = 60;
        }
        let fqdn = Domain::parse("hub1.adatum.com").unwrap();
        let compiler = NodeConfigCompiler::start(fqdn, sources).unwrap();
        let queue = compiler.current().queue.clone();
        assert_eq!(queue.expiration, Duration::from_secs(600));
        assert_eq!(queue.delay_notice_after, Some(Duration::from_secs(60)));
        assert_eq!(queue.reporting_mta, "hub1.adatum.com");
    }
}
