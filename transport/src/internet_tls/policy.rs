//! "What this hop must prove": the one TLS policy of a connection to one
//! host, chosen by precedence (RFC 8461 §2, DESIGN §6): domain security for
//! listed partners, then DANE (RFC 7672), then MTA-STS (RFC 8461), then the
//! send connector's own settings. `IgnoreSTARTTLS` keeps its meaning (the
//! administrator chose plain text) and so does `RequireTLS` (a policy never
//! weakens it). Pure: the facts come from DNS and the MTA-STS cache, the
//! decision is made here and table-tested.

use std::fmt;
use std::sync::Arc;

use crate::internet_tls::dane::TlsaSet;
use crate::internet_tls::mta_sts::{MtaStsMode, MtaStsPolicy};
use crate::tls::{Encryption, PeerCheck, TlsRequirement};

/// Which rule decided a connection's TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicySource {
    /// Domain security: the partner is on the send list (mutual TLS, PKI,
    /// partner name).
    DomainSecurity,
    /// DANE: DNSSEC-validated TLSA records of the MX host.
    Dane,
    /// MTA-STS in `enforce` mode: PKI with the MX host's name, MX listed.
    MtaStsEnforce,
    /// MTA-STS in `testing` mode: failures are reported, not enforced.
    MtaStsTesting,
    /// The send connector's own TLS settings (or a smart host / organisation hop).
    Connector,
}

impl PolicySource {
    /// The word used in logs, queue entries and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::DomainSecurity => "domain-security",
            PolicySource::Dane => "dane",
            PolicySource::MtaStsEnforce => "mta-sts-enforce",
            PolicySource::MtaStsTesting => "mta-sts-testing",
            PolicySource::Connector => "connector",
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What DNSSEC says about an MX host's TLSA records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaneFacts {
    /// DANE is off on this node, or the hop is not routed by MX.
    NotLooked,
    /// The MX or TLSA answers are not signed (or not validated): DANE does
    /// not apply.
    Insecure,
    /// Validated: the host has no TLSA records.
    SecureNone,
    /// Validated TLSA records; none may be usable (then TLS is still
    /// mandatory, RFC 7672 §2.2).
    Secure(Arc<TlsaSet>),
    /// The answer failed validation, or the lookup failed in a signed
    /// zone: the host must not be used (never plain text).
    Bogus(String),
}

/// What the destination domain's MTA-STS says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StsFacts {
    /// Not looked up (not an MX hop, or not for this node), no `_mta-sts`
    /// record, or `mode: none`.
    None,
    /// A valid policy (fetched now or from the cache).
    Policy(Arc<MtaStsPolicy>),
}

/// Everything the decision depends on, for one host of one destination.
#[derive(Clone, Debug)]
pub struct HostFacts<'a> {
    /// The TLS the hop's connector (or domain security) demands.
    pub connector_tls: &'a TlsRequirement,
    /// Whether the hop is domain-secured (a partner on the send list).
    pub domain_secured: bool,
    /// The MX host name (lower case, no trailing dot).
    pub host: &'a str,
    /// DANE facts of the host.
    pub dane: DaneFacts,
    /// MTA-STS facts of the destination domain.
    pub sts: StsFacts,
}

/// The TLS one connection uses and the rule that chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPolicy {
    /// Which rule decided.
    pub source: PolicySource,
    /// The STARTTLS decision's input (see [`crate::client::plan`]).
    pub tls: TlsRequirement,
    /// For DANE: the records the server certificate must match (replaces
    /// the verification named in `tls`).
    pub dane: Option<Arc<TlsaSet>>,
}

impl HostPolicy {
    /// The connector's own settings.
    pub fn connector(tls: TlsRequirement) -> Self {
        Self {
            source: PolicySource::Connector,
            tls,
            dane: None,
        }
    }

    /// Whether mail over this policy is relayed only over TLS whose server
    /// was authenticated (what REQUIRETLS demands, RFC 8689 §5).
    pub fn is_verified(&self) -> bool {
        match self.source {
            PolicySource::DomainSecurity | PolicySource::MtaStsEnforce => true,
            PolicySource::Dane => self.dane.as_ref().is_some_and(|d| d.has_usable()),
            PolicySource::MtaStsTesting | PolicySource::Connector => self.tls.authenticates_server(),
        }
    }
}

/// Why a host may not be used under the policy that applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRefusal {
    /// The rule that refused.
    pub source: PolicySource,
    /// What is wrong, for the queue entry and the log.
    pub reason: String,
}

impl fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS policy {}: {}", self.source, self.reason)
    }
}

/// The TLS every mail-carrying TLS policy demands: required, server
/// checked by PKI (under the hop's name, else the host's), our certificate
/// offered.
fn pki_required() -> TlsRequirement {
    TlsRequirement::pki(None)
}

