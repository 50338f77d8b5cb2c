//! Outbound domain security: what a hop through a send connector must
//! present and check, and what a delivery attempt over a domain-secured
//! hop counts as.
//!
//! Mail to a domain of `tls_send_domain_secure_list` through a connector
//! with `domain_secure_enabled` goes only over STARTTLS, with our
//! certificate presented and the partner's checked by PKI against the
//! partner domain; otherwise the connector's own TLS settings apply.

use postern_model::{Domain, SendConnector, TlsAuthLevel, TransportConfig};

use crate::queue::{DeliveryOutcome, RecipientOutcome};
use crate::routing::{OutboundTls, SmtpHop};
use crate::tls::ServerVerification;

/// Whether mail to `domain` through `connector` is domain-secured.
pub fn is_domain_secured(connector: &SendConnector, domain: &Domain, config: &TransportConfig) -> bool {
    connector.domain_secure_enabled && config.tls_send_domain_secure_list.iter().any(|d| d == domain)
}

/// The TLS `connector` demands for mail to `domain`, and the name the
/// server certificate must carry (for PKI checks).
pub fn outbound_tls(
    connector: &SendConnector,
    domain: &Domain,
    config: &TransportConfig,
) -> (OutboundTls, Option<Domain>) {
    if is_domain_secured(connector, domain, config) {
        let tls = OutboundTls::Required {
            verification: ServerVerification::Pki,
            client_certificate: true,
        };
        return (tls, Some(domain.clone()));
    }
    if connector.ignore_starttls {
        return (OutboundTls::DangerIgnoreStartTls, None);
    }
    if !connector.require_tls {
        return (OutboundTls::Opportunistic, None);
    }
    match connector.tls_auth_level {
        None | Some(TlsAuthLevel::EncryptionOnly) => (
            OutboundTls::Required {
                verification: ServerVerification::DangerEncryptionOnly,
                client_certificate: true,
            },
            None,
        ),
        Some(TlsAuthLevel::CertificateValidation) => (
            OutboundTls::Required {
                verification: ServerVerification::Pki,
                client_certificate: true,
            },
            None,
        ),
        Some(TlsAuthLevel::DomainValidation) => (
            OutboundTls::Required {
                verification: ServerVerification::Pki,
                client_certificate: true,
            },
            Some(connector.tls_domain.clone().unwrap_or_else(|| domain.clone())),
        ),
    }
}

/// Whether `hop` is a domain-secured hop routed by MX (mutual TLS, PKI,
/// the partner's domain as the certificate name, as [`outbound_tls`]
/// makes it): the Internet TLS policies (DANE, MTA-STS) then do not apply.
pub fn is_domain_secured_hop(hop: &SmtpHop) -> bool {
    hop.tls
        == OutboundTls::Required {
            verification: ServerVerification::Pki,
            client_certificate: true,
        }
        && hop.tls_name.is_some()
        && hop.tls_name == hop.mx_domain
}

/// What one delivery attempt over a domain-secured hop counts as
/// (Exchange's Domain-Secured Messages Sent and Outbound Session Failures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundDomainSecurity<'a> {
    /// At least one recipient was delivered over the secured session.
    Sent,
    /// The session could not be secured (STARTTLS refused, the partner's
    /// certificate not trusted, …); the message stays queued, never sent
    /// in plain text.
    SessionFailed {
        /// Why, as the client reported it (may quote the partner).
        reason: &'a str,
    },
    /// The session was made but the partner refused it for security or
    /// policy reasons: nothing got through and a recipient was deferred
    /// with an enhanced status 4.7.x (RFC 3463, e.g. `451 4.7.1` for a
    /// domain-security check of ours that failed on the partner's side).
    PartnerRefused {
        /// The partner's reply.
        reply: &'a str,
    },
    /// Nothing to count: permanent failures, or transient ones for other
    /// reasons.
    Uncounted,
}

/// The domain-security outcome of an attempt whose result is `attempt`
/// (the recipients' outcomes, or why no session was made).
pub fn outbound_outcome(attempt: &Result<Vec<RecipientOutcome>, String>) -> OutboundDomainSecurity<'_> {
    let outcomes = match attempt {
        Ok(outcomes) => outcomes,
        Err(reason) => return OutboundDomainSecurity::SessionFailed { reason },
    };
    if outcomes
        .iter()
        .any(|o| matches!(o.outcome, DeliveryOutcome::Delivered(_)))
    {
        return OutboundDomainSecurity::Sent;
    }
    outcomes
        .iter()
        .find_map(|o| match &o.outcome {
            DeliveryOutcome::TransientFailure(reply)
                if crate::queue::dsn::enhanced_status(reply).is_some_and(|c| c.starts_with("4.7.")) =>
            {
                Some(OutboundDomainSecurity::PartnerRefused { reply })
            }
            _ => None,
        })
        .unwrap_or(OutboundDomainSecurity::Uncounted)
}

