//! Internet mail as secure as partner mail: what each hop must prove.
//!
//! For a hop routed by MX the client asks [`InternetTls`] for each host's
//! [`HostPolicy`] before connecting: domain security for listed partners,
//! then DANE ([`dane`], [`dnssec`]), then MTA-STS ([`mta_sts`],
//! [`sts_fetch`]), then the connector's own settings ([`policy::resolve`]
//! decides). Outcomes are counted per policy domain and result for TLS
//! reporting ([`report`], RFC 8460). Other hops (smart hosts, the
//! organisation) keep the connector's TLS.

pub mod admin;
pub mod dane;
pub mod dnssec;
pub mod mta_sts;
pub mod policy;
pub mod publish;
pub mod report;
pub mod rpt;
pub mod sts_fetch;

use std::sync::Arc;

use postern_model::Domain;

pub use dnssec::{DaneResolver, MxSecurity, TrustAnchor};
pub use policy::{DaneFacts, HostFacts, HostPolicy, PolicyRefusal, PolicySource, StsFacts};
pub use report::{FailureKind, PolicyKind, TlsCounters};
pub use sts_fetch::StsSource;

use crate::domain_security::is_domain_secured_hop;
use crate::routing::{HostPort, SmtpHop};
use crate::tls::Encryption;

/// The node's Internet TLS machinery; shared by every connection.
#[derive(Clone, Default)]
pub struct InternetTls {
    /// The validating resolver; `None`: DANE is off on this node.
    pub dane: Option<DaneResolver>,
    /// MTA-STS policies (fetched, cached); `None`: MTA-STS is off.
    pub sts: Option<StsSource>,
    /// Today's TLS-RPT counters.
    pub counters: Arc<TlsCounters>,
}

/// A node's DNS-based TLS settings (flags of `postern edge|hub run`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTlsOptions {
    /// DANE's DNSSEC trust anchor; `None`: DANE is off.
    pub dane_trust_anchor: Option<TrustAnchor>,
    /// The HTTPS port MTA-STS policies are fetched from; `None`: MTA-STS is off.
    pub mta_sts_port: Option<u16>,
    /// Where an edge serves the organisation's own MTA-STS policy over
    /// HTTPS (`0.0.0.0:443`); `None`: not served.
    pub mta_sts_bind: Option<std::net::SocketAddr>,
}

impl Default for NodeTlsOptions {
    /// DANE off (it needs a validating view of DNS), MTA-STS on port 443.
    fn default() -> Self {
        Self {
            dane_trust_anchor: None,
            mta_sts_port: Some(crate::dns::MTA_STS_PORT),
            mta_sts_bind: None,
        }
    }
}

/// What is known about one destination domain before its hosts are tried.
#[derive(Clone, Debug)]
pub struct DestinationFacts {
    /// The recipient domain (the TLS-RPT policy domain).
    pub domain: Domain,
    /// Whether the hop is domain-secured.
    pub domain_secured: bool,
    /// Whether DANE applies (the MX answer validated), or why not.
    pub mx: Option<MxSecurity>,
    /// The domain's MTA-STS policy.
    pub sts: StsFacts,
}

impl std::fmt::Debug for InternetTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternetTls")
            .field("dane", &self.dane.is_some())
            .field("sts", &self.sts.is_some())
            .finish()
    }
}

impl InternetTls {
    /// The facts of `hop`'s destination; `None` for hops not routed by MX.
    pub async fn destination(&self, hop: &SmtpHop) -> Option<DestinationFacts> {
        let domain = hop.mx_domain.clone()?;
        let domain_secured = is_domain_secured_hop(hop);
        if domain_secured || hop.tls.encryption == Encryption::DangerNever {
            return Some(DestinationFacts {
                domain,
                domain_secured,
                mx: None,
                sts: StsFacts::None,
            });
        }
        let mx = match &self.dane {
            Some(dane) => Some(dane.mx_security(&domain).await),
            None => None,
        };
        let sts = match &self.sts {
            Some(sts) => sts.facts(&domain, &self.counters).await,
            None => StsFacts::None,
        };
        Some(DestinationFacts {
            domain,
            domain_secured,
            mx,
            sts,
        })
    }

    /// The policy of one host of a destination.
    pub async fn host_policy(
        &self,
        dest: &DestinationFacts,
        hop: &SmtpHop,
        host: &HostPort,
    ) -> Result<HostPolicy, PolicyRefusal> {
        let dane = match (&self.dane, &dest.mx) {
            (Some(resolver), Some(MxSecurity::Secure)) => resolver.tlsa(&host.host, host.port).await,
            (_, Some(MxSecurity::Bogus(why))) => DaneFacts::Bogus(why.clone()),
            (_, Some(MxSecurity::Insecure)) => DaneFacts::Insecure,
            _ => DaneFacts::NotLooked,
        };
        policy::resolve(&HostFacts {
            connector_tls: &hop.tls,
            domain_secured: dest.domain_secured,
            host: &host.host,
            dane,
            sts: dest.sts.clone(),
        })
    }
}
