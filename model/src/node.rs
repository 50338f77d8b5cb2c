//! Who a node is: its name, FQDN and role, fixed when it is first set up.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Domain;

/// The role a node plays in the organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Internal node: authoritative configuration, mailboxes, submission.
    Hub,
    /// Perimeter node: Internet-facing, holds a replica of the configuration.
    Edge,
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeRole::Hub => "hub",
            NodeRole::Edge => "edge",
        })
    }
}

/// A node's name (`VAN-EX2`, `edge-1`): letters, digits, '-', '_' and '.',
/// at most 64 characters. Compared case-insensitively, stored as given.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

/// Why a string is not a node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a node name: use 1-64 letters, digits, '-', '_' or '.'")]
pub struct NodeNameError(pub String);

impl NodeName {
    /// Parses a node name.
    pub fn parse(s: &str) -> Result<Self, NodeNameError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NodeNameError(s.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first label of an FQDN, the way hostnames name a machine.
    pub fn from_fqdn(fqdn: &Domain) -> Self {
        let first = fqdn.as_str().split('.').next().unwrap_or("node");
        Self(first.to_owned())
    }
}

impl PartialEq for NodeName {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for NodeName {}

impl std::hash::Hash for NodeName {
    /// Hashes the lower-cased name, as names compare case-insensitively.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for byte in self.0.bytes() {
            state.write_u8(byte.to_ascii_lowercase());
        }
        state.write_u8(0xff);
    }
}

impl FromStr for NodeName {
    type Err = NodeNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
impl TryFrom<String> for NodeName {
    type Error = NodeNameError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<NodeName> for String {
    fn from(n: NodeName) -> Self {
        n.0
    }
}
impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A node's identity, written once at setup and reused by every later start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node's name.
    pub name: NodeName,
    /// The node's FQDN: default connector FQDN and the name on its first certificate.
    pub fqdn: Domain,
    /// Hub or edge.
    pub role: NodeRole,
    /// When setup ran (RFC 3339, UTC).
    pub created: String,
    /// Binding of the default receive connector made at setup.
    pub smtp_bind: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(NodeName::parse("VAN-EX2").is_ok());
        assert!(NodeName::parse("edge 1").is_err());
        assert!(NodeName::parse("").is_err());
        assert_eq!(NodeName::parse("Hub").unwrap(), NodeName::parse("hub").unwrap());
        let fqdn = Domain::parse("van-ex2.adatum.com").unwrap();
        assert_eq!(NodeName::from_fqdn(&fqdn).as_str(), "van-ex2");
    }
}
