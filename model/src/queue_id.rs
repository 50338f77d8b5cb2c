//! `QueueId`: the name of one message in a node's mail queue.
//!
//! 128 bits, time-ordered: the top 48 bits are milliseconds since the Unix
//! epoch, the low 80 bits make two ids of one millisecond distinct. Written
//! as 32 upper-case hex digits; stored big-endian, so a sorted key space
//! (sled) iterates the queue oldest first (FIFO). Making a fresh id needs a
//! clock and randomness, which this crate does not own: the queue makes them
//! with [`QueueId::from_parts`] and [`QueueId::successor`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The identity of a queued message, ordered by the time it was queued.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(u128);

/// Why a string or a key is not a queue id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a queue id: expected 32 hex digits")]
pub struct QueueIdError(pub String);

impl QueueId {
    /// The id for `unix_millis` (only the low 48 bits count) with `entropy`
    /// filling the low 80 bits (only those bits count).
    pub fn from_parts(unix_millis: u64, entropy: u128) -> Self {
        let time = u128::from(unix_millis & 0xFFFF_FFFF_FFFF) << 80;
        Self(time | (entropy & ((1u128 << 80) - 1)))
    }

    /// The smallest id greater than this one (used to keep ids increasing
    /// when the clock stands still or steps back).
    pub fn successor(self) -> Self {
        Self(self.0.wrapping_add(1))
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub fn unix_millis(self) -> u64 {
        // The shift leaves 48 bits, which always fit.
        (self.0 >> 80) as u64
    }

    /// The 16 big-endian bytes: the key under which the queue stores it.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The id stored under `key`, if `key` is 16 bytes long.
    pub fn from_key(key: &[u8]) -> Result<Self, QueueIdError> {
        let bytes: [u8; 16] = key.try_into().map_err(|_| QueueIdError(format!("{key:02X?}")))?;
        Ok(Self(u128::from_be_bytes(bytes)))
    }

    /// Parses 32 hex digits in either case.
    pub fn parse(s: &str) -> Result<Self, QueueIdError> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(QueueIdError(s.to_owned()));
        }
        u128::from_str_radix(s, 16)
            .map(Self)
            .map_err(|_| QueueIdError(s.to_owned()))
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032X}", self.0)
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({self})")
    }
}

impl FromStr for QueueId {
    type Err = QueueIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for QueueId {
    type Error = QueueIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<QueueId> for String {
    fn from(id: QueueId) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn text_and_key_round_trip() {
        let id = QueueId::from_parts(1_700_000_000_123, 0xABCD_EF01_2345_6789_0123);
        assert_eq!(id.to_string().len(), 32);
        assert_eq!(QueueId::parse(&id.to_string()), Ok(id));
        assert_eq!(QueueId::parse(&id.to_string().to_lowercase()), Ok(id));
        assert_eq!(QueueId::from_key(&id.to_bytes()), Ok(id));
        assert_eq!(id.unix_millis(), 1_700_000_000_123);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<QueueId>(&json).unwrap(), id);
    }

    #[test]
    fn ids_sort_by_time_in_text_and_bytes() {
        let early = QueueId::from_parts(1_000, u128::MAX);
        let late = QueueId::from_parts(1_001, 0);
        assert!(early < late);
        assert!(early.to_bytes() < late.to_bytes());
        assert!(early.to_string() < late.to_string());
        assert!(early < early.successor());
    }

    #[test]
    fn rejects_what_is_not_an_id() {
        for bad in [
            "",
            "12",
            "G0000000000000000000000000000000",
            "+0000000000000000000000000000000",
        ] {
            assert!(QueueId::parse(bad).is_err(), "{bad}");
        }
        assert!(QueueId::from_key(&[1, 2, 3]).is_err());
    }
}
