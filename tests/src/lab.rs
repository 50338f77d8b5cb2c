//! Lab nodes: an MTA assembled from the transport library with a static
//! router, run in a child process (the test binary re-executed) so tests
//! can `kill -9` and restart it. Used by the SMTP engine's tests until the
//! roles route from their configuration.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use postern_model::{Domain, NodeRole, Thumbprint};
use postern_tls::TrustStore;
use postern_transport::mta::{Mta, MtaConfig};
use postern_transport::node::{Node, NodeOptions};
use postern_transport::routing::{HostPort, NextHop, SmtpHop, StaticRouter, TlsRequirement};
use postern_transport::server::ReceiveConnectorConfig;
use serde::{Deserialize, Serialize};

/// Environment variable carrying a lab node's JSON config to the child.
pub const LAB_ENV: &str = "POSTERN_LAB_NODE";

/// How a lab node is set up.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// FQDN (and certificate name).
    pub fqdn: String,
    /// SMTP binding.
    pub smtp_bind: SocketAddr,
    /// Domains delivered to Maildir.
    pub local_domains: Vec<String>,
    /// Where other mail goes, over organisation mutual TLS.
    pub relay: Option<SocketAddr>,
    /// Thumbprints trusted directly.
    pub trust: Vec<String>,
    /// Require a directly trusted client certificate (an organisation hop).
    pub require_client_cert: bool,
    /// Queue expiration, seconds.
    pub expiration_secs: u64,
    /// Retry interval, seconds.
    pub retry_secs: u64,
    /// A PEM file (certificate chain and key) to import and enable for
    /// SMTP at start, when it is not installed yet.
    #[serde(default)]
    pub import_cert: Option<PathBuf>,
    /// Prometheus endpoint.
    #[serde(default)]
    pub metrics_bind: Option<SocketAddr>,
}

