//! The stored form of a queue header record: one format byte, then the
//! record. New records are protobuf (`proto/queue.proto`); records written
//! as JSON by earlier versions (they start with `{`) are still read, so a
//! queue left by an older node is delivered by a newer one. A JSON record
//! is rewritten as protobuf by the next attempt that changes it.

use std::time::{Duration, SystemTime};

use postern_model::QueueId;
use postern_proto::queue as pb;
use prost::Message;

use crate::queue::QueuedHop;
use crate::queue::envelope::{Envelope, QueuedMessage, RecipientState, RecipientStatus};

/// The first byte of a protobuf record.
const FORMAT_PROTOBUF: u8 = 1;
/// The first byte of a JSON record (its opening brace).
const FORMAT_JSON: u8 = b'{';

/// Why a stored value is not a header record.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// The value is empty or starts with a byte no version wrote.
    #[error("unknown record format (first byte {0:?})")]
    UnknownFormat(Option<u8>),
    /// The protobuf did not decode.
    #[error("bad protobuf record: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The legacy JSON did not decode.
    #[error("bad JSON record: {0}")]
    Json(#[from] serde_json::Error),
    /// A field decoded but holds no valid value.
    #[error("bad field {field}: {reason}")]
    Field {
        /// The field's name in `queue.proto`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The stored value of `message`: the format byte and the protobuf.
pub(crate) fn encode(message: &QueuedMessage) -> Result<Vec<u8>, RecordError> {
    let record = to_proto(message)?;
    let mut value = Vec::with_capacity(1 + record.encoded_len());
    value.push(FORMAT_PROTOBUF);
    // Encoding fails only when the buffer runs out of room; a Vec grows.
    record.encode(&mut value).expect("a Vec grows to fit the record");
    Ok(value)
}

/// The record stored as `value`, in either format.
pub(crate) fn decode(value: &[u8]) -> Result<QueuedMessage, RecordError> {
    match value.first() {
        Some(&FORMAT_PROTOBUF) => from_proto(pb::QueueRecord::decode(&value[1..])?),
        Some(&FORMAT_JSON) => Ok(serde_json::from_slice(value)?),
        other => Err(RecordError::UnknownFormat(other.copied())),
    }
}

fn to_proto(message: &QueuedMessage) -> Result<pb::QueueRecord, RecordError> {
    let envelope = &message.envelope;
    Ok(pb::QueueRecord {
        id: message.id.to_bytes().to_vec(),
        sender: envelope.sender.clone(),
        recipients: envelope
            .recipients
            .iter()
            .map(recipient_to_proto)
            .collect::<Result<_, _>>()?,
        received_at: Some(time_to_proto(envelope.received_at)?),
        require_tls: envelope.require_tls,
        body_len: message.body_len,
        delay_notified: message.delay_notified,
    })
}

fn recipient_to_proto(recipient: &RecipientState) -> Result<pb::Recipient, RecordError> {
    use pb::recipient::Status;
    let status = match &recipient.status {
        RecipientStatus::Pending => Status::Pending(pb::Pending {}),
        RecipientStatus::Deferred {
            attempts,
            next_attempt,
            last_error,
        } => Status::Deferred(pb::Deferred {
            attempts: *attempts,
            next_attempt: Some(time_to_proto(*next_attempt)?),
            last_error: last_error.clone(),
        }),
        RecipientStatus::Delivered { at, remote_reply } => Status::Delivered(pb::Delivered {
            at: Some(time_to_proto(*at)?),
            remote_reply: remote_reply.clone(),
        }),
        RecipientStatus::Failed { at, reply } => Status::Failed(pb::Failed {
            at: Some(time_to_proto(*at)?),
            reply: reply.clone(),
        }),
    };
    Ok(pb::Recipient {
        address: recipient.address.clone(),
        next_hop: recipient.next_hop.to_string(),
        status: Some(status),
    })
}

fn from_proto(record: pb::QueueRecord) -> Result<QueuedMessage, RecordError> {
    let id = QueueId::from_key(&record.id).map_err(|e| RecordError::Field {
        field: "id",
        reason: e.to_string(),
    })?;
    let recipients = record
        .recipients
        .into_iter()
        .map(recipient_from_proto)
        .collect::<Result<_, _>>()?;
    Ok(QueuedMessage {
        id,
        envelope: Envelope {
            sender: record.sender,
            recipients,
            received_at: time_from_proto("received_at", record.received_at)?,
            require_tls: record.require_tls,
        },
        body_len: record.body_len,
        delay_notified: record.delay_notified,
    })
}

fn recipient_from_proto(recipient: pb::Recipient) -> Result<RecipientState, RecordError> {
    use pb::recipient::Status;
    let status = match recipient.status {
        Some(Status::Pending(_)) => RecipientStatus::Pending,
        Some(Status::Deferred(d)) => RecipientStatus::Deferred {
            attempts: d.attempts,
            next_attempt: time_from_proto("next_attempt", d.next_attempt)?,
            last_error: d.last_error,
        },
        Some(Status::Delivered(d)) => RecipientStatus::Delivered {
            at: time_from_proto("at", d.at)?,
            remote_reply: d.remote_reply,
        },
        Some(Status::Failed(f)) => RecipientStatus::Failed {
            at: time_from_proto("at", f.at)?,
            reply: f.reply,
        },
        None => {
            return Err(RecordError::Field {
                field: "status",
                reason: format!("missing for recipient {}", recipient.address),
            });
        }
    };
    Ok(RecipientState {
        address: recipient.address,
        next_hop: QueuedHop::read(recipient.next_hop),
        status,
    })
}

/// A time as stored; one before the Unix epoch is refused, as the JSON
/// encoding refused it.
fn time_to_proto(time: SystemTime) -> Result<pb::Time, RecordError> {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| RecordError::Field {
            field: "time",
            reason: "before the Unix epoch".to_owned(),
        })?;
    Ok(pb::Time {
        secs: since.as_secs(),
        nanos: since.subsec_nanos(),
    })
}

fn time_from_proto(field: &'static str, time: Option<pb::Time>) -> Result<SystemTime, RecordError> {
    let time = time.ok_or(RecordError::Field {
        field,
        reason: "missing".to_owned(),
    })?;
    let bad = |reason: &str| RecordError::Field {
        field,
        reason: reason.to_owned(),
    };
    if time.nanos >= 1_000_000_000 {
        return Err(bad("nanoseconds out of range"));
    }
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::new(time.secs, time.nanos))
        .ok_or_else(|| bad("out of range"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// The hop a record stores as `text`.
    fn hop(text: &str) -> QueuedHop {
        QueuedHop::read(text.to_owned())
    }

    /// A record with a recipient in every state (and one whose stored
    /// hop is no next hop).
    fn every_state() -> QueuedMessage {
        let mut recipients = vec![
            RecipientState::new("a@fabrikam.com", hop("fabrikam.com")),
            RecipientState::new("b@fabrikam.com", hop("fabrikam.com")),
            RecipientState::new("c@adatum.com", hop("local")),
            RecipientState::new("d@contoso.com", hop("Outbound to contoso")),
        ];
        recipients[1].status = RecipientStatus::Deferred {
            attempts: 3,
            next_attempt: at(1_700_000_300, 5),
            last_error: "451 4.4.1 no answer".into(),
        };
        recipients[2].status = RecipientStatus::Delivered {
            at: at(1_700_000_100, 999_999_999),
            remote_reply: "250 2.0.0 delivered to maildir as x".into(),
        };
        recipients[3].status = RecipientStatus::Failed {
            at: at(1_700_000_200, 0),
            reply: "550 5.1.1 unknown user".into(),
        };
        let mut envelope = Envelope::new(Some("s@adatum.com".into()), recipients, at(1_700_000_000, 123));
        envelope.require_tls = true;
        QueuedMessage {
            id: QueueId::from_parts(1_700_000_000_000, 42),
            envelope,
            body_len: 51_200,
            delay_notified: true,
        }
    }

    #[test]
    fn every_recipient_state_survives_the_round_trip() {
        let message = every_state();
        let value = encode(&message).unwrap();
        assert_eq!(value[0], FORMAT_PROTOBUF);
        assert_eq!(decode(&value).unwrap(), message);
    }

    #[test]
    fn next_hops_are_stored_as_text_and_parsed_once_when_read() {
        let message = every_state();
        let pb::QueueRecord { recipients, .. } =
            pb::QueueRecord::decode(&encode(&message).unwrap()[1..]).unwrap();
        let stored: Vec<&str> = recipients.iter().map(|r| r.next_hop.as_str()).collect();
        assert_eq!(
            stored,
            ["fabrikam.com", "fabrikam.com", "local", "Outbound to contoso"]
        );
        let read = decode(&encode(&message).unwrap()).unwrap();
        let hops: Vec<&QueuedHop> = read.envelope.recipients.iter().map(|r| &r.next_hop).collect();
        assert_eq!(
            hops[0],
            &QueuedHop::Known(crate::routing::NextHop::Domain(
                postern_model::Domain::parse("fabrikam.com").unwrap()
            ))
        );
        assert_eq!(hops[2], &QueuedHop::Known(crate::routing::NextHop::Local));
        // Kept, not dropped: the recipient stays queued under the same text.
        assert_eq!(hops[3], &QueuedHop::Unreadable("Outbound to contoso".into()));
    }

    #[test]
    fn the_null_sender_stays_null() {
        let mut message = every_state();
        message.envelope.sender = None;
        assert_eq!(decode(&encode(&message).unwrap()).unwrap().envelope.sender, None);
        message.envelope.sender = Some(String::new());
        assert_eq!(
            decode(&encode(&message).unwrap()).unwrap().envelope.sender,
            Some(String::new())
        );
    }

    #[test]
    fn a_json_record_of_an_earlier_version_is_read() {
        // As stop 9's `serde_json::to_vec(&QueuedMessage)` wrote it.
        let json = br#"{"id":"018BCFE568000000000000000000002A","envelope":{"sender":"s@adatum.com","recipients":[{"address":"a@fabrikam.com","next_hop":"fabrikam.com","status":"Pending"},{"address":"b@fabrikam.com","next_hop":"fabrikam.com","status":{"Deferred":{"attempts":2,"next_attempt":{"secs_since_epoch":1700000300,"nanos_since_epoch":5},"last_error":"451 4.4.1 no answer"}}}],"received_at":{"secs_since_epoch":1700000000,"nanos_since_epoch":123}},"body_len":1024,"delay_notified":false}"#;
        let message = decode(json).unwrap();
        assert_eq!(message.id, QueueId::from_parts(1_700_000_000_000, 42));
        assert_eq!(message.envelope.sender.as_deref(), Some("s@adatum.com"));
        assert_eq!(message.envelope.received_at, at(1_700_000_000, 123));
        // Written before REQUIRETLS existed: the field is absent.
        assert!(!message.envelope.require_tls);
        assert_eq!(message.envelope.recipients[0].status, RecipientStatus::Pending);
        assert_eq!(message.envelope.recipients[1].status.attempts(), 2);
        assert_eq!(message.envelope.recipients[0].next_hop, hop("fabrikam.com"));
        assert!(message.envelope.recipients[0].next_hop.known().is_some());
        assert_eq!(message.body_len, 1024);
        // And the same record written today's way reads back equal.
        assert_eq!(decode(&encode(&message).unwrap()).unwrap(), message);
    }

    #[test]
    fn the_binary_record_is_smaller_than_the_json_one() {
        let message = every_state();
        let json = serde_json::to_vec(&message).unwrap();
        let binary = encode(&message).unwrap();
        assert!(
            binary.len() * 2 < json.len(),
            "{} vs {} bytes",
            binary.len(),
            json.len()
        );
    }

    #[test]
    fn damaged_values_are_refused_with_the_reason() {
        assert!(matches!(decode(b""), Err(RecordError::UnknownFormat(None))));
        assert!(matches!(
            decode(b"\x07abc"),
            Err(RecordError::UnknownFormat(Some(7)))
        ));
        assert!(matches!(decode(b"{not json"), Err(RecordError::Json(_))));
        let mut truncated = encode(&every_state()).unwrap();
        truncated.truncate(truncated.len() / 2);
        assert!(decode(&truncated).is_err());
        let bad_id = pb::QueueRecord {
            id: vec![1, 2, 3],
            received_at: Some(time_to_proto(at(1, 0)).unwrap()),
            ..Default::default()
        };
        let mut value = vec![FORMAT_PROTOBUF];
        value.extend(bad_id.encode_to_vec());
        assert!(matches!(
            decode(&value),
            Err(RecordError::Field { field: "id", .. })
        ));
        let no_time = pb::QueueRecord {
            id: QueueId::from_parts(1, 1).to_bytes().to_vec(),
            ..Default::default()
        };
        let mut value = vec![FORMAT_PROTOBUF];
        value.extend(no_time.encode_to_vec());
        assert!(matches!(
            decode(&value),
            Err(RecordError::Field {
                field: "received_at",
                ..
            })
        ));
    }
}
