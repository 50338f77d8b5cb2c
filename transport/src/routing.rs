//! Routing: where a recipient's mail goes next.
//!
//! At RCPT time the server asks the router for a [`NextHop`] (stored on
//! the queued recipient as its text; recipients with one hop share a
//! connection and a back-off). At delivery time the worker asks the router
//! what that hop means now, so a configuration change reroutes queued mail.
//! The roles supply routers built from their configuration (accepted
//! domains, send connectors, the list of hubs); `StaticRouter` is the
//! simple one used by tests and benchmarks.

mod next_hop;

use std::borrow::Cow;
use std::fmt;

use postern_model::{Domain, ProtocolLoggingLevel};

/// A hop's TLS requirement (the `postern-tls` type, named here for the
/// routers that build hops).
pub use crate::tls::TlsRequirement;
pub use next_hop::{NextHop, NextHopError};

use crate::smtp::{Mailbox, Reply};
use crate::tls::PeerTrust;

/// A host and port to connect to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A remote SMTP next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmtpHop {
    /// The next hop (shared back-off and connection pool).
    pub key: NextHop,
    /// Hosts to try in order (smart-host order). When `mx_domain` is set,
    /// only the port of the first entry is used: the port MX hosts are
    /// contacted on ([`SMTP_PORT`] when empty); see [`SmtpHop::mx_port`].
    pub hosts: Vec<HostPort>,
    /// `Some(domain)`: the hop is routed by DNS — at each delivery the
    /// worker looks up the MX records of `domain` (RFC 5321 §5.1) and
    /// relays to a copy of the hop whose `hosts` are the MX host names in
    /// preference order (resolved to addresses with the same resolver by
    /// the client), keeping this field set. Because the key names the
    /// back-off and connection pool, routers give every domain routed by
    /// MX its own key. `None`: `hosts` are used as given.
    pub mx_domain: Option<Domain>,
    /// What the hop demands of TLS; a PKI check names the partner domain
    /// or the connector's TLS domain, else the host name is checked.
    pub tls: TlsRequirement,
    /// Our EHLO name and the certificate we present.
    pub helo: Domain,
    /// Whether sessions to this hop are written to the node's send
    /// protocol log (the send connector's `-ProtocolLoggingLevel`).
    pub protocol_logging_level: ProtocolLoggingLevel,
    /// The send connector this hop is made from, as the send protocol
    /// log's connector-id names it (Exchange writes the connector's name);
    /// [`INTRA_ORGANIZATION_CONNECTOR`] for the organisation's own hops;
    /// `None` (hops built by hand, tests): the key's text is written.
    pub connector: Option<String>,
}

/// The connector-id of hops between the organisation's own nodes (hub to
/// edges, edge to hubs), as Exchange names its implicit connector.
pub const INTRA_ORGANIZATION_CONNECTOR: &str = "Intra-Organization SMTP Send Connector";

/// The SMTP port MX hosts are contacted on unless a hop says otherwise.
pub const SMTP_PORT: u16 = 25;

impl SmtpHop {
    /// What the send protocol log writes as connector-id.
    pub fn connector_id(&self) -> Cow<'_, str> {
        match &self.connector {
            Some(connector) => Cow::Borrowed(connector),
            None => Cow::Owned(self.key.to_string()),
        }
    }

    /// The port MX hosts are contacted on: that of the first of `hosts`,
    /// else [`SMTP_PORT`].
    pub fn mx_port(&self) -> u16 {
        self.hosts.first().map_or(SMTP_PORT, |h| h.port)
    }

    /// Whether a connection opened for `self` may carry mail for `hop`: the
    /// same hop with its hosts in any order (a hop that spreads its load,
    /// such as an edge's hubs, rotates them per message, and any of them is
    /// as good), or the same MX-routed hop whatever MX hosts came this time.
    pub fn shares_connections_with(&self, hop: &SmtpHop) -> bool {
        let same_settings = self.key == hop.key
            && self.tls == hop.tls
            && self.helo == hop.helo
            && self.protocol_logging_level == hop.protocol_logging_level
            && self.mx_domain == hop.mx_domain;
        if !same_settings {
            return false;
        }
        if self.mx_domain.is_some() {
            return self.mx_port() == hop.mx_port();
        }
        self.hosts.len() == hop.hosts.len() && self.hosts.iter().all(|h| hop.hosts.contains(h))
    }
}

