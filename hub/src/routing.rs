//! The hub's routing, read from the authoritative configuration on every
//! decision: mailboxes of accepted domains are delivered locally (unknown
//! ones refused), everything else goes out through the subscribed edges
//! over mutual TLS with direct trust — for sessions allowed to relay
//! (organisation nodes, client submission).

use postern_model::{AcceptedDomainKind, Domain, ReplicatedObject};
use postern_transport::connectors::parse_host;
use postern_transport::routing::{
    Destination, HostPort, LOCAL_HOP, Origin, OutboundTls, RouteRefusal, Router, SmtpHop,
};
use postern_transport::smtp::{Mailbox, Reply};

use crate::config::HubConfig;

/// The next-hop key of mail for the organisation's edges.
pub const EDGES_HOP: &str = "edges";

/// Routing of a hub.
pub struct HubRouter {
    config: HubConfig,
    fqdn: Domain,
}

impl HubRouter {
    /// Routes for the hub `fqdn` from `config`.
    pub fn new(config: HubConfig, fqdn: Domain) -> Self {
        Self { config, fqdn }
    }

    fn accepted(&self, domain: &Domain) -> Option<AcceptedDomainKind> {
        match self.config.get("accepted-domain", domain.as_str()) {
            Ok(ReplicatedObject::AcceptedDomain(d)) => Some(d.kind),
            _ => None,
        }
    }

    fn has_mailbox(&self, rcpt: &Mailbox) -> bool {
        self.config.get("mailbox", &rcpt.to_string()).is_ok()
    }

    fn edges_hop(&self) -> Option<SmtpHop> {
        let mut hosts: Vec<HostPort> = self
            .config
            .list("edge")
            .unwrap_or_default()
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
        Some(SmtpHop {
            key: EDGES_HOP.to_owned(),
            hosts,
            tls: OutboundTls::ORGANISATION,
            tls_name: None,
            helo: self.fqdn.clone(),
            protocol_logging_level: Default::default(),
            mx_domain: None,
        })
    }
}

impl Router for HubRouter {
    fn next_hop(&self, rcpt: &Mailbox) -> Result<String, RouteRefusal> {
        match self.accepted(rcpt.domain()) {
            Some(AcceptedDomainKind::Authoritative) if self.has_mailbox(rcpt) => Ok(LOCAL_HOP.to_owned()),
            Some(AcceptedDomainKind::Authoritative) => {
                Err(RouteRefusal(Reply::simple(550, (5, 1, 1), "Recipient not found")))
            }
            Some(AcceptedDomainKind::InternalRelay) if self.has_mailbox(rcpt) => Ok(LOCAL_HOP.to_owned()),
            _ => Ok(EDGES_HOP.to_owned()),
        }
    }

    fn next_hop_from(
        &self,
        rcpt: &Mailbox,
        _sender: Option<&Mailbox>,
        origin: &Origin,
    ) -> Result<String, RouteRefusal> {
        let key = self.next_hop(rcpt)?;
        if key == EDGES_HOP && !origin.relay_allowed && self.accepted(rcpt.domain()).is_none() {
            return Err(RouteRefusal(Reply::relay_denied()));
        }
        Ok(key)
    }

    fn destination(&self, key: &str) -> Option<Destination> {
        match key {
            LOCAL_HOP => Some(Destination::Local),
            EDGES_HOP => self.edges_hop().map(Destination::Smtp),
            _ => None,
        }
    }
}
