//! Stored settings → [`TlsRequirement`], in one place for both directions.
//!
//! - A send connector's hop ([`send_requirement`]): domain security for a
//!   partner on `tls_send_domain_secure_list` (through a connector with
//!   `domain_secure_enabled`) wins; then IgnoreSTARTTLS; then RequireTLS
//!   with its `TlsAuthLevel`; else opportunistic TLS.
//! - A receive connector ([`receive_requirement`]): STARTTLS offered when
//!   `tls` is among its auth mechanisms, required with `require_tls`;
//!   organisation-only connectors demand a directly trusted client
//!   certificate, the others ask for any (domain security classifies it
//!   after the handshake).
//!
//! The organisation's own hops use [`TlsRequirement::ORGANISATION`].

use postern_model::{
    AuthMechanism, Domain, PermissionGroup, ReceiveConnector, SendConnector, TlsAuthLevel, TransportConfig,
};

use crate::domain_security::is_domain_secured;
use crate::tls::{ClientCertificate, Encryption, PeerCheck, TlsRequirement};

/// What domain security demands of a hop to `partner`: STARTTLS or no
/// delivery, mutual TLS, the partner's certificate checked by PKI against
/// the partner domain.
pub fn domain_secured(partner: Domain) -> TlsRequirement {
    TlsRequirement {
        encryption: Encryption::Required,
        peer: PeerCheck::Pki { name: Some(partner) },
        client_certificate: ClientCertificate::Demanded,
    }
}

/// What `connector` demands of TLS for mail to `domain`.
pub fn send_requirement(
    connector: &SendConnector,
    domain: &Domain,
    config: &TransportConfig,
) -> TlsRequirement {
    if is_domain_secured(connector, domain, config) {
        return domain_secured(domain.clone());
    }
    if connector.ignore_starttls {
        return TlsRequirement::DANGER_PLAIN_TEXT;
    }
    if !connector.require_tls {
        return TlsRequirement::OPPORTUNISTIC;
    }
    match connector.tls_auth_level {
        None | Some(TlsAuthLevel::EncryptionOnly) => TlsRequirement {
            peer: PeerCheck::DangerAny,
            ..TlsRequirement::pki(None)
        },
        Some(TlsAuthLevel::CertificateValidation) => TlsRequirement::pki(None),
        Some(TlsAuthLevel::DomainValidation) => TlsRequirement::pki(Some(
            connector.tls_domain.clone().unwrap_or_else(|| domain.clone()),
        )),
    }
}

