//! The organisation's transport configuration: the objects the hub holds
//! authoritatively and EdgeSync replicates to edges (DESIGN §4).
//!
//! Every object has an `ObjectKey`; the hub's change log and the edge's
//! replica are maps from keys to `ReplicatedObject`s. Mailboxes travel as
//! SHA-256 hashes of their addresses, as Exchange replicates recipients to
//! the perimeter: an edge holds no readable address list.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Domain, MailboxDelivery, NodeName, ObjectKind, ProtocolLoggingLevel, Thumbprint};

/// Organisation-wide transport settings (Set-TransportConfig).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportConfig {
    /// Domains we send to only over domain-secured (mutual, PKI) TLS.
    pub tls_send_domain_secure_list: Vec<Domain>,
    /// Domains we accept mail from only over domain-secured TLS.
    pub tls_receive_domain_secure_list: Vec<Domain>,
    /// Largest message accepted, in bytes.
    pub max_message_size: u64,
    /// Most recipients per message.
    pub max_recipients: u32,
    /// How long a message may stay queued before it bounces (seconds).
    pub message_expiration_secs: u64,
    /// When the sender is told a message is delayed (seconds).
    pub delay_notification_secs: u64,
    /// The organisation's own MTA-STS policy (RFC 8461), served by edges at
    /// `https://mta-sts.<domain>/.well-known/mta-sts.txt`; `None`: none.
    #[serde(default)]
    pub mta_sts: Option<MtaStsPublication>,
}

/// The MTA-STS policy the organisation publishes for its domains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MtaStsPublication {
    /// `enforce`, `testing` or `none`.
    pub mode: MtaStsPublishMode,
    /// MX patterns senders must see (`mail.adatum.com`, `*.adatum.com`).
    pub mx: Vec<String>,
    /// How long senders cache the policy (seconds).
    pub max_age_secs: u64,
}

/// The published mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MtaStsPublishMode {
    /// Senders refuse MX hosts not listed or without a valid certificate.
    Enforce,
    /// Senders report failures but deliver.
    Testing,
    /// Withdraws a policy (senders forget it).
    None,
}

impl MtaStsPublishMode {
    /// The policy file's word.
    pub fn as_str(self) -> &'static str {
        match self {
            MtaStsPublishMode::Enforce => "enforce",
            MtaStsPublishMode::Testing => "testing",
            MtaStsPublishMode::None => "none",
        }
    }
}

impl std::str::FromStr for MtaStsPublishMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "enforce" => Ok(Self::Enforce),
            "testing" => Ok(Self::Testing),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "unknown MTA-STS mode {s:?}: use enforce, testing or none"
            )),
        }
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            tls_send_domain_secure_list: Vec::new(),
            tls_receive_domain_secure_list: Vec::new(),
            max_message_size: 35 * 1024 * 1024,
            max_recipients: 200,
            message_expiration_secs: 2 * 24 * 3600,
            delay_notification_secs: 4 * 3600,
            mta_sts: None,
        }
    }
}

/// How the organisation treats mail for a domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcceptedDomainKind {
    /// Mailboxes live here; unknown recipients are refused.
    Authoritative,
    /// Some mailboxes live here, the rest are relayed inside the organisation.
    InternalRelay,
    /// Accepted and relayed outside the organisation.
    ExternalRelay,
}

impl fmt::Display for AcceptedDomainKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcceptedDomainKind::Authoritative => "authoritative",
            AcceptedDomainKind::InternalRelay => "internal-relay",
            AcceptedDomainKind::ExternalRelay => "external-relay",
        })
    }
}

impl std::str::FromStr for AcceptedDomainKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "authoritative" => Ok(Self::Authoritative),
            "internal-relay" | "internalrelay" => Ok(Self::InternalRelay),
            "external-relay" | "externalrelay" => Ok(Self::ExternalRelay),
            _ => Err(format!(
                "unknown accepted domain type {s:?}: use authoritative, internal-relay or external-relay"
            )),
        }
    }
}

