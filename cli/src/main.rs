//! `postern`: runs a hub or edge node, and administers a running node over
//! its admin socket. Arguments are parsed here; the work is in the libraries.

mod cert;
mod client;
mod console;
mod dkim;
mod edgesync;
mod ems;
mod logging;
mod objects;
mod output;
mod role_verb;
mod run;
mod tlsrpt;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Postern: an open mail transport cluster with Exchange-style domain security.
#[derive(Parser)]
#[command(name = "postern", version, about)]
struct Cli {
    /// The data directory of the node to administer.
    #[arg(long, global = true, env = "POSTERN_NODE", default_value = "./postern-data")]
    node: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A whole organisation on loopback: a hub and an edge, subscribed, mail flowing.
    Up(up::UpArgs),
    /// Run a hub node (internal: authoritative configuration, mailboxes).
    Hub {
        #[command(subcommand)]
        command: run::RoleCommand,
    },
    /// Run an edge node (perimeter: Internet-facing, replicated configuration).
    Edge {
        #[command(subcommand)]
        command: run::RoleCommand,
    },
    /// Performance counters (the MSExchange Secure Mail Transport ones among them).
    Counters {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The node's mail queue.
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Show the node's identity.
    NodeInfo {
        /// Print JSON instead of a list.
        #[arg(long)]
        json: bool,
    },
    /// Manage certificates (New-/Import-/Enable-/Get-/Remove-ExchangeCertificate).
    Cert {
        #[command(subcommand)]
        command: cert::CertCommand,
    },
    /// The organisation's transport configuration (Get-/Set-TransportConfig).
    TransportConfig {
        #[command(subcommand)]
        command: objects::TransportConfigCommand,
    },
    /// Domains the organisation accepts mail for.
    AcceptedDomain {
        #[command(subcommand)]
        command: objects::AcceptedDomainCommand,
    },
    /// Mailboxes (hub delivery; edges hold their hashes for recipient filtering).
    Mailbox {
        #[command(subcommand)]
        command: objects::MailboxCommand,
    },
    /// Send connectors (New-/Set-/Get-/Remove-SendConnector).
    SendConnector {
        #[command(subcommand)]
        command: objects::SendConnectorCommand,
    },
    /// Receive connectors of this node (New-/Set-/Get-/Remove-ReceiveConnector).
    ReceiveConnector {
        #[command(subcommand)]
        command: objects::ReceiveConnectorCommand,
    },
    /// The organisation's own trust anchors for PKI validation.
    TrustedRoot {
        #[command(subcommand)]
        command: objects::TrustedRootCommand,
    },
    /// Edge subscriptions (New-EdgeSubscription on the edge, import on a hub).
    EdgeSubscription {
        #[command(subcommand)]
        command: edgesync::SubscriptionCommand,
    },
    /// EdgeSync operations (Start-/Test-EdgeSynchronization).
    Edgesync {
        #[command(subcommand)]
        command: edgesync::EdgeSyncCommand,
    },
    /// DKIM keys of a hub: new, import, enable, list, remove.
    Dkim {
        #[command(subcommand)]
        command: dkim::DkimCommand,
    },
    /// TLS reporting (RFC 8460): today's figures, the daily reports on demand.
    TlsReport {
        #[command(subcommand)]
        command: tlsrpt::TlsReportCommand,
    },
    /// The hub's web console.
    Console {
        #[command(subcommand)]
        command: console::ConsoleCommand,
    },
    /// Run Exchange Management Shell lines (the seeds' cmdlets) as written.
    Ems(ems::EmsArgs),
}

#[derive(Subcommand)]
enum QueueCommand {
    /// List queued messages and each recipient's state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Retry now: end a next hop's back-off (every hop without --hop).
    Retry {
        /// The next hop, as `queue list` shows it.
        #[arg(long)]
        hop: Option<String>,
    },
    /// Remove a queued message (Remove-Message); its sender gets a
    /// non-delivery report for the recipients still waiting, as Exchange's
    /// default -WithNDR $true.
    Remove {
        /// The message's id, as `queue list` shows it.
        #[arg(long)]
        id: String,
        /// Remove silently, without a report (-WithNDR $false).
        #[arg(long)]
        without_ndr: bool,
    },
}

fn main() -> ExitCode {
    // Nodes and what the CLI writes for them (subscription files) are private.
    postern_transport::private_files::use_private_umask();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Hub { command } => run::run(postern_model::NodeRole::Hub, command).await,
            Command::Edge { command } => run::run(postern_model::NodeRole::Edge, command).await,
            Command::NodeInfo { json } => client::node_info(&cli.node, json).await,
            Command::Counters { json } => client::counters(&cli.node, json).await,
            Command::Queue {
                command: QueueCommand::List { json },
            } => client::queue(&cli.node, json).await,
            Command::Queue {
                command: QueueCommand::Retry { hop },
            } => client::queue_retry(&cli.node, hop).await,
            Command::Queue {
                command: QueueCommand::Remove { id, without_ndr },
            } => client::queue_remove(&cli.node, id, without_ndr).await,
            Command::Cert { command } => cert::run(&cli.node, command).await,
            Command::TransportConfig { command } => objects::transport_config(&cli.node, command).await,
            Command::AcceptedDomain { command } => objects::accepted_domain(&cli.node, command).await,
            Command::Mailbox { command } => objects::mailbox(&cli.node, command).await,
            Command::SendConnector { command } => objects::send_connector(&cli.node, command).await,
            Command::TrustedRoot { command } => objects::trusted_root(&cli.node, command).await,
            Command::ReceiveConnector { command } => objects::receive_connector(&cli.node, command).await,
            Command::EdgeSubscription { command } => edgesync::subscription(&cli.node, command).await,
            Command::Edgesync { command } => edgesync::edgesync(&cli.node, command).await,
            Command::Dkim { command } => dkim::run(&cli.node, command).await,
            Command::TlsReport { command } => tlsrpt::run(&cli.node, command).await,
            Command::Console { command } => console::run(&cli.node, command).await,
            Command::Ems(args) => ems::run(&cli.node, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `postern … list | head -1`: the reader has what it wanted.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", client::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
