//! [`NextHop`]: where a recipient's mail goes next, as a type. The queue
//! stores each recipient's next hop as text and recipients with one text
//! share a connection and a back-off, so [`Display`](fmt::Display) writes
//! exactly the strings earlier versions wrote, and [`FromStr`] reads them:
//! mail queued before an upgrade still routes.

use std::fmt;
use std::str::FromStr;

use postern_model::{Domain, NodeName};

/// A next hop. Recipients with equal hops share a connection pool and a
/// back-off, which key on the hop itself (`Hash`); metrics labels and logs
/// write its [`Display`](fmt::Display).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// The node's own Maildir (`local`).
    Local,
    /// A hub's way out: the organisation's subscribed edges (`edges`).
    Edges,
    /// An edge's way in: any hub of the organisation (`hubs`).
    Hubs,
    /// An edge's way in for a mailbox homed on a hub: that hub first, then
    /// the others (`hubs:NAME`, the name lower-cased).
    HomeHub(NodeName),
    /// A hub's relay to the hub a mailbox is homed on, and only that hub
    /// (`hub:NAME`, the name lower-cased).
    Hub(NodeName),
    /// The mailbox server of a domain delivered over LMTP (`lmtp:DOMAIN`).
    Lmtp(Domain),
    /// A send connector (`connector:NAME`, the name lower-cased), for one
    /// domain when the connector routes by DNS or applies domain security
    /// (`connector:NAME|DOMAIN`).
    Connector {
        /// The connector's name, lower-cased.
        name: String,
        /// The domain, when the key carries one.
        domain: Option<Domain>,
    },
    /// A domain routed by its MX records by a hand-built router
    /// (`mx:DOMAIN`).
    Mx(Domain),
    /// The recipient's domain, routed when the message is delivered (the
    /// bare domain: how the queue stores DSNs, which skip routing).
    Domain(Domain),
}

/// The text of `local`.
const LOCAL: &str = "local";
/// The text of `edges`.
const EDGES: &str = "edges";
/// The text of `hubs`.
const HUBS: &str = "hubs";
/// The prefix of `hubs:NAME`.
const HOME_HUB: &str = "hubs:";
/// The prefix of `hub:NAME`.
const HUB: &str = "hub:";
/// The prefix of `lmtp:DOMAIN`.
const LMTP: &str = "lmtp:";
/// The prefix of `connector:NAME[|DOMAIN]`.
const CONNECTOR: &str = "connector:";
/// The prefix of `mx:DOMAIN`.
const MX: &str = "mx:";

impl NextHop {
    /// The hop of send connector `name` for `domain` (`None`: every domain
    /// shares the hop).
    pub fn connector(name: &str, domain: Option<Domain>) -> Self {
        Self::Connector {
            name: name.to_ascii_lowercase(),
            domain,
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local => f.write_str(LOCAL),
            Self::Edges => f.write_str(EDGES),
            Self::Hubs => f.write_str(HUBS),
            Self::HomeHub(hub) => write!(f, "{HOME_HUB}{}", hub.as_str().to_ascii_lowercase()),
            Self::Hub(hub) => write!(f, "{HUB}{}", hub.as_str().to_ascii_lowercase()),
            Self::Lmtp(domain) => write!(f, "{LMTP}{domain}"),
            Self::Connector { name, domain: None } => write!(f, "{CONNECTOR}{name}"),
            Self::Connector {
                name,
                domain: Some(domain),
            } => write!(f, "{CONNECTOR}{name}|{domain}"),
            Self::Mx(domain) => write!(f, "{MX}{domain}"),
            Self::Domain(domain) => write!(f, "{domain}"),
        }
    }
}

