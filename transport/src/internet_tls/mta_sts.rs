//! MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy file and MX
//! pattern matching. Fetching and caching live in [`super::sts_fetch`].
//!
//! mail-auth (which has these parsers) needs a newer toolchain than the
//! workspace's, so the two small key-value formats are parsed here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A policy's mode (RFC 8461 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MtaStsMode {
    /// Deliver only to listed MX hosts with PKI-valid certificates.
    Enforce,
    /// Report failures, deliver anyway.
    Testing,
    /// No policy.
    None,
}

impl MtaStsMode {
    /// The policy file's word.
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsMode::Enforce => "enforce",
            MtaStsMode::Testing => "testing",
            MtaStsMode::None => "none",
        }
    }
}

impl std::str::FromStr for MtaStsMode {
    type Err = StsParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "enforce" => Ok(MtaStsMode::Enforce),
            "testing" => Ok(MtaStsMode::Testing),
            "none" => Ok(MtaStsMode::None),
            other => Err(StsParseError(format!("unknown mode {other:?}"))),
        }
    }
}

/// A parsed policy file (`/.well-known/mta-sts.txt`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtaStsPolicy {
    /// The mode.
    pub mode: MtaStsMode,
    /// MX patterns: host names, or `*.` and one label's wildcard.
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

/// The longest `max_age` honoured (RFC 8461 §3.2: up to 31557600).
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A malformed record or policy (the publisher's fault).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed MTA-STS data: {0}")]
pub struct StsParseError(pub String);

impl MtaStsPolicy {
    /// Parses a policy file (RFC 8461 §3.2): `key: value` lines.
    pub fn parse(text: &str) -> Result<Self, StsParseError> {
        let mut version = None;
        let mut mode = None;
        let mut max_age = None;
        let mut mx = Vec::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                return Err(StsParseError(format!(
                    "line without a colon: {:?}",
                    line.escape_debug().to_string()
                )));
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_owned()),
                "mode" => mode = Some(value.parse::<MtaStsMode>()?),
                "max_age" => {
                    let age: u64 = value
                        .parse()
                        .map_err(|_| StsParseError(format!("max_age {value:?} is not a number")))?;
                    max_age = Some(age.min(MAX_AGE_LIMIT));
                }
                "mx" => mx.push(value.to_ascii_lowercase().trim_end_matches('.').to_owned()),
                _ => {} // Unknown keys are ignored (§3.2).
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err(StsParseError("version is not STSv1".into()));
        }
        let mode = mode.ok_or_else(|| StsParseError("no mode".into()))?;
        let max_age = max_age.ok_or_else(|| StsParseError("no max_age".into()))?;
        if mx.is_empty() && mode != MtaStsMode::None {
            return Err(StsParseError("no mx patterns".into()));
        }
        Ok(Self { mode, mx, max_age })
    }

    /// Whether `host` matches one of the MX patterns (RFC 8461 §4.1): equal,
    /// or `*.rest` with exactly one label before `rest`.
    pub fn mx_matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(rest) => host
                .split_once('.')
                .is_some_and(|(label, tail)| !label.is_empty() && tail == rest),
            None => *pattern == host,
        })
    }

    /// The policy file's text (what an edge serves for our own domain).
    pub fn to_text(&self) -> String {
        let mut text = format!("version: STSv1\r\nmode: {}\r\n", self.mode.as_str());
        for mx in &self.mx {
            text.push_str(&format!("mx: {mx}\r\n"));
        }
        text.push_str(&format!("max_age: {}\r\n", self.max_age));
        text
    }
}

/// The `_mta-sts.<domain>` TXT record (RFC 8461 §3.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StsRecord {
    /// The policy id: a changed id means a new policy to fetch.
    pub id: String,
}

impl StsRecord {
    /// Parses `v=STSv1; id=…` (fields separated by `;`).
    pub fn parse(text: &str) -> Result<Self, StsParseError> {
        let mut fields = text.split(';').map(str::trim).filter(|f| !f.is_empty());
        if fields.next() != Some("v=STSv1") {
            return Err(StsParseError("the record does not start with v=STSv1".into()));
        }
        let id = fields
            .filter_map(|f| f.split_once('='))
            .find(|(k, _)| k.trim() == "id")
            .map(|(_, v)| v.trim().to_owned())
            .ok_or_else(|| StsParseError("no id".into()))?;
        if id.is_empty() || id.len() > 32 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(StsParseError(format!(
                "bad id {:?}",
                id.escape_debug().to_string()
            )));
        }
        Ok(Self { id })
    }
}

impl fmt::Display for StsRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v=STSv1; id={}", self.id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn policy_files() {
        let p = MtaStsPolicy::parse("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n").unwrap();
        assert_eq!(p.mode, MtaStsMode::Enforce);
        assert_eq!(p.max_age, 604800);
        assert!(p.mx_matches("mail.example.com"));
        assert!(p.mx_matches("MX1.example.net."));
        assert!(!p.mx_matches("example.net"));
        assert!(!p.mx_matches("a.b.example.net"));
        assert!(!p.mx_matches("mail.example.org"));
        assert_eq!(MtaStsPolicy::parse(&p.to_text()).unwrap(), p);
        let capped =
            MtaStsPolicy::parse("version: STSv1\nmode: testing\nmx: a.b\nmax_age: 99999999999\n").unwrap();
        assert_eq!(capped.max_age, MAX_AGE_LIMIT);
        for bad in [
            "mode: enforce\nmx: a.b\nmax_age: 1\n",
            "version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            "version: STSv1\nmode: enforce\nmx: a.b\n",
            "version: STSv1\nmode enforce\n",
        ] {
            assert!(MtaStsPolicy::parse(bad).is_err(), "{bad}");
        }
        assert!(MtaStsPolicy::parse("version: STSv1\nmode: none\nmax_age: 5\n").is_ok());
    }

    #[test]
    fn records() {
        assert_eq!(
            StsRecord::parse("v=STSv1; id=20160831085700Z;").unwrap().id,
            "20160831085700Z"
        );
        assert_eq!(
            StsRecord::parse("v=STSv1;id=abc").unwrap().to_string(),
            "v=STSv1; id=abc"
        );
        assert!(StsRecord::parse("v=STSv2; id=1").is_err());
        assert!(StsRecord::parse("v=STSv1").is_err());
        assert!(StsRecord::parse("v=STSv1; id=a-b").is_err());
    }
}
