//! Edge subscriptions on the hub: importing a subscription file trusts the
//! edge's certificate, records the edge, creates (or joins) the two EdgeSync
//! connectors of its site, and starts syncing; removing one undoes it all,
//! so the edge is refused at its next handshake.

use std::sync::Arc;

use postern_edgesync::hub_side::{EdgeTarget, SyncManager};
use postern_edgesync::subscription::SubscriptionFile;
use postern_edgesync::{ConfigStore, SideWrite, Write};
use postern_model::{
    AcceptedDomainKind, AddressSpace, ChangeOp, DomainPattern, EdgeInfo, NodeName, ObjectKey, ObjectKind,
    ReplicatedObject, SendConnector, Thumbprint,
};
use postern_tls::TrustStore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{ConfigError, HubConfig};

/// A subscribed edge as the hub keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subscription {
    /// The edge's name.
    pub edge_name: String,
    /// Its FQDN.
    pub fqdn: String,
    /// Its site.
    pub site: String,
    /// Where EdgeSync dials it.
    pub edgesync_endpoint: String,
    /// Where hubs send it mail.
    pub smtp_endpoint: String,
    /// Its certificate's thumbprint (direct trust).
    pub thumbprint: Thumbprint,
    /// The bootstrap secret, until the first snapshot is acked.
    pub bootstrap_secret: Option<String>,
    /// When it was imported.
    pub created: String,
    /// The certificate it presented before its last rotation, trusted
    /// until the grace period ends.
    #[serde(default)]
    pub previous: Option<PreviousCertificate>,
}

/// An edge's replaced certificate, still trusted during the grace period.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreviousCertificate {
    /// Its thumbprint.
    pub thumbprint: Thumbprint,
    /// When the hub stops trusting it (RFC 3339).
    pub until: String,
}

impl Subscription {
    /// What the sync task needs.
    pub fn target(&self) -> EdgeTarget {
        EdgeTarget {
            name: self.edge_name.clone(),
            endpoint: self.edgesync_endpoint.clone(),
            thumbprint: self.thumbprint,
            bootstrap_secret: self.bootstrap_secret.clone(),
        }
    }
}

/// Why a subscription operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// The file was refused.
    #[error(transparent)]
    File(#[from] postern_edgesync::subscription::SubscriptionError),
    /// The file was imported before (here), so its secret is spent.
    #[error(
        "this subscription file of edge {0} was already imported on {1}; its bootstrap secret is spent: \
         run `postern edge-subscription new` on the edge and import the new file"
    )]
    AlreadyUsed(String, String),
    /// The edge holds another organisation's configuration.
    #[error(
        "edge {0} is subscribed to another organisation (configuration store {1}); \
         remove its subscription there first, then make a new subscription file on the edge"
    )]
    OtherOrganisation(String, String),
    /// The edge is subscribed already.
    #[error("edge {0} is already subscribed; remove it first to subscribe it again")]
    Exists(String),
    /// No such subscription.
    #[error("no edge subscription named {0:?}")]
    NotFound(String),
    /// The configuration could not be changed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed.
    #[error("subscription store: {0}")]
    Store(#[from] postern_edgesync::SourceError),
    /// A record did not parse.
    #[error("subscription record is corrupt: {0}")]
    Corrupt(String),
}

/// The subscriptions of the organisation (every hub of it sees them).
#[derive(Clone)]
pub struct Subscriptions {
    store: Arc<dyn ConfigStore>,
}

/// The default site name (Exchange's "Default-First-Site-Name").
pub const DEFAULT_SITE: &str = "Default-First-Site-Name";

/// The side space of subscription records.
const SPACE: &str = "hub/subscriptions";

/// The side space of spent bootstrap secrets: secret hash → when its file
/// was imported.
const USED: &str = "hub/used-subscription-files";

