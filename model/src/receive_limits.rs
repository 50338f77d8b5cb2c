//! A receive connector's limits and timeouts, under Exchange's names and
//! with its defaults (Set-ReceiveConnector): how many connections, from
//! one source and in all; how long a session may live and idle; how many
//! protocol errors it may make; how long 5xx replies to unauthenticated
//! clients are delayed (the tarpit).
//!
//! Every field is optional in storage: a connector saved before a limit
//! existed, or created without it, takes the default of the node's role
//! ([`ReceiveLimits::filled`]), which `get` then shows.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NodeRole;

/// A count that may also be `unlimited` (Exchange's `Unlimited`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub enum CountLimit {
    /// No limit.
    Unlimited,
    /// At most this many.
    At(u32),
}

impl CountLimit {
    /// Whether `n` is over the limit (`n > limit`).
    pub fn exceeded_by(self, n: u64) -> bool {
        match self {
            Self::Unlimited => false,
            Self::At(max) => n > u64::from(max),
        }
    }

    /// Whether `n` has reached the limit (`n >= limit`).
    pub fn reached_by(self, n: u64) -> bool {
        match self {
            Self::Unlimited => false,
            Self::At(max) => n >= u64::from(max),
        }
    }
}

impl std::str::FromStr for CountLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(Self::Unlimited);
        }
        s.parse()
            .map(Self::At)
            .map_err(|_| format!("{s:?} is neither a count nor \"unlimited\""))
    }
}

impl fmt::Display for CountLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unlimited => f.write_str("unlimited"),
            Self::At(n) => write!(f, "{n}"),
        }
    }
}

impl TryFrom<serde_json::Value> for CountLimit {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, Self::Error> {
        match v {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Self::At)
                .ok_or_else(|| format!("{n} is not a count")),
            serde_json::Value::String(s) => s.parse(),
            other => Err(format!("{other} is not a count")),
        }
    }
}

impl From<CountLimit> for serde_json::Value {
    fn from(c: CountLimit) -> Self {
        match c {
            CountLimit::Unlimited => Self::String("unlimited".into()),
            CountLimit::At(n) => Self::from(n),
        }
    }
}

/// A duration written as Exchange writes time spans (`00:05:00`,
/// `1.00:00:00`, `00:00:00.500`); also read as seconds (`90`) or with a
/// unit (`90s`, `500ms`, `5m`, `1h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeSpan(pub Duration);

impl TimeSpan {
    /// `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
}

impl std::str::FromStr for TimeSpan {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let bad = || format!("{s:?} is not a time span (hh:mm:ss, or 90s, 500ms, 5m, 1h)");
        let number = |n: &str| n.parse::<u64>().map_err(|_| bad());
        if t.contains(':') {
            let (days, clock) = match t.split_once('.') {
                Some((d, rest)) if rest.contains(':') => (number(d)?, rest),
                _ => (0, t),
            };
            let parts: Vec<&str> = clock.split(':').collect();
            let [h, m, sec] = parts[..] else {
                return Err(bad());
            };
            let (sec, frac) = match sec.split_once('.') {
                Some((s, f)) => (s, Some(f)),
                None => (sec, None),
            };
            let (h, m, sec) = (number(h)?, number(m)?, number(sec)?);
            if m >= 60 || sec >= 60 {
                return Err(bad());
            }
            let millis = match frac {
                Some(f) if !f.is_empty() && f.len() <= 7 && f.bytes().all(|b| b.is_ascii_digit()) => {
                    let padded = format!("{f:0<3}");
                    number(&padded[..3])?
                }
                Some(_) => return Err(bad()),
                None => 0,
            };
            let secs = ((days * 24 + h) * 60 + m) * 60 + sec;
            return Ok(Self(Duration::from_secs(secs) + Duration::from_millis(millis)));
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (n, unit) = t.split_at(split);
        let n = number(n)?;
        let d = match unit.trim() {
            "" | "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            _ => return Err(bad()),
        };
        Ok(Self(d))
    }
}

