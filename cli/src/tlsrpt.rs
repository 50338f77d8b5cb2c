//! `postern tls-report`: the TLS-RPT figures counted since the last daily
//! report, and the daily run on demand.

use std::path::Path;

use clap::Subcommand;
use postern_proto::admin as pb;

use crate::client::{connect, status};
use crate::output::{Record, print_records};

/// The verbs of `postern tls-report`.
#[derive(Subcommand)]
pub enum TlsReportCommand {
    /// Today's figures: sessions per policy domain and type, failures by result type.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send the daily reports now (to every domain publishing `_smtp._tls`).
    Send,
    /// The DNS records to publish for our own policy: `_mta-sts`,
    /// `_smtp._tls`, and TLSA for this node's SMTP certificates.
    Records,
}

/// Runs a `tls-report` verb against the node at `node`.
pub async fn run(node: &Path, command: TlsReportCommand) -> anyhow::Result<()> {
    let mut client = pb::tls_reports_client::TlsReportsClient::new(connect(node).await?);
    match command {
        TlsReportCommand::Show { json } => {
            let figures = client
                .show_tls_report(pb::ShowTlsReportRequest {})
                .await
                .map_err(status)?
                .into_inner();
            let records: Vec<Record> = figures
                .rows
                .iter()
                .map(|r| {
                    let result = if r.result_type.is_empty() {
                        "success"
                    } else {
                        &r.result_type
                    };
                    let count = if r.result_type.is_empty() {
                        r.successes
                    } else {
                        r.failures
                    };
                    Record::new()
                        .field("Domain", &r.domain, serde_json::json!(r.domain))
                        .field("PolicyType", &r.policy_type, serde_json::json!(r.policy_type))
                        .field("Result", result, serde_json::json!(result))
                        .field("MxHost", &r.mx_host, serde_json::json!(r.mx_host))
                        .field("Sessions", &count.to_string(), serde_json::json!(count))
                })
                .collect();
            print_records(&records, json, true)
        }
        TlsReportCommand::Records => {
            let reply = client
                .get_published_records(pb::GetPublishedRecordsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            for record in reply.records {
                crate::output::line(format_args!("{record}"))?;
            }
            Ok(())
        }
        TlsReportCommand::Send => {
            let reply = client
                .send_tls_reports(pb::SendTlsReportsRequest {})
                .await
                .map_err(status)?
                .into_inner();
            crate::output::line(format_args!("{} TLS report(s) queued", reply.queued))?;
            Ok(())
        }
    }
}
