//! The admin client: a gRPC channel over the node's unix socket, and the
//! conversion of gRPC errors into one-line messages.

use std::path::Path;

use anyhow::{Context, anyhow};
use hyper_util::rt::TokioIo;
use postern_proto::admin as pb;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::output::{Record, Reply, print_records, records};

/// Connects to the admin socket of the node whose data directory is `node`.
pub async fn connect(node: &Path) -> anyhow::Result<Channel> {
    let socket = postern_transport::node::admin_socket_path(node);
    if !socket.exists() {
        return Err(anyhow!(
            "no node is running in {}: {} does not exist (start one with `postern hub run --data-dir {}`, or pass --node DIR / POSTERN_NODE)",
            node.display(),
            socket.display(),
            node.display()
        ));
    }
    let path = socket.clone();
    // The URI is required by tonic but unused: every connection dials the socket.
    Endpoint::from_static("http://postern.admin")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
        .with_context(|| format!("cannot connect to {}", socket.display()))
}

/// A gRPC status as the one line an administrator reads.
pub fn status(s: tonic::Status) -> anyhow::Error {
    anyhow!("{}", s.message())
}

/// Flattens an error chain into one line.
pub fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

/// `postern node-info`.
pub async fn node_info(node: &Path, json: bool) -> anyhow::Result<()> {
    let mut client = pb::node_client::NodeClient::new(connect(node).await?);
    let id = client
        .get_identity(pb::GetIdentityRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let record = Record::new()
        .field("Name", &id.name, serde_json::json!(id.name))
        .field("Fqdn", &id.fqdn, serde_json::json!(id.fqdn))
        .field("Role", &id.role, serde_json::json!(id.role))
        .field("DataDir", &id.data_dir, serde_json::json!(id.data_dir))
        .field("SmtpBind", &id.smtp_bind, serde_json::json!(id.smtp_bind))
        .field("Created", &id.created, serde_json::json!(id.created))
        .field("Version", &id.version, serde_json::json!(id.version))
        .field(
            "ConfigGeneration",
            &id.config_generation.to_string(),
            serde_json::json!(id.config_generation),
        )
        .field(
            "ConfigFailures",
            &id.config_failures.to_string(),
            serde_json::json!(id.config_failures),
        )
        .field(
            "ConfigError",
            &id.config_error,
            serde_json::json!(id.config_error),
        );
    print_records(&[record], json, false)
}

/// `postern counters`: the node's performance counters, Exchange names first.
pub async fn counters(node: &Path, json: bool) -> anyhow::Result<()> {
    let mut client = pb::node_client::NodeClient::new(connect(node).await?);
    let list = client
        .get_counters(pb::GetCountersRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let mut counters = list.counters;
    counters.sort_by_key(|c| (c.exchange_name.is_empty(), c.name.clone()));
    let records: Vec<Record> = counters
        .iter()
        .map(|c| {
            let name = if c.exchange_name.is_empty() {
                c.name.clone()
            } else {
                c.exchange_name.clone()
            };
            Record::new()
                .field("Counter", &name, serde_json::json!(name))
                .field("Metric", &c.name, serde_json::json!(c.name))
                .field("Labels", &c.labels.join(", "), serde_json::json!(c.labels))
                .field("Value", &c.value.to_string(), serde_json::json!(c.value))
        })
        .collect();
    print_records(&records, json, true)
}

/// `postern queue list`: queued messages and each recipient's state.
pub async fn queue(node: &Path, json: bool) -> anyhow::Result<()> {
    queue_exec(node, json).await?.print()
}

/// Lists the queue (also Get-Queue in `postern ems`).
pub async fn queue_exec(node: &Path, json: bool) -> anyhow::Result<Reply> {
    let mut client = pb::node_client::NodeClient::new(connect(node).await?);
    let list = client
        .list_queue(pb::ListQueueRequest {})
        .await
        .map_err(status)?
        .into_inner();
    let messages: Vec<Record> = list
        .messages
        .iter()
        .map(|m| {
            let rcpts: Vec<String> = m
                .recipients
                .iter()
                .map(|r| {
                    format!(
                        "{} [{} via {}, {} attempts] {}",
                        r.address, r.status, r.next_hop, r.attempts, r.last_error
                    )
                })
                .collect();
            let json_rcpts: Vec<serde_json::Value> = m
                .recipients
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "address": r.address, "next_hop": r.next_hop, "status": r.status,
                        "attempts": r.attempts, "last_error": r.last_error,
                    })
                })
                .collect();
            Record::new()
                .field("Id", &m.id, serde_json::json!(m.id))
                .field("Sender", &m.sender, serde_json::json!(m.sender))
                .field("Size", &m.size.to_string(), serde_json::json!(m.size))
                .field("Received", &m.received, serde_json::json!(m.received))
                .field("Recipients", &rcpts.join("; "), serde_json::json!(json_rcpts))
        })
        .collect();
    Ok(records(messages, json, true))
}

/// `postern queue retry [--hop H]`: ends the hop's back-off.
/// `postern queue remove --id ID [--without-ndr]` (Remove-Message).
pub async fn queue_remove(node: &Path, id: String, without_ndr: bool) -> anyhow::Result<()> {
    let mut client = pb::node_client::NodeClient::new(connect(node).await?);
    let reply = client
        .remove_message(pb::RemoveMessageRequest {
            id: id.clone(),
            without_ndr,
        })
        .await
        .map_err(status)?
        .into_inner();
    crate::output::line(format_args!(
        "message {id} removed: {} undelivered recipient(s) dropped",
        reply.undelivered.len()
    ))?;
    if !reply.ndr_id.is_empty() {
        crate::output::line(format_args!(
            "non-delivery report {} queued for the sender",
            reply.ndr_id
        ))?;
    }
    Ok(())
}

pub async fn queue_retry(node: &Path, hop: Option<String>) -> anyhow::Result<()> {
    let mut client = pb::node_client::NodeClient::new(connect(node).await?);
    let reply = client
        .retry_queue(pb::RetryQueueRequest {
            hop: hop.clone().unwrap_or_default(),
        })
        .await
        .map_err(status)?
        .into_inner();
    match hop {
        Some(h) => crate::output::line(format_args!(
            "{} message(s) via {h} will be retried now",
            reply.messages
        ))?,
        None => crate::output::line(format_args!("{} message(s) will be retried now", reply.messages))?,
    }
    Ok(())
}
