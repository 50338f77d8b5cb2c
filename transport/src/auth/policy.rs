//! What the edge does with a DMARC verdict: the domain's policy, sampled
//! by `pct=` (RFC 7489 §6.6.4), then the connector's enforcement. Pure
//! functions, table-tested; DNS failures never reach `Reject`.

use postern_model::DmarcEnforcement;

/// A domain's requested policy (`p=` or `sp=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// Monitor only.
    None,
    /// Treat failing mail as suspicious.
    Quarantine,
    /// Refuse failing mail.
    Reject,
}

/// The DMARC result of one message, as far as the disposition cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarcOutcome {
    /// Aligned SPF or DKIM passed.
    Pass,
    /// The author domain publishes no DMARC record (or there is no From).
    None,
    /// A DNS failure: neither pass nor fail (temperror).
    Temporary,
    /// The record is unusable (permerror).
    Permanent,
    /// Nothing aligned passed; `policy` is the domain's, after `pct=`.
    Fail {
        /// The policy to apply.
        policy: DmarcPolicy,
    },
}

/// What becomes of the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Queue it as usual.
    Deliver,
    /// Queue it with the quarantine header.
    Quarantine,
    /// Refuse it: 550 5.7.1.
    Reject,
}

/// The disposition under the connector's enforcement.
pub fn disposition(enforcement: DmarcEnforcement, outcome: DmarcOutcome) -> Disposition {
    match (enforcement, outcome) {
        (
            DmarcEnforcement::Honour,
            DmarcOutcome::Fail {
                policy: DmarcPolicy::Reject,
            },
        ) => Disposition::Reject,
        (
            DmarcEnforcement::Honour,
            DmarcOutcome::Fail {
                policy: DmarcPolicy::Quarantine,
            },
        ) => Disposition::Quarantine,
        _ => Disposition::Deliver,
    }
}

/// RFC 7489 §6.6.4: the policy applies to `pct` percent of failing
/// messages; the others get the next policy down (reject → quarantine,
/// quarantine → none). `roll` is uniform in 0..100.
pub fn sampled(policy: DmarcPolicy, pct: u8, roll: u8) -> DmarcPolicy {
    if roll < pct.min(100) {
        return policy;
    }
    match policy {
        DmarcPolicy::Reject => DmarcPolicy::Quarantine,
        DmarcPolicy::Quarantine | DmarcPolicy::None => DmarcPolicy::None,
    }
}

/// The `pct=` tag of a DMARC record (100 when absent or malformed, as
/// RFC 7489 §6.3 says); `None` when the text is not a DMARC record.
pub fn record_pct(record: &str) -> Option<u8> {
    let mut tags = record.split(';').map(str::trim);
    let version = tags.next()?;
    if !version.replace(' ', "").eq_ignore_ascii_case("v=DMARC1") {
        return None;
    }
    let pct = tags
        .filter_map(|t| t.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("pct"))
        .and_then(|(_, v)| v.trim().parse::<u8>().ok())
        .map_or(100, |p| p.min(100));
    Some(pct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DmarcPolicy::{None as PNone, Quarantine, Reject};

    #[test]
    fn dispositions() {
        let cases = [
            (
                DmarcEnforcement::Honour,
                DmarcOutcome::Fail { policy: Reject },
                Disposition::Reject,
            ),
            (
                DmarcEnforcement::Honour,
                DmarcOutcome::Fail { policy: Quarantine },
                Disposition::Quarantine,
            ),
            (
                DmarcEnforcement::Honour,
                DmarcOutcome::Fail { policy: PNone },
                Disposition::Deliver,
            ),
            (
                DmarcEnforcement::Honour,
                DmarcOutcome::Temporary,
                Disposition::Deliver,
            ),
            (
                DmarcEnforcement::Honour,
                DmarcOutcome::Permanent,
                Disposition::Deliver,
            ),
            (DmarcEnforcement::Honour, DmarcOutcome::Pass, Disposition::Deliver),
            (DmarcEnforcement::Honour, DmarcOutcome::None, Disposition::Deliver),
            (
                DmarcEnforcement::None,
                DmarcOutcome::Fail { policy: Reject },
                Disposition::Deliver,
            ),
            (
                DmarcEnforcement::None,
                DmarcOutcome::Fail { policy: Quarantine },
                Disposition::Deliver,
            ),
        ];
        for (enforcement, outcome, expected) in cases {
            assert_eq!(
                disposition(enforcement, outcome),
                expected,
                "{enforcement:?} {outcome:?}"
            );
        }
    }

    #[test]
    fn pct_sampling() {
        assert_eq!(sampled(Reject, 100, 99), Reject);
        assert_eq!(sampled(Reject, 0, 0), Quarantine);
        assert_eq!(sampled(Quarantine, 0, 0), PNone);
        assert_eq!(sampled(Reject, 50, 49), Reject);
        assert_eq!(sampled(Reject, 50, 50), Quarantine);
        assert_eq!(sampled(PNone, 0, 0), PNone);
    }

    #[test]
    fn pct_tag() {
        assert_eq!(record_pct("v=DMARC1; p=reject"), Some(100));
        assert_eq!(record_pct("v=DMARC1; p=reject; pct=20"), Some(20));
        assert_eq!(record_pct("v=DMARC1;p=reject;PCT = 0"), Some(0));
        assert_eq!(record_pct("v=DMARC1; pct=250"), Some(100));
        assert_eq!(record_pct("v=DMARC1; pct=x"), Some(100));
        assert_eq!(record_pct("v=spf1 -all"), None);
    }
}
