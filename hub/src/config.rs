//! The hub's authoritative configuration: the EdgeSync change-log store
//! plus what only the hub keeps (readable mailbox addresses). Every write
//! validates the object and bumps the version; EdgeSync pushes it.

use std::sync::Arc;

use postern_edgesync::{ChangeLogStore, ConfigSource, SideWrite, SourceError};
use postern_model::{
    AcceptedDomainKind, ChangeOp, ConfigVersion, MailboxHash, ObjectKey, ReplicatedObject, TransportConfig,
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
        kind: String,
        /// The name.
        name: String,
    },
    /// `set`/`get`/`remove` of an object that does not exist.
    #[error("no {kind} named {name:?}")]
    NotFound {
        /// The kind.
        kind: String,
        /// The name.
        name: String,
    },
    /// Only EdgeSync may change this kind.
    #[error("{0} objects are maintained by the hub itself")]
    ReadOnly(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] SourceError),
}

/// A mailbox as the hub keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxRecord {
    /// The address, lower-cased.
    pub address: String,
}

/// The hub's configuration store.
#[derive(Clone)]
pub struct HubConfig {
    store: Arc<ChangeLogStore>,
    mailboxes: sled::Tree,
}

impl HubConfig {
    /// Opens the store in `db`, creating the default transport config.
    pub fn open(db: &sled::Db) -> Result<Self, ConfigError> {
        let store = Arc::new(ChangeLogStore::open(
            db,
            postern_edgesync::store::DEFAULT_LOG_LIMIT,
        )?);
        let mailboxes = db.open_tree("hub/mailboxes").map_err(SourceError::from)?;
        let config = Self { store, mailboxes };
        if config
            .store
            .get(&ObjectKey::of("transport-config", ""))?
            .is_none()
        {
            config.store.apply(
                vec![ChangeOp::Put(ReplicatedObject::TransportConfig(
                    TransportConfig::default(),
                ))],
                vec![],
            )?;
        }
        Ok(config)
    }

    /// The store, as EdgeSync reads it.
    pub fn source(&self) -> Arc<ChangeLogStore> {
        self.store.clone()
    }

    /// The current version.
    pub fn version(&self) -> ConfigVersion {
        self.store.version()
    }

    /// Creates or replaces an object given as the admin API's JSON.
    pub fn put_json(
        &self,
        kind: &str,
        json: &str,
        create_only: bool,
        replace_only: bool,
    ) -> Result<ConfigVersion, ConfigError> {
        if kind == "mailbox" {
            let record: MailboxRecord =
                serde_json::from_str(json).map_err(|e| ConfigError::Invalid(format!("bad mailbox: {e}")))?;
            return self.put_mailbox(&record.address, create_only);
        }
        if matches!(kind, "hub" | "edge") {
            return Err(ConfigError::ReadOnly(kind.to_owned()));
        }
        let object = ReplicatedObject::from_kind_json(kind, json).map_err(ConfigError::Invalid)?;
        self.put(object, create_only, replace_only)
    }

    /// Creates or replaces a validated object.
    pub fn put(
        &self,
        object: ReplicatedObject,
        create_only: bool,
        replace_only: bool,
    ) -> Result<ConfigVersion, ConfigError> {
        validate(&object)?;
        let key = object.key();
        let exists = self.store.get(&key)?.is_some();
        let name = display_name(&object);
        if create_only && exists {
            return Err(ConfigError::Exists {
                kind: object.kind().to_owned(),
                name,
            });
        }
        if replace_only && !exists {
            return Err(ConfigError::NotFound {
                kind: object.kind().to_owned(),
                name,
            });
        }
        Ok(self.store.apply(vec![ChangeOp::Put(object)], vec![])?)
    }

    /// Applies several changes as one version range (hub-internal use).
    pub fn apply(&self, ops: Vec<ChangeOp>) -> Result<ConfigVersion, ConfigError> {
        Ok(self.store.apply(ops, vec![])?)
    }

    fn put_mailbox(&self, address: &str, create_only: bool) -> Result<ConfigVersion, ConfigError> {
        let address = address.trim().to_ascii_lowercase();
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(ConfigError::Invalid(format!(
                "{address:?} is not an e-mail address"
            )));
        };
        let domain = postern_model::Domain::parse(domain).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if local.is_empty() {
            return Err(ConfigError::Invalid(format!("{address:?} has no local part")));
        }
        let authoritative = self.list("accepted-domain")?.into_iter().any(|o| {
            matches!(o, ReplicatedObject::AcceptedDomain(d) if d.name == domain && d.kind != AcceptedDomainKind::ExternalRelay)
        });
        if !authoritative {
            return Err(ConfigError::Invalid(format!(
                "{domain} is not an authoritative or internal-relay accepted domain; add it with `postern accepted-domain new {domain}` first"
            )));
        }
        let hash = MailboxHash::of(&address);
        if create_only
            && self
                .mailboxes
                .contains_key(hash.0.as_bytes())
                .map_err(SourceError::from)?
        {
            return Err(ConfigError::Exists {
                kind: "mailbox".into(),
                name: address,
            });
        }
        let record = serde_json::to_vec(&MailboxRecord {
            address: address.clone(),
        })
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let side = SideWrite {
            tree: self.mailboxes.clone(),
            key: hash.0.as_bytes().to_vec(),
            value: Some(record),
        };
        Ok(self
            .store
            .apply(vec![ChangeOp::Put(ReplicatedObject::Mailbox(hash))], vec![side])?)
    }

    /// Removes the object of `kind` named `name`.
    pub fn remove(&self, kind: &str, name: &str) -> Result<ConfigVersion, ConfigError> {
        if matches!(kind, "hub" | "edge" | "transport-config") {
            return Err(ConfigError::ReadOnly(kind.to_owned()));
        }
        let key = ObjectKey::of(kind, name);
        if self.store.get(&key)?.is_none() {
            return Err(ConfigError::NotFound {
                kind: kind.to_owned(),
                name: name.to_owned(),
            });
        }
        let side = if kind == "mailbox" {
            let hash = MailboxHash::of(name);
            vec![SideWrite {
                tree: self.mailboxes.clone(),
                key: hash.0.as_bytes().to_vec(),
                value: None,
            }]
        } else {
            Vec::new()
        };
        Ok(self.store.apply(vec![ChangeOp::Delete(key)], side)?)
    }

    /// The object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Result<ReplicatedObject, ConfigError> {
        self.store
            .get(&ObjectKey::of(kind, name))?
            .ok_or_else(|| ConfigError::NotFound {
                kind: kind.to_owned(),
                name: name.to_owned(),
            })
    }

    /// Every object of `kind`.
    pub fn list(&self, kind: &str) -> Result<Vec<ReplicatedObject>, ConfigError> {
        Ok(self.store.list(kind)?)
    }

    /// Readable mailbox addresses (hub only).
    pub fn mailbox_addresses(&self) -> Result<Vec<String>, ConfigError> {
        let mut out = Vec::new();
        for item in self.mailboxes.iter().values() {
            let record: MailboxRecord = serde_json::from_slice(&item.map_err(SourceError::from)?)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            out.push(record.address);
        }
        out.sort();
        Ok(out)
    }

    /// The transport configuration.
    pub fn transport_config(&self) -> Result<TransportConfig, ConfigError> {
        match self.get("transport-config", "")? {
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
