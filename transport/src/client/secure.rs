//! TLS-RPT counting for connections opened under an Internet TLS policy
//! (RFC 8460 §4.3 result types), and the PKI check MTA-STS `testing` mode
//! reports without enforcing.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::{CertificateError, Error};
use rustls_pki_types::{ServerName, UnixTime};

use crate::client::{ClientConnection, ClientError};
use crate::internet_tls::{
    DestinationFacts, FailureKind, HostPolicy, InternetTls, PolicyKind, PolicyRefusal, PolicySource, StsFacts,
};
use crate::routing::HostPort;
use crate::tls::{TrustStore, provider};

/// The TLS-RPT policy type of a policy source.
fn kind_of(source: PolicySource) -> PolicyKind {
    match source {
        PolicySource::Dane => PolicyKind::Tlsa,
        PolicySource::MtaStsEnforce | PolicySource::MtaStsTesting => PolicyKind::Sts,
        PolicySource::DomainSecurity | PolicySource::Connector => PolicyKind::NoPolicyFound,
    }
}

/// A host refused before connecting.
pub(crate) fn count_refusal(
    internet: &InternetTls,
    dest: &DestinationFacts,
    host: &HostPort,
    refusal: &PolicyRefusal,
) {
    let failure = match refusal.source {
        PolicySource::Dane => FailureKind::DnssecInvalid,
        _ => FailureKind::MxMismatch,
    };
    internet
        .counters
        .failure(dest.domain.as_str(), kind_of(refusal.source), failure, &host.host);
}

/// A connection that failed under `policy`: counted when TLS was at fault.
pub(crate) fn count_failure(
    internet: &InternetTls,
    dest: &DestinationFacts,
    host: &HostPort,
    policy: &HostPolicy,
    error: &ClientError,
) {
    let failure = match error {
        ClientError::StartTlsNotOffered(_) | ClientError::StartTlsRefused { .. } => {
            FailureKind::StarttlsNotSupported
        }
        ClientError::Tls(_, io) => match certificate_error(io) {
            Some(_) if policy.source == PolicySource::Dane => FailureKind::TlsaInvalid,
            Some(e) => failure_of(e),
            None => FailureKind::ValidationFailure,
        },
        _ => return,
    };
    internet
        .counters
        .failure(dest.domain.as_str(), kind_of(policy.source), failure, &host.host);
}

/// A session opened under `policy`: a success, except in MTA-STS testing
/// mode, where the MX pattern and the PKI check are verified and reported
/// without stopping delivery.
pub(crate) fn count_session(
    internet: &InternetTls,
    trust: &TrustStore,
    dest: &DestinationFacts,
    host: &HostPort,
    policy: &HostPolicy,
    conn: &ClientConnection,
) {
    let counters = &internet.counters;
    let domain = dest.domain.as_str();
    let kind = kind_of(policy.source);
    if policy.source == PolicySource::MtaStsTesting {
        let failure = match (&dest.sts, conn.tls_info()) {
            (StsFacts::Policy(p), _) if !p.mx_matches(&host.host) => Some(FailureKind::MxMismatch),
            (_, None) => Some(FailureKind::StarttlsNotSupported),
            (_, Some(info)) => pki_check(trust, &info.peer_chain, &host.host).err(),
        };
        match failure {
            Some(failure) => {
                tracing::warn!(%domain, %host, failure = failure.as_str(), "MTA-STS testing: the policy would refuse this host");
                counters.failure(domain, kind, failure, &host.host);
            }
            None => counters.success(domain, kind),
        }
        return;
    }
    if conn.tls_info().is_none() && policy.source == PolicySource::Connector {
        counters.failure(domain, kind, FailureKind::StarttlsNotSupported, &host.host);
        return;
    }
    counters.success(domain, kind);
}

/// Whether `chain` is PKI-valid for `name` with the node's roots.
pub(crate) fn pki_check(
    trust: &TrustStore,
    chain: &[rustls_pki_types::CertificateDer<'static>],
    name: &str,
) -> Result<(), FailureKind> {
    let Some((leaf, rest)) = chain.split_first() else {
        return Err(FailureKind::CertificateNotTrusted);
    };
    let server = ServerName::try_from(name.to_owned()).map_err(|_| FailureKind::CertificateHostMismatch)?;
    let verifier = WebPkiServerVerifier::builder_with_provider(trust.roots(), provider())
        .build()
        .map_err(|_| FailureKind::CertificateNotTrusted)?;
    match verifier.verify_server_cert(leaf, rest, &server, &[], UnixTime::now()) {
        Ok(_) => Ok(()),
        Err(Error::InvalidCertificate(e)) => Err(failure_of(&e)),
        Err(_) => Err(FailureKind::ValidationFailure),
    }
}

fn certificate_error(io: &std::io::Error) -> Option<&CertificateError> {
    match io.get_ref()?.downcast_ref::<Error>()? {
        Error::InvalidCertificate(e) => Some(e),
        _ => None,
    }
}

fn failure_of(e: &CertificateError) -> FailureKind {
    match e {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            FailureKind::CertificateHostMismatch
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            FailureKind::CertificateExpired
        }
        _ => FailureKind::CertificateNotTrusted,
    }
}
