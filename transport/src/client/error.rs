//! Why a connection or a transaction failed as a whole. Every variant is
//! transient for the queue: the recipients stay queued and are retried
//! (refusals of a recipient or of the message are not errors but
//! [`DeliveryOutcome`]s). The variants say who is at fault: the network,
//! the peer's protocol, or the peer's TLS.

use std::io;

use crate::queue::{DeliveryOutcome, RecipientOutcome};
use crate::smtp::{Reply, ReplyError};

/// A failure that ends the connection; the caller defers every recipient.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hop lists no host to connect to.
    #[error("next hop {0} has no host to connect to")]
    NoHosts(crate::routing::NextHop),
    /// A host name did not resolve, or no address accepted the connection.
    #[error("cannot connect to {host}: {source}")]
    Connect {
        /// `host:port` as configured.
        host: String,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// The peer did not answer (or accept our bytes) in time.
    #[error("timed out waiting for {stage} from {host}")]
    Timeout {
        /// `host:port`.
        host: String,
        /// What we were waiting for (`greeting`, `reply to MAIL`, …).
        stage: &'static str,
    },
    /// Reading or writing the connection failed.
    #[error("connection to {host} failed: {source}")]
    Io {
        /// `host:port`.
        host: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The peer closed the connection while we expected a reply.
    #[error("{host} closed the connection during {stage}")]
    Closed {
        /// `host:port`.
        host: String,
        /// What we were waiting for.
        stage: &'static str,
    },
    /// The peer sent bytes that are not an SMTP reply.
    #[error("{host} broke the protocol: {source}")]
    Protocol {
        /// `host:port`.
        host: String,
        /// What was wrong.
        #[source]
        source: ReplyError,
    },
    /// The peer refused the session (greeting, EHLO/HELO, RSET) or
    /// answered out of sequence.
    #[error("{host} refused {stage}: {reply}")]
    Refused {
        /// `host:port`.
        host: String,
        /// The step refused.
        stage: &'static str,
        /// The reply, as sent.
        reply: String,
    },
    /// The hop requires TLS but the server does not offer STARTTLS; nothing
    /// was sent in plain text.
    #[error("{0} does not offer STARTTLS, which this hop requires; the message stays queued")]
    StartTlsNotOffered(String),
    /// The hop requires TLS and the server refused our STARTTLS.
    #[error("{host} refused STARTTLS, which this hop requires: {reply}")]
    StartTlsRefused {
        /// `host:port`.
        host: String,
        /// Its reply.
        reply: String,
    },
    /// The TLS handshake or the verification of the server failed (with
    /// required TLS; opportunistic TLS falls back to plain text).
    #[error("TLS with {0} failed: {1}")]
    Tls(String, #[source] io::Error),
    /// The name to check the server's certificate against is not a valid
    /// TLS server name (our configuration).
    #[error("{0:?} cannot be used as a TLS server name")]
    BadServerName(String),
    /// The host's TLS policy (DANE, MTA-STS) forbids using it: nothing was
    /// sent, never in plain text.
    #[error("{host} not used: {refusal}")]
    Policy {
        /// `host:port`.
        host: String,
        /// Which policy refused, and why.
        refusal: crate::internet_tls::PolicyRefusal,
    },
    /// A REQUIRETLS message (RFC 8689) cannot go through this host: no
    /// verified TLS (`5.7.10`) or the server does not offer REQUIRETLS
    /// (`5.7.30`). Permanent when no host will do.
    #[error("{host}: {code} {reason}")]
    RequireTls {
        /// `host:port`.
        host: String,
        /// The enhanced status code (`5.7.10`, `5.7.30`).
        code: &'static str,
        /// Why.
        reason: String,
    },
    /// A failure under a TLS policy other than the connector's (the queue
    /// entry says which policy applied).
    #[error("{source} [TLS policy {policy}]")]
    UnderPolicy {
        /// The policy that applied.
        policy: crate::internet_tls::PolicySource,
        /// The failure.
        #[source]
        source: Box<ClientError>,
    },
}

impl ClientError {
    /// What the error means for each recipient of the attempt: a transient
    /// failure carrying the error's text.
    pub fn outcomes(&self, recipients: &[String]) -> Vec<RecipientOutcome> {
        let text = self.to_string();
        recipients
            .iter()
            .map(|r| RecipientOutcome::new(r.clone(), DeliveryOutcome::TransientFailure(text.clone())))
            .collect()
    }

    /// True for failures found at TLS time (for the domain-secured session
    /// failure counter of DESIGN §6).
    pub fn is_tls_failure(&self) -> bool {
        matches!(
            self,
            Self::StartTlsNotOffered(_)
                | Self::StartTlsRefused { .. }
                | Self::Tls(..)
                | Self::BadServerName(_)
                | Self::Policy { .. }
        ) || matches!(self, Self::UnderPolicy { source, .. } if source.is_tls_failure())
    }
}

/// A reply as one line of text for outcomes and errors: `550 5.1.1 No such
/// user` (the lines of a multi-line reply joined by spaces).
pub(crate) fn reply_text(reply: &Reply) -> String {
    let mut text = reply.code().to_string();
    if let Some(e) = reply.enhanced() {
        text.push(' ');
        text.push_str(&e.to_string());
    }
    for line in reply.lines() {
        if !line.is_empty() {
            text.push(' ');
            text.push_str(line);
        }
    }
    text
}
