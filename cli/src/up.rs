//! `postern up`: a whole organisation on loopback — a hub and an edge,
//! subscribed, an accepted domain and a mailbox, client submission on the
//! hub, protocol logging on — printing its endpoints and a first message to
//! send. A second run reuses the data directories. Ctrl-C stops it.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use postern_edge::{Edge, EdgeOptions};
use postern_hub::{Hub, HubOptions};
use postern_model::{
    AcceptedDomain, AcceptedDomainKind, AuthMechanism, Domain, NodeName, NodeRole, PermissionGroup,
    ProtocolLoggingLevel, ReceiveConnector, ReplicatedObject,
};
use postern_proto::admin as pb;
use postern_proto::admin::edge_subscription_file_server::EdgeSubscriptionFile;
use postern_transport::admin as node_admin;
use postern_transport::node::NodeOptions;

/// `postern up` flags.
#[derive(Args)]
pub struct UpArgs {
    /// Where the nodes keep their data (`hub/` and `edge/` below it).
    #[arg(long, env = "POSTERN_UP_DIR", default_value = "./postern-up")]
    data_dir: PathBuf,
    /// The organisation's mail domain.
    #[arg(long, default_value = "contoso.test")]
    domain: String,
    /// The edge's Internet-facing SMTP port; the others follow it
    /// (hub +1, submission +62, EdgeSync +3, metrics +7400/+7401, console +7402).
    #[arg(long, default_value_t = 2525)]
    port: u16,
    /// Log filter.
    #[arg(long, env = "POSTERN_LOG", default_value = "info")]
    log: String,
    /// Log lines as text (colours only on a terminal) or JSON, one object a line.
    #[arg(long, env = "POSTERN_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::logging::LogFormat,
}

fn node(
    dir: PathBuf,
    role: NodeRole,
    name: &str,
    fqdn: &Domain,
    smtp: String,
) -> anyhow::Result<NodeOptions> {
    Ok(NodeOptions {
        data_dir: dir,
        role,
        name: Some(NodeName::parse(name)?),
        fqdn: Some(fqdn.clone()),
        smtp_bind: smtp,
    })
}

