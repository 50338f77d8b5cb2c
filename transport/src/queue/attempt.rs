//! The per-recipient state machine: applying one delivery attempt's
//! outcomes to a message, then expiry and the delay-notice decision. Pure:
//! no store, no clock; the engine runs it inside a transaction.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::queue::QueuedHop;
use crate::queue::config::QueueConfig;
use crate::queue::envelope::{DeliveryOutcome, QueuedMessage, RecipientOutcome, RecipientStatus};
use crate::queue::error::{QueueError, Result};

/// What applying an attempt changed, for the DSNs, counters and back-off.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AttemptEffects {
    /// Recipients (indices) delivered by this attempt.
    pub delivered: Vec<usize>,
    /// Recipients (indices) that became `Failed` now: permanent failures and
    /// expiry. They go into a failure DSN.
    pub failed: Vec<usize>,
    /// Deferred recipients (indices) to name in a delay notice; empty when
    /// no notice is due.
    pub delayed: Vec<usize>,
    /// Per next hop attempted: `true` if the hop answered (delivered or a
    /// permanent reply), `false` if every attempt through it failed
    /// transiently.
    pub hops: HashMap<QueuedHop, bool>,
}

/// Applies `outcomes` to `message` as of `now`. Outcomes for recipients
/// already final are ignored (a repeated report); an unknown address is an
/// error and changes nothing.
pub(crate) fn apply_attempt(
    message: &mut QueuedMessage,
    outcomes: &[RecipientOutcome],
    now: SystemTime,
    config: &QueueConfig,
) -> Result<AttemptEffects> {
    let mut effects = AttemptEffects::default();
    let mut changes = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let index = message
            .envelope
            .recipients
            .iter()
            .position(|r| r.address == outcome.address)
            .ok_or_else(|| QueueError::UnknownRecipient {
                id: message.id,
                address: outcome.address.clone(),
            })?;
        changes.push((index, &outcome.outcome));
    }
    for (index, outcome) in changes {
        let recipient = &mut message.envelope.recipients[index];
        if recipient.status.is_final() {
            continue;
        }
        let attempts = recipient.status.attempts().saturating_add(1);
        let (status, hop_up) = match outcome {
            DeliveryOutcome::Delivered(reply) => {
                effects.delivered.push(index);
                let status = RecipientStatus::Delivered {
                    at: now,
                    remote_reply: reply.clone(),
                };
                (status, true)
            }
            DeliveryOutcome::PermanentFailure(reply) => {
                effects.failed.push(index);
                let status = RecipientStatus::Failed {
                    at: now,
                    reply: reply.clone(),
                };
                (status, true)
            }
            DeliveryOutcome::TransientFailure(reply) => {
                let status = RecipientStatus::Deferred {
                    attempts,
                    next_attempt: now + config.retry_delay(attempts),
                    last_error: reply.clone(),
                };
                (status, false)
            }
        };
        recipient.status = status;
        let hop = effects.hops.entry(recipient.next_hop.clone()).or_default();
        *hop |= hop_up;
    }
    expire(message, now, config, &mut effects);
    decide_delay_notice(message, now, config, &mut effects);
    Ok(effects)
}

/// Past the expiration time, every recipient still waiting fails with
/// 4.4.7, keeping the last error in the reply.
fn expire(message: &mut QueuedMessage, now: SystemTime, config: &QueueConfig, effects: &mut AttemptEffects) {
    let expires_at = message.envelope.received_at + config.expiration;
    if now < expires_at {
        return;
    }
    let hours = config.expiration.as_secs() / 3600;
    for (index, recipient) in message.envelope.recipients.iter_mut().enumerate() {
        let last = match &recipient.status {
            RecipientStatus::Pending => "never attempted".to_owned(),
            RecipientStatus::Deferred { last_error, .. } => last_error.clone(),
            RecipientStatus::Delivered { .. } | RecipientStatus::Failed { .. } => continue,
        };
        recipient.status = RecipientStatus::Failed {
            at: now,
            reply: format!("4.4.7 message expired: not delivered within {hours} hours; last error: {last}"),
        };
        effects.failed.push(index);
    }
}

