//! Session ids: 16 upper-case hex digits, unique per node, made as Exchange
//! makes them: a counter that starts at the current time in .NET ticks
//! (100 ns since 0001-01-01) and never goes backwards.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::protocol_log::Clock;

/// .NET ticks at the Unix epoch.
const UNIX_EPOCH_TICKS: i128 = 621_355_968_000_000_000;

/// The last id handed out in this process. Process-wide rather than per log,
/// so the receive and send logs of one node never share an id.
static LAST: AtomicU64 = AtomicU64::new(0);

/// One SMTP session's id, written as 16 upper-case hex digits
/// (`08DE2A1B2C3D4E5F`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(u64);

impl SessionId {
    /// A fresh id: the current time in ticks, or one past the last id if the
    /// clock has not moved (or moved back), so ids are unique and increasing.
    pub fn next(clock: &dyn Clock) -> Self {
        let ticks = clock.now().unix_timestamp_nanos() / 100 + UNIX_EPOCH_TICKS;
        let now = u64::try_from(ticks).unwrap_or(0);
        let step = |last: u64| Some(now.max(last.wrapping_add(1)));
        // fetch_update with a closure that always returns Some cannot fail;
        // both arms carry the previous value.
        let prev = LAST
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
            .unwrap_or_else(|v| v);
        Self(now.max(prev.wrapping_add(1)))
    }

    /// The id as a number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<u64> for SessionId {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol_log::SystemClock;

    #[test]
    fn ids_are_sixteen_upper_hex_digits_and_increase() {
        let a = SessionId::next(&SystemClock);
        let b = SessionId::next(&SystemClock);
        assert!(b > a);
        let s = a.to_string();
        assert_eq!(s.len(), 16);
        assert!(s.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        // Ticks in this century start with 08D or 08E, as Exchange's do.
        assert!(s.starts_with("08"), "{s}");
        assert_eq!(SessionId::from(0x1F).to_string(), "000000000000001F");
    }
}
