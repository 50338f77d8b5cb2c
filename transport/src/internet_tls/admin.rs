//! The `TlsReports` admin service: `postern tls-report show` (the figures
//! since the last report) and `postern tls-report send` (the daily run, on
//! demand).

use std::sync::Arc;

use pb::tls_reports_server::{TlsReports, TlsReportsServer};
use postern_proto::admin as pb;
use tonic::{Request, Response, Status};

use crate::mta::TlsReporter;

/// The service over a node's reporter.
pub fn service(reporter: Arc<TlsReporter>) -> TlsReportsServer<TlsReportService> {
    TlsReportsServer::new(TlsReportService::new(reporter))
}

/// Serves the figures and runs reports.
pub struct TlsReportService {
    reporter: Arc<TlsReporter>,
}

impl TlsReportService {
    /// The service over `reporter`.
    pub fn new(reporter: Arc<TlsReporter>) -> Self {
        Self { reporter }
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
