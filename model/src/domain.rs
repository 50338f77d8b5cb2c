//! `Domain`: a DNS name (host FQDN or mail domain), lower-cased and checked
//! against the rules of RFC 1035/1123 once, when it is parsed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A DNS domain name such as `mail.adatum.com`, stored lower-case without a
/// trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

/// Why a string is not a domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The name was empty.
    #[error("a domain name cannot be empty")]
    Empty,
    /// The name is longer than DNS allows.
    #[error("domain name {0:?} is longer than 253 characters")]
    TooLong(String),
    /// One label is empty or longer than 63 characters.
    #[error("domain name {0:?} has an empty label or one longer than 63 characters")]
    BadLabel(String),
    /// A character outside letters, digits, '-' (and '_' for service labels).
    #[error("domain name {0:?} contains {1:?}; only letters, digits, '-' and '.' are allowed")]
    BadCharacter(String, char),
    /// A label starts or ends with '-'.
    #[error("domain name {0:?} has a label that starts or ends with '-'")]
    BadHyphen(String),
}

impl Domain {
    /// Parses `s`, lower-casing it and dropping one trailing dot.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let trimmed = s.trim();
        let name = trimmed.strip_suffix('.').unwrap_or(trimmed).to_ascii_lowercase();
        if name.is_empty() {
            return Err(DomainError::Empty);
        }
        if name.len() > 253 {
            return Err(DomainError::TooLong(name));
        }
        for label in name.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(DomainError::BadLabel(name));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(DomainError::BadCharacter(name, c));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(DomainError::BadHyphen(name));
            }
        }
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `self` equals `other` or lies below it (`a.b.com` is in `b.com`).
    pub fn is_within(&self, other: &Domain) -> bool {
        self.0 == other.0
            || (self.0.len() > other.0.len()
                && self.0.ends_with(&other.0)
                && self.0.as_bytes()[self.0.len() - other.0.len() - 1] == b'.')
    }
}

impl FromStr for Domain {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Domain {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> Self {
        d.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let d = Domain::parse("Mail.Adatum.COM.").unwrap();
        assert_eq!(d.as_str(), "mail.adatum.com");
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(Domain::parse(""), Err(DomainError::Empty));
        assert!(matches!(Domain::parse("a..b"), Err(DomainError::BadLabel(_))));
        assert!(matches!(
            Domain::parse("a b.com"),
            Err(DomainError::BadCharacter(_, ' '))
        ));
        assert!(matches!(Domain::parse("-a.com"), Err(DomainError::BadHyphen(_))));
        assert!(matches!(
            Domain::parse(&"a".repeat(64)),
            Err(DomainError::BadLabel(_))
        ));
    }

    #[test]
    fn within() {
        let sub = Domain::parse("mail.adatum.com").unwrap();
        let top = Domain::parse("adatum.com").unwrap();
        assert!(sub.is_within(&top));
        assert!(top.is_within(&top));
        assert!(!top.is_within(&sub));
        assert!(!Domain::parse("xadatum.com").unwrap().is_within(&top));
    }
}