#[cfg(test)]
mod tests {
    use postern_model::AddressSpace;

    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    fn connector() -> SendConnector {
        SendConnector::new("Internet", vec![AddressSpace::parse("*;100").unwrap()])
    }

    #[test]
    fn tls_policy_table() {
        let partner = d("northwindtraders.com");
        let other = d("fabrikam.com");
        let config = TransportConfig {
            tls_send_domain_secure_list: vec![partner.clone()],
            ..TransportConfig::default()
        };
        let mut c = connector();
        assert!(!is_domain_secured(&c, &partner, &config));
        assert_eq!(outbound_tls(&c, &partner, &config).0, OutboundTls::Opportunistic);
        c.domain_secure_enabled = true;
        assert!(is_domain_secured(&c, &partner, &config));
        assert!(!is_domain_secured(&c, &other, &config));
        let (tls, name) = outbound_tls(&c, &partner, &config);
        assert_eq!(
            tls,
            OutboundTls::Required {
                verification: ServerVerification::Pki,
                client_certificate: true
            }
        );
        assert_eq!(name, Some(partner.clone()));
        assert_eq!(outbound_tls(&c, &other, &config).0, OutboundTls::Opportunistic);
        c.domain_secure_enabled = false;
        c.ignore_starttls = true;
        assert_eq!(
            outbound_tls(&c, &other, &config).0,
            OutboundTls::DangerIgnoreStartTls
        );
        c.ignore_starttls = false;
        c.require_tls = true;
        assert_eq!(
            outbound_tls(&c, &other, &config).0,
            OutboundTls::Required {
                verification: ServerVerification::DangerEncryptionOnly,
                client_certificate: true
            }
        );
        c.tls_auth_level = Some(TlsAuthLevel::CertificateValidation);
        assert_eq!(
            outbound_tls(&c, &other, &config),
            (
                OutboundTls::Required {
                    verification: ServerVerification::Pki,
                    client_certificate: true
                },
                None
            )
        );
        c.tls_auth_level = Some(TlsAuthLevel::DomainValidation);
        c.tls_domain = Some(d("mx.fabrikam.com"));
        assert_eq!(outbound_tls(&c, &other, &config).1, Some(d("mx.fabrikam.com")));
    }

    #[test]
    fn attempts_count_as_the_table_says() {
        let outcome = |o| RecipientOutcome::new("a@fabrikam.com", o);
        let refused = DeliveryOutcome::TransientFailure("451 4.7.1 domain security check failed".into());
        let delivered = DeliveryOutcome::Delivered("250 2.0.0 ok".into());
        let table: Vec<(
            Result<Vec<RecipientOutcome>, String>,
            OutboundDomainSecurity<'static>,
        )> = vec![
            (Ok(vec![outcome(delivered.clone())]), OutboundDomainSecurity::Sent),
            (
                Ok(vec![outcome(refused.clone()), outcome(delivered.clone())]),
                OutboundDomainSecurity::Sent,
            ),
            (
                Ok(vec![outcome(refused.clone())]),
                OutboundDomainSecurity::PartnerRefused {
                    reply: "451 4.7.1 domain security check failed",
                },
            ),
            (
                Err("STARTTLS refused: 454 4.7.0 no TLS".into()),
                OutboundDomainSecurity::SessionFailed {
                    reason: "STARTTLS refused: 454 4.7.0 no TLS",
                },
            ),
            (
                Ok(vec![outcome(DeliveryOutcome::TransientFailure(
                    "451 4.4.1 try later".into(),
                ))]),
                OutboundDomainSecurity::Uncounted,
            ),
            (
                Ok(vec![outcome(DeliveryOutcome::TransientFailure(
                    "421 busy".into(),
                ))]),
                OutboundDomainSecurity::Uncounted,
            ),
            (
                Ok(vec![outcome(DeliveryOutcome::PermanentFailure(
                    "550 5.7.1 relaying denied".into(),
                ))]),
                OutboundDomainSecurity::Uncounted,
            ),
        ];
        for (i, (attempt, want)) in table.iter().enumerate() {
            assert_eq!(&outbound_outcome(attempt), want, "row {i}");
        }
    }
}
