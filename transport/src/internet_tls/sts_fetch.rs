//! Finding a domain's MTA-STS policy (RFC 8461 §3, §5.1): the
//! `_mta-sts.<domain>` TXT record, then the policy over HTTPS from
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` (validated with the
//! public roots plus the organisation's trusted roots, no redirects), cached
//! in the node's store for its `max_age`. A cached, unexpired policy is used
//! when the record is gone or the fetch fails (§5.1), so an attacker who
//! blocks HTTPS or DNS cannot turn enforcement off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use postern_model::Domain;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::dns::{DnsConfig, DnsError, MxResolver, build, fqdn};
use crate::internet_tls::mta_sts::{MtaStsMode, MtaStsPolicy, StsRecord};
use crate::internet_tls::policy::StsFacts;
use crate::internet_tls::report::{FailureKind, PolicyKind, TlsCounters};
use crate::tls::{ServerVerification, TrustStore, client_config};

/// The longest a policy file may be (RFC 8461 §3.3 suggests 64 KiB).
const MAX_POLICY_BYTES: usize = 64 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// The name of the store's tree.
const TREE: &str = "mta-sts-policies";

/// Why a policy could not be fetched (the publisher's side, mostly).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connecting or the TLS handshake failed.
    #[error("connecting to {0} failed: {1}")]
    Connect(String, String),
    /// The HTTP exchange failed.
    #[error("HTTP from {0} failed: {1}")]
    Http(String, String),
    /// The server answered something other than 200.
    #[error("{0} answered HTTP {1}")]
    Status(String, u16),
    /// The body is not a valid policy.
    #[error("{0}: {1}")]
    Invalid(String, crate::internet_tls::mta_sts::StsParseError),
    /// Took too long.
    #[error("fetching the policy from {0} timed out")]
    Timeout(String),
}

/// A cached policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cached {
    id: String,
    policy: MtaStsPolicy,
    /// Unix seconds when fetched.
    fetched_at: u64,
}

impl Cached {
    fn is_fresh(&self, now: u64) -> bool {
        now < self.fetched_at.saturating_add(self.policy.max_age)
    }
}

/// Fetches and caches MTA-STS policies; cheap to clone.
#[derive(Clone)]
pub struct StsSource {
    resolver: hickory_resolver::TokioResolver,
    hosts: MxResolver,
    limit: Duration,
    trust: TrustStore,
    cache: sled::Tree,
    https_port: u16,
}

impl StsSource {
    /// A source asking `dns` for records and addresses, checking HTTPS
    /// servers with `trust`'s roots, caching in `db`. `https_port` is 443
    /// on the Internet (labs and tests use another).
    pub fn new(dns: &DnsConfig, trust: TrustStore, db: &sled::Db, https_port: u16) -> Result<Self, DnsError> {
        let (resolver, limit) = build(dns, |b| b)?;
        let hosts = MxResolver::new(dns)?;
        let cache = db
            .open_tree(TREE)
            .map_err(|e| DnsError::Unavailable(format!("MTA-STS cache: {e}")))?;
        Ok(Self {
            resolver,
            hosts,
            limit,
            trust,
            cache,
            https_port,
        })
    }

    fn cached(&self, domain: &Domain) -> Option<Cached> {
        let bytes = self.cache.get(domain.as_str().as_bytes()).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    fn store(&self, domain: &Domain, cached: &Cached) {
        match serde_json::to_vec(cached) {
            Ok(bytes) => {
                if let Err(e) = self.cache.insert(domain.as_str().as_bytes(), bytes) {
                    tracing::warn!(%domain, error = %e, "cannot cache an MTA-STS policy");
                }
            }
            Err(e) => tracing::warn!(%domain, error = %e, "cannot encode an MTA-STS policy"),
        }
    }

    /// The domain's policy facts now: the cached policy while its id is
    /// current, else a fresh fetch; the cached one when that fails.
    pub async fn facts(&self, domain: &Domain, counters: &TlsCounters) -> StsFacts {
        let now = unix_now();
        let cached = self.cached(domain).filter(|c| c.is_fresh(now));
        let record = self.record(domain).await;
        let id = match record {
            Ok(Some(record)) => record.id,
            Ok(None) | Err(_) => {
                // No record (or DNS failed): a fresh cached policy still
                // applies (RFC 8461 §5.1).
                return facts_of(cached.map(|c| c.policy));
            }
        };
        if let Some(c) = &cached
            && c.id == id
        {
            return facts_of(Some(c.policy.clone()));
        }
        match self.fetch(domain).await {
            Ok(policy) => {
                self.store(
                    domain,
                    &Cached {
                        id,
                        policy: policy.clone(),
                        fetched_at: now,
                    },
                );
                facts_of(Some(policy))
            }
            Err(e) => {
                let kind = match e {
                    FetchError::Invalid(..) => FailureKind::StsPolicyInvalid,
                    _ => FailureKind::StsPolicyFetchError,
                };
                counters.failure(domain.as_str(), PolicyKind::Sts, kind, "");
                tracing::warn!(%domain, error = %e, cached = cached.is_some(), "MTA-STS policy fetch failed");
                facts_of(cached.map(|c| c.policy))
            }
        }
    }

    /// The `_mta-sts` record; `Ok(None)` when there is none (or none valid).
    async fn record(&self, domain: &Domain) -> Result<Option<StsRecord>, String> {
        let name = fqdn(&format!("_mta-sts.{domain}"));
        match tokio::time::timeout(self.limit, self.resolver.txt_lookup(name.as_str())).await {
            Err(_) => Err("TXT lookup timed out".into()),
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Ok(None),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(lookup)) => {
                let records: Vec<StsRecord> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::TXT(txt) => {
                            let text: String = txt
                                .txt_data
                                .iter()
                                .map(|part| String::from_utf8_lossy(part).into_owned())
                                .collect();
                            text.starts_with("v=STSv1").then_some(text)
                        }
                        _ => None,
                    })
                    .filter_map(|t| StsRecord::parse(&t).ok())
                    .collect();
                // More than one record: as if none (§3.1).
                Ok(match <[StsRecord; 1]>::try_from(records) {
                    Ok([one]) => Some(one),
                    Err(_) => None,
                })
            }
        }
    }

    /// Fetches the policy file over HTTPS.
    pub async fn fetch(&self, domain: &Domain) -> Result<MtaStsPolicy, FetchError> {
        let host = format!("mta-sts.{domain}");
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_inner(&host)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(host)),
        }
    }

    async fn fetch_inner(&self, host: &str) -> Result<MtaStsPolicy, FetchError> {
        let connect = |e: String| FetchError::Connect(host.to_owned(), e);
        let addrs: Vec<SocketAddr> = self
            .hosts
            .lookup_addrs(host, self.https_port)
            .await
            .map_err(|e| connect(e.to_string()))?;
        let mut tcp = None;
        for addr in addrs {
            if let Ok(stream) = TcpStream::connect(addr).await {
                tcp = Some(stream);
                break;
            }
        }
        let tcp = tcp.ok_or_else(|| connect("no address accepted the connection".into()))?;
        let config = client_config(ServerVerification::Pki, &self.trust, None);
        let name = ServerName::try_from(host.to_owned()).map_err(|e| connect(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| connect(e.to_string()))?;
        let http = |e: String| FetchError::Http(host.to_owned(), e);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| http(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let request = hyper::Request::get("/.well-known/mta-sts.txt")
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| http(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http(e.to_string()))?;
        let status = response.status().as_u16();
        if status != 200 {
            driver.abort();
            // Redirects are not followed (§3.3).
            return Err(FetchError::Status(host.to_owned(), status));
        }
        let body = Limited::new(response.into_body(), MAX_POLICY_BYTES)
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        driver.abort();
        let text = String::from_utf8_lossy(&body);
        MtaStsPolicy::parse(&text).map_err(|e| FetchError::Invalid(host.to_owned(), e))
    }
}

fn facts_of(policy: Option<MtaStsPolicy>) -> StsFacts {
    match policy {
        Some(p) if p.mode != MtaStsMode::None => StsFacts::Policy(Arc::new(p)),
        _ => StsFacts::None,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
