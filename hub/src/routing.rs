//! The hub's routing, read from the compiled configuration in force
//! ([`NodeConfig`], one snapshot per decision; never the store): a mailbox
//! of an accepted domain is delivered at its home — this hub's Maildir
//! ([`NextHop::Local`]), another hub's (relayed to that hub over mutual
//! TLS, [`NextHop::Hub`]; while it is down the mail waits here), or the
//! domain's mailbox server over LMTP when the domain says so
//! ([`NextHop::Lmtp`]) — and unknown ones are refused; everything else goes
//! out through the subscribed edges over mutual TLS with direct trust — or, in an organisation without
//! edges, from the hub through its send connector without source edges —
//! for sessions allowed to relay (organisation nodes, client submission).

use std::sync::Arc;

use postern_model::{
    AcceptedDomainKind, Domain, MailboxDelivery, NodeName, ProtocolLoggingLevel, SendConnector,
};
use postern_transport::connectors::{best_connector, connector_hop, connector_next_hop, parse_host};
use postern_transport::domain_security::is_domain_secured;
use postern_transport::node_config::NodeConfig;
use postern_transport::routing::{
    Destination, HostPort, NextHop, Origin, RouteRefusal, Router, SmtpHop, TlsRequirement,
};
use postern_transport::smtp::{Mailbox, Reply};
use tokio::sync::watch;

/// Routing of a hub.
pub struct HubRouter {
    snapshots: watch::Receiver<Arc<NodeConfig>>,
    name: NodeName,
    fqdn: Domain,
}

impl HubRouter {
    /// Routes for the hub `name` (`fqdn`) from the compiled configuration
    /// in force (`snapshots`).
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

    /// The hop of a mailbox of ours: the mailbox server of its domain
    /// (one hop per domain, so it keeps routing to wherever the domain's
    /// delivery points now), or its home hub's Maildir (this hub's when it
    /// has no home; another hub's only, so the mail waits here while that
    /// hub is down and is delivered once, there).
    fn mailbox_hop(&self, config: &NodeConfig, rcpt: &Mailbox) -> NextHop {
        if let Some(MailboxDelivery::Lmtp(_)) = config
            .organisation
            .accepted_domain(rcpt.domain())
            .map(|d| &d.delivery)
        {
            return NextHop::Lmtp(rcpt.domain().clone());
        }
        let home = config
            .mailboxes
            .find(&rcpt.to_string())
            .and_then(|e| e.home.as_ref());
        match home {
            Some(hub) if *hub != self.name => NextHop::Hub(hub.clone()),
            _ => NextHop::Local,
        }
    }

    /// The hop to the hub `name` (`hub:NAME`): its organisation
    /// connector, mutual TLS with direct trust, as edges reach hubs.
    /// This hub's own name means local delivery (a mailbox moved back
    /// here while mail for it was queued).
    fn hub_destination(&self, config: &NodeConfig, key: &NextHop, name: &NodeName) -> Option<Destination> {
        if self.name == *name {
            return Some(Destination::Local);
        }
        let hub = config.organisation.hub(name.as_str())?;
        Some(Destination::Smtp(
            self.organisation_hop(key.clone(), vec![hub.smtp.clone()]),
        ))
    }