/// What `connector` offers and asks of TLS on every one of its bindings.
pub fn receive_requirement(connector: &ReceiveConnector) -> TlsRequirement {
    if !connector.auth_mechanism.contains(&AuthMechanism::Tls) {
        // Validation refuses `require_tls` without TLS among the mechanisms.
        return TlsRequirement::DANGER_PLAIN_TEXT;
    }
    let encryption = if connector.require_tls {
        Encryption::Required
    } else {
        Encryption::Opportunistic
    };
    let org_only = connector
        .permission_groups
        .iter()
        .all(|g| *g == PermissionGroup::OrgServers);
    if org_only {
        TlsRequirement {
            encryption,
            ..TlsRequirement::ORGANISATION
        }
    } else {
        TlsRequirement {
            encryption,
            ..TlsRequirement::OPPORTUNISTIC
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use postern_model::AddressSpace;

    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    fn send_connector() -> SendConnector {
        SendConnector::new("Internet", vec![AddressSpace::parse("*;100").unwrap()])
    }

    fn receive_connector(groups: Vec<PermissionGroup>, tls: bool, require_tls: bool) -> ReceiveConnector {
        ReceiveConnector {
            name: "Default".into(),
            bindings: vec!["127.0.0.1:25".into()],
            remote_ip_ranges: Vec::new(),
            auth_mechanism: if tls { vec![AuthMechanism::Tls] } else { Vec::new() },
            permission_groups: groups,
            require_tls,
            domain_secure_enabled: false,
            fqdn: None,
            protocol_logging_level: Default::default(),
            max_message_size: None,
            dmarc_enforcement: Default::default(),
            limits: Default::default(),
        }
    }

    /// Every send-connector setting and the requirement it gives.
    #[test]
    fn send_table() {
        let partner = d("northwindtraders.com");
        let other = d("fabrikam.com");
        let config = TransportConfig {
            tls_send_domain_secure_list: vec![partner.clone()],
            ..TransportConfig::default()
        };
        let encryption_only = TlsRequirement {
            encryption: Encryption::Required,
            peer: PeerCheck::DangerAny,
            client_certificate: ClientCertificate::Asked,
        };
        type Setting = fn(&mut SendConnector);
        let table: Vec<(&str, Setting, &Domain, TlsRequirement)> = vec![
            ("default", |_| {}, &other, TlsRequirement::OPPORTUNISTIC),
            (
                "partner listed, domain security off",
                |_| {},
                &partner,
                TlsRequirement::OPPORTUNISTIC,
            ),
            (
                "domain security, partner",
                |c| c.domain_secure_enabled = true,
                &partner,
                domain_secured(partner.clone()),
            ),
            (
                "domain security, not a partner",
                |c| c.domain_secure_enabled = true,
                &other,
                TlsRequirement::OPPORTUNISTIC,
            ),
            (
                "domain security wins over require-tls",
                |c| {
                    c.domain_secure_enabled = true;
                    c.require_tls = true;
                },
                &partner,
                domain_secured(partner.clone()),
            ),
            (
                "ignore-starttls",
                |c| c.ignore_starttls = true,
                &other,
                TlsRequirement::DANGER_PLAIN_TEXT,
            ),
            (
                "require-tls",
                |c| c.require_tls = true,
                &other,
                encryption_only.clone(),
            ),
            (
                "require-tls, encryption only",
                |c| {
                    c.require_tls = true;
                    c.tls_auth_level = Some(TlsAuthLevel::EncryptionOnly);
                },
                &other,
                encryption_only.clone(),
            ),
            (
                "require-tls, certificate validation",
                |c| {
                    c.require_tls = true;
                    c.tls_auth_level = Some(TlsAuthLevel::CertificateValidation);
                },
                &other,
                TlsRequirement::pki(None),
            ),
            (
                "require-tls, domain validation, no TLS domain",
                |c| {
                    c.require_tls = true;
                    c.tls_auth_level = Some(TlsAuthLevel::DomainValidation);
                },
                &other,
                TlsRequirement::pki(Some(other.clone())),
            ),
            (
                "require-tls, domain validation, TLS domain",
                |c| {
                    c.require_tls = true;
                    c.tls_auth_level = Some(TlsAuthLevel::DomainValidation);
                    c.tls_domain = Some(Domain::parse("mx.fabrikam.com").unwrap());
                },
                &other,
                TlsRequirement::pki(Some(d("mx.fabrikam.com"))),
            ),
        ];
        for (name, set, domain, want) in table {
            let mut c = send_connector();
            set(&mut c);
            assert_eq!(send_requirement(&c, domain, &config), want, "{name}");
        }
        let secured = domain_secured(partner.clone());
        assert_eq!(secured.pki_name(), Some(&partner));
        assert!(secured.presents_client_certificate());
        assert!(secured.authenticates_server());
    }

    /// Every receive-connector TLS setting and the requirement it gives
    /// (what used to be `ClientAuth`, `offer_starttls`, `require_tls`).
    #[test]
    fn receive_table() {
        use PermissionGroup::{Anonymous, OrgServers, Partners};
        let asked_of_anyone = |encryption| TlsRequirement {
            encryption,
            peer: PeerCheck::DangerAny,
            client_certificate: ClientCertificate::Asked,
        };
        let direct_trust = |encryption| TlsRequirement {
            encryption,
            peer: PeerCheck::DirectTrust,
            client_certificate: ClientCertificate::Demanded,
        };
        let table = [
            // (groups, tls among the mechanisms, require_tls) → requirement
            (vec![Anonymous], false, false, TlsRequirement::DANGER_PLAIN_TEXT),
            (vec![OrgServers], false, false, TlsRequirement::DANGER_PLAIN_TEXT),
            (
                vec![Anonymous],
                true,
                false,
                asked_of_anyone(Encryption::Opportunistic),
            ),
            (
                vec![Anonymous, Partners, OrgServers],
                true,
                false,
                TlsRequirement::OPPORTUNISTIC,
            ),
            (vec![Anonymous], true, true, asked_of_anyone(Encryption::Required)),
            (
                vec![OrgServers],
                true,
                false,
                direct_trust(Encryption::Opportunistic),
            ),
            (vec![OrgServers], true, true, TlsRequirement::ORGANISATION),
        ];
        for (groups, tls, require_tls, want) in table {
            let c = receive_connector(groups.clone(), tls, require_tls);
            assert_eq!(
                receive_requirement(&c),
                want,
                "{groups:?} tls={tls} require_tls={require_tls}"
            );
        }
    }
}
