//! The durable mail queue: every accepted message waits here, per
//! recipient, until it is delivered, fails, or expires.
//!
//! # Guarantee
//! [`Queue::enqueue`] returns only after the message (envelope and body)
//! is flushed to disk, so a session answers 250 only for mail that survives
//! a crash at any later point. Concurrent sessions share flushes (group
//! commit, see `commit`). State changes after an attempt are made durable
//! the same way before [`Queue::record_attempt`] returns; a crash can
//! therefore repeat a delivery (a duplicate) but never lose a message.
//!
//! # Life of a message
//! `enqueue` → [`Queue::due`] lists it for the delivery workers →
//! `record_attempt` with one [`DeliveryOutcome`] per recipient tried:
//! delivered and permanently failed recipients are final; transient
//! failures are deferred by the retry schedule, shared per next hop
//! ([`HopBackoff`]). After `QueueConfig::expiration` (2 days) waiting
//! recipients fail with 4.4.7. Failures, and one delay notice after
//! `QueueConfig::delay_notice_after` (4 hours), are reported to the sender
//! in an RFC 3464 DSN queued with the null sender (never for a null
//! sender). A message whose recipients are all final leaves the queue.
//! [`Queue::open`] on an existing store resumes every queued message.

mod attempt;
pub mod backoff;
mod commit;
pub mod config;
pub mod dsn;
mod engine;
pub mod envelope;
pub mod error;
mod hop;
pub mod once;
mod record;
pub mod spool;
pub mod stats;
mod store;

#[cfg(test)]
pub(crate) mod tests;

pub use backoff::HopBackoff;
pub use config::QueueConfig;
pub use dsn::{Dsn, DsnInput, DsnKind, build_dsn, original_headers};
pub use engine::{AttemptReport, Queue, REMOVED_REPLY, RelayedOutcome, Removed};
pub use envelope::{
    Attempt, DeliveryOutcome, DueMessage, Envelope, QueuedMessage, RecipientOutcome, RecipientState,
    RecipientStatus,
};
pub use error::QueueError;
pub use hop::QueuedHop;
pub use once::RelayOrigin;
pub use postern_model::QueueId;
pub use stats::QueueStats;
