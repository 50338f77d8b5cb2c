//! MX routing: where mail for a domain goes, asked of DNS at delivery time.
//!
//! [`MxResolver`] wraps a hickory resolver built from a [`DnsConfig`]: the
//! system's `/etc/resolv.conf`, or name servers of the configuration's own
//! (labs and tests point it at their DNS server). It answers two questions:
//!
//! * [`MxResolver::next_hosts`]: the mail exchangers of a domain in the
//!   order to try them (RFC 5321 §5.1): MX records by preference, equal
//!   preferences shuffled; the domain itself when it has no MX but has an
//!   address ("implicit MX"); a permanent failure for a null MX (RFC 7505)
//!   and for a domain that does not exist. The hosts are *names*, so the
//!   client checks a PKI certificate against the MX host name (unless the
//!   hop's TLS requirement names another);
//! * [`MxResolver::lookup_addrs`]: the A/AAAA addresses of one of those
//!   names, asked of the same name servers; the client uses it for hops
//!   routed by MX (see [`crate::client::Connector::with_resolver`]).
//!
//! [`DnsError::outcome`] is the one place DNS failures become delivery
//! outcomes: transient for time-outs and server failures, permanent for
//! NXDOMAIN, a null MX, and a domain with neither MX nor address.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, ResolverBuilder, TokioResolver};
use postern_model::Domain;
use rand::seq::SliceRandom;

use crate::queue::DeliveryOutcome;
use crate::routing::HostPort;

/// How long one DNS query waits unless configured otherwise.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// The port MTA-STS policies are fetched from.
pub const MTA_STS_PORT: u16 = 443;

/// Which name servers to ask, and which DNS-based TLS policies to honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers (UDP, TCP on truncation or error); empty: the system's
    /// (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// How long one query waits for an answer.
    pub timeout: Duration,
    /// DANE (RFC 7672): validate DNSSEC from this trust anchor and honour
    /// TLSA records of MX hosts; `None`: DANE is off.
    pub dane_trust_anchor: Option<crate::internet_tls::TrustAnchor>,
    /// MTA-STS (RFC 8461): the HTTPS port policies are fetched from (443
    /// on the Internet); `None`: MTA-STS is off.
    pub mta_sts_port: Option<u16>,
}

impl Default for DnsConfig {
    /// The system's name servers, [`DEFAULT_DNS_TIMEOUT`], DANE off,
    /// MTA-STS on.
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout: DEFAULT_DNS_TIMEOUT,
            dane_trust_anchor: None,
            mta_sts_port: Some(MTA_STS_PORT),
        }
    }
}

/// Why a domain's mail exchangers could not be found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The domain publishes a null MX (`0 .`, RFC 7505): it accepts no mail.
    #[error("{0} publishes a null MX: it accepts no mail")]
    NullMx(Domain),
    /// The domain does not exist (NXDOMAIN).
    #[error("{0} does not exist (NXDOMAIN)")]
    NoSuchDomain(Domain),
    /// The domain exists but has neither MX nor A/AAAA records.
    #[error("{0} has no MX and no address")]
    NoMailHost(Domain),
    /// No answer in time.
    #[error("DNS lookup for {0} timed out")]
    Timeout(Domain),
    /// SERVFAIL, REFUSED, an unreachable name server or another failure
    /// that may pass.
    #[error("DNS lookup for {domain} failed: {reason}")]
    Failed {
        /// The domain asked about.
        domain: Domain,
        /// What went wrong.
        reason: String,
    },
    /// No resolver could be built (no usable `/etc/resolv.conf`).
    #[error("no DNS resolver: {0}")]
    Unavailable(String),
}