/// A text that is no next hop: a queue record written by something else,
/// or an administrator's typing error (`queue retry --hop`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a next hop ({why}): use local, edges, hubs, hubs:NAME, hub:NAME, lmtp:DOMAIN, connector:NAME, connector:NAME|DOMAIN or a DOMAIN"
)]
pub struct NextHopError {
    /// The text.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl FromStr for NextHop {
    type Err = NextHopError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |why: String| NextHopError {
            text: text.to_owned(),
            why,
        };
        let node = |name: &str| NodeName::parse(name).map_err(|e| error(e.to_string()));
        let domain = |name: &str| Domain::parse(name).map_err(|e| error(e.to_string()));
        match text {
            LOCAL => return Ok(Self::Local),
            EDGES => return Ok(Self::Edges),
            HUBS => return Ok(Self::Hubs),
            _ => {}
        }
        if let Some(name) = text.strip_prefix(HOME_HUB) {
            return Ok(Self::HomeHub(node(name)?));
        }
        if let Some(name) = text.strip_prefix(HUB) {
            return Ok(Self::Hub(node(name)?));
        }
        if let Some(name) = text.strip_prefix(LMTP) {
            return Ok(Self::Lmtp(domain(name)?));
        }
        if let Some(name) = text.strip_prefix(MX) {
            return Ok(Self::Mx(domain(name)?));
        }
        if let Some(rest) = text.strip_prefix(CONNECTOR) {
            let (name, to) = match rest.split_once('|') {
                Some((name, to)) => (name, Some(domain(to)?)),
                None => (rest, None),
            };
            if name.is_empty() {
                return Err(error("no connector name".into()));
            }
            return Ok(Self::connector(name, to));
        }
        Domain::parse(text)
            .map(Self::Domain)
            .map_err(|e| error(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    fn n(s: &str) -> NodeName {
        NodeName::parse(s).unwrap()
    }

    /// Every form, as earlier versions wrote it into the queue.
    #[test]
    fn every_form_reads_and_writes_the_queued_strings() {
        let table = [
            ("local", NextHop::Local),
            ("edges", NextHop::Edges),
            ("hubs", NextHop::Hubs),
            ("hubs:hub2", NextHop::HomeHub(n("HUB2"))),
            ("hub:hub-2", NextHop::Hub(n("Hub-2"))),
            ("lmtp:fabrikam.com", NextHop::Lmtp(d("fabrikam.com"))),
            ("connector:internet", NextHop::connector("Internet", None)),
            (
                "connector:internet mail|northwindtraders.com",
                NextHop::connector("Internet Mail", Some(d("northwindtraders.com"))),
            ),
            ("mx:example.net", NextHop::Mx(d("example.net"))),
            ("fabrikam.com", NextHop::Domain(d("fabrikam.com"))),
        ];
        for (text, hop) in table {
            assert_eq!(hop.to_string(), text, "{hop:?}");
            assert_eq!(text.parse::<NextHop>().unwrap(), hop, "{text}");
        }
    }

    /// Keys made by the previous version's helpers (`hub_key`,
    /// `connector_key`, the routers' `format!`s) parse to the same hop and
    /// write back unchanged.
    #[test]
    fn old_strings_round_trip() {
        for old in [
            format!("{}{}", "hub:", "HUB2".to_ascii_lowercase()),
            format!("hubs:{}", "EDGEHOME".to_ascii_lowercase()),
            format!(
                "connector:{}|{}",
                "Partner".to_ascii_lowercase(),
                d("Contoso.COM")
            ),
            format!("connector:{}", "Smart Hosts".to_ascii_lowercase()),
            format!("lmtp:{}", d("mail.adatum.com")),
            // A DSN's hop: the domain of its recipient.
            "adatum.com".to_owned(),
        ] {
            let hop: NextHop = old.parse().unwrap();
            assert_eq!(hop.to_string(), old);
        }
    }

    #[test]
    fn an_administrators_spelling_is_normalised() {
        for (typed, stored) in [
            ("FABRIKAM.com", "fabrikam.com"),
            ("connector:Internet Mail", "connector:internet mail"),
            ("hub:HUB2", "hub:hub2"),
        ] {
            assert_eq!(typed.parse::<NextHop>().unwrap().to_string(), stored);
        }
    }

    #[test]
    fn what_is_no_next_hop_is_refused_with_the_forms() {
        for bad in [
            "",
            "relay:25",
            "hub:",
            "hubs:a b",
            "lmtp:not a domain",
            "connector:",
            "connector:x|",
        ] {
            let error = bad.parse::<NextHop>().unwrap_err();
            assert_eq!(error.text, bad);
            assert!(error.to_string().contains("connector:NAME|DOMAIN"), "{error}");
        }
    }
}
