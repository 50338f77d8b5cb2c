//! `postern transport-config | accepted-domain | mailbox | send-connector |
//! trusted-root`: configuration objects over the admin API's `Config`
//! service. Objects travel as JSON of the model types; the CLI builds them
//! from flags and prints them as lists (or JSON).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use postern_model::{
    AcceptedDomain, AcceptedDomainKind, AddressSpace, AdminObjectKind, CountLimit, Domain, IpRange,
    MailboxDelivery, NodeName, ObjectKind, ProtocolLoggingLevel, ReplicatedObject, SendConnector, TimeSpan,
    TlsAuthLevel, TransportConfig, TrustedRoot,
};
use postern_proto::admin as pb;
use postern_proto::admin::config_client::ConfigClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::client::{connect, status};
use crate::output::{Record, Reply, print_records, records};

async fn client(node: &Path) -> anyhow::Result<ConfigClient<Channel>> {
    Ok(ConfigClient::new(connect(node).await?))
}

async fn get(
    c: &mut ConfigClient<Channel>,
    kind: ObjectKind,
    name: &str,
) -> anyhow::Result<ReplicatedObject> {
    Ok(get_read(c, kind, name).await?.0)
}

/// An object and the configuration version its read stands on (a later
/// write passes it back, so a concurrent change is refused, not lost).
async fn get_read(
    c: &mut ConfigClient<Channel>,
    kind: ObjectKind,
    name: &str,
) -> anyhow::Result<(ReplicatedObject, u64)> {
    let o = c
        .get_object(pb::ObjectRef {
            kind: kind.to_string(),
            name: name.into(),
        })
        .await
        .map_err(status)?
        .into_inner();
    Ok((decode(&o)?, o.version))
}

/// An object as the node sent it: its kind word parsed, then its JSON.
fn decode(o: &pb::ObjectJson) -> anyhow::Result<ReplicatedObject> {
    let kind: ObjectKind = o.kind.parse()?;
    Ok(ReplicatedObject::from_kind_json(kind, &o.json)?)
}

async fn list(
    c: &mut ConfigClient<Channel>,
    kind: impl Into<AdminObjectKind>,
) -> anyhow::Result<Vec<pb::ObjectJson>> {
    let kind = kind.into().to_string();
    Ok(c.list_objects(pb::ListObjectsRequest { kind })
        .await
        .map_err(status)?
        .into_inner()
        .objects)
}

async fn put(
    c: &mut ConfigClient<Channel>,
    object: &ReplicatedObject,
    create: bool,
    replace: bool,
) -> anyhow::Result<()> {
    put_read(c, object, create, replace, 0).await
}

/// `put`, refused if the object changed after the read at `read_version`.
async fn put_read(
    c: &mut ConfigClient<Channel>,
    object: &ReplicatedObject,
    create: bool,
    replace: bool,
    read_version: u64,
) -> anyhow::Result<()> {
    c.put_object(pb::PutObjectRequest {
        kind: object.kind().to_string(),
        json: object.inner_json(),
        create_only: create,
        replace_only: replace,
        read_version,
    })
    .await
    .map_err(status)?;
    Ok(())
}

async fn remove(
    c: &mut ConfigClient<Channel>,
    kind: impl Into<AdminObjectKind>,
    name: &str,
) -> anyhow::Result<()> {
    c.remove_object(pb::ObjectRef {
        kind: kind.into().to_string(),
        name: name.into(),
    })
    .await
    .map_err(status)?;
    Ok(())
}