/// RFC 7672 §2.2: TLS mandatory, the certificate not checked, our
/// certificate offered.
fn encryption_required() -> TlsRequirement {
    TlsRequirement {
        peer: PeerCheck::DangerAny,
        ..TlsRequirement::pki(None)
    }
}

/// Decides the policy for one host (RFC 8461 §2 precedence).
pub fn resolve(facts: &HostFacts<'_>) -> Result<HostPolicy, PolicyRefusal> {
    if facts.domain_secured {
        return Ok(HostPolicy {
            source: PolicySource::DomainSecurity,
            ..HostPolicy::connector(facts.connector_tls.clone())
        });
    }
    if facts.connector_tls.encryption == Encryption::DangerNever {
        // The administrator's explicit choice (logged at warn by the client).
        return Ok(HostPolicy::connector(facts.connector_tls.clone()));
    }
    match &facts.dane {
        DaneFacts::Bogus(why) => {
            return Err(PolicyRefusal {
                source: PolicySource::Dane,
                reason: format!("DNSSEC answer for {} is bogus or unavailable: {why}", facts.host),
            });
        }
        DaneFacts::Secure(tlsa) => {
            let tls = if tlsa.has_usable() {
                pki_required()
            } else {
                // RFC 7672 §2.2: TLSA records exist but none is usable:
                // TLS is mandatory, the certificate is not checked.
                encryption_required()
            };
            return Ok(HostPolicy {
                source: PolicySource::Dane,
                tls,
                dane: tlsa.has_usable().then(|| Arc::clone(tlsa)),
            });
        }
        DaneFacts::NotLooked | DaneFacts::Insecure | DaneFacts::SecureNone => {}
    }
    if let StsFacts::Policy(policy) = &facts.sts {
        match policy.mode {
            MtaStsMode::Enforce => {
                if !policy.mx_matches(facts.host) {
                    return Err(PolicyRefusal {
                        source: PolicySource::MtaStsEnforce,
                        reason: format!("MX host {} is not listed in the MTA-STS policy", facts.host),
                    });
                }
                return Ok(HostPolicy {
                    source: PolicySource::MtaStsEnforce,
                    tls: stricter(facts.connector_tls, pki_required()),
                    dane: None,
                });
            }
            MtaStsMode::Testing => {
                return Ok(HostPolicy {
                    source: PolicySource::MtaStsTesting,
                    tls: facts.connector_tls.clone(),
                    dane: None,
                });
            }
            MtaStsMode::None => {}
        }
    }
    Ok(HostPolicy::connector(facts.connector_tls.clone()))
}

