//! The edge's routing, read from its replica on every decision so an
//! EdgeSync change applies to the next message: recipients of accepted
//! domains go to the hubs (after recipient filtering against the hashed
//! mailboxes), other mail from the organisation goes out through the send
//! connector that serves the domain; domain security applies to senders on
//! the receive list and to recipients on the send list.
//!
//! A mailbox with a home hub (issue 16) is routed to that hub first (key
//! `hubs:NAME`), so its mail reaches the home directly; the other hubs
//! follow in the host list, so mail still leaves the edge while the home
//! is down (the hub that takes it queues it for the home).

use std::sync::{Arc, Mutex};

use postern_edgesync::{Applied, Replica};
use postern_model::{
    AcceptedDomainKind, Domain, MailboxDelivery, MailboxHash, NodeName, ObjectKey, ObjectKind,
    ReplicatedObject, SendConnector, TransportConfig,
};
use postern_transport::connectors::{best_connector, connector_hop, parse_connector_key};
use postern_transport::domain_security::{self, InboundDomainSecurity};
use postern_transport::routing::{
    Destination, HostPort, Origin, OutboundTls, RouteRefusal, Router, SmtpHop, Stamp,
};
use postern_transport::smtp::{Mailbox, Reply};
use tokio::sync::watch;

/// The next-hop key of mail for the organisation's hubs.
pub const HUBS_HOP: &str = "hubs";

/// The prefix of the next-hop key of mail for mailboxes homed on a hub
/// (`hubs:NAME`): that hub first, then the others.
pub const HOME_HUB_PREFIX: &str = "hubs:";

/// Routing of an edge.
pub struct EdgeRouter {
    replica: Replica,
    name: NodeName,
    fqdn: Domain,
    /// Transport config and send connectors as decoded at the replica's
    /// last change; reread only when the replica changes, not per message.
    view: Mutex<(watch::Receiver<Applied>, Arc<View>)>,
}

/// The replicated objects routing reads on every message.
struct View {
    config: TransportConfig,
    connectors: Vec<SendConnector>,
    /// The FQDNs of the organisation's hubs and edges (its authserv-ids).
    node_names: Vec<Domain>,
    /// Each hub's name and where it takes mail. Decoded here rather than
    /// per message: a hub object carries its certificates, which are
    /// costly to decode.
    hubs: Vec<(NodeName, HostPort)>,
}

impl View {
    /// Reads the view; an error says what could not be read (the caller
    /// keeps the view it has).
    fn load(replica: &Replica) -> Result<Self, String> {
        let config = match replica.get(&ObjectKey::of(ObjectKind::TransportConfig, "")) {
            Ok(Some(ReplicatedObject::TransportConfig(c))) => c,
            // Not subscribed yet: the defaults.
            Ok(None) => TransportConfig::default(),
            Ok(Some(other)) => return Err(format!("found {:?} under transport-config", other.key())),
            Err(e) => return Err(format!("cannot read the transport configuration: {e}")),
        };
        let connectors = replica
            .list(ObjectKind::SendConnector)
            .map_err(|e| format!("cannot read the send connectors: {e}"))?
            .into_iter()
            .filter_map(|o| match o {
                ReplicatedObject::SendConnector(c) => Some(c),
                _ => None,
            })
            .collect();
        let mut node_names = Vec::new();
        let mut hubs = Vec::new();
        for kind in [ObjectKind::Hub, ObjectKind::Edge] {
            let objects = replica
                .list(kind)
                .map_err(|e| format!("cannot read the organisation's {kind} records: {e}"))?;
            for object in objects {
                match object {
                    ReplicatedObject::Hub(h) => {
                        hubs.push((
                            h.name,
                            postern_transport::connectors::parse_host(&h.smtp_endpoint, 25),
                        ));
                        node_names.push(h.fqdn);
                    }
                    ReplicatedObject::Edge(e) => node_names.push(e.fqdn),
                    _ => {}
                }
            }
        }
        Ok(Self {
            config,
            connectors,
            node_names,
            hubs,
        })
    }

