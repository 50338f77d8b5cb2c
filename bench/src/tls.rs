//! The bench client's TLS: trusts one CA for the server, presents a client
//! certificate, on the ring provider (never aws-lc; see DEPENDENCIES.md).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A client configuration verifying the server against `ca` and
/// authenticating with `cert` (chain, leaf first) and `key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading CA {}", ca.display()))? {
        let der = der.with_context(|| format!("parsing CA {}", ca.display()))?;
        roots
            .add(der)
            .with_context(|| format!("adding CA {}", ca.display()))?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in CA file {}", ca.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading client certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing client certificate {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading client key {}", key.display()))?;
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("client certificate and key do not form a usable pair")?;
    Ok(Arc::new(config))
}
