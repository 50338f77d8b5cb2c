//! The node's compiled configuration: everything the mail engine acts on —
//! the transport configuration, the receive connectors as server
//! configurations, the queue's timers, the accepted domains, send
//! connectors and nodes of the organisation, its mailboxes and the trust
//! anchors — read from the node's sources once per change, validated, and
//! published as one [`NodeConfig`] snapshot on a `watch` channel. The
//! listeners, the queue, the routers (and through them the delivery
//! worker) and the trust store follow the snapshot; none of them reads the
//! store.
//!
//! A source that cannot be read, or a configuration that does not compile,
//! keeps the last good snapshot in force: the failure is logged, counted
//! ([`CompileStatus`]) and shown by `node-info`, and no listener closes.

mod organisation;
mod trust;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_model::{Domain, ObjectKind, ReceiveConnector, ReplicatedObject, Thumbprint, TransportConfig};
use tokio::sync::watch;

use organisation::reuse;
pub use organisation::{EdgeNode, HubNode, MailboxIndex, Organisation, TrustAnchors};
pub use trust::{apply_trust, follow_trust};

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
/// replica (transport configuration, replicated objects) and the node's own
/// receive connectors.
pub trait ConfigSources: Send + Sync + 'static {
    /// The organisation's transport configuration.
    fn transport_config(&self) -> Result<TransportConfig, CompileError>;
    /// The node's receive connectors.
    fn receive_connectors(&self) -> Result<Vec<ReceiveConnector>, CompileError>;
    /// Every replicated object of `kind` (`accepted-domain`, `mailbox`, …).
    fn objects(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, CompileError>;
    /// Certificates the node trusts directly besides the hubs' published
    /// ones (a hub: its subscribed edges'; an edge: none).
    fn pinned_peers(&self) -> Result<Vec<Thumbprint>, CompileError>;
    /// Whose defaults a connector's unset limits take (an edge's, the
    /// strictest, unless the source knows better).
    fn role(&self) -> postern_model::NodeRole {
        postern_model::NodeRole::Edge
    }
}

/// The organisation's objects as a role reads them, and when they change:
/// the hub from its authoritative store, the edge from its replica.
pub trait OrganisationSource: Send + Sync + 'static {
    /// What the change feed carries (a version, what was applied).
    type Version: Send + Sync + 'static;
    /// A receiver woken at every change of the objects (a version
    /// committed to the store, applied to the replica).
    fn watch(&self) -> watch::Receiver<Self::Version>;
    /// The organisation's transport configuration.
    fn transport_config(&self) -> Result<TransportConfig, CompileError>;
    /// Every replicated object of `kind`.
    fn objects(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, CompileError>;
    /// Certificates trusted directly besides the hubs' published ones.
    fn pinned_peers(&self) -> Result<Vec<Thumbprint>, CompileError>;
}

/// The receive connectors of a node's store, with the organisation's
/// objects read by the role: what hubs and edges compile from.
pub struct StoreSources<S> {
    /// The node's receive connectors.
    pub connectors: ReceiveConnectorStore,
    /// The role's organisation objects.
    pub organisation: S,
}

impl<S: OrganisationSource> ConfigSources for StoreSources<S> {
    fn transport_config(&self) -> Result<TransportConfig, CompileError> {
        self.organisation.transport_config()
    }

