//! The edges' part of the queue and certificate pages: what each edge last
//! reported of itself over EdgeSync (its queue per next hop, its
//! certificates with days left), as the admin API's `edgesync test` gives
//! it. Every string here came from another node and is escaped.

use std::fmt::Write as _;

use postern_proto::admin as pb;
use time::OffsetDateTime;

use crate::console::html::esc;
use crate::console::pages::{days_left, expiry};

/// The line saying when an edge's report was made, or that none came.
fn reported(s: &pb::SyncStatus) -> String {
    if s.report_time.is_empty() {
        "<p class=\"note\">No report from this edge yet (it reports when EdgeSync connects and at each heartbeat).</p>"
            .to_owned()
    } else {
        format!("<p class=\"note\">Reported at {}.</p>", esc(&s.report_time))
    }
}

/// Each edge's queue per next hop: length, oldest message, last error.
pub fn queues(statuses: &[pb::SyncStatus]) -> String {
    let mut out = String::new();
    for s in statuses {
        let _ = write!(out, "<h2>Edge {}</h2>", esc(&s.edge));
        out.push_str(&reported(s));
        if s.report_time.is_empty() {
            continue;
        }
        if s.report_hops.is_empty() {
            let _ = write!(
                out,
                "<p data-edge-queue-empty=\"{}\">The queue is empty.</p>",
                esc(&s.edge)
            );
            continue;
        }
        out.push_str(
            "<table class=\"edge-hops\"><tr><th>Next hop</th><th>Messages</th><th>Oldest</th><th>Last error</th></tr>",
        );
        for h in &s.report_hops {
            let _ = write!(
                out,
                "<tr data-edge=\"{}\" data-hop=\"{hop}\" data-messages=\"{n}\"><td>{hop}</td><td>{n}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.edge),
                esc(&h.oldest),
                esc(&h.last_error),
                hop = esc(&h.hop),
                n = h.messages,
            );
        }
        out.push_str("</table>");
    }
    if !statuses.is_empty() {
        out.push_str("<p class=\"note\">Retry an edge's queue on the edge: <code>postern --node EDGE_DIR queue retry</code>.</p>");
    }
    out
}

/// Each edge's certificates: services, not-after, days left, marked under
/// 30 days.
pub fn certificates(statuses: &[pb::SyncStatus], now: OffsetDateTime) -> String {
    let mut out = String::new();
    for s in statuses {
        let _ = write!(out, "<h2>Edge {}</h2>", esc(&s.edge));
        out.push_str(&reported(s));
        if s.report_time.is_empty() {
            continue;
        }
        out.push_str("<table class=\"edge-certificates\"><tr><th>Thumbprint</th><th>Subject</th><th>Services</th><th>Not after</th><th>Expiry</th></tr>");
        for c in &s.report_certificates {
            let days = days_left(&c.not_after, now);
            let (class, words) = expiry(days);
            let _ = write!(
                out,
                "<tr class=\"{class}\" data-edge=\"{}\" data-thumbprint=\"{t}\" data-days=\"{d}\"><td><code>{t}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{words}</td></tr>",
                esc(&s.edge),
                esc(&c.subject),
                esc(&c.services.join(", ")),
                esc(&c.not_after),
                t = esc(&c.thumbprint),
                d = days.map_or(String::new(), |d| d.to_string()),
            );
        }
        out.push_str("</table>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(name: &str) -> pb::SyncStatus {
        pb::SyncStatus {
            edge: name.into(),
            report_time: "2026-11-27T10:00:00Z".into(),
            report_hops: vec![pb::QueueHop {
                hop: "mx.<fabrikam>.com".into(),
                messages: 2,
                oldest: "2026-11-27T09:00:00Z".into(),
                last_error: "451 \"busy\"".into(),
            }],
            report_certificates: vec![
                pb::Certificate {
                    thumbprint: "AA11".into(),
                    subject: "CN=edge<1>".into(),
                    services: vec!["SMTP".into()],
                    not_after: "2026-12-07T10:00:00Z".into(),
                    ..Default::default()
                },
                pb::Certificate {
                    thumbprint: "BB22".into(),
                    not_after: "2031-11-27T10:00:00Z".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn an_edges_queue_is_shown_escaped() {
        let html = queues(&[
            edge("edge1"),
            pb::SyncStatus {
                edge: "edge2".into(),
                ..Default::default()
            },
        ]);
        assert!(
            html.contains("data-hop=\"mx.&lt;fabrikam&gt;.com\" data-messages=\"2\""),
            "{html}"
        );
        assert!(html.contains("451 &quot;busy&quot;"));
        assert!(!html.contains("<fabrikam>"));
        assert!(html.contains("<h2>Edge edge2</h2><p class=\"note\">No report"));
    }

    #[test]
    fn an_edges_certificate_under_thirty_days_is_marked() {
        let now = OffsetDateTime::parse(
            "2026-11-27T10:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let html = certificates(&[edge("edge1")], now);
        let row = |t: &str| {
            html.split("<tr ")
                .find(|r| r.contains(&format!("data-thumbprint=\"{t}\"")))
                .unwrap()
                .to_owned()
        };
        assert!(row("AA11").starts_with("class=\"expiring\""), "{html}");
        assert!(row("AA11").contains("data-days=\"10\""));
        assert!(row("AA11").contains("CN=edge&lt;1&gt;"));
        assert!(row("BB22").starts_with("class=\"\""));
    }
}
