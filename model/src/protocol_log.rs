//! `ProtocolLoggingLevel`: how much of a connector's SMTP conversations goes
//! to the protocol log. It lives here because connectors are replicated
//! objects: an edge reads the level from its replica, not from the engine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A connector's protocol logging level, as Exchange's `-ProtocolLoggingLevel`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolLoggingLevel {
    /// Nothing is logged (the default, as in Exchange).
    #[default]
    None,
    /// Every command, reply and TLS event is logged (never message content).
    Verbose,
}

/// Why a string is not a protocol logging level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a protocol logging level: use none or verbose")]
pub struct ProtocolLoggingLevelError(pub String);

impl ProtocolLoggingLevel {
    /// The level as written on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolLoggingLevel::None => "none",
            ProtocolLoggingLevel::Verbose => "verbose",
        }
    }
}

impl fmt::Display for ProtocolLoggingLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProtocolLoggingLevel {
    type Err = ProtocolLoggingLevelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("none") {
            Ok(Self::None)
        } else if s.eq_ignore_ascii_case("verbose") {
            Ok(Self::Verbose)
        } else {
            Err(ProtocolLoggingLevelError(s.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_round_trips() {
        assert_eq!(
            "Verbose".parse::<ProtocolLoggingLevel>(),
            Ok(ProtocolLoggingLevel::Verbose)
        );
        assert_eq!(
            "NONE".parse::<ProtocolLoggingLevel>(),
            Ok(ProtocolLoggingLevel::None)
        );
        assert!("loud".parse::<ProtocolLoggingLevel>().is_err());
        assert_eq!(ProtocolLoggingLevel::default(), ProtocolLoggingLevel::None);
        let json = serde_json::to_string(&ProtocolLoggingLevel::Verbose).unwrap();
        assert_eq!(json, "\"verbose\"");
        assert_eq!(
            serde_json::from_str::<ProtocolLoggingLevel>(&json).unwrap(),
            ProtocolLoggingLevel::Verbose
        );
    }
}