impl TryFrom<String> for TimeSpan {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TimeSpan> for String {
    fn from(t: TimeSpan) -> Self {
        t.to_string()
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_secs();
        let (days, rest) = (total / 86_400, total % 86_400);
        if days > 0 {
            write!(f, "{days}.")?;
        }
        write!(f, "{:02}:{:02}:{:02}", rest / 3600, rest / 60 % 60, rest % 60)?;
        let millis = self.0.subsec_millis();
        if millis > 0 {
            write!(f, ".{millis:03}")?;
        }
        Ok(())
    }
}

/// The limits of one receive connector; `None` is the role's default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveLimits {
    /// Connections served at once (`MaxInboundConnection`, 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inbound_connection: Option<CountLimit>,
    /// Connections at once from one address (`MaxInboundConnectionPerSource`, 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inbound_connection_per_source: Option<CountLimit>,
    /// Connections at once from one address, as a percentage of the
    /// connections still available (`MaxInboundConnectionPercentagePerSource`, 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_inbound_connection_percentage_per_source: Option<u8>,
    /// A session's whole life (`ConnectionTimeout`: edge 5 min, hub 10 min).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout: Option<TimeSpan>,
    /// Silence allowed between reads (`ConnectionInactivityTimeout`:
    /// edge 1 min, hub 5 min).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_inactivity_timeout: Option<TimeSpan>,
    /// Protocol errors before 421 4.7.0 (`MaxProtocolErrors`, 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_protocol_errors: Option<CountLimit>,
    /// Delay of 5xx replies to unauthenticated clients (`TarpitInterval`, 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tarpit_interval: Option<TimeSpan>,
}

/// [`ReceiveLimits`] with every default applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EffectiveLimits {
    /// See [`ReceiveLimits::max_inbound_connection`].
    pub max_inbound_connection: CountLimit,
    /// See [`ReceiveLimits::max_inbound_connection_per_source`].
    pub max_inbound_connection_per_source: CountLimit,
    /// See [`ReceiveLimits::max_inbound_connection_percentage_per_source`].
    pub max_inbound_connection_percentage_per_source: u8,
    /// See [`ReceiveLimits::connection_timeout`].
    pub connection_timeout: Duration,
    /// See [`ReceiveLimits::connection_inactivity_timeout`].
    pub connection_inactivity_timeout: Duration,
    /// See [`ReceiveLimits::max_protocol_errors`].
    pub max_protocol_errors: CountLimit,
    /// See [`ReceiveLimits::tarpit_interval`].
    pub tarpit_interval: Duration,
}

impl EffectiveLimits {
    /// Exchange's defaults for a connector on a node of `role`.
    /// `org_only`: only organisation nodes may use it (a hub's default
    /// connector), so a single source (an edge) is not limited.
    pub fn defaults(role: NodeRole, org_only: bool) -> Self {
        let (life, idle) = match role {
            NodeRole::Edge => (5 * 60, 60),
            NodeRole::Hub => (10 * 60, 5 * 60),
        };
        Self {
            max_inbound_connection: CountLimit::At(5000),
            max_inbound_connection_per_source: if org_only {
                CountLimit::Unlimited
            } else {
                CountLimit::At(20)
            },
            max_inbound_connection_percentage_per_source: if org_only { 100 } else { 2 },
            connection_timeout: Duration::from_secs(life),
            connection_inactivity_timeout: Duration::from_secs(idle),
            max_protocol_errors: CountLimit::At(5),
            tarpit_interval: Duration::from_secs(5),
        }
    }
}

impl ReceiveLimits {
    /// Every `None` replaced by the default of `role` (see [`EffectiveLimits::defaults`]).
    pub fn filled(&self, role: NodeRole, org_only: bool) -> Self {
        let e = self.effective(role, org_only);
        Self {
            max_inbound_connection: Some(e.max_inbound_connection),
            max_inbound_connection_per_source: Some(e.max_inbound_connection_per_source),
            max_inbound_connection_percentage_per_source: Some(
                e.max_inbound_connection_percentage_per_source,
            ),
            connection_timeout: Some(TimeSpan(e.connection_timeout)),
            connection_inactivity_timeout: Some(TimeSpan(e.connection_inactivity_timeout)),
            max_protocol_errors: Some(e.max_protocol_errors),
            tarpit_interval: Some(TimeSpan(e.tarpit_interval)),
        }
    }

