//! A receive connector's configuration as plain data: where it listens,
//! what it is called, what TLS it offers or demands, its limits and its
//! timeouts. Building and binding happen in [`ReceiveConnector`](super::ReceiveConnector).

use std::net::SocketAddr;
use std::time::Duration;

use postern_model::{CountLimit, Domain, EffectiveLimits, IpRange, NodeRole, ProtocolLoggingLevel};

use crate::smtp::{DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_RECIPIENTS, SessionConfig};
use crate::tls::{ClientCertificate, Encryption, PeerCheck, TlsRequirement};

/// Waiting for a command between transactions (Postfix `smtpd_timeout`,
/// Exchange `ConnectionInactivityTimeout`): 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Waiting for the next command inside a transaction, or for the rest of a
/// command line, or for the TLS handshake: 5 minutes (RFC 5321 §4.5.3.2.7).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Waiting for more message data after 354: 10 minutes (RFC 5321
/// §4.5.3.2.6 asks at least 3; Exchange and Postfix allow 10).
pub const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A command line must be complete this long after its first byte, however
/// slowly it trickles in.
pub const DEFAULT_LINE_TIMEOUT: Duration = Duration::from_secs(60);
/// Message data must arrive at least this fast (octets per second, after
/// [`DEFAULT_LINE_TIMEOUT`] of grace), as Postfix's `smtpd_min_data_rate`.
pub const DEFAULT_MIN_DATA_RATE: u64 = 500;

/// One receive connector (Exchange's `ReceiveConnector`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiveConnectorConfig {
    /// The connector's name, for logs (`Default EDGE01`).
    pub name: String,
    /// Address and port to listen on (port 0 in tests).
    pub bind: SocketAddr,
    /// The FQDN announced in the greeting and EHLO answer; the STARTTLS
    /// certificate must name it.
    pub fqdn: Domain,
    /// What the connector demands of TLS: STARTTLS offered (when a
    /// certificate names `fqdn`) unless `DangerNever`, MAIL refused with
    /// 530 5.7.0 until it when `Required`; and what the handshake asks of
    /// the client's certificate.
    pub tls: TlsRequirement,
    /// Largest message body in octets (552 5.3.4 above).
    pub max_message_size: usize,
    /// Recipients per message (452 4.5.3 above).
    pub max_recipients: usize,
    /// Between transactions: how long a silent client is kept.
    pub idle_timeout: Duration,
    /// Inside a transaction, mid-line and during the TLS handshake.
    pub command_timeout: Duration,
    /// Between reads of message data.
    pub data_timeout: Duration,
    /// Peers authenticated by direct trust are nodes of this organisation:
    /// their `X-Postern-Organization-*` headers are kept (header firewall).
    pub trusted_org: bool,
    /// Whether sessions are written to the node's receive protocol log
    /// (Exchange's `-ProtocolLoggingLevel`; `None` by default).
    pub protocol_logging_level: ProtocolLoggingLevel,
    /// Sessions may relay to domains the organisation does not accept
    /// (client submission). Organisation nodes (direct trust on a
    /// `trusted_org` connector) may always relay.
    pub relay_allowed: bool,
    /// Apply domain security to senders on the receive list.
    pub domain_secure_enabled: bool,
    /// Clients allowed to connect; empty is everyone.
    pub remote_ip_ranges: Vec<IpRange>,
    /// What a failed DMARC check of mail from outside does.
    pub dmarc_enforcement: postern_model::DmarcEnforcement,
    /// Sessions at once (`MaxInboundConnection`); over it, 421 4.3.2.
    pub max_inbound_connection: CountLimit,
    /// Sessions at once from one address (`MaxInboundConnectionPerSource`).
    pub max_inbound_connection_per_source: CountLimit,
    /// Sessions at once from one address as a percentage of the sessions
    /// still available (`MaxInboundConnectionPercentagePerSource`).
    pub max_inbound_connection_percentage_per_source: u8,
    /// A session's whole life (`ConnectionTimeout`); then 421 4.4.2.
    pub connection_timeout: Duration,
    /// A command line must be complete this long after its first byte.
    pub line_timeout: Duration,
    /// Message data must keep this rate (octets per second) after
    /// `line_timeout` of grace.
    pub min_data_rate: u64,
    /// 5xx replies before 421 4.7.0 and close (`MaxProtocolErrors`).
    pub max_protocol_errors: CountLimit,
    /// Delay before each 5xx reply to an unauthenticated session
    /// (`TarpitInterval`); zero for none.
    pub tarpit_interval: Duration,
}