    /// [`View::load`], or on a read error the logged error and `previous`
    /// (an empty view at start).
    fn load_or_keep(replica: &Replica, previous: Option<&Arc<View>>) -> Arc<View> {
        match Self::load(replica) {
            Ok(view) => Arc::new(view),
            Err(why) => {
                tracing::error!(%why, "edge routing keeps its previous view of the replica");
                previous.cloned().unwrap_or_else(|| {
                    Arc::new(View {
                        config: TransportConfig::default(),
                        connectors: Vec::new(),
                        node_names: Vec::new(),
                        hubs: Vec::new(),
                    })
                })
            }
        }
    }
}

impl EdgeRouter {
    /// Routes for the edge `name` (`fqdn`) from `replica`.
    pub fn new(replica: Replica, name: NodeName, fqdn: Domain) -> Self {
        let watch = replica.watch();
        let view = View::load_or_keep(&replica, None);
        Self {
            replica,
            name,
            fqdn,
            view: Mutex::new((watch, view)),
        }
    }

    fn view(&self) -> Arc<View> {
        let mut guard = self.view.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0.has_changed().unwrap_or(false) {
            guard.0.borrow_and_update();
            guard.1 = View::load_or_keep(&self.replica, Some(&guard.1));
        }
        Arc::clone(&guard.1)
    }

    fn transport_config(&self) -> TransportConfig {
        self.view().config.clone()
    }

    fn accepted(&self, domain: &Domain) -> Option<AcceptedDomainKind> {
        match self
            .replica
            .get(&ObjectKey::of(ObjectKind::AcceptedDomain, domain.as_str()))
        {
            Ok(Some(ReplicatedObject::AcceptedDomain(d))) => Some(d.kind),
            _ => None,
        }
    }

    fn has_mailbox(&self, rcpt: &Mailbox) -> bool {
        let key = ObjectKey::mailbox(&MailboxHash::of(&rcpt.to_string()));
        matches!(self.replica.get(&key), Ok(Some(_)))
    }

    /// The key for a mailbox of the organisation: its home hub first when
    /// it has one and its domain is not delivered over LMTP (any hub
    /// speaks to the mailbox server), else any hub.
    fn mailbox_hop(&self, rcpt: &Mailbox) -> String {
        let lmtp = matches!(
            self.replica.get(&ObjectKey::of(ObjectKind::AcceptedDomain, rcpt.domain().as_str())),
            Ok(Some(ReplicatedObject::AcceptedDomain(d))) if matches!(d.delivery, MailboxDelivery::Lmtp(_))
        );
        let key = ObjectKey::mailbox(&MailboxHash::of(&rcpt.to_string()));
        match self.replica.get(&key) {
            Ok(Some(ReplicatedObject::Mailbox(entry))) if !lmtp => match entry.home {
                Some(home) => format!("{HOME_HUB_PREFIX}{}", home.as_str().to_ascii_lowercase()),
                None => HUBS_HOP.to_owned(),
            },
            _ => HUBS_HOP.to_owned(),
        }
    }

    fn connectors(&self) -> Vec<SendConnector> {
        self.view().connectors.clone()
    }

    fn outbound(&self, domain: &Domain) -> Result<String, RouteRefusal> {
        let connectors = self.connectors();
        // Inbound connectors serve the organisation's own domains (handled above).
        let outward: Vec<SendConnector> = connectors
            .into_iter()
            .filter(|c| !c.name.starts_with("EdgeSync - Inbound to "))
            .collect();
        let local = best_connector(&outward, domain, Some(&self.name));
        let standalone = best_connector(&outward, domain, None);
        match local.or(standalone) {
            Some(c) => Ok(postern_transport::connectors::connector_key(c, domain)),
            None => Err(RouteRefusal(Reply::simple(
                550,
                (5, 4, 4),
                format!("No send connector serves {domain}"),
            ))),
        }
    }

