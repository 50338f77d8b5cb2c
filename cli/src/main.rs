//! `postern`: runs a hub or edge node, and administers a running node over
//! its admin socket. Arguments are parsed here; the work is in the libraries.

mod cert;
mod client;
mod output;
mod run;

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
}

fn main() -> ExitCode {
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
            Command::Hub { command } => run::run(postern_model::NodeRole::Hub, command).await,
            Command::Edge { command } => run::run(postern_model::NodeRole::Edge, command).await,
            Command::NodeInfo { json } => client::node_info(&cli.node, json).await,
            Command::Cert { command } => cert::run(&cli.node, command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", client::one_line(&e));
            ExitCode::FAILURE
        }
    }
}
