//! Envelope addresses as RFC 5321 writes them: the mailbox (`local@domain`,
//! with a dot-atom or quoted local part), the reverse path of `MAIL FROM`
//! (which may be null, `<>`), the forward path of `RCPT TO` (which may be the
//! bare `<Postmaster>`), and the name a client gives in `EHLO`/`HELO` (a
//! domain or an address literal). Source routes (`<@a,@b:user@c>`) are
//! accepted and dropped, as RFC 5321 section 4.1.4 / appendix C asks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use postern_model::{Domain, DomainError};

/// The longest local part RFC 5321 section 4.5.3.1.1 requires us to accept.
pub const MAX_LOCAL_PART: usize = 64;
/// The longest path (including the angle brackets), RFC 5321 section 4.5.3.1.3.
pub const MAX_PATH: usize = 256;

/// Why a string is not an acceptable envelope address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `@` between the local part and the domain.
    #[error("the address has no '@'")]
    MissingAt,
    /// The local part is empty or is neither a dot-atom nor a quoted string.
    #[error("the local part is not a valid dot-atom or quoted string")]
    BadLocalPart,
    /// The local part is longer than [`MAX_LOCAL_PART`].
    #[error("the local part is longer than 64 octets")]
    LocalPartTooLong,
    /// The domain is not a DNS name.
    #[error("bad domain: {0}")]
    BadDomain(#[from] DomainError),
    /// `user@[192.0.2.1]`: we route by domain name only.
    #[error("address literals are not accepted as a mailbox domain")]
    AddressLiteral,
    /// Non-ASCII text, which needs SMTPUTF8 (not offered).
    #[error("the address contains non-ASCII characters and SMTPUTF8 is not offered")]
    NonAscii,
    /// The path is longer than [`MAX_PATH`].
    #[error("the path is longer than 256 octets")]
    PathTooLong,
    /// Angle brackets unbalanced, a bad source route, or stray characters.
    #[error("the path is malformed")]
    BadPath,
    /// A null path (`<>`) where a mailbox is required.
    #[error("a null path is not allowed here")]
    NullNotAllowed,
    /// An `EHLO`/`HELO` argument that is neither a domain nor an address literal.
    #[error("not a domain name or address literal")]
    BadHeloName,
}

/// A mailbox, `local-part@domain`. The local part is kept exactly as received
/// (case and quotes preserved: RFC 5321 says only the destination host may
/// interpret it); the domain is lower-cased by [`Domain`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mailbox {
    local_part: String,
    domain: Domain,
}

impl Mailbox {
    /// Parses a bare mailbox (no angle brackets).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        if !s.is_ascii() {
            return Err(AddressError::NonAscii);
        }
        let at = local_part_end(s)?;
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if local.len() > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        if domain.starts_with('[') {
            return Err(AddressError::AddressLiteral);
        }
        if domain.trim() != domain {
            return Err(AddressError::BadPath);
        }
        Ok(Self {
            local_part: local.to_string(),
            domain: Domain::parse(domain)?,
        })
    }

    /// The local part as received, quotes included if it was quoted.
    pub fn local_part(&self) -> &str {
        &self.local_part
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local_part, self.domain)
    }
}

/// Where the local part ends (the index of the `@`), checking its syntax.
fn local_part_end(s: &str) -> Result<usize, AddressError> {
    let b = s.as_bytes();
    if b.first() == Some(&b'"') {
        let mut i = 1;
        while i < b.len() {
            match b[i] {
                b'\\' if b.get(i + 1).is_some_and(|c| (32..=126).contains(c)) => i += 2,
                b'"' => {
                    return match b.get(i + 1) {
                        Some(b'@') => Ok(i + 1),
                        Some(_) => Err(AddressError::BadLocalPart),
                        None => Err(AddressError::MissingAt),
                    };
                }
                c if (32..=126).contains(&c) && c != b'\\' => i += 1,
                _ => return Err(AddressError::BadLocalPart),
            }
        }
        return Err(AddressError::BadLocalPart);
    }
    let at = s.find('@').ok_or(AddressError::MissingAt)?;
    let local = &s[..at];
    let atoms_ok = local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
    if atoms_ok {
        Ok(at)
    } else {
        Err(AddressError::BadLocalPart)
    }
}

/// RFC 5322 `atext`.
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

/// The inside of a path: `<...>` unwrapped, its source route dropped.
/// Angle brackets may be omitted (a common client fault we tolerate).
fn path_content(s: &str) -> Result<Option<&str>, AddressError> {
    if s.len() > MAX_PATH {
        return Err(AddressError::PathTooLong);
    }
    let inner = match s.strip_prefix('<') {
        Some(rest) => rest.strip_suffix('>').ok_or(AddressError::BadPath)?,
        None if s.is_empty() || s.contains(['>', ' ']) => return Err(AddressError::BadPath),
        None => s,
    };
    if inner.is_empty() {
        return Ok(None);
    }
    if inner.starts_with('@') {
        let (route, mailbox) = inner.split_once(':').ok_or(AddressError::BadPath)?;
        for hop in route.split(',') {
            let name = hop.strip_prefix('@').ok_or(AddressError::BadPath)?;
            Domain::parse(name).map_err(|_| AddressError::BadPath)?;
        }
        return Ok(Some(mailbox));
    }
    Ok(Some(inner))
}

/// The argument of `MAIL FROM`: the null path or a mailbox.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`: bounces and other notifications, which must not be answered.
    Null,
    /// A sender mailbox.
    Mailbox(Mailbox),
}

