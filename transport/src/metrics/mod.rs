//! The node's counters and gauges: Prometheus text exposition (format
//! 0.0.4) for scrapers, and [`Metrics::snapshot`] for `postern counters`,
//! which shows the Exchange names ("Domain-Secured Messages Received") next
//! to the Prometheus ones.
//!
//! The values are kept here, the text is written by the `prometheus`
//! crate's encoder (`exposition`). Postern needs a dozen series whose
//! labels are mostly closed enums; keeping the values in our own struct
//! gives typed accessors
//! (`metrics.tls_handshake(Direction::Send, TlsHandshakeOutcome::Untrusted)`)
//! instead of stringly label sets, keeps the Exchange names beside the
//! metrics, and keeps each series' label order (the crate's own vectors
//! sort labels by name). Enum-labelled series are plain atomics indexed by
//! the enums and are all exposed from zero; only the per-connector session
//! counter needs a map.
//!
//! `crate::http` serves them at `GET /metrics`.

mod cert_expiry;
mod exposition;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

pub use cert_expiry::{WARN_WITHIN_DAYS, spawn_expiry_watch};
pub(crate) use exposition::CONTENT_TYPE;
pub use exposition::RenderError;

use crate::protocol_log::Direction;

/// A Prometheus metric type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (until the node restarts).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl MetricKind {
    /// The word in the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// How a message transfer ended, from Postern's side of the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Accepted: by Postern (receive) or by the next hop (send).
    Accepted,
    /// Refused for now (4xx); the sender retries.
    Deferred,
    /// Refused for good (5xx).
    Rejected,
}

impl MessageOutcome {
    /// Every outcome, in exposition order.
    pub const ALL: [MessageOutcome; 3] = [Self::Accepted, Self::Deferred, Self::Rejected];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Deferred => "deferred",
            Self::Rejected => "rejected",
        }
    }
}

/// How a TLS handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsHandshakeOutcome {
    /// Negotiated, and the peer's certificate (if required) was trusted.
    Ok,
    /// The handshake itself failed.
    Failed,
    /// Negotiated, but the peer's certificate was not trusted for this hop.
    Untrusted,
}

impl TlsHandshakeOutcome {
    /// Every outcome, in exposition order.
    pub const ALL: [TlsHandshakeOutcome; 3] = [Self::Ok, Self::Failed, Self::Untrusted];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Untrusted => "untrusted",
        }
    }
}

/// One series' value at the time of the snapshot, for `postern counters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterSample {
    /// The Prometheus name (`postern_domain_secured_messages_received_total`).
    pub name: &'static str,
    /// The Exchange performance counter it stands for, if any
    /// (`Domain-Secured Messages Received`).
    pub exchange_name: Option<&'static str>,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Label names and values, in exposition order.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: u64,
}

/// What a metric is, apart from its values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Desc {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
    pub exchange_name: Option<&'static str>,
}

const SESSIONS: Desc = Desc {
    name: "postern_smtp_sessions_total",
    help: "SMTP sessions opened, by direction and connector.",
    kind: MetricKind::Counter,
    exchange_name: None,
};
const MESSAGES: Desc = Desc {
    name: "postern_messages_total",
    help: "Message transfers, by direction and outcome.",
    kind: MetricKind::Counter,
    exchange_name: None,
};
const BYTES: Desc = Desc {
    name: "postern_bytes_total",
    help: "Message bytes accepted, by direction.",
    kind: MetricKind::Counter,
    exchange_name: None,
};
const TLS_HANDSHAKES: Desc = Desc {
    name: "postern_tls_handshakes_total",
    help: "TLS handshakes, by direction and outcome.",
    kind: MetricKind::Counter,
    exchange_name: None,
};
const TLS_RESUMED: Desc = Desc {
    name: "postern_tls_resumed_total",
    help: "TLS handshakes that resumed an earlier session (no certificate signatures), by direction.",
    kind: MetricKind::Counter,
    exchange_name: None,
};
const QUEUE_LENGTH: Desc = Desc {
    name: "postern_queue_length",
    help: "Messages in the queue.",
    kind: MetricKind::Gauge,
    exchange_name: None,
};
const DS_RECEIVED: Desc = Desc {
    name: "postern_domain_secured_messages_received_total",
    help: "Domain-Secured Messages Received",
    kind: MetricKind::Counter,
    exchange_name: Some("Domain-Secured Messages Received"),
};
const DS_SENT: Desc = Desc {
    name: "postern_domain_secured_messages_sent_total",
    help: "Domain-Secured Messages Sent",
    kind: MetricKind::Counter,
    exchange_name: Some("Domain-Secured Messages Sent"),
};
const DS_OUTBOUND_FAILURES: Desc = Desc {
    name: "postern_domain_secured_outbound_session_failures_total",
    help: "Domain-Secured Outbound Session Failures",
    kind: MetricKind::Counter,
    exchange_name: Some("Domain-Secured Outbound Session Failures"),
};
const DUPLICATES_SUPPRESSED: Desc = Desc {
    name: "postern_duplicates_suppressed_total",
    help: "Recipients of messages relayed again by a node of the organisation, dropped as duplicates.",
    kind: MetricKind::Counter,
    exchange_name: None,
};

