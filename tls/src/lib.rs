//! TLS for SMTP and EdgeSync: one crypto provider (ring), the live trust
//! store, the verifiers of DESIGN §5 (direct trust, PKI, encryption-only),
//! the server certificate resolver and the client/server config builders;
//! and the node's certificate store (`certs`), whose certificates they present.
//!
//! Every verifier reads the live trust store on each handshake, and the
//! certificate resolver rereads the certificate store when it changes, so
//! trust and certificate changes take effect without a restart.

pub mod certs;
mod config;
mod partner;
mod requirement;
mod resolve;
mod resume;
mod trust;
mod verify;

pub use config::{ServerVerification, client_config, server_config};
pub use partner::{PartnerServerVerifier, names_domain};
pub use requirement::{ClientCertificate, Encryption, PeerCheck, TlsRequirement};
pub use resolve::{ClientCertResolver, ServerCertResolver};
pub use resume::{IdentityEpoch, IdentityTickets, SessionCache, identity_epoch};
pub use trust::{PeerTrust, TrustStore};
pub use verify::{
    AcceptAnyClientCert, DirectTrustClientVerifier, DirectTrustServerVerifier, DirectTrustUnlessOpen, Pins,
};

/// The TLS exporter label (RFC 5705 / RFC 8446 §7.5) that binds a
/// certificate rotation offer to the session it is made on.
pub const ROTATION_EXPORTER_LABEL: &[u8] = b"EXPORTER-postern-cert-rotation";

/// 32 bytes of keying material exported from a finished handshake under
/// [`ROTATION_EXPORTER_LABEL`]: both ends compute the same value, nobody
/// else can, and it differs for every session.
pub fn rotation_binding<Data>(conn: &rustls::ConnectionCommon<Data>) -> Result<[u8; 32], rustls::Error> {
    conn.export_keying_material([0u8; 32], ROTATION_EXPORTER_LABEL, None)
}

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;

/// The process's one crypto provider (ring; never aws-lc beside it).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Whether a failed handshake (as tokio-rustls reports it) failed on the
/// peer's certificate, refused by our verifier, rather than on the
/// handshake itself.
pub fn is_certificate_refusal(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)))
}

/// What a finished handshake negotiated, for logs, headers and counters.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    /// `TLSv1.3`, `TLSv1.2`.
    pub version: String,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// The peer's certificate chain, leaf first (empty when none was sent).
    pub peer_chain: Vec<CertificateDer<'static>>,
    /// Whether the handshake resumed an earlier session (no certificate
    /// signatures; the peer's chain is the one the first handshake checked).
    pub resumed: bool,
}

impl TlsInfo {
    /// Reads the negotiated parameters off a rustls connection.
    pub fn from_connection(conn: &rustls::CommonState) -> Self {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
            Some(v) => format!("{v:?}"),
            None => "unknown".to_owned(),
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_else(|| "unknown".to_owned());
        let peer_chain = conn.peer_certificates().map(|c| c.to_vec()).unwrap_or_default();
        Self {
            version,
            cipher,
            peer_chain,
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        }
    }

    /// The peer certificate's thumbprint, when it sent one.
    pub fn peer_thumbprint(&self) -> Option<postern_model::Thumbprint> {
        self.peer_chain
            .first()
            .map(|c| postern_model::Thumbprint::of_der(c.as_ref()))
    }
}
