//! `QueueConfig`: the queue's timers (retry schedule, expiration, delay
//! notice), with the defaults of Exchange and Postfix.

use std::time::Duration;

use crate::queue::error::{QueueError, Result};

/// Timers and names the queue works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Waits between attempts: after the n-th failed attempt the next one
    /// comes `retry_schedule[n-1]` later; past the end, the last entry
    /// repeats. Default: 1, 5, 15, 30, 60 minutes, then every hour.
    pub retry_schedule: Vec<Duration>,
    /// How long a message may stay queued before its undelivered recipients
    /// fail with 4.4.7 (Exchange's `MessageExpirationTimeout`). Default 2 days.
    pub expiration: Duration,
    /// After how long a still-undelivered message earns one delay notice
    /// (Exchange's `DelayNotificationTimeout`, Postfix's
    /// `delay_warning_time`). Default 4 hours. `None`: never.
    pub delay_notice_after: Option<Duration>,
    /// The name this node gives itself in DSNs (`Reporting-MTA`, the
    /// `MAILER-DAEMON@` address, the `Message-ID` domain).
    pub reporting_mta: String,
}

impl Default for QueueConfig {
    fn default() -> Self {
        const MINUTE: u64 = 60;
        Self {
            retry_schedule: [1, 5, 15, 30, 60]
                .into_iter()
                .map(|m| Duration::from_secs(m * MINUTE))
                .collect(),
            expiration: Duration::from_secs(2 * 24 * 3600),
            delay_notice_after: Some(Duration::from_secs(4 * 3600)),
            reporting_mta: "localhost".to_owned(),
        }
    }
}

impl QueueConfig {
    /// Refuses a configuration the queue cannot run with.
    pub fn validate(&self) -> Result<()> {
        if self.retry_schedule.is_empty() {
            return Err(QueueError::Config("the retry schedule is empty".into()));
        }
        if self.retry_schedule.iter().any(Duration::is_zero) {
            return Err(QueueError::Config(
                "a retry interval of zero would retry in a tight loop".into(),
            ));
        }
        if self.reporting_mta.trim().is_empty() {
            return Err(QueueError::Config("reporting_mta is empty".into()));
        }
        Ok(())
    }

    /// The wait after the `failures`-th consecutive failure (1-based; 0 is
    /// treated as 1).
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let index = usize::try_from(failures.saturating_sub(1)).unwrap_or(usize::MAX);
        self.retry_schedule
            .get(index)
            .or(self.retry_schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(3600))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn default_schedule_backs_off_then_repeats_hourly() {
        let config = QueueConfig::default();
        let minutes: Vec<u64> = (1..=8).map(|n| config.retry_delay(n).as_secs() / 60).collect();
        assert_eq!(minutes, [1, 5, 15, 30, 60, 60, 60, 60]);
        assert_eq!(config.retry_delay(0), config.retry_delay(1));
        assert_eq!(config.expiration.as_secs(), 172_800);
        assert!(config.validate().is_ok());
    }

    #[test]
    fn refuses_empty_or_zero_schedule() {
        let mut config = QueueConfig {
            retry_schedule: vec![],
            ..QueueConfig::default()
        };
        assert!(config.validate().is_err());
        config.retry_schedule = vec![Duration::ZERO];
        assert!(config.validate().is_err());
    }
}
