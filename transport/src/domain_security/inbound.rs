//! Inbound domain security: a sender domain on the receive list must come
//! over TLS with a client certificate, chaining to a trusted root, that
//! names the domain or a host under it (DESIGN §5).

use std::fmt;

use postern_model::{Domain, TransportConfig};

use crate::routing::{Origin, Stamp};
use crate::smtp::{Mailbox, Reply};
use crate::tls::{PeerTrust, names_domain};

/// What domain security makes of one sender on one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundDomainSecurity {
    /// The sender's domain is not on the receive list, or the connector
    /// does not apply domain security (or there is no sender): nothing to
    /// prove.
    NotRequired,
    /// The session proved the partner's domain.
    Secured {
        /// The partner domain the client certificate names.
        partner: Domain,
    },
    /// The sender's domain must be domain-secured and the session did not
    /// prove it; mail from it is refused with a 4.7.5 (the partner fixes
    /// its side and retries).
    Failed {
        /// The partner domain the sender claims.
        partner: Domain,
        /// What the session lacked.
        failure: InboundFailure,
    },
}

/// Why a session did not prove a partner domain; the partner's side is at
/// fault (or the trust it relies on is not configured here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InboundFailure {
    /// The session did not run STARTTLS.
    NotTls,
    /// No client certificate was presented.
    NoCertificate,
    /// The certificate is one of this organisation's nodes (direct trust),
    /// not a partner's.
    OrganisationCertificate,
    /// The certificate chains to no trusted root, or is invalid.
    Untrusted(String),
    /// The certificate is trusted but names other domains.
    WrongName {
        /// The DNS names the certificate carries.
        names: Vec<String>,
    },
}

impl fmt::Display for InboundFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InboundFailure::NotTls => f.write_str("the session is not TLS (STARTTLS required)"),
            InboundFailure::NoCertificate => f.write_str("no client certificate was presented"),
            InboundFailure::OrganisationCertificate => {
                f.write_str("an organisation certificate is not a partner certificate")
            }
            InboundFailure::Untrusted(why) => write!(f, "the client certificate is not trusted ({why})"),
            InboundFailure::WrongName { names } => {
                write!(f, "the client certificate names {}", names.join(", "))
            }
        }
    }
}

/// Decides domain security for mail from `sender` on a session of `origin`
/// under the organisation's `config`.
pub fn inbound(config: &TransportConfig, sender: Option<&Mailbox>, origin: &Origin) -> InboundDomainSecurity {
    let Some(sender) = sender else {
        return InboundDomainSecurity::NotRequired;
    };
    let partner = sender.domain();
    let listed = config.tls_receive_domain_secure_list.iter().any(|d| d == partner);
    if !listed || !origin.domain_secure_enabled {
        return InboundDomainSecurity::NotRequired;
    }
    let failed = |failure| InboundDomainSecurity::Failed {
        partner: partner.clone(),
        failure,
    };
    if !origin.tls {
        return failed(InboundFailure::NotTls);
    }
    match &origin.peer {
        PeerTrust::Pki { names, .. } => {
            if names.iter().any(|n| names_domain(n, partner.as_str())) {
                InboundDomainSecurity::Secured {
                    partner: partner.clone(),
                }
            } else {
                failed(InboundFailure::WrongName { names: names.clone() })
            }
        }
        PeerTrust::None => failed(InboundFailure::NoCertificate),
        PeerTrust::Direct(_) => failed(InboundFailure::OrganisationCertificate),
        PeerTrust::Untrusted(why) => failed(InboundFailure::Untrusted(why.clone())),
    }
}

impl InboundDomainSecurity {
    /// The reply refusing the sender at RCPT, when domain security failed.
    pub fn refusal(&self) -> Option<Reply> {
        let InboundDomainSecurity::Failed { partner, failure } = self else {
            return None;
        };
        let why = match failure {
            InboundFailure::WrongName { .. } => format!("{failure}, not {partner}"),
            _ => failure.to_string(),
        };
        Some(Reply::simple(
            451,
            (4, 7, 5),
            format!("Domain security for {partner} failed: {why}"),
        ))
    }

