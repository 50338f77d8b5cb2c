//! The kinds of configuration objects, as one enum.
//!
//! A kind's word (`send-connector`, `accepted-domain`, …) is on the wire in
//! the admin API's `kind` fields and in stored keys (`kind/name`); it is
//! parsed into an [`ObjectKind`] once, where a request arrives, and printed
//! back with `Display`. [`AdminObjectKind`] adds the one kind the admin API
//! serves that is local to a node and never replicated: receive connectors.

use std::fmt;
use std::str::FromStr;

/// The kind of a replicated configuration object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    /// The one organisation-wide transport configuration.
    TransportConfig,
    /// An accepted domain.
    AcceptedDomain,
    /// A mailbox (replicated as a hash of its address).
    Mailbox,
    /// A send connector.
    SendConnector,
    /// An administrator-added trust anchor.
    TrustedRoot,
    /// A hub of the organisation.
    Hub,
    /// An edge of the organisation.
    Edge,
}

impl ObjectKind {
    /// Every kind, in the order administrators see them listed.
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::TransportConfig,
        ObjectKind::AcceptedDomain,
        ObjectKind::Mailbox,
        ObjectKind::SendConnector,
        ObjectKind::TrustedRoot,
        ObjectKind::Hub,
        ObjectKind::Edge,
    ];

    /// The kind's word, as in stored keys and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::TransportConfig => "transport-config",
            ObjectKind::AcceptedDomain => "accepted-domain",
            ObjectKind::Mailbox => "mailbox",
            ObjectKind::SendConnector => "send-connector",
            ObjectKind::TrustedRoot => "trusted-root",
            ObjectKind::Hub => "hub",
            ObjectKind::Edge => "edge",
        }
    }

    /// The key prefix under which every object of this kind is stored
    /// (`send-connector/`; the transport configuration is a single key).
    pub fn key_prefix(self) -> String {
        match self {
            ObjectKind::TransportConfig => self.as_str().to_owned(),
            _ => format!("{}/", self.as_str()),
        }
    }

    /// Whether objects of this kind are named case-insensitively (their
    /// keys hold the lower-cased name).
    pub(crate) fn folds_case(self) -> bool {
        matches!(
            self,
            ObjectKind::AcceptedDomain | ObjectKind::SendConnector | ObjectKind::Hub | ObjectKind::Edge
        )
    }

    /// Whether administrators may not write objects of this kind: hubs and
    /// edges are written by subscriptions and the nodes themselves.
    pub fn is_managed_by_nodes(self) -> bool {
        matches!(self, ObjectKind::Hub | ObjectKind::Edge)
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind word that names no kind of object; the administrator named it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown object kind {given:?}; kinds are {}", known_words())]
pub struct UnknownObjectKind {
    /// The word as given.
    pub given: String,
}

fn known_words() -> String {
    ObjectKind::ALL
        .iter()
        .map(|k| k.as_str())
        .chain([AdminObjectKind::RECEIVE_CONNECTOR])
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for ObjectKind {
    type Err = UnknownObjectKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownObjectKind { given: s.to_owned() })
    }
}

/// A kind the admin API's configuration verbs serve: a replicated kind, or
/// receive connectors, which each node keeps for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdminObjectKind {
    /// An object of the organisation, replicated to edges.
    Replicated(ObjectKind),
    /// A receive connector of the node answering (local, not replicated).
    ReceiveConnector,
}

impl AdminObjectKind {
    const RECEIVE_CONNECTOR: &'static str = "receive-connector";

    /// The kind's word on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminObjectKind::Replicated(kind) => kind.as_str(),
            AdminObjectKind::ReceiveConnector => Self::RECEIVE_CONNECTOR,
        }
    }
}

impl From<ObjectKind> for AdminObjectKind {
    fn from(kind: ObjectKind) -> Self {
        AdminObjectKind::Replicated(kind)
    }
}

impl fmt::Display for AdminObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdminObjectKind {
    type Err = UnknownObjectKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Self::RECEIVE_CONNECTOR {
            return Ok(AdminObjectKind::ReceiveConnector);
        }
        s.parse().map(AdminObjectKind::Replicated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_prints_its_wire_word_and_parses_back() {
        let words: Vec<&str> = ObjectKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            words,
            [
                "transport-config",
                "accepted-domain",
                "mailbox",
                "send-connector",
                "trusted-root",
                "hub",
                "edge"
            ]
        );
        for kind in ObjectKind::ALL {
            assert_eq!(kind.to_string().parse::<ObjectKind>(), Ok(kind));
            let admin = AdminObjectKind::from(kind);
            assert_eq!(admin.to_string().parse::<AdminObjectKind>(), Ok(admin));
        }
        assert_eq!(
            "receive-connector".parse::<AdminObjectKind>(),
            Ok(AdminObjectKind::ReceiveConnector)
        );
        assert_eq!(AdminObjectKind::ReceiveConnector.to_string(), "receive-connector");
    }

    #[test]
    fn an_unknown_word_is_refused_naming_every_kind() {
        let e = "send-connectors".parse::<ObjectKind>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown object kind \"send-connectors\"; kinds are transport-config, accepted-domain, \
             mailbox, send-connector, trusted-root, hub, edge, receive-connector"
        );
        assert!("receive-connector".parse::<ObjectKind>().is_err());
        assert!("Send-Connector".parse::<AdminObjectKind>().is_err());
        assert!("".parse::<AdminObjectKind>().is_err());
    }

    #[test]
    fn key_prefixes_match_stored_keys() {
        assert_eq!(ObjectKind::TransportConfig.key_prefix(), "transport-config");
        assert_eq!(ObjectKind::SendConnector.key_prefix(), "send-connector/");
        assert_eq!(ObjectKind::TrustedRoot.key_prefix(), "trusted-root/");
    }
}
