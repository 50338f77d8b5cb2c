//! The DNSSEC-validating resolver DANE stands on (hickory with
//! `dnssec-ring`): whether a destination's MX answer is signed, and the
//! validated TLSA records of an MX host (`_PORT._tcp.HOST`, RFC 7672 §2.2).
//!
//! The trust anchor is the root's by default; labs and tests give a file
//! of DNSKEY records (their own signed zone's keys) instead.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{RData, Record};
use postern_model::Domain;

use crate::dns::{DnsConfig, DnsError, build, fqdn};
use crate::internet_tls::dane::{Tlsa, TlsaSet};
use crate::internet_tls::policy::DaneFacts;

/// Where DNSSEC validation starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustAnchor {
    /// The root zone's keys built into hickory (the Internet).
    Root,
    /// A file of DNSKEY records in zone-file syntax (a lab's own zone).
    File(PathBuf),
}

/// Whether a destination's MX answer can be trusted for DANE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxSecurity {
    /// Validated (RFC 7672 §2.2.1: DANE applies).
    Secure,
    /// Unsigned: DANE does not apply to this destination.
    Insecure,
    /// Failed validation or could not be looked up.
    Bogus(String),
}

/// A validating resolver; cheap to clone.
#[derive(Clone)]
pub struct DaneResolver {
    resolver: TokioResolver,
    limit: Duration,
}

impl std::fmt::Debug for DaneResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaneResolver").finish_non_exhaustive()
    }
}

impl DaneResolver {
    /// A resolver asking `config`'s servers and validating from `anchor`.
    pub fn new(config: &DnsConfig, anchor: &TrustAnchor) -> Result<Self, DnsError> {
        let anchors = match anchor {
            TrustAnchor::Root => TrustAnchors::default(),
            TrustAnchor::File(path) => TrustAnchors::from_file(path)
                .map_err(|e| DnsError::Unavailable(format!("DNSSEC trust anchor {}: {e}", path.display())))?,
        };
        let anchors = Arc::new(anchors);
        let (resolver, limit) = build(config, move |mut builder| {
            builder.options_mut().validate = true;
            builder.with_trust_anchor(anchors)
        })?;
        Ok(Self { resolver, limit })
    }

    /// Whether the MX RRset of `domain` validates (an implicit MX: its
    /// address records).
    pub async fn mx_security(&self, domain: &Domain) -> MxSecurity {
        let name = fqdn(domain.as_str());
        let mx = tokio::time::timeout(self.limit, self.resolver.mx_lookup(name.as_str())).await;
        let answer = match mx {
            Err(_) => return MxSecurity::Bogus(format!("MX lookup for {domain} timed out")),
            Ok(Ok(lookup)) => Ok(proof_of(lookup.answers())),
            Ok(Err(e)) => negative(&e),
        };
        match answer {
            Ok(Some(Proof::Secure)) => MxSecurity::Secure,
            Ok(Some(Proof::Bogus)) => MxSecurity::Bogus(format!("MX of {domain} failed DNSSEC validation")),
            Err(Negative::Bogus(why)) => MxSecurity::Bogus(why),
            // Validated: no MX; the domain is its own mail host and its
            // addresses decide.
            Err(Negative::Secure) => self.address_security(domain, &name).await,
            Ok(_) | Err(Negative::Insecure) => MxSecurity::Insecure,
        }
    }

    async fn address_security(&self, domain: &Domain, name: &str) -> MxSecurity {
        match tokio::time::timeout(self.limit, self.resolver.lookup_ip(name)).await {
            Err(_) => MxSecurity::Bogus(format!("address lookup for {domain} timed out")),
            Ok(Ok(found)) => match proof_of(found.as_lookup().answers()) {
                Some(Proof::Secure) => MxSecurity::Secure,
                Some(Proof::Bogus) => MxSecurity::Bogus(format!("address of {domain} is bogus")),
                _ => MxSecurity::Insecure,
            },
            Ok(Err(e)) => match negative(&e) {
                Err(Negative::Bogus(why)) => MxSecurity::Bogus(why),
                _ => MxSecurity::Insecure,
            },
        }
    }

    /// The DANE facts of `host` on `port`: its validated TLSA records.
    pub async fn tlsa(&self, host: &str, port: u16) -> DaneFacts {
        let name = fqdn(&format!("_{port}._tcp.{host}"));
        let lookup = tokio::time::timeout(self.limit, self.resolver.tlsa_lookup(name.as_str())).await;
        match lookup {
            Err(_) => DaneFacts::Bogus(format!("TLSA lookup for {name} timed out")),
            Ok(Ok(lookup)) => {
                let answers = lookup.answers();
                match proof_of(answers) {
                    Some(Proof::Secure) => {
                        let records = answers
                            .iter()
                            .filter_map(|r| match &r.data {
                                RData::TLSA(t) => Some(Tlsa {
                                    usage: t.cert_usage.into(),
                                    selector: t.selector.into(),
                                    matching: t.matching.into(),
                                    data: t.cert_data.clone(),
                                }),
                                _ => None,
                            })
                            .collect::<Vec<_>>();
                        if records.is_empty() {
                            DaneFacts::SecureNone
                        } else {
                            DaneFacts::Secure(Arc::new(TlsaSet::new(records)))
                        }
                    }
                    Some(Proof::Bogus) => {
                        DaneFacts::Bogus(format!("TLSA of {name} failed DNSSEC validation"))
                    }
                    _ => DaneFacts::Insecure,
                }
            }
            Ok(Err(e)) => match negative(&e) {
                Err(Negative::Secure) => DaneFacts::SecureNone,
                Err(Negative::Insecure) | Ok(_) => DaneFacts::Insecure,
                Err(Negative::Bogus(why)) => DaneFacts::Bogus(why),
            },
        }
    }
}

/// A negative or failed answer, sorted.
enum Negative {
    /// Validated: the records do not exist.
    Secure,
    /// Not validated (unsigned zone).
    Insecure,
    /// Failed validation, or the lookup failed.
    Bogus(String),
}

/// The weakest proof among `records` (`None` when empty).
fn proof_of(records: &[Record]) -> Option<Proof> {
    records.iter().map(|r| r.proof).min_by_key(|p| match p {
        Proof::Bogus => 0,
        Proof::Indeterminate => 1,
        Proof::Insecure => 2,
        Proof::Secure => 3,
    })
}

/// Sorts a failed lookup. `Ok(())` never happens; the `Result` shape lets
/// callers share arms with positive answers.
fn negative(e: &NetError) -> Result<Option<Proof>, Negative> {
    match e {
        NetError::Dns(HickoryDnsError::DnssecBogus) => {
            Err(Negative::Bogus("DNSSEC validation failed".into()))
        }
        NetError::Dns(HickoryDnsError::Nsec { proof, .. }) => match proof {
            Proof::Secure => Err(Negative::Secure),
            Proof::Bogus => Err(Negative::Bogus(
                "the denial of existence failed DNSSEC validation".into(),
            )),
            Proof::Insecure | Proof::Indeterminate => Err(Negative::Insecure),
        },
        NetError::Dns(HickoryDnsError::NoRecordsFound(no)) => {
            let proof = no.authorities.as_deref().and_then(proof_of);
            match proof {
                Some(Proof::Secure) => Err(Negative::Secure),
                Some(Proof::Bogus) => Err(Negative::Bogus("the denial of existence is bogus".into())),
                _ => Err(Negative::Insecure),
            }
        }
        other => Err(Negative::Bogus(format!("lookup failed: {other}"))),
    }
}
