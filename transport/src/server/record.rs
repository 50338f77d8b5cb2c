//! What is known about one connection, for the protocol log, counters and
//! tests: who connected, how they introduced themselves, what TLS they
//! got and how far their certificate is trusted, what was queued, and how
//! the session ended.

use std::fmt;
use std::net::SocketAddr;

use postern_model::QueueId;

use crate::smtp::HeloName;
use crate::tls::{PeerTrust, TlsInfo};

/// A connection's id: random, shown as 16 hex digits. It names the
/// session in logs and, with a sequence number, each message in its
/// `Received:` field (the queue id is only known once the message is
/// durable, after the field is written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(u64);

impl SessionId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.0)
    }
}

/// The peer and what the session learnt about it.
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// The connection's id.
    pub session_id: SessionId,
    /// The receive connector's name.
    pub connector: String,
    /// Our end.
    pub local: SocketAddr,
    /// The client's end.
    pub remote: SocketAddr,
    /// The last EHLO/HELO name given.
    pub helo: Option<HeloName>,
    /// The TLS parameters, once STARTTLS completed.
    pub tls: Option<TlsInfo>,
    /// How far the client certificate is trusted (`None` without TLS or
    /// without a certificate).
    pub peer_trust: PeerTrust,
}

impl ConnectionInfo {
    /// Whether the peer is a node of this organisation (direct trust).
    pub fn is_direct_trust(&self) -> bool {
        matches!(self.peer_trust, PeerTrust::Direct(_))
    }
}

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client sent QUIT.
    Quit,
    /// The client closed the connection without QUIT.
    PeerClosed,
    /// The client was silent too long (421 4.4.2 sent).
    Timeout,
    /// The session made too many protocol errors (421 4.7.0 sent).
    TooManyErrors,
    /// The node is shutting down (421 4.3.2 sent to an idle session).
    Shutdown,
    /// The STARTTLS handshake failed or timed out; says why.
    TlsFailed(String),
    /// A read or write failed; says why.
    Io(String),
}

/// The whole story of one session, handed to the connector's observer
/// when it ends.
#[derive(Clone, Debug)]
pub struct SessionRecord {
    /// Who and how.
    pub info: ConnectionInfo,
    /// The messages queued, in order.
    pub queued: Vec<QueueId>,
    /// How it ended.
    pub end: SessionEnd,
}