/// A record from a JSON object: one field per key, in the given order.
fn record_from(value: &Value, fields: &[(&'static str, &str)]) -> Record {
    let mut r = Record::new();
    for (label, key) in fields {
        let v = value.get(*key).cloned().unwrap_or(Value::Null);
        let text = match &v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        r = r.keyed(label, key, &text, v);
    }
    r
}

// ---------------------------------------------------------------- transport-config

/// `transport-config` verbs.
#[derive(Subcommand)]
pub enum TransportConfigCommand {
    /// Show the organisation's transport configuration (Get-TransportConfig).
    Get {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change it (Set-TransportConfig); only the flags given change.
    Set(TransportConfigArgs),
}

/// Set-TransportConfig's flags.
#[derive(Args)]
pub struct TransportConfigArgs {
    /// Domains to send to only with domain security (comma-separated; empty to clear).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    tls_send_domain_secure_list: Option<Vec<String>>,
    /// Domains to receive from only with domain security.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    tls_receive_domain_secure_list: Option<Vec<String>>,
    /// Largest message in bytes.
    #[arg(long)]
    max_message_size: Option<u64>,
    /// Most recipients per message.
    #[arg(long)]
    max_recipients: Option<u32>,
    /// Seconds before a queued message expires.
    #[arg(long)]
    message_expiration: Option<u64>,
    /// Seconds before a delay notice.
    #[arg(long)]
    delay_notification: Option<u64>,
    /// The organisation's own MTA-STS policy mode: enforce, testing or none
    /// (edges serve it; `postern tls-report records` prints the DNS records).
    #[arg(long)]
    mta_sts_mode: Option<String>,
    /// MX patterns of our MTA-STS policy (comma-separated).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    mta_sts_mx: Option<Vec<String>>,
    /// max_age of our MTA-STS policy, seconds (default one week).
    #[arg(long)]
    mta_sts_max_age: Option<u64>,
}

fn domains(list: &[String]) -> anyhow::Result<Vec<Domain>> {
    list.iter()
        .filter(|d| !d.trim().is_empty())
        .map(|d| Domain::parse(d).with_context(|| format!("bad domain {d:?}")))
        .collect()
}

fn transport_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TLSSendDomainSecureList", "tls_send_domain_secure_list"),
        ("TLSReceiveDomainSecureList", "tls_receive_domain_secure_list"),
        ("MaxMessageSize", "max_message_size"),
        ("MaxRecipients", "max_recipients"),
        ("MessageExpirationSecs", "message_expiration_secs"),
        ("DelayNotificationSecs", "delay_notification_secs"),
        ("MtaSts", "mta_sts"),
    ]
}

/// Runs a `transport-config` verb and prints its reply.
pub async fn transport_config(node: &Path, cmd: TransportConfigCommand) -> anyhow::Result<()> {
    transport_config_exec(node, cmd).await?.print()
}

/// Runs a `transport-config` verb (also Get-/Set-TransportConfig in `postern ems`).
pub async fn transport_config_exec(node: &Path, cmd: TransportConfigCommand) -> anyhow::Result<Reply> {
    let mut c = client(node).await?;
    let (current, read) = match get_read(&mut c, ObjectKind::TransportConfig, "").await? {
        (ReplicatedObject::TransportConfig(t), read) => (t, read),
        (_, read) => (TransportConfig::default(), read),
    };
    match cmd {
        TransportConfigCommand::Get { json } => {
            let value = serde_json::to_value(&current)?;
            Ok(records(
                vec![record_from(&value, &transport_fields())],
                json,
                false,
            ))
        }
        TransportConfigCommand::Set(a) => {
            let mut t = current;
            if let Some(l) = a.tls_send_domain_secure_list {
                t.tls_send_domain_secure_list = domains(&l)?;
            }
            if let Some(l) = a.tls_receive_domain_secure_list {
                t.tls_receive_domain_secure_list = domains(&l)?;
            }
            if let Some(v) = a.max_message_size {
                t.max_message_size = v;
            }
            if let Some(v) = a.max_recipients {
                t.max_recipients = v;
            }
            if let Some(v) = a.message_expiration {
                t.message_expiration_secs = v;
            }
            if let Some(v) = a.delay_notification {
                t.delay_notification_secs = v;
            }
            if a.mta_sts_mode.is_some() || a.mta_sts_mx.is_some() || a.mta_sts_max_age.is_some() {
                let mut p = t.mta_sts.take().unwrap_or(postern_model::MtaStsPublication {
                    mode: postern_model::MtaStsPublishMode::Testing,
                    mx: Vec::new(),
                    max_age_secs: 7 * 24 * 3600,
                });
                if let Some(mode) = &a.mta_sts_mode {
                    p.mode = mode.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                }
                if let Some(mx) = a.mta_sts_mx {
                    p.mx = mx
                        .iter()
                        .map(|m| m.trim().to_ascii_lowercase())
                        .filter(|m| !m.is_empty())
                        .collect();
                }
                if let Some(age) = a.mta_sts_max_age {
                    p.max_age_secs = age;
                }
                if p.mx.is_empty() && p.mode != postern_model::MtaStsPublishMode::None {
                    anyhow::bail!("an MTA-STS policy needs --mta-sts-mx (the MX host names senders may use)");
                }
                t.mta_sts = Some(p);
            }
            put_read(&mut c, &ReplicatedObject::TransportConfig(t), false, false, read).await?;
            Ok(Reply::Done)
        }
    }
}

// ---------------------------------------------------------------- accepted-domain, mailbox

/// `accepted-domain` verbs.
#[derive(Subcommand)]
pub enum AcceptedDomainCommand {
    /// Accept mail for a domain (New-AcceptedDomain).
    New {
        /// The domain.
        name: String,
        /// authoritative (default), internal-relay or external-relay.
        #[arg(long = "type", default_value = "authoritative")]
        kind: String,
        /// Where its mailboxes get their mail: maildir (each mailbox's
        /// home hub, the default) or lmtp://HOST:PORT (a mailbox server).
        #[arg(long, default_value = "maildir")]
        delivery: String,
    },
    /// Change an accepted domain (Set-AcceptedDomain); only the flags given
    /// change.
    Set {
        /// The domain.
        name: String,
        /// authoritative, internal-relay or external-relay.
        #[arg(long = "type")]
        kind: Option<String>,
        /// maildir or lmtp://HOST:PORT. Mail already queued for the domain
        /// follows the new setting at its next attempt.
        #[arg(long)]
        delivery: Option<String>,
    },
    /// List accepted domains.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop accepting a domain.
    Remove {
        /// The domain.
        name: String,
    },
}

fn parse_delivery(text: &str) -> anyhow::Result<MailboxDelivery> {
    text.parse().with_context(|| format!("bad --delivery {text:?}"))
}

/// Runs an `accepted-domain` verb.
pub async fn accepted_domain(node: &Path, cmd: AcceptedDomainCommand) -> anyhow::Result<()> {
    let mut c = client(node).await?;
    match cmd {
        AcceptedDomainCommand::New { name, kind, delivery } => {
            let kind: AcceptedDomainKind = kind.parse().map_err(|e: String| anyhow!(e))?;
            let d = AcceptedDomain {
                name: Domain::parse(&name).with_context(|| format!("bad domain {name:?}"))?,
                kind,
                delivery: parse_delivery(&delivery)?,
            };
            put(&mut c, &ReplicatedObject::AcceptedDomain(d), true, false).await
        }
        AcceptedDomainCommand::Set { name, kind, delivery } => {
            let ReplicatedObject::AcceptedDomain(mut d) =
                get(&mut c, ObjectKind::AcceptedDomain, &name).await?
            else {
                return Err(anyhow!(
                    "the hub answered with another kind of object for {name:?}"
                ));
            };
            if let Some(kind) = kind {
                d.kind = kind.parse().map_err(|e: String| anyhow!(e))?;
            }
            if let Some(delivery) = delivery {
                d.delivery = parse_delivery(&delivery)?;
            }
            put(&mut c, &ReplicatedObject::AcceptedDomain(d), false, true).await
        }
        AcceptedDomainCommand::List { json } => {
            let items = list(&mut c, ObjectKind::AcceptedDomain).await?;
            let mut records = Vec::with_capacity(items.len());
            for item in items {
                let ReplicatedObject::AcceptedDomain(d) = decode(&item)
                    .map_err(|e| anyhow!("the hub sent an accepted domain this CLI cannot read: {e}"))?
                else {
                    continue;
                };
                let value = serde_json::to_value(&d)?;
                let delivery = d.delivery.to_string();
                records.push(
                    record_from(&value, &[("Name", "name"), ("DomainType", "kind")]).keyed(
                        "Delivery",
                        "delivery",
                        &delivery,
                        Value::String(delivery.clone()),
                    ),
                );
            }
            print_records(&records, json, true)
        }
        AcceptedDomainCommand::Remove { name } => remove(&mut c, ObjectKind::AcceptedDomain, &name).await,
    }
}

/// `mailbox` verbs.
#[derive(Subcommand)]
pub enum MailboxCommand {
    /// Create a mailbox (its domain must be an authoritative accepted domain).
    New {
        /// The address.
        address: String,
        /// Its home hub (name or FQDN), whose Maildir holds it; default:
        /// the hub this command talks to.
        #[arg(long)]
        hub: Option<String>,
    },
    /// Show a mailbox and its home.
    Get {
        /// The address.
        address: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move a mailbox's home to another hub: new mail goes there; mail
    /// already delivered stays in the old hub's Maildir.
    Set {
        /// The address.
        address: String,
        /// The new home hub (name or FQDN).
        #[arg(long)]
        hub: String,
    },
    /// List mailboxes (addresses and homes on a hub, hashes on an edge).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a mailbox.
    Remove {
        /// The address.
        address: String,
    },
}

/// The fields of a mailbox record, as a hub or an edge shows it.
fn mailbox_record(value: Value) -> Record {
    match value {
        Value::String(hash) => record_from(&json!({ "hash": hash }), &[("Hash", "hash")]),
        v => record_from(
            &v,
            &[
                ("Address", "address"),
                ("Home", "home"),
                ("Hub", "hub"),
                ("Hash", "hash"),
            ],
        ),
    }
}

async fn put_mailbox(c: &mut ConfigClient<Channel>, body: Value, create: bool) -> anyhow::Result<()> {
    c.put_object(pb::PutObjectRequest {
        kind: ObjectKind::Mailbox.to_string(),
        json: body.to_string(),
        create_only: create,
        replace_only: !create,
        read_version: 0,
    })
    .await
    .map_err(status)?;
    Ok(())
}

/// Runs a `mailbox` verb.
pub async fn mailbox(node: &Path, cmd: MailboxCommand) -> anyhow::Result<()> {
    let mut c = client(node).await?;
    match cmd {
        MailboxCommand::New { address, hub } => {
            put_mailbox(&mut c, json!({ "address": address, "hub": hub }), true).await
        }
        MailboxCommand::Set { address, hub } => {
            put_mailbox(&mut c, json!({ "address": address, "hub": hub }), false).await
        }
        MailboxCommand::Get { address, json } => {
            let o = c
                .get_object(pb::ObjectRef {
                    kind: ObjectKind::Mailbox.to_string(),
                    name: address,
                })
                .await
                .map_err(status)?
                .into_inner();
            let value: Value =
                serde_json::from_str(&o.json).context("the node sent a mailbox that is not JSON")?;
            print_records(&[mailbox_record(value)], json, false)
        }
        MailboxCommand::List { json } => {
            let items = list(&mut c, ObjectKind::Mailbox).await?;
            let records: Vec<Record> = items
                .iter()
                .filter_map(|o| serde_json::from_str::<Value>(&o.json).ok())
                .map(mailbox_record)
                .collect();
            print_records(&records, json, true)
        }
        MailboxCommand::Remove { address } => remove(&mut c, ObjectKind::Mailbox, &address).await,
    }
}

// ---------------------------------------------------------------- send-connector

/// `send-connector` verbs.
#[derive(Subcommand)]
pub enum SendConnectorCommand {
    /// Create a send connector (New-SendConnector).
    New(SendConnectorArgs),
    /// Change a send connector (Set-SendConnector); only the flags given change.
    Set(SendConnectorArgs),
    /// Show one (Get-SendConnector NAME | FL).
    Get {
        /// The connector's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List send connectors.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a send connector.
    Remove {
        /// The connector's name.
        name: String,
    },
}

/// New-/Set-SendConnector's flags.
#[derive(Args)]
pub struct SendConnectorArgs {
    /// The connector's name.
    name: String,
    /// With `set`: refuse the change when the connector changed after
    /// configuration version N (the HubVersion your read saw); default:
    /// the version this command reads.
    #[arg(long)]
    read_version: Option<u64>,
    /// Address spaces `domain;cost` (`*` for all), comma-separated.
    #[arg(long, value_delimiter = ',')]
    address_spaces: Option<Vec<String>>,
    /// Route by MX records.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    dns_routing_enabled: Option<bool>,
    /// Smart hosts (`host` or `host:port`), comma-separated; turns DNS routing off.
    #[arg(long, value_delimiter = ',')]
    smart_hosts: Option<Vec<String>>,
    /// Destination port.
    #[arg(long)]
    port: Option<u16>,
    /// EHLO name and certificate name (empty: the node's FQDN).
    #[arg(long)]
    fqdn: Option<String>,
    /// Refuse to send in plain text.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    require_tls: Option<bool>,
    /// Never use STARTTLS.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    ignore_starttls: Option<bool>,
    /// Apply domain security to the send list's domains.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    domain_secure_enabled: Option<bool>,
    /// encryption-only, certificate-validation or domain-validation.
    #[arg(long)]
    tls_auth_level: Option<String>,
    /// The name the certificate must carry for domain validation.
    #[arg(long)]
    tls_domain: Option<String>,
    /// none or verbose.
    #[arg(long)]
    protocol_logging_level: Option<String>,
    /// Edges that send through this connector, comma-separated.
    #[arg(long, value_delimiter = ',')]
    source_edges: Option<Vec<String>>,
    /// Whether the connector is used.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    enabled: Option<bool>,
}

fn apply_send_args(c: &mut SendConnector, a: SendConnectorArgs) -> anyhow::Result<()> {
    if let Some(spaces) = a.address_spaces {
        c.address_spaces = spaces
            .iter()
            .map(|s| AddressSpace::parse(s).map_err(|e| anyhow!(e)))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(hosts) = a.smart_hosts {
        c.smart_hosts = hosts.into_iter().filter(|h| !h.trim().is_empty()).collect();
        if !c.smart_hosts.is_empty() && a.dns_routing_enabled.is_none() {
            c.dns_routing_enabled = false;
        }
    }
    if let Some(v) = a.dns_routing_enabled {
        c.dns_routing_enabled = v;
    }
    if let Some(v) = a.port {
        c.port = v;
    }
    if let Some(v) = a.fqdn {
        c.fqdn = if v.trim().is_empty() {
            None
        } else {
            Some(Domain::parse(&v).context("bad --fqdn")?)
        };
    }
    if let Some(v) = a.require_tls {
        c.require_tls = v;
    }
    if let Some(v) = a.ignore_starttls {
        c.ignore_starttls = v;
    }
    if let Some(v) = a.domain_secure_enabled {
        c.domain_secure_enabled = v;
    }
    if let Some(v) = a.tls_auth_level {
        c.tls_auth_level = if v.trim().is_empty() {
            None
        } else {
            Some(v.parse::<TlsAuthLevel>().map_err(|e| anyhow!(e))?)
        };
    }
    if let Some(v) = a.tls_domain {
        c.tls_domain = if v.trim().is_empty() {
            None
        } else {
            Some(Domain::parse(&v).context("bad --tls-domain")?)
        };
    }
    if let Some(v) = a.protocol_logging_level {
        c.protocol_logging_level = v
            .parse::<ProtocolLoggingLevel>()
            .map_err(|e| anyhow!(e.to_string()))?;
    }
    if let Some(v) = a.source_edges {
        c.source_edges = v
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| NodeName::parse(e))
            .collect::<Result<_, _>>()?;
    }
    if let Some(v) = a.enabled {
        c.enabled = v;
    }
    Ok(())
}

fn send_connector_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Name", "name"),
        ("AddressSpaces", "address_spaces"),
        ("DNSRoutingEnabled", "dns_routing_enabled"),
        ("SmartHosts", "smart_hosts"),
        ("Port", "port"),
        ("Fqdn", "fqdn"),
        ("RequireTLS", "require_tls"),
        ("IgnoreSTARTTLS", "ignore_starttls"),
        ("DomainSecureEnabled", "domain_secure_enabled"),
        ("TlsAuthLevel", "tls_auth_level"),
        ("TlsDomain", "tls_domain"),
        ("ProtocolLoggingLevel", "protocol_logging_level"),
        ("SourceEdges", "source_edges"),
        ("Enabled", "enabled"),
    ]
}

fn send_connector_value(c: &SendConnector) -> anyhow::Result<Value> {
    let mut v = serde_json::to_value(c)?;
    v["address_spaces"] = json!(
        c.address_spaces
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    Ok(v)
}

/// Runs a `send-connector` verb and prints its reply.
pub async fn send_connector(node: &Path, cmd: SendConnectorCommand) -> anyhow::Result<()> {
    send_connector_exec(node, cmd).await?.print()
}

/// Runs a `send-connector` verb (also the *-SendConnector cmdlets of `postern ems`).
pub async fn send_connector_exec(node: &Path, cmd: SendConnectorCommand) -> anyhow::Result<Reply> {
    let mut c = client(node).await?;
    match cmd {
        SendConnectorCommand::New(a) => {
            let mut connector = SendConnector::new(&a.name, Vec::new());
            apply_send_args(&mut connector, a)?;
            put(&mut c, &ReplicatedObject::SendConnector(connector), true, false).await?;
            Ok(Reply::Done)
        }
        SendConnectorCommand::Set(a) => {
            let (mut connector, read) = match get_read(&mut c, ObjectKind::SendConnector, &a.name).await? {
                (ReplicatedObject::SendConnector(s), read) => (s, a.read_version.unwrap_or(read)),
                _ => return Err(anyhow!("{} is not a send connector", a.name)),
            };
            apply_send_args(&mut connector, a)?;
            put_read(
                &mut c,
                &ReplicatedObject::SendConnector(connector),
                false,
                true,
                read,
            )
            .await?;
            Ok(Reply::Done)
        }
        SendConnectorCommand::Get { name, json } => {
            let ReplicatedObject::SendConnector(s) = get(&mut c, ObjectKind::SendConnector, &name).await?
            else {
                return Err(anyhow!("{name} is not a send connector"));
            };
            Ok(records(
                vec![record_from(&send_connector_value(&s)?, &send_connector_fields())],
                json,
                false,
            ))
        }
        SendConnectorCommand::List { json } => {
            let mut list_records = Vec::new();
            for o in list(&mut c, ObjectKind::SendConnector).await? {
                if let Ok(ReplicatedObject::SendConnector(s)) = decode(&o) {
                    list_records.push(record_from(&send_connector_value(&s)?, &send_connector_fields()));
                }
            }
            Ok(records(list_records, json, true))
        }
        SendConnectorCommand::Remove { name } => {
            remove(&mut c, ObjectKind::SendConnector, &name).await?;
            Ok(Reply::Done)
        }
    }
}

// ---------------------------------------------------------------- trusted-root

/// `trusted-root` verbs.
#[derive(Subcommand)]
pub enum TrustedRootCommand {
    /// Trust a CA certificate for PKI validation (beside the public roots).
    Add {
        /// PEM or DER file of the CA certificate.
        #[arg(long)]
        path: PathBuf,
    },
    /// List the organisation's trusted roots.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a root.
    Remove {
        /// Its thumbprint.
        #[arg(long)]
        thumbprint: String,
    },
}

/// Runs a `trusted-root` verb.
pub async fn trusted_root(node: &Path, cmd: TrustedRootCommand) -> anyhow::Result<()> {
    let mut c = client(node).await?;
    match cmd {
        TrustedRootCommand::Add { path } => {
            let data = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let der = first_certificate(&data)
                .with_context(|| format!("{} holds no certificate", path.display()))?;
            let root = TrustedRoot {
                thumbprint: postern_model::Thumbprint::of_der(&der),
                subject: String::new(),
                der,
            };
            crate::output::line(format_args!("{}", root.thumbprint))?;
            put(&mut c, &ReplicatedObject::TrustedRoot(root), true, false).await
        }
        TrustedRootCommand::List { json } => {
            let records: Vec<Record> = list(&mut c, ObjectKind::TrustedRoot)
                .await?
                .iter()
                .filter_map(|o| serde_json::from_str::<Value>(&o.json).ok())
                .map(|v| record_from(&v, &[("Thumbprint", "thumbprint")]))
                .collect();
            print_records(&records, json, true)
        }
        TrustedRootCommand::Remove { thumbprint } => {
            let tp = postern_model::Thumbprint::parse(&thumbprint)?;
            remove(&mut c, ObjectKind::TrustedRoot, &tp.to_string()).await
        }
    }
}

fn first_certificate(data: &[u8]) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject;
    if data.starts_with(b"-----") || data.windows(11).any(|w| w == b"-----BEGIN ") {
        return rustls_pki_types::CertificateDer::pem_slice_iter(data)
            .next()?
            .ok()
            .map(|c| c.as_ref().to_vec());
    }
    Some(data.to_vec())
}

// ---------------------------------------------------------------- receive-connector

/// `receive-connector` verbs (on the node that owns the connector).
#[derive(Subcommand)]
pub enum ReceiveConnectorCommand {
    /// Create a receive connector (New-ReceiveConnector).
    New(ReceiveConnectorArgs),
    /// Change one (Set-ReceiveConnector); only the flags given change.
    Set(ReceiveConnectorArgs),
    /// Show one.
    Get {
        /// The connector's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List this node's receive connectors.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove one.
    Remove {
        /// The connector's name.
        name: String,
    },
}

/// New-/Set-ReceiveConnector's flags.
#[derive(Args)]
pub struct ReceiveConnectorArgs {
    /// The connector's name.
    name: String,
    /// `ip:port` bindings, comma-separated.
    #[arg(long, value_delimiter = ',')]
    bindings: Option<Vec<String>>,
    /// Client address ranges allowed (`10.0.0.0/8`), comma-separated; empty for all.
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    remote_ip_ranges: Option<Vec<String>>,
    /// tls and/or none, comma-separated.
    #[arg(long, value_delimiter = ',')]
    auth_mechanism: Option<Vec<String>>,
    /// anonymous, partners, org-servers, clients; comma-separated.
    #[arg(long, value_delimiter = ',')]
    permission_groups: Option<Vec<String>>,
    /// Refuse MAIL before STARTTLS.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    require_tls: Option<bool>,
    /// Apply domain security to senders on the receive list.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    domain_secure_enabled: Option<bool>,
    /// Greeting and certificate name (empty: the node's FQDN).
    #[arg(long)]
    fqdn: Option<String>,
    /// none or verbose.
    #[arg(long)]
    protocol_logging_level: Option<String>,
    /// Largest message in bytes.
    #[arg(long)]
    max_message_size: Option<u64>,
    /// DMARC failures of mail from outside: none (stamp only) or honour
    /// (p=reject refused with 550 5.7.1, p=quarantine marked).
    #[arg(long)]
    dmarc_enforcement: Option<String>,
    /// Sessions at once, or `unlimited` (default 5000); over it, 421 4.3.2.
    #[arg(long)]
    max_inbound_connection: Option<CountLimit>,
    /// Sessions at once from one address, or `unlimited` (default 20).
    #[arg(long)]
    max_inbound_connection_per_source: Option<CountLimit>,
    /// Sessions at once from one address, as a percentage (1-100) of the
    /// sessions still available (default 2).
    #[arg(long)]
    max_inbound_connection_percentage_per_source: Option<u8>,
    /// A session's whole life, hh:mm:ss or 90s/5m (edge 00:05:00, hub 00:10:00).
    #[arg(long)]
    connection_timeout: Option<TimeSpan>,
    /// Silence allowed between reads (edge 00:01:00, hub 00:05:00).
    #[arg(long)]
    connection_inactivity_timeout: Option<TimeSpan>,
    /// 5xx replies before 421 4.7.0 and close, or `unlimited` (default 5).
    #[arg(long)]
    max_protocol_errors: Option<CountLimit>,
    /// Delay of 5xx replies to unauthenticated clients (default 00:00:05; 0 for none).
    #[arg(long)]
    tarpit_interval: Option<TimeSpan>,
}

fn apply_receive_args(
    c: &mut postern_model::ReceiveConnector,
    a: ReceiveConnectorArgs,
) -> anyhow::Result<()> {
    if let Some(v) = a.bindings {
        c.bindings = v;
    }
    if let Some(v) = a.remote_ip_ranges {
        c.remote_ip_ranges = v
            .iter()
            .filter(|r| !r.trim().is_empty())
            .map(|r| r.parse::<IpRange>())
            .collect::<Result<_, _>>()?;
    }
    if let Some(v) = a.auth_mechanism {
        c.auth_mechanism = v
            .iter()
            .map(|m| m.parse().map_err(|e: String| anyhow!(e)))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(v) = a.permission_groups {
        c.permission_groups = v
            .iter()
            .map(|m| m.parse().map_err(|e: String| anyhow!(e)))
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(v) = a.require_tls {
        c.require_tls = v;
    }
    if let Some(v) = a.domain_secure_enabled {
        c.domain_secure_enabled = v;
    }
    if let Some(v) = a.fqdn {
        c.fqdn = if v.trim().is_empty() {
            None
        } else {
            Some(Domain::parse(&v).context("bad --fqdn")?)
        };
    }
    if let Some(v) = a.protocol_logging_level {
        c.protocol_logging_level = v
            .parse::<ProtocolLoggingLevel>()
            .map_err(|e| anyhow!(e.to_string()))?;
    }
    if let Some(v) = a.max_message_size {
        c.max_message_size = Some(v);
    }
    if let Some(v) = a.dmarc_enforcement {
        c.dmarc_enforcement = v.parse().map_err(|e: String| anyhow!(e))?;
    }
    let l = &mut c.limits;
    l.max_inbound_connection = a.max_inbound_connection.or(l.max_inbound_connection);
    l.max_inbound_connection_per_source = a
        .max_inbound_connection_per_source
        .or(l.max_inbound_connection_per_source);
    l.max_inbound_connection_percentage_per_source = a
        .max_inbound_connection_percentage_per_source
        .or(l.max_inbound_connection_percentage_per_source);
    l.connection_timeout = a.connection_timeout.or(l.connection_timeout);
    l.connection_inactivity_timeout = a
        .connection_inactivity_timeout
        .or(l.connection_inactivity_timeout);
    l.max_protocol_errors = a.max_protocol_errors.or(l.max_protocol_errors);
    l.tarpit_interval = a.tarpit_interval.or(l.tarpit_interval);
    Ok(())
}

fn receive_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Name", "name"),
        ("Bindings", "bindings"),
        ("RemoteIPRanges", "remote_ip_ranges"),
        ("AuthMechanism", "auth_mechanism"),
        ("PermissionGroups", "permission_groups"),
        ("RequireTLS", "require_tls"),
        ("DomainSecureEnabled", "domain_secure_enabled"),
        ("Fqdn", "fqdn"),
        ("ProtocolLoggingLevel", "protocol_logging_level"),
        ("MaxMessageSize", "max_message_size"),
        ("DmarcEnforcement", "dmarc_enforcement"),
        ("MaxInboundConnection", "max_inbound_connection"),
        (
            "MaxInboundConnectionPerSource",
            "max_inbound_connection_per_source",
        ),
        (
            "MaxInboundConnectionPercentagePerSource",
            "max_inbound_connection_percentage_per_source",
        ),
        ("ConnectionTimeout", "connection_timeout"),
        ("ConnectionInactivityTimeout", "connection_inactivity_timeout"),
        ("MaxProtocolErrors", "max_protocol_errors"),
        ("TarpitInterval", "tarpit_interval"),
    ]
}

async fn put_receive(
    c: &mut ConfigClient<Channel>,
    connector: &postern_model::ReceiveConnector,
    create: bool,
    replace: bool,
) -> anyhow::Result<()> {
    c.put_object(pb::PutObjectRequest {
        kind: AdminObjectKind::ReceiveConnector.to_string(),
        json: serde_json::to_string(connector)?,
        create_only: create,
        replace_only: replace,
        read_version: 0,
    })
    .await
    .map_err(status)?;
    Ok(())
}

async fn get_receive(
    c: &mut ConfigClient<Channel>,
    name: &str,
) -> anyhow::Result<postern_model::ReceiveConnector> {
    let o = c
        .get_object(pb::ObjectRef {
            kind: AdminObjectKind::ReceiveConnector.to_string(),
            name: name.into(),
        })
        .await
        .map_err(status)?
        .into_inner();
    Ok(serde_json::from_str(&o.json)?)
}

/// Runs a `receive-connector` verb and prints its reply.
pub async fn receive_connector(node: &Path, cmd: ReceiveConnectorCommand) -> anyhow::Result<()> {
    receive_connector_exec(node, cmd).await?.print()
}

/// Runs a `receive-connector` verb (also the *-ReceiveConnector cmdlets of `postern ems`).
pub async fn receive_connector_exec(node: &Path, cmd: ReceiveConnectorCommand) -> anyhow::Result<Reply> {
    let mut c = client(node).await?;
    match cmd {
        ReceiveConnectorCommand::New(a) => {
            let mut connector = postern_model::ReceiveConnector {
                name: a.name.clone(),
                bindings: Vec::new(),
                remote_ip_ranges: Vec::new(),
                auth_mechanism: vec![postern_model::AuthMechanism::Tls],
                permission_groups: vec![postern_model::PermissionGroup::Anonymous],
                require_tls: false,
                domain_secure_enabled: false,
                fqdn: None,
                protocol_logging_level: ProtocolLoggingLevel::None,
                max_message_size: None,
                dmarc_enforcement: Default::default(),
                limits: postern_model::ReceiveLimits::default(),
            };
            apply_receive_args(&mut connector, a)?;
            put_receive(&mut c, &connector, true, false).await?;
            Ok(Reply::Done)
        }
        ReceiveConnectorCommand::Set(a) => {
            let mut connector = get_receive(&mut c, &a.name).await?;
            apply_receive_args(&mut connector, a)?;
            put_receive(&mut c, &connector, false, true).await?;
            Ok(Reply::Done)
        }
        ReceiveConnectorCommand::Get { name, json } => {
            let connector = get_receive(&mut c, &name).await?;
            Ok(records(
                vec![record_from(&serde_json::to_value(&connector)?, &receive_fields())],
                json,
                false,
            ))
        }
        ReceiveConnectorCommand::List { json } => {
            let mut list_records = Vec::new();
            for o in list(&mut c, AdminObjectKind::ReceiveConnector).await? {
                let v: Value = serde_json::from_str(&o.json)?;
                list_records.push(record_from(&v, &receive_fields()));
            }
            Ok(records(list_records, json, true))
        }
        ReceiveConnectorCommand::Remove { name } => {
            remove(&mut c, AdminObjectKind::ReceiveConnector, &name).await?;
            Ok(Reply::Done)
        }
    }
}
