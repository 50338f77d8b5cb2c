//! The hub's authoritative configuration: the store (sled for one hub,
//! etcd for several) plus what only the hub keeps (readable mailbox
//! addresses). Every write validates the object, is guarded by the
//! version its checks read, and bumps the version; EdgeSync pushes it.

use std::sync::Arc;

use postern_edgesync::{ChangeLogStore, ConfigSource, ConfigStore, SideWrite, SourceError, Write};
use postern_model::{
    AcceptedDomainKind, ChangeOp, ConfigVersion, MailboxEntry, MailboxHash, NodeName, ObjectKey, ObjectKind,
    ReplicatedObject, TransportConfig,
};
use serde::{Deserialize, Serialize};

/// Why a configuration change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The object is malformed or contradicts itself.
    #[error("{0}")]
    Invalid(String),
    /// `new` of an object that exists.
    #[error("{kind} {name:?} already exists")]
    Exists {
        /// The kind.
        kind: ObjectKind,
        /// The name.
        name: String,
    },
    /// `set`/`get`/`remove` of an object that does not exist.
    #[error("no {kind} named {name:?}")]
    NotFound {
        /// The kind.
        kind: ObjectKind,
        /// The name.
        name: String,
    },
    /// Only EdgeSync may change this kind.
    #[error("{0} objects are maintained by the hub itself")]
    ReadOnly(ObjectKind),
    /// Another write changed what this one read (nothing was changed).
    #[error("{0}")]
    Conflict(SourceError),
    /// The store (etcd) is unreachable (nothing was changed), or did not
    /// answer a write in time (the reason says so).
    #[error("{0}")]
    Unavailable(SourceError),
    /// The store failed.
    #[error(transparent)]
    Store(SourceError),
}

impl From<SourceError> for ConfigError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Conflict => Self::Conflict(e),
            SourceError::Unavailable(_) | SourceError::Uncertain(_) => Self::Unavailable(e),
            other => Self::Store(other),
        }
    }
}

/// The side space of readable mailbox addresses.
const MAILBOXES: &str = "hub/mailboxes";

/// A mailbox as the hub keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    /// The address, lower-cased.
    pub address: String,
}

/// A mailbox as the admin API writes it: `hub` names its home (a hub's
/// name or FQDN); `None` on `new` homes it on the hub that creates it,
/// and on `set` keeps its home.
#[derive(Clone, Debug, Deserialize)]
pub struct MailboxRequest {
    /// The address.
    pub address: String,
    /// The home hub.
    #[serde(default)]
    pub hub: Option<String>,
}

/// The hub's configuration store.
#[derive(Clone)]
pub struct HubConfig {
    store: Arc<dyn ConfigStore>,
    hub: NodeName,
}

impl HubConfig {
    /// Opens the single-hub sled store in `db`.
    pub fn open_sled(db: &sled::Db) -> Result<Arc<ChangeLogStore>, ConfigError> {
        Ok(Arc::new(ChangeLogStore::open(
            db,
            postern_edgesync::store::DEFAULT_LOG_LIMIT,
        )?))
    }