impl Subscriptions {
    /// Keeps subscriptions in `store`.
    pub fn new(store: Arc<dyn ConfigStore>) -> Self {
        Self { store }
    }

    /// A receiver woken whenever a subscription may have changed (written
    /// by this hub or, in an etcd store, by another): the store's side
    /// records' change feed.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.watch_side()
    }

    /// Every subscription.
    pub fn list(&self) -> Result<Vec<Subscription>, SubscriptionError> {
        self.store
            .side_list(SPACE)?
            .iter()
            .map(|v| serde_json::from_slice(v).map_err(|e| SubscriptionError::Corrupt(e.to_string())))
            .collect()
    }

    fn find(&self, name: &str) -> Result<Option<Subscription>, SubscriptionError> {
        self.store
            .side_get(SPACE, name.to_ascii_lowercase().as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| SubscriptionError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Every edge certificate this hub trusts directly: each edge's
    /// current one and, during a rotation's grace period, its previous one.
    pub fn trusted(&self) -> Result<Vec<Thumbprint>, SubscriptionError> {
        Ok(self
            .list()?
            .iter()
            .flat_map(|s| std::iter::once(s.thumbprint).chain(s.previous.as_ref().map(|p| p.thumbprint)))
            .collect())
    }

    /// The subscription of edge `name`.
    pub fn get(&self, name: &str) -> Result<Subscription, SubscriptionError> {
        self.find(name)?
            .ok_or_else(|| SubscriptionError::NotFound(name.to_owned()))
    }

    /// Records a rotation: `new` is the edge's certificate from now on,
    /// `old` stays trusted until `until`.
    pub async fn rotate(
        &self,
        name: &str,
        old: Thumbprint,
        new: Thumbprint,
        until: &str,
    ) -> Result<Subscription, SubscriptionError> {
        let mut sub = self.get(name)?;
        sub.thumbprint = new;
        sub.previous = Some(PreviousCertificate {
            thumbprint: old,
            until: until.to_owned(),
        });
        self.save(&sub).await?;
        Ok(sub)
    }

    /// Forgets previous certificates whose grace period ended before
    /// `now`; returns the edges and certificates retired.
    pub async fn retire_due(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<(String, Thumbprint)>, SubscriptionError> {
        let mut retired = Vec::new();
        for mut sub in self.list()? {
            let due = sub
                .previous
                .as_ref()
                .is_some_and(|p| OffsetDateTime::parse(&p.until, &Rfc3339).map_or(true, |u| now >= u));
            if due && let Some(p) = sub.previous.take() {
                self.save(&sub).await?;
                retired.push((sub.edge_name.clone(), p.thumbprint));
            }
        }
        Ok(retired)
    }

    /// Writes `sub`'s record (a side record: the edges' version does not move).
    async fn save(&self, sub: &Subscription) -> Result<(), SubscriptionError> {
        let write = Write {
            side: vec![Self::record(sub)?],
            ..Write::default()
        };
        self.store.apply(write).await?;
        Ok(())
    }

    fn record(sub: &Subscription) -> Result<SideWrite, SubscriptionError> {
        let value = serde_json::to_vec(sub).map_err(|e| SubscriptionError::Corrupt(e.to_string()))?;
        Ok(SideWrite {
            space: SPACE.to_owned(),
            key: sub.edge_name.to_ascii_lowercase().into_bytes(),
            value: Some(value),
        })
    }

    /// Forgets the bootstrap secret once the edge has its first snapshot.
    pub async fn mark_bootstrapped(&self, edge: &str) {
        let Ok(Some(mut sub)) = self.find(edge) else {
            return;
        };
        if sub.bootstrap_secret.take().is_none() {
            return;
        }
        let write = Self::record(&sub).map(|side| Write {
            side: vec![side],
            ..Write::default()
        });
        let result = match write {
            Ok(w) => self.store.apply(w).await.map_err(SubscriptionError::from),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(edge, error = %e, "cannot record the edge as bootstrapped");
        }
    }

    /// Imports a subscription file: verifies it, trusts the edge, updates
    /// the configuration and starts syncing.
    pub async fn import(
        &self,
        text: &str,
        site: Option<&str>,
        config: &HubConfig,
        trust: &TrustStore,
        sync: &SyncManager,
    ) -> Result<Subscription, SubscriptionError> {
        let (file, _der) = SubscriptionFile::verify(text, OffsetDateTime::now_utc())?;
        let body = &file.body;
        let read = config.read_version();
        let secret = postern_edgesync::subscription::secret_hash(&body.bootstrap_secret);
        if let Some(when) = self.store.side_get(USED, secret.as_bytes())? {
            return Err(SubscriptionError::AlreadyUsed(
                body.edge_name.to_string(),
                String::from_utf8_lossy(&when).into_owned(),
            ));
        }
        let ours = postern_edgesync::ConfigSource::store_id(config.source().as_ref());
        if !body.subscribed_store.is_empty() && body.subscribed_store != ours {
            return Err(SubscriptionError::OtherOrganisation(
                body.edge_name.to_string(),
                body.subscribed_store.clone(),
            ));
        }
        if self.find(body.edge_name.as_str())?.is_some() {
            return Err(SubscriptionError::Exists(body.edge_name.to_string()));
        }
        let site = site
            .filter(|s| !s.trim().is_empty())
            .unwrap_or(DEFAULT_SITE)
            .to_owned();
        let sub = Subscription {
            edge_name: body.edge_name.to_string(),
            fqdn: body.fqdn.to_string(),
            site: site.clone(),
            edgesync_endpoint: body.edgesync_endpoint.clone(),
            smtp_endpoint: body.smtp_endpoint.clone(),
            thumbprint: file.thumbprint()?,
            bootstrap_secret: Some(body.bootstrap_secret.clone()),
            created: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            previous: None,
        };
        let mut ops = vec![ChangeOp::Put(ReplicatedObject::Edge(EdgeInfo {
            name: body.edge_name.clone(),
            fqdn: body.fqdn.clone(),
            site: site.clone(),
            smtp_endpoint: body.smtp_endpoint.clone(),
            thumbprint: sub.thumbprint,
        }))];
        ops.extend(site_connectors(config, &site, Some(&body.edge_name), None)?);
        let used = SideWrite {
            space: USED.to_owned(),
            key: secret.into_bytes(),
            value: Some(sub.created.clone().into_bytes()),
        };
        config
            .write(ops, vec![Self::record(&sub)?, used], Some(read))
            .await?;
        trust.trust_direct(sub.thumbprint);
        sync.start(sub.target());
        tracing::info!(edge = %sub.edge_name, site = %sub.site, thumbprint = %sub.thumbprint, "edge subscribed");
        Ok(sub)
    }

    /// Removes a subscription: stops syncing, distrusts the certificate (the
    /// trust anchors are compiled again through `refresh`), and takes the
    /// edge out of its site's connectors.
    pub async fn remove(
        &self,
        name: &str,
        config: &HubConfig,
        refresh: &crate::sources::TrustRefresh,
        sync: &SyncManager,
    ) -> Result<(), SubscriptionError> {
        let read = config.read_version();
        let sub = self.get(name)?;
        let edge_name =
            NodeName::parse(&sub.edge_name).map_err(|e| SubscriptionError::Corrupt(e.to_string()))?;
        let mut ops = vec![ChangeOp::Delete(ObjectKey::of(ObjectKind::Edge, &sub.edge_name))];
        ops.extend(site_connectors(config, &sub.site, None, Some(&edge_name))?);
        let forget = SideWrite {
            space: SPACE.to_owned(),
            key: sub.edge_name.to_ascii_lowercase().into_bytes(),
            value: None,
        };
        config.write(ops, vec![forget], Some(read)).await?;
        sync.stop(&sub.edge_name);
        refresh.pinned_peers_changed();
        tracing::info!(edge = %sub.edge_name, "edge subscription removed");
        Ok(())
    }
}

impl Subscriptions {
    /// Rewrites every site's EdgeSync connectors (after accepted domains
    /// or hubs changed).
    pub async fn refresh_sites(&self, config: &HubConfig) -> Result<(), SubscriptionError> {
        let mut sites: Vec<String> = self.list()?.into_iter().map(|s| s.site).collect();
        sites.sort();
        sites.dedup();
        let mut ops = Vec::new();
        for site in sites {
            ops.extend(site_connectors(config, &site, None, None)?);
        }
        if !ops.is_empty() {
            config.apply(ops).await?;
        }
        Ok(())
    }
}

/// Name of a site's inbound connector (edges to hubs).
pub fn inbound_name(site: &str) -> String {
    format!("EdgeSync - Inbound to {site}")
}

/// Name of a site's Internet connector.
pub fn internet_name(site: &str) -> String {
    format!("EdgeSync - {site} to Internet")
}

/// The changes that bring a site's two EdgeSync connectors up to date after
/// `add` joins or `remove` leaves (connectors with no edge left go away).
pub fn site_connectors(
    config: &HubConfig,
    site: &str,
    add: Option<&NodeName>,
    remove: Option<&NodeName>,
) -> Result<Vec<ChangeOp>, ConfigError> {
    let spaces = inbound_spaces(config)?;
    let hubs: Vec<String> = config
        .list(ObjectKind::Hub)?
        .into_iter()
        .filter_map(|o| match o {
            ReplicatedObject::Hub(h) => Some(h.smtp_endpoint),
            _ => None,
        })
        .collect();
    let mut ops = Vec::new();
    for (name, make) in [
        (
            inbound_name(site),
            Box::new(move |n: &str| {
                let mut c = SendConnector::new(n, spaces.clone());
                c.dns_routing_enabled = false;
                c.smart_hosts = hubs.clone();
                c
            }) as Box<dyn Fn(&str) -> SendConnector>,
        ),
        (
            internet_name(site),
            Box::new(|n: &str| {
                let mut c = SendConnector::new(
                    n,
                    vec![AddressSpace {
                        pattern: DomainPattern::Any,
                        cost: 100,
                    }],
                );
                c.domain_secure_enabled = true;
                c
            }),
        ),
    ] {
        let existing = match config.get(ObjectKind::SendConnector, &name) {
            Ok(ReplicatedObject::SendConnector(c)) => Some(c),
            _ => None,
        };
        let mut connector = existing.unwrap_or_else(|| make(&name));
        if let Some(edge) = add.filter(|e| !connector.source_edges.contains(e)) {
            connector.source_edges.push(edge.clone());
        }
        if let Some(edge) = remove {
            connector.source_edges.retain(|e| e != edge);
        }
        if connector.source_edges.is_empty() {
            ops.push(ChangeOp::Delete(ObjectKey::send_connector(&name)));
        } else {
            ops.push(ChangeOp::Put(ReplicatedObject::SendConnector(connector)));
        }
    }
    Ok(ops)
}

/// The inbound connector serves every authoritative and internal-relay domain.
fn inbound_spaces(config: &HubConfig) -> Result<Vec<AddressSpace>, ConfigError> {
    let mut spaces: Vec<AddressSpace> = config
        .list(ObjectKind::AcceptedDomain)?
        .into_iter()
        .filter_map(|o| match o {
            ReplicatedObject::AcceptedDomain(d) if d.kind != AcceptedDomainKind::ExternalRelay => {
                Some(AddressSpace {
                    pattern: DomainPattern::Exact(d.name),
                    cost: 1,
                })
            }
            _ => None,
        })
        .collect();
    spaces.sort_by_key(ToString::to_string);
    Ok(spaces)
}
