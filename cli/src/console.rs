//! `postern console token`: asks the hub for a one-time login link to its
//! web console and prints it.

use std::path::Path;

use clap::Subcommand;
use postern_proto::admin as pb;

use crate::client::connect;
use crate::role_verb::RoleVerb;

/// The console verbs.
#[derive(Subcommand)]
pub enum ConsoleCommand {
    /// Print a one-time login link (valid 10 minutes) for the hub's console.
    Token {
        /// The session may look but not change anything.
        #[arg(long)]
        read_only: bool,
    },
}

/// Runs a console verb against the node in `node`.
pub async fn run(node: &Path, command: ConsoleCommand) -> anyhow::Result<()> {
    match command {
        ConsoleCommand::Token { read_only } => {
            let mut client = pb::console_client::ConsoleClient::new(connect(node).await?);
            let token = RoleVerb::hub("console token")
                .call(
                    node,
                    client.new_console_token(pb::NewConsoleTokenRequest { read_only }),
                )
                .await?;
            crate::output::line(format_args!("{}", token.url))?;
            eprintln!("(one use, valid until {})", token.expires);
            Ok(())
        }
    }
}
