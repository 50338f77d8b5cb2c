//! The parts of a [`NodeConfig`](super::NodeConfig) that routing and trust
//! act on, compiled from the replicated objects of the hub's store or the
//! edge's replica: the accepted domains, the send connectors, the
//! organisation's nodes ([`Organisation`]), the mailboxes ([`MailboxIndex`])
//! and the trust anchors ([`TrustAnchors`]).
//!
//! Each part is compiled on its own and kept behind an `Arc`; a part equal
//! to the one in force keeps the previous `Arc`, so followers (the trust
//! store) see at a pointer comparison that nothing changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use postern_model::{
    AcceptedDomain, AcceptedDomainKind, Domain, MailboxEntry, MailboxHash, NodeName, ReplicatedObject,
    SendConnector, Thumbprint,
};

use crate::connectors::parse_host;
use crate::routing::{HostPort, SMTP_PORT};

/// A hub of the organisation as routing knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubNode {
    /// The hub's name.
    pub name: NodeName,
    /// Its FQDN (an authserv-id of the organisation).
    pub fqdn: Domain,
    /// Where it takes mail from the organisation's nodes, parsed once.
    pub smtp: HostPort,
}

/// An edge of the organisation as routing knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeNode {
    /// The edge's name.
    pub name: NodeName,
    /// Its FQDN (an authserv-id of the organisation).
    pub fqdn: Domain,
    /// Where it takes mail from the hubs, parsed once.
    pub smtp: HostPort,
}

/// The accepted domains, send connectors and nodes of the organisation:
/// what the routers decide with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Organisation {
    accepted: HashMap<Domain, AcceptedDomain>,
    /// The send connectors, in the store's order.
    pub send_connectors: Vec<SendConnector>,
    /// The hubs, in the store's order.
    pub hubs: Vec<HubNode>,
    /// The subscribed edges, in the store's order.
    pub edges: Vec<EdgeNode>,
}

impl Organisation {
    /// Compiles the organisation from its replicated objects (other kinds
    /// are ignored).
    pub fn compile(objects: impl IntoIterator<Item = ReplicatedObject>) -> Self {
        let mut organisation = Self::default();
        for object in objects {
            match object {
                ReplicatedObject::AcceptedDomain(d) => {
                    organisation.accepted.insert(d.name.clone(), d);
                }
                ReplicatedObject::SendConnector(c) => organisation.send_connectors.push(c),
                ReplicatedObject::Hub(h) => organisation.hubs.push(HubNode {
                    smtp: parse_host(&h.smtp_endpoint, SMTP_PORT),
                    name: h.name,
                    fqdn: h.fqdn,
                }),
                ReplicatedObject::Edge(e) => organisation.edges.push(EdgeNode {
                    smtp: parse_host(&e.smtp_endpoint, SMTP_PORT),
                    name: e.name,
                    fqdn: e.fqdn,
                }),
                ReplicatedObject::TransportConfig(_)
                | ReplicatedObject::Mailbox(_)
                | ReplicatedObject::TrustedRoot(_) => {}
            }
        }
        organisation
    }

    /// The accepted domain `domain`, if the organisation accepts it.
    pub fn accepted_domain(&self, domain: &Domain) -> Option<&AcceptedDomain> {
        self.accepted.get(domain)
    }

    /// How the organisation treats `domain`; `None`: not accepted.
    pub fn accepted(&self, domain: &Domain) -> Option<AcceptedDomainKind> {
        self.accepted_domain(domain).map(|d| d.kind)
    }

    /// Every accepted domain (in no particular order).
    pub fn accepted_domains(&self) -> impl Iterator<Item = &AcceptedDomain> {
        self.accepted.values()
    }

    /// The send connector called `name` (case-insensitive).
    pub fn send_connector(&self, name: &str) -> Option<&SendConnector> {
        self.send_connectors
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The hub called `name` (case-insensitive).
    pub fn hub(&self, name: &str) -> Option<&HubNode> {
        self.hubs
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
    }

    /// The FQDNs of the organisation's hubs and edges: its authserv-ids
    /// (RFC 8601).
    pub fn authserv_ids(&self) -> Vec<Domain> {
        self.hubs
            .iter()
            .map(|h| h.fqdn.clone())
            .chain(self.edges.iter().map(|e| e.fqdn.clone()))
            .collect()
    }
}

/// The organisation's mailboxes by the hash of their address: the
/// recipient filter and each mailbox's home hub.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxIndex {
    entries: HashMap<MailboxHash, MailboxEntry>,
}

impl MailboxIndex {
    /// Compiles the index from replicated objects (other kinds are ignored).
    pub fn compile(objects: impl IntoIterator<Item = ReplicatedObject>) -> Self {
        let entries = objects
            .into_iter()
            .filter_map(|o| match o {
                ReplicatedObject::Mailbox(m) => Some((m.hash.clone(), m)),
                _ => None,
            })
            .collect();
        Self { entries }
    }

    /// The mailbox of `address` (case-insensitive), if it exists.
    pub fn find(&self, address: &str) -> Option<&MailboxEntry> {
        self.entries.get(&MailboxHash::of(address))
    }

    /// How many mailboxes the organisation has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the organisation has no mailbox.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Whom the node trusts besides the public roots: certificates pinned by
/// thumbprint (direct trust of the organisation's hubs and edges) and the
/// administrator's trusted roots (PKI).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustAnchors {
    /// Thumbprints trusted directly.
    pub direct: BTreeSet<Thumbprint>,
    /// The trusted roots, DER, in the store's order.
    pub roots: Vec<Vec<u8>>,
}

impl TrustAnchors {
    /// Compiles the anchors from replicated objects (every hub's published
    /// certificates, the trusted roots) and the certificates the node pins
    /// besides (a hub's subscribed edges).
    pub fn compile(objects: impl IntoIterator<Item = ReplicatedObject>, pinned: Vec<Thumbprint>) -> Self {
        let mut anchors = Self {
            direct: pinned.into_iter().collect(),
            roots: Vec::new(),
        };
        for object in objects {
            match object {
                ReplicatedObject::Hub(h) => anchors
                    .direct
                    .extend(h.certificates.iter().map(|der| Thumbprint::of_der(der))),
                ReplicatedObject::TrustedRoot(r) => anchors.roots.push(r.der),
                _ => {}
            }
        }
        anchors
    }
}

/// `next` behind an `Arc`, or `previous` itself when it is equal: an
/// unchanged part keeps its `Arc`.
pub(super) fn reuse<T: PartialEq>(previous: Option<&Arc<T>>, next: T) -> Arc<T> {
    match previous {
        Some(p) if **p == next => Arc::clone(p),
        _ => Arc::new(next),
    }
}
