//! Builds rustls configs for the three verifier families (DESIGN §5),
//! usable on either side of a hop.

use std::sync::Arc;

use rustls::{ClientConfig, ServerConfig};

use super::{
    AcceptAnyClientCert, ClientCertResolver, ClientCertificate, DirectTrustClientVerifier,
    DirectTrustServerVerifier, IdentityTickets, PartnerServerVerifier, PeerCheck, ServerCertResolver,
    TlsRequirement, TrustStore, provider,
};

/// Which verifier family checks the other end's certificate: derived
/// from a [`TlsRequirement`]'s peer check
/// ([`TlsRequirement::verification`]) for building configs and
/// classifying what the server proved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerVerification {
    /// Thumbprint in the direct-trust set (organisation hops).
    DirectTrust,
    /// Chain to a trusted root and name match (domain security, certificate
    /// validation).
    Pki,
    /// Any certificate: opportunistic and encryption-only TLS.
    DangerEncryptionOnly,
}

/// A TLS server config presenting certificates from `resolver` and
/// asking clients as `requirement` says: nothing when the client
/// certificate is not asked; a certificate in the direct-trust set when the
/// peer check is direct trust; otherwise any certificate, optional,
/// classified after the handshake (Internet connectors, domain security:
/// a PKI check of clients is the policy's, not the handshake's). Whether
/// STARTTLS is offered or required is the session's business.
///
/// Sessions resume with stateless tickets whose key changes with the
/// node's identity (see [`IdentityTickets`]): no session outlives a change
/// of certificates or trust. There is no server-side session cache, which
/// would not be bound to it.
pub fn server_config(
    resolver: ServerCertResolver,
    trust: &TrustStore,
    requirement: &TlsRequirement,
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable_versions());
    let builder = match (requirement.client_certificate, &requirement.peer) {
        (ClientCertificate::NotAsked, _) => builder.with_no_client_auth(),
        (ClientCertificate::Asked | ClientCertificate::Demanded, PeerCheck::DirectTrust) => {
            builder.with_client_cert_verifier(Arc::new(DirectTrustClientVerifier::new(trust.clone())))
        }
        (
            ClientCertificate::Asked | ClientCertificate::Demanded,
            PeerCheck::DangerAny | PeerCheck::Pki { .. },
        ) => builder.with_client_cert_verifier(Arc::new(AcceptAnyClientCert)),
    };
    let tickets = IdentityTickets::new(resolver.store().clone(), trust.clone());
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.ticketer = Arc::new(tickets);
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Arc::new(config)
}

/// A TLS client config checking the server as `verification` says and
/// presenting `client_cert` when the server asks.
pub fn client_config(
    verification: ServerVerification,
    trust: &TrustStore,
    client_cert: Option<ClientCertResolver>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable_versions());
    let builder = match verification {
        // The partner's domain or a host under it (DESIGN §5).
        ServerVerification::Pki => {
            match rustls::client::WebPkiServerVerifier::builder_with_provider(trust.roots(), provider())
                .build()
            {
                Ok(webpki) => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PartnerServerVerifier::new(webpki))),
                Err(e) => {
                    tracing::warn!(error = %e, "PKI verifier cannot be built; checking exact names only");
                    builder.with_root_certificates(trust.roots())
                }
            }
        }
        ServerVerification::DirectTrust => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DirectTrustServerVerifier::new(trust.clone()))),
        ServerVerification::DangerEncryptionOnly => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DirectTrustServerVerifier::danger_accept_any())),
    };
    let config = match client_cert {
        Some(resolver) => builder.with_client_cert_resolver(Arc::new(resolver)),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// The ring provider supports TLS 1.2 and 1.3; the safe defaults cannot fail.
fn unreachable_versions<T>() -> T {
    panic!("the ring provider supports the default TLS versions")
}
