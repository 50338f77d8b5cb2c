//! Receive connectors: local to the node that owns them (never
//! replicated), kept in the node's store, turned into the SMTP server's
//! per-binding configurations. Setup makes the default connector on the
//! `--smtp-bind` address, as Exchange Setup does.

use std::sync::Arc;

use postern_model::{
    AuthMechanism, Domain, NodeIdentity, NodeRole, PermissionGroup, ProtocolLoggingLevel, ReceiveConnector,
    TransportConfig,
};

use crate::domain_security::receive_requirement;
use crate::server::ReceiveConnectorConfig;

/// Why a receive connector operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveConnectorError {
    /// Contradictory or malformed settings.
    #[error("{0}")]
    Invalid(String),
    /// `new` of a name in use.
    #[error("receive connector {0:?} already exists")]
    Exists(String),
    /// No such connector.
    #[error("no receive connector named {0:?}")]
    NotFound(String),
    /// The store failed.
    #[error("receive connector store: {0}")]
    Store(#[from] sled::Error),
}

/// The node's receive connectors, with a watch that fires on every change.
#[derive(Clone)]
pub struct ReceiveConnectorStore {
    tree: sled::Tree,
    /// Whose defaults unset limits take.
    role: NodeRole,
    db: sled::Db,
    tx: Arc<tokio::sync::watch::Sender<u64>>,
}

impl ReceiveConnectorStore {
    /// Opens the store; creates the default connector of `identity` when
    /// the node has none.
    pub fn open(db: &sled::Db, identity: &NodeIdentity) -> Result<Self, ReceiveConnectorError> {
        let (tx, _) = tokio::sync::watch::channel(0);
        let store = Self {
            tree: db.open_tree("node/receive-connectors")?,
            role: identity.role,
            db: db.clone(),
            tx: Arc::new(tx),
        };
        if store.tree.is_empty() {
            store.put(default_connector(identity), true, false)?;
        }
        Ok(store)
    }

    /// Whose defaults unset limits take.
    pub fn role(&self) -> NodeRole {
        self.role
    }

    /// Every connector, unset limits shown with the role's defaults.
    pub fn list(&self) -> Result<Vec<ReceiveConnector>, ReceiveConnectorError> {
        self.tree.iter().values().map(|v| self.decode(&v?)).collect()
    }

    /// The connector called `name`, unset limits shown with the role's defaults.
    pub fn get(&self, name: &str) -> Result<ReceiveConnector, ReceiveConnectorError> {
        let raw = self
            .tree
            .get(key(name))?
            .ok_or_else(|| ReceiveConnectorError::NotFound(name.to_owned()))?;
        self.decode(&raw)
    }

    fn decode(&self, raw: &[u8]) -> Result<ReceiveConnector, ReceiveConnectorError> {
        let mut c: ReceiveConnector =
            serde_json::from_slice(raw).map_err(|e| ReceiveConnectorError::Invalid(e.to_string()))?;
        c.limits = c.limits.filled(self.role, c.org_only());
        Ok(c)
    }

    /// Creates or replaces a validated connector.
    pub fn put(
        &self,
        c: ReceiveConnector,
        create_only: bool,
        replace_only: bool,
    ) -> Result<(), ReceiveConnectorError> {
        let mut c = c;
        c.validate().map_err(ReceiveConnectorError::Invalid)?;
        c.limits = c.limits.filled(self.role, c.org_only());
        let exists = self.tree.contains_key(key(&c.name))?;
        if create_only && exists {
            return Err(ReceiveConnectorError::Exists(c.name));
        }
        if replace_only && !exists {
            return Err(ReceiveConnectorError::NotFound(c.name));
        }
        let value = serde_json::to_vec(&c).map_err(|e| ReceiveConnectorError::Invalid(e.to_string()))?;
        self.tree.insert(key(&c.name), value)?;
        self.changed()
    }

    /// Removes a connector.
    pub fn remove(&self, name: &str) -> Result<(), ReceiveConnectorError> {
        if self.tree.remove(key(name))?.is_none() {
            return Err(ReceiveConnectorError::NotFound(name.to_owned()));
        }
        self.changed()
    }

    /// A receiver that sees every change.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tx.subscribe()
    }

    fn changed(&self) -> Result<(), ReceiveConnectorError> {
        self.db.flush()?;
        self.tx.send_modify(|n| *n += 1);
        Ok(())
    }
}

fn key(name: &str) -> Vec<u8> {
    name.trim().to_ascii_lowercase().into_bytes()
}

/// The connector setup makes: on a hub, for the organisation's nodes
/// (mutual TLS, direct trust); on an edge, for the Internet and the hubs.
pub fn default_connector(identity: &NodeIdentity) -> ReceiveConnector {
    let (name, groups, require_tls) = match identity.role {
        NodeRole::Hub => (
            format!("Default {}", identity.name),
            vec![PermissionGroup::OrgServers],
            true,
        ),
        NodeRole::Edge => (
            format!("Default internal receive connector {}", identity.name),
            vec![
                PermissionGroup::Anonymous,
                PermissionGroup::Partners,
                PermissionGroup::OrgServers,
            ],
            false,
        ),
    };
    ReceiveConnector {
        name,
        bindings: vec![identity.smtp_bind.clone()],
        remote_ip_ranges: Vec::new(),
        auth_mechanism: vec![AuthMechanism::Tls],
        permission_groups: groups,
        require_tls,
        domain_secure_enabled: false,
        fqdn: None,
        protocol_logging_level: ProtocolLoggingLevel::None,
        max_message_size: None,
        dmarc_enforcement: Default::default(),
        limits: postern_model::ReceiveLimits::default(),
    }
}

/// The server configurations of a connector, one per binding; limits
/// not set take the defaults of `role`. A binding
/// or remote IP range that does not parse is an error (never dropped
/// silently: the connector would listen where nobody asked, or to everyone).
pub fn server_configs(
    c: &ReceiveConnector,
    role: NodeRole,
    node_fqdn: &Domain,
    transport: &TransportConfig,
) -> Result<Vec<ReceiveConnectorConfig>, String> {
    let limits = c.limits.effective(role, c.org_only());
    let tls = receive_requirement(c);
    let groups = &c.permission_groups;
    c.bindings
        .iter()
        .map(|b| {
            let bind = b
                .parse()
                .map_err(|_| format!("binding {b:?} is not an address:port"))?;
            let mut cfg = ReceiveConnectorConfig::new(
                c.name.clone(),
                bind,
                c.fqdn.clone().unwrap_or_else(|| node_fqdn.clone()),
            );
            cfg.tls = tls.clone();
            cfg.trusted_org = groups.contains(&PermissionGroup::OrgServers);
            cfg.relay_allowed = groups.contains(&PermissionGroup::Clients);
            cfg.domain_secure_enabled = c.domain_secure_enabled;
            cfg.protocol_logging_level = c.protocol_logging_level;
            cfg.max_message_size = usize::try_from(c.max_message_size.unwrap_or(transport.max_message_size))
                .unwrap_or(usize::MAX);
            cfg.max_recipients = transport.max_recipients as usize;
            cfg.remote_ip_ranges = c.remote_ip_ranges.clone();
            cfg.dmarc_enforcement = c.dmarc_enforcement;
            cfg.apply_limits(&limits);
            Ok(cfg)
        })
        .collect()
}