/// A domain the organisation accepts mail for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedDomain {
    /// The domain.
    pub name: Domain,
    /// How it is treated.
    pub kind: AcceptedDomainKind,
    /// Where its mailboxes get their mail: their home hub's Maildir (the
    /// default, not written out) or a mailbox server over LMTP.
    #[serde(default, skip_serializing_if = "MailboxDelivery::is_maildir")]
    pub delivery: MailboxDelivery,
}

/// The SHA-256 of a lower-cased recipient address, hex: what edges hold
/// for recipient filtering.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MailboxHash(pub String);

impl MailboxHash {
    /// The hash of `address` (case-insensitive).
    pub fn of(address: &str) -> Self {
        let digest = Sha256::digest(address.trim().to_ascii_lowercase().as_bytes());
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A mailbox as replicated: the hash of its address and its home hub,
/// whose Maildir holds it (issue 16). Every hub and edge routes mail for
/// it to that hub; a domain delivered over LMTP ignores homes.
///
/// Written as the bare hash when it has no home (mailboxes made before
/// homes existed: the hub that receives the mail delivers it), so stores
/// and replicas written before read the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "MailboxWire", into = "MailboxWire")]
pub struct MailboxEntry {
    /// The hash of the address.
    pub hash: MailboxHash,
    /// The hub whose Maildir holds the mailbox; `None`: whichever hub
    /// receives the mail.
    pub home: Option<NodeName>,
}

impl MailboxEntry {
    /// The entry of `address` homed on `home`.
    pub fn new(address: &str, home: Option<NodeName>) -> Self {
        Self {
            hash: MailboxHash::of(address),
            home,
        }
    }
}

/// The JSON forms of [`MailboxEntry`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum MailboxWire {
    Hash(MailboxHash),
    Homed { hash: MailboxHash, home: NodeName },
}

impl From<MailboxWire> for MailboxEntry {
    fn from(wire: MailboxWire) -> Self {
        match wire {
            MailboxWire::Hash(hash) => Self { hash, home: None },
            MailboxWire::Homed { hash, home } => Self {
                hash,
                home: Some(home),
            },
        }
    }
}

impl From<MailboxEntry> for MailboxWire {
    fn from(entry: MailboxEntry) -> Self {
        match entry.home {
            None => MailboxWire::Hash(entry.hash),
            Some(home) => MailboxWire::Homed {
                hash: entry.hash,
                home,
            },
        }
    }
}

/// Which TLS a send connector demands when `require_tls` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsAuthLevel {
    /// Encrypt; any certificate.
    EncryptionOnly,
    /// The certificate must chain to a trusted root.
    CertificateValidation,
    /// Chain to a trusted root and name the TLS domain.
    DomainValidation,
}

impl fmt::Display for TlsAuthLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsAuthLevel::EncryptionOnly => "encryption-only",
            TlsAuthLevel::CertificateValidation => "certificate-validation",
            TlsAuthLevel::DomainValidation => "domain-validation",
        })
    }
}

impl std::str::FromStr for TlsAuthLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "encryption-only" | "encryptiononly" => Ok(Self::EncryptionOnly),
            "certificate-validation" | "certificatevalidation" => Ok(Self::CertificateValidation),
            "domain-validation" | "domainvalidation" => Ok(Self::DomainValidation),
            _ => Err(format!(
                "unknown TLS auth level {s:?}: use encryption-only, certificate-validation or domain-validation"
            )),
        }
    }
}

/// The domains a send connector serves: `*` (everything), a domain, or a
/// domain and its subdomains (`*.example.com`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainPattern {
    /// `*`.
    Any,
    /// Exactly this domain.
    Exact(Domain),
    /// This domain and every subdomain.
    WithSubdomains(Domain),
}

impl DomainPattern {
    /// Parses `*`, `*.example.com` or `example.com`.
    pub fn parse(s: &str) -> Result<Self, crate::DomainError> {
        let s = s.trim();
        if s == "*" {
            return Ok(Self::Any);
        }
        match s.strip_prefix("*.") {
            Some(rest) => Ok(Self::WithSubdomains(Domain::parse(rest)?)),
            None => Ok(Self::Exact(Domain::parse(s)?)),
        }
    }

