//! Exactly once across the internal hop. When a node relays to another
//! node of its organisation, it names the message by its own queue id
//! ([`RelayOrigin`], sent as the `X-POSTERN-ONCE` parameter of `MAIL FROM`);
//! the receiving queue remembers every (sender node, queue id, recipient)
//! it accepted, in the `queue/seen` tree, until the sender's message
//! expiry. A repeat (the sender lost our 250 to a crash or a broken
//! connection and tries again) is recognised and dropped instead of being
//! delivered twice.
//!
//! A key is claimed before the message is written (a compare-and-swap, so
//! two sessions carrying the same message cannot both take it) as
//! *pending* (the expiry and the new queue id), and marked *accepted* (the
//! expiry alone) once the message's record is written. sled recovers a
//! prefix of its log, so after a crash a pending key names a message whose
//! record either is there (the key is marked accepted) or never was (the
//! key is dropped, so the sender's retry is queued): see
//! [`settle_pending`].
//!
//! Only nodes of the organisation may send the parameter (the session
//! offers and accepts it only from direct-trust peers on an organisation
//! connector): anyone else could use it to suppress mail.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use postern_model::{Domain, QueueId};

/// Tree of (sender node, queue id, recipient) keys already accepted.
pub(crate) const SEEN_TREE: &str = "queue/seen";

/// The longest a peer may ask us to remember a key, whatever expiry it
/// names (a guard against a mistaken clock; the default expiry is 2 days).
const LONGEST_MEMORY: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often expired keys are dropped from the store.
pub(crate) const PRUNE_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Which queued message of which organisation node a relayed message is:
/// the value of `X-POSTERN-ONCE`, `node:QUEUEID:expiry-unix-seconds`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayOrigin {
    /// The sending node (its FQDN).
    pub node: Domain,
    /// The message's id in the sender's queue.
    pub id: QueueId,
    /// When the sender gives up on the message; the receiver remembers
    /// the message until then.
    pub expires: SystemTime,
}

/// Why an `X-POSTERN-ONCE` value was refused (the peer is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed X-POSTERN-ONCE value: {0}")]
pub struct RelayOriginError(&'static str);

impl fmt::Display for RelayOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self
            .expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        write!(f, "{}:{}:{secs}", self.node.as_str(), self.id)
    }
}

impl FromStr for RelayOrigin {
    type Err = RelayOriginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(':');
        let (Some(node), Some(id), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(RelayOriginError("expected node:queue-id:expiry"));
        };
        let node = Domain::parse(node).map_err(|_| RelayOriginError("the node is not a DNS name"))?;
        let id = QueueId::parse(id).map_err(|_| RelayOriginError("the queue id is not 32 hex digits"))?;
        let secs: u64 = expires
            .parse()
            .map_err(|_| RelayOriginError("the expiry is not a number of seconds"))?;
        Ok(Self {
            node,
            id,
            expires: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
        })
    }
}

impl RelayOrigin {
    /// The store key of `recipient` of this message.
    pub(crate) fn key(&self, recipient: &str) -> Vec<u8> {
        let node = self.node.as_str().as_bytes();
        let mut key = Vec::with_capacity(node.len() + 17 + recipient.len());
        key.extend_from_slice(node);
        key.push(0);
        key.extend_from_slice(&self.id.to_bytes());
        key.extend_from_slice(recipient.as_bytes());
        key
    }

    /// What is stored under each key: until when to remember it (unix
    /// milliseconds, big-endian), at most [`LONGEST_MEMORY`] from `now`.
    pub(crate) fn remember_until(&self, now: SystemTime) -> [u8; 8] {
        let until = self.expires.min(now + LONGEST_MEMORY);
        unix_millis(until).to_be_bytes()
    }
}

