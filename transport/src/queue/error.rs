//! `QueueError`: what can go wrong in the queue, and who must act.

use postern_model::QueueId;

/// A failure of the queue. Every variant is local: the session answering
/// the client maps any of them to a transient 4xx reply (451 4.3.0), so the
/// client keeps the message and retries.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The store (sled) failed to read, write or flush: local I/O.
    #[error("queue store failed: {0}")]
    Store(#[from] sled::Error),
    /// A spooled body file could not be written, moved or read: local I/O.
    #[error("spooled body {0}: {1}")]
    Spool(std::path::PathBuf, std::io::Error),
    /// A background flush failed; the message may not be durable.
    #[error("queue flush failed: {0}")]
    Flush(String),
    /// The flusher task is gone (the queue is shutting down).
    #[error("the queue's flusher has stopped")]
    FlusherStopped,
    /// `Queue::open` was called outside a tokio runtime.
    #[error("the queue must be opened inside a tokio runtime")]
    NoRuntime,
    /// A blocking store task panicked or was cancelled.
    #[error("a queue store task did not finish: {0}")]
    Task(String),
    /// A stored record does not decode: the data directory is damaged.
    #[error("queue record {key} is damaged: {reason}")]
    Corrupt {
        /// The key (queue id, or raw bytes when not even that decodes).
        key: String,
        /// What did not decode.
        reason: String,
    },
    /// The message is not (or no longer) in the queue.
    #[error("message {0} is not in the queue")]
    NotFound(QueueId),
    /// A delivery worker holds the message right now (it may be on the
    /// wire); the administrator's change is refused, to be tried again.
    #[error("message {0} is being delivered right now; try again in a moment")]
    Busy(QueueId),
    /// An outcome named an address that is not a recipient of the message.
    #[error("{address:?} is not a recipient of message {id}")]
    UnknownRecipient {
        /// The message.
        id: QueueId,
        /// The address the caller named.
        address: String,
    },
    /// The envelope has no recipient; there is nothing to queue.
    #[error("a message needs at least one recipient")]
    NoRecipients,
    /// The configuration cannot work (e.g. an empty retry schedule).
    #[error("queue configuration is invalid: {0}")]
    Config(String),
}

/// The result type of the queue.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