impl LabConfig {
    /// A node in `dir` accepting mail for `local_domains` on a free port.
    pub fn new(dir: &Path, fqdn: &str, local_domains: &[&str]) -> Self {
        Self {
            data_dir: dir.to_path_buf(),
            fqdn: fqdn.to_owned(),
            smtp_bind: free_port(),
            local_domains: local_domains.iter().map(|d| d.to_string()).collect(),
            relay: None,
            trust: Vec::new(),
            require_client_cert: false,
            expiration_secs: 2 * 24 * 3600,
            retry_secs: 1,
            import_cert: None,
            metrics_bind: None,
        }
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr")
}

/// Runs a lab node in this process forever (the child side).
pub fn run_lab_node(config: LabConfig) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let opts = NodeOptions {
            data_dir: config.data_dir.clone(),
            role: NodeRole::Hub,
            name: None,
            fqdn: Some(Domain::parse(&config.fqdn)?),
            smtp_bind: config.smtp_bind.to_string(),
        };
        let (node, _) = Node::open_or_setup(&opts)?;
        if let Some(path) = &config.import_cert {
            let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            match node
                .certs
                .import(&data, "", None, &BTreeSet::from([postern_model::Service::Smtp]))
            {
                Ok(_) | Err(postern_tls::certs::CertError::AlreadyInstalled(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let trust = TrustStore::new(
            config
                .trust
                .iter()
                .map(|t| Thumbprint::parse(t))
                .collect::<Result<Vec<_>, _>>()?,
            &[],
        );
        let fqdn = Domain::parse(&config.fqdn)?;
        let router = StaticRouter {
            local_domains: config
                .local_domains
                .iter()
                .map(|d| Domain::parse(d))
                .collect::<Result<_, _>>()?,
            relay: config.relay.map(|addr| SmtpHop {
                connector: None,
                // One relay per lab node: a connector named after it.
                key: NextHop::connector("relay", None),
                hosts: vec![HostPort {
                    host: addr.ip().to_string(),
                    port: addr.port(),
                }],
                tls: TlsRequirement::ORGANISATION,
                helo: fqdn.clone(),
                protocol_logging_level: postern_model::ProtocolLoggingLevel::Verbose,
                mx_domain: None,
            }),
        };
        let mut connector = ReceiveConnectorConfig::new("Default", config.smtp_bind, fqdn);
        connector.protocol_logging_level = postern_model::ProtocolLoggingLevel::Verbose;
        if config.require_client_cert {
            connector.tls = TlsRequirement::ORGANISATION;
            connector.trusted_org = true;
            // An organisation connector (the bench's load generator opens
            // many sessions from one address).
            connector = connector.without_abuse_limits();
        }
        let mut mta_config = MtaConfig::new(vec![connector], Arc::new(router));
        mta_config.queue.expiration = Duration::from_secs(config.expiration_secs);
        mta_config.queue.retry_schedule = vec![Duration::from_secs(config.retry_secs)];
        mta_config.worker.scan_interval = Duration::from_millis(500);
        mta_config.metrics_bind = config.metrics_bind;
        let mta = Mta::start(&node, trust, mta_config).await?;
        let thumbprint = node
            .certs
            .select_smtp(&config.fqdn)?
            .map(|t| t.to_string())
            .unwrap_or_default();
        println!("\nREADY {} {}", mta.receive_addrs()[0].1, thumbprint);
        std::future::pending::<()>().await;
        Ok(())
    })
}

/// The child side: call first thing in the test named by `LabProcess`
/// (`lab_node_entry`); returns at once unless this process is a lab node.
pub fn lab_entry() {
    if let Ok(json) = std::env::var(LAB_ENV) {
        let config: LabConfig = serde_json::from_str(&json).expect("lab config");
        if let Err(e) = run_lab_node(config) {
            eprintln!("lab node failed: {e:#}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}

/// A lab node in a child process.
pub struct LabProcess {
    child: Child,
    /// Where it receives SMTP.
    pub addr: SocketAddr,
    /// Its SMTP certificate's thumbprint.
    pub thumbprint: String,
}

impl LabProcess {
    /// Starts a lab node by re-running this test binary's `lab_node_entry`
    /// test with the config in the environment; waits for it to listen.
    pub fn start(config: &LabConfig) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let log = std::fs::File::create(config.data_dir.with_extension("log"))?;
        let mut child = Command::new(exe)
            .args(["lab_node_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(LAB_ENV, serde_json::to_string(config)?)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("spawn lab node")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                // The test harness prints its own words before ours on the line.
                if let Some((_, rest)) = line.split_once("READY ") {
                    let _ = tx.send(rest.to_owned());
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let mut parts = line.split_whitespace();
                let addr = parts.next().context("addr")?.parse()?;
                let thumbprint = parts.next().unwrap_or_default().to_owned();
                return Ok(Self {
                    child,
                    addr,
                    thumbprint,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "lab node exited with {status}: {}",
                    std::fs::read_to_string(config.data_dir.with_extension("log")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("lab node did not start");
            }
        }
    }

    /// SIGKILL, no goodbye: what `kill -9` does.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET /metrics from a node's Prometheus endpoint.
pub fn scrape(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Makes the node's certificate without starting it (to learn its
/// thumbprint before a peer starts), by running setup in-process.
pub fn setup_only(config: &LabConfig) -> anyhow::Result<String> {
    let opts = NodeOptions {
        data_dir: config.data_dir.clone(),
        role: NodeRole::Hub,
        name: None,
        fqdn: Some(Domain::parse(&config.fqdn)?),
        smtp_bind: config.smtp_bind.to_string(),
    };
    let (node, _) = Node::open_or_setup(&opts)?;
    let tp = node
        .certs
        .select_smtp(&config.fqdn)?
        .map(|t| t.to_string())
        .unwrap_or_default();
    drop(node);
    Ok(tp)
}

/// Message-IDs of every message in the Maildir `new` directories under
/// `mailboxes` for `address`, one entry per file.
pub fn maildir_message_ids(data_dir: &Path, domain: &str, local: &str) -> Vec<String> {
    let new = data_dir
        .join("mailboxes")
        .join(domain)
        .join(local)
        .join("Maildir/new");
    let Ok(entries) = std::fs::read_dir(new) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        {
            ids.push(line[11..].trim().to_owned());
        }
    }
    ids
}
