//! The organisation's own policy: an edge serves the MTA-STS policy of
//! the transport configuration at `/.well-known/mta-sts.txt` over HTTPS
//! with its SMTP certificate (RFC 8461 §3.3), and the DNS records an
//! administrator publishes are derived here: `_mta-sts` (with an id that
//! changes with the policy), `_smtp._tls` (TLS-RPT) and a DANE-EE `3 1 1`
//! TLSA record for each SMTP certificate of the node.

use std::future::Future;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use postern_model::{Domain, MtaStsPublication, MtaStsPublishMode, Service, TransportConfig};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::certs::CertStore;
use crate::internet_tls::dane::tlsa_3_1_1;
use crate::internet_tls::mta_sts::{MtaStsMode, MtaStsPolicy};
use crate::tls::{ServerCertResolver, TlsRequirement, TrustStore, server_config};
use postern_model::CertStatus;

/// The policy file of a publication.
pub fn policy_text(publication: &MtaStsPublication) -> String {
    let mode = match publication.mode {
        MtaStsPublishMode::Enforce => MtaStsMode::Enforce,
        MtaStsPublishMode::Testing => MtaStsMode::Testing,
        MtaStsPublishMode::None => MtaStsMode::None,
    };
    MtaStsPolicy {
        mode,
        mx: publication.mx.clone(),
        max_age: publication.max_age_secs,
    }
    .to_text()
}

