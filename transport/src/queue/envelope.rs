//! The queue's records: the envelope, each recipient's delivery state, and
//! the header record (`QueuedMessage`) stored for every queued message.
//!
//! Times are `SystemTime` (wall clock): they must survive a restart, which a
//! monotonic `Instant` does not.

use std::time::SystemTime;

use postern_model::QueueId;
use serde::{Deserialize, Serialize};

use crate::queue::QueuedHop;

/// The SMTP envelope of a message plus each recipient's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The reverse path (`MAIL FROM`); `None` is the null sender `<>`, used
    /// by DSNs, which must never be answered with another DSN.
    pub sender: Option<String>,
    /// One entry per `RCPT TO`, in the order given.
    pub recipients: Vec<RecipientState>,
    /// When the message was accepted; expiration and delay notices count
    /// from here.
    pub received_at: SystemTime,
    /// `MAIL FROM … REQUIRETLS` (RFC 8689): relay only over verified TLS
    /// to servers that offer REQUIRETLS, else bounce.
    #[serde(default)]
    pub require_tls: bool,
}

impl Envelope {
    /// A fresh envelope: every recipient pending, received `now`.
    pub fn new(sender: Option<String>, recipients: Vec<RecipientState>, now: SystemTime) -> Self {
        Self {
            sender,
            recipients,
            received_at: now,
            require_tls: false,
        }
    }

    /// Whether every recipient is delivered or failed.
    pub fn is_final(&self) -> bool {
        self.recipients.iter().all(|r| r.status.is_final())
    }
}

/// One recipient and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    /// The forward path (`RCPT TO`).
    pub address: String,
    /// The next hop chosen by routing (a send connector, smart host or
    /// mail domain). Recipients sharing a hop share its back-off.
    pub next_hop: QueuedHop,
    /// Where delivery to this recipient stands.
    pub status: RecipientStatus,
}

impl RecipientState {
    /// A pending recipient routed to `next_hop`.
    pub fn new(address: impl Into<String>, next_hop: impl Into<QueuedHop>) -> Self {
        Self {
            address: address.into(),
            next_hop: next_hop.into(),
            status: RecipientStatus::Pending,
        }
    }

    /// A pending recipient whose next hop is the domain of its address
    /// (lower-case), as used for DSNs, which skip routing.
    pub fn to_domain_of(address: impl Into<String>) -> Self {
        let address = address.into();
        let hop = QueuedHop::domain_of(&address);
        Self::new(address, hop)
    }
}

/// The state machine of one recipient: `Pending` → (`Deferred` →)* then
/// `Delivered` or `Failed`, the two final states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientStatus {
    /// Never tried.
    Pending,
    /// Tried and failed transiently; will be retried.
    Deferred {
        /// Attempts made so far.
        attempts: u32,
        /// Not to be tried before this time.
        next_attempt: SystemTime,
        /// The last reply or error, for `postern queue` and the DSN.
        last_error: String,
    },
    /// Accepted by the next hop.
    Delivered {
        /// When.
        at: SystemTime,
        /// The remote server's reply (e.g. `250 2.0.0 OK queued as …`).
        remote_reply: String,
    },
    /// Given up: a permanent failure or expiry.
    Failed {
        /// When.
        at: SystemTime,
        /// The reply or reason, starting with an enhanced status code when
        /// one is known (`550 5.1.1 …`, `4.4.7 …`).
        reply: String,
    },
}

impl RecipientStatus {
    /// Whether no further attempt will be made.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Delivered { .. } | Self::Failed { .. })
    }

    /// The number of attempts made so far (final states do not count on).
    pub fn attempts(&self) -> u32 {
        match self {
            Self::Deferred { attempts, .. } => *attempts,
            _ => 0,
        }
    }

    /// Whether the recipient's own schedule allows an attempt at `now`
    /// (the hop's back-off is checked separately).
    pub fn is_due(&self, now: SystemTime) -> bool {
        match self {
            Self::Pending => true,
            Self::Deferred { next_attempt, .. } => *next_attempt <= now,
            Self::Delivered { .. } | Self::Failed { .. } => false,
        }
    }
}

/// What one delivery attempt to one recipient came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The next hop accepted the recipient; carries its reply.
    Delivered(String),
    /// A 4xx reply or a connection/TLS failure: try again later.
    TransientFailure(String),
    /// A 5xx reply: give up and tell the sender.
    PermanentFailure(String),
}

/// The outcome of an attempt for one recipient, named by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientOutcome {
    /// The recipient's address, as in its `RecipientState`.
    pub address: String,
    /// What happened.
    pub outcome: DeliveryOutcome,
}

impl RecipientOutcome {
    /// `address` came to `outcome`.
    pub fn new(address: impl Into<String>, outcome: DeliveryOutcome) -> Self {
        Self {
            address: address.into(),
            outcome,
        }
    }

    /// The same outcome with `note` appended to its reply text (the TLS
    /// policy that applied, for the queue entry).
    pub fn noting(mut self, note: &str) -> Self {
        let (DeliveryOutcome::Delivered(text)
        | DeliveryOutcome::TransientFailure(text)
        | DeliveryOutcome::PermanentFailure(text)) = &mut self.outcome;
        text.push(' ');
        text.push_str(note);
        self
    }
}

/// The header record stored for every queued message (the body is stored
/// apart, under the same id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// The message's id (also its key).
    pub id: QueueId,
    /// Envelope and per-recipient state.
    pub envelope: Envelope,
    /// Size of the body in bytes.
    pub body_len: u64,
    /// Whether the one delay notice has been sent (or skipped for a null
    /// sender).
    pub delay_notified: bool,
}

/// Whether an earlier attempt may already have delivered a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The message's first attempt ever: handed to the delivery worker
    /// straight from `Queue::enqueue`, under an id never used before, so
    /// no earlier attempt can have left a delivered copy anywhere.
    First,
    /// Listed by `Queue::due`: a retry, or a message found in the queue
    /// at start (a crash may have come between a delivery and its
    /// record). A local delivery looks for a copy first.
    MaybeRepeat,
}

/// A message with recipients ready to be tried, as `Queue::due` lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueMessage {
    /// The message.
    pub id: QueueId,
    /// The reverse path to use (`None`: `MAIL FROM:<>`).
    pub sender: Option<String>,
    /// The recipients to try now (a subset of the message's recipients).
    pub recipients: Vec<RecipientState>,
    /// `MAIL FROM … REQUIRETLS` (RFC 8689).
    pub require_tls: bool,
    /// When the message was accepted (its expiry counts from here).
    pub received_at: SystemTime,
    /// Whether an earlier attempt may have delivered it already.
    pub attempt: Attempt,
}
