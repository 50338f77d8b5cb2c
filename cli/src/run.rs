//! `postern hub run` / `postern edge run`: flags (or `POSTERN_*`
//! variables) into options, then the role library runs until Ctrl-C or
//! SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use postern_model::{Domain, NodeName, NodeRole};
use postern_transport::node::NodeOptions;
use postern_transport::runtime::RuntimeOptions;

/// Subcommands of `hub` and `edge`.
#[derive(Subcommand)]
pub enum RoleCommand {
    /// Set the node up on first start, then serve.
    Run(RunArgs),
}

/// Node flags; each also reads a `POSTERN_*` variable.
#[derive(Args)]
pub struct RunArgs {
    /// Data directory (created and set up on first start).
    #[arg(long, env = "POSTERN_DATA_DIR", default_value = "./postern-data")]
    data_dir: PathBuf,
    /// Node name (default: first label of the FQDN).
    #[arg(long, env = "POSTERN_NAME")]
    name: Option<String>,
    /// Node FQDN (default: the hostname).
    #[arg(long, env = "POSTERN_FQDN")]
    fqdn: Option<String>,
    /// Binding of the default receive connector, made at setup.
    #[arg(long, env = "POSTERN_SMTP_BIND", default_value = "0.0.0.0:25")]
    smtp_bind: String,
    /// EdgeSync binding (edge only).
    #[arg(long, env = "POSTERN_EDGESYNC_BIND", default_value = "0.0.0.0:50636")]
    edgesync_bind: String,
    /// HTTP binding for /metrics (Prometheus), /healthz and /readyz.
    #[arg(long, env = "POSTERN_METRICS_BIND")]
    metrics_bind: Option<String>,
    /// Web console binding, HTTPS with the node's SMTP certificate (hub only; off unless set).
    #[arg(long, env = "POSTERN_CONSOLE_BIND")]
    console_bind: Option<String>,
    /// DNS servers for MX lookups (ip:port, comma-separated; default: /etc/resolv.conf).
    #[arg(long = "dns-server", env = "POSTERN_DNS_SERVER", value_delimiter = ',')]
    dns_servers: Vec<std::net::SocketAddr>,
    /// Hub configuration store: `sled` (one hub, the default) or `etcd`
    /// (several hubs of one organisation).
    #[arg(long, env = "POSTERN_STORE", value_enum, default_value_t = StoreKind::Sled)]
    store: StoreKind,
    /// etcd client endpoints (URL or host:port, comma-separated), with `--store etcd`.
    #[arg(long, env = "POSTERN_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// The organisation's etcd key prefix (default: /postern/<the domain of --fqdn>/).
    #[arg(long, env = "POSTERN_ETCD_PREFIX")]
    etcd_prefix: Option<String>,
    /// Hub: seconds a replaced certificate (an edge's or the hub's) stays
    /// trusted after a rotation (default one day).
    #[arg(long, env = "POSTERN_CERTIFICATE_GRACE", default_value_t = 86400)]
    certificate_grace: u64,
    /// DANE for mail routed by MX: the DNSSEC trust anchor, `root` (the
    /// root zone's keys) or a file of DNSKEY records (a lab's own zone).
    /// Unset: DANE is off.
    #[arg(long, env = "POSTERN_DNSSEC_TRUST_ANCHOR")]
    dnssec_trust_anchor: Option<String>,
    /// The HTTPS port MTA-STS policies are fetched from; 0 turns MTA-STS off.
    #[arg(long, env = "POSTERN_MTA_STS_PORT", default_value_t = 443)]
    mta_sts_port: u16,
    /// Serve the organisation's MTA-STS policy over HTTPS here (edge;
    /// e.g. 0.0.0.0:443), with the node's SMTP certificate.
    #[arg(long, env = "POSTERN_MTA_STS_BIND")]
    mta_sts_bind: Option<std::net::SocketAddr>,
    /// Log filter (tracing's EnvFilter syntax).
    #[arg(long, env = "POSTERN_LOG", default_value = "info")]
    log: String,
    /// Log lines as text (colours only on a terminal) or JSON, one object a line.
    #[arg(long, env = "POSTERN_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::logging::LogFormat,
}

/// Where a hub keeps its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// sled in the data directory.
    Sled,
    /// An etcd v3 cluster shared by the organisation's hubs.
    Etcd,
}

/// Runs the node until a shutdown signal.
pub async fn run(role: NodeRole, command: RoleCommand) -> anyhow::Result<()> {
    let RoleCommand::Run(args) = command;
    crate::logging::init(&args.log, args.log_format)?;
    let internet = internet_tls(&args);
    let store = match args.store {
        StoreKind::Sled => postern_hub::StoreChoice::Sled,
        StoreKind::Etcd => {
            anyhow::ensure!(
                !args.etcd_endpoints.is_empty(),
                "--store etcd needs --etcd-endpoints (or POSTERN_ETCD_ENDPOINTS)"
            );
            let prefix = match &args.etcd_prefix {
                Some(p) => p.clone(),
                None => {
                    let org = args
                        .fqdn
                        .as_deref()
                        .and_then(|f| f.split_once('.'))
                        .map_or("default", |(_, d)| d);
                    format!("/postern/{}/", org.to_ascii_lowercase())
                }
            };
            postern_hub::StoreChoice::Etcd {
                endpoints: args.etcd_endpoints.clone(),
                prefix,
            }
        }
    };
    let node = NodeOptions {
        data_dir: args.data_dir,
        role,
        name: args.name.as_deref().map(NodeName::parse).transpose()?,
        fqdn: args
            .fqdn
            .as_deref()
            .map(Domain::parse)
            .transpose()
            .context("bad --fqdn")?,
        smtp_bind: args.smtp_bind,
    };
    let runtime = RuntimeOptions {
        node,
        metrics_bind: args.metrics_bind,
        dns_servers: args.dns_servers,
        internet_tls: internet,
    };
    match role {
        NodeRole::Hub => {
            let opts = postern_hub::HubOptions {
                runtime,
                store,
                console_bind: args.console_bind,
                certificate_grace: std::time::Duration::from_secs(args.certificate_grace),
            };
            postern_hub::run(opts, shutdown_signal()).await?;
        }
        NodeRole::Edge => {
            anyhow::ensure!(
                args.console_bind.is_none(),
                "--console-bind is for hubs: the console shows the organisation from a hub"
            );
            let opts = postern_edge::EdgeOptions {
                runtime,
                edgesync_bind: args.edgesync_bind,
            };
            postern_edge::run(opts, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// DANE and MTA-STS as the flags say.
fn internet_tls(args: &RunArgs) -> postern_transport::internet_tls::NodeTlsOptions {
    use postern_transport::internet_tls::TrustAnchor;
    postern_transport::internet_tls::NodeTlsOptions {
        dane_trust_anchor: args.dnssec_trust_anchor.as_deref().map(|a| match a {
            "root" => TrustAnchor::Root,
            path => TrustAnchor::File(path.into()),
        }),
        mta_sts_port: (args.mta_sts_port != 0).then_some(args.mta_sts_port),
        mta_sts_bind: args.mta_sts_bind,
    }
}

/// Completes on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutting down");
}
