//! Judging a message from outside the organisation at the final dot
//! ([`crate::auth`]: SPF, DKIM, ARC and DMARC on edges, DKIM signing on
//! hubs) when its body was spooled ([`super::incoming`]).
//!
//! `mail-auth` reads a message from one slice (the DKIM body hash covers
//! all of it), so a spooled body is read back into memory for the check
//! and dropped after it; the queue keeps the spooled file. So that many
//! sessions ending at once cannot add their messages up, the node holds
//! at most [`JUDGING_BUDGET`] octets of message data for judging at a
//! time: each message waits for its share (a message as large as the
//! budget waits for all of it), so the memory per session stays bounded
//! however many large messages arrive together.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use postern_model::DmarcEnforcement;

use crate::auth::{Inbound, Judged, MessageAuth};
use crate::queue::QueueError;
use crate::queue::spool::SpoolWriter;

/// Message data held in memory for judging at once, on the whole node.
pub const JUDGING_BUDGET: usize = 48 * 1024 * 1024;

/// One permit per KiB of [`JUDGING_BUDGET`].
static JUDGING: Semaphore = Semaphore::const_new(JUDGING_BUDGET / 1024);

/// What the judges decided about a message.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Queue it, with `fields` stamped; `head` replaces the message's
    /// first part when the check changed it (a forged field removed).
    Accept {
        /// The new first part (header section; without a spool, the
        /// whole message), or `None` when unchanged.
        head: Option<Vec<u8>>,
        /// `DKIM-Signature`, `Authentication-Results`, quarantine field.
        fields: Vec<String>,
    },
    /// Refuse it with `550 5.7.1` and this text.
    Reject(String),
}

/// Why a message could not be judged; ours, so the client hears 451.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JudgeError {
    /// The spooled rest could not be read back.
    #[error(transparent)]
    Spool(#[from] QueueError),
    /// The checks changed more than the header section, which the spooled
    /// file cannot follow.
    #[error("the message checks changed the message after its header section")]
    BodyChanged,
}

/// Judges the message whose first part is `inbound.message` and whose
/// rest, if any, is in `spool`.
pub(crate) async fn judge(
    auth: &MessageAuth,
    inbound: Inbound<'_>,
    spool: Option<&SpoolWriter>,
    enforcement: DmarcEnforcement,
    limit: Duration,
    other_results: Option<&str>,
) -> Result<Verdict, JudgeError> {
    let head = inbound.message;
    let spooled = spool.map_or(0, |s| usize::try_from(s.len()).unwrap_or(usize::MAX));
    let share = u32::try_from((head.len().saturating_add(spooled)).div_ceil(1024))
        .unwrap_or(u32::MAX)
        .clamp(1, (JUDGING_BUDGET / 1024) as u32);
    // The semaphore is never closed; were it, judging would go on
    // unbounded rather than fail the message.
    let _permit = JUDGING.acquire_many(share).await.ok();
    let whole = match spool.filter(|s| !s.is_empty()) {
        Some(spool) => {
            let mut whole = Vec::with_capacity(head.len().saturating_add(spooled));
            whole.extend_from_slice(head);
            let read = async {
                tokio::fs::File::open(spool.path())
                    .await?
                    .read_to_end(&mut whole)
                    .await
            };
            read.await
                .map_err(|e| QueueError::Spool(spool.path().to_path_buf(), e))?;
            Some(whole)
        }
        None => None,
    };
    let message = whole.as_deref().unwrap_or(head);
    let rest_len = message.len() - head.len();
    let judged = auth
        .judge(Inbound { message, ..inbound }, enforcement, limit, other_results)
        .await;
    Ok(match judged {
        Judged::Accept {
            message: changed,
            fields,
        } => Verdict::Accept {
            head: new_head(&changed, message, rest_len)?,
            fields,
        },
        Judged::Reject(text) => Verdict::Reject(text),
    })
}

/// The first part of `changed` when it differs from `original`'s (`None`:
/// unchanged). The checks only remove header fields, so the last
/// `rest_len` octets (the spooled rest) must be the same in both.
fn new_head(changed: &[u8], original: &[u8], rest_len: usize) -> Result<Option<Vec<u8>>, JudgeError> {
    if changed == original {
        return Ok(None);
    }
    let cut = changed
        .len()
        .checked_sub(rest_len)
        .ok_or(JudgeError::BodyChanged)?;
    if changed[cut..] != original[original.len() - rest_len..] {
        return Err(JudgeError::BodyChanged);
    }
    Ok(Some(changed[..cut].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_message_keeps_its_head() {
        assert_eq!(
            new_head(b"A: 1\r\n\r\nbody", b"A: 1\r\n\r\nbody", 4).ok(),
            Some(None)
        );
    }

    #[test]
    fn a_removed_field_gives_a_shorter_head_and_the_same_rest() {
        let original = b"A: 1\r\nB: 2\r\n\r\nbody";
        let changed = b"B: 2\r\n\r\nbody";
        let head = new_head(changed, original, 4).ok().flatten();
        assert_eq!(head.as_deref(), Some(&b"B: 2\r\n\r\n"[..]));
    }

    #[test]
    fn without_a_spool_the_head_is_the_whole_message() {
        let head = new_head(b"B: 2\r\n\r\nx", b"A: 1\r\nB: 2\r\n\r\nx", 0)
            .ok()
            .flatten();
        assert_eq!(head.as_deref(), Some(&b"B: 2\r\n\r\nx"[..]));
    }

    #[test]
    fn a_changed_body_is_refused_not_followed() {
        let result = new_head(b"A: 1\r\n\r\nbodY", b"A: 1\r\n\r\nbody", 4);
        assert!(matches!(result, Err(JudgeError::BodyChanged)));
    }
}