/// The policy's TLS, unless the connector already demands direct trust
/// (a connector's `RequireTLS` is never weakened).
fn stricter(connector: &TlsRequirement, policy: TlsRequirement) -> TlsRequirement {
    match connector {
        TlsRequirement {
            encryption: Encryption::Required,
            peer: PeerCheck::DirectTrust,
            ..
        } => connector.clone(),
        _ => policy,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::internet_tls::dane::{Tlsa, TlsaSet};
    use crate::internet_tls::mta_sts::MtaStsPolicy;

    fn tlsa(usable: bool) -> Arc<TlsaSet> {
        let usage = if usable { 3 } else { 1 };
        Arc::new(TlsaSet::new(vec![Tlsa {
            usage,
            selector: 1,
            matching: 1,
            data: vec![0; 32],
        }]))
    }

    fn sts(mode: MtaStsMode) -> StsFacts {
        StsFacts::Policy(Arc::new(MtaStsPolicy {
            mode,
            mx: vec!["*.example.com".into(), "mx.example.net".into()],
            max_age: 86400,
        }))
    }

    /// (connector tls, domain secured, host, dane, sts, expected).
    type Row = (
        TlsRequirement,
        bool,
        &'static str,
        DaneFacts,
        StsFacts,
        Result<(PolicySource, TlsRequirement, bool), PolicySource>,
    );

    #[test]
    fn precedence() {
        use PolicySource::*;
        const OPP: TlsRequirement = TlsRequirement::OPPORTUNISTIC;
        const IGNORE: TlsRequirement = TlsRequirement::DANGER_PLAIN_TEXT;
        let encrypt_only = encryption_required();
        let pki = pki_required();
        let bogus = DaneFacts::Bogus("signature expired".into());
        // (connector tls, domain secured, host, dane, sts) → Ok(source, tls, dane?) | Err(source)
        let table: Vec<Row> = vec![
            // Nothing published: the connector decides.
            (
                OPP,
                false,
                "mx.example.com",
                DaneFacts::NotLooked,
                StsFacts::None,
                Ok((Connector, OPP, false)),
            ),
            (
                OPP,
                false,
                "mx.example.com",
                DaneFacts::Insecure,
                StsFacts::None,
                Ok((Connector, OPP, false)),
            ),
            (
                encrypt_only.clone(),
                false,
                "mx.example.com",
                DaneFacts::SecureNone,
                StsFacts::None,
                Ok((Connector, encrypt_only.clone(), false)),
            ),
            // Domain security wins over everything, bogus DNS included.
            (
                pki.clone(),
                true,
                "mx.example.com",
                bogus.clone(),
                sts(MtaStsMode::Enforce),
                Ok((DomainSecurity, pki.clone(), false)),
            ),
            // IgnoreSTARTTLS keeps its meaning.
            (
                IGNORE,
                false,
                "mx.example.com",
                DaneFacts::Secure(tlsa(true)),
                sts(MtaStsMode::Enforce),
                Ok((Connector, IGNORE, false)),
            ),
            // DANE: usable records → required TLS checked against TLSA.
            (
                OPP,
                false,
                "mx.example.com",
                DaneFacts::Secure(tlsa(true)),
                sts(MtaStsMode::Enforce),
                Ok((Dane, pki.clone(), true)),
            ),
            // DANE with no usable record: TLS mandatory, unauthenticated.
            (
                OPP,
                false,
                "mx.example.com",
                DaneFacts::Secure(tlsa(false)),
                StsFacts::None,
                Ok((Dane, encrypt_only.clone(), false)),
            ),
            // Bogus → refused, never plain; MTA-STS does not rescue it.
            (
                OPP,
                false,
                "mx.example.com",
                bogus.clone(),
                sts(MtaStsMode::Enforce),
                Err(Dane),
            ),
            // Validated absence of TLSA falls through to MTA-STS.
            (
                OPP,
                false,
                "mx.example.com",
                DaneFacts::SecureNone,
                sts(MtaStsMode::Enforce),
                Ok((MtaStsEnforce, pki.clone(), false)),
            ),
            (
                OPP,
                false,
                "a.example.com",
                DaneFacts::Insecure,
                sts(MtaStsMode::Enforce),
                Ok((MtaStsEnforce, pki.clone(), false)),
            ),
            // enforce + MX not listed → refused.
            (
                OPP,
                false,
                "mx.attacker.org",
                DaneFacts::Insecure,
                sts(MtaStsMode::Enforce),
                Err(MtaStsEnforce),
            ),
            // "*.example.com" matches one label only.
            (
                OPP,
                false,
                "a.b.example.com",
                DaneFacts::Insecure,
                sts(MtaStsMode::Enforce),
                Err(MtaStsEnforce),
            ),
            // testing: the connector's TLS, failures reported.
            (
                OPP,
                false,
                "mx.attacker.org",
                DaneFacts::Insecure,
                sts(MtaStsMode::Testing),
                Ok((MtaStsTesting, OPP, false)),
            ),
            (
                OPP,
                false,
                "mx.example.net",
                DaneFacts::Insecure,
                sts(MtaStsMode::None),
                Ok((Connector, OPP, false)),
            ),
            // RequireTLS with direct trust is never weakened by MTA-STS.
            (
                TlsRequirement::ORGANISATION,
                false,
                "mx.example.net",
                DaneFacts::NotLooked,
                sts(MtaStsMode::Enforce),
                Ok((MtaStsEnforce, TlsRequirement::ORGANISATION, false)),
            ),
        ];
        for (i, (connector_tls, domain_secured, host, dane, sts, want)) in table.into_iter().enumerate() {
            let facts = HostFacts {
                connector_tls: &connector_tls,
                domain_secured,
                host,
                dane,
                sts,
            };
            let got = resolve(&facts)
                .map(|p| (p.source, p.tls, p.dane.is_some()))
                .map_err(|r| r.source);
            assert_eq!(got, want, "row {i}: {facts:?}");
        }
    }

    #[test]
    fn verified_policies_for_requiretls() {
        let pki = pki_required();
        let encrypt_only = encryption_required();
        let dane = HostPolicy {
            source: PolicySource::Dane,
            tls: pki.clone(),
            dane: Some(tlsa(true)),
        };
        assert!(dane.is_verified());
        let dane_unusable = HostPolicy {
            source: PolicySource::Dane,
            tls: encrypt_only.clone(),
            dane: None,
        };
        assert!(!dane_unusable.is_verified());
        assert!(HostPolicy::connector(pki.clone()).is_verified());
        assert!(!HostPolicy::connector(TlsRequirement::OPPORTUNISTIC).is_verified());
        assert!(!HostPolicy::connector(encrypt_only.clone()).is_verified());
        let enforce = HostPolicy {
            source: PolicySource::MtaStsEnforce,
            tls: pki.clone(),
            dane: None,
        };
        assert!(enforce.is_verified());
    }
}
