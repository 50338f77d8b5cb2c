//! gRPC over mutual TLS for EdgeSync. tonic's own TLS takes no custom
//! verifier, so both ends run rustls themselves: the edge accepts TCP,
//! handshakes and hands TLS streams to tonic; the hub dials through a
//! custom connector that pins the edge's certificate thumbprint(s).
//!
//! Both ends also export keying material from the TLS session
//! ([`postern_tls::rotation_binding`]) so a certificate rotation
//! offer made on the stream is bound to this very session.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use postern_model::{Thumbprint, peer_text};
use postern_tls::certs::CertStore;
use postern_tls::{
    ClientCertResolver, DirectTrustServerVerifier, DirectTrustUnlessOpen, Pins, ServerCertResolver,
    TrustStore, provider, rotation_binding,
};

use crate::edge_side::BootstrapStore;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::{Channel, Endpoint};

use crate::trust_status::TrustMismatch;

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The edge's incoming side: TLS streams ready for tonic. A client
/// certificate is required. Once the edge trusts hub certificates
/// (`trust`, kept by `follow_hub_trust`) and no bootstrap is pending, only
/// a hub's passes the handshake; before that (or while a subscription
/// file's secret is outstanding) any certificate passes and the EdgeSync
/// handler decides on the capped first message (trusted hub or valid
/// bootstrap secret), so a refusal carries a readable reason to the hub.
pub fn tls_incoming(
    listener: TcpListener,
    certs: CertStore,
    fqdn: &str,
    trust: &TrustStore,
    bootstrap: &BootstrapStore,
) -> tokio_stream::wrappers::ReceiverStream<Result<SyncTls, std::io::Error>> {
    let open = {
        let (trust, bootstrap) = (trust.clone(), bootstrap.clone());
        move || !trust.has_direct() || bootstrap.pending(time::OffsetDateTime::now_utc())
    };
    let verifier = DirectTrustUnlessOpen::new(trust.clone(), open);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_client_cert_verifier(Arc::new(verifier))
                .with_cert_resolver(Arc::new(ServerCertResolver::new(certs, fqdn)))
        })
        .unwrap_or_else(|_| unreachable!("ring supports the default versions"));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "EdgeSync accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                break;
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let (_, conn) = tls.get_ref();
                        let info = SessionInfo {
                            peer_certs: conn.peer_certificates().map(<[_]>::to_vec).unwrap_or_default(),
                            binding: rotation_binding(conn).ok(),
                            refused: None,
                            superseded: false,
                        };
                        let _ = tx.send(Ok(SyncTls { inner: tls, info })).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer, error = %peer_text(&e.to_string()), "EdgeSync TLS handshake failed")
                    }
                    Err(_) => tracing::warn!(%peer, "EdgeSync TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// What an EdgeSync TLS session established: the peer's certificates and
/// the session's rotation binding. The edge's gRPC handler finds it in the
/// request's extensions.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    /// The peer's chain, leaf first.
    pub peer_certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Exported keying material; `None` if the export failed.
    pub binding: Option<[u8; 32]>,
    /// On the hub: the last handshake failed because the edge's
    /// certificate is not pinned, or the edge refused the hub's.
    pub refused: Option<TrustMismatch>,
    /// On the hub: the edge refused the hub's lease as stale (it has seen
    /// a newer one: another hub took the edge over).
    pub superseded: bool,
}

impl SessionInfo {
    /// The peer's certificate thumbprint.
    pub fn peer_thumbprint(&self) -> Option<Thumbprint> {
        self.peer_certs.first().map(|c| Thumbprint::of_der(c.as_ref()))
    }
}

/// A server-side EdgeSync TLS stream carrying its [`SessionInfo`] to tonic.
pub struct SyncTls {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    info: SessionInfo,
}

impl tonic::transport::server::Connected for SyncTls {
    type ConnectInfo = SessionInfo;

    fn connect_info(&self) -> SessionInfo {
        self.info.clone()
    }
}

