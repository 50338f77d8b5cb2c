//! Property tests (proptest) for EdgeSync messages as the edge reads them:
//! protobuf, then the JSON objects and changes inside, then the replica.
//! A snapshot that travels intact is applied as sent; a damaged one is
//! applied whole or refused whole (the replica is never half-changed),
//! and a refusal's reason, which may quote the hub, carries no control
//! characters. Small case counts keep the suite fast; fuzz/ runs the
//! decoding unbounded.

#![allow(clippy::unwrap_used)]

use postern_model::{AcceptedDomain, AcceptedDomainKind, Domain, MailboxEntry};
use proptest::prelude::*;
use prost::Message;

use super::*;

/// A fresh edge (temporary store), its service and replica.
fn edge() -> (EdgeSyncService, Replica) {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let replica = Replica::open(&db).unwrap();
    let bootstrap = BootstrapStore::open(&db).unwrap();
    (EdgeSyncService::new("edge1", replica.clone(), bootstrap), replica)
}

fn object() -> impl Strategy<Value = ReplicatedObject> {
    prop_oneof![
        ("[a-z]{1,10}\\.(test|example)", 0..3usize).prop_map(|(name, kind)| {
            ReplicatedObject::AcceptedDomain(AcceptedDomain {
                name: Domain::parse(&name).unwrap(),
                kind: [
                    AcceptedDomainKind::Authoritative,
                    AcceptedDomainKind::InternalRelay,
                    AcceptedDomainKind::ExternalRelay,
                ][kind],
                delivery: Default::default(),
            })
        }),
        "\\PC{0,30}".prop_map(|address| ReplicatedObject::Mailbox(MailboxEntry::new(&address, None))),
    ]
}

fn snapshot(version: u64, objects: &[ReplicatedObject]) -> Vec<u8> {
    pb::HubMessage {
        body: Some(pb::hub_message::Body::Snapshot(pb::Snapshot {
            store_id: "store-1".into(),
            version,
            objects: objects.iter().map(|o| serde_json::to_vec(o).unwrap()).collect(),
        })),
    }
    .encode_to_vec()
}

/// What the edge answers to `bytes` from an authenticated hub: `None`
/// when they are not a hub message at all.
fn answer(service: &EdgeSyncService, bytes: &[u8]) -> Option<Result<pb::EdgeMessage, Status>> {
    let message = pb::HubMessage::decode(bytes).ok()?;
    let peer = Thumbprint::of_der(b"hub certificate");
    Some(service.handle(message, &mut false, &peer))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn an_intact_snapshot_is_applied_as_sent(
        version in 1u64..1_000_000,
        objects in prop::collection::vec(object(), 0..12),
    ) {
        let (service, replica) = edge();
        let reply = answer(&service, &snapshot(version, &objects)).unwrap().unwrap();
        prop_assert_eq!(
            reply.body,
            Some(pb::edge_message::Body::Ack(pb::Ack { version }))
        );
        // One object per key, the last sent winning, in key order.
        let sent: std::collections::BTreeMap<_, _> = objects.into_iter().map(|o| (o.key(), o)).collect();
        let mut held = replica.all().unwrap();
        held.sort_by_key(ReplicatedObject::key);
        prop_assert_eq!(held, sent.into_values().collect::<Vec<_>>());
        prop_assert_eq!(replica.applied().version, ConfigVersion(version));
    }

    #[test]
    fn a_damaged_message_is_applied_whole_or_refused_whole(
        objects in prop::collection::vec(object(), 1..6),
        at in any::<prop::sample::Index>(),
        xor in 1u8..=255,
        cut in any::<Option<prop::sample::Index>>(),
    ) {
        let (service, replica) = edge();
        answer(&service, &snapshot(5, &objects)).unwrap().unwrap();
        let before = replica.all().unwrap();
        let mut bytes = snapshot(9, &objects[..1]);
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        match answer(&service, &bytes) {
            None
            | Some(Err(_))
            | Some(Ok(pb::EdgeMessage { body: Some(pb::edge_message::Body::Heartbeat(_)) })) => {
                prop_assert_eq!(replica.applied().version, ConfigVersion(5));
                prop_assert_eq!(replica.all().unwrap(), before);
            }
            Some(Ok(pb::EdgeMessage { body: Some(pb::edge_message::Body::Nack(nack)) })) => {
                prop_assert!(!nack.reason.chars().any(char::is_control), "{:?}", nack.reason);
                prop_assert_eq!(replica.applied().version, ConfigVersion(5));
                prop_assert_eq!(replica.all().unwrap(), before);
            }
            Some(Ok(pb::EdgeMessage { body: Some(pb::edge_message::Body::Ack(ack)) })) => {
                prop_assert_eq!(replica.applied().version, ConfigVersion(ack.version));
            }
            Some(Ok(other)) => prop_assert!(false, "unexpected answer {:?}", other),
        }
    }

    #[test]
    fn objects_that_do_not_parse_are_refused_with_an_escaped_reason(
        junk in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let (service, replica) = edge();
        let message = pb::HubMessage {
            body: Some(pb::hub_message::Body::Snapshot(pb::Snapshot {
                store_id: "store-1".into(),
                version: 3,
                objects: vec![junk.clone()],
            })),
        };
        let parses = serde_json::from_slice::<ReplicatedObject>(&junk).is_ok();
        let reply = service.handle(message, &mut false, &Thumbprint::of_der(b"hub")).unwrap();
        match reply.body {
            Some(pb::edge_message::Body::Nack(nack)) => {
                prop_assert!(!parses);
                prop_assert!(!nack.reason.chars().any(char::is_control), "{:?}", nack.reason);
                prop_assert!(nack.reason.len() < 600);
                prop_assert_eq!(replica.applied().version, ConfigVersion(0));
            }
            Some(pb::edge_message::Body::Ack(_)) => prop_assert!(parses),
            other => prop_assert!(false, "unexpected answer {:?}", other),
        }
    }

    #[test]
    fn any_bytes_decode_or_not_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = pb::HubMessage::decode(bytes.as_slice());
        let _ = pb::EdgeMessage::decode(bytes.as_slice());
    }
}
