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

/// When `error` (a failed EdgeSync attempt to `edge`) is a certificate
/// one side does not trust: which, and the fix.
pub fn mismatch(error: &str, edge: &str) -> Option<String> {
    if let Some(rest) = error.split("the peer presented certificate ").nth(1) {
        let presented = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_end_matches(',');
        let expected = rest
            .split(", not ")
            .nth(1)
            .and_then(|r| r.split(" from its subscription").next())
            .unwrap_or_default();
        return Some(format!(
            "edge {edge} presents certificate {presented}; this hub trusts {expected} for it. \
             The edge changed certificate without offering the new one over EdgeSync. \
             Fix: on the edge, enable {expected} for SMTP again (`postern cert enable --thumbprint {expected} --services smtp`) \
             so it is presented and the new one is offered and confirmed; or, if {expected} is gone, \
             make a new subscription file on the edge and import it here"
        ));
    }
    if error.contains("does not trust") {
        let presented = error
            .split("presented certificate ")
            .nth(1)
            .and_then(|r| r.split(|c: char| c == ',' || c.is_whitespace()).next())
            .unwrap_or_default();
        return Some(format!(
            "edge {edge} does not trust certificate {presented} that this hub presents. \
             Fix: on this hub, check with `postern cert list` that {presented} is enabled for SMTP \
             (hub certificates reach edges through EdgeSync before they are presented), \
             then `postern edgesync start`"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_are_recognised() {
        let hub_refuses = "transport error: invalid peer certificate: the peer presented certificate AAAA, not BBBB from its subscription";
        let detail = mismatch(hub_refuses, "edge1").unwrap();
        assert!(detail.contains("presents certificate AAAA"), "{detail}");
        assert!(detail.contains("trusts BBBB"), "{detail}");
        let edge_refuses =
            "hub hub1 presented certificate CCCC, which edge edge1 does not trust, and no bootstrap secret";
        let detail = mismatch(edge_refuses, "edge1").unwrap();
        assert!(detail.contains("certificate CCCC"), "{detail}");
        assert!(mismatch("connection refused", "edge1").is_none());
    }
}
