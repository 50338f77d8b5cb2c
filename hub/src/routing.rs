//! The hub's routing, read from the authoritative configuration on every
//! decision: a mailbox of an accepted domain is delivered at its home —
//! this hub's Maildir (`local`), another hub's (relayed to that hub over
//! mutual TLS, key `hub:NAME`; while it is down the mail waits here), or
//! the domain's mailbox server over LMTP when the domain says so (key
//! `lmtp:DOMAIN`) — and unknown ones are refused; everything else goes out through the subscribed edges
//! over mutual TLS with direct trust — or, in an organisation without
//! edges, from the hub through its send connector without source edges —
//! for sessions allowed to relay (organisation nodes, client submission).

use postern_model::{
    AcceptedDomain, AcceptedDomainKind, Domain, MailboxDelivery, NodeName, ObjectKind, ProtocolLoggingLevel,
    ReplicatedObject, SendConnector, TransportConfig,
};
use postern_transport::connectors::{
    best_connector, connector_hop, connector_key, parse_connector_key, parse_host,
};
use postern_transport::domain_security::is_domain_secured;
use postern_transport::routing::{
    Destination, HostPort, LOCAL_HOP, Origin, OutboundTls, RouteRefusal, Router, SmtpHop,
};
use postern_transport::smtp::{Mailbox, Reply};

use crate::config::HubConfig;

/// The next-hop key of mail for the organisation's edges.
pub const EDGES_HOP: &str = "edges";

/// The prefix of the next-hop key of a domain whose mailboxes are on a
/// mailbox server (`lmtp:DOMAIN`): one key per domain, so the key keeps
/// routing to wherever the domain's delivery points now.
pub const LMTP_HOP_PREFIX: &str = "lmtp:";

/// The prefix of the next-hop key of mail for mailboxes homed on another
/// hub (`hub:NAME`, the name lower-cased): that hub only, so the mail
/// waits here while it is down and is delivered once, there.
pub const HUB_HOP_PREFIX: &str = "hub:";

/// Routing of a hub.
pub struct HubRouter {
    config: HubConfig,
    name: NodeName,
    fqdn: Domain,
}

impl HubRouter {
    /// Routes for the hub `name` (`fqdn`) from `config`.
    pub fn new(config: HubConfig, name: NodeName, fqdn: Domain) -> Self {
        Self { config, name, fqdn }
    }

    fn accepted_domain(&self, domain: &Domain) -> Option<AcceptedDomain> {
        match self.config.get(ObjectKind::AcceptedDomain, domain.as_str()) {
            Ok(ReplicatedObject::AcceptedDomain(d)) => Some(d),
            _ => None,
        }
    }

    fn accepted(&self, domain: &Domain) -> Option<AcceptedDomainKind> {
        self.accepted_domain(domain).map(|d| d.kind)
    }