/// Runs the organisation until Ctrl-C.
pub async fn run(a: UpArgs) -> anyhow::Result<()> {
    crate::logging::init(&a.log, a.log_format)?;
    // Registered before anything is printed: a Ctrl-C that follows the
    // banner at once must stop the nodes, not kill the process.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for Ctrl-C")?;
    let domain = Domain::parse(&a.domain).context("bad --domain")?;
    let hub_fqdn = Domain::parse(&format!("hub1.{domain}"))?;
    let edge_fqdn = Domain::parse(&format!("edge1.{domain}"))?;
    let p = a.port;
    let port = |offset: u16| p.checked_add(offset).context("--port too high");
    let edge_smtp = format!("127.0.0.1:{p}");
    let hub_smtp = format!("127.0.0.1:{}", port(1)?);
    let submission = format!("127.0.0.1:{}", port(62)?);
    let edgesync = format!("127.0.0.1:{}", port(3)?);
    let hub_metrics = format!("127.0.0.1:{}", port(7400)?);
    let edge_metrics = format!("127.0.0.1:{}", port(7401)?);
    let console = format!("127.0.0.1:{}", port(7402)?);
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("cannot create {}", a.data_dir.display()))?;

    let hub = Hub::start(&HubOptions {
        runtime: postern_transport::runtime::RuntimeOptions {
            node: node(
                a.data_dir.join("hub"),
                NodeRole::Hub,
                "hub1",
                &hub_fqdn,
                hub_smtp.clone(),
            )?,
            metrics_bind: Some(hub_metrics.clone()),
            dns_servers: Vec::new(),
            internet_tls: Default::default(),
        },
        store: Default::default(),
        console_bind: Some(console.clone()),
        certificate_grace: postern_hub::rotation::DEFAULT_GRACE,
    })
    .await?;
    let edge = Edge::start(&EdgeOptions {
        runtime: postern_transport::runtime::RuntimeOptions {
            node: node(
                a.data_dir.join("edge"),
                NodeRole::Edge,
                "edge1",
                &edge_fqdn,
                edge_smtp.clone(),
            )?,
            metrics_bind: Some(edge_metrics.clone()),
            dns_servers: Vec::new(),
            internet_tls: Default::default(),
        },
        edgesync_bind: edgesync.clone(),
    })
    .await?;

    let admin = &hub.admin;
    let mailbox = format!("admin@{domain}");
    if admin.subscriptions.list()?.is_empty() {
        let file = edge
            .admin
            .new_subscription(tonic::Request::new(pb::NewSubscriptionRequest::default()))
            .await
            .map_err(|s| anyhow::anyhow!("{}", s.message()))?
            .into_inner()
            .text;
        admin
            .subscriptions
            .import(&file, None, &admin.config, &admin.trust, &admin.sync)
            .await?;
        let accepted = AcceptedDomain {
            name: domain.clone(),
            kind: AcceptedDomainKind::Authoritative,
            delivery: Default::default(),
        };
        admin
            .config
            .put(ReplicatedObject::AcceptedDomain(accepted), false, false, None)
            .await?;
        admin.subscriptions.refresh_sites(&admin.config).await?;
        admin
            .config
            .put_json(
                postern_model::ObjectKind::Mailbox,
                &serde_json::json!({ "address": mailbox }).to_string(),
                false,
                false,
                None,
            )
            .await?;
        admin.receive_connectors.put(
            ReceiveConnector {
                name: "Client hub1".into(),
                bindings: vec![submission.clone()],
                remote_ip_ranges: ["127.0.0.0/8", "::1/128"]
                    .iter()
                    .map(|r| r.parse())
                    .collect::<Result<_, _>>()?,
                auth_mechanism: vec![AuthMechanism::Tls],
                permission_groups: vec![PermissionGroup::Clients],
                require_tls: false,
                domain_secure_enabled: false,
                fqdn: None,
                protocol_logging_level: ProtocolLoggingLevel::Verbose,
                max_message_size: None,
                dmarc_enforcement: Default::default(),
                limits: postern_model::ReceiveLimits::default(),
            },
            false,
            false,
        )?;
        for store in [&admin.receive_connectors, &edge.admin.receive_connectors] {
            for mut c in store.list()? {
                c.protocol_logging_level = ProtocolLoggingLevel::Verbose;
                store.put(c, false, true)?;
            }
        }
    }

    // Connector changes above rebind the listeners: wait until they answer.
    for addr in [&edge_smtp, &hub_smtp, &submission] {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr.as_str()).await.is_err() {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{addr} does not accept connections"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let hub_dir = a.data_dir.join("hub");
    let edge_dir = a.data_dir.join("edge");
    println!("Postern is up: organisation {domain}, one hub and one edge on loopback.\n");
    println!(
        "  edge1 (Internet)   SMTP {edge_smtp}   EdgeSync {edgesync}   metrics http://{edge_metrics}/metrics"
    );
    println!(
        "  hub1  (internal)   SMTP {hub_smtp} (organisation, mutual TLS)   submission {submission}   metrics http://{hub_metrics}/metrics"
    );
    println!(
        "  data               {} (hub), {} (edge)",
        hub_dir.display(),
        edge_dir.display()
    );
    println!(
        "  mailbox            {mailbox} -> {}/mailboxes/{domain}/admin/Maildir/new\n",
        hub_dir.display()
    );
    println!("Send a first message from the Internet (it travels edge -> hub over mutual TLS):");
    println!("  swaks --server {edge_smtp} --from someone@example.org --to {mailbox} --tls\n");
    if let Some(console) = &hub.console {
        println!(
            "Web console (HTTPS, the hub's self-signed certificate): {}",
            console.url()
        );
        println!("  open it with a one-time login link:");
        println!("  postern --node {} console token\n", hub_dir.display());
    }
    println!("Administer a node:");
    println!("  postern --node {} edgesync test", hub_dir.display());
    println!("  postern --node {} send-connector list\n", edge_dir.display());
    println!("Ctrl-C stops both nodes.");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let hub_router = hub.router();
    let hub_socket = hub.node.admin_socket();
    let hub_stop = stopped(stop_rx.clone());
    let hub_admin = tokio::spawn(async move { node_admin::serve(hub_router, &hub_socket, hub_stop).await });
    let edge_router = edge.router();
    let edge_socket = edge.node.admin_socket();
    let edge_admin =
        tokio::spawn(async move { node_admin::serve(edge_router, &edge_socket, stopped(stop_rx)).await });
    interrupt.recv().await;
    eprintln!("stopping");
    let _ = stop_tx.send(true);
    let _ = hub_admin.await;
    let _ = edge_admin.await;
    edge.mail.shutdown().await;
    hub.mail.shutdown().await;
    Ok(())
}
