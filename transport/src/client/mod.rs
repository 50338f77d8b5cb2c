//! The SMTP client that relays queued mail to a next hop (not to be
//! confused with [`crate::smtp::client`], the sans-IO reply parser it
//! builds on).
//!
//! * [`Connector`] opens a [`ClientConnection`] to an [`SmtpHop`]: it tries
//!   the hop's hosts in order, reads the greeting, says EHLO (HELO as a
//!   fallback) and applies the hop's [`TlsRequirement`] (DESIGN §6);
//! * [`ClientConnection::send`] runs one mail transaction, pipelined when
//!   the server offers PIPELINING, and maps the replies to one
//!   [`RecipientOutcome`] per recipient;
//! * [`Pool`] keeps idle connections per next-hop key for reuse, like
//!   Postfix's connection cache.
//!
//! The same client speaks LMTP (RFC 2033) to mailbox servers
//! ([`Dialect::Lmtp`]): LHLO instead of EHLO, and one reply per accepted
//! recipient after the message instead of one for all; everything else
//! (STARTTLS, pipelining, the pool, the protocol log, the counters) is
//! shared.
//!
//! The pure pieces (the TLS decision, the command lines, dot-stuffing, the
//! reply-to-outcome mapping) live in [`plan`] and [`transaction`] with table
//! tests; the I/O pieces only sequence them.
//!
//! [`SmtpHop`]: crate::routing::SmtpHop
//! [`TlsRequirement`]: crate::tls::TlsRequirement
//! [`RecipientOutcome`]: crate::queue::RecipientOutcome

mod connect;
mod connection;
mod error;
pub mod plan;
mod pool;
mod secure;
pub mod transaction;
mod wire;

pub use connect::Connector;
pub use connection::ClientConnection;
pub use error::ClientError;
pub use plan::{PlainReason, TlsPlan};
pub use pool::{DEFAULT_CONNECTIONS_PER_HOP, DEFAULT_MAX_IDLE_PER_HOP, Pool, ReaperHandle};

use std::time::Duration;

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Dialect {
    /// SMTP (RFC 5321): EHLO (HELO as a fallback), one reply after the
    /// message for all recipients.
    #[default]
    Smtp,
    /// LMTP (RFC 2033): LHLO, and after the message one reply per
    /// recipient accepted at RCPT, in RCPT order.
    Lmtp,
}

/// What a message asks of the TLS that carries it (RFC 8689).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// `MAIL FROM … REQUIRETLS`: relay only over verified TLS (DANE,
    /// MTA-STS, domain security, PKI with the name, direct trust) to a
    /// server offering REQUIRETLS; otherwise the message bounces.
    pub require_tls: bool,
    /// `TLS-Required: No` (without REQUIRETLS): the recipient's DANE and
    /// MTA-STS policies are ignored; the connector's settings apply.
    pub tls_optional: bool,
}

/// Timeouts and reuse limits of outbound SMTP (Postfix's defaults where it
/// has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    /// TCP connect, per address tried.
    pub connect_timeout: Duration,
    /// Waiting for any reply but the one after the message, and writing
    /// commands.
    pub command_timeout: Duration,
    /// Writing the message and waiting for the reply after the final dot.
    pub data_timeout: Duration,
    /// Transactions on one connection before it is closed rather than reused.
    pub max_messages_per_connection: u32,
    /// How long an idle connection is kept for reuse.
    pub idle_keep: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(10 * 60),
            max_messages_per_connection: 1000,
            idle_keep: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests;
