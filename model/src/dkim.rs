//! The words of message authentication: a DKIM key's type, its selector,
//! and what a receive connector does with a failed DMARC check.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The key algorithm of a DKIM key (`--key-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DkimKeyType {
    /// RSA, 2048 bits, `rsa-sha256` (every verifier knows it).
    #[default]
    Rsa2048,
    /// Ed25519, `ed25519-sha256` (RFC 8463; not every verifier knows it).
    Ed25519,
}

impl DkimKeyType {
    /// As written on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa-2048",
            Self::Ed25519 => "ed25519",
        }
    }

    /// The `k=` tag of the DNS record.
    pub fn dns_k(self) -> &'static str {
        match self {
            Self::Rsa2048 => "rsa",
            Self::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for DkimKeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DkimKeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rsa-2048" | "rsa" => Ok(Self::Rsa2048),
            "ed25519" => Ok(Self::Ed25519),
            _ => Err(format!("unknown DKIM key type {s:?}: use rsa-2048 or ed25519")),
        }
    }
}

/// A DKIM selector (`s=`): one DNS label of letters, digits and hyphens
/// (RFC 6376 §3.1 allows dotted selectors; Postern keeps to one label).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Selector(String);

impl Selector {
    /// Parses a selector, lower-cased.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let ok = !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(Self(s))
        } else {
            Err(format!(
                "{s:?} is not a DKIM selector: one DNS label of letters, digits and hyphens"
            ))
        }
    }

    /// The selector as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Selector {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Selector> for String {
    fn from(s: Selector) -> Self {
        s.0
    }
}

/// What a receive connector does with the DMARC verdict of mail from
/// outside (`--dmarc-enforcement`). Either way the verdict is stamped in
/// `Authentication-Results`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcEnforcement {
    /// Stamp only; deliver whatever the domain's policy says.
    #[default]
    None,
    /// Honour the domain's policy: `p=reject` failures are refused with
    /// 550 5.7.1, `p=quarantine` failures get a header to route on.
    Honour,
}

impl DmarcEnforcement {
    /// As written on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Honour => "honour",
        }
    }
}

impl fmt::Display for DmarcEnforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DmarcEnforcement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "honour" | "honor" => Ok(Self::Honour),
            _ => Err(format!("unknown DMARC enforcement {s:?}: use none or honour")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(Selector::parse("Hub1-2026").unwrap().as_str(), "hub1-2026");
        for bad in ["", "a.b", "-a", "a-", "a b", "a_b"] {
            assert!(Selector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn words_round_trip() {
        for t in [DkimKeyType::Rsa2048, DkimKeyType::Ed25519] {
            assert_eq!(t.as_str().parse::<DkimKeyType>().unwrap(), t);
        }
        for e in [DmarcEnforcement::None, DmarcEnforcement::Honour] {
            assert_eq!(e.as_str().parse::<DmarcEnforcement>().unwrap(), e);
        }
        assert!("strict".parse::<DmarcEnforcement>().is_err());
    }
}