    /// Whether `domain` falls under this pattern.
    pub fn matches(&self, domain: &Domain) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(d) => d == domain,
            Self::WithSubdomains(d) => domain.is_within(d),
        }
    }

    /// How specific the pattern is (more labels win; exact beats wildcard).
    pub fn specificity(&self) -> (usize, bool) {
        match self {
            Self::Any => (0, false),
            Self::Exact(d) => (d.as_str().split('.').count(), true),
            Self::WithSubdomains(d) => (d.as_str().split('.').count(), false),
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(d) => write!(f, "{d}"),
            Self::WithSubdomains(d) => write!(f, "*.{d}"),
        }
    }
}

/// One address space of a send connector: `pattern;cost`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressSpace {
    /// The domains served.
    pub pattern: DomainPattern,
    /// Lower cost wins among equally specific spaces.
    pub cost: u32,
}

impl AddressSpace {
    /// Parses `domain;cost` (cost defaults to 1), as Exchange writes it.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (pattern, cost) = match s.split_once(';') {
            Some((p, c)) => {
                let cost = c
                    .trim()
                    .parse()
                    .map_err(|_| format!("address space {s:?}: cost must be a number"))?;
                (p, cost)
            }
            None => (s, 1),
        };
        let pattern = DomainPattern::parse(pattern).map_err(|e| format!("address space {s:?}: {e}"))?;
        Ok(Self { pattern, cost })
    }
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{}", self.pattern, self.cost)
    }
}

/// A send connector (New-/Set-SendConnector).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendConnector {
    /// Unique name (case-insensitive).
    pub name: String,
    /// The domains it serves, with costs.
    pub address_spaces: Vec<AddressSpace>,
    /// Route by MX lookup (else `smart_hosts`).
    pub dns_routing_enabled: bool,
    /// Smart hosts (`host` or `host:port`), tried in order.
    pub smart_hosts: Vec<String>,
    /// Destination port.
    pub port: u16,
    /// EHLO name and certificate name; `None` is the node's FQDN.
    pub fqdn: Option<Domain>,
    /// Refuse to send in plain text.
    pub require_tls: bool,
    /// Never use STARTTLS.
    pub ignore_starttls: bool,
    /// Apply domain security to domains on the send list.
    pub domain_secure_enabled: bool,
    /// What `require_tls` checks of the certificate.
    pub tls_auth_level: Option<TlsAuthLevel>,
    /// The name the certificate must carry for domain validation.
    pub tls_domain: Option<Domain>,
    /// Protocol log level.
    pub protocol_logging_level: ProtocolLoggingLevel,
    /// Edges that send through this connector; empty means hubs.
    pub source_edges: Vec<NodeName>,
    /// Whether it is used at all.
    pub enabled: bool,
}

impl SendConnector {
    /// A connector with Exchange's defaults for everything but name and spaces.
    pub fn new(name: &str, address_spaces: Vec<AddressSpace>) -> Self {
        Self {
            name: name.to_owned(),
            address_spaces,
            dns_routing_enabled: true,
            smart_hosts: Vec::new(),
            port: 25,
            fqdn: None,
            require_tls: false,
            ignore_starttls: false,
            domain_secure_enabled: false,
            tls_auth_level: None,
            tls_domain: None,
            protocol_logging_level: ProtocolLoggingLevel::None,
            source_edges: Vec::new(),
            enabled: true,
        }
    }
}

/// A hub as edges see it: where to send inbound mail and which
/// certificates to trust directly (public parts only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubInfo {
    /// The hub's name.
    pub name: NodeName,
    /// The hub's FQDN.
    pub fqdn: Domain,
    /// Where the hub receives mail from edges (`host:port`).
    pub smtp_endpoint: String,
    /// DER of the hub's SMTP certificates (public; never keys).
    pub certificates: Vec<Vec<u8>>,
}

/// A root CA the organisation trusts for PKI validation, beside the public roots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedRoot {
    /// SHA-1 of the DER.
    pub thumbprint: Thumbprint,
    /// The certificate's subject, for lists.
    pub subject: String,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// An edge subscribed to the organisation, as replicated to edges so they
/// know each other (the EdgeSync connector's source edges).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeInfo {
    /// The edge's name.
    pub name: NodeName,
    /// Its FQDN.
    pub fqdn: Domain,
    /// Its site.
    pub site: String,
    /// Where it receives mail from hubs (`host:port`).
    pub smtp_endpoint: String,
    /// Its certificate's thumbprint.
    pub thumbprint: Thumbprint,
}