impl ReceiveConnectorConfig {
    /// A connector with the defaults: STARTTLS offered, not required, no
    /// client certificate asked, 35 MB, 200 recipients, not an
    /// organisation connector, no protocol logging, and an edge's limits
    /// (see [`EffectiveLimits::defaults`]).
    pub fn new(name: impl Into<String>, bind: SocketAddr, fqdn: Domain) -> Self {
        Self {
            name: name.into(),
            bind,
            fqdn,
            tls: TlsRequirement {
                encryption: Encryption::Opportunistic,
                peer: PeerCheck::DangerAny,
                client_certificate: ClientCertificate::NotAsked,
            },
            max_message_size: usize::try_from(DEFAULT_MAX_MESSAGE_SIZE).unwrap_or(usize::MAX),
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            data_timeout: DEFAULT_DATA_TIMEOUT,
            trusted_org: false,
            protocol_logging_level: ProtocolLoggingLevel::None,
            relay_allowed: false,
            domain_secure_enabled: false,
            remote_ip_ranges: Vec::new(),
            dmarc_enforcement: postern_model::DmarcEnforcement::None,
            max_inbound_connection: CountLimit::Unlimited,
            max_inbound_connection_per_source: CountLimit::Unlimited,
            max_inbound_connection_percentage_per_source: 100,
            connection_timeout: DEFAULT_DATA_TIMEOUT,
            line_timeout: DEFAULT_LINE_TIMEOUT,
            min_data_rate: DEFAULT_MIN_DATA_RATE,
            max_protocol_errors: CountLimit::Unlimited,
            tarpit_interval: Duration::ZERO,
        }
        .with_limits(&EffectiveLimits::defaults(NodeRole::Edge, false))
    }

    /// These limits and timeouts: the connection limits, the whole-session
    /// timeout, the inactivity timeout (for every read: idle, in a
    /// command, in message data), the error limit and the tarpit.
    pub fn with_limits(mut self, limits: &EffectiveLimits) -> Self {
        self.apply_limits(limits);
        self
    }

    /// As [`with_limits`](Self::with_limits), in place.
    pub fn apply_limits(&mut self, limits: &EffectiveLimits) {
        self.max_inbound_connection = limits.max_inbound_connection;
        self.max_inbound_connection_per_source = limits.max_inbound_connection_per_source;
        self.max_inbound_connection_percentage_per_source =
            limits.max_inbound_connection_percentage_per_source;
        self.connection_timeout = limits.connection_timeout;
        let idle = limits.connection_inactivity_timeout;
        self.idle_timeout = idle;
        self.command_timeout = idle;
        self.data_timeout = idle;
        self.max_protocol_errors = limits.max_protocol_errors;
        self.tarpit_interval = limits.tarpit_interval;
    }

    /// No limits on connections, errors or replies (a load generator's
    /// or a test's connector); timeouts stay.
    pub fn without_abuse_limits(mut self) -> Self {
        self.max_inbound_connection = CountLimit::Unlimited;
        self.max_inbound_connection_per_source = CountLimit::Unlimited;
        self.max_inbound_connection_percentage_per_source = 100;
        self.max_protocol_errors = CountLimit::Unlimited;
        self.tarpit_interval = Duration::ZERO;
        self
    }

    /// Whether another session from a source that has `from_source`
    /// sessions open may start while the connector has `total` open.
    pub fn admits(&self, total: u64, from_source: u64) -> bool {
        if self.max_inbound_connection.reached_by(total)
            || self.max_inbound_connection_per_source.reached_by(from_source)
        {
            return false;
        }
        let CountLimit::At(max) = self.max_inbound_connection else {
            return true;
        };
        let remaining = u64::from(max).saturating_sub(total);
        let share = (remaining * u64::from(self.max_inbound_connection_percentage_per_source) / 100).max(1);
        from_source < share
    }

    /// Whether a client at `ip` may use this connector.
    pub fn allows(&self, ip: std::net::IpAddr) -> bool {
        self.remote_ip_ranges.is_empty() || self.remote_ip_ranges.iter().any(|r| r.contains(ip))
    }

    /// The protocol knobs for one session; `starttls_available` says
    /// whether a certificate for the FQDN exists right now.
    pub(crate) fn session_config(&self, starttls_available: bool) -> SessionConfig {
        SessionConfig {
            hostname: self.fqdn.clone(),
            max_recipients: self.max_recipients,
            max_message_size: self.max_message_size as u64,
            encryption: self.tls.encryption,
            certificate_available: starttls_available,
            implicit_tls: false,
        }
    }
}
