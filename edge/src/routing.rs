//! The edge's routing, read from the compiled configuration in force
//! ([`NodeConfig`], compiled from the replica at each EdgeSync change; one
//! snapshot per decision, never the replica itself), so an EdgeSync change
//! applies to the next message: recipients of accepted
//! domains go to the hubs (after recipient filtering against the hashed
//! mailboxes), other mail from the organisation goes out through the send
//! connector that serves the domain; domain security applies to senders on
//! the receive list and to recipients on the send list.
//!
//! A mailbox with a home hub (issue 16) is routed to that hub first
//! ([`NextHop::HomeHub`], `hubs:NAME`), so its mail reaches the home directly; the other hubs
//! follow in the host list, so mail still leaves the edge while the home
//! is down (the hub that takes it queues it for the home).

use std::sync::Arc;

use postern_model::{AcceptedDomainKind, Domain, MailboxDelivery, NodeName, TransportConfig};
use postern_transport::connectors::{best_connector, connector_hop, connector_next_hop};
use postern_transport::domain_security::{self, InboundDomainSecurity};
use postern_transport::node_config::NodeConfig;
use postern_transport::routing::{
    Destination, HostPort, NextHop, Origin, RouteRefusal, Router, SmtpHop, Stamp, TlsRequirement,
};
use postern_transport::smtp::{Mailbox, Reply};
use tokio::sync::watch;

/// Routing of an edge.
pub struct EdgeRouter {
    snapshots: watch::Receiver<Arc<NodeConfig>>,
    name: NodeName,
    fqdn: Domain,
}

impl EdgeRouter {
    /// Routes for the edge `name` (`fqdn`) from the compiled configuration
    /// in force (`snapshots`, compiled from the replica).
    pub fn new(snapshots: watch::Receiver<Arc<NodeConfig>>, name: NodeName, fqdn: Domain) -> Self {
        Self {
            snapshots,
            name,
            fqdn,
        }
    }

    /// The snapshot in force; one per decision, so a decision never mixes two.
    fn config(&self) -> Arc<NodeConfig> {
        Arc::clone(&self.snapshots.borrow())
    }

    fn transport_config(&self) -> TransportConfig {
        self.config().transport.clone()
    }

    /// The key for a mailbox of the organisation: its home hub first when
    /// it has one and its domain is not delivered over LMTP (any hub
    /// speaks to the mailbox server), else any hub.
    fn mailbox_hop(&self, config: &NodeConfig, rcpt: &Mailbox) -> NextHop {
        let lmtp = config
            .organisation
            .accepted_domain(rcpt.domain())
            .is_some_and(|d| matches!(d.delivery, MailboxDelivery::Lmtp(_)));
        match config.mailboxes.find(&rcpt.to_string()) {
            Some(entry) if !lmtp => match &entry.home {
                Some(home) => NextHop::HomeHub(home.clone()),
                None => NextHop::Hubs,
            },
            _ => NextHop::Hubs,
        }
    }

    fn outbound(&self, config: &NodeConfig, domain: &Domain) -> Result<NextHop, RouteRefusal> {
        // Inbound connectors serve the organisation's own domains (handled above).
        let outward: Vec<_> = config
            .organisation
            .send_connectors
            .iter()
            .filter(|c| !c.name.starts_with("EdgeSync - Inbound to "))
            .cloned()
            .collect();
        let local = best_connector(&outward, domain, Some(&self.name));
        let standalone = best_connector(&outward, domain, None);
        match local.or(standalone) {
            Some(c) => Ok(connector_next_hop(c, domain)),
            None => Err(RouteRefusal(Reply::simple(
                550,
                (5, 4, 4),
                format!("No send connector serves {domain}"),
            ))),
        }
    }

