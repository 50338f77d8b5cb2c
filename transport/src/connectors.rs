//! Send connectors as routing uses them: choosing the connector for a
//! domain (most specific address space, then lowest cost), the SMTP hop it
//! stands for (its TLS requirement decided by `domain_security::requirement`, DESIGN §6),
//! and the rules that refuse contradictory settings when they are set.
//! Pure functions, table-tested.

use postern_model::{Domain, NodeName, SendConnector, TransportConfig};

use crate::domain_security::send_requirement;
use crate::routing::{HostPort, NextHop, SmtpHop};

/// The connector that serves `domain` for node `source` (an edge name;
/// connectors without source edges serve hubs, `None`): enabled, with an
/// address space matching the domain; the most specific space wins, then
/// the lowest cost, then the name.
pub fn best_connector<'a>(
    connectors: &'a [SendConnector],
    domain: &Domain,
    source: Option<&NodeName>,
) -> Option<&'a SendConnector> {
    connectors
        .iter()
        .filter(|c| c.enabled)
        .filter(|c| match source {
            Some(edge) => c.source_edges.contains(edge),
            None => c.source_edges.is_empty(),
        })
        .filter_map(|c| {
            c.address_spaces
                .iter()
                .filter(|s| s.pattern.matches(domain))
                .map(|s| (s.pattern.specificity(), std::cmp::Reverse(s.cost)))
                .max()
                .map(|rank| (rank, c))
        })
        .max_by(|(a, ca), (b, cb)| a.cmp(b).then_with(|| cb.name.cmp(&ca.name)))
        .map(|(_, c)| c)
}

/// The next hop of mail to `domain` through `connector`. The domain is
/// part of the hop when routing resolves it (DNS) or when the connector's
/// TLS may depend on it (domain security applies per domain: without it in
/// the hop, a smart-host connector could not tell a domain of the send
/// list from any other and would send opportunistically).
pub fn connector_next_hop(connector: &SendConnector, domain: &Domain) -> NextHop {
    if connector.dns_routing_enabled || connector.domain_secure_enabled {
        NextHop::connector(&connector.name, Some(domain.clone()))
    } else {
        // Smart hosts: every domain shares one hop (and its back-off).
        NextHop::connector(&connector.name, None)
    }
}

/// The SMTP hop `connector` stands for, for mail to `domain`.
pub fn connector_hop(
    connector: &SendConnector,
    domain: &Domain,
    config: &TransportConfig,
    node_fqdn: &Domain,
) -> SmtpHop {
    let hosts = if connector.dns_routing_enabled {
        // Resolved by MX at delivery time; the domain itself is the
        // implicit-MX fallback.
        vec![HostPort {
            host: domain.to_string(),
            port: connector.port,
        }]
    } else {
        connector
            .smart_hosts
            .iter()
            .map(|h| parse_host(h, connector.port))
            .collect()
    };
    SmtpHop {
        key: connector_next_hop(connector, domain),
        hosts,
        tls: send_requirement(connector, domain, config),
        helo: connector.fqdn.clone().unwrap_or_else(|| node_fqdn.clone()),
        protocol_logging_level: connector.protocol_logging_level,
        mx_domain: connector.dns_routing_enabled.then(|| domain.clone()),
        connector: Some(connector.name.clone()),
    }
}

/// `host`, `host:port`, `[v6]:port` or a bare v6 address.
pub fn parse_host(text: &str, default_port: u16) -> HostPort {
    let text = text.trim();
    if let Some((host, port)) = text.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        let port = port.trim_start_matches(':').parse().unwrap_or(default_port);
        return HostPort {
            host: host.to_owned(),
            port,
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => HostPort {
            host: host.to_owned(),
            port: port.parse().unwrap_or(default_port),
        },
        _ => HostPort {
            host: text.to_owned(),
            port: default_port,
        },
    }
}

