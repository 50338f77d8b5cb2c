//! Certificate verifiers for rustls, over the live `TrustStore`.
//!
//! Each verifier checks the handshake signatures with the provider's
//! algorithms — the proof that the peer holds the key of the certificate it
//! sent — and differs only in which certificates it accepts.

use std::fmt;

use postern_model::Thumbprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{TrustStore, provider};

fn tls12(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
}

fn tls13(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
}

fn schemes() -> Vec<SignatureScheme> {
    provider().signature_verification_algorithms.supported_schemes()
}

/// The three signature methods every verifier here shares: handshake
/// signatures are checked with the provider's algorithms (the proof the peer
/// holds the certificate's key); only certificate acceptance differs.
macro_rules! signatures_checked_by_the_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            tls12(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            tls13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            schemes()
        }
    };
}

fn untrusted(thumbprint: Thumbprint) -> Error {
    Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
        NotDirectlyTrusted(thumbprint),
    ))))
}

/// The error a direct-trust verifier returns for a certificate not in the store.
#[derive(Debug)]
pub struct NotDirectlyTrusted(pub Thumbprint);

impl fmt::Display for NotDirectlyTrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "certificate {} is not in this node's direct-trust store",
            self.0
        )
    }
}

impl std::error::Error for NotDirectlyTrusted {}

/// Server side, organisation hops: the client must present a certificate
/// whose thumbprint is in the direct-trust set (names and issuer ignored).
#[derive(Clone)]
pub struct DirectTrustClientVerifier {
    trust: TrustStore,
}

impl DirectTrustClientVerifier {
    /// A verifier over the live store.
    pub fn new(trust: TrustStore) -> Self {
        Self { trust }
    }
}

impl fmt::Debug for DirectTrustClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirectTrustClientVerifier")
    }
}

impl ClientCertVerifier for DirectTrustClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let thumbprint = Thumbprint::of_der(end_entity.as_ref());
        if self.trust.is_direct(&thumbprint) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(untrusted(thumbprint))
        }
    }

    signatures_checked_by_the_provider!();
}

/// Server side, EdgeSync on an edge: a certificate in the direct-trust set
/// (a hub's) is required in the handshake, except while `open` says the
/// door is open (no hub known yet, or a bootstrap pending); then any
/// certificate that proves key possession gets through and the service
/// checks the bootstrap secret in the first message.
#[derive(Clone)]
pub struct DirectTrustUnlessOpen {
    trust: TrustStore,
    open: std::sync::Arc<dyn Fn() -> bool + Send + Sync>,
}

impl DirectTrustUnlessOpen {
    /// Direct trust over the live store, unless `open()`.
    pub fn new(trust: TrustStore, open: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self {
            trust,
            open: std::sync::Arc::new(open),
        }
    }
}

impl fmt::Debug for DirectTrustUnlessOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirectTrustUnlessOpen")
    }
}

impl ClientCertVerifier for DirectTrustUnlessOpen {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let thumbprint = Thumbprint::of_der(end_entity.as_ref());
        if (self.open)() || self.trust.is_direct(&thumbprint) {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(untrusted(thumbprint))
        }
    }

    signatures_checked_by_the_provider!();
}

/// Server side, Internet connectors: asks for a client certificate but
/// does not require one and accepts any that proves key possession; the
/// session classifies it afterwards (`TrustStore::classify`) and domain
/// security decides per message. Refusing at the handshake would turn away
/// every opportunistic sender with an odd certificate.
#[derive(Clone, Debug, Default)]
pub struct AcceptAnyClientCert;

impl ClientCertVerifier for AcceptAnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    signatures_checked_by_the_provider!();
}

/// A client verifier that refuses everything; stands in when a PKI
/// verifier cannot be built, so failure is closed.
#[derive(Debug)]
pub(crate) struct RefuseAll;

impl ClientCertVerifier for RefuseAll {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
    }
    signatures_checked_by_the_provider!();
}

