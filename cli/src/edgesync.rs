//! `postern edge-subscription …` and `postern edgesync start|test`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use postern_proto::admin as pb;
use serde_json::json;

use crate::client::{connect, status};
use crate::output::{Record, Reply, records};
use crate::role_verb::RoleVerb;

/// `edge-subscription` verbs.
#[derive(Subcommand)]
pub enum SubscriptionCommand {
    /// On an edge: write a subscription file (valid 24 hours) for a hub to import.
    New {
        /// Where to write it.
        #[arg(long)]
        file: PathBuf,
        /// Where hubs reach EdgeSync (default: the FQDN and bound port).
        #[arg(long)]
        edgesync_endpoint: Option<String>,
        /// Where hubs send mail to this edge (default: the FQDN and SMTP port).
        #[arg(long)]
        smtp_endpoint: Option<String>,
    },
    /// On a hub: subscribe the edge described by a subscription file.
    Import {
        /// The file the edge wrote.
        #[arg(long)]
        file: PathBuf,
        /// The edge's site (default Default-First-Site-Name).
        #[arg(long)]
        site: Option<String>,
    },
    /// On a hub: list subscribed edges.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// On a hub: remove an edge's subscription.
    Remove {
        /// The edge's name.
        name: String,
    },
}

/// `edgesync` verbs.
#[derive(Subcommand)]
pub enum EdgeSyncCommand {
    /// On a hub: send every edge a full snapshot now (Start-EdgeSynchronization).
    Start,
    /// Per edge: status, versions, lag, last success, last error (Test-EdgeSynchronization).
    Test {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `edge-subscription` verb and prints its reply.
pub async fn subscription(node: &Path, cmd: SubscriptionCommand) -> anyhow::Result<()> {
    subscription_exec(node, cmd).await?.print()
}

/// Runs an `edge-subscription` verb (also New-/Get-/Remove-EdgeSubscription in `postern ems`).
pub async fn subscription_exec(node: &Path, cmd: SubscriptionCommand) -> anyhow::Result<Reply> {
    let text = match &cmd {
        SubscriptionCommand::Import { file, .. } => {
            Some(std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?)
        }
        _ => None,
    };
    let channel = connect(node).await?;
    let mut c = pb::edge_subscriptions_client::EdgeSubscriptionsClient::new(channel.clone());
    match cmd {
        SubscriptionCommand::New {
            file,
            edgesync_endpoint,
            smtp_endpoint,
        } => {
            let mut c = pb::edge_subscription_file_client::EdgeSubscriptionFileClient::new(channel);
            let request = pb::NewSubscriptionRequest {
                edgesync_endpoint: edgesync_endpoint.unwrap_or_default(),
                smtp_endpoint: smtp_endpoint.unwrap_or_default(),
            };
            let reply = RoleVerb::edge("edge-subscription new")
                .call(node, c.new_subscription(request))
                .await?;
            // It carries the bootstrap secret: 0600.
            postern_transport::private_files::write_private(&file, reply.text.as_bytes())
                .with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!("wrote {}; import it on a hub within 24 hours", file.display());
            Ok(Reply::Done)
        }
        SubscriptionCommand::Import { site, .. } => {
            let request = pb::ImportSubscriptionRequest {
                text: text.unwrap_or_default(),
                site: site.unwrap_or_default(),
            };
            let info = RoleVerb::hub("edge-subscription import")
                .call(node, c.import_subscription(request))
                .await?;
            Ok(records(vec![record(&info)], false, false))
        }
        SubscriptionCommand::List { json } => {
            let list = RoleVerb::hub("edge-subscription list")
                .call(node, c.list_subscriptions(pb::ListSubscriptionsRequest {}))
                .await?;
            Ok(records(
                list.subscriptions.iter().map(record).collect(),
                json,
                true,
            ))
        }
        SubscriptionCommand::Remove { name } => {
            RoleVerb::hub("edge-subscription remove")
                .call(
                    node,
                    c.remove_subscription(pb::RemoveSubscriptionRequest { edge_name: name }),
                )
                .await?;
            Ok(Reply::Done)
        }
    }
}

fn record(s: &pb::SubscriptionInfo) -> Record {
    Record::new()
        .field("Name", &s.edge_name, json!(s.edge_name))
        .field("Fqdn", &s.fqdn, json!(s.fqdn))
        .field("Site", &s.site, json!(s.site))
        .field(
            "EdgeSyncEndpoint",
            &s.edgesync_endpoint,
            json!(s.edgesync_endpoint),
        )
        .field("SmtpEndpoint", &s.smtp_endpoint, json!(s.smtp_endpoint))
        .field("Thumbprint", &s.thumbprint, json!(s.thumbprint))
        .field("Created", &s.created, json!(s.created))
        .field("Bootstrapped", &s.bootstrapped.to_string(), json!(s.bootstrapped))
}

/// Runs an `edgesync` verb and prints its reply.
pub async fn edgesync(node: &Path, cmd: EdgeSyncCommand) -> anyhow::Result<()> {
    edgesync_exec(node, cmd).await?.print()
}

/// Runs an `edgesync` verb (also Start-/Test-EdgeSynchronization in `postern ems`).
pub async fn edgesync_exec(node: &Path, cmd: EdgeSyncCommand) -> anyhow::Result<Reply> {
    let channel = connect(node).await?;
    match cmd {
        EdgeSyncCommand::Start => {
            let mut c = pb::edge_sync_start_client::EdgeSyncStartClient::new(channel);
            RoleVerb::hub("edgesync start")
                .call(node, c.start_sync(pb::StartSyncRequest {}))
                .await?;
            Ok(Reply::Done)
        }
        EdgeSyncCommand::Test { json } => {
            let mut c = pb::edge_sync_status_client::EdgeSyncStatusClient::new(channel);
            let list = c
                .test_sync(pb::TestSyncRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let edges: Vec<Record> = list
                .edges
                .iter()
                .map(|s| {
                    Record::new()
                        .field("Edge", &s.edge, json!(s.edge))
                        .field("Status", &s.status, json!(s.status))
                        .field("HubVersion", &s.hub_version.to_string(), json!(s.hub_version))
                        .field("EdgeVersion", &s.edge_version.to_string(), json!(s.edge_version))
                        .field("Lag", &s.lag.to_string(), json!(s.lag))
                        .field("LastSuccess", &s.last_success, json!(s.last_success))
                        .field("LastError", &s.last_error, json!(s.last_error))
                        .field(
                            "SnapshotsSent",
                            &s.snapshots_sent.to_string(),
                            json!(s.snapshots_sent),
                        )
                        .field("DeltasSent", &s.deltas_sent.to_string(), json!(s.deltas_sent))
                        .field("StoreId", &s.store_id, json!(s.store_id))
                        .field(
                            "SnapshotsApplied",
                            &s.snapshots_applied.to_string(),
                            json!(s.snapshots_applied),
                        )
                        .field("LeaseHolder", &s.lease_holder, json!(s.lease_holder))
                        .field(
                            "LeaseRevision",
                            &s.lease_revision.to_string(),
                            json!(s.lease_revision),
                        )
                        .field("Trust", &s.trust, json!(s.trust))
                        .field("TrustDetail", &s.trust_detail, json!(s.trust_detail))
                        .field("EdgeCertificate", &s.edge_certificate, json!(s.edge_certificate))
                        .field(
                            "EdgeCertificateExpires",
                            &s.edge_certificate_expires,
                            json!(s.edge_certificate_expires),
                        )
                        .field(
                            "EdgeCertificateDaysLeft",
                            &s.edge_certificate_days_left.to_string(),
                            json!(s.edge_certificate_days_left),
                        )
                })
                .collect();
            Ok(records(edges, json, true))
        }
    }
}