impl DnsError {
    /// Whether retrying cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DnsError::NullMx(_) | DnsError::NoSuchDomain(_) | DnsError::NoMailHost(_)
        )
    }

    /// The outcome of every recipient routed through the failed lookup.
    pub fn outcome(&self) -> DeliveryOutcome {
        match self {
            DnsError::NullMx(_) => DeliveryOutcome::PermanentFailure(format!("556 5.1.10 {self}")),
            DnsError::NoSuchDomain(_) | DnsError::NoMailHost(_) => {
                DeliveryOutcome::PermanentFailure(format!("550 5.1.2 {self}"))
            }
            DnsError::Timeout(_) | DnsError::Failed { .. } | DnsError::Unavailable(_) => {
                DeliveryOutcome::TransientFailure(format!("451 4.4.3 {self}"))
            }
        }
    }
}

/// Resolves mail exchangers and their addresses; cheap to clone (the
/// resolver and its cache are shared).
#[derive(Clone)]
pub struct MxResolver {
    resolver: TokioResolver,
    /// Overall limit of one lookup (hickory retries inside it).
    limit: Duration,
}

impl std::fmt::Debug for MxResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MxResolver")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// What a lookup of one name and type came to.
enum Answer<T> {
    Found(T),
    /// The name exists without records of the type (NODATA).
    NoData,
    /// The name does not exist.
    NxDomain,
}

impl MxResolver {
    /// A resolver asking `config.servers`, or the system's name servers
    /// when that is empty. `Err` (`Unavailable`) when the system
    /// configuration cannot be read.
    pub fn new(config: &DnsConfig) -> Result<Self, DnsError> {
        let (resolver, limit) = build(config, |b| b)?;
        Ok(Self { resolver, limit })
    }

    /// The underlying hickory resolver (its cache and name servers), for
    /// the message-authentication checks.
    pub fn hickory(&self) -> &TokioResolver {
        &self.resolver
    }

    /// The hosts to try for mail to `domain`, each on `port`: its MX hosts
    /// by preference (equal preferences in random order), or the domain
    /// itself when it has no MX records but has an address.
    pub async fn next_hosts(&self, domain: &Domain, port: u16) -> Result<Vec<HostPort>, DnsError> {
        let name = fqdn(domain.as_str());
        let records = match self.query(domain, self.resolver.mx_lookup(name.as_str())).await? {
            Answer::NxDomain => return Err(DnsError::NoSuchDomain(domain.clone())),
            Answer::NoData => None,
            Answer::Found(lookup) => Some(lookup),
        };
        let mut mx: Vec<(u16, String)> = Vec::new();
        for record in records.iter().flat_map(|l| l.answers()) {
            if let RData::MX(data) = &record.data {
                if data.exchange.is_root() {
                    return Err(DnsError::NullMx(domain.clone()));
                }
                let host = data.exchange.to_ascii();
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                if !mx.iter().any(|(_, h)| *h == host) {
                    mx.push((data.preference, host));
                }
            }
        }
        if mx.is_empty() {
            // RFC 5321 §5.1: no MX, the domain itself is the implicit MX.
            return match self.addrs_of(domain, &name).await? {
                Answer::NxDomain => Err(DnsError::NoSuchDomain(domain.clone())),
                Answer::Found(addrs) if !addrs.is_empty() => Ok(vec![HostPort {
                    host: domain.as_str().to_owned(),
                    port,
                }]),
                Answer::Found(_) | Answer::NoData => Err(DnsError::NoMailHost(domain.clone())),
            };
        }
        Ok(order(mx, &mut rand::thread_rng())
            .into_iter()
            .map(|host| HostPort { host, port })
            .collect())
    }

