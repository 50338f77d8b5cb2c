//! `IpRange`: a client address range of a receive connector, parsed once
//! when the connector is written and matched by the server as a value.
//!
//! The forms accepted are those the connector verbs always took: a CIDR
//! block (`10.0.0.0/8`, `2001:db8::/32`) or a single address (`192.0.2.7`,
//! `::1`: /32 or /128). In stored JSON a range is the string it was
//! written as (a bare address stays bare), so old connectors read back.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An address range such as `10.0.0.0/8` or `::1/128` (a bare address is
/// /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
    /// Whether the prefix length was written (`::1/128`) or implied (`::1`).
    prefix_written: bool,
}

/// Why a string is not an address range; the administrator wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpRangeError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP range: write an address (192.0.2.7) or a CIDR block (10.0.0.0/8)")]
    NotAnAddress(String),
    /// The prefix length is not a number up to 32 (IPv4) or 128 (IPv6).
    #[error("{0:?}: bad prefix length (0-32 for IPv4, 0-128 for IPv6)")]
    BadPrefix(String),
}

impl IpRange {
    /// Parses `addr/prefix` or `addr` (surrounding blanks ignored).
    pub fn parse(s: &str) -> Result<Self, IpRangeError> {
        let written = s.trim();
        let (addr, prefix) = match written.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (written, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| IpRangeError::NotAnAddress(s.to_owned()))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let (prefix, prefix_written) = match prefix {
            Some(p) => (
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| IpRangeError::BadPrefix(s.to_owned()))?,
                true,
            ),
            None => (max, false),
        };
        Ok(Self {
            network,
            prefix,
            prefix_written,
        })
    }

    /// Whether `ip` lies in the range (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (a, b) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(u32::from(n)) << 96, u128::from(u32::from(i)) << 96)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i)),
            _ => return false,
        };
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        a & mask == b & mask
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix_written {
            write!(f, "{}/{}", self.network, self.prefix)
        } else {
            write!(f, "{}", self.network)
        }
    }
}

impl FromStr for IpRange {
    type Err = IpRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for IpRange {
    type Error = IpRangeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<IpRange> for String {
    fn from(r: IpRange) -> Self {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_addresses_inside_them() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains(ip("10.1.2.3")));
        assert!(!r.contains(ip("11.0.0.1")));
        assert!(r.contains(ip("::ffff:10.0.0.1")));
        assert!(!r.contains(ip("::1")));
        assert!(IpRange::parse("::1").unwrap().contains(ip("::1")));
        assert!(!IpRange::parse("::1").unwrap().contains(ip("::2")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
        assert!(IpRange::parse("192.0.2.7").unwrap().contains(ip("192.0.2.7")));
        assert!(!IpRange::parse("192.0.2.7").unwrap().contains(ip("192.0.2.8")));
        assert!(
            IpRange::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:1::5"))
        );
    }

    #[test]
    fn a_range_prints_as_written_and_parses_back() {
        for written in [
            "10.0.0.0/8",
            "::1/128",
            "::1",
            "192.0.2.7",
            "0.0.0.0/0",
            "2001:db8::/32",
        ] {
            let r: IpRange = written.parse().unwrap();
            assert_eq!(r.to_string(), written);
            assert_eq!(r.to_string().parse::<IpRange>().unwrap(), r);
        }
        assert_eq!(IpRange::parse(" 10.0.0.0/8 ").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn stored_json_is_the_written_string() {
        let ranges: Vec<IpRange> = serde_json::from_str(r#"["127.0.0.0/8","::1/128","192.0.2.7"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&ranges).unwrap(),
            r#"["127.0.0.0/8","::1/128","192.0.2.7"]"#
        );
        let bad = serde_json::from_str::<Vec<IpRange>>(r#"["ten"]"#).unwrap_err();
        assert!(bad.to_string().contains("is not an IP range"), "{bad}");
    }

    #[test]
    fn bad_ranges_are_refused_saying_why() {
        assert_eq!(
            IpRange::parse("ten"),
            Err(IpRangeError::NotAnAddress("ten".into()))
        );
        assert_eq!(
            IpRange::parse("10.0.0.0/33"),
            Err(IpRangeError::BadPrefix("10.0.0.0/33".into()))
        );
        assert!(IpRange::parse("::/129").is_err());
        assert!(IpRange::parse("10.0.0.0/").is_err());
        assert!(IpRange::parse("10.0.0.0/-1").is_err());
        assert!(IpRange::parse("").is_err());
        assert!(
            IpRange::parse("10.0.0.0/33")
                .unwrap_err()
                .to_string()
                .contains("bad prefix length")
        );
    }
}