    /// The key of a mailbox of ours: the mailbox server of its domain, or
    /// its home hub's Maildir (this hub's when it has no home).
    fn mailbox_hop(&self, rcpt: &Mailbox) -> String {
        if let Some(MailboxDelivery::Lmtp(_)) = self.accepted_domain(rcpt.domain()).map(|d| d.delivery) {
            return format!("{LMTP_HOP_PREFIX}{}", rcpt.domain());
        }
        let home = match self.config.mailbox_entry(&rcpt.to_string()) {
            Ok(entry) => entry.and_then(|e| e.home),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a mailbox's home; delivering here");
                None
            }
        };
        match home {
            Some(hub) if hub != self.name => hub_key(&hub),
            _ => LOCAL_HOP.to_owned(),
        }
    }

    /// The hop to the hub of `key` (`hub:NAME`): its organisation
    /// connector, mutual TLS with direct trust, as edges reach hubs.
    /// This hub's own name means local delivery (a mailbox moved back
    /// here while mail for it was queued).
    fn hub_destination(&self, key: &str) -> Option<Destination> {
        let name = key.strip_prefix(HUB_HOP_PREFIX)?;
        if self.name.as_str().eq_ignore_ascii_case(name) {
            return Some(Destination::Local);
        }
        let hub = self
            .config
            .list(ObjectKind::Hub)
            .unwrap_or_default()
            .into_iter()
            .find_map(|o| match o {
                ReplicatedObject::Hub(h) if h.name.as_str().eq_ignore_ascii_case(name) => Some(h),
                _ => None,
            })?;
        let hosts = vec![parse_host(&hub.smtp_endpoint, 25)];
        Some(Destination::Smtp(self.organisation_hop(key, hosts)))
    }

    /// A hop to nodes of the organisation: mutual TLS with direct trust.
    fn organisation_hop(&self, key: &str, hosts: Vec<HostPort>) -> SmtpHop {
        SmtpHop {
            key: key.to_owned(),
            hosts,
            tls: OutboundTls::ORGANISATION,
            tls_name: None,
            helo: self.fqdn.clone(),
            protocol_logging_level: Default::default(),
            mx_domain: None,
            connector: Some(postern_transport::routing::INTRA_ORGANIZATION_CONNECTOR.to_owned()),
        }
    }

    /// The LMTP hop of `key` (`lmtp:DOMAIN`) while that domain's mailboxes
    /// are on a mailbox server: STARTTLS when the server offers it
    /// (encryption only: a mailbox server's certificate is usually its
    /// own), every session in the send protocol log.
    fn lmtp_hop(&self, key: &str) -> Option<SmtpHop> {
        let domain = Domain::parse(key.strip_prefix(LMTP_HOP_PREFIX)?).ok()?;
        let MailboxDelivery::Lmtp(server) = self.accepted_domain(&domain)?.delivery else {
            return None;
        };
        Some(SmtpHop {
            key: key.to_owned(),
            hosts: vec![HostPort {
                host: server.host,
                port: server.port,
            }],
            tls: OutboundTls::Opportunistic,
            tls_name: None,
            helo: self.fqdn.clone(),
            protocol_logging_level: ProtocolLoggingLevel::Verbose,
            mx_domain: None,
            // The send protocol log names the hop's key (`lmtp:DOMAIN`).
            connector: None,
        })
    }

    fn has_mailbox(&self, rcpt: &Mailbox) -> bool {
        self.config.get(ObjectKind::Mailbox, &rcpt.to_string()).is_ok()
    }

    fn send_connectors(&self) -> Vec<SendConnector> {
        match self.config.list(ObjectKind::SendConnector) {
            Ok(objects) => objects
                .into_iter()
                .filter_map(|o| match o {
                    ReplicatedObject::SendConnector(c) => Some(c),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the send connectors");
                Vec::new()
            }
        }
    }

    fn has_edges(&self) -> bool {
        self.config
            .list(ObjectKind::Edge)
            .is_ok_and(|edges| !edges.is_empty())
    }

    /// Mail leaving the organisation: through the subscribed edges; an
    /// organisation without edges (the seed's one-server case) sends from
    /// the hub through the send connector without source edges that serves
    /// the domain.
    fn outbound(&self, domain: &Domain) -> String {
        if !self.has_edges() {
            let connectors = self.send_connectors();
            if let Some(c) = best_connector(&connectors, domain, None) {
                return connector_key(c, domain);
            }
        }
        EDGES_HOP.to_owned()
    }

    /// The connector and domain a hub-sent next-hop key names.
    fn connector_of(&self, key: &str) -> Option<(SendConnector, Domain)> {
        let (name, domain) = parse_connector_key(key)?;
        let connector = self
            .send_connectors()
            .into_iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))?;
        let domain = match domain {
            Some(d) => Domain::parse(d).ok()?,
            None => connector
                .smart_hosts
                .first()
                .and_then(|h| Domain::parse(&parse_host(h, 25).host).ok())?,
        };
        Some((connector, domain))
    }

    fn transport_config(&self) -> TransportConfig {
        match self.config.transport_config() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the transport configuration; using the defaults for this hop");
                TransportConfig::default()
            }
        }
    }

    fn edges_hop(&self) -> Option<SmtpHop> {
        let mut hosts: Vec<HostPort> = self
            .config
            .list(ObjectKind::Edge)
            .inspect_err(
                |e| tracing::error!(error = %e, "cannot read the edges from the store; no route to them"),
            )
            .ok()?
            .into_iter()
            .filter_map(|o| match o {
                ReplicatedObject::Edge(e) => Some(parse_host(&e.smtp_endpoint, 25)),
                _ => None,
            })
            .collect();
        if hosts.is_empty() {
            return None;
        }
        let start = rand::random::<u32>() as usize % hosts.len();
        hosts.rotate_left(start);
        Some(self.organisation_hop(EDGES_HOP, hosts))
    }
}