    /// The limits in force: these, or the defaults of `role`.
    pub fn effective(&self, role: NodeRole, org_only: bool) -> EffectiveLimits {
        let d = EffectiveLimits::defaults(role, org_only);
        EffectiveLimits {
            max_inbound_connection: self.max_inbound_connection.unwrap_or(d.max_inbound_connection),
            max_inbound_connection_per_source: self
                .max_inbound_connection_per_source
                .unwrap_or(d.max_inbound_connection_per_source),
            max_inbound_connection_percentage_per_source: self
                .max_inbound_connection_percentage_per_source
                .unwrap_or(d.max_inbound_connection_percentage_per_source),
            connection_timeout: self.connection_timeout.map_or(d.connection_timeout, |t| t.0),
            connection_inactivity_timeout: self
                .connection_inactivity_timeout
                .map_or(d.connection_inactivity_timeout, |t| t.0),
            max_protocol_errors: self.max_protocol_errors.unwrap_or(d.max_protocol_errors),
            tarpit_interval: self.tarpit_interval.map_or(d.tarpit_interval, |t| t.0),
        }
    }

    /// Exchange's ranges: a percentage of 1–100, timeouts above zero.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.max_inbound_connection_percentage_per_source
            && !(1..=100).contains(&p)
        {
            return Err(format!(
                "--max-inbound-connection-percentage-per-source must be 1 to 100, not {p}"
            ));
        }
        for (name, t) in [
            ("--connection-timeout", self.connection_timeout),
            (
                "--connection-inactivity-timeout",
                self.connection_inactivity_timeout,
            ),
        ] {
            if t.is_some_and(|t| t.0.is_zero()) {
                return Err(format!("{name} must be longer than zero"));
            }
        }
        if let (Some(life), Some(idle)) = (self.connection_timeout, self.connection_inactivity_timeout)
            && idle > life
        {
            return Err(format!(
                "--connection-inactivity-timeout ({idle}) must not exceed --connection-timeout ({life})"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn time_spans_read_and_write_like_exchange() {
        for (text, secs, millis, shown) in [
            ("00:05:00", 300, 0, "00:05:00"),
            ("1.02:03:04", 93_784, 0, "1.02:03:04"),
            ("00:00:00.5", 0, 500, "00:00:00.500"),
            ("90", 90, 0, "00:01:30"),
            ("90s", 90, 0, "00:01:30"),
            ("250ms", 0, 250, "00:00:00.250"),
            ("5m", 300, 0, "00:05:00"),
            ("1h", 3600, 0, "01:00:00"),
        ] {
            let t: TimeSpan = text.parse().unwrap();
            assert_eq!(
                t.0,
                Duration::from_secs(secs) + Duration::from_millis(millis),
                "{text}"
            );
            assert_eq!(t.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<TimeSpan>().unwrap(), t, "{shown}");
        }
        for bad in ["", "x", "00:61:00", "1:2", "5 parsecs", "00:00:00.x"] {
            assert!(bad.parse::<TimeSpan>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counts_and_json() {
        assert_eq!("Unlimited".parse::<CountLimit>().unwrap(), CountLimit::Unlimited);
        assert_eq!("20".parse::<CountLimit>().unwrap(), CountLimit::At(20));
        assert!("-1".parse::<CountLimit>().is_err());
        let limits = ReceiveLimits {
            max_inbound_connection: Some(CountLimit::Unlimited),
            tarpit_interval: Some(TimeSpan::secs(5)),
            ..ReceiveLimits::default()
        };
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(
            json,
            r#"{"max_inbound_connection":"unlimited","tarpit_interval":"00:00:05"}"#
        );
        assert_eq!(serde_json::from_str::<ReceiveLimits>(&json).unwrap(), limits);
        assert_eq!(
            serde_json::from_str::<ReceiveLimits>(r#"{"max_protocol_errors":7}"#)
                .unwrap()
                .max_protocol_errors,
            Some(CountLimit::At(7))
        );
    }

    #[test]
    fn defaults_follow_the_role() {
        let edge = ReceiveLimits::default().effective(NodeRole::Edge, false);
        assert_eq!(edge.connection_timeout, Duration::from_secs(300));
        assert_eq!(edge.connection_inactivity_timeout, Duration::from_secs(60));
        assert_eq!(edge.max_inbound_connection_per_source, CountLimit::At(20));
        let hub = ReceiveLimits::default().effective(NodeRole::Hub, true);
        assert_eq!(hub.connection_timeout, Duration::from_secs(600));
        assert_eq!(hub.max_inbound_connection_per_source, CountLimit::Unlimited);
        let filled = ReceiveLimits::default().filled(NodeRole::Edge, false);
        assert_eq!(filled.effective(NodeRole::Hub, true), edge);
        assert!(
            ReceiveLimits {
                max_inbound_connection_percentage_per_source: Some(0),
                ..ReceiveLimits::default()
            }
            .validate()
            .is_err()
        );
    }
}
