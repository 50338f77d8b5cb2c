//! `postern dkim …` on a hub: make or import a DKIM key, print the TXT
//! record to publish, enable it once published, list and remove keys.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use postern_proto::admin as pb;
use serde_json::json;

use crate::client::connect;
use crate::output::{Record, print_records};
use crate::role_verb::RoleVerb;

/// DKIM verbs.
#[derive(Subcommand)]
pub enum DkimCommand {
    /// Make a key on this hub and print the TXT record to publish at
    /// SELECTOR._domainkey.DOMAIN (the key signs once enabled).
    New {
        #[command(flatten)]
        key: KeyRef,
        /// rsa-2048 (default) or ed25519.
        #[arg(long)]
        key_type: Option<String>,
    },
    /// Import a PEM private key (the same key on several hubs).
    Import {
        #[command(flatten)]
        key: KeyRef,
        /// The PEM file (PKCS#8 RSA or Ed25519, or PKCS#1 RSA).
        #[arg(long)]
        path: PathBuf,
    },
    /// Sign the domain's outbound mail with this key (publish its TXT record first).
    Enable {
        #[command(flatten)]
        key: KeyRef,
    },
    /// List keys and the TXT records to publish.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a key.
    Remove {
        #[command(flatten)]
        key: KeyRef,
    },
}

/// `--domain D --selector S`.
#[derive(Args)]
pub struct KeyRef {
    /// The signing domain (an accepted domain).
    #[arg(long)]
    domain: String,
    /// The selector: one DNS label, e.g. hub1-2026.
    #[arg(long)]
    selector: String,
}

/// Runs a `dkim` verb against the hub in `node`.
pub async fn run(node: &Path, command: DkimCommand) -> anyhow::Result<()> {
    let pem = match &command {
        DkimCommand::Import { path, .. } => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        _ => None,
    };
    let mut client = pb::dkim_client::DkimClient::new(connect(node).await?);
    match command {
        DkimCommand::New { key, key_type } => {
            let made = RoleVerb::hub("dkim new")
                .call(
                    node,
                    client.new_dkim_key(pb::NewDkimKeyRequest {
                        domain: key.domain,
                        selector: key.selector,
                        key_type: key_type.unwrap_or_default(),
                    }),
                )
                .await?;
            print_txt(&made)?;
        }
        DkimCommand::Import { key, .. } => {
            let made = RoleVerb::hub("dkim import")
                .call(
                    node,
                    client.import_dkim_key(pb::ImportDkimKeyRequest {
                        domain: key.domain,
                        selector: key.selector,
                        private_key_pem: pem.unwrap_or_default(),
                    }),
                )
                .await?;
            print_txt(&made)?;
        }
        DkimCommand::Enable { key } => {
            RoleVerb::hub("dkim enable")
                .call(
                    node,
                    client.enable_dkim_key(pb::DkimKeyRef {
                        domain: key.domain,
                        selector: key.selector,
                    }),
                )
                .await?;
        }
        DkimCommand::List { json } => {
            let list = RoleVerb::hub("dkim list")
                .call(node, client.list_dkim_keys(pb::ListDkimKeysRequest {}))
                .await?;
            let records: Vec<Record> = list.keys.iter().map(record).collect();
            print_records(&records, json, true)?;
        }
        DkimCommand::Remove { key } => {
            RoleVerb::hub("dkim remove")
                .call(
                    node,
                    client.remove_dkim_key(pb::DkimKeyRef {
                        domain: key.domain,
                        selector: key.selector,
                    }),
                )
                .await?;
        }
    }
    Ok(())
}

/// The record as a zone file line (long values split into 255-byte strings).
fn print_txt(k: &pb::DkimKey) -> anyhow::Result<()> {
    let chunks: Vec<String> = k
        .txt_record
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    crate::output::line(format_args!("{}. IN TXT ( {} )", k.dns_name, chunks.join(" ")))
}

fn record(k: &pb::DkimKey) -> Record {
    Record::new()
        .field("Domain", &k.domain, json!(k.domain))
        .field("Selector", &k.selector, json!(k.selector))
        .field("KeyType", &k.key_type, json!(k.key_type))
        .field("Enabled", &k.enabled.to_string(), json!(k.enabled))
        .field("Created", &k.created, json!(k.created))
        .field("DnsName", &k.dns_name, json!(k.dns_name))
        .field("TxtRecord", &k.txt_record, json!(k.txt_record))
}