    /// A hop to nodes of the organisation: mutual TLS with direct trust.
    fn organisation_hop(&self, key: NextHop, hosts: Vec<HostPort>) -> SmtpHop {
        SmtpHop {
            key,
            hosts,
            tls: TlsRequirement::ORGANISATION,
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
    fn lmtp_hop(&self, config: &NodeConfig, key: &NextHop, domain: &Domain) -> Option<SmtpHop> {
        let MailboxDelivery::Lmtp(server) = &config.organisation.accepted_domain(domain)?.delivery else {
            return None;
        };
        Some(SmtpHop {
            key: key.clone(),
            hosts: vec![HostPort {
                host: server.host.clone(),
                port: server.port,
            }],
            tls: TlsRequirement::OPPORTUNISTIC,
            helo: self.fqdn.clone(),
            protocol_logging_level: ProtocolLoggingLevel::Verbose,
            mx_domain: None,
            // The send protocol log names the hop's key (`lmtp:DOMAIN`).
            connector: None,
        })
    }

    /// Mail leaving the organisation: through the subscribed edges; an
    /// organisation without edges (the seed's one-server case) sends from
    /// the hub through the send connector without source edges that serves
    /// the domain.
    fn outbound(&self, config: &NodeConfig, domain: &Domain) -> NextHop {
        if config.organisation.edges.is_empty()
            && let Some(c) = best_connector(&config.organisation.send_connectors, domain, None)
        {
            return connector_next_hop(c, domain);
        }
        NextHop::Edges
    }

    /// The connector and domain a hub-sent next hop names.
    fn connector_of<'a>(&self, config: &'a NodeConfig, hop: &NextHop) -> Option<(&'a SendConnector, Domain)> {
        let NextHop::Connector { name, domain } = hop else {
            return None;
        };
        let connector = config.organisation.send_connector(name)?;
        let domain = match domain {
            Some(d) => d.clone(),
            None => connector
                .smart_hosts
                .first()
                .and_then(|h| Domain::parse(&parse_host(h, 25).host).ok())?,
        };
        Some((connector, domain))
    }

    fn edges_hop(&self, config: &NodeConfig) -> Option<SmtpHop> {
        let mut hosts: Vec<HostPort> = config.organisation.edges.iter().map(|e| e.smtp.clone()).collect();
        if hosts.is_empty() {
            return None;
        }
        let start = rand::random::<u32>() as usize % hosts.len();
        hosts.rotate_left(start);
        Some(self.organisation_hop(NextHop::Edges, hosts))
    }
}

impl Router for HubRouter {
    fn next_hop(&self, rcpt: &Mailbox) -> Result<NextHop, RouteRefusal> {
        let config = self.config();
        let has_mailbox = config.mailboxes.find(&rcpt.to_string()).is_some();
        let hop = match config.organisation.accepted(rcpt.domain()) {
            Some(AcceptedDomainKind::Authoritative) if has_mailbox => self.mailbox_hop(&config, rcpt),
            Some(AcceptedDomainKind::Authoritative) => {
                return Err(RouteRefusal(Reply::simple(550, (5, 1, 1), "Recipient not found")));
            }
            Some(AcceptedDomainKind::InternalRelay) if has_mailbox => self.mailbox_hop(&config, rcpt),
            Some(_) => NextHop::Edges,
            None => self.outbound(&config, rcpt.domain()),
        };
        Ok(hop)
    }

    fn authserv_ids(&self) -> Vec<Domain> {
        let mut ids = self.config().organisation.authserv_ids();
        ids.push(self.fqdn.clone());
        ids
    }

    fn next_hop_from(
        &self,
        rcpt: &Mailbox,
        _sender: Option<&Mailbox>,
        origin: &Origin,
    ) -> Result<NextHop, RouteRefusal> {
        let hop = self.next_hop(rcpt)?;
        if hop != NextHop::Local
            && !origin.relay_allowed
            && self.config().organisation.accepted(rcpt.domain()).is_none()
        {
            return Err(RouteRefusal(Reply::relay_denied()));
        }
        Ok(hop)
    }

    fn destination(&self, hop: &NextHop) -> Option<Destination> {
        let config = self.config();
        match hop {
            NextHop::Local => Some(Destination::Local),
            NextHop::Edges => self.edges_hop(&config).map(Destination::Smtp),
            NextHop::Lmtp(domain) => self.lmtp_hop(&config, hop, domain).map(Destination::Lmtp),
            NextHop::Hub(name) => self.hub_destination(&config, hop, name),
            NextHop::Connector { .. } => {
                let (connector, domain) = self.connector_of(&config, hop)?;
                let hop = connector_hop(connector, &domain, &config.transport, &self.fqdn);
                Some(Destination::Smtp(hop))
            }
            // An edge's hops, MX hops of hand-built routers, a DSN's domain:
            // routed again by the worker.
            NextHop::Hubs | NextHop::HomeHub(_) | NextHop::Mx(_) | NextHop::Domain(_) => None,
        }
    }

