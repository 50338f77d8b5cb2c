//! Opening a connection to a next hop: the hop's hosts in order, TCP with a
//! deadline, the greeting, EHLO (HELO when EHLO is refused with 5xx), then
//! the TLS step [`tls_plan`] chooses, and EHLO again over TLS.
//!
//! To an LMTP server ([`Dialect::Lmtp`]) the client says LHLO, with no
//! HELO fallback; the rest is the same.
//!
//! An opportunistic handshake that fails is not retried on the broken
//! connection: the client reconnects to the same host and carries on in
//! plain text, like Postfix's `may` level. Required TLS never falls back.
//!
//! Each connection is one session in the node's [`Metrics`] and, for a
//! hop at level `Verbose`, in the send protocol log (connector id: the
//! hop key), with the `*` TLS lines after STARTTLS.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::certs::CertStore;
use crate::client::connection::ClientConnection;
use crate::client::error::reply_text;
use crate::client::plan::{PlainReason, TlsPlan, tls_plan};
use crate::client::secure;
use crate::client::transaction::is_success;
use crate::client::wire::Wire;
use crate::client::{ClientError, ClientSettings, Dialect, SendOptions};
use crate::dns::MxResolver;
use crate::internet_tls::dane::dane_client_config;
use crate::internet_tls::{HostPolicy, InternetTls};
use crate::metrics::{Metrics, TlsHandshakeOutcome};
use crate::protocol_log::{Direction, Endpoints, ProtocolLog, SessionId, SessionLogger};
use crate::routing::{HostPort, SmtpHop};
use crate::smtp::EhloCapabilities;
use crate::tls::{
    ClientCertResolver, IdentityEpoch, ServerVerification, SessionCache, TrustStore, client_config,
    identity_epoch, is_certificate_refusal,
};

/// The longest we wait for the answer to a QUIT sent while giving up.
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// Opens connections to next hops with the node's certificates and trust.
#[derive(Clone)]
pub struct Connector {
    /// Where our client certificate comes from (the one naming the hop's
    /// HELO name).
    pub certs: CertStore,
    /// Direct trust and PKI roots for checking servers.
    pub trust: TrustStore,
    /// Timeouts and reuse limits.
    pub settings: ClientSettings,
    /// The node's send protocol log (`DATA_DIR/logs/protocol/send`); hops
    /// at level `Verbose` write to it. `None`: nothing is logged.
    pub send_log: Option<Arc<ProtocolLog>>,
    /// The node's counters; `None`: nothing is counted.
    pub metrics: Option<Arc<Metrics>>,
    /// Resolves the hosts of hops routed by MX (`SmtpHop::mx_domain`), so
    /// their addresses come from the same name servers as their MX
    /// records; `None`, and for every other hop: the system resolver.
    pub resolver: Option<Arc<MxResolver>>,
    /// DANE, MTA-STS and TLS-RPT for hops routed by MX; `None`: every hop
    /// keeps its connector's TLS settings.
    pub internet: Option<Arc<InternetTls>>,
    /// Sessions with the organisation's servers, so that a new connection
    /// to a node resumes instead of signing again; forgotten when our
    /// certificates or trust change.
    pub sessions: SessionCache,
}

/// How one try at one host failed.
enum OpenError {
    /// Give up on this host.
    Failed(ClientError),
    /// An opportunistic handshake failed: reconnect in plain text.
    OpportunisticTls(ClientError),
}

impl From<ClientError> for OpenError {
    fn from(e: ClientError) -> Self {
        OpenError::Failed(e)
    }
}

impl Connector {
    /// A connector over the node's stores, without protocol log or
    /// metrics (see [`Connector::with_protocol_log`],
    /// [`Connector::with_metrics`]).
    /// The identity connections are opened under now: the generations of
    /// the certificate store and the trust store. A pooled connection made
    /// under another epoch is not reused.
    pub fn identity_epoch(&self) -> IdentityEpoch {
        identity_epoch(&self.certs, &self.trust)
    }

