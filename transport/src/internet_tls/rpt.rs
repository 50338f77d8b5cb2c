//! TLS-RPT (RFC 8460): the `_smtp._tls` record, the daily aggregate report
//! (JSON, §4.4) and the message that carries it (`multipart/report`,
//! `application/tlsrpt+gzip`, §5.3). Sending goes through the node's own
//! queue and routing, like any other mail the organisation sends.

use std::io::Write;
use std::time::SystemTime;

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::internet_tls::report::{Figures, PolicyKind};

/// The `_smtp._tls` record: where reports go (RFC 8460 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RptRecord {
    /// `mailto:` addresses (the `https:` kind is not supported and skipped).
    pub mailto: Vec<String>,
}

impl RptRecord {
    /// Parses `v=TLSRPTv1; rua=mailto:a@b,mailto:c@d`; `None` when it is
    /// not a TLSRPTv1 record or names no mailto address.
    pub fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split(';').map(str::trim);
        if fields.next()? != "v=TLSRPTv1" {
            return None;
        }
        let rua = fields
            .filter_map(|f| f.split_once('='))
            .find(|(k, _)| k.trim() == "rua")?
            .1;
        let mailto: Vec<String> = rua
            .split(',')
            .filter_map(|u| u.trim().strip_prefix("mailto:"))
            .map(|a| a.split('!').next().unwrap_or(a).to_owned())
            .filter(|a| a.contains('@') && a.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>'))
            .collect();
        (!mailto.is_empty()).then_some(Self { mailto })
    }
}

/// The aggregate report (RFC 8460 §4.4), as serialised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Report {
    /// The reporting organisation.
    pub organization_name: String,
    /// The period covered.
    pub date_range: DateRange,
    /// Who to contact about the report.
    pub contact_info: String,
    /// Unique id of the report.
    pub report_id: String,
    /// One entry per policy applied to the domain.
    pub policies: Vec<PolicyReport>,
}

/// `date-range`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DateRange {
    /// RFC 3339, UTC.
    pub start_datetime: String,
    /// RFC 3339, UTC.
    pub end_datetime: String,
}

/// One policy's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PolicyReport {
    /// The policy.
    pub policy: PolicyDescription,
    /// Session totals.
    pub summary: Summary,
    /// Failures by result type and MX.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetail>,
}

/// `policy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PolicyDescription {
    /// `tlsa`, `sts` or `no-policy-found`.
    pub policy_type: String,
    /// The policy domain.
    pub policy_domain: String,
}

/// `summary`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Summary {
    /// Sessions that succeeded.
    pub total_successful_session_count: u64,
    /// Sessions that failed.
    pub total_failure_session_count: u64,
}

/// One entry of `failure-details`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FailureDetail {
    /// The result type (§4.3).
    pub result_type: String,
    /// The MX host, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_mx_hostname: Option<String>,
    /// How many sessions failed so.
    pub failed_session_count: u64,
}

/// Who reports.
#[derive(Clone, Debug)]
pub struct Submitter {
    /// `organization-name`.
    pub organization: String,
    /// The reporting node's name (`TLS-Report-Submitter`).
    pub host: String,
    /// `contact-info` and the report's sender address.
    pub contact: String,
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The report for `domain` from `figures` over `start..end`.
pub fn report_for(
    domain: &str,
    figures: &Figures,
    submitter: &Submitter,
    start: SystemTime,
    end: SystemTime,
) -> Option<Report> {
    let policies: Vec<PolicyReport> = figures
        .iter()
        .filter(|((d, _), _)| d == domain)
        .map(|((d, kind), f): (&(String, PolicyKind), _)| PolicyReport {
            policy: PolicyDescription {
                policy_type: kind.as_str().to_owned(),
                policy_domain: d.clone(),
            },
            summary: Summary {
                total_successful_session_count: f.successes,
                total_failure_session_count: f.failures.values().sum(),
            },
            failure_details: f
                .failures
                .iter()
                .map(|((kind, mx), n)| FailureDetail {
                    result_type: kind.as_str().to_owned(),
                    receiving_mx_hostname: (!mx.is_empty()).then(|| mx.clone()),
                    failed_session_count: *n,
                })
                .collect(),
        })
        .collect();
    if policies.is_empty() {
        return None;
    }
    let start_s = rfc3339(start);
    Some(Report {
        organization_name: submitter.organization.clone(),
        date_range: DateRange {
            start_datetime: start_s.clone(),
            end_datetime: rfc3339(end),
        },
        contact_info: submitter.contact.clone(),
        report_id: format!("{start_s}_{domain}@{}", submitter.host),
        policies,
    })
}

/// Why a report message could not be built (our side).
#[derive(Debug, thiserror::Error)]
pub enum RptError {
    /// Serialising or compressing failed.
    #[error("building the TLS report: {0}")]
    Build(String),
}

/// The report as a `multipart/report; report-type="tlsrpt"` message to
/// `to` (RFC 8460 §5.3), its JSON gzipped and base64-encoded.
pub fn report_message(
    report: &Report,
    domain: &str,
    submitter: &Submitter,
    to: &str,
) -> Result<Vec<u8>, RptError> {
    let json = serde_json::to_vec(report).map_err(|e| RptError::Build(e.to_string()))?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&json).map_err(|e| RptError::Build(e.to_string()))?;
    let gz = gz.finish().map_err(|e| RptError::Build(e.to_string()))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(gz);
    let mut attachment = String::new();
    for chunk in encoded.as_bytes().chunks(76) {
        attachment.push_str(&String::from_utf8_lossy(chunk));
        attachment.push_str("\r\n");
    }
    let boundary = format!("tlsrpt-{}", report.report_id.len() ^ encoded.len());
    let date = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let start = report.date_range.start_datetime.get(..10).unwrap_or("");
    let filename = format!(
        "{}!{domain}!{start}!{}.json.gz",
        submitter.host,
        report.report_id.len()
    );
    let text = format!(
        "From: <{from}>\r\n\
         To: <{to}>\r\n\
         Date: {date}\r\n\
         Subject: Report Domain: {domain} Submitter: {host} Report-ID: <{id}>\r\n\
         Message-ID: <{id}>\r\n\
         TLS-Report-Domain: {domain}\r\n\
         TLS-Report-Submitter: {host}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This is an aggregate TLS report from {host} for {domain}.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/tlsrpt+gzip\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\
         \r\n\
         {attachment}\
         --{boundary}--\r\n",
        from = submitter.contact,
        host = submitter.host,
        id = report.report_id,
    );
    Ok(text.into_bytes())
}

