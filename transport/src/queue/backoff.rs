//! `HopBackoff`: retry back-off shared by every recipient routed through the
//! same next hop, so that a hop that is down is not hammered once per
//! message.
//!
//! Kept in memory only: after a restart every hop starts fresh (and every
//! queued message is due again, as Exchange does when its transport service
//! restarts). The per-recipient schedule, which is stored, still spaces
//! retries of each message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::queue::QueuedHop;
use crate::queue::config::QueueConfig;

/// Consecutive failures of one hop and when it may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HopState {
    failures: u32,
    retry_at: SystemTime,
}

/// Back-off per next hop (keyed by the hop itself; an unreadable queued
/// text backs off under that text).
#[derive(Debug, Default)]
pub struct HopBackoff {
    hops: Mutex<HashMap<QueuedHop, HopState>>,
}

impl HopBackoff {
    /// No hop backing off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records an attempt through `hop`: `answered` (it delivered or gave a
    /// permanent reply) clears its back-off; otherwise the next wait comes
    /// from `config`'s schedule, counting consecutive failures. A failure
    /// while the hop is already backing off (another message of the same
    /// outage, e.g. one just received and tried at once) does not lengthen
    /// the wait: ten messages arriving during a short outage must not push
    /// the hop to the hourly retry.
    pub fn record(&self, hop: &QueuedHop, answered: bool, now: SystemTime, config: &QueueConfig) {
        let mut hops = self.hops.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if answered {
            hops.remove(hop);
            return;
        }
        if hops.get(hop).is_some_and(|h| h.retry_at > now) {
            return;
        }
        let failures = hops.get(hop).map_or(0, |h| h.failures).saturating_add(1);
        let retry_at = now + config.retry_delay(failures);
        hops.insert(hop.clone(), HopState { failures, retry_at });
    }

    /// Ends `hop`'s back-off: it may be tried at once (an administrator
    /// asked for a retry).
    pub fn clear(&self, hop: &QueuedHop) {
        let mut hops = self.hops.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hops.remove(hop);
    }

    /// Whether `hop` may be tried at `now`.
    pub fn is_ready(&self, hop: &QueuedHop, now: SystemTime) -> bool {
        self.retry_at(hop).is_none_or(|at| at <= now)
    }

    /// When `hop` may be tried again, if it is backing off at all.
    pub fn retry_at(&self, hop: &QueuedHop) -> Option<SystemTime> {
        let hops = self.hops.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        hops.get(hop).map(|h| h.retry_at)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::time::Duration;

    use super::*;

    fn hop(text: &str) -> QueuedHop {
        QueuedHop::read(text.to_owned())
    }

    #[test]
    fn consecutive_failures_lengthen_the_wait_and_success_clears_it() {
        let config = QueueConfig::default();
        let backoff = HopBackoff::new();
        let t0 = SystemTime::UNIX_EPOCH;
        assert!(backoff.is_ready(&hop("fabrikam.com"), t0));
        backoff.record(&hop("fabrikam.com"), false, t0, &config);
        assert_eq!(
            backoff.retry_at(&hop("fabrikam.com")),
            Some(t0 + Duration::from_secs(60))
        );
        assert!(!backoff.is_ready(&hop("fabrikam.com"), t0 + Duration::from_secs(59)));
        assert!(
            backoff.is_ready(&hop("contoso.com"), t0),
            "other hops are unaffected"
        );
        // Another failure of the same outage, before the wait is over.
        backoff.record(&hop("fabrikam.com"), false, t0 + Duration::from_secs(1), &config);
        assert_eq!(
            backoff.retry_at(&hop("fabrikam.com")),
            Some(t0 + Duration::from_secs(60)),
            "failures while backing off do not lengthen the wait"
        );
        // The retry after the wait fails too: the next wait is longer.
        let t1 = t0 + Duration::from_secs(60);
        backoff.record(&hop("fabrikam.com"), false, t1, &config);
        assert_eq!(
            backoff.retry_at(&hop("fabrikam.com")),
            Some(t1 + Duration::from_secs(300))
        );
        backoff.record(&hop("fabrikam.com"), true, t0, &config);
        assert!(backoff.is_ready(&hop("fabrikam.com"), t0));
    }
}