    pub fn new(certs: CertStore, trust: TrustStore, settings: ClientSettings) -> Self {
        Self {
            certs,
            trust,
            settings,
            send_log: None,
            metrics: None,
            resolver: None,
            internet: None,
            sessions: SessionCache::new(),
        }
    }

    /// Resolves each MX host's TLS policy (DANE, MTA-STS) with `internet`.
    pub fn with_internet_tls(mut self, internet: Arc<InternetTls>) -> Self {
        self.internet = Some(internet);
        self
    }

    /// Resolves the hosts of hops routed by MX with `resolver`.
    pub fn with_resolver(mut self, resolver: Arc<MxResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// Writes sessions to hops at level `Verbose` to `send_log`.
    pub fn with_protocol_log(mut self, send_log: Arc<ProtocolLog>) -> Self {
        self.send_log = Some(send_log);
        self
    }

    /// Counts sessions, TLS handshakes, messages and bytes in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The protocol logger of a new session to `hop` over `tcp`.
    fn session_logger(&self, hop: &SmtpHop, tcp: &TcpStream) -> SessionLogger {
        let (Some(log), Ok(local), Ok(remote)) = (&self.send_log, tcp.local_addr(), tcp.peer_addr()) else {
            return SessionLogger::disabled();
        };
        log.session(
            hop.protocol_logging_level,
            Arc::from(hop.connector_id()),
            SessionId::next(log.clock()),
            Endpoints { local, remote },
        )
    }

    fn count_handshake(&self, outcome: TlsHandshakeOutcome) {
        if let Some(metrics) = &self.metrics {
            metrics.tls_handshake(Direction::Send, outcome);
        }
    }

    /// The client config for one handshake: between nodes of the
    /// organisation (direct trust, no DANE) the one kept in
    /// [`Connector::sessions`], which resumes earlier sessions; elsewhere a
    /// fresh one, so every handshake is full.
    fn tls_config(
        &self,
        hop: &SmtpHop,
        policy: &HostPolicy,
        verification: ServerVerification,
        client_certificate: bool,
    ) -> Arc<ClientConfig> {
        let resolver =
            || client_certificate.then(|| ClientCertResolver::new(self.certs.clone(), hop.helo.as_str()));
        if let Some(tlsa) = &policy.dane {
            return dane_client_config(Arc::clone(tlsa), resolver());
        }
        if verification != ServerVerification::DirectTrust {
            return client_config(verification, &self.trust, resolver());
        }
        let name = client_certificate.then_some(hop.helo.as_str());
        self.sessions.config(self.identity_epoch(), name, || {
            client_config(verification, &self.trust, resolver())
        })
    }

    /// Connects to the first host of `hop` that greets, introduces us and
    /// satisfies the hop's TLS policy. The error is the last host's.
    pub async fn connect(&self, hop: &SmtpHop) -> Result<ClientConnection, ClientError> {
        self.connect_with(hop, SendOptions::default()).await
    }

    /// [`Connector::connect`] for a message with `options`: with
    /// REQUIRETLS, only hosts whose policy verifies the server and which
    /// offer REQUIRETLS; with `TLS-Required: No`, the connector's TLS only.
    pub async fn connect_with(
        &self,
        hop: &SmtpHop,
        options: SendOptions,
    ) -> Result<ClientConnection, ClientError> {
        self.connect_dialect(hop, options, Dialect::Smtp).await
    }

    /// Connects to the LMTP server of `hop` (a mailbox server): LHLO,
    /// then STARTTLS as the hop's TLS policy says. Internet TLS policies
    /// (DANE, MTA-STS) do not apply: the hop is not routed by MX.
    pub async fn connect_lmtp(&self, hop: &SmtpHop) -> Result<ClientConnection, ClientError> {
        self.connect_dialect(hop, SendOptions::default(), Dialect::Lmtp)
            .await
    }

    async fn connect_dialect(
        &self,
        hop: &SmtpHop,
        options: SendOptions,
        dialect: Dialect,
    ) -> Result<ClientConnection, ClientError> {
        let mut last = ClientError::NoHosts(hop.key.clone());
        let ignore_recipient_policies = options.tls_optional && !options.require_tls;
        let dest = match &self.internet {
            Some(internet) if !ignore_recipient_policies && dialect == Dialect::Smtp => {
                internet.destination(hop).await
            }
            _ => None,
        };
        for host in &hop.hosts {
            let policy = match (&self.internet, &dest) {
                (Some(internet), Some(dest)) => match internet.host_policy(dest, hop, host).await {
                    Ok(policy) => Some(policy),
                    Err(refusal) => {
                        tracing::warn!(hop = %hop.key, %host, %refusal, "host refused by its TLS policy");
                        secure::count_refusal(internet, dest, host, &refusal);
                        last = ClientError::Policy {
                            host: host.to_string(),
                            refusal,
                        };
                        continue;
                    }
                },
                _ => None,
            };
            let applied = policy
                .clone()
                .unwrap_or_else(|| HostPolicy::connector(hop.tls.clone()));
            if options.require_tls && !applied.is_verified() {
                last = ClientError::RequireTls {
                    host: host.to_string(),
                    code: "5.7.10",
                    reason: format!(
                        "REQUIRETLS: TLS policy {} does not authenticate the server",
                        applied.source
                    ),
                };
                continue;
            }
            match self.connect_host(hop, host, &applied, dialect).await {
                Ok(conn) if options.require_tls && !conn.capabilities().requiretls() => {
                    conn.quit().await;
                    last = ClientError::RequireTls {
                        host: host.to_string(),
                        code: "5.7.30",
                        reason: "REQUIRETLS support required: the server does not offer it".into(),
                    };
                }
                Ok(mut conn) => {
                    if let (Some(internet), Some(dest), Some(policy)) = (&self.internet, &dest, &policy) {
                        secure::count_session(internet, &self.trust, dest, host, policy, &conn);
                        conn.set_policy(policy.source);
                    }
                    return Ok(conn);
                }
                Err(e) => {
                    tracing::info!(hop = %hop.key, %host, error = %e, "next-hop host failed");
                    last = match (&self.internet, &dest, policy) {
                        (Some(internet), Some(dest), Some(policy)) => {
                            secure::count_failure(internet, dest, host, &policy, &e);
                            ClientError::UnderPolicy {
                                policy: policy.source,
                                source: Box::new(e),
                            }
                        }
                        _ => e,
                    };
                }
            }
        }
        Err(last)
    }

    async fn connect_host(
        &self,
        hop: &SmtpHop,
        host: &HostPort,
        policy: &HostPolicy,
        dialect: Dialect,
    ) -> Result<ClientConnection, ClientError> {
        match self.open(hop, host, policy, dialect, false).await {
            Ok(conn) => Ok(conn),
            Err(OpenError::Failed(e)) => Err(e),
            Err(OpenError::OpportunisticTls(e)) => {
                tracing::warn!(
                    hop = %hop.key, %host, error = %e,
                    "opportunistic TLS failed; reconnecting to send in plain text"
                );
                match self.open(hop, host, policy, dialect, true).await {
                    Ok(conn) => Ok(conn),
                    Err(OpenError::Failed(e) | OpenError::OpportunisticTls(e)) => Err(e),
                }
            }
        }
    }

    /// One connection to one host; `handshake_failed` after an
    /// opportunistic handshake with it failed.
    async fn open(
        &self,
        hop: &SmtpHop,
        host: &HostPort,
        policy: &HostPolicy,
        dialect: Dialect,
        handshake_failed: bool,
    ) -> Result<ClientConnection, OpenError> {
        let limit = self.settings.command_timeout;
        let tcp = self.tcp(hop, host).await?;
        if let Some(metrics) = &self.metrics {
            metrics.smtp_session(Direction::Send, &hop.key.to_string());
        }
        let log = self.session_logger(hop, &tcp);
        let mut wire = Wire::new(tcp, host.to_string(), log);
        let greeting = wire.read_reply("greeting", limit).await?;
        if greeting.code() != 220 {
            quit_quietly(&mut wire).await;
            return Err(refused(&wire, "the session", &greeting).into());
        }
        let mut caps = introduce(&mut wire, dialect, hop.helo.as_str(), limit).await?;
        let (tls, plain) = match tls_plan(&policy.tls, caps.starttls, handshake_failed) {
            TlsPlan::Abort => {
                quit_quietly(&mut wire).await;
                return Err(ClientError::StartTlsNotOffered(wire.host().to_owned()).into());
            }
            TlsPlan::Plain(reason) => {
                log_plain(hop, host, reason);
                wire.log().info(format_args!(
                    "TLS policy: {} (plain text: {reason:?})",
                    policy.source
                ));
                (None, Some(reason))
            }
            TlsPlan::StartTls {
                verification,
                client_certificate,
                required,
            } => {
                let name = server_name(hop, host)?;
                let reply = wire.command("STARTTLS\r\n", "reply to STARTTLS", limit).await?;
                if reply.code() != 220 {
                    if required {
                        quit_quietly(&mut wire).await;
                        return Err(ClientError::StartTlsRefused {
                            host: wire.host().to_owned(),
                            reply: reply_text(&reply),
                        }
                        .into());
                    }
                    log_plain(hop, host, PlainReason::StartTlsRefused);
                    wire.log().info(format_args!(
                        "TLS policy: {} (plain text: STARTTLS refused)",
                        policy.source
                    ));
                    (None, Some(PlainReason::StartTlsRefused))
                } else {
                    let config = self.tls_config(hop, policy, verification, client_certificate);
                    match wire.start_tls(config, name, limit).await {
                        Ok((upgraded, info)) => {
                            wire = upgraded;
                            self.count_handshake(TlsHandshakeOutcome::Ok);
                            if let (true, Some(metrics)) = (info.resumed, &self.metrics) {
                                metrics.tls_resumed(Direction::Send);
                            }
                            let trust = self.trust.classify_server(&info.peer_chain, verification);
                            wire.log().tls_established(&info, &trust);
                            wire.log().info(format_args!("TLS policy: {}", policy.source));
                            caps = introduce(&mut wire, dialect, hop.helo.as_str(), limit).await?;
                            (Some(info), None)
                        }
                        Err(e) => {
                            // The server's certificate was refused by the
                            // hop's verifier, or the handshake itself failed.
                            let refused = matches!(&e, ClientError::Tls(_, io) if is_certificate_refusal(io));
                            self.count_handshake(if refused {
                                TlsHandshakeOutcome::Untrusted
                            } else {
                                TlsHandshakeOutcome::Failed
                            });
                            return Err(if required {
                                OpenError::Failed(e)
                            } else {
                                OpenError::OpportunisticTls(e)
                            });
                        }
                    }
                }
            }
        };
        Ok(ClientConnection::new(
            wire,
            dialect,
            host.clone(),
            caps,
            tls,
            plain,
            self.settings,
            self.metrics.clone(),
        ))
    }

    /// TCP to the first address of `host` that accepts within the timeout.
    async fn tcp(&self, hop: &SmtpHop, host: &HostPort) -> Result<TcpStream, ClientError> {
        let limit = self.settings.connect_timeout;
        let failed = |source| ClientError::Connect {
            host: host.to_string(),
            source,
        };
        let lookup = async {
            match (&self.resolver, &hop.mx_domain) {
                (Some(resolver), Some(_)) => resolver.lookup_addrs(&host.host, host.port).await,
                _ => tokio::net::lookup_host((host.host.as_str(), host.port))
                    .await
                    .map(Iterator::collect::<Vec<_>>),
            }
        };
        let addrs = match tokio::time::timeout(limit, lookup).await {
            Err(_) => {
                return Err(failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "name lookup timed out",
                )));
            }
            Ok(Err(e)) => return Err(failed(e)),
            Ok(Ok(addrs)) => addrs,
        };
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
        for addr in addrs {
            match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => {
                    // Pipelined batches are written whole; don't delay them.
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(io::ErrorKind::TimedOut, format!("connecting to {addr} timed out"))
                }
            }
        }
        Err(failed(last))
    }
}