/// Every object that travels to edges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "object", rename_all = "kebab-case")]
pub enum ReplicatedObject {
    /// The one transport configuration.
    TransportConfig(TransportConfig),
    /// An accepted domain.
    AcceptedDomain(AcceptedDomain),
    /// A mailbox, hashed, with its home hub.
    Mailbox(MailboxEntry),
    /// A send connector.
    SendConnector(SendConnector),
    /// A hub and its public certificates.
    Hub(HubInfo),
    /// An edge of the organisation.
    Edge(EdgeInfo),
    /// An administrator-added trust anchor.
    TrustedRoot(TrustedRoot),
}

impl ReplicatedObject {
    /// The key this object is stored under.
    pub fn key(&self) -> ObjectKey {
        let kind = self.kind();
        match self {
            Self::TransportConfig(_) => ObjectKey::of(kind, ""),
            Self::AcceptedDomain(d) => ObjectKey(format!("{kind}/{}", d.name)),
            Self::Mailbox(m) => ObjectKey::mailbox(&m.hash),
            Self::SendConnector(c) => ObjectKey::send_connector(&c.name),
            Self::Hub(h) => ObjectKey(format!("{kind}/{}", h.name.as_str().to_ascii_lowercase())),
            Self::Edge(e) => ObjectKey(format!("{kind}/{}", e.name.as_str().to_ascii_lowercase())),
            Self::TrustedRoot(r) => ObjectKey(format!("{kind}/{}", r.thumbprint)),
        }
    }
}

/// The key of a replicated object: `kind/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey(pub String);

impl ObjectKey {
    /// The key of the send connector called `name`.
    pub fn send_connector(name: &str) -> Self {
        Self::of(ObjectKind::SendConnector, name)
    }

    /// The key of the mailbox whose address hashes to `hash`.
    pub fn mailbox(hash: &MailboxHash) -> Self {
        Self(format!("{}/{}", ObjectKind::Mailbox, hash.0))
    }

    /// The kind part (`send-connector`, `mailbox`, …); `None` for a key
    /// that names no known kind.
    pub fn kind(&self) -> Option<ObjectKind> {
        self.0.split('/').next().and_then(|word| word.parse().ok())
    }

    /// The key of the object of `kind` called `name` (`transport-config`
    /// has no name; mailboxes are named by address and keyed by hash).
    pub fn of(kind: ObjectKind, name: &str) -> Self {
        match kind {
            ObjectKind::TransportConfig => Self(kind.as_str().to_owned()),
            ObjectKind::Mailbox if name.contains('@') => Self::mailbox(&MailboxHash::of(name)),
            _ if kind.folds_case() => Self(format!("{kind}/{}", name.trim().to_ascii_lowercase())),
            _ => Self(format!("{kind}/{}", name.trim())),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One change in the hub's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeOp {
    /// Create or replace.
    Put(ReplicatedObject),
    /// Remove.
    Delete(ObjectKey),
}

/// A versioned change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The version this change produced.
    pub version: crate::ConfigVersion,
    /// What changed.
    pub op: ChangeOp,
}

/// An object's JSON that does not read as an object of its kind.
#[derive(Debug, thiserror::Error)]
#[error("bad {kind} object: {source}")]
pub struct BadObjectJson {
    /// The kind the JSON was given as.
    pub kind: ObjectKind,
    /// What the JSON parser found.
    pub source: serde_json::Error,
}

impl ReplicatedObject {
    /// Parses the JSON of one object of `kind` (the admin API's payload).
    pub fn from_kind_json(kind: ObjectKind, json: &str) -> Result<Self, BadObjectJson> {
        let bad = |source| BadObjectJson { kind, source };
        Ok(match kind {
            ObjectKind::TransportConfig => Self::TransportConfig(serde_json::from_str(json).map_err(bad)?),
            ObjectKind::AcceptedDomain => Self::AcceptedDomain(serde_json::from_str(json).map_err(bad)?),
            ObjectKind::Mailbox => Self::Mailbox(serde_json::from_str(json).map_err(bad)?),
            ObjectKind::SendConnector => Self::SendConnector(serde_json::from_str(json).map_err(bad)?),
            ObjectKind::TrustedRoot => Self::TrustedRoot(serde_json::from_str(json).map_err(bad)?),
            ObjectKind::Hub => Self::Hub(serde_json::from_str(json).map_err(bad)?),
            ObjectKind::Edge => Self::Edge(serde_json::from_str(json).map_err(bad)?),
        })
    }

