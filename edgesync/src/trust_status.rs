//! What `edgesync test` says about trust between a hub and an edge: the
//! certificate the edge presented (and its expiry), and, when a handshake
//! failed because one side does not trust the other's certificate, a
//! `trust-mismatch` with both thumbprints and the fix.

use postern_model::Thumbprint;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::channel::SessionSlot;

/// The edge certificate seen in the session of `slot`: thumbprint, expiry
/// (RFC 3339) and whole days left.
pub fn presented(slot: &SessionSlot) -> Option<(Thumbprint, String, i64)> {
    let info = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let der = info.peer_certs.first()?;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let not_after = cert.validity().not_after.to_datetime();
    let days = (not_after - OffsetDateTime::now_utc()).whole_days();
    Some((
        Thumbprint::of_der(der.as_ref()),
        not_after.format(&Rfc3339).unwrap_or_default(),
        days,
    ))
}

/// Why a hub and an edge do not trust each other's certificate, as
/// observed where it happened (the hub's verifier, or the edge's typed
/// refusal), never guessed from an error's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustMismatch {
    /// The hub refused the edge's certificate: it is not one pinned for
    /// the edge's subscription.
    EdgeNotPinned {
        /// What the edge presented.
        presented: Thumbprint,
        /// What the hub pins for it.
        expected: Vec<Thumbprint>,
    },
    /// The edge refused the hub's certificate (not in its replica, and no
    /// bootstrap secret).
    HubNotTrusted {
        /// What the hub presented.
        presented: Thumbprint,
    },
}

/// The admin API's `SyncStatus.trust` word for a [`TrustMismatch`]
/// (otherwise "ok").
pub const TRUST_MISMATCH: &str = "trust-mismatch";

/// gRPC metadata key of an edge's refusal of the hub's certificate.
const REFUSAL_KEY: &str = "postern-refusal";
/// Its value for [`TrustMismatch::HubNotTrusted`].
const HUB_NOT_TRUSTED: &str = "hub-not-trusted";
/// gRPC metadata key carrying the certificate the hub presented.
const PRESENTED_KEY: &str = "postern-presented";

impl TrustMismatch {
    /// Which side refuses what, and the fix, for `postern edgesync test`.
    pub fn detail(&self, edge: &str) -> String {
        match self {
            TrustMismatch::EdgeNotPinned { presented, expected } => {
                let expected = expected
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ");
                format!(
                    "edge {edge} presents certificate {presented}; this hub trusts {expected} for it. \
                     The edge changed certificate without offering the new one over EdgeSync. \
                     Fix: on the edge, enable {expected} for SMTP again (`postern cert enable --thumbprint {expected} --services smtp`) \
                     so it is presented and the new one is offered and confirmed; or, if {expected} is gone, \
                     make a new subscription file on the edge and import it here"
                )
            }
            TrustMismatch::HubNotTrusted { presented } => format!(
                "edge {edge} does not trust certificate {presented} that this hub presents. \
                 Fix: on this hub, check with `postern cert list` that {presented} is enabled for SMTP \
                 (hub certificates reach edges through EdgeSync before they are presented), \
                 then `postern edgesync start`"
            ),
        }
    }

    /// The edge's refusal of the hub's certificate `presented`, as a gRPC
    /// status whose metadata carries the kind (read by [`Self::from_status`]).
    pub fn hub_not_trusted_status(reason: String, presented: &Thumbprint) -> tonic::Status {
        let mut status = tonic::Status::permission_denied(reason);
        let md = status.metadata_mut();
        md.insert(
            REFUSAL_KEY,
            tonic::metadata::MetadataValue::from_static(HUB_NOT_TRUSTED),
        );
        if let Ok(v) = presented.to_string().parse() {
            md.insert(PRESENTED_KEY, v);
        }
        status
    }

    /// The mismatch an edge's status says, when it is one.
    pub fn from_status(status: &tonic::Status) -> Option<Self> {
        let md = status.metadata();
        if md.get(REFUSAL_KEY)?.to_str().ok()? != HUB_NOT_TRUSTED {
            return None;
        }
        let presented = md.get(PRESENTED_KEY)?.to_str().ok()?.parse().ok()?;
        Some(TrustMismatch::HubNotTrusted { presented })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumb(c: char) -> Thumbprint {
        c.to_string().repeat(40).parse().expect("hex")
    }

    #[test]
    fn both_directions_have_a_fix() {
        let hub_refuses = TrustMismatch::EdgeNotPinned {
            presented: thumb('a'),
            expected: vec![thumb('b')],
        };
        let detail = hub_refuses.detail("edge1");
        assert!(
            detail.contains(&format!("presents certificate {}", thumb('a'))),
            "{detail}"
        );
        assert!(detail.contains(&format!("trusts {}", thumb('b'))), "{detail}");
        let edge_refuses = TrustMismatch::HubNotTrusted {
            presented: thumb('c'),
        };
        let detail = edge_refuses.detail("edge1");
        assert!(
            detail.contains(&format!("certificate {}", thumb('c'))),
            "{detail}"
        );
    }

    #[test]
    fn an_edges_refusal_travels_typed_in_the_status() {
        let status = TrustMismatch::hub_not_trusted_status("no".into(), &thumb('d'));
        assert_eq!(
            TrustMismatch::from_status(&status),
            Some(TrustMismatch::HubNotTrusted {
                presented: thumb('d')
            })
        );
        // Any other refusal, even with the same words, is not a mismatch.
        let plain = tonic::Status::permission_denied("which edge edge1 does not trust");
        assert_eq!(TrustMismatch::from_status(&plain), None);
    }
}
