//! What an edge reports of itself over EdgeSync: its queue per next hop
//! (length, oldest message, last error) and its certificates (thumbprint,
//! services, expiry). The edge puts a report in its EdgeHello and in each
//! heartbeat answer; the hub keeps the latest per edge in the edge's
//! `SyncStatus`, for the console.
//!
//! A report comes from another node: the hub bounds what it keeps
//! ([`MAX_ITEMS`] entries, [`MAX_TEXT`] characters per text) and the
//! console escapes every string it shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use postern_proto::edgesync as pb;
use postern_tls::certs::CertStore;
use postern_transport::queue::{Queue, RecipientStatus};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Most hops and most certificates kept from one report.
pub const MAX_ITEMS: usize = 200;
/// Longest text kept from a report, in characters.
pub const MAX_TEXT: usize = 1000;

/// One next hop of an edge's queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HopReport {
    /// The next hop as `postern queue` shows it.
    pub hop: String,
    /// Messages with a recipient waiting for this hop (each counted once).
    pub messages: u64,
    /// When the oldest of them was received (RFC 3339).
    pub oldest: String,
    /// The last error of a recipient for this hop (empty when none).
    pub last_error: String,
}

/// One certificate of an edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateReport {
    /// SHA-1 thumbprint, as `postern cert list` shows it.
    pub thumbprint: String,
    /// Subject DN.
    pub subject: String,
    /// Services it is enabled for.
    pub services: Vec<String>,
    /// End of validity (RFC 3339; empty for a pending request).
    pub not_after: String,
}

/// An edge's report of itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EdgeReport {
    /// When the edge made it (RFC 3339).
    pub time: String,
    /// Its queue per next hop.
    pub hops: Vec<HopReport>,
    /// Its certificates.
    pub certificates: Vec<CertificateReport>,
}

/// How an edge makes its report (called for each EdgeHello and heartbeat).
pub type Reporter = Arc<dyn Fn() -> EdgeReport + Send + Sync>;

/// A reporter reading `queue` and `certs`.
pub fn reporter(queue: Queue, certs: CertStore) -> Reporter {
    Arc::new(move || gather(&queue, &certs))
}

/// The report of a node with `queue` and `certs`, now. A store that
/// cannot be read is logged and reported empty (the report is advisory;
/// the sync itself goes on).
pub fn gather(queue: &Queue, certs: &CertStore) -> EdgeReport {
    let mut hops: BTreeMap<String, HopReport> = BTreeMap::new();
    match queue.ids() {
        Ok(ids) => {
            for id in ids {
                let Ok(Some(m)) = queue.get(id) else { continue };
                let received = OffsetDateTime::from(m.envelope.received_at)
                    .format(&Rfc3339)
                    .unwrap_or_default();
                let mut counted: Vec<String> = Vec::new();
                for r in &m.envelope.recipients {
                    let last_error = match &r.status {
                        RecipientStatus::Pending => String::new(),
                        RecipientStatus::Deferred { last_error, .. } => last_error.clone(),
                        RecipientStatus::Delivered { .. } | RecipientStatus::Failed { .. } => continue,
                    };
                    // Reported by the text the queue stores.
                    let hop = r.next_hop.to_string();
                    let h = hops.entry(hop.clone()).or_insert_with(|| HopReport {
                        hop: hop.clone(),
                        messages: 0,
                        oldest: String::new(),
                        last_error: String::new(),
                    });
                    if !counted.contains(&hop) {
                        counted.push(hop);
                        h.messages += 1;
                    }
                    if h.oldest.is_empty() || received < h.oldest {
                        h.oldest = received.clone();
                    }
                    if !last_error.is_empty() {
                        h.last_error = last_error;
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the queue for the EdgeSync report"),
    }
    let certificates = match certs.list() {
        Ok(list) => list
            .into_iter()
            .map(|c| CertificateReport {
                thumbprint: c.thumbprint.to_string(),
                subject: c.subject,
                services: c.services.iter().map(ToString::to_string).collect(),
                not_after: c.not_after,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the certificates for the EdgeSync report");
            Vec::new()
        }
    };
    EdgeReport {
        time: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        hops: hops.into_values().collect(),
        certificates,
    }
}

/// At most [`MAX_TEXT`] characters of a peer's text.
fn bounded(text: String) -> String {
    if text.chars().count() <= MAX_TEXT {
        text
    } else {
        text.chars().take(MAX_TEXT).collect()
    }
}

impl EdgeReport {
    /// The report as it travels.
    pub fn to_pb(&self) -> pb::EdgeReport {
        pb::EdgeReport {
            time: self.time.clone(),
            hops: self
                .hops
                .iter()
                .map(|h| pb::HopReport {
                    hop: h.hop.clone(),
                    messages: h.messages,
                    oldest: h.oldest.clone(),
                    last_error: h.last_error.clone(),
                })
                .collect(),
            certificates: self
                .certificates
                .iter()
                .map(|c| pb::CertificateReport {
                    thumbprint: c.thumbprint.clone(),
                    subject: c.subject.clone(),
                    services: c.services.clone(),
                    not_after: c.not_after.clone(),
                })
                .collect(),
        }
    }

    /// A received report, bounded (see the module note).
    pub fn from_pb(report: pb::EdgeReport) -> Self {
        Self {
            time: bounded(report.time),
            hops: report
                .hops
                .into_iter()
                .take(MAX_ITEMS)
                .map(|h| HopReport {
                    hop: bounded(h.hop),
                    messages: h.messages,
                    oldest: bounded(h.oldest),
                    last_error: bounded(h.last_error),
                })
                .collect(),
            certificates: report
                .certificates
                .into_iter()
                .take(MAX_ITEMS)
                .map(|c| CertificateReport {
                    thumbprint: bounded(c.thumbprint),
                    subject: bounded(c.subject),
                    services: c.services.into_iter().take(MAX_ITEMS).map(bounded).collect(),
                    not_after: bounded(c.not_after),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_report_is_bounded_and_round_trips() {
        let report = EdgeReport {
            time: "2026-01-01T00:00:00Z".into(),
            hops: vec![HopReport {
                hop: "mx.fabrikam.com".into(),
                messages: 2,
                oldest: "2026-01-01T00:00:00Z".into(),
                last_error: "421 busy".into(),
            }],
            certificates: vec![CertificateReport {
                thumbprint: "AB".into(),
                subject: "CN=edge1".into(),
                services: vec!["SMTP".into()],
                not_after: "2027-01-01T00:00:00Z".into(),
            }],
        };
        assert_eq!(EdgeReport::from_pb(report.to_pb()), report);

        let mut flood = report.to_pb();
        flood.hops = vec![flood.hops[0].clone(); MAX_ITEMS + 5];
        flood.hops[0].last_error = "x".repeat(MAX_TEXT * 3);
        let kept = EdgeReport::from_pb(flood);
        assert_eq!(kept.hops.len(), MAX_ITEMS);
        assert_eq!(kept.hops[0].last_error.chars().count(), MAX_TEXT);
    }
}