impl ReversePath {
    /// Parses `<>`, `<user@domain>` or `<@route:user@domain>`.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        match path_content(s)? {
            None => Ok(Self::Null),
            Some(m) => Mailbox::parse(m).map(Self::Mailbox),
        }
    }
}

impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("<>"),
            Self::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// The argument of `RCPT TO`: a mailbox, or the bare `<Postmaster>` that
/// every server must accept (RFC 5321 section 4.5.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ForwardPath {
    /// `<Postmaster>` without a domain (case-insensitive).
    Postmaster,
    /// A recipient mailbox.
    Mailbox(Mailbox),
}

impl ForwardPath {
    /// Parses `<user@domain>`, `<@route:user@domain>` or `<Postmaster>`.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        match path_content(s)? {
            None => Err(AddressError::NullNotAllowed),
            Some(p) if p.eq_ignore_ascii_case("postmaster") => Ok(Self::Postmaster),
            Some(m) => Mailbox::parse(m).map(Self::Mailbox),
        }
    }
}

impl fmt::Display for ForwardPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Postmaster => f.write_str("<Postmaster>"),
            Self::Mailbox(m) => write!(f, "<{m}>"),
        }
    }
}

/// The name a client gives in `EHLO`/`HELO`: a domain or an address literal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HeloName {
    /// A host name such as `mail.fabrikam.com`.
    Domain(Domain),
    /// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
    Literal(IpAddr),
}

impl HeloName {
    /// Parses a domain or an IPv4/IPv6 address literal (general literals
    /// with another tag are refused).
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let Some(inner) = s.strip_prefix('[') else {
            return Domain::parse(s)
                .map(Self::Domain)
                .map_err(|_| AddressError::BadHeloName);
        };
        let inner = inner.strip_suffix(']').ok_or(AddressError::BadHeloName)?;
        let ip = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().map(IpAddr::V6),
            _ => inner.parse::<Ipv4Addr>().map(IpAddr::V4),
        };
        ip.map(Self::Literal).map_err(|_| AddressError::BadHeloName)
    }
}

impl fmt::Display for HeloName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d) => write!(f, "{d}"),
            Self::Literal(IpAddr::V4(ip)) => write!(f, "[{ip}]"),
            Self::Literal(IpAddr::V6(ip)) => write!(f, "[IPv6:{ip}]"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mailbox(s: &str) -> Mailbox {
        match ReversePath::parse(s).unwrap() {
            ReversePath::Mailbox(m) => m,
            ReversePath::Null => panic!("null"),
        }
    }

    #[test]
    fn plain_and_quoted_mailboxes() {
        let m = mailbox("<John.Doe@Example.COM>");
        assert_eq!((m.local_part(), m.domain().as_str()), ("John.Doe", "example.com"));
        let q = mailbox(r#"<"john \"j\" doe"@example.com>"#);
        assert_eq!(q.local_part(), r#""john \"j\" doe""#);
        assert_eq!(mailbox(r#"<"a@b>c"@x.org>"#).local_part(), r#""a@b>c""#);
        assert_eq!(mailbox("bare@x.org").to_string(), "bare@x.org");
    }

    #[test]
    fn source_routes_are_dropped() {
        assert_eq!(mailbox("<@a.com,@b.com:user@c.com>").to_string(), "user@c.com");
        assert_eq!(mailbox("<@a.com:user@c.com>").to_string(), "user@c.com");
        assert_eq!(
            ReversePath::parse("<@a.com,b.com:user@c.com>"),
            Err(AddressError::BadPath)
        );
    }

    #[test]
    fn null_and_postmaster() {
        assert_eq!(ReversePath::parse("<>"), Ok(ReversePath::Null));
        assert_eq!(ForwardPath::parse("<>"), Err(AddressError::NullNotAllowed));
        assert_eq!(ForwardPath::parse("<POSTMASTER>"), Ok(ForwardPath::Postmaster));
    }

    #[test]
    fn bad_addresses() {
        let bad = [
            ("<a..b@x.com>", AddressError::BadLocalPart),
            ("<.a@x.com>", AddressError::BadLocalPart),
            ("<a b@x.com>", AddressError::BadLocalPart),
            ("<nodomain>", AddressError::MissingAt),
            ("<a@[192.0.2.1]>", AddressError::AddressLiteral),
            ("<a@x.com", AddressError::BadPath),
            ("<jörg@x.com>", AddressError::NonAscii),
            (r#"<"unterminated@x.com>"#, AddressError::BadLocalPart),
        ];
        for (s, e) in bad {
            assert_eq!(ReversePath::parse(s), Err(e), "{s}");
        }
        let long = format!("<{}@x.com>", "a".repeat(65));
        assert_eq!(ReversePath::parse(&long), Err(AddressError::LocalPartTooLong));
        let huge = format!("<a@{}.com>", "b.".repeat(130));
        assert_eq!(ReversePath::parse(&huge), Err(AddressError::PathTooLong));
    }

    #[test]
    fn helo_names() {
        assert_eq!(HeloName::parse("Mail.X.com").unwrap().to_string(), "mail.x.com");
        assert_eq!(HeloName::parse("[192.0.2.1]").unwrap().to_string(), "[192.0.2.1]");
        assert_eq!(
            HeloName::parse("[IPv6:2001:db8::1]").unwrap().to_string(),
            "[IPv6:2001:db8::1]"
        );
        assert!(HeloName::parse("[2001:db8::1]").is_err());
        assert!(HeloName::parse("[x:y]").is_err());
        assert!(HeloName::parse("a b").is_err());
    }
}