/// The next-hop key of mail for mailboxes homed on `hub`.
pub fn hub_key(hub: &NodeName) -> String {
    format!("{HUB_HOP_PREFIX}{}", hub.as_str().to_ascii_lowercase())
}

impl Router for HubRouter {
    fn next_hop(&self, rcpt: &Mailbox) -> Result<String, RouteRefusal> {
        match self.accepted(rcpt.domain()) {
            Some(AcceptedDomainKind::Authoritative) if self.has_mailbox(rcpt) => Ok(self.mailbox_hop(rcpt)),
            Some(AcceptedDomainKind::Authoritative) => {
                Err(RouteRefusal(Reply::simple(550, (5, 1, 1), "Recipient not found")))
            }
            Some(AcceptedDomainKind::InternalRelay) if self.has_mailbox(rcpt) => Ok(self.mailbox_hop(rcpt)),
            Some(_) => Ok(EDGES_HOP.to_owned()),
            None => Ok(self.outbound(rcpt.domain())),
        }
    }

    fn authserv_ids(&self) -> Vec<Domain> {
        let mut ids: Vec<Domain> = [ObjectKind::Hub, ObjectKind::Edge]
            .iter()
            .flat_map(|kind| {
                // A read error must not pass for "no other nodes" silently:
                // forged results naming them would then go through unseen.
                self.config
                    .list(*kind)
                    .inspect_err(|e| tracing::error!(error = %e, kind = %kind, "cannot read the organisation's nodes; only this hub's name is screened"))
                    .into_iter()
                    .flatten()
            })
            .filter_map(|o| match o {
                ReplicatedObject::Hub(h) => Some(h.fqdn),
                ReplicatedObject::Edge(e) => Some(e.fqdn),
                _ => None,
            })
            .collect();
        ids.push(self.fqdn.clone());
        ids
    }

    fn next_hop_from(
        &self,
        rcpt: &Mailbox,
        _sender: Option<&Mailbox>,
        origin: &Origin,
    ) -> Result<String, RouteRefusal> {
        let key = self.next_hop(rcpt)?;
        if key != LOCAL_HOP && !origin.relay_allowed && self.accepted(rcpt.domain()).is_none() {
            return Err(RouteRefusal(Reply::relay_denied()));
        }
        Ok(key)
    }

    fn destination(&self, key: &str) -> Option<Destination> {
        match key {
            LOCAL_HOP => Some(Destination::Local),
            EDGES_HOP => self.edges_hop().map(Destination::Smtp),
            _ if key.starts_with(LMTP_HOP_PREFIX) => self.lmtp_hop(key).map(Destination::Lmtp),
            _ if key.starts_with(HUB_HOP_PREFIX) => self.hub_destination(key),
            _ => {
                let (connector, domain) = self.connector_of(key)?;
                let hop = connector_hop(&connector, &domain, &self.transport_config(), &self.fqdn);
                Some(Destination::Smtp(hop))
            }
        }
    }

    fn is_domain_secured(&self, key: &str) -> bool {
        self.connector_of(key)
            .is_some_and(|(c, domain)| is_domain_secured(&c, &domain, &self.transport_config()))
    }
}
