//! Where the mailboxes of an accepted domain are delivered: into the
//! Maildir of the mailbox's home hub (the default), or to a mailbox server
//! over LMTP (RFC 2033), as Postfix sites hand mail to Dovecot.
//!
//! Written and read as `maildir` or `lmtp://HOST:PORT` (`[v6]:PORT` for an
//! IPv6 literal; the port defaults to 24, the port LMTP servers commonly
//! listen on, since RFC 2033 assigns none).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Domain;

/// The port an LMTP server is reached on when `lmtp://HOST` names none.
pub const DEFAULT_LMTP_PORT: u16 = 24;

/// How an accepted domain's mailboxes get their mail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MailboxDelivery {
    /// Into the Maildir of each mailbox's home hub.
    #[default]
    Maildir,
    /// To a mailbox server over LMTP; per-recipient replies after the
    /// message decide each recipient's fate.
    Lmtp(LmtpServer),
}

impl MailboxDelivery {
    /// Whether this is the default, Maildir delivery (not written out, so
    /// objects stored before the field existed read the same).
    pub fn is_maildir(&self) -> bool {
        matches!(self, MailboxDelivery::Maildir)
    }
}

/// A mailbox server's LMTP listener.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LmtpServer {
    /// A host name or an IP literal (without brackets).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

/// Why a delivery setting was not understood; the administrator's input
/// is at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailboxDeliveryError {
    /// Neither `maildir` nor an `lmtp://` URL.
    #[error("unknown delivery {0:?}: use maildir or lmtp://HOST:PORT")]
    Unknown(String),
    /// `lmtp://` without a host.
    #[error("{0:?} names no host: use lmtp://HOST:PORT")]
    NoHost(String),
    /// The host is neither a DNS name nor an IP literal.
    #[error("{0:?} is not a host name or IP address")]
    BadHost(String),
    /// The port is not a number from 1 to 65535.
    #[error("{0:?} is not a TCP port (1-65535)")]
    BadPort(String),
    /// LMTP on the SMTP port is forbidden (RFC 2033 §5).
    #[error("LMTP must not be used on port 25 (RFC 2033 §5)")]
    SmtpPort,
}

impl FromStr for MailboxDelivery {
    type Err = MailboxDeliveryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.eq_ignore_ascii_case("maildir") {
            return Ok(MailboxDelivery::Maildir);
        }
        let Some(rest) = text
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("lmtp://"))
            .map(|_| text[7..].trim_end_matches('/'))
        else {
            return Err(MailboxDeliveryError::Unknown(text.to_owned()));
        };
        let (host, port) = split_host_port(rest)?;
        if host.is_empty() {
            return Err(MailboxDeliveryError::NoHost(text.to_owned()));
        }
        let port = match port {
            None => DEFAULT_LMTP_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(MailboxDeliveryError::BadPort(p.to_owned())),
                Ok(25) => return Err(MailboxDeliveryError::SmtpPort),
                Ok(n) => n,
            },
        };
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        if !is_ip && Domain::parse(host).is_err() {
            return Err(MailboxDeliveryError::BadHost(host.to_owned()));
        }
        Ok(MailboxDelivery::Lmtp(LmtpServer {
            host: host.to_ascii_lowercase(),
            port,
        }))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), MailboxDeliveryError> {
    if let Some(inner) = text.strip_prefix('[') {
        let Some((host, after)) = inner.split_once(']') else {
            return Err(MailboxDeliveryError::BadHost(text.to_owned()));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(MailboxDeliveryError::BadHost(host.to_owned()));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(MailboxDeliveryError::BadHost(text.to_owned())),
            },
        };
    }
    Ok(match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

impl fmt::Display for LmtpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "lmtp://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "lmtp://{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for MailboxDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxDelivery::Maildir => f.write_str("maildir"),
            MailboxDelivery::Lmtp(server) => server.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lmtp(host: &str, port: u16) -> MailboxDelivery {
        MailboxDelivery::Lmtp(LmtpServer {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn parses_what_administrators_write() {
        let table: [(&str, Result<MailboxDelivery, MailboxDeliveryError>); 12] = [
            ("maildir", Ok(MailboxDelivery::Maildir)),
            (" Maildir ", Ok(MailboxDelivery::Maildir)),
            ("lmtp://127.0.0.1:2424", Ok(lmtp("127.0.0.1", 2424))),
            ("LMTP://Mail.Adatum.com:24/", Ok(lmtp("mail.adatum.com", 24))),
            ("lmtp://mailstore", Ok(lmtp("mailstore", DEFAULT_LMTP_PORT))),
            ("lmtp://[::1]:2424", Ok(lmtp("::1", 2424))),
            ("lmtp://[::1]", Ok(lmtp("::1", DEFAULT_LMTP_PORT))),
            (
                "smtp://x:25",
                Err(MailboxDeliveryError::Unknown("smtp://x:25".into())),
            ),
            (
                "lmtp://:24",
                Err(MailboxDeliveryError::NoHost("lmtp://:24".into())),
            ),
            ("lmtp://x:0", Err(MailboxDeliveryError::BadPort("0".into()))),
            ("lmtp://x:25", Err(MailboxDeliveryError::SmtpPort)),
            ("lmtp://a b:24", Err(MailboxDeliveryError::BadHost("a b".into()))),
        ];
        for (text, expected) in table {
            assert_eq!(text.parse::<MailboxDelivery>(), expected, "{text}");
        }
    }

    #[test]
    fn written_as_parsed() {
        for text in ["maildir", "lmtp://127.0.0.1:2424", "lmtp://[::1]:24"] {
            let parsed: MailboxDelivery = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[test]
    fn json_form() {
        let json = serde_json::to_string(&lmtp("h", 24)).unwrap_or_default();
        assert_eq!(json, r#"{"lmtp":{"host":"h","port":24}}"#);
        assert_eq!(
            serde_json::to_string(&MailboxDelivery::Maildir).unwrap_or_default(),
            r#""maildir""#
        );
    }
}