impl tokio::io::AsyncRead for SyncTls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SyncTls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The hub's record of the latest session its channel to an edge opened.
pub type SessionSlot = Arc<std::sync::Mutex<SessionInfo>>;

/// A channel from a hub to one edge: mutual TLS, the edge's certificate
/// pinned to one of `pins` (read at each handshake), the hub presenting its
/// SMTP certificate for `hub_fqdn`. Each handshake records its
/// [`SessionInfo`] in `slot`. Connects lazily; errors surface on the first call.
pub fn connect_edge(
    endpoint: &str,
    pins: Pins,
    certs: CertStore,
    hub_fqdn: &str,
    slot: SessionSlot,
) -> Result<Channel, tonic::transport::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(RecordingVerifier {
                    inner: DirectTrustServerVerifier::pinned_set(pins.clone()),
                    pins,
                    slot: slot.clone(),
                }))
                .with_client_cert_resolver(Arc::new(ClientCertResolver::new(certs, hub_fqdn)))
        })
        .unwrap_or_else(|_| unreachable!("ring supports the default versions"));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let address = endpoint.to_owned();
    let uri = format!("http://{endpoint}");
    Ok(Endpoint::from_shared(uri)?
        .connect_timeout(HANDSHAKE_TIMEOUT)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect_with_connector_lazy(tower::service_fn(move |_| {
            let connector = connector.clone();
            let address = address.clone();
            let slot = slot.clone();
            async move {
                let tcp = TcpStream::connect(&address).await?;
                let host = address.rsplit_once(':').map(|(h, _)| h).unwrap_or(&address);
                let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
                    })??;
                let (_, conn) = tls.get_ref();
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = SessionInfo {
                    peer_certs: conn.peer_certificates().map(<[_]>::to_vec).unwrap_or_default(),
                    binding: rotation_binding(conn).ok(),
                    refused: None,
                    superseded: false,
                };
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        })))
}

/// The hub's verifier of an edge's certificate: the pinned-set check,
/// recording a refusal as a typed [`TrustMismatch`] in the session slot
/// (the error itself reaches the hub only as text inside tonic's error).
#[derive(Debug)]
struct RecordingVerifier {
    inner: DirectTrustServerVerifier,
    pins: Pins,
    slot: SessionSlot,
}

impl rustls::client::danger::ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        intermediates: &[rustls_pki_types::CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verdict =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        if verdict.is_err() {
            self.slot.lock().unwrap_or_else(|p| p.into_inner()).refused =
                Some(TrustMismatch::EdgeNotPinned {
                    presented: Thumbprint::of_der(end_entity.as_ref()),
                    expected: self.pins.get(),
                });
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier as _;

    use super::*;

    #[test]
    fn the_hubs_refusal_of_an_edge_certificate_is_recorded_typed() {
        let pinned = Thumbprint::of_der(b"the pinned certificate");
        let pins = Pins::new([pinned]);
        let slot = SessionSlot::default();
        let verifier = RecordingVerifier {
            inner: DirectTrustServerVerifier::pinned_set(pins.clone()),
            pins,
            slot: slot.clone(),
        };
        let name = ServerName::try_from("edge1.contoso.test").expect("a name");
        let now = rustls_pki_types::UnixTime::now();
        let other = rustls_pki_types::CertificateDer::from(b"another certificate".to_vec());
        assert!(verifier.verify_server_cert(&other, &[], &name, &[], now).is_err());
        assert_eq!(
            slot.lock().expect("slot").refused,
            Some(TrustMismatch::EdgeNotPinned {
                presented: Thumbprint::of_der(b"another certificate"),
                expected: vec![pinned],
            })
        );
        // The pinned one passes and records nothing.
        let fresh = SessionSlot::default();
        let verifier = RecordingVerifier {
            slot: fresh.clone(),
            ..verifier
        };
        let good = rustls_pki_types::CertificateDer::from(b"the pinned certificate".to_vec());
        assert!(verifier.verify_server_cert(&good, &[], &name, &[], now).is_ok());
        assert_eq!(fresh.lock().expect("slot").refused, None);
    }
}
