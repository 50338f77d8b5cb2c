//! How the queue sits in sled: two trees keyed by the 16-byte `QueueId`
//! (so iteration is oldest first).
//!
//! * `queue/messages`: the `QueuedMessage` header record (envelope and
//!   per-recipient state), small and rewritten after each attempt; its
//!   encoding (protobuf, JSON from earlier versions) is `record`'s;
//! * `queue/bodies`: the raw message, written once. A body (50 KB–35 MB)
//!   is stored as one sled value: sled keeps it whole in memory while it is
//!   written or read, which is acceptable at these sizes; streaming bodies
//!   to files would be the next step if the size limit grows.
//!
//! A new message is written body first, then record; a message leaves
//! record first, then body; a DSN and the attempt that queues it, a relayed
//! message and its origins, and an administrator's removal are one
//! multi-tree transaction. sled recovers a prefix of its log, so a crash
//! leaves at worst a body without a record, which
//! [`remove_orphan_bodies`] takes out when the queue opens.

use postern_model::QueueId;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use crate::queue::dsn::Dsn;
use crate::queue::envelope::{Envelope, QueuedMessage, RecipientState};
use crate::queue::error::QueueError;
use crate::queue::record;

/// Tree of header records.
pub(crate) const MESSAGES_TREE: &str = "queue/messages";
/// Tree of bodies.
pub(crate) const BODIES_TREE: &str = "queue/bodies";

/// An error inside a sled transaction closure.
pub(crate) type TxError = ConflictableTransactionError<QueueError>;

/// Encodes a header record.
pub(crate) fn encode(message: &QueuedMessage) -> Result<Vec<u8>, QueueError> {
    record::encode(message).map_err(|e| QueueError::Corrupt {
        key: message.id.to_string(),
        reason: format!("cannot encode: {e}"),
    })
}

/// Decodes the header record stored under `key`.
pub(crate) fn decode(key: &[u8], value: &[u8]) -> Result<QueuedMessage, QueueError> {
    let id = QueueId::from_key(key).map_err(|e| QueueError::Corrupt {
        key: format!("{key:02X?}"),
        reason: e.to_string(),
    })?;
    let message = record::decode(value).map_err(|e| QueueError::Corrupt {
        key: id.to_string(),
        reason: e.to_string(),
    })?;
    if message.id != id {
        return Err(QueueError::Corrupt {
            key: id.to_string(),
            reason: format!("record names itself {}", message.id),
        });
    }
    Ok(message)
}

/// Reads and decodes a header record inside a transaction.
pub(crate) fn tx_get(messages: &TransactionalTree, id: QueueId) -> Result<QueuedMessage, TxError> {
    let key = id.to_bytes();
    let value = messages
        .get(key)?
        .ok_or(ConflictableTransactionError::Abort(QueueError::NotFound(id)))?;
    decode(&key, &value).map_err(ConflictableTransactionError::Abort)
}

/// Writes a header record inside a transaction.
pub(crate) fn tx_put(messages: &TransactionalTree, message: &QueuedMessage) -> Result<(), TxError> {
    let value = encode(message).map_err(ConflictableTransactionError::Abort)?;
    messages.insert(&message.id.to_bytes(), value)?;
    Ok(())
}

/// Queues `dsn` under `id` (record and body) inside a transaction: a new
/// message from the null sender to the original sender, received `now`.
pub(crate) fn tx_put_dsn(
    messages: &TransactionalTree,
    bodies: &TransactionalTree,
    id: QueueId,
    dsn: Dsn,
    now: std::time::SystemTime,
) -> Result<(), TxError> {
    let notice = QueuedMessage {
        id,
        envelope: Envelope::new(None, vec![RecipientState::to_domain_of(dsn.to)], now),
        body_len: dsn.message.len() as u64,
        delay_notified: false,
    };
    tx_put(messages, &notice)?;
    bodies.insert(&id.to_bytes(), dsn.message)?;
    Ok(())
}

/// Removes a message (record and body) inside a transaction.
pub(crate) fn tx_remove(
    messages: &TransactionalTree,
    bodies: &TransactionalTree,
    id: QueueId,
) -> Result<(), UnabortableTransactionError> {
    messages.remove(&id.to_bytes())?;
    bodies.remove(&id.to_bytes())?;
    Ok(())
}

/// Removes every body whose record is missing (a crash between the two
/// single-key writes of a message arriving or leaving); returns how many.
/// Runs when the queue opens, before anything else writes.
pub(crate) fn remove_orphan_bodies(messages: &sled::Tree, bodies: &sled::Tree) -> Result<usize, QueueError> {
    let mut removed = 0;
    for key in bodies.iter().keys() {
        let key = key?;
        if !messages.contains_key(&key)? {
            bodies.remove(&key)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Turns a transaction's failure into the queue's error.
pub(crate) fn from_tx(error: TransactionError<QueueError>) -> QueueError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => QueueError::Store(error),
    }
}
