//! Edge subscriptions on the hub: importing a subscription file trusts the
//! edge's certificate, records the edge, creates (or joins) the two EdgeSync
//! connectors of its site, and starts syncing; removing one undoes it all,
//! so the edge is refused at its next handshake.

use postern_edgesync::hub_side::{EdgeTarget, SyncManager};
use postern_edgesync::subscription::SubscriptionFile;
use postern_model::{
    AcceptedDomainKind, AddressSpace, ChangeOp, DomainPattern, EdgeInfo, NodeName, ObjectKey,
    ReplicatedObject, SendConnector, Thumbprint,
};
use postern_transport::tls::TrustStore;
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
    Store(#[from] sled::Error),
    /// A record did not parse.
    #[error("subscription record is corrupt: {0}")]
    Corrupt(String),
}

/// The subscriptions of this hub.
#[derive(Clone)]
pub struct Subscriptions {
    tree: sled::Tree,
    /// Bootstrap secret hash → when its file was imported.
    used: sled::Tree,
    db: sled::Db,
}

/// The default site name (Exchange's "Default-First-Site-Name").
pub const DEFAULT_SITE: &str = "Default-First-Site-Name";

impl Subscriptions {
    /// Opens the tree in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, SubscriptionError> {
        Ok(Self {
            tree: db.open_tree("hub/subscriptions")?,
            used: db.open_tree("hub/used-subscription-files")?,
            db: db.clone(),
        })
    }

    /// Every subscription.
    pub fn list(&self) -> Result<Vec<Subscription>, SubscriptionError> {
        self.tree
            .iter()
            .values()
            .map(|v| serde_json::from_slice(&v?).map_err(|e| SubscriptionError::Corrupt(e.to_string())))
            .collect()
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
        let raw = self
            .tree
            .get(name.to_ascii_lowercase().as_bytes())?
            .ok_or_else(|| SubscriptionError::NotFound(name.to_owned()))?;
        serde_json::from_slice(&raw).map_err(|e| SubscriptionError::Corrupt(e.to_string()))
    }

    /// Records a rotation: `new` is the edge's certificate from now on,
    /// `old` stays trusted until `until`.
    pub fn rotate(
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
        self.save(&sub)?;
        Ok(sub)
    }

    /// Forgets previous certificates whose grace period ended before
    /// `now`; returns the edges and certificates retired.
    pub fn retire_due(&self, now: OffsetDateTime) -> Result<Vec<(String, Thumbprint)>, SubscriptionError> {
        let mut retired = Vec::new();
        for mut sub in self.list()? {
            let due = sub
                .previous
                .as_ref()
                .is_some_and(|p| OffsetDateTime::parse(&p.until, &Rfc3339).map_or(true, |u| now >= u));
            if due && let Some(p) = sub.previous.take() {
                self.save(&sub)?;
                retired.push((sub.edge_name.clone(), p.thumbprint));
            }
        }
        Ok(retired)
    }

    fn save(&self, sub: &Subscription) -> Result<(), SubscriptionError> {
        let value = serde_json::to_vec(sub).map_err(|e| SubscriptionError::Corrupt(e.to_string()))?;
        self.tree
            .insert(sub.edge_name.to_ascii_lowercase().as_bytes(), value)?;
        self.db.flush()?;
        Ok(())
    }

    /// Forgets the bootstrap secret once the edge has its first snapshot.
    pub fn mark_bootstrapped(&self, edge: &str) {
        let key = edge.to_ascii_lowercase();
        let Ok(Some(raw)) = self.tree.get(key.as_bytes()) else {
            return;
        };
        let Ok(mut sub) = serde_json::from_slice::<Subscription>(&raw) else {
            return;
        };
        sub.bootstrap_secret = None;
        if let Err(e) = self.save(&sub) {
            tracing::error!(edge, error = %e, "cannot record the edge as bootstrapped");
        }
    }

    /// Imports a subscription file: verifies it, trusts the edge, updates
    /// the configuration and starts syncing.
    pub fn import(
        &self,
        text: &str,
        site: Option<&str>,
        config: &HubConfig,
        trust: &TrustStore,
        sync: &SyncManager,
    ) -> Result<Subscription, SubscriptionError> {
        let (file, _der) = SubscriptionFile::verify(text, OffsetDateTime::now_utc())?;
        let body = &file.body;
        let secret = postern_edgesync::subscription::secret_hash(&body.bootstrap_secret);
        if let Some(when) = self.used.get(secret.as_bytes())? {
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
        let key = body.edge_name.as_str().to_ascii_lowercase();
        if self.tree.contains_key(key.as_bytes())? {
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
        self.used.insert(secret.as_bytes(), sub.created.as_bytes())?;
        self.save(&sub)?;
        config.apply(ops)?;
        trust.trust_direct(sub.thumbprint);
        sync.start(sub.target());
        tracing::info!(edge = %sub.edge_name, site = %sub.site, thumbprint = %sub.thumbprint, "edge subscribed");
        Ok(sub)
    }

    /// Removes a subscription: stops syncing, distrusts the certificate, and
    /// takes the edge out of its site's connectors.
    pub fn remove(
        &self,
        name: &str,
        config: &HubConfig,
        trust: &TrustStore,
        sync: &SyncManager,
    ) -> Result<(), SubscriptionError> {
        let key = name.to_ascii_lowercase();
        let raw = self
            .tree
            .get(key.as_bytes())?
            .ok_or_else(|| SubscriptionError::NotFound(name.to_owned()))?;
        let sub: Subscription =
            serde_json::from_slice(&raw).map_err(|e| SubscriptionError::Corrupt(e.to_string()))?;
        sync.stop(&sub.edge_name);
        self.tree.remove(key.as_bytes())?;
        self.db.flush()?;
        trust.set_direct(self.trusted()?);
        let edge_name =
            NodeName::parse(&sub.edge_name).map_err(|e| SubscriptionError::Corrupt(e.to_string()))?;
        let mut ops = vec![ChangeOp::Delete(ObjectKey::of("edge", &sub.edge_name))];
        ops.extend(site_connectors(config, &sub.site, None, Some(&edge_name))?);
        config.apply(ops)?;
        tracing::info!(edge = %sub.edge_name, "edge subscription removed");
        Ok(())
    }
}

impl Subscriptions {
    /// Rewrites every site's EdgeSync connectors (after accepted domains
    /// or hubs changed).
    pub fn refresh_sites(&self, config: &HubConfig) -> Result<(), SubscriptionError> {
        let mut sites: Vec<String> = self.list()?.into_iter().map(|s| s.site).collect();
        sites.sort();
        sites.dedup();
        let mut ops = Vec::new();
        for site in sites {
            ops.extend(site_connectors(config, &site, None, None)?);
        }
        if !ops.is_empty() {
            config.apply(ops)?;
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
        .list("hub")?
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
        let existing = match config.get("send-connector", &name) {
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
        .list("accepted-domain")?
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