    /// What accepting the message adds to it, written by the node `fqdn`:
    /// the organisation's trusted partner headers and an
    /// `Authentication-Results` field when the partner was proved (the
    /// server counts such a message as Domain-Secured Received).
    pub fn stamp(&self, fqdn: &Domain) -> Stamp {
        match self {
            InboundDomainSecurity::Secured { partner } => Stamp {
                headers: vec![
                    "X-Postern-Organization-AuthAs: Partner".to_owned(),
                    format!("X-Postern-Organization-AuthDomain: {partner}"),
                    format!(
                        "Authentication-Results: {fqdn}; tls=pass (domain-secured: mutual TLS, certificate for {partner}) smtp.mailfrom={partner}"
                    ),
                ],
                domain_secured: true,
            },
            _ => Stamp::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use postern_model::Thumbprint;

    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    fn session(tls: bool, peer: PeerTrust, enabled: bool) -> Origin {
        Origin {
            tls,
            peer,
            domain_secure_enabled: enabled,
            ..Origin::anonymous("Internet")
        }
    }

    fn pki(names: &[&str]) -> PeerTrust {
        PeerTrust::Pki {
            thumbprint: Thumbprint::of_der(b"partner"),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    #[test]
    fn inbound_decisions() {
        let config = TransportConfig {
            tls_receive_domain_secure_list: vec![d("fabrikam.com")],
            ..TransportConfig::default()
        };
        let partner: Mailbox = Mailbox::parse("kim@fabrikam.com").unwrap();
        let other: Mailbox = Mailbox::parse("kim@contoso.com").unwrap();
        let failed = |failure| InboundDomainSecurity::Failed {
            partner: d("fabrikam.com"),
            failure,
        };
        let table = [
            (
                Some(&other),
                session(true, pki(&["mail.contoso.com"]), true),
                InboundDomainSecurity::NotRequired,
            ),
            (
                None,
                session(false, PeerTrust::None, true),
                InboundDomainSecurity::NotRequired,
            ),
            (
                Some(&partner),
                session(false, PeerTrust::None, false),
                InboundDomainSecurity::NotRequired,
            ),
            (
                Some(&partner),
                session(false, PeerTrust::None, true),
                failed(InboundFailure::NotTls),
            ),
            (
                Some(&partner),
                session(true, PeerTrust::None, true),
                failed(InboundFailure::NoCertificate),
            ),
            (
                Some(&partner),
                session(true, PeerTrust::Direct(Thumbprint::of_der(b"hub")), true),
                failed(InboundFailure::OrganisationCertificate),
            ),
            (
                Some(&partner),
                session(true, PeerTrust::Untrusted("expired".into()), true),
                failed(InboundFailure::Untrusted("expired".into())),
            ),
            (
                Some(&partner),
                session(true, pki(&["mail.contoso.com"]), true),
                failed(InboundFailure::WrongName {
                    names: vec!["mail.contoso.com".into()],
                }),
            ),
            (
                Some(&partner),
                session(true, pki(&["mail.fabrikam.com"]), true),
                InboundDomainSecurity::Secured {
                    partner: d("fabrikam.com"),
                },
            ),
        ];
        for (i, (sender, origin, want)) in table.into_iter().enumerate() {
            assert_eq!(inbound(&config, sender, &origin), want, "row {i}");
        }
    }

    #[test]
    fn a_failure_is_refused_with_4_7_5_saying_why_and_stamps_nothing() {
        let failed = InboundDomainSecurity::Failed {
            partner: d("fabrikam.com"),
            failure: InboundFailure::WrongName {
                names: vec!["a.contoso.com".into(), "b.contoso.com".into()],
            },
        };
        let reply = failed.refusal().unwrap().to_string();
        assert!(reply.starts_with("451 4.7.5 "), "{reply}");
        assert!(
            reply.contains(
                "Domain security for fabrikam.com failed: the client certificate names a.contoso.com, b.contoso.com, not fabrikam.com"
            ),
            "{reply}"
        );
        assert_eq!(failed.stamp(&d("edge1.contoso.com")), Stamp::default());
        let not_tls = InboundDomainSecurity::Failed {
            partner: d("fabrikam.com"),
            failure: InboundFailure::NotTls,
        };
        assert!(
            not_tls
                .refusal()
                .unwrap()
                .to_string()
                .contains("failed: the session is not TLS (STARTTLS required)")
        );
    }

    #[test]
    fn a_secured_partner_is_stamped_and_never_refused() {
        let secured = InboundDomainSecurity::Secured {
            partner: d("fabrikam.com"),
        };
        assert_eq!(secured.refusal(), None);
        let stamp = secured.stamp(&d("edge1.contoso.com"));
        assert!(stamp.domain_secured);
        assert_eq!(
            stamp.headers,
            [
                "X-Postern-Organization-AuthAs: Partner",
                "X-Postern-Organization-AuthDomain: fabrikam.com",
                "Authentication-Results: edge1.contoso.com; tls=pass (domain-secured: mutual TLS, certificate for fabrikam.com) smtp.mailfrom=fabrikam.com",
            ]
        );
        assert_eq!(InboundDomainSecurity::NotRequired.refusal(), None);
        assert_eq!(
            InboundDomainSecurity::NotRequired.stamp(&d("edge1.contoso.com")),
            Stamp::default()
        );
    }
}