    /// The kind of this object.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Self::TransportConfig(_) => ObjectKind::TransportConfig,
            Self::AcceptedDomain(_) => ObjectKind::AcceptedDomain,
            Self::Mailbox(_) => ObjectKind::Mailbox,
            Self::SendConnector(_) => ObjectKind::SendConnector,
            Self::Hub(_) => ObjectKind::Hub,
            Self::Edge(_) => ObjectKind::Edge,
            Self::TrustedRoot(_) => ObjectKind::TrustedRoot,
        }
    }

    /// The object's own JSON (without the kind tag).
    pub fn inner_json(&self) -> String {
        let value = match self {
            Self::TransportConfig(o) => serde_json::to_string(o),
            Self::AcceptedDomain(o) => serde_json::to_string(o),
            Self::Mailbox(o) => serde_json::to_string(o),
            Self::SendConnector(o) => serde_json::to_string(o),
            Self::Hub(o) => serde_json::to_string(o),
            Self::Edge(o) => serde_json::to_string(o),
            Self::TrustedRoot(o) => serde_json::to_string(o),
        };
        value.unwrap_or_default()
    }
}

/// Who may use a receive connector (Exchange's permission groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PermissionGroup {
    /// Anyone; mail only for accepted domains.
    Anonymous,
    /// Partner organisations (domain security).
    Partners,
    /// Nodes of this organisation, authenticated by direct trust: their
    /// organisation headers are kept and they may relay.
    OrgServers,
    /// The organisation's clients (submission): may relay; restrict with
    /// remote IP ranges.
    Clients,
}

impl std::str::FromStr for PermissionGroup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "anonymous" | "anonymoususers" => Ok(Self::Anonymous),
            "partners" => Ok(Self::Partners),
            "org-servers" | "exchangeservers" | "orgservers" => Ok(Self::OrgServers),
            "clients" | "exchangeusers" => Ok(Self::Clients),
            _ => Err(format!(
                "unknown permission group {s:?}: use anonymous, partners, org-servers or clients"
            )),
        }
    }
}

/// How a receive connector authenticates (Exchange's auth mechanisms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMechanism {
    /// Nothing (plain text only).
    None,
    /// STARTTLS offered, client certificates asked for.
    Tls,
}

impl std::str::FromStr for AuthMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Self::None),
            "tls" => Ok(Self::Tls),
            _ => Err(format!("unknown auth mechanism {s:?}: use tls or none")),
        }
    }
}

/// A receive connector: local to the node that owns it (not replicated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveConnector {
    /// Unique name on the node.
    pub name: String,
    /// `ip:port` bindings.
    pub bindings: Vec<String>,
    /// Allowed client ranges (`10.0.0.0/8`, `::1/128`); empty is everyone.
    pub remote_ip_ranges: Vec<crate::IpRange>,
    /// Authentication mechanisms.
    pub auth_mechanism: Vec<AuthMechanism>,
    /// Who may use it.
    pub permission_groups: Vec<PermissionGroup>,
    /// Refuse MAIL before STARTTLS.
    pub require_tls: bool,
    /// Apply domain security to senders on the receive list.
    pub domain_secure_enabled: bool,
    /// Greeting name and certificate name; `None` is the node's FQDN.
    pub fqdn: Option<Domain>,
    /// Protocol log level.
    pub protocol_logging_level: ProtocolLoggingLevel,
    /// Largest message; `None` is the transport configuration's.
    pub max_message_size: Option<u64>,
    /// What is done with a failed DMARC check of mail from outside.
    #[serde(default)]
    pub dmarc_enforcement: crate::DmarcEnforcement,
    /// Connection limits, timeouts, error limit and tarpit (Exchange's
    /// names, at the top level of the JSON).
    #[serde(flatten)]
    pub limits: crate::ReceiveLimits,
}