/// The day's run: takes the counters and queues one report to each
/// `mailto` of every counted domain that publishes `_smtp._tls`, through
/// `router` (the organisation's own send path). Returns how many were
/// queued; domains without a record are dropped from the figures.
pub async fn send_reports(
    counters: &crate::internet_tls::TlsCounters,
    dns: &crate::dns::MxResolver,
    queue: &crate::queue::Queue,
    router: &dyn crate::routing::Router,
    submitter: &Submitter,
    now: SystemTime,
) -> usize {
    let figures = counters.take();
    let start = now - std::time::Duration::from_secs(24 * 3600);
    let domains: std::collections::BTreeSet<String> = figures.keys().map(|(d, _)| d.clone()).collect();
    let mut queued = 0;
    for domain in domains {
        let records = dns.txt(&format!("_smtp._tls.{domain}")).await;
        let Some(record) = records.iter().find_map(|t| RptRecord::parse(t)) else {
            tracing::debug!(%domain, "no _smtp._tls record: no TLS report");
            continue;
        };
        let Some(report) = report_for(&domain, &figures, submitter, start, now) else {
            continue;
        };
        for to in &record.mailto {
            let Ok(mailbox) = crate::smtp::Mailbox::parse(to) else {
                tracing::warn!(%domain, rua = %to.escape_debug(), "unusable TLS-RPT address");
                continue;
            };
            let key = match router.next_hop(&mailbox) {
                Ok(key) => key,
                Err(e) => {
                    tracing::warn!(%domain, rua = %mailbox, reply = %e.0, "no route for the TLS report");
                    continue;
                }
            };
            let message = match report_message(&report, &domain, submitter, &mailbox.to_string()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(%domain, error = %e, "TLS report not built");
                    continue;
                }
            };
            let envelope = crate::queue::Envelope::new(
                Some(submitter.contact.clone()),
                vec![crate::queue::RecipientState::new(mailbox.to_string(), key)],
                now,
            );
            match queue.enqueue(envelope, message).await {
                Ok(id) => {
                    tracing::info!(%domain, rua = %mailbox, %id, "TLS report queued");
                    queued += 1;
                }
                Err(e) => tracing::error!(%domain, error = %e, "TLS report not queued"),
            }
        }
    }
    queued
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::internet_tls::report::{FailureKind, TlsCounters};

    #[test]
    fn records() {
        let r = RptRecord::parse(
            "v=TLSRPTv1; rua=mailto:tls@example.com,https://x.example/r,mailto:b@c.example!10m",
        )
        .unwrap();
        assert_eq!(r.mailto, ["tls@example.com", "b@c.example"]);
        assert!(RptRecord::parse("v=TLSRPTv2; rua=mailto:a@b").is_none());
        assert!(RptRecord::parse("v=TLSRPTv1; rua=https://x.example/").is_none());
    }

    #[test]
    fn a_report_of_mixed_outcomes() {
        let c = TlsCounters::default();
        c.success("example.com", PolicyKind::Sts);
        c.success("example.com", PolicyKind::Sts);
        c.failure(
            "example.com",
            PolicyKind::Sts,
            FailureKind::CertificateHostMismatch,
            "mx.example.com",
        );
        c.failure(
            "other.example",
            PolicyKind::Tlsa,
            FailureKind::TlsaInvalid,
            "mx.other.example",
        );
        let s = Submitter {
            organization: "Adatum".into(),
            host: "edge1.adatum.com".into(),
            contact: "postmaster@adatum.com".into(),
        };
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86400 * 20000);
        let r = report_for(
            "example.com",
            &c.snapshot(),
            &s,
            t,
            t + std::time::Duration::from_secs(86400),
        )
        .unwrap();
        assert_eq!(r.policies.len(), 1);
        assert_eq!(r.policies[0].summary.total_successful_session_count, 2);
        assert_eq!(r.policies[0].summary.total_failure_session_count, 1);
        assert_eq!(
            r.policies[0].failure_details[0].result_type,
            "certificate-host-mismatch"
        );
        assert_eq!(r.date_range.start_datetime, "2024-10-04T00:00:00Z");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"policy-type\":\"sts\""), "{json}");
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let msg =
            String::from_utf8(report_message(&r, "example.com", &s, "tls@example.com").unwrap()).unwrap();
        assert!(msg.contains("report-type=\"tlsrpt\""), "{msg}");
        assert!(msg.contains("TLS-Report-Domain: example.com\r\n"), "{msg}");
        assert!(report_for("nobody.example", &c.snapshot(), &s, t, t).is_none());
    }
}