const ES_LAG: Desc = Desc {
    name: "postern_edgesync_lag",
    help: "Configuration versions an edge is behind this hub.",
    kind: MetricKind::Gauge,
    exchange_name: None,
};
const ES_EDGE_VERSION: Desc = Desc {
    name: "postern_edgesync_edge_version",
    help: "Configuration version an edge last acknowledged.",
    kind: MetricKind::Gauge,
    exchange_name: None,
};
const ES_HUB_VERSION: Desc = Desc {
    name: "postern_edgesync_hub_version",
    help: "This hub's configuration version.",
    kind: MetricKind::Gauge,
    exchange_name: None,
};
const ES_IN_SYNC: Desc = Desc {
    name: "postern_edgesync_in_sync",
    help: "1 when the edge has acknowledged the hub's current version.",
    kind: MetricKind::Gauge,
    exchange_name: None,
};
const ES_SNAPSHOTS: Desc = Desc {
    name: "postern_edgesync_snapshots_sent_total",
    help: "Full snapshots sent to an edge since this hub started.",
    kind: MetricKind::Counter,
    exchange_name: None,
};
const ES_DELTAS: Desc = Desc {
    name: "postern_edgesync_deltas_sent_total",
    help: "Deltas sent to an edge since this hub started.",
    kind: MetricKind::Counter,
    exchange_name: None,
};

const CERT_EXPIRY: Desc = Desc {
    name: "postern_certificate_expiry_seconds",
    help: "Seconds until an installed certificate expires (0 once expired).",
    kind: MetricKind::Gauge,
    exchange_name: None,
};

/// One installed certificate's expiry, for `postern_certificate_expiry_seconds`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateExpirySample {
    /// Its thumbprint.
    pub thumbprint: String,
    /// Services it is enabled for, comma-separated (empty: none).
    pub services: String,
    /// Seconds until `not_after` (0 once expired).
    pub seconds: u64,
}

/// The EdgeSync figures of one subscribed edge, as a hub reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeSyncSample {
    /// The edge's name.
    pub edge: String,
    /// Version the edge acknowledged.
    pub edge_version: u64,
    /// Versions behind.
    pub lag: u64,
    /// Whether it is in sync.
    pub in_sync: bool,
    /// Snapshots sent.
    pub snapshots_sent: u64,
    /// Deltas sent.
    pub deltas_sent: u64,
}

/// One metric with its current series, the common form of `render` and
/// `snapshot`.
#[derive(Debug)]
pub(crate) struct Family {
    pub desc: Desc,
    pub series: Vec<(Vec<(&'static str, String)>, u64)>,
}

/// The node's metrics. Share it in an `Arc`; every accessor takes `&self`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Per direction, per connector name.
    sessions: [Mutex<BTreeMap<String, u64>>; 2],
    messages: [[AtomicU64; 3]; 2],
    bytes: [AtomicU64; 2],
    tls_handshakes: [[AtomicU64; 3]; 2],
    tls_resumed: [AtomicU64; 2],
    queue_length: AtomicU64,
    ds_received: AtomicU64,
    ds_sent: AtomicU64,
    ds_outbound_failures: AtomicU64,
    duplicates_suppressed: AtomicU64,
    edgesync: Mutex<(u64, Vec<EdgeSyncSample>)>,
    /// Per partner domain and direction, the last domain-secured outcomes.
    partners: Mutex<BTreeMap<(String, usize), PartnerOutcome>>,
    certificates: Mutex<Vec<CertificateExpirySample>>,
}

/// The last domain-secured success and failure with one partner in one
/// direction, since the node started (for the console).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnerOutcome {
    /// The partner's domain, lower-case.
    pub partner: String,
    /// Receive (the partner sent to us) or send.
    pub direction: Direction,
    /// When a message last travelled domain-secured.
    pub last_success: Option<std::time::SystemTime>,
    /// When a session last failed to be secured, and why.
    pub last_failure: Option<(std::time::SystemTime, String)>,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Receive => 0,
        Direction::Send => 1,
    }
}

