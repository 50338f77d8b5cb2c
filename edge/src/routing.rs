//! The edge's routing, read from its replica on every decision so an
//! EdgeSync change applies to the next message: recipients of accepted
//! domains go to the hubs (after recipient filtering against the hashed
//! mailboxes), other mail from the organisation goes out through the send
//! connector that serves the domain; domain security applies to senders on
//! the receive list and to recipients on the send list.

use std::sync::{Arc, Mutex};

use postern_edgesync::{Applied, Replica};
use postern_model::{
    AcceptedDomainKind, Domain, MailboxHash, NodeName, ObjectKey, ReplicatedObject, SendConnector,
    TransportConfig,
};
use postern_transport::connectors::{best_connector, connector_hop, parse_connector_key};
use postern_transport::routing::{
    Destination, HostPort, Origin, OutboundTls, RouteRefusal, Router, SmtpHop, Stamp,
};
use postern_transport::smtp::{Mailbox, Reply};
use postern_transport::tls::PeerTrust;
use tokio::sync::watch;

/// The next-hop key of mail for the organisation's hubs.
pub const HUBS_HOP: &str = "hubs";

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
    /// Where the hubs take mail. Decoded here rather than per message: a
    /// hub object carries its certificates, which are costly to decode.
    hubs: Vec<HostPort>,
}

impl View {
    fn load(replica: &Replica) -> Self {
        let config = match replica.get(&ObjectKey::of("transport-config", "")) {
            Ok(Some(ReplicatedObject::TransportConfig(c))) => c,
            _ => TransportConfig::default(),
        };
        let connectors = replica
            .list("send-connector")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| match o {
                ReplicatedObject::SendConnector(c) => Some(c),
                _ => None,
            })
            .collect();
        let hubs = replica
            .list("hub")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| match o {
                ReplicatedObject::Hub(h) => {
                    Some(postern_transport::connectors::parse_host(&h.smtp_endpoint, 25))
                }
                _ => None,
            })
            .collect();
        Self {
            config,
            connectors,
            hubs,
        }
    }
}

impl EdgeRouter {
    /// Routes for the edge `name` (`fqdn`) from `replica`.
    pub fn new(replica: Replica, name: NodeName, fqdn: Domain) -> Self {
        let watch = replica.watch();
        let view = Arc::new(View::load(&replica));
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
            guard.1 = Arc::new(View::load(&self.replica));
        }
        Arc::clone(&guard.1)
    }

    fn transport_config(&self) -> TransportConfig {
        self.view().config.clone()
    }

    fn accepted(&self, domain: &Domain) -> Option<AcceptedDomainKind> {
        match self
            .replica
            .get(&ObjectKey::of("accepted-domain", domain.as_str()))
        {
            Ok(Some(ReplicatedObject::AcceptedDomain(d))) => Some(d.kind),
            _ => None,
        }
    }

    fn has_mailbox(&self, rcpt: &Mailbox) -> bool {
        let key = ObjectKey(format!("mailbox/{}", MailboxHash::of(&rcpt.to_string()).0));
        matches!(self.replica.get(&key), Ok(Some(_)))
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

    fn hubs_hop(&self) -> Option<SmtpHop> {
        let mut hosts = self.view().hubs.clone();
        if hosts.is_empty() {
            return None;
        }
        // Spread the load; a dead hub is skipped by the client.
        let start = rand::random::<u32>() as usize % hosts.len();
        hosts.rotate_left(start);
        Some(SmtpHop {
            key: HUBS_HOP.to_owned(),
            hosts,
            tls: OutboundTls::ORGANISATION,
            tls_name: None,
            helo: self.fqdn.clone(),
            protocol_logging_level: Default::default(),
            mx_domain: None,
        })
    }

    /// Domain security for a sender on the receive list: `Ok(Some(domain))`
    /// when the session proves it, `Ok(None)` when the sender is not listed.
    fn domain_security(&self, sender: Option<&Mailbox>, origin: &Origin) -> Result<Option<Domain>, Reply> {
        let Some(sender) = sender else { return Ok(None) };
        let domain = sender.domain();
        let listed = self
            .transport_config()
            .tls_receive_domain_secure_list
            .iter()
            .any(|d| d == domain);
        if !listed || !origin.domain_secure_enabled {
            return Ok(None);
        }
        let refuse = |why: String| {
            Reply::simple(
                451,
                (4, 7, 5),
                format!("Domain security for {domain} failed: {why}"),
            )
        };
        if !origin.tls {
            return Err(refuse("the session is not TLS (STARTTLS required)".into()));
        }
        match &origin.peer {
            PeerTrust::Pki { names, .. } => {
                // The domain or a host under it (DESIGN §5).
                if names
                    .iter()
                    .any(|n| postern_transport::tls::names_domain(n, domain.as_str()))
                {
                    Ok(Some(domain.clone()))
                } else {
                    Err(refuse(format!(
                        "the client certificate names {}, not {domain}",
                        names.join(", ")
                    )))
                }
            }
            PeerTrust::None => Err(refuse("no client certificate was presented".into())),
            PeerTrust::Direct(_) => Err(refuse(
                "an organisation certificate is not a partner certificate".into(),
            )),
            PeerTrust::Untrusted(why) => {
                Err(refuse(format!("the client certificate is not trusted ({why})")))
            }
        }
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
        self.domain_security(sender, origin).map_err(RouteRefusal)?;
        match self.accepted(rcpt.domain()) {
            Some(AcceptedDomainKind::Authoritative) => {
                if self.has_mailbox(rcpt) {
                    Ok(HUBS_HOP.to_owned())
                } else {
                    Err(RouteRefusal(Reply::simple(550, (5, 1, 1), "Recipient not found")))
                }
            }
            Some(AcceptedDomainKind::InternalRelay) => Ok(HUBS_HOP.to_owned()),
            Some(AcceptedDomainKind::ExternalRelay) => self.outbound(rcpt.domain()),
            None if origin.relay_allowed => self.outbound(rcpt.domain()),
            None => Err(RouteRefusal(Reply::relay_denied())),
        }
    }

    fn destination(&self, key: &str) -> Option<Destination> {
        if key == HUBS_HOP {
            return self.hubs_hop().map(Destination::Smtp);
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
            .is_some_and(|c| {
                postern_transport::connectors::is_domain_secured(c, &domain, &self.transport_config())
            })
    }

    fn stamp(&self, sender: Option<&Mailbox>, origin: &Origin) -> Stamp {
        match self.domain_security(sender, origin) {
            Ok(Some(domain)) => Stamp {
                headers: vec![
                    "X-Postern-Organization-AuthAs: Partner".to_owned(),
                    format!("X-Postern-Organization-AuthDomain: {domain}"),
                    format!(
                        "Authentication-Results: {}; tls=pass (domain-secured: mutual TLS, certificate for {domain}) smtp.mailfrom={domain}",
                        self.fqdn
                    ),
                ],
                domain_secured: true,
            },
            _ => Stamp::default(),
        }
    }
}