    /// The hop to the hubs under `key`: every hub, in a rotating order to
    /// spread the load, except that the hub named by a `hubs:NAME` key
    /// comes first (its mailboxes' home).
    fn hubs_hop(&self, key: &str) -> Option<SmtpHop> {
        let home = key.strip_prefix(HOME_HUB_PREFIX);
        let (mut first, mut hosts): (Vec<HostPort>, Vec<HostPort>) = (Vec::new(), Vec::new());
        for (name, host) in &self.view().hubs {
            if home.is_some_and(|home| name.as_str().eq_ignore_ascii_case(home)) {
                first.push(host.clone());
            } else {
                hosts.push(host.clone());
            }
        }
        if hosts.is_empty() && first.is_empty() {
            return None;
        }
        // Spread the load; a dead hub is skipped by the client.
        if !hosts.is_empty() {
            let start = rand::random::<u32>() as usize % hosts.len();
            hosts.rotate_left(start);
        }
        first.extend(hosts);
        let hosts = first;
        Some(SmtpHop {
            key: key.to_owned(),
            hosts,
            tls: OutboundTls::ORGANISATION,
            tls_name: None,
            helo: self.fqdn.clone(),
            protocol_logging_level: Default::default(),
            mx_domain: None,
            connector: Some(postern_transport::routing::INTRA_ORGANIZATION_CONNECTOR.to_owned()),
        })
    }

    /// Domain security for `sender` on a session of `origin`, under the
    /// replica's transport configuration.
    fn domain_security(&self, sender: Option<&Mailbox>, origin: &Origin) -> InboundDomainSecurity {
        domain_security::inbound(&self.transport_config(), sender, origin)
    }
}

impl Router for EdgeRouter {
    fn next_hop(&self, rcpt: &Mailbox) -> Result<String, RouteRefusal> {
        // Internal decisions (DSNs, reroutes): the organisation may relay.
        match self.accepted(rcpt.domain()) {
            Some(AcceptedDomainKind::ExternalRelay) | None => self.outbound(rcpt.domain()),
            Some(_) => Ok(HUBS_HOP.to_owned()),
        }
    }

    fn next_hop_from(
        &self,
        rcpt: &Mailbox,
        sender: Option<&Mailbox>,
        origin: &Origin,
    ) -> Result<String, RouteRefusal> {
        if let Some(refusal) = self.domain_security(sender, origin).refusal() {
            return Err(RouteRefusal(refusal));
        }
        match self.accepted(rcpt.domain()) {
            Some(AcceptedDomainKind::Authoritative) => {
                if self.has_mailbox(rcpt) {
                    Ok(self.mailbox_hop(rcpt))
                } else {
                    Err(RouteRefusal(Reply::simple(550, (5, 1, 1), "Recipient not found")))
                }
            }
            Some(AcceptedDomainKind::InternalRelay) => Ok(self.mailbox_hop(rcpt)),
            Some(AcceptedDomainKind::ExternalRelay) => self.outbound(rcpt.domain()),
            None if origin.relay_allowed => self.outbound(rcpt.domain()),
            None => Err(RouteRefusal(Reply::relay_denied())),
        }
    }

    fn destination(&self, key: &str) -> Option<Destination> {
        if key == HUBS_HOP || key.starts_with(HOME_HUB_PREFIX) {
            return self.hubs_hop(key).map(Destination::Smtp);
        }
        let (name, domain) = parse_connector_key(key)?;
        let connector = self
            .connectors()
            .into_iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))?;
        let domain = match domain {
            Some(d) => Domain::parse(d).ok()?,
            None => connector
                .smart_hosts
                .first()
                .and_then(|h| Domain::parse(&postern_transport::connectors::parse_host(h, 25).host).ok())?,
        };
        let hop = connector_hop(&connector, &domain, &self.transport_config(), &self.fqdn);
        Some(Destination::Smtp(hop))
    }

    fn is_domain_secured(&self, key: &str) -> bool {
        let Some((name, Some(domain))) = parse_connector_key(key) else {
            return false;
        };
        let Ok(domain) = Domain::parse(domain) else {
            return false;
        };
        self.connectors()
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .is_some_and(|c| domain_security::is_domain_secured(c, &domain, &self.transport_config()))
    }

    fn authserv_ids(&self) -> Vec<Domain> {
        let mut ids = self.view().node_names.clone();
        ids.push(self.fqdn.clone());
        ids
    }

    fn stamp(&self, sender: Option<&Mailbox>, origin: &Origin) -> Stamp {
        self.domain_security(sender, origin).stamp(&self.fqdn)
    }
}