/// The policy id: derived from the text, so it changes exactly when the
/// policy does (RFC 8461 §3.1: 1–32 alphanumerics).
pub fn policy_id(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .take(10)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The DNS records to publish, in zone-file syntax: for each of `domains`
/// the `_mta-sts` TXT (when a policy is published), the `mta-sts` name
/// pointing at `node_fqdn`, the `_smtp._tls` TXT sending reports to
/// `tlsrpt@<domain>`; and a TLSA `3 1 1` at `_25._tcp.<node_fqdn>` for
/// each certificate in `certs` (DER).
pub fn dns_records(
    domains: &[Domain],
    publication: Option<&MtaStsPublication>,
    node_fqdn: &Domain,
    certs: &[Vec<u8>],
) -> Vec<String> {
    let mut records = Vec::new();
    for domain in domains {
        if let Some(p) = publication {
            let id = policy_id(&policy_text(p));
            records.push(format!("_mta-sts.{domain}. IN TXT \"v=STSv1; id={id}\""));
            records.push(format!("mta-sts.{domain}. IN CNAME {node_fqdn}."));
        }
        records.push(format!(
            "_smtp._tls.{domain}. IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@{domain}\""
        ));
    }
    for der in certs {
        if let Some(tlsa) = tlsa_3_1_1(der) {
            records.push(format!("_25._tcp.{node_fqdn}. IN TLSA {tlsa}"));
        }
    }
    records
}

/// The leaf certificates (DER) of the node's valid SMTP certificates.
pub fn smtp_certificates(certs: &CertStore) -> Result<Vec<Vec<u8>>, crate::certs::CertError> {
    let mut ders = Vec::new();
    for c in certs.list()? {
        if c.services.contains(&Service::Smtp) && c.has_private_key && c.status == CertStatus::Valid {
            let key = certs.certified_key(&c.thumbprint)?;
            ders.extend(key.cert.first().map(|d| d.as_ref().to_vec()));
        }
    }
    Ok(ders)
}

/// Serves the policy of `config()` on `listener` over HTTPS with the SMTP
/// certificate naming `fqdn`, until `shutdown` completes: 200 with the
/// policy at `/.well-known/mta-sts.txt` while one is published, else 404.
pub async fn serve(
    listener: TcpListener,
    certs: CertStore,
    fqdn: Domain,
    config: Arc<dyn Fn() -> TransportConfig + Send + Sync>,
    shutdown: impl Future<Output = ()>,
) {
    let tls = server_config(
        ServerCertResolver::new(certs, fqdn.as_str()),
        &TrustStore::new([], &[]),
        &TlsRequirement::ENCRYPTION_ONLY,
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "MTA-STS listener");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let config = Arc::clone(&config);
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let policy = config().mta_sts.as_ref().map(policy_text);
                async move {
                    let (status, body) = match (req.uri().path(), policy) {
                        ("/.well-known/mta-sts.txt", Some(text)) => (200, text),
                        _ => (404, "no MTA-STS policy here\r\n".to_owned()),
                    };
                    hyper::Response::builder()
                        .status(status)
                        .header(hyper::header::CONTENT_TYPE, "text/plain")
                        .body(Full::new(Bytes::from(body)))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    use postern_model::{KeySpec, SubjectName};

    use crate::certs::NewCertificate;
    use crate::dns::DnsConfig;
    use crate::internet_tls::dane::Tlsa;
    use crate::internet_tls::sts_fetch::StsSource;

    fn publication(mode: MtaStsPublishMode) -> MtaStsPublication {
        MtaStsPublication {
            mode,
            mx: vec!["mail.adatum.com".into(), "*.adatum.com".into()],
            max_age_secs: 604800,
        }
    }

    #[test]
    fn records_follow_the_policy_and_the_certificates() {
        let cert = rcgen::generate_simple_self_signed(vec!["edge1.adatum.com".to_owned()]).unwrap();
        let der = cert.cert.der().to_vec();
        let domains = [Domain::parse("adatum.com").unwrap()];
        let fqdn = Domain::parse("edge1.adatum.com").unwrap();
        let enforce = publication(MtaStsPublishMode::Enforce);
        let records = dns_records(&domains, Some(&enforce), &fqdn, std::slice::from_ref(&der));
        assert!(
            records[0].starts_with("_mta-sts.adatum.com. IN TXT \"v=STSv1; id="),
            "{records:?}"
        );
        assert_eq!(records[1], "mta-sts.adatum.com. IN CNAME edge1.adatum.com.");
        assert_eq!(
            records[2],
            "_smtp._tls.adatum.com. IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@adatum.com\""
        );
        let tlsa = records[3]
            .strip_prefix("_25._tcp.edge1.adatum.com. IN TLSA 3 1 1 ")
            .unwrap();
        let data: Vec<u8> = (0..tlsa.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&tlsa[i..i + 2], 16).unwrap())
            .collect();
        let record = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data,
        };
        assert!(record.matches(&der), "the TLSA record matches the certificate");
        // The id changes with the policy, and only then.
        let testing = publication(MtaStsPublishMode::Testing);
        assert_ne!(
            policy_id(&policy_text(&enforce)),
            policy_id(&policy_text(&testing))
        );
        assert_eq!(
            policy_id(&policy_text(&enforce)),
            policy_id(&policy_text(&enforce.clone()))
        );
        let parsed = MtaStsPolicy::parse(&policy_text(&enforce)).unwrap();
        assert_eq!(parsed.mode, MtaStsMode::Enforce);
        assert!(parsed.mx_matches("edge1.adatum.com"));
        assert_eq!(dns_records(&domains, None, &fqdn, &[]).len(), 1);
    }

    /// The edge's policy over HTTPS, fetched by our own MTA-STS client
    /// trusting the edge's (self-signed) certificate as an organisation root.
    #[tokio::test]
    async fn an_edge_serves_its_policy_with_its_smtp_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let certs = CertStore::open(&db).unwrap();
        let fqdn = Domain::parse("edge1.adatum.com").unwrap();
        certs
            .new_self_signed(&NewCertificate {
                subject: SubjectName::common_name_only("edge1.adatum.com"),
                domains: vec![fqdn.clone(), Domain::parse("mta-sts.adatum.com").unwrap()],
                friendly_name: None,
                key: KeySpec::EcdsaP256,
                services: BTreeSet::from([Service::Smtp]),
            })
            .unwrap();
        let ders = smtp_certificates(&certs).unwrap();
        assert_eq!(ders.len(), 1);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = TransportConfig {
            mta_sts: Some(publication(MtaStsPublishMode::Enforce)),
            ..TransportConfig::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            certs,
            fqdn,
            Arc::new(move || config.clone()),
            async {
                let _ = stopped.await;
            },
        ));
        // mta-sts.adatum.com resolves to loopback through dnsmasq.
        let Some(dns) = crate::dns::testing::Dnsmasq::start(&[
            "--local=/adatum.com/",
            "--host-record=mta-sts.adatum.com,127.0.0.1",
        ]) else {
            return;
        };
        let trust = TrustStore::new([], &[rustls_pki_types::CertificateDer::from(ders[0].clone())]);
        let sts = StsSource::new(
            &DnsConfig {
                servers: vec![dns.addr],
                timeout: std::time::Duration::from_secs(2),
                ..DnsConfig::default()
            },
            trust,
            &db,
            port,
        )
        .unwrap();
        let policy = sts.fetch(&Domain::parse("adatum.com").unwrap()).await.unwrap();
        assert_eq!(policy.mode, MtaStsMode::Enforce);
        assert_eq!(policy.mx, ["mail.adatum.com", "*.adatum.com"]);
        stop.send(()).unwrap();
        server.await.unwrap();
    }
}
