//! The `TlsReports` admin service: `postern tls-report show` (the figures
//! since the last report) and `postern tls-report send` (the daily run, on
//! demand).

use std::sync::Arc;

use pb::tls_reports_server::{TlsReports, TlsReportsServer};
use postern_proto::admin as pb;
use tonic::{Request, Response, Status};

use crate::mta::TlsReporter;

/// The records a node publishes (see [`super::publish::dns_records`]), or
/// why what they are made from cannot be read.
pub type RecordSource = Arc<dyn Fn() -> Result<Vec<String>, RecordsError> + Send + Sync>;

/// The node's own store could not be read to make its DNS records.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what} to make the DNS records: {why}")]
pub struct RecordsError {
    /// What could not be read (`the certificate store`, `the replica`).
    pub what: &'static str,
    /// The store's error.
    pub why: String,
}

/// The service over a node's reporter and record source.
pub fn service(reporter: Arc<TlsReporter>, records: RecordSource) -> TlsReportsServer<TlsReportService> {
    TlsReportsServer::new(TlsReportService::new(reporter, records))
}

/// Serves the figures, runs reports and lists the records to publish.
pub struct TlsReportService {
    reporter: Arc<TlsReporter>,
    records: RecordSource,
}

impl TlsReportService {
    /// The service over `reporter` and `records`.
    pub fn new(reporter: Arc<TlsReporter>, records: RecordSource) -> Self {
        Self { reporter, records }
    }
}

#[tonic::async_trait]
impl TlsReports for TlsReportService {
    async fn show_tls_report(
        &self,
        _: Request<pb::ShowTlsReportRequest>,
    ) -> Result<Response<pb::TlsReportFigures>, Status> {
        let mut rows = Vec::new();
        for ((domain, kind), figures) in self.reporter.counters().snapshot() {
            rows.push(pb::TlsReportRow {
                domain: domain.clone(),
                policy_type: kind.as_str().to_owned(),
                successes: figures.successes,
                ..Default::default()
            });
            for ((failure, mx), n) in figures.failures {
                rows.push(pb::TlsReportRow {
                    domain: domain.clone(),
                    policy_type: kind.as_str().to_owned(),
                    result_type: failure.as_str().to_owned(),
                    mx_host: mx,
                    failures: n,
                    ..Default::default()
                });
            }
        }
        Ok(Response::new(pb::TlsReportFigures { rows }))
    }

    async fn get_published_records(
        &self,
        _: Request<pb::GetPublishedRecordsRequest>,
    ) -> Result<Response<pb::PublishedRecords>, Status> {
        Ok(Response::new(pb::PublishedRecords {
            records: (self.records)().map_err(|e| Status::unavailable(e.to_string()))?,
        }))
    }

    async fn send_tls_reports(
        &self,
        _: Request<pb::SendTlsReportsRequest>,
    ) -> Result<Response<pb::SendTlsReportsReply>, Status> {
        let queued = self.reporter.run().await;
        Ok(Response::new(pb::SendTlsReportsReply {
            queued: u32::try_from(queued).unwrap_or(u32::MAX),
        }))
    }
}