fn outcome_index(o: MessageOutcome) -> usize {
    match o {
        MessageOutcome::Accepted => 0,
        MessageOutcome::Deferred => 1,
        MessageOutcome::Rejected => 2,
    }
}

fn tls_index(o: TlsHandshakeOutcome) -> usize {
    match o {
        TlsHandshakeOutcome::Ok => 0,
        TlsHandshakeOutcome::Failed => 1,
        TlsHandshakeOutcome::Untrusted => 2,
    }
}

impl Metrics {
    /// All metrics at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// A session opened on `connector` (`postern_smtp_sessions_total`).
    pub fn smtp_session(&self, direction: Direction, connector: &str) {
        let mut map = self.sessions[dir_index(direction)]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match map.get_mut(connector) {
            Some(n) => *n += 1,
            None => {
                map.insert(connector.to_owned(), 1);
            }
        }
    }

    /// A message transfer ended (`postern_messages_total`).
    pub fn message(&self, direction: Direction, outcome: MessageOutcome) {
        self.messages[dir_index(direction)][outcome_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` message bytes were accepted (`postern_bytes_total`).
    pub fn bytes(&self, direction: Direction, n: u64) {
        self.bytes[dir_index(direction)].fetch_add(n, Ordering::Relaxed);
    }

    /// A TLS handshake ended (`postern_tls_handshakes_total`).
    pub fn tls_handshake(&self, direction: Direction, outcome: TlsHandshakeOutcome) {
        self.tls_handshakes[dir_index(direction)][tls_index(outcome)].fetch_add(1, Ordering::Relaxed);
    }

    /// A successful TLS handshake resumed an earlier session
    /// (`postern_tls_resumed_total`); it is counted in
    /// `postern_tls_handshakes_total` too.
    pub fn tls_resumed(&self, direction: Direction) {
        self.tls_resumed[dir_index(direction)].fetch_add(1, Ordering::Relaxed);
    }

    /// The queue now holds `n` messages (`postern_queue_length`).
    pub fn set_queue_length(&self, n: u64) {
        self.queue_length.store(n, Ordering::Relaxed);
    }

    /// A domain-secured message was accepted from a partner.
    pub fn domain_secured_message_received(&self) {
        self.ds_received.fetch_add(1, Ordering::Relaxed);
    }

    /// A domain-secured message was accepted by a partner.
    pub fn domain_secured_message_sent(&self) {
        self.ds_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// An outbound session to a domain-secure partner could not be secured
    /// (the message stays queued).
    pub fn domain_secured_outbound_session_failure(&self) {
        self.ds_outbound_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes a domain-secured message with `partner` (it arrived or was
    /// accepted), for [`Metrics::partners`].
    pub fn partner_success(&self, direction: Direction, partner: &str) {
        self.partner_entry(direction, partner, |p| {
            p.last_success = Some(std::time::SystemTime::now())
        });
    }

    /// Notes a session with `partner` that could not be secured, and why.
    pub fn partner_failure(&self, direction: Direction, partner: &str, reason: &str) {
        self.partner_entry(direction, partner, |p| {
            p.last_failure = Some((std::time::SystemTime::now(), reason.to_owned()))
        });
    }

    fn partner_entry(&self, direction: Direction, partner: &str, f: impl FnOnce(&mut PartnerOutcome)) {
        let partner = partner.to_ascii_lowercase();
        let mut map = self.partners.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map
            .entry((partner.clone(), dir_index(direction)))
            .or_insert(PartnerOutcome {
                partner,
                direction,
                last_success: None,
                last_failure: None,
            });
        f(entry);
    }

    /// Every partner with a domain-secured outcome since the node started.
    pub fn partners(&self) -> Vec<PartnerOutcome> {
        let map = self.partners.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// `n` recipients of a message another node relayed again were
    /// dropped (`postern_duplicates_suppressed_total`).
    pub fn duplicates_suppressed(&self, n: u64) {
        self.duplicates_suppressed.fetch_add(n, Ordering::Relaxed);
    }

    /// The metrics in Prometheus text exposition format 0.0.4. A metric
    /// with no series yet (no session opened, no edge subscribed) is left
    /// out.
    pub fn render(&self) -> Result<String, RenderError> {
        exposition::render(&self.families())
    }

    /// Replaces the EdgeSync figures (a hub calls this as statuses change).
    pub fn set_edgesync(&self, hub_version: u64, edges: Vec<EdgeSyncSample>) {
        *self.edgesync.lock().unwrap_or_else(|p| p.into_inner()) = (hub_version, edges);
    }

    /// Replaces the certificate expiry figures.
    pub fn set_certificates(&self, certificates: Vec<CertificateExpirySample>) {
        *self.certificates.lock().unwrap_or_else(|p| p.into_inner()) = certificates;
    }

    /// Every series and its value, for `postern counters`.
    pub fn snapshot(&self) -> Vec<CounterSample> {
        self.families()
            .into_iter()
            .flat_map(|f| {
                f.series.into_iter().map(move |(labels, value)| CounterSample {
                    name: f.desc.name,
                    exchange_name: f.desc.exchange_name,
                    kind: f.desc.kind,
                    labels,
                    value,
                })
            })
            .collect()
    }

    fn families(&self) -> Vec<Family> {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let plain = |desc, a: &AtomicU64| Family {
            desc,
            series: vec![(Vec::new(), load(a))],
        };
        let mut sessions = Vec::new();
        let mut messages = Vec::new();
        let mut bytes = Vec::new();
        let mut tls = Vec::new();
        let mut resumed = Vec::new();
        for d in Direction::ALL {
            let i = dir_index(d);
            let map = self.sessions[i].lock().unwrap_or_else(|p| p.into_inner());
            for (connector, n) in map.iter() {
                sessions.push((
                    vec![
                        ("direction", d.as_str().to_owned()),
                        ("connector", connector.clone()),
                    ],
                    *n,
                ));
            }
            for o in MessageOutcome::ALL {
                let labels = vec![
                    ("direction", d.as_str().to_owned()),
                    ("outcome", o.as_str().to_owned()),
                ];
                messages.push((labels, load(&self.messages[i][outcome_index(o)])));
            }
            bytes.push((vec![("direction", d.as_str().to_owned())], load(&self.bytes[i])));
            for o in TlsHandshakeOutcome::ALL {
                let labels = vec![
                    ("direction", d.as_str().to_owned()),
                    ("outcome", o.as_str().to_owned()),
                ];
                tls.push((labels, load(&self.tls_handshakes[i][tls_index(o)])));
            }
            resumed.push((
                vec![("direction", d.as_str().to_owned())],
                load(&self.tls_resumed[i]),
            ));
        }
        vec![
            Family {
                desc: SESSIONS,
                series: sessions,
            },
            Family {
                desc: MESSAGES,
                series: messages,
            },
            Family {
                desc: BYTES,
                series: bytes,
            },
            Family {
                desc: TLS_HANDSHAKES,
                series: tls,
            },
            Family {
                desc: TLS_RESUMED,
                series: resumed,
            },
            plain(QUEUE_LENGTH, &self.queue_length),
            plain(DS_RECEIVED, &self.ds_received),
            plain(DS_SENT, &self.ds_sent),
            plain(DS_OUTBOUND_FAILURES, &self.ds_outbound_failures),
            plain(DUPLICATES_SUPPRESSED, &self.duplicates_suppressed),
        ]
        .into_iter()
        .chain(self.edgesync_families())
        .chain(self.certificate_families())
        .collect()
    }

    fn certificate_families(&self) -> Vec<Family> {
        let certs = self.certificates.lock().unwrap_or_else(|p| p.into_inner());
        if certs.is_empty() {
            return Vec::new();
        }
        vec![Family {
            desc: CERT_EXPIRY,
            series: certs
                .iter()
                .map(|c| {
                    (
                        vec![
                            ("thumbprint", c.thumbprint.clone()),
                            ("services", c.services.clone()),
                        ],
                        c.seconds,
                    )
                })
                .collect(),
        }]
    }

    fn edgesync_families(&self) -> Vec<Family> {
        let guard = self.edgesync.lock().unwrap_or_else(|p| p.into_inner());
        let (hub_version, edges) = &*guard;
        if edges.is_empty() {
            return Vec::new();
        }
        let per_edge = |desc, f: &dyn Fn(&EdgeSyncSample) -> u64| Family {
            desc,
            series: edges
                .iter()
                .map(|e| (vec![("edge", e.edge.clone())], f(e)))
                .collect(),
        };
        vec![
            Family {
                desc: ES_HUB_VERSION,
                series: vec![(Vec::new(), *hub_version)],
            },
            per_edge(ES_EDGE_VERSION, &|e| e.edge_version),
            per_edge(ES_LAG, &|e| e.lag),
            per_edge(ES_IN_SYNC, &|e| u64::from(e.in_sync)),
            per_edge(ES_SNAPSHOTS, &|e| e.snapshots_sent),
            per_edge(ES_DELTAS, &|e| e.deltas_sent),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_prometheus_text() {
        let m = Metrics::new();
        m.smtp_session(Direction::Receive, "Default");
        m.smtp_session(Direction::Receive, "Default");
        m.smtp_session(Direction::Send, "To \"Partner\"\\Internet\n");
        m.message(Direction::Receive, MessageOutcome::Accepted);
        m.bytes(Direction::Receive, 1234);
        m.tls_handshake(Direction::Send, TlsHandshakeOutcome::Untrusted);
        m.set_queue_length(7);
        m.domain_secured_message_received();
        m.domain_secured_outbound_session_failure();
        m.domain_secured_outbound_session_failure();
        m.duplicates_suppressed(3);
        let text = m.render().expect("renders");
        for line in [
            "# HELP postern_smtp_sessions_total SMTP sessions opened, by direction and connector.",
            "# TYPE postern_smtp_sessions_total counter",
            "postern_smtp_sessions_total{direction=\"receive\",connector=\"Default\"} 2",
            "postern_smtp_sessions_total{direction=\"send\",connector=\"To \\\"Partner\\\"\\\\Internet\\n\"} 1",
            "postern_messages_total{direction=\"receive\",outcome=\"accepted\"} 1",
            "postern_messages_total{direction=\"send\",outcome=\"rejected\"} 0",
            "postern_bytes_total{direction=\"receive\"} 1234",
            "postern_tls_handshakes_total{direction=\"send\",outcome=\"untrusted\"} 1",
            "# TYPE postern_queue_length gauge",
            "postern_queue_length 7",
            "# HELP postern_domain_secured_messages_received_total Domain-Secured Messages Received",
            "postern_domain_secured_messages_received_total 1",
            "# HELP postern_domain_secured_messages_sent_total Domain-Secured Messages Sent",
            "postern_domain_secured_messages_sent_total 0",
            "# HELP postern_domain_secured_outbound_session_failures_total Domain-Secured Outbound Session Failures",
            "postern_domain_secured_outbound_session_failures_total 2",
            "# TYPE postern_duplicates_suppressed_total counter",
            "postern_duplicates_suppressed_total 3",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(text.ends_with('\n'));
        // HELP and TYPE once per metric, right before its samples.
        assert_eq!(text.matches("# TYPE postern_messages_total ").count(), 1);
    }

    #[test]
    fn snapshot_carries_exchange_names() {
        let m = Metrics::new();
        m.domain_secured_message_sent();
        let snap = m.snapshot();
        let sent = snap
            .iter()
            .find(|s| s.name == "postern_domain_secured_messages_sent_total")
            .unwrap();
        assert_eq!(sent.exchange_name, Some("Domain-Secured Messages Sent"));
        assert_eq!(sent.value, 1);
        assert!(sent.labels.is_empty());
        let tls: Vec<_> = snap
            .iter()
            .filter(|s| s.name == "postern_tls_handshakes_total")
            .collect();
        assert_eq!(tls.len(), 6, "every direction and outcome from zero");
        assert_eq!(
            tls[0].labels,
            [("direction", "receive".to_owned()), ("outcome", "ok".to_owned())]
        );
        assert!(
            snap.iter().all(|s| s.name != "postern_smtp_sessions_total"),
            "no sessions yet"
        );
        assert_eq!(snap.iter().filter(|s| s.exchange_name.is_some()).count(), 3);
    }
}