/// Client side: which server certificates a connection accepts.
#[derive(Clone)]
pub struct DirectTrustServerVerifier {
    mode: ServerMode,
}

#[derive(Clone)]
enum ServerMode {
    /// Thumbprint in the live direct-trust set.
    Direct(TrustStore),
    /// Exactly this thumbprint.
    Pinned(Thumbprint),
    /// Any thumbprint of a live pin set.
    PinnedSet(Pins),
    /// Any certificate (signatures still checked).
    DangerAnyCertificate,
}

impl DirectTrustServerVerifier {
    /// Organisation hops: the server's thumbprint must be in the direct-trust set.
    pub fn new(trust: TrustStore) -> Self {
        Self {
            mode: ServerMode::Direct(trust),
        }
    }

    /// Exactly one certificate, by thumbprint (EdgeSync dialing the edge of
    /// a subscription: an edge presenting another certificate is refused).
    pub fn pinned(thumbprint: Thumbprint) -> Self {
        Self {
            mode: ServerMode::Pinned(thumbprint),
        }
    }

    /// Any of the thumbprints in `pins`, read at each handshake (EdgeSync
    /// dialing an edge whose certificate is being rotated: old and new).
    pub fn pinned_set(pins: Pins) -> Self {
        Self {
            mode: ServerMode::PinnedSet(pins),
        }
    }

    /// Opportunistic and encryption-only TLS: any certificate is accepted
    /// (its handshake signature is still checked). Never for domain security.
    pub fn danger_accept_any() -> Self {
        Self {
            mode: ServerMode::DangerAnyCertificate,
        }
    }
}

impl fmt::Debug for DirectTrustServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match &self.mode {
            ServerMode::Direct(_) => "direct trust".to_owned(),
            ServerMode::Pinned(t) => format!("pinned {t}"),
            ServerMode::PinnedSet(p) => format!("pinned {:?}", p.get()),
            ServerMode::DangerAnyCertificate => "any certificate".to_owned(),
        };
        write!(f, "DirectTrustServerVerifier({mode})")
    }
}

impl ServerCertVerifier for DirectTrustServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let thumbprint = Thumbprint::of_der(end_entity.as_ref());
        match &self.mode {
            ServerMode::DangerAnyCertificate => Ok(ServerCertVerified::assertion()),
            ServerMode::Direct(trust) if trust.is_direct(&thumbprint) => Ok(ServerCertVerified::assertion()),
            ServerMode::Direct(_) => Err(untrusted(thumbprint)),
            ServerMode::Pinned(expected) if *expected == thumbprint => Ok(ServerCertVerified::assertion()),
            ServerMode::Pinned(expected) => Err(Error::General(format!(
                "the peer presented certificate {thumbprint}, not {expected} from its subscription"
            ))),
            ServerMode::PinnedSet(pins) => {
                let expected = pins.get();
                if expected.contains(&thumbprint) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    let list: Vec<String> = expected.iter().map(ToString::to_string).collect();
                    Err(Error::General(format!(
                        "the peer presented certificate {thumbprint}, not {} from its subscription",
                        list.join(" or ")
                    )))
                }
            }
        }
    }

    signatures_checked_by_the_provider!();
}

/// A live set of pinned thumbprints, shared by a verifier and whoever
/// rotates the peer's certificate; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Pins(std::sync::Arc<std::sync::RwLock<Vec<Thumbprint>>>);

impl Pins {
    /// A set holding `thumbprints`.
    pub fn new(thumbprints: impl IntoIterator<Item = Thumbprint>) -> Self {
        Self(std::sync::Arc::new(std::sync::RwLock::new(
            thumbprints.into_iter().collect(),
        )))
    }

    /// The thumbprints now.
    pub fn get(&self) -> Vec<Thumbprint> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the set.
    pub fn set(&self, thumbprints: impl IntoIterator<Item = Thumbprint>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = thumbprints.into_iter().collect();
    }
}