/// What a next hop means now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Deliver to the local Maildir of the recipient.
    Local,
    /// Relay over SMTP.
    Smtp(SmtpHop),
    /// Hand to a mailbox server over LMTP (RFC 2033): the hop's hosts are
    /// the server's listener; the server answers for each recipient after
    /// the message, and each recipient's reply is its outcome.
    Lmtp(SmtpHop),
}

/// Why a recipient cannot be routed: the reply the server gives at RCPT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRefusal(pub Reply);

/// Who is sending, as routing and domain security see a session.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The receive connector's name.
    pub connector: String,
    /// Whether this session may relay to domains the organisation does not
    /// accept (organisation nodes, client submission).
    pub relay_allowed: bool,
    /// The session's TLS peer, as classified after STARTTLS.
    pub peer: PeerTrust,
    /// Whether the session runs over TLS.
    pub tls: bool,
    /// Whether the connector applies domain security.
    pub domain_secure_enabled: bool,
}

impl Origin {
    /// A plain-text session on `connector` that may not relay.
    pub fn anonymous(connector: &str) -> Self {
        Self {
            connector: connector.to_owned(),
            relay_allowed: false,
            peer: PeerTrust::None,
            tls: false,
            domain_secure_enabled: false,
        }
    }
}

/// What accepting a message from an origin adds to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// Header fields (without CRLF) to add above the message.
    pub headers: Vec<String>,
    /// Whether the message arrived domain-secured (counted).
    pub domain_secured: bool,
}

/// Chooses next hops; implemented by each role from its configuration.
pub trait Router: Send + Sync + 'static {
    /// The next hop for `rcpt`, or the refusal to answer at RCPT.
    fn next_hop(&self, rcpt: &Mailbox) -> Result<NextHop, RouteRefusal>;

    /// What `hop` means now; `None` when it no longer routes anywhere (the
    /// recipient is deferred until it does or the message expires).
    fn destination(&self, hop: &NextHop) -> Option<Destination>;

    /// RCPT from a session: like `next_hop`, but the role may refuse
    /// relaying or apply domain security to `sender`'s domain.
    fn next_hop_from(
        &self,
        rcpt: &Mailbox,
        sender: Option<&Mailbox>,
        origin: &Origin,
    ) -> Result<NextHop, RouteRefusal> {
        let _ = (sender, origin);
        self.next_hop(rcpt)
    }

    /// Whether mail through `hop` is domain-secured (counted as such).
    fn is_domain_secured(&self, hop: &NextHop) -> bool {
        let _ = hop;
        false
    }

    /// The organisation's authserv-ids (RFC 8601): the names of its
    /// nodes, under which its own `Authentication-Results` are written.
    /// Such fields from outside the organisation are removed. The node's
    /// and the connector's own names are added by the server.
    fn authserv_ids(&self) -> Vec<Domain> {
        Vec::new()
    }

    /// Headers to stamp on a message accepted from `origin` (the trusted
    /// organisation headers of domain security).
    fn stamp(&self, sender: Option<&Mailbox>, origin: &Origin) -> Stamp {
        let _ = (sender, origin);
        Stamp::default()
    }
}

/// A fixed router: local domains to Maildir, everything else to one relay
/// (or refused as relaying when there is none).
#[derive(Clone, Debug)]
pub struct StaticRouter {
    /// Domains delivered locally.
    pub local_domains: Vec<Domain>,
    /// Where all other mail goes.
    pub relay: Option<SmtpHop>,
}

impl Router for StaticRouter {
    fn next_hop(&self, rcpt: &Mailbox) -> Result<NextHop, RouteRefusal> {
        if self.local_domains.iter().any(|d| rcpt.domain() == d) {
            return Ok(NextHop::Local);
        }
        match &self.relay {
            Some(hop) => Ok(hop.key.clone()),
            None => Err(RouteRefusal(Reply::relay_denied())),
        }
    }

    fn destination(&self, hop: &NextHop) -> Option<Destination> {
        if *hop == NextHop::Local {
            return Some(Destination::Local);
        }
        self.relay
            .as_ref()
            .filter(|h| h.key == *hop)
            .map(|h| Destination::Smtp(h.clone()))
    }
}