    fn objects(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, CompileError> {
        self.organisation.objects(kind)
    }

    fn pinned_peers(&self) -> Result<Vec<Thumbprint>, CompileError> {
        self.organisation.pinned_peers()
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

/// Which sources changed, so which parts of the snapshot to compile again
/// (the others are taken from the snapshot in force).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    /// The node's receive connectors.
    ReceiveConnectors,
    /// The organisation's objects (store or replica): every part.
    Organisation,
    /// The certificates pinned besides the hubs' (a hub's subscriptions,
    /// which do not change the configuration version).
    PinnedPeers,
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
    /// Accepted domains, send connectors and the organisation's nodes.
    pub organisation: Arc<Organisation>,
    /// The recipient filter and the mailboxes' homes.
    pub mailboxes: Arc<MailboxIndex>,
    /// Pinned certificates and trusted roots.
    pub trust: Arc<TrustAnchors>,
}

impl NodeConfig {
    /// A snapshot of routing objects alone: the organisation and mailboxes
    /// of `objects` under `transport`, no receive connectors, default queue
    /// timers, no trust anchors. For routers driven without a node (tests,
    /// tools).
    pub fn of_objects(generation: u64, transport: TransportConfig, objects: Vec<ReplicatedObject>) -> Self {
        Self {
            generation,
            transport,
            receive: Vec::new(),
            queue: QueueConfig::default(),
            organisation: Arc::new(Organisation::compile(objects.clone())),
            mailboxes: Arc::new(MailboxIndex::compile(objects)),
            trust: Arc::new(TrustAnchors::default()),
        }
    }

    /// Compiles the configuration of the node `fqdn` from `sources`.
    pub fn compile(
        fqdn: &Domain,
        sources: &dyn ConfigSources,
        generation: u64,
    ) -> Result<Self, CompileError> {
        Self::compile_changed(fqdn, sources, generation, None, &[])
    }

    /// Compiles again the parts of `previous` that `changed` concerns and
    /// takes the others from it (everything when there is no `previous`).
    /// A part equal to the one in force keeps its `Arc`.
    pub fn compile_changed(
        fqdn: &Domain,
        sources: &dyn ConfigSources,
        generation: u64,
        previous: Option<&NodeConfig>,
        changed: &[Changed],
    ) -> Result<Self, CompileError> {
        let all = previous.is_none() || changed.contains(&Changed::Organisation);
        let connectors_changed = all || changed.contains(&Changed::ReceiveConnectors);
        let trust_changed = all || changed.contains(&Changed::PinnedPeers);
        let transport = match previous {
            Some(p) if !all => p.transport.clone(),
            _ => sources.transport_config()?,
        };
        let receive = match previous {
            Some(p) if !connectors_changed => p.receive.clone(),
            _ => Self::compile_receive(fqdn, sources, &transport)?,
        };
        let organisation = match previous {
            Some(p) if !all => Arc::clone(&p.organisation),
            _ => {
                let mut objects = Vec::new();
                for kind in [
                    ObjectKind::AcceptedDomain,
                    ObjectKind::SendConnector,
                    ObjectKind::Hub,
                    ObjectKind::Edge,
                ] {
                    objects.extend(sources.objects(kind)?);
                }
                reuse(previous.map(|p| &p.organisation), Organisation::compile(objects))
            }
        };
        let mailboxes = match previous {
            Some(p) if !all => Arc::clone(&p.mailboxes),
            _ => reuse(
                previous.map(|p| &p.mailboxes),
                MailboxIndex::compile(sources.objects(ObjectKind::Mailbox)?),
            ),
        };
        let trust = match previous {
            Some(p) if !trust_changed => Arc::clone(&p.trust),
            _ => {
                let mut objects = sources.objects(ObjectKind::Hub)?;
                objects.extend(sources.objects(ObjectKind::TrustedRoot)?);
                reuse(
                    previous.map(|p| &p.trust),
                    TrustAnchors::compile(objects, sources.pinned_peers()?),
                )
            }
        };
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
            organisation,
            mailboxes,
            trust,
        })
    }

    /// Every binding of every receive connector, compiled.
    fn compile_receive(
        fqdn: &Domain,
        sources: &dyn ConfigSources,
        transport: &TransportConfig,
    ) -> Result<Vec<ReceiveConnectorConfig>, CompileError> {
        let mut receive = Vec::new();
        for connector in &sources.receive_connectors()? {
            receive.extend(
                server_configs(connector, sources.role(), fqdn, transport).map_err(|why| {
                    CompileError::Connector {
                        connector: connector.name.clone(),
                        why,
                    }
                })?,
            );
        }
        Ok(receive)
    }

    /// Whether `self` says the same as `other` (the generation aside).
    pub fn same_as(&self, other: &NodeConfig) -> bool {
        self.transport == other.transport
            && self.receive == other.receive
            && self.queue == other.queue
            && self.organisation == other.organisation
            && self.mailboxes == other.mailboxes
            && self.trust == other.trust
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
        self.recompile_changed(&[Changed::Organisation])
    }