    fn is_domain_secured(&self, hop: &NextHop) -> bool {
        let config = self.config();
        self.connector_of(&config, hop)
            .is_some_and(|(c, domain)| is_domain_secured(c, &domain, &config.transport))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use postern_model::{
        AcceptedDomain, AddressSpace, EdgeInfo, HubInfo, LmtpServer, MailboxEntry, ReplicatedObject,
        Thumbprint, TransportConfig,
    };

    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    fn snapshot(objects: Vec<ReplicatedObject>, generation: u64) -> Arc<NodeConfig> {
        Arc::new(NodeConfig::of_objects(
            generation,
            TransportConfig::default(),
            objects,
        ))
    }

    fn objects() -> Vec<ReplicatedObject> {
        let mut internet = SendConnector::new("Internet", vec![AddressSpace::parse("*").unwrap()]);
        internet.dns_routing_enabled = false;
        internet.smart_hosts = vec!["relay.example:2525".into()];
        vec![
            ReplicatedObject::AcceptedDomain(AcceptedDomain {
                name: d("contoso.com"),
                kind: AcceptedDomainKind::Authoritative,
                delivery: MailboxDelivery::Maildir,
            }),
            ReplicatedObject::AcceptedDomain(AcceptedDomain {
                name: d("fabrikam.com"),
                kind: AcceptedDomainKind::Authoritative,
                delivery: MailboxDelivery::Lmtp(LmtpServer {
                    host: "mailstore.fabrikam.com".into(),
                    port: 24,
                }),
            }),
            ReplicatedObject::Mailbox(MailboxEntry::new(
                "kim@contoso.com",
                Some(NodeName::parse("HUB2").unwrap()),
            )),
            ReplicatedObject::Mailbox(MailboxEntry::new("ann@contoso.com", None)),
            ReplicatedObject::Mailbox(MailboxEntry::new("lee@fabrikam.com", None)),
            ReplicatedObject::Hub(HubInfo {
                name: NodeName::parse("HUB2").unwrap(),
                fqdn: d("hub2.contoso.com"),
                smtp_endpoint: "10.0.0.2:2525".into(),
                certificates: Vec::new(),
            }),
            ReplicatedObject::SendConnector(internet),
        ]
    }

    fn mailbox(s: &str) -> Mailbox {
        Mailbox::parse(s).unwrap()
    }

    /// The hop a queued text names.
    fn queued(s: &str) -> NextHop {
        s.parse().unwrap()
    }

    /// The text `router` stores for `rcpt`.
    fn routed(router: &HubRouter, rcpt: &str) -> String {
        router.next_hop(&mailbox(rcpt)).unwrap().to_string()
    }

    #[test]
    fn the_hub_routes_from_the_snapshot_in_force() {
        let (tx, rx) = watch::channel(snapshot(objects(), 1));
        let router = HubRouter::new(rx, NodeName::parse("HUB1").unwrap(), d("hub1.contoso.com"));

        // Mailboxes: at home on HUB2, here, on the mailbox server; unknown ones refused.
        assert_eq!(routed(&router, "Kim@contoso.com"), "hub:hub2");
        assert_eq!(routed(&router, "ann@contoso.com"), "local");
        assert_eq!(routed(&router, "lee@fabrikam.com"), "lmtp:fabrikam.com");
        assert_eq!(
            router
                .next_hop(&mailbox("nobody@contoso.com"))
                .unwrap_err()
                .0
                .code(),
            550
        );
        let Some(Destination::Smtp(hop)) = router.destination(&queued("hub:hub2")) else {
            panic!("no hop to HUB2");
        };
        assert_eq!(
            hop.hosts,
            vec![HostPort {
                host: "10.0.0.2".into(),
                port: 2525
            }]
        );
        assert_eq!(hop.tls, TlsRequirement::ORGANISATION);
        let Some(Destination::Lmtp(hop)) = router.destination(&queued("lmtp:fabrikam.com")) else {
            panic!("no LMTP hop");
        };
        assert_eq!(hop.hosts[0].port, 24);
        assert_eq!(router.destination(&queued("hub:hub1")), Some(Destination::Local));
        // An edge's hop routes nowhere on a hub (the worker routes the recipient again).
        assert_eq!(router.destination(&queued("hubs")), None);

        // No edge: the Internet connector serves the hub itself.
        let key = router.next_hop(&mailbox("someone@example.net")).unwrap();
        assert_eq!(key.to_string(), "connector:internet");
        let Some(Destination::Smtp(hop)) = router.destination(&key) else {
            panic!("no connector hop");
        };
        assert_eq!(
            hop.hosts,
            vec![HostPort {
                host: "relay.example".into(),
                port: 2525
            }]
        );
        assert_eq!(router.destination(&NextHop::Edges), None);
        assert_eq!(
            router.authserv_ids(),
            vec![d("hub2.contoso.com"), d("hub1.contoso.com")]
        );

        // A new snapshot with an edge and kim moved here: the next decision follows it.
        let mut next = objects();
        next.retain(|o| !matches!(o, ReplicatedObject::Mailbox(m) if m.home.is_some()));
        next.push(ReplicatedObject::Mailbox(MailboxEntry::new(
            "kim@contoso.com",
            None,
        )));
        next.push(ReplicatedObject::Edge(EdgeInfo {
            name: NodeName::parse("EDGE1").unwrap(),
            fqdn: d("edge1.contoso.com"),
            site: "Default".into(),
            smtp_endpoint: "10.0.1.1:25".into(),
            thumbprint: Thumbprint::of_der(b"edge1"),
        }));
        tx.send(snapshot(next, 2)).unwrap();
        assert_eq!(routed(&router, "kim@contoso.com"), "local");
        assert_eq!(routed(&router, "someone@example.net"), "edges");
        let Some(Destination::Smtp(hop)) = router.destination(&NextHop::Edges) else {
            panic!("no hop to the edges");
        };
        assert_eq!(
            hop.hosts,
            vec![HostPort {
                host: "10.0.1.1".into(),
                port: 25
            }]
        );
    }

    /// The strings the previous version wrote into the queue (its
    /// `hub_key`, `format!("lmtp:{domain}")`, `connector_key`, `"local"`,
    /// `"edges"`) still route after the upgrade.
    #[test]
    fn keys_queued_by_the_previous_version_still_route() {
        let mut objects = objects();
        let mut partner =
            SendConnector::new("Partner Mail", vec![AddressSpace::parse("fabrikam.net").unwrap()]);
        partner.dns_routing_enabled = true;
        objects.push(ReplicatedObject::SendConnector(partner));
        let (_tx, rx) = watch::channel(snapshot(objects, 1));
        let router = HubRouter::new(rx, NodeName::parse("HUB1").unwrap(), d("hub1.contoso.com"));
        let old = [
            ("local".to_owned(), "local"),
            (format!("{}{}", "hub:", "HUB2".to_ascii_lowercase()), "smtp"),
            (format!("lmtp:{}", d("fabrikam.com")), "lmtp"),
            (format!("connector:{}", "Internet".to_ascii_lowercase()), "smtp"),
            (
                format!(
                    "connector:{}|{}",
                    "Partner Mail".to_ascii_lowercase(),
                    d("fabrikam.net")
                ),
                "smtp",
            ),
        ];
        for (key, kind) in old {
            let stored = queued(&key);
            let routed = match router.destination(&stored) {
                Some(Destination::Local) => "local",
                Some(Destination::Smtp(hop)) => {
                    assert_eq!(hop.key, stored, "the hop keeps the queued hop (back-off, pool)");
                    assert_eq!(hop.key.to_string(), key);
                    "smtp"
                }
                Some(Destination::Lmtp(hop)) => {
                    assert_eq!(hop.key, stored);
                    assert_eq!(hop.key.to_string(), key);
                    "lmtp"
                }
                None => "nowhere",
            };
            assert_eq!(routed, kind, "{key}");
        }
    }
}