impl ReceiveConnector {
    /// Exchange's rules, checked when a connector is set.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.trim().is_empty() {
            return Err("a receive connector needs a name".into());
        }
        if self.bindings.is_empty() {
            return Err(format!(
                "receive connector {name:?} needs at least one binding (ip:port)"
            ));
        }
        for b in &self.bindings {
            b.parse::<std::net::SocketAddr>()
                .map_err(|_| format!("receive connector {name:?}: binding {b:?} is not ip:port"))?;
        }
        let tls = self.auth_mechanism.contains(&AuthMechanism::Tls);
        if self.require_tls && !tls {
            return Err(format!(
                "receive connector {name:?}: --require-tls needs tls among the auth mechanisms"
            ));
        }
        if self.domain_secure_enabled && !tls {
            return Err(format!(
                "receive connector {name:?}: domain security needs mutual TLS: add tls to the auth mechanisms"
            ));
        }
        if self.permission_groups.is_empty() {
            return Err(format!(
                "receive connector {name:?} needs at least one permission group"
            ));
        }
        self.limits
            .validate()
            .map_err(|e| format!("receive connector {name:?}: {e}"))
    }

    /// Whether only organisation nodes may use it (a hub's default
    /// connector): one source is then not limited by default.
    pub fn org_only(&self) -> bool {
        self.permission_groups
            .iter()
            .all(|g| *g == PermissionGroup::OrgServers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_spaces() {
        let a = AddressSpace::parse("*;100").unwrap();
        assert_eq!(a.pattern, DomainPattern::Any);
        assert_eq!(a.cost, 100);
        let b = AddressSpace::parse("northwindtraders.com").unwrap();
        assert_eq!(b.cost, 1);
        let c = AddressSpace::parse("*.adatum.com;5").unwrap();
        let d = Domain::parse("mail.adatum.com").unwrap();
        assert!(c.pattern.matches(&d));
        assert!(!b.pattern.matches(&d));
        assert!(c.pattern.specificity() > a.pattern.specificity());
        assert!(AddressSpace::parse("x;y").is_err());
        assert_eq!(c.to_string(), "*.adatum.com;5");
    }

    #[test]
    fn mailbox_hash_ignores_case() {
        assert_eq!(
            MailboxHash::of("Kim@Adatum.com"),
            MailboxHash::of("kim@adatum.com")
        );
        assert_eq!(MailboxHash::of("kim@adatum.com").0.len(), 64);
    }

    #[test]
    fn objects_round_trip_as_json() {
        let obj = ReplicatedObject::SendConnector(SendConnector::new(
            "Internet",
            vec![AddressSpace::parse("*;100").unwrap()],
        ));
        let json = serde_json::to_string(&obj).unwrap();
        assert!(json.contains("\"kind\":\"send-connector\""), "{json}");
        let back: ReplicatedObject = serde_json::from_str(&json).unwrap();
        assert_eq!(back, obj);
        assert_eq!(back.key().0, "send-connector/internet");
        assert_eq!(back.key().kind(), Some(ObjectKind::SendConnector));
        let mailbox = ReplicatedObject::Mailbox(MailboxEntry::new("kim@adatum.com", None));
        let json = serde_json::to_string(&mailbox).unwrap();
        assert_eq!(serde_json::from_str::<ReplicatedObject>(&json).unwrap(), mailbox);
        assert!(!json.contains("kim"), "{json}");
        // Without a home, the bare hash, as before homes existed.
        assert_eq!(
            mailbox.inner_json(),
            format!("\"{}\"", MailboxHash::of("kim@adatum.com").0)
        );
        let homed = ReplicatedObject::Mailbox(MailboxEntry::new(
            "kim@adatum.com",
            Some(NodeName::parse("hub2").unwrap()),
        ));
        let json = serde_json::to_string(&homed).unwrap();
        assert!(json.contains("\"home\":\"hub2\""), "{json}");
        assert_eq!(serde_json::from_str::<ReplicatedObject>(&json).unwrap(), homed);
        assert_eq!(homed.key(), mailbox.key());
    }
}
