//! The console's pages, rendered on the server from the admin API's
//! answers: the organisation as a picture, queues, certificates, domain
//! security and the configuration read views. Each function returns the
//! inside of `main`; `html::page` frames it.
//!
//! What the hub knows of its edges is what EdgeSync knows: their sync
//! state, versions and lag, the thumbprint each is pinned by, and each
//! edge's latest report of its queue and certificates (`edges`). Other
//! hubs' public certificates come from the configuration.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use postern_model::{AdminObjectKind, ObjectKind};
use postern_proto::admin as pb;
use postern_transport::metrics::PartnerOutcome;
use postern_transport::protocol_log::Direction;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::console::admin_client::{AdminCallError, AdminClient};
use crate::console::edges;
use crate::console::history::{self, Sample};
use crate::console::html::{esc, fl};

/// Certificates expiring within this many days are marked.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Whether an edge is in sync, from its EdgeSync status word.
fn in_sync(status: &pb::SyncStatus) -> bool {
    status.status == "in-sync" && status.lag == 0
}

/// The organisation: this hub, the other hubs of the configuration, and
/// every subscribed edge, with the sync state and lag of each.
pub async fn organisation(admin: &AdminClient) -> Result<String, AdminCallError> {
    let me = admin.identity().await?;
    let statuses = admin.sync_status().await?;
    let subscriptions = admin.subscriptions().await?;
    let hubs: Vec<String> = admin
        .objects(ObjectKind::Hub)
        .await?
        .iter()
        .filter_map(|h| h.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .collect();
    let mut hub_names = vec![me.name.clone()];
    hub_names.extend(hubs.into_iter().filter(|h| !h.eq_ignore_ascii_case(&me.name)));
    let mut edges: Vec<(String, Option<&pb::SyncStatus>)> = subscriptions
        .iter()
        .map(|s| {
            let status = statuses.iter().find(|st| st.edge == s.edge_name);
            (s.edge_name.clone(), status)
        })
        .collect();
    edges.sort_by(|a, b| a.0.cmp(&b.0));

    let mut out = String::new();
    out.push_str(&picture(&hub_names, &me.name, &edges));
    let in_sync_count = edges.iter().filter(|(_, s)| s.is_some_and(in_sync)).count();
    let _ = write!(
        out,
        "<p id=\"summary\">{} of {} edges in sync.</p>",
        in_sync_count,
        edges.len()
    );
    out.push_str(
        "<table id=\"edges\"><tr><th>Edge</th><th>State</th><th>Synced by</th><th>Hub version</th>\
<th>Edge version</th><th>Lag</th><th>Last success</th><th>Last error</th></tr>",
    );
    for (name, status) in &edges {
        let (state, class) = match status {
            Some(s) if in_sync(s) => ("in sync".to_owned(), "ok"),
            Some(s) => (format!("out of sync ({})", s.status), "bad"),
            None => ("out of sync (not started)".to_owned(), "bad"),
        };
        let s = status.map(|s| (*s).clone()).unwrap_or_default();
        let _ = write!(
            out,
            "<tr data-edge=\"{n}\" data-sync=\"{sync}\"><td>{n}</td><td class=\"{class}\">{state}</td><td>{hub}</td>\
<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.hub_version,
            s.edge_version,
            s.lag,
            esc(&s.last_success),
            esc(&s.last_error),
            n = esc(name),
            sync = if class == "ok" { "in-sync" } else { "out-of-sync" },
            state = esc(&state),
            hub = esc(&me.name),
        );
    }
    out.push_str("</table>");
    if edges.is_empty() {
        out.push_str("<p class=\"note\">No edge is subscribed yet (<code>postern edge-subscription import</code>).</p>");
    }
    Ok(out)
}

/// Hubs on a top row, edges below, a line from the syncing hub to each
/// edge: green when in sync, dashed red when not, with the lag.
fn picture(hubs: &[String], me: &str, edges: &[(String, Option<&pb::SyncStatus>)]) -> String {
    const BOX_W: usize = 150;
    const GAP: usize = 30;
    let columns = hubs.len().max(edges.len()).max(1);
    let width = columns * (BOX_W + GAP) + GAP;
    let x_of = |i: usize, n: usize| {
        let row = n * (BOX_W + GAP) - GAP;
        (width - row) / 2 + i * (BOX_W + GAP)
    };
    let me_index = hubs.iter().position(|h| h == me).unwrap_or(0);
    let me_x = x_of(me_index, hubs.len()) + BOX_W / 2;
    let mut svg = format!(
        "<svg id=\"organisation\" viewBox=\"0 0 {width} 235\" width=\"{width}\" height=\"235\" role=\"img\" aria-label=\"Hubs and edges\">"
    );
    for (i, (name, status)) in edges.iter().enumerate() {
        let x = x_of(i, edges.len()) + BOX_W / 2;
        let ok = status.is_some_and(in_sync);
        let class = if ok { "link-in-sync" } else { "link-out-of-sync" };
        let lag = status.map_or("?".to_owned(), |s| s.lag.to_string());
        let label = if ok {
            "in sync".to_owned()
        } else {
            format!("out of sync, lag {lag}")
        };
        let _ = write!(
            svg,
            "<line x1=\"{me_x}\" y1=\"60\" x2=\"{x}\" y2=\"160\" stroke-width=\"3\" class=\"{class}\" data-edge=\"{}\"/>\
<text class=\"label\" x=\"{x}\" y=\"220\" text-anchor=\"middle\">{}</text>",
            esc(name),
            esc(&label)
        );
    }
    for (i, hub) in hubs.iter().enumerate() {
        let x = x_of(i, hubs.len());
        let _ = write!(
            svg,
            "<g class=\"node\"><rect x=\"{x}\" y=\"20\" width=\"{BOX_W}\" height=\"40\" rx=\"6\" class=\"node-hub\"/>\
<text x=\"{}\" y=\"45\" fill=\"#fff\" text-anchor=\"middle\">hub {}</text></g>",
            x + BOX_W / 2,
            esc(hub)
        );
    }
    for (i, (name, _)) in edges.iter().enumerate() {
        let x = x_of(i, edges.len());
        let _ = write!(
            svg,
            "<g class=\"node\"><rect x=\"{x}\" y=\"160\" width=\"{BOX_W}\" height=\"40\" rx=\"6\" class=\"node-edge\"/>\
<text x=\"{}\" y=\"185\" fill=\"#fff\" text-anchor=\"middle\">edge {}</text></g>",
            x + BOX_W / 2,
            esc(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// One next hop's share of the queue.
#[derive(Default)]
struct HopSummary {
    messages: usize,
    oldest: String,
    last_error: String,
}

/// The hub's queue per next hop (length, oldest message, last error, a
/// "retry now" button), then every message with its recipients.
pub async fn queues(admin: &AdminClient, hub: &str, csrf: Option<&str>) -> Result<String, AdminCallError> {
    let messages = admin.queue().await?;
    let mut hops: BTreeMap<&str, HopSummary> = BTreeMap::new();
    for m in &messages {
        let mut counted: Vec<&str> = Vec::new();
        for r in m
            .recipients
            .iter()
            .filter(|r| r.status == "pending" || r.status == "deferred")
        {
            let h = hops.entry(r.next_hop.as_str()).or_default();
            if !counted.contains(&r.next_hop.as_str()) {
                counted.push(r.next_hop.as_str());
                h.messages += 1;
                if h.oldest.is_empty() || m.received < h.oldest {
                    h.oldest = m.received.clone();
                }
            }
            if !r.last_error.is_empty() {
                h.last_error = r.last_error.clone();
            }
        }
    }
    let mut out = format!("<h2>Node {}</h2>", esc(hub));
    out.push_str(
        "<table id=\"hops\"><tr><th>Next hop</th><th>Messages</th><th>Oldest</th><th>Last error</th><th></th></tr>",
    );
    for (hop, h) in &hops {
        let action = match csrf {
            Some(token) => format!(
                "<form method=\"post\" action=\"/queues/retry\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<input type=\"hidden\" name=\"hop\" value=\"{}\"><button type=\"submit\">Retry now</button></form>",
                esc(token),
                esc(hop)
            ),
            None => "<span class=\"note\">read-only</span>".to_owned(),
        };
        let _ = write!(
            out,
            "<tr data-hop=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            esc(hop),
            esc(hop),
            h.messages,
            esc(&h.oldest),
            esc(&h.last_error),
        );
    }
    out.push_str("</table>");
    if hops.is_empty() {
        out.push_str("<p id=\"queue-empty\">The queue is empty.</p>");
    }
    out.push_str("<h2>Messages</h2><table id=\"messages\"><tr><th>Id</th><th>Sender</th><th>Received</th><th>Size</th><th>Recipients</th></tr>");
    for m in &messages {
        let mut rcpts = String::from("<table>");
        for r in &m.recipients {
            let _ = write!(
                rcpts,
                "<tr><td>{}</td><td>{}</td><td>via {}</td><td>{} attempts</td><td>{}</td></tr>",
                esc(&r.address),
                esc(&r.status),
                esc(&r.next_hop),
                r.attempts,
                esc(&r.last_error)
            );
        }
        rcpts.push_str("</table>");
        let _ = write!(
            out,
            "<tr data-message=\"{id}\"><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{rcpts}</td></tr>",
            esc(&m.sender),
            esc(&m.received),
            m.size,
            id = esc(&m.id),
        );
    }
    out.push_str("</table>");
    out.push_str(&edges::queues(&admin.sync_status().await?));
    Ok(out)
}

/// Days from `now` to an RFC 3339 time, counting a day begun as a day (a
/// certificate issued for 10 days shows 10 until a full day has passed);
/// `None` when it does not parse.
pub(crate) fn days_left(not_after: &str, now: OffsetDateTime) -> Option<i64> {
    let t = OffsetDateTime::parse(not_after, &Rfc3339).ok()?;
    Some(days_between(now, t))
}

fn days_between(now: OffsetDateTime, t: OffsetDateTime) -> i64 {
    let secs = (t - now).whole_seconds();
    if secs < 0 {
        // Past: any time after expiry is at least a day "ago".
        return secs.div_euclid(86_400);
    }
    secs.div_euclid(86_400) + i64::from(secs.rem_euclid(86_400) > 0)
}

/// The row class and words for `days` left.
pub(crate) fn expiry(days: Option<i64>) -> (&'static str, String) {
    match days {
        None => ("", "unknown".to_owned()),
        Some(d) if d < 0 => ("expired", format!("expired {} days ago", -d)),
        Some(d) if d < EXPIRY_WARNING_DAYS => ("expiring", format!("{d} days left")),
        Some(d) => ("", format!("{d} days left")),
    }
}

/// Every certificate the hub knows: its own (with services), other hubs'
/// public SMTP certificates from the configuration, and the thumbprint each
/// edge is pinned by, with EdgeSync's trust errors.
pub async fn certificates(admin: &AdminClient, hub: &str) -> Result<String, AdminCallError> {
    let now = OffsetDateTime::from(SystemTime::now());
    let certs = admin.certificates().await?;
    let mut out = format!("<h2>Hub {}</h2>", esc(hub));
    out.push_str("<table id=\"certificates\"><tr><th>Thumbprint</th><th>Subject</th><th>Domains</th><th>Services</th><th>Not after</th><th>Expiry</th><th>Status</th></tr>");
    for c in &certs {
        let days = days_left(&c.not_after, now);
        let (class, words) = expiry(days);
        let _ = write!(
            out,
            "<tr class=\"{class}\" data-thumbprint=\"{t}\" data-days=\"{d}\"><td><code>{t}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{words}</td><td>{}</td></tr>",
            esc(&c.subject),
            esc(&c.domains.join(", ")),
            esc(&c.services.join(", ")),
            esc(&c.not_after),
            esc(&c.status),
            t = esc(&c.thumbprint),
            d = days.map_or(String::new(), |d| d.to_string()),
        );
    }
    out.push_str("</table>");

    let others: Vec<serde_json::Value> = admin
        .objects(ObjectKind::Hub)
        .await?
        .into_iter()
        .filter(|h| {
            h.get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| !n.eq_ignore_ascii_case(hub))
        })
        .collect();
    if !others.is_empty() {
        out.push_str("<h2>Other hubs</h2><table id=\"hub-certificates\"><tr><th>Hub</th><th>Subject</th><th>Not after</th><th>Expiry</th></tr>");
        for h in &others {
            let name = h.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            for der in h
                .get("certificates")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
            {
                let bytes: Vec<u8> = der
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect();
                let Ok((_, cert)) = x509_parser::parse_x509_certificate(&bytes) else {
                    continue;
                };
                let not_after = cert.validity().not_after.to_datetime();
                let (class, words) = expiry(Some(days_between(now, not_after)));
                let _ = write!(
                    out,
                    "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{words}</td></tr>",
                    esc(name),
                    esc(&cert.subject().to_string()),
                    esc(&not_after.format(&Rfc3339).unwrap_or_default()),
                );
            }
        }
        out.push_str("</table>");
    }

    let subscriptions = admin.subscriptions().await?;
    let statuses = admin.sync_status().await?;
    out.push_str("<h2>Edges</h2><table id=\"edge-certificates\"><tr><th>Edge</th><th>Pinned thumbprint</th><th>Trust</th></tr>");
    for s in &subscriptions {
        // `trust` is the hub's typed judgement (EdgeSync's TrustMismatch,
        // observed by the verifier or in the edge's refusal), not a guess
        // from the error's words.
        let status = statuses.iter().find(|st| st.edge == s.edge_name);
        let trust = if let Some(st) =
            status.filter(|st| st.trust == postern_edgesync::trust_status::TRUST_MISMATCH)
        {
            format!(
                "<span class=\"bad\">trust mismatch: {}</span>",
                esc(&st.trust_detail)
            )
        } else {
            "<span class=\"ok\">pinned</span>".to_owned()
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{trust}</td></tr>",
            esc(&s.edge_name),
            esc(&s.thumbprint)
        );
    }
    out.push_str("</table>");
    out.push_str(&edges::certificates(&statuses, now));
    Ok(out)
}

fn time_words(t: Option<SystemTime>) -> String {
    t.and_then(|t| OffsetDateTime::from(t).format(&Rfc3339).ok())
        .unwrap_or_else(|| "—".to_owned())
}

/// The partners on both domain-secure lists, the last success and failure
/// with each, and the three Exchange counters over the last hour.
pub async fn domain_security(
    admin: &AdminClient,
    partners: &[PartnerOutcome],
    samples: &[Sample],
) -> Result<String, AdminCallError> {
    let config = admin.objects(ObjectKind::TransportConfig).await?;
    let list = |key: &str| -> Vec<String> {
        config
            .first()
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_ascii_lowercase))
            .collect()
    };
    let send = list("tls_send_domain_secure_list");
    let receive = list("tls_receive_domain_secure_list");
    let mut names: Vec<String> = send.iter().chain(receive.iter()).cloned().collect();
    names.extend(partners.iter().map(|p| p.partner.clone()));
    names.sort();
    names.dedup();
    let mut out = String::from(
        "<table id=\"partners\"><tr><th>Partner</th><th>Send list</th><th>Receive list</th>\
<th>Last sent</th><th>Last send failure</th><th>Last received</th></tr>",
    );
    for name in &names {
        let find = |d: Direction| partners.iter().find(|p| &p.partner == name && p.direction == d);
        let sent = find(Direction::Send);
        let received = find(Direction::Receive);
        let failure = sent
            .and_then(|p| p.last_failure.as_ref())
            .map(|(t, why)| format!("{}: {}", time_words(Some(*t)), why))
            .unwrap_or_else(|| "—".to_owned());
        let yes = |on: bool| if on { "yes" } else { "no" };
        let _ = write!(
            out,
            "<tr data-partner=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            yes(send.contains(name)),
            yes(receive.contains(name)),
            esc(&time_words(sent.and_then(|p| p.last_success))),
            esc(&failure),
            esc(&time_words(received.and_then(|p| p.last_success))),
            n = esc(name),
        );
    }
    out.push_str("</table>");
    if names.is_empty() {
        out.push_str("<p class=\"note\">No partner on either list (<code>postern transport-config set --tls-send-domain-secure-list …</code>).</p>");
    }
    out.push_str("<h2>Counters, last hour</h2><p class=\"note\">This hub's own counters, sampled every 10 s since it started; partners talk to the edges, whose counters <code>postern counters</code> shows on each edge.</p>");
    let latest = samples.last().map(|s| s.values).unwrap_or_default();
    for (i, name) in history::SERIES.iter().enumerate() {
        let _ = write!(
            out,
            "<h3>{} <span class=\"note\">now {}</span></h3>{}",
            esc(name),
            latest[i],
            history::graph(samples, i)
        );
    }
    Ok(out)
}

/// Transport configuration, accepted domains, send and receive connectors
/// and trusted roots, as `| FL` lists.
pub async fn config(admin: &AdminClient) -> Result<String, AdminCallError> {
    let mut out = String::new();
    for (kind, title) in [
        (ObjectKind::TransportConfig.into(), "Transport configuration"),
        (ObjectKind::AcceptedDomain.into(), "Accepted domains"),
        (ObjectKind::SendConnector.into(), "Send connectors"),
        (AdminObjectKind::ReceiveConnector, "Receive connectors (this hub)"),
        (ObjectKind::TrustedRoot.into(), "Trusted roots"),
    ] {
        let _ = write!(out, "<h2 id=\"{kind}\">{title}</h2>");
        let objects = admin.objects(kind).await?;
        if objects.is_empty() {
            out.push_str("<p class=\"note\">None.</p>");
        }
        for o in &objects {
            out.push_str(&fl(&flatten(o)));
        }
    }
    Ok(out)
}

/// An object's fields as name/value lines (arrays joined with ", ").
fn flatten(v: &serde_json::Value) -> Vec<(String, String)> {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    match v {
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        other => vec![("value".to_owned(), text(other))],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn expiry_marks_under_thirty_days() {
        let now = OffsetDateTime::parse("2026-01-01T00:00:00Z", &Rfc3339).unwrap();
        assert_eq!(days_left("2026-01-11T00:00:00Z", now), Some(10));
        assert_eq!(
            days_left("2026-01-10T23:59:00Z", now),
            Some(10),
            "a day begun counts"
        );
        assert_eq!(days_left("2025-12-31T23:00:00Z", now), Some(-1));
        assert_eq!(expiry(Some(10)).0, "expiring");
        assert_eq!(expiry(Some(29)).0, "expiring");
        assert_eq!(expiry(Some(30)).0, "");
        assert_eq!(expiry(Some(-2)), ("expired", "expired 2 days ago".to_owned()));
        assert_eq!(expiry(days_left("garbage", now)).0, "");
    }

    #[test]
    fn the_picture_draws_each_edge_and_its_state() {
        let ok = pb::SyncStatus {
            edge: "edge1".into(),
            status: "in-sync".into(),
            ..Default::default()
        };
        let late = pb::SyncStatus {
            edge: "edge2<".into(),
            status: "connecting".into(),
            lag: 3,
            ..Default::default()
        };
        let svg = picture(
            &["hub1".into()],
            "hub1",
            &[("edge1".into(), Some(&ok)), ("edge2<".into(), Some(&late))],
        );
        assert!(svg.contains("class=\"link-in-sync\" data-edge=\"edge1\""));
        assert!(svg.contains("class=\"link-out-of-sync\" data-edge=\"edge2&lt;\""));
        assert!(svg.contains("out of sync, lag 3"));
        assert!(!svg.contains("edge2<"));
    }
}