/// LHLO to an LMTP server (which has no fallback); EHLO to an SMTP server.
async fn introduce(
    wire: &mut Wire,
    dialect: Dialect,
    helo: &str,
    limit: Duration,
) -> Result<EhloCapabilities, ClientError> {
    match dialect {
        Dialect::Smtp => ehlo(wire, helo, limit).await,
        Dialect::Lmtp => {
            let reply = wire
                .command(&format!("LHLO {helo}\r\n"), "reply to LHLO", limit)
                .await?;
            if is_success(&reply) {
                Ok(EhloCapabilities::from_reply(&reply))
            } else {
                Err(refused(wire, "LHLO", &reply))
            }
        }
    }
}

/// EHLO, or HELO when EHLO is refused permanently (a server without ESMTP).
async fn ehlo(wire: &mut Wire, helo: &str, limit: Duration) -> Result<EhloCapabilities, ClientError> {
    let reply = wire
        .command(&format!("EHLO {helo}\r\n"), "reply to EHLO", limit)
        .await?;
    if is_success(&reply) {
        return Ok(EhloCapabilities::from_reply(&reply));
    }
    if !reply.is_permanent() {
        return Err(refused(wire, "EHLO", &reply));
    }
    let reply = wire
        .command(&format!("HELO {helo}\r\n"), "reply to HELO", limit)
        .await?;
    if is_success(&reply) {
        Ok(EhloCapabilities::default())
    } else {
        Err(refused(wire, "HELO", &reply))
    }
}