    /// The hop to the hubs under `key`: every hub, in a rotating order to
    /// spread the load, except that the `home` hub (of a `hubs:NAME` key)
    /// comes first (its mailboxes' home).
    fn hubs_hop(&self, config: &NodeConfig, key: &NextHop, home: Option<&NodeName>) -> Option<SmtpHop> {
        let (mut first, mut hosts): (Vec<HostPort>, Vec<HostPort>) = (Vec::new(), Vec::new());
        for hub in &config.organisation.hubs {
            if home.is_some_and(|home| hub.name == *home) {
                first.push(hub.smtp.clone());
            } else {
                hosts.push(hub.smtp.clone());
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
            key: key.clone(),
            hosts,
            tls: TlsRequirement::ORGANISATION,
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
    fn next_hop(&self, rcpt: &Mailbox) -> Result<NextHop, RouteRefusal> {
        // Internal decisions (DSNs, reroutes): the organisation may relay.
        let config = self.config();
        let hop = match config.organisation.accepted(rcpt.domain()) {
            Some(AcceptedDomainKind::ExternalRelay) | None => self.outbound(&config, rcpt.domain())?,
            Some(_) => NextHop::Hubs,
        };
        Ok(hop)
    }

    fn next_hop_from(
        &self,
        rcpt: &Mailbox,
        sender: Option<&Mailbox>,
        origin: &Origin,
    ) -> Result<NextHop, RouteRefusal> {
        if let Some(refusal) = self.domain_security(sender, origin).refusal() {
            return Err(RouteRefusal(refusal));
        }
        let config = self.config();
        let hop = match config.organisation.accepted(rcpt.domain()) {
            Some(AcceptedDomainKind::Authoritative) => {
                if config.mailboxes.find(&rcpt.to_string()).is_some() {
                    self.mailbox_hop(&config, rcpt)
                } else {
                    return Err(RouteRefusal(Reply::simple(550, (5, 1, 1), "Recipient not found")));
                }
            }
            Some(AcceptedDomainKind::InternalRelay) => self.mailbox_hop(&config, rcpt),
            Some(AcceptedDomainKind::ExternalRelay) => self.outbound(&config, rcpt.domain())?,
            None if origin.relay_allowed => self.outbound(&config, rcpt.domain())?,
            None => return Err(RouteRefusal(Reply::relay_denied())),
        };
        Ok(hop)
    }

    fn destination(&self, hop: &NextHop) -> Option<Destination> {
        let config = self.config();
        let (name, domain) = match hop {
            NextHop::Hubs => return self.hubs_hop(&config, hop, None).map(Destination::Smtp),
            NextHop::HomeHub(home) => return self.hubs_hop(&config, hop, Some(home)).map(Destination::Smtp),
            NextHop::Connector { name, domain } => (name, domain),
            // A hub's hops, MX hops of hand-built routers, a DSN's domain:
            // routed again by the worker.
            NextHop::Local
            | NextHop::Edges
            | NextHop::Hub(_)
            | NextHop::Lmtp(_)
            | NextHop::Mx(_)
            | NextHop::Domain(_) => return None,
        };
        let connector = config.organisation.send_connector(name)?;
        let domain = match domain {
            Some(d) => d.clone(),
            None => connector
                .smart_hosts
                .first()
                .and_then(|h| Domain::parse(&postern_transport::connectors::parse_host(h, 25).host).ok())?,
        };
        let hop = connector_hop(connector, &domain, &config.transport, &self.fqdn);
        Some(Destination::Smtp(hop))
    }

    fn is_domain_secured(&self, hop: &NextHop) -> bool {
        let NextHop::Connector {
            name,
            domain: Some(domain),
        } = hop
        else {
            return false;
        };
        let config = self.config();
        config.organisation.send_connector(name).is_some_and(|c| {
            postern_transport::domain_security::is_domain_secured(c, domain, &config.transport)
        })
    }

    fn authserv_ids(&self) -> Vec<Domain> {
        let mut ids = self.config().organisation.authserv_ids();
        ids.push(self.fqdn.clone());
        ids
    }

    fn stamp(&self, sender: Option<&Mailbox>, origin: &Origin) -> Stamp {
        self.domain_security(sender, origin).stamp(&self.fqdn)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use postern_model::{
        AcceptedDomain, AddressSpace, HubInfo, MailboxEntry, ReplicatedObject, SendConnector, TransportConfig,
    };

    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    fn hub(name: &str, endpoint: &str) -> ReplicatedObject {
        ReplicatedObject::Hub(HubInfo {
            name: NodeName::parse(name).unwrap(),
            fqdn: d(&format!("{}.contoso.com", name.to_ascii_lowercase())),
            smtp_endpoint: endpoint.into(),
            certificates: Vec::new(),
        })
    }

    fn snapshot(objects: Vec<ReplicatedObject>, transport: TransportConfig) -> Arc<NodeConfig> {
        Arc::new(NodeConfig::of_objects(1, transport, objects))
    }

    fn objects() -> Vec<ReplicatedObject> {
        let mut partner = SendConnector::new("Partner", vec![AddressSpace::parse("fabrikam.com").unwrap()]);
        partner.domain_secure_enabled = true;
        vec![
            ReplicatedObject::AcceptedDomain(AcceptedDomain {
                name: d("contoso.com"),
                kind: AcceptedDomainKind::Authoritative,
                delivery: MailboxDelivery::Maildir,
            }),
            ReplicatedObject::Mailbox(MailboxEntry::new(
                "kim@contoso.com",
                Some(NodeName::parse("HUB2").unwrap()),
            )),
            hub("HUB1", "10.0.0.1:25"),
            hub("HUB2", "10.0.0.2:25"),
            ReplicatedObject::SendConnector(partner),
        ]
    }

    fn mailbox(s: &str) -> Mailbox {
        Mailbox::parse(s).unwrap()
    }

    #[test]
    fn the_edge_routes_from_the_snapshot_in_force() {
        let transport = TransportConfig {
            tls_send_domain_secure_list: vec![d("fabrikam.com")],
            ..TransportConfig::default()
        };
        let (tx, rx) = watch::channel(snapshot(objects(), transport));
        let router = EdgeRouter::new(rx, NodeName::parse("EDGE1").unwrap(), d("edge1.contoso.com"));
        let internet = Origin::anonymous("Default");

        // The recipient filter and the home hub first.
        let key = router
            .next_hop_from(&mailbox("kim@contoso.com"), None, &internet)
            .unwrap();
        assert_eq!(key.to_string(), "hubs:hub2");
        let Some(Destination::Smtp(hop)) = router.destination(&key) else {
            panic!("no hop to the hubs");
        };
        assert_eq!(
            hop.hosts[0],
            HostPort {
                host: "10.0.0.2".into(),
                port: 25
            }
        );
        assert_eq!(hop.hosts.len(), 2);
        let refusal = router
            .next_hop_from(&mailbox("nobody@contoso.com"), None, &internet)
            .unwrap_err();
        assert_eq!(refusal.0.code(), 550);

        // The send list makes the partner's hop domain-secured.
        let key = router.next_hop(&mailbox("ann@fabrikam.com")).unwrap();
        assert_eq!(key.to_string(), "connector:partner|fabrikam.com");
        assert!(router.is_domain_secured(&key));
        let Some(Destination::Smtp(hop)) = router.destination(&key) else {
            panic!("no partner hop");
        };
        assert_eq!(hop.tls, domain_security::domain_secured(d("fabrikam.com")));

        // fabrikam.com off the list: the next decision reads the new snapshot.
        tx.send(snapshot(objects(), TransportConfig::default())).unwrap();
        assert!(!router.is_domain_secured(&key));
        let Some(Destination::Smtp(hop)) = router.destination(&key) else {
            panic!("no partner hop");
        };
        assert_eq!(hop.tls, TlsRequirement::OPPORTUNISTIC);
        assert_eq!(
            router.authserv_ids(),
            vec![
                d("hub1.contoso.com"),
                d("hub2.contoso.com"),
                d("edge1.contoso.com")
            ]
        );
    }
}