/// Whether a stored value says the key may be forgotten at `now`.
pub(crate) fn is_expired(value: &[u8], now: SystemTime) -> bool {
    match until_of(value) {
        Some(until) => until < unix_millis(now),
        // Not ours to read: drop it rather than keep it forever.
        None => true,
    }
}

/// The expiry (Unix milliseconds) a stored value names: an accepted key's
/// 8 bytes, or the first 8 of a pending key's 24 (then the queue id).
fn until_of(value: &[u8]) -> Option<u64> {
    if value.len() != 8 && value.len() != 8 + 16 {
        return None;
    }
    let (until, _) = value.split_first_chunk::<8>()?;
    Some(u64::from_be_bytes(*until))
}

/// The value of a key claimed for the message `id`, whose record is not
/// written yet.
pub(crate) fn pending_value(until: &[u8; 8], id: QueueId) -> [u8; 24] {
    let mut value = [0; 24];
    value[..8].copy_from_slice(until);
    value[8..].copy_from_slice(&id.to_bytes());
    value
}

/// The message a pending key was claimed for; `None` for an accepted key.
pub(crate) fn pending_id(value: &[u8]) -> Option<QueueId> {
    let id = value.get(8..).filter(|id| id.len() == 16)?;
    QueueId::from_key(id).ok()
}

/// After a crash: marks accepted every pending key whose message has a
/// record in `messages`, and drops the others (that message was never
/// acknowledged: its record precedes in the log any flush that let a
/// session answer 250). Returns (accepted, dropped). Runs when the queue
/// opens, before any session writes.
pub(crate) fn settle_pending(seen: &sled::Tree, messages: &sled::Tree) -> sled::Result<(usize, usize)> {
    let (mut accepted, mut dropped) = (0, 0);
    for entry in seen.iter() {
        let (key, value) = entry?;
        let Some(id) = pending_id(&value) else { continue };
        if messages.contains_key(id.to_bytes())? {
            seen.insert(key, &value[..8])?;
            accepted += 1;
        } else {
            seen.remove(key)?;
            dropped += 1;
        }
    }
    Ok((accepted, dropped))
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn value_round_trip_and_refusals() {
        let origin = RelayOrigin {
            node: Domain::parse("edge1.adatum.com").unwrap(),
            id: QueueId::from_parts(1_700_000_000_000, 42),
            expires: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        };
        let text = origin.to_string();
        assert!(
            text.starts_with("edge1.adatum.com:") && text.ends_with(":1800000000"),
            "{text}"
        );
        assert_eq!(text.parse::<RelayOrigin>().unwrap(), origin);
        for bad in [
            "",
            "edge1.adatum.com",
            "edge1.adatum.com:0123:1",
            "edge1..com:0000000000000000000000000000002A:1",
            "edge1.adatum.com:0000000000000000000000000000002A:soon",
            "edge1.adatum.com:0000000000000000000000000000002A:1:2",
        ] {
            assert!(bad.parse::<RelayOrigin>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_and_memory() {
        let now = SystemTime::now();
        let origin = RelayOrigin {
            node: Domain::parse("edge1.adatum.com").unwrap(),
            id: QueueId::from_parts(1, 2),
            expires: now + Duration::from_secs(3600),
        };
        assert_ne!(origin.key("a@adatum.com"), origin.key("b@adatum.com"));
        let other = RelayOrigin {
            node: Domain::parse("edge2.adatum.com").unwrap(),
            ..origin.clone()
        };
        assert_ne!(origin.key("a@adatum.com"), other.key("a@adatum.com"));
        let until = origin.remember_until(now);
        assert!(!is_expired(&until, now));
        assert!(is_expired(&until, now + Duration::from_secs(3601)));
        let far = RelayOrigin {
            expires: now + Duration::from_secs(365 * 24 * 3600),
            ..origin
        };
        assert!(is_expired(
            &far.remember_until(now),
            now + LONGEST_MEMORY + Duration::from_secs(1)
        ));
        assert!(is_expired(b"junk", now));
    }
}