/// The name the server's certificate is checked against (and sent as SNI):
/// the name the hop's PKI check wants, or else the host. (A host policy
/// such as MTA-STS may check the certificate differently; the name stays
/// the hop's.)
fn server_name(hop: &SmtpHop, host: &HostPort) -> Result<ServerName<'static>, ClientError> {
    let name = match hop.tls.pki_name() {
        Some(domain) => domain.as_str().to_owned(),
        None => host.host.trim_start_matches('[').trim_end_matches(']').to_owned(),
    };
    ServerName::try_from(name.clone()).map_err(|_| ClientError::BadServerName(name))
}

fn log_plain(hop: &SmtpHop, host: &HostPort, reason: PlainReason) {
    match reason {
        PlainReason::DangerIgnoreStartTls => {
            tracing::warn!(hop = %hop.key, %host, "STARTTLS ignored by configuration: sending in plain text")
        }
        PlainReason::StartTlsRefused => {
            tracing::warn!(hop = %hop.key, %host, "server refused STARTTLS: sending in plain text")
        }
        PlainReason::HandshakeFailed => {
            tracing::warn!(hop = %hop.key, %host, "sending in plain text after a failed TLS handshake")
        }
        PlainReason::NotOffered => {
            tracing::debug!(hop = %hop.key, %host, "STARTTLS not offered: sending in plain text")
        }
    }
}

fn refused(wire: &Wire, stage: &'static str, reply: &crate::smtp::Reply) -> ClientError {
    ClientError::Refused {
        host: wire.host().to_owned(),
        stage,
        reply: reply_text(reply),
    }
}

/// Says QUIT while giving up on a connection; failures do not matter.
pub(crate) async fn quit_quietly(wire: &mut Wire) {
    let _ = wire.command("QUIT\r\n", "reply to QUIT", QUIT_WAIT).await;
    wire.shutdown(QUIT_WAIT).await;
}