/// Exchange's rules for send connectors, checked when they are set.
pub fn validate_send_connector(c: &SendConnector) -> Result<(), String> {
    let name = &c.name;
    if name.trim().is_empty() {
        return Err("a send connector needs a name".into());
    }
    if c.address_spaces.is_empty() && !name.starts_with("EdgeSync - ") {
        return Err(format!(
            "send connector {name:?} needs at least one address space (e.g. \"*;100\")"
        ));
    }
    if !c.dns_routing_enabled && c.smart_hosts.is_empty() {
        return Err(format!(
            "send connector {name:?} routes by smart hosts but has none: give --smart-hosts or --dns-routing-enabled"
        ));
    }
    if c.ignore_starttls && c.require_tls {
        return Err(format!(
            "send connector {name:?}: --ignore-starttls contradicts --require-tls"
        ));
    }
    if c.ignore_starttls && c.domain_secure_enabled {
        return Err(format!(
            "send connector {name:?}: domain security needs STARTTLS, so it cannot be enabled with --ignore-starttls"
        ));
    }
    if c.domain_secure_enabled && !c.dns_routing_enabled && c.tls_domain.is_none() {
        return Err(format!(
            "send connector {name:?}: domain security needs DNS routing or a --tls-domain naming the smart host's certificate"
        ));
    }
    if c.tls_auth_level.is_some() && !c.require_tls {
        return Err(format!(
            "send connector {name:?}: --tls-auth-level applies only with --require-tls"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use postern_model::{AddressSpace, TlsAuthLevel};

    use super::*;

    fn connector(name: &str, spaces: &[&str]) -> SendConnector {
        SendConnector::new(
            name,
            spaces.iter().map(|s| AddressSpace::parse(s).unwrap()).collect(),
        )
    }

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn most_specific_space_then_lowest_cost() {
        let all = [
            connector("Internet", &["*;100"]),
            connector("Partners", &["northwindtraders.com;10"]),
            connector("Partners-cheap", &["northwindtraders.com;5"]),
            connector("Sub", &["*.contoso.com;1"]),
        ];
        let pick = |domain: &str| best_connector(&all, &d(domain), None).map(|c| c.name.as_str());
        assert_eq!(pick("northwindtraders.com"), Some("Partners-cheap"));
        assert_eq!(pick("fabrikam.com"), Some("Internet"));
        assert_eq!(pick("mail.contoso.com"), Some("Sub"));
        let edge = NodeName::parse("edge1").unwrap();
        assert_eq!(
            best_connector(&all, &d("fabrikam.com"), Some(&edge)),
            None,
            "edges use only their connectors"
        );
        let mut disabled = all.clone();
        disabled[2].enabled = false;
        assert_eq!(
            best_connector(&disabled, &d("northwindtraders.com"), None).map(|c| c.name.as_str()),
            Some("Partners")
        );
    }

    #[test]
    fn contradictions_are_refused_with_the_reason() {
        let mut c = connector("Internet", &["*;100"]);
        assert!(validate_send_connector(&c).is_ok());
        c.ignore_starttls = true;
        c.domain_secure_enabled = true;
        assert!(
            validate_send_connector(&c)
                .unwrap_err()
                .contains("needs STARTTLS")
        );
        c.ignore_starttls = false;
        c.dns_routing_enabled = false;
        c.smart_hosts = vec!["relay.example".into()];
        assert!(
            validate_send_connector(&c)
                .unwrap_err()
                .contains("DNS routing or a --tls-domain")
        );
        c.domain_secure_enabled = false;
        c.tls_auth_level = Some(TlsAuthLevel::CertificateValidation);
        assert!(
            validate_send_connector(&c)
                .unwrap_err()
                .contains("only with --require-tls")
        );
        c.require_tls = true;
        assert!(validate_send_connector(&c).is_ok());
        c.ignore_starttls = true;
        assert!(validate_send_connector(&c).unwrap_err().contains("contradicts"));
    }

    #[test]
    fn hosts_parse() {
        assert_eq!(
            parse_host("relay.example", 25),
            HostPort {
                host: "relay.example".into(),
                port: 25
            }
        );
        assert_eq!(
            parse_host("relay.example:587", 25),
            HostPort {
                host: "relay.example".into(),
                port: 587
            }
        );
        assert_eq!(
            parse_host("[::1]:2525", 25),
            HostPort {
                host: "::1".into(),
                port: 2525
            }
        );
        assert_eq!(
            parse_host("::1", 25),
            HostPort {
                host: "::1".into(),
                port: 25
            }
        );
        let mut c = connector("Internet", &["*;100"]);
        let hop = connector_next_hop(&c, &d("fabrikam.com"));
        assert_eq!(hop.to_string(), "connector:internet|fabrikam.com");
        assert_eq!(hop, NextHop::connector("Internet", Some(d("fabrikam.com"))));
        // Smart hosts share one key, unless domain security makes the TLS
        // depend on the domain.
        c.dns_routing_enabled = false;
        c.smart_hosts = vec!["relay.example".into()];
        assert_eq!(
            connector_next_hop(&c, &d("fabrikam.com")).to_string(),
            "connector:internet"
        );
        c.domain_secure_enabled = true;
        assert_eq!(
            connector_next_hop(&c, &d("northwindtraders.com")),
            NextHop::connector("internet", Some(d("northwindtraders.com")))
        );
    }
}