    /// Uses `store` for the hub named `hub` (new mailboxes are homed on
    /// it), creating the default transport config (once, when several
    /// hubs start together).
    pub async fn new(store: Arc<dyn ConfigStore>, hub: NodeName) -> Result<Self, ConfigError> {
        let config = Self { store, hub };
        let read = config.store.read_version();
        if config
            .store
            .get(&ObjectKey::of(ObjectKind::TransportConfig, ""))?
            .is_none()
        {
            let write = Write {
                ops: vec![ChangeOp::Put(ReplicatedObject::TransportConfig(
                    TransportConfig::default(),
                ))],
                side: vec![],
                read: Some(read),
            };
            match config.store.apply(write).await {
                Ok(_) | Err(SourceError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(config)
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn ConfigStore> {
        self.store.clone()
    }

    /// The store, as EdgeSync reads it.
    pub fn source(&self) -> Arc<dyn ConfigSource> {
        self.store.clone()
    }

    /// The current version.
    pub fn version(&self) -> ConfigVersion {
        self.store.version()
    }

    /// The version a guarded write's checks stand on, now.
    pub fn read_version(&self) -> ConfigVersion {
        self.store.read_version()
    }

    /// Creates or replaces an object given as the admin API's JSON.
    /// `read` is the version the administrator's read saw (`None`: now).
    pub async fn put_json(
        &self,
        kind: ObjectKind,
        json: &str,
        create_only: bool,
        replace_only: bool,
        read: Option<ConfigVersion>,
    ) -> Result<ConfigVersion, ConfigError> {
        if kind == ObjectKind::Mailbox {
            let request: MailboxRequest =
                serde_json::from_str(json).map_err(|e| ConfigError::Invalid(format!("bad mailbox: {e}")))?;
            return self.put_mailbox(&request, create_only, replace_only, read).await;
        }
        if kind.is_managed_by_nodes() {
            return Err(ConfigError::ReadOnly(kind));
        }
        let object =
            ReplicatedObject::from_kind_json(kind, json).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.put(object, create_only, replace_only, read).await
    }

    /// Creates or replaces a validated object; refused when it changed
    /// after `read` (default: the version its checks see now).
    pub async fn put(
        &self,
        object: ReplicatedObject,
        create_only: bool,
        replace_only: bool,
        read: Option<ConfigVersion>,
    ) -> Result<ConfigVersion, ConfigError> {
        validate(&object)?;
        let read = read.unwrap_or_else(|| self.store.read_version());
        let key = object.key();
        let exists = self.store.get(&key)?.is_some();
        let name = display_name(&object);
        if create_only && exists {
            return Err(ConfigError::Exists {
                kind: object.kind(),
                name,
            });
        }
        if replace_only && !exists {
            return Err(ConfigError::NotFound {
                kind: object.kind(),
                name,
            });
        }
        self.write(vec![ChangeOp::Put(object)], vec![], Some(read)).await
    }

    /// Applies several changes as one version range (hub-internal use),
    /// unguarded.
    pub async fn apply(&self, ops: Vec<ChangeOp>) -> Result<ConfigVersion, ConfigError> {
        self.write(ops, vec![], None).await
    }

    /// One atomic write of changes and side records, guarded by `read`.
    pub async fn write(
        &self,
        ops: Vec<ChangeOp>,
        side: Vec<SideWrite>,
        read: Option<ConfigVersion>,
    ) -> Result<ConfigVersion, ConfigError> {
        Ok(self.store.apply(Write { ops, side, read }).await?)
    }

    /// The hub of the organisation named `name` (its name or FQDN).
    fn hub_named(&self, name: &str) -> Result<NodeName, ConfigError> {
        let hubs: Vec<postern_model::HubInfo> = self
            .list(ObjectKind::Hub)?
            .into_iter()
            .filter_map(|o| match o {
                ReplicatedObject::Hub(h) => Some(h),
                _ => None,
            })
            .collect();
        hubs.iter()
            .find(|h| {
                h.name.as_str().eq_ignore_ascii_case(name) || h.fqdn.as_str().eq_ignore_ascii_case(name)
            })
            .map(|h| h.name.clone())
            .ok_or_else(|| {
                let known: Vec<&str> = hubs.iter().map(|h| h.name.as_str()).collect();
                ConfigError::Invalid(format!(
                    "no hub named {name:?} in the organisation; hubs are: {}",
                    known.join(", ")
                ))
            })
    }

    /// The replicated entry of the mailbox `address` (its home), if any.
    pub fn mailbox_entry(&self, address: &str) -> Result<Option<MailboxEntry>, ConfigError> {
        Ok(
            match self.store.get(&ObjectKey::of(ObjectKind::Mailbox, address))? {
                Some(ReplicatedObject::Mailbox(entry)) => Some(entry),
                _ => None,
            },
        )
    }

    async fn put_mailbox(
        &self,
        request: &MailboxRequest,
        create_only: bool,
        replace_only: bool,
        read: Option<ConfigVersion>,
    ) -> Result<ConfigVersion, ConfigError> {
        let read = read.unwrap_or_else(|| self.store.read_version());
        let address = request.address.trim().to_ascii_lowercase();
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(ConfigError::Invalid(format!(
                "{address:?} is not an e-mail address"
            )));
        };
        let domain = postern_model::Domain::parse(domain).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if local.is_empty() {
            return Err(ConfigError::Invalid(format!("{address:?} has no local part")));
        }
        let authoritative = self.list(ObjectKind::AcceptedDomain)?.into_iter().any(|o| {
            matches!(o, ReplicatedObject::AcceptedDomain(d) if d.name == domain && d.kind != AcceptedDomainKind::ExternalRelay)
        });
        if !authoritative {
            return Err(ConfigError::Invalid(format!(
                "{domain} is not an authoritative or internal-relay accepted domain; add it with `postern accepted-domain new {domain}` first"
            )));
        }
        let hash = MailboxHash::of(&address);
        let exists = self.store.side_get(MAILBOXES, hash.0.as_bytes())?.is_some();
        if create_only && exists {
            return Err(ConfigError::Exists {
                kind: ObjectKind::Mailbox,
                name: address,
            });
        }
        if replace_only && !exists {
            return Err(ConfigError::NotFound {
                kind: ObjectKind::Mailbox,
                name: address,
            });
        }
        let home = match &request.hub {
            Some(name) => Some(self.hub_named(name)?),
            None if exists => self.mailbox_entry(&address)?.and_then(|e| e.home),
            None => Some(self.hub.clone()),
        };
        let record = serde_json::to_vec(&MailboxRecord {
            address: address.clone(),
        })
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let side = SideWrite {
            space: MAILBOXES.to_owned(),
            key: hash.0.as_bytes().to_vec(),
            value: Some(record),
        };
        self.write(
            vec![ChangeOp::Put(ReplicatedObject::Mailbox(MailboxEntry {
                hash,
                home,
            }))],
            vec![side],
            Some(read),
        )
        .await
    }

    /// Removes the object of `kind` named `name`.
    pub async fn remove(&self, kind: ObjectKind, name: &str) -> Result<ConfigVersion, ConfigError> {
        let read = self.store.read_version();
        if kind.is_managed_by_nodes() || kind == ObjectKind::TransportConfig {
            return Err(ConfigError::ReadOnly(kind));
        }
        let key = ObjectKey::of(kind, name);
        if self.store.get(&key)?.is_none() {
            return Err(ConfigError::NotFound {
                kind,
                name: name.to_owned(),
            });
        }
        let side = if kind == ObjectKind::Mailbox {
            let hash = MailboxHash::of(name);
            vec![SideWrite {
                space: MAILBOXES.to_owned(),
                key: hash.0.as_bytes().to_vec(),
                value: None,
            }]
        } else {
            Vec::new()
        };
        self.write(vec![ChangeOp::Delete(key)], side, Some(read)).await
    }

    /// The object of `kind` named `name`.
    pub fn get(&self, kind: ObjectKind, name: &str) -> Result<ReplicatedObject, ConfigError> {
        self.store
            .get(&ObjectKey::of(kind, name))?
            .ok_or_else(|| ConfigError::NotFound {
                kind,
                name: name.to_owned(),
            })
    }

    /// Every object of `kind`.
    pub fn list(&self, kind: ObjectKind) -> Result<Vec<ReplicatedObject>, ConfigError> {
        Ok(self.store.list(kind)?)
    }

    /// Thumbprints of every hub's published SMTP certificates (`HubInfo`):
    /// the hubs of the organisation, which edges and hubs trust directly.
    pub fn hub_certificates(&self) -> Result<Vec<postern_model::Thumbprint>, ConfigError> {
        Ok(self
            .list(ObjectKind::Hub)?
            .into_iter()
            .filter_map(|o| match o {
                ReplicatedObject::Hub(h) => Some(h.certificates),
                _ => None,
            })
            .flatten()
            .map(|der| postern_model::Thumbprint::of_der(&der))
            .collect())
    }

    /// Readable mailbox addresses (hub only).
    pub fn mailbox_addresses(&self) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for item in self.store.side_list(MAILBOXES)? {
            let record: MailboxRecord =
                serde_json::from_slice(&item).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            out.push(record.address);
        }
        out.sort();
        Ok(out)
    }

    /// The transport configuration.
    pub fn transport_config(&self) -> Result<TransportConfig, ConfigError> {
        match self.get(ObjectKind::TransportConfig, "")? {
            ReplicatedObject::TransportConfig(c) => Ok(c),
            _ => Ok(TransportConfig::default()),
        }
    }
}

fn display_name(object: &ReplicatedObject) -> String {
    let key = object.key().0;
    key.split_once('/').map(|(_, n)| n.to_owned()).unwrap_or(key)
}

/// Checks an object before it is stored; the contradiction rules of send
/// connectors live in `SendConnector` validation (issue 5 extends them).
fn validate(object: &ReplicatedObject) -> Result<(), ConfigError> {
    match object {
        ReplicatedObject::SendConnector(c) => {
            postern_transport::connectors::validate_send_connector(c).map_err(ConfigError::Invalid)
        }
        ReplicatedObject::TransportConfig(c) => {
            if c.max_message_size == 0 || c.max_recipients == 0 {
                return Err(ConfigError::Invalid(
                    "sizes and recipient limits must be positive".into(),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