    /// Compiles again the parts `changed` concerns, as
    /// [`recompile`](Self::recompile) does.
    pub fn recompile_changed(&self, changed: &[Changed]) -> Result<(), CompileError> {
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let previous = self.current();
        let generation = previous.generation + 1;
        match NodeConfig::compile_changed(
            &self.fqdn,
            self.sources.as_ref(),
            generation,
            Some(&previous),
            changed,
        ) {
            Ok(next) => {
                status.last_error = None;
                self.tx.send_if_modified(|current| {
                    let same = current.same_as(&next);
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

    /// Recompiles what `changed` concerns whenever `rx` changes (a
    /// source's change feed), until its sender is gone. Call once per
    /// source.
    pub fn follow<T: Send + Sync + 'static>(&self, mut rx: watch::Receiver<T>, changed: Changed) {
        let compiler = self.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                // A failure is logged and counted by recompile_changed.
                let _ = compiler.recompile_changed(&[changed]);
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
        objects: Mutex<Vec<ReplicatedObject>>,
        pinned: Mutex<Vec<Thumbprint>>,
        /// How many times the mailboxes were read.
        mailbox_reads: std::sync::atomic::AtomicUsize,
    }

    impl Flaky {
        fn check(&self, what: &'static str) -> Result<(), CompileError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(CompileError::Read {
                    what,
                    why: "I/O error: disk on fire".into(),
                });
            }
            Ok(())
        }
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
        fn objects(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, CompileError> {
            self.check("the replicated objects")?;
            if kind == ObjectKind::Mailbox {
                self.mailbox_reads.fetch_add(1, Ordering::SeqCst);
            }
            Ok(self
                .objects
                .lock()
                .unwrap()
                .iter()
                .filter(|o| o.kind() == kind)
                .cloned()
                .collect())
        }
        fn pinned_peers(&self) -> Result<Vec<Thumbprint>, CompileError> {
            self.check("the subscriptions")?;
            Ok(self.pinned.lock().unwrap().clone())
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
            objects: Mutex::new(Vec::new()),
            pinned: Mutex::new(Vec::new()),
            mailbox_reads: Default::default(),
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

    fn organisation_objects() -> Vec<ReplicatedObject> {
        use postern_model::{
            AcceptedDomain, AcceptedDomainKind, HubInfo, MailboxEntry, NodeName, TrustedRoot,
        };
        vec![
            ReplicatedObject::AcceptedDomain(AcceptedDomain {
                name: Domain::parse("contoso.com").unwrap(),
                kind: AcceptedDomainKind::Authoritative,
                delivery: Default::default(),
            }),
            ReplicatedObject::Mailbox(MailboxEntry::new(
                "kim@contoso.com",
                Some(NodeName::parse("HUB2").unwrap()),
            )),
            ReplicatedObject::Hub(HubInfo {
                name: NodeName::parse("HUB2").unwrap(),
                fqdn: Domain::parse("hub2.contoso.com").unwrap(),
                smtp_endpoint: "[::1]:2525".into(),
                certificates: vec![b"hub2 certificate".to_vec()],
            }),
            ReplicatedObject::TrustedRoot(TrustedRoot {
                thumbprint: Thumbprint::of_der(b"a root"),
                subject: "CN=Root".into(),
                der: b"a root".to_vec(),
            }),
        ]
    }

    #[tokio::test]
    async fn the_organisation_mailboxes_and_trust_are_compiled_once() {
        let sources = flaky();
        *sources.objects.lock().unwrap() = organisation_objects();
        *sources.pinned.lock().unwrap() = vec![Thumbprint::of_der(b"an edge certificate")];
        let fqdn = Domain::parse("hub1.contoso.com").unwrap();
        let compiler = NodeConfigCompiler::start(fqdn, sources.clone()).unwrap();
        let config = compiler.current();
        let contoso = Domain::parse("contoso.com").unwrap();
        assert_eq!(
            config.organisation.accepted(&contoso),
            Some(postern_model::AcceptedDomainKind::Authoritative)
        );
        let hub2 = config.organisation.hub("hub2").unwrap();
        assert_eq!(
            hub2.smtp,
            crate::routing::HostPort {
                host: "::1".into(),
                port: 2525
            }
        );
        assert_eq!(
            config.organisation.authserv_ids(),
            vec![Domain::parse("hub2.contoso.com").unwrap()]
        );
        let kim = config.mailboxes.find("Kim@Contoso.com").unwrap();
        assert_eq!(kim.home.as_ref().map(|h| h.as_str()), Some("HUB2"));
        assert!(config.mailboxes.find("nobody@contoso.com").is_none());
        assert!(
            config
                .trust
                .direct
                .contains(&Thumbprint::of_der(b"hub2 certificate"))
        );
        assert!(
            config
                .trust
                .direct
                .contains(&Thumbprint::of_der(b"an edge certificate"))
        );
        assert_eq!(config.trust.roots, vec![b"a root".to_vec()]);
        assert_eq!(sources.mailbox_reads.load(Ordering::SeqCst), 1);

        // A receive connector change reads neither mailboxes nor trust.
        sources
            .connectors
            .lock()
            .unwrap()
            .push(connector("Second", "127.0.0.1:0"));
        compiler.recompile_changed(&[Changed::ReceiveConnectors]).unwrap();
        let after = compiler.current();
        assert_eq!(after.receive.len(), 2);
        assert_eq!(sources.mailbox_reads.load(Ordering::SeqCst), 1);
        assert!(Arc::ptr_eq(&after.mailboxes, &config.mailboxes));
        assert!(Arc::ptr_eq(&after.trust, &config.trust));

        // A new accepted domain: the unchanged mailboxes and trust keep their Arc.
        sources
            .objects
            .lock()
            .unwrap()
            .push(ReplicatedObject::AcceptedDomain(postern_model::AcceptedDomain {
                name: Domain::parse("fabrikam.com").unwrap(),
                kind: postern_model::AcceptedDomainKind::InternalRelay,
                delivery: Default::default(),
            }));
        compiler.recompile().unwrap();
        let later = compiler.current();
        assert!(
            later
                .organisation
                .accepted(&Domain::parse("fabrikam.com").unwrap())
                .is_some()
        );
        assert!(Arc::ptr_eq(&later.mailboxes, &config.mailboxes));
        assert!(Arc::ptr_eq(&later.trust, &config.trust));

        // A subscription change (pinned peers) recompiles the trust only.
        sources.pinned.lock().unwrap().clear();
        compiler.recompile_changed(&[Changed::PinnedPeers]).unwrap();
        let last = compiler.current();
        assert!(
            !last
                .trust
                .direct
                .contains(&Thumbprint::of_der(b"an edge certificate"))
        );
        assert!(Arc::ptr_eq(&last.organisation, &later.organisation));
    }

    #[tokio::test]
    async fn a_failing_source_keeps_routing_and_trust_as_they_were() {
        let sources = flaky();
        *sources.objects.lock().unwrap() = organisation_objects();
        let fqdn = Domain::parse("hub1.contoso.com").unwrap();
        let compiler = NodeConfigCompiler::start(fqdn, sources.clone()).unwrap();
        let before = compiler.current();
        sources.objects.lock().unwrap().clear();
        sources.fail.store(true, Ordering::SeqCst);
        assert!(compiler.recompile().is_err());
        assert!(compiler.recompile_changed(&[Changed::PinnedPeers]).is_err());
        let now = compiler.current();
        assert!(Arc::ptr_eq(&now, &before));
        assert!(now.mailboxes.find("kim@contoso.com").is_some());
        assert!(now.organisation.hub("hub2").is_some());
        assert_eq!(compiler.status().failures, 2);
    }

    #[tokio::test]
    async fn the_trust_store_follows_the_snapshot() {
        let sources = flaky();
        *sources.objects.lock().unwrap() = organisation_objects();
        let fqdn = Domain::parse("hub1.contoso.com").unwrap();
        let compiler = NodeConfigCompiler::start(fqdn, sources.clone()).unwrap();
        let trust = crate::tls::TrustStore::new([], &[]);
        follow_trust(compiler.subscribe(), trust.clone());
        let hub2 = Thumbprint::of_der(b"hub2 certificate");
        assert!(trust.is_direct(&hub2));
        let generation = trust.generation();

        // A change elsewhere leaves the trust (and the resumption epoch) alone.
        sources
            .connectors
            .lock()
            .unwrap()
            .push(connector("Second", "127.0.0.1:0"));
        compiler.recompile_changed(&[Changed::ReceiveConnectors]).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(trust.generation(), generation);

        // The hub gone: its certificate is no longer trusted, the epoch moves.
        sources
            .objects
            .lock()
            .unwrap()
            .retain(|o| !matches!(o, ReplicatedObject::Hub(_)));
        compiler.recompile().unwrap();
        for _ in 0..100 {
            if !trust.is_direct(&hub2) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!trust.is_direct(&hub2));
        assert!(trust.generation() > generation);
    }
}
