//! EdgeSync messages as each side decodes them: a hub's message on the
//! edge (protobuf, then the replicated objects and changes it carries as
//! JSON, applied to a replica) and an edge's message on the hub
//! (protobuf, then a certificate rotation offer's checks).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use postern_edgesync::replica::Replica;
use postern_edgesync::rotation::verify_offer;
use postern_model::{Change, ConfigVersion, ReplicatedObject, Thumbprint};
use postern_proto::edgesync::{EdgeMessage, HubMessage, edge_message, hub_message};
use prost::Message;
use time::OffsetDateTime;

fn replica() -> &'static Replica {
    static REPLICA: OnceLock<Replica> = OnceLock::new();
    REPLICA.get_or_init(|| {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary sled store");
        Replica::open(&db).expect("a replica")
    })
}

fn on_the_edge(message: HubMessage) {
    match message.body {
        Some(hub_message::Body::Snapshot(s)) => {
            let objects: Result<Vec<ReplicatedObject>, _> =
                s.objects.iter().map(|o| serde_json::from_slice(o)).collect();
            if let Ok(objects) = objects {
                let _ = replica().apply_snapshot(&s.store_id, ConfigVersion(s.version), &objects);
            }
        }
        Some(hub_message::Body::Delta(d)) => {
            let changes: Result<Vec<Change>, _> =
                d.changes.iter().map(|c| serde_json::from_slice(c)).collect();
            if let Ok(changes) = changes {
                let _ = replica().apply_delta(&d.store_id, ConfigVersion(d.from_version), ConfigVersion(d.to_version), &changes);
            }
        }
        _ => {}
    }
}

fn on_the_hub(message: EdgeMessage) {
    if let Some(edge_message::Body::CertOffer(offer)) = message.body {
        let presented = Some(Thumbprint::of_der(&offer.old_certificate));
        let _ = verify_offer(&offer, Some(&[7; 32]), presented, OffsetDateTime::now_utc());
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = HubMessage::decode(data) {
        on_the_edge(message);
    }
    if let Ok(message) = EdgeMessage::decode(data) {
        on_the_hub(message);
    }
});