    /// The addresses of `host` (an IP literal is its own address), each on
    /// `port`.
    pub async fn lookup_addrs(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let domain = Domain::parse(bare)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{bare}: {e}")))?;
        match self.addrs_of(&domain, &fqdn(bare)).await {
            Ok(Answer::Found(addrs)) if !addrs.is_empty() => {
                Ok(addrs.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
            }
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{bare} has no address"),
            )),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    /// The TXT records of `name` (each one's strings joined); empty when
    /// there are none or the lookup failed.
    pub async fn txt(&self, name: &str) -> Vec<String> {
        let name = fqdn(name);
        match tokio::time::timeout(self.limit, self.resolver.txt_lookup(name.as_str())).await {
            Ok(Ok(lookup)) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => Some(
                        txt.txt_data
                            .iter()
                            .map(|part| String::from_utf8_lossy(part).into_owned())
                            .collect(),
                    ),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A and AAAA records of `name` (`domain` names it in errors).
    async fn addrs_of(&self, domain: &Domain, name: &str) -> Result<Answer<Vec<IpAddr>>, DnsError> {
        match self.query(domain, self.resolver.lookup_ip(name)).await? {
            Answer::Found(found) => Ok(Answer::Found(found.iter().collect())),
            Answer::NoData => Ok(Answer::NoData),
            Answer::NxDomain => Ok(Answer::NxDomain),
        }
    }

    /// Runs one lookup under the overall limit and sorts its failures.
    async fn query<T>(
        &self,
        domain: &Domain,
        lookup: impl Future<Output = Result<T, NetError>>,
    ) -> Result<Answer<T>, DnsError> {
        match tokio::time::timeout(self.limit, lookup).await {
            Err(_) => Err(DnsError::Timeout(domain.clone())),
            Ok(Ok(found)) => Ok(Answer::Found(found)),
            Ok(Err(e)) if e.is_nx_domain() => Ok(Answer::NxDomain),
            Ok(Err(e)) if e.is_no_records_found() => Ok(Answer::NoData),
            Ok(Err(NetError::Timeout)) => Err(DnsError::Timeout(domain.clone())),
            Ok(Err(e)) => Err(DnsError::Failed {
                domain: domain.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// A hickory resolver asking `config.servers` (the system's name servers
/// when empty), after `adjust` has seen its builder (the DNSSEC resolver
/// adds its trust anchor), and the overall limit of one lookup.
pub(crate) fn build(
    config: &DnsConfig,
    adjust: impl FnOnce(ResolverBuilder<TokioRuntimeProvider>) -> ResolverBuilder<TokioRuntimeProvider>,
) -> Result<(TokioResolver, Duration), DnsError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if config.servers.is_empty() {
        Resolver::builder(provider).map_err(|e| DnsError::Unavailable(e.to_string()))?
    } else {
        let servers = config
            .servers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut builder = Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider);
        // The configured servers are the whole truth (labs, tests).
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        builder
    };
    let options: &mut ResolverOpts = builder.options_mut();
    options.timeout = config.timeout;
    options.try_tcp_on_error = true;
    let attempts = options.attempts.max(1);
    let resolver = adjust(builder)
        .build()
        .map_err(|e| DnsError::Unavailable(e.to_string()))?;
    let limit = config
        .timeout
        .saturating_mul(u32::try_from(attempts + 1).unwrap_or(4));
    Ok((resolver, limit))
}

/// `name` as a fully qualified name, so no search domain is appended.
pub(crate) fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}

/// Hosts by ascending preference, each group of equal preference shuffled
/// (RFC 5321 §5.1 spreads load across equal exchangers).
fn order(mut mx: Vec<(u16, String)>, rng: &mut impl rand::Rng) -> Vec<String> {
    mx.shuffle(rng);
    // A stable sort keeps the shuffled order within one preference.
    mx.sort_by_key(|(preference, _)| *preference);
    mx.into_iter().map(|(_, host)| host).collect()
}

/// A shared resolver, or `None` (logged) when none can be built.
pub fn shared_resolver(config: &DnsConfig) -> Option<Arc<MxResolver>> {
    match MxResolver::new(config) {
        Ok(resolver) => Some(Arc::new(resolver)),
        Err(e) => {
            tracing::error!(error = %e, "no DNS resolver: hops routed by MX will be deferred");
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests;