/// One delay notice per message, once it has waited `delay_notice_after`
/// and some recipient is still deferred. The flag is set even when no
/// notice can be sent (null sender), so the decision is made once.
fn decide_delay_notice(
    message: &mut QueuedMessage,
    now: SystemTime,
    config: &QueueConfig,
    effects: &mut AttemptEffects,
) {
    let Some(after) = config.delay_notice_after else {
        return;
    };
    if message.delay_notified || now < message.envelope.received_at + after {
        return;
    }
    effects.delayed = message
        .envelope
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.status, RecipientStatus::Deferred { .. }))
        .map(|(index, _)| index)
        .collect();
    if !effects.delayed.is_empty() {
        message.delay_notified = true;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::time::Duration;

    use postern_model::QueueId;

    use super::*;
    use crate::queue::envelope::{Envelope, RecipientState};

    fn message(t0: SystemTime) -> QueuedMessage {
        let recipients = vec![
            RecipientState::to_domain_of("a@fabrikam.com"),
            RecipientState::to_domain_of("b@fabrikam.com"),
        ];
        QueuedMessage {
            id: QueueId::from_parts(1, 1),
            envelope: Envelope::new(Some("s@adatum.com".into()), recipients, t0),
            body_len: 0,
            delay_notified: false,
        }
    }

    fn fabrikam() -> QueuedHop {
        QueuedHop::read("fabrikam.com".into())
    }

    fn transient(address: &str) -> RecipientOutcome {
        RecipientOutcome::new(
            address,
            DeliveryOutcome::TransientFailure("451 4.4.1 try later".into()),
        )
    }

    #[test]
    fn transient_failures_follow_the_schedule_and_count_attempts() {
        let config = QueueConfig::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut msg = message(t0);
        let mut now = t0;
        for (n, wait_min) in [(1u32, 1u64), (2, 5), (3, 15), (4, 30), (5, 60), (6, 60)] {
            let effects = apply_attempt(&mut msg, &[transient("a@fabrikam.com")], now, &config).unwrap();
            assert_eq!(effects.hops.get(&fabrikam()), Some(&false));
            let RecipientStatus::Deferred {
                attempts,
                next_attempt,
                ..
            } = &msg.envelope.recipients[0].status
            else {
                panic!("not deferred: {:?}", msg.envelope.recipients[0].status);
            };
            assert_eq!(*attempts, n);
            assert_eq!(*next_attempt, now + Duration::from_secs(wait_min * 60));
            now = *next_attempt;
        }
        assert_eq!(msg.envelope.recipients[1].status, RecipientStatus::Pending);
    }

    #[test]
    fn partial_delivery_and_unknown_recipient() {
        let config = QueueConfig::default();
        let t0 = SystemTime::UNIX_EPOCH;
        let mut msg = message(t0);
        let outcomes = [
            RecipientOutcome::new("a@fabrikam.com", DeliveryOutcome::Delivered("250 ok".into())),
            transient("b@fabrikam.com"),
        ];
        let effects = apply_attempt(&mut msg, &outcomes, t0, &config).unwrap();
        assert_eq!(effects.delivered, [0]);
        assert_eq!(effects.hops.get(&fabrikam()), Some(&true), "the hop answered");
        assert!(!msg.envelope.is_final());
        let before = msg.clone();
        let bad = [RecipientOutcome::new(
            "x@y",
            DeliveryOutcome::Delivered(String::new()),
        )];
        assert!(apply_attempt(&mut msg, &bad, t0, &config).is_err());
        assert_eq!(msg, before);
    }

    #[test]
    fn expiry_fails_every_waiting_recipient_with_4_4_7() {
        let config = QueueConfig::default();
        let t0 = SystemTime::UNIX_EPOCH;
        let mut msg = message(t0);
        let late = t0 + config.expiration;
        let effects = apply_attempt(&mut msg, &[transient("a@fabrikam.com")], late, &config).unwrap();
        assert_eq!(effects.failed, [0, 1]);
        assert!(msg.envelope.is_final());
        let RecipientStatus::Failed { reply, .. } = &msg.envelope.recipients[0].status else {
            panic!("not failed");
        };
        assert!(reply.starts_with("4.4.7 "), "{reply}");
        assert!(reply.contains("451 4.4.1 try later"), "{reply}");
    }

    #[test]
    fn delay_notice_is_decided_once() {
        let config = QueueConfig::default();
        let t0 = SystemTime::UNIX_EPOCH;
        let mut msg = message(t0);
        let early = apply_attempt(&mut msg, &[transient("a@fabrikam.com")], t0, &config).unwrap();
        assert!(early.delayed.is_empty());
        let later = t0 + Duration::from_secs(5 * 3600);
        let effects = apply_attempt(&mut msg, &[transient("a@fabrikam.com")], later, &config).unwrap();
        assert_eq!(effects.delayed, [0]);
        assert!(msg.delay_notified);
        let again = apply_attempt(&mut msg, &[transient("a@fabrikam.com")], later, &config).unwrap();
        assert!(again.delayed.is_empty());
    }
}
