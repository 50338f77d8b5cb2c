//! `Thumbprint`: how administrators name a certificate, as Windows does —
//! the SHA-1 of the certificate's DER, 40 upper-case hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// SHA-1 of a certificate's DER encoding (what `openssl x509 -fingerprint
/// -sha1` prints, colons removed).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Thumbprint([u8; 20]);

/// Why a string is not a thumbprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a thumbprint: expected 40 hex digits (colons and spaces allowed)")]
pub struct ThumbprintError(pub String);

impl Thumbprint {
    /// The thumbprint of the DER-encoded certificate (or request) `der`.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha1::digest(der).into())
    }

    /// Parses 40 hex digits in either case, ignoring `:` and spaces.
    pub fn parse(s: &str) -> Result<Self, ThumbprintError> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| *b != b':' && !b.is_ascii_whitespace())
            .collect();
        if digits.len() != 40 {
            return Err(ThumbprintError(s.to_owned()));
        }
        let mut out = [0u8; 20];
        for (i, pair) in digits.chunks(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or_else(|| ThumbprintError(s.to_owned()))?;
            let lo = hex_value(pair[1]).ok_or_else(|| ThumbprintError(s.to_owned()))?;
            out[i] = hi << 4 | lo;
        }
        Ok(Self(out))
    }

    /// A thumbprint from its raw 20 bytes.
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thumbprint({self})")
    }
}

impl FromStr for Thumbprint {
    type Err = ThumbprintError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Thumbprint {
    type Error = ThumbprintError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Thumbprint> for String {
    fn from(t: Thumbprint) -> Self {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_openssl_spelling() {
        let openssl = "A1:B2:C3:D4:E5:F6:07:18:29:3A:4B:5C:6D:7E:8F:90:01:12:23:34";
        let t = Thumbprint::parse(openssl).unwrap();
        assert_eq!(t.to_string(), openssl.replace(':', ""));
        assert_eq!(Thumbprint::parse(&t.to_string().to_lowercase()).unwrap(), t);
    }

    #[test]
    fn refuses_wrong_length_and_digits() {
        assert!(Thumbprint::parse("ABC").is_err());
        assert!(Thumbprint::parse(&"G".repeat(40)).is_err());
    }

    #[test]
    fn sha1_of_der() {
        // SHA-1("abc") is the FIPS 180 test vector.
        assert_eq!(
            Thumbprint::of_der(b"abc").to_string(),
            "A9993E364706816ABA3E25717850C26C9CD0D89D"
        );
    }
}
