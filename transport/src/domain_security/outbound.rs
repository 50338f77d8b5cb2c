//! Outbound domain security: which mail through a send connector is
//! domain-secured, which hops are, and what a delivery attempt over a
//! domain-secured hop counts as.
//!
//! Mail to a domain of `tls_send_domain_secure_list` through a connector
//! with `domain_secure_enabled` goes only over STARTTLS, with our
//! certificate presented and the partner's checked by PKI against the
//! partner domain (the requirement is made in [`super::requirement`]).

use postern_model::{Domain, SendConnector, TransportConfig};

use crate::queue::{DeliveryOutcome, RecipientOutcome};
use crate::routing::SmtpHop;
use crate::tls::Encryption;

/// Whether mail to `domain` through `connector` is domain-secured.
pub fn is_domain_secured(connector: &SendConnector, domain: &Domain, config: &TransportConfig) -> bool {
    connector.domain_secure_enabled && config.tls_send_domain_secure_list.iter().any(|d| d == domain)
}

/// Whether `hop` is a domain-secured hop routed by MX: its requirement
/// is TLS or no delivery, our certificate presented, the server checked by
/// PKI against the domain it is routed to (what
/// [`domain_secured`](super::requirement::domain_secured) demands). The
/// Internet TLS policies (DANE, MTA-STS) then do not apply. A
/// `DomainValidation` connector routed by MX whose TLS name is the
/// destination domain demands the same and is treated alike.
pub fn is_domain_secured_hop(hop: &SmtpHop) -> bool {
    let requirement = &hop.tls;
    requirement.encryption == Encryption::Required
        && requirement.presents_client_certificate()
        && hop
            .mx_domain
            .as_ref()
            .is_some_and(|domain| requirement.pki_name() == Some(domain))
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

    #[test]
    fn domain_secured_hops_read_the_requirement() {
        let partner = d("northwindtraders.com");
        let other = d("fabrikam.com");
        let config = TransportConfig {
            tls_send_domain_secure_list: vec![partner.clone()],
            ..TransportConfig::default()
        };
        let fqdn = d("edge.contoso.com");
        let hop =
            |c: &SendConnector, domain: &Domain| crate::connectors::connector_hop(c, domain, &config, &fqdn);
        let mut c = SendConnector::new("Internet", vec![AddressSpace::parse("*;100").unwrap()]);
        assert!(!is_domain_secured_hop(&hop(&c, &partner)));
        c.domain_secure_enabled = true;
        assert!(is_domain_secured(&c, &partner, &config));
        assert!(is_domain_secured_hop(&hop(&c, &partner)));
        assert!(!is_domain_secured(&c, &other, &config));
        assert!(!is_domain_secured_hop(&hop(&c, &other)));
        // Through a smart host the hop is not routed by MX: the Internet
        // TLS policies do not apply to it anyway.
        c.dns_routing_enabled = false;
        c.smart_hosts = vec!["relay.northwindtraders.com".into()];
        assert!(!is_domain_secured_hop(&hop(&c, &partner)));
        // Certificate validation without a name is not domain security.
        let mut validating = SendConnector::new("Validating", vec![AddressSpace::parse("*;100").unwrap()]);
        validating.require_tls = true;
        validating.tls_auth_level = Some(postern_model::TlsAuthLevel::CertificateValidation);
        assert!(!is_domain_secured_hop(&hop(&validating, &partner)));
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
