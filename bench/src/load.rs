//! The `load` run: open C sessions, release them together, send N messages
//! of S bytes (session i sends messages i, i+C, i+2C, …), record per-message
//! latency (MAIL written → 250 after the dot), then watch the sink's Maildir
//! until all N arrived, and report throughput and latency.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use rustls_pki_types::ServerName;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::maildir::Watcher;
use crate::message::Template;
use crate::session::Session;
use crate::stats::{self, Percentiles};
use crate::tls;

/// How often the Maildir is listed while waiting for deliveries.
const POLL: Duration = Duration::from_millis(50);

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: String,
    pub messages: u64,
    pub size: usize,
    pub concurrency: usize,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub tls_name: String,
    pub from: String,
    pub to: String,
    pub ehlo: String,
    pub maildir: Option<PathBuf>,
    /// Longest wait for the sink after the last message was accepted.
    pub timeout: Duration,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub run_id: String,
    pub target: String,
    pub messages: u64,
    pub size: usize,
    pub concurrency: usize,
    pub pipelining: bool,
    /// Bytes of message content submitted (excluding SMTP framing).
    pub bytes: u64,
    /// First MAIL → last 250 after a dot.
    pub submit_secs: f64,
    /// Messages of this run found at the sink (None without `--maildir`).
    pub delivered: Option<u64>,
    /// First MAIL → newest delivered file's mtime (the sink's write time).
    pub e2e_secs: Option<f64>,
    /// First MAIL → the scan that found the last message (50 ms polling).
    pub e2e_observed_secs: Option<f64>,
    pub latency: Percentiles,
}

impl Report {
    /// Every message reached the sink (or no sink was watched).
    pub fn complete(&self) -> bool {
        self.delivered.is_none_or(|d| d >= self.messages)
    }

    fn rate(&self, secs: Option<f64>) -> Option<f64> {
        secs.filter(|s| *s > 0.0).map(|s| self.messages as f64 / s)
    }

    pub fn submit_rate(&self) -> Option<f64> {
        self.rate(Some(self.submit_secs))
    }

    pub fn e2e_rate(&self) -> Option<f64> {
        if self.complete() {
            self.rate(self.e2e_secs)
        } else {
            None
        }
    }

    /// Flat JSON (one level), so shell scripts can pick fields with sed.
    pub fn to_json(&self) -> serde_json::Value {
        let round = |v: Option<f64>| v.map(|v| (v * 1000.0).round() / 1000.0);
        json!({
            "run_id": self.run_id,
            "target": self.target,
            "messages": self.messages,
            "size": self.size,
            "concurrency": self.concurrency,
            "pipelining": self.pipelining,
            "bytes": self.bytes,
            "submit_secs": round(Some(self.submit_secs)),
            "submit_msgs_per_s": round(self.submit_rate()),
            "delivered": self.delivered,
            "e2e_secs": round(self.e2e_secs),
            "e2e_observed_secs": round(self.e2e_observed_secs),
            "e2e_msgs_per_s": round(self.e2e_rate()),
            "latency_p50_ms": round(Some(self.latency.p50_ms)),
            "latency_p99_ms": round(Some(self.latency.p99_ms)),
            "latency_max_ms": round(Some(self.latency.max_ms)),
        })
    }

    /// One line for people.
    pub fn human(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        format!(
            "{n} msgs x {s} B, C={c}: submit {sr} msg/s, end-to-end {er} msg/s ({d} delivered), \
             latency p50 {p50:.1} ms p99 {p99:.1} ms",
            n = self.messages,
            s = self.size,
            c = self.concurrency,
            sr = f(self.submit_rate()),
            er = f(self.e2e_rate()),
            d = self
                .delivered
                .map_or("not watched".to_string(), |d| d.to_string()),
            p50 = self.latency.p50_ms,
            p99 = self.latency.p99_ms,
        )
    }
}

/// A run id unique enough for one machine: time and pid, in hex.
fn run_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}{:x}",
        (nanos / 1000) as u64 & 0xffff_ffff_ffff,
        std::process::id()
    )
}

/// Runs one load test as configured.
pub async fn run(cfg: &LoadConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(cfg.messages > 0, "--messages must be at least 1");
    anyhow::ensure!(cfg.concurrency > 0, "--concurrency must be at least 1");
    let connector = TlsConnector::from(tls::client_config(&cfg.ca, &cfg.cert, &cfg.key)?);
    let name = ServerName::try_from(cfg.tls_name.clone())
        .with_context(|| format!("--tls-name {:?} is not a DNS name or IP address", cfg.tls_name))?;
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .context("formatting the Date header")?;
    let template = Template {
        run_id: run_id(),
        from: cfg.from.clone(),
        to: cfg.to.clone(),
        date,
        size: cfg.size,
    };

    // Files already in the Maildir are read once now, not during the run.
    let mut watcher = cfg
        .maildir
        .as_ref()
        .map(|dir| Watcher::new(dir, &template.marker()));
    if let Some(w) = watcher.as_mut() {
        w.scan().context("listing the Maildir before the run")?;
    }

    // Phase 1: every session connected and past STARTTLS, not timed.
    let sessions = cfg
        .concurrency
        .min(usize::try_from(cfg.messages).unwrap_or(usize::MAX));
    let mut opening = JoinSet::new();
    for i in 0..sessions {
        let (connector, name, cfg) = (connector.clone(), name.clone(), cfg.clone());
        opening.spawn(async move {
            let s = Session::open(&cfg.target, &connector, name, &cfg.ehlo, &cfg.from, &cfg.to).await;
            (
                i,
                s.with_context(|| format!("session {i}: opening {}", cfg.target)),
            )
        });
    }
    let mut open = Vec::with_capacity(sessions);
    while let Some(joined) = opening.join_next().await {
        let (i, session) = joined.context("session task panicked")?;
        open.push((i, session?));
    }
    let pipelining = open.iter().all(|(_, s)| s.pipelining());

    // Phase 2: timed.
    let t0 = Instant::now();
    let t0_wall = SystemTime::now();
    let mut sending = JoinSet::new();
    for (i, mut session) in open {
        let (template, total, step) = (template.clone(), cfg.messages, sessions as u64);
        sending.spawn(async move {
            let mut latencies = Vec::new();
            let mut bytes = 0u64;
            let mut seq = i as u64;
            while seq < total {
                let message = template.build(seq);
                let start = Instant::now();
                session
                    .send_message(&message)
                    .await
                    .with_context(|| format!("session {i}, message {seq}"))?;
                latencies.push(start.elapsed());
                bytes += message.len() as u64;
                seq += step;
            }
            let done = Instant::now();
            session.quit().await;
            anyhow::Ok((latencies, bytes, done))
        });
    }
    let mut latencies = Vec::with_capacity(usize::try_from(cfg.messages).unwrap_or(0));
    let mut bytes = 0;
    let mut submit_end = t0;
    while let Some(joined) = sending.join_next().await {
        let (l, b, done) = joined.context("session task panicked")??;
        latencies.extend(l);
        bytes += b;
        submit_end = submit_end.max(done);
    }

    // Phase 3: wait for the sink. Nothing else runs now, so the blocking
    // directory scan stays on this task.
    let (mut delivered, mut e2e, mut observed) = (None, None, None);
    if let Some(w) = watcher.as_mut() {
        let deadline = Instant::now() + cfg.timeout;
        loop {
            w.scan().context("scanning the Maildir")?;
            if w.delivered() as u64 >= cfg.messages {
                observed = Some(t0.elapsed().as_secs_f64());
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        delivered = Some(w.delivered() as u64);
        e2e = w.newest_delivery().map(|newest| {
            // The file may be stamped before the submit phase ended (async
            // sinks): e2e is never shorter than the submit phase.
            let since = newest.duration_since(t0_wall).map_or(0.0, |d| d.as_secs_f64());
            since.max((submit_end - t0).as_secs_f64())
        });
    }

    if latencies.len() as u64 != cfg.messages {
        bail!("sent {} messages, expected {}", latencies.len(), cfg.messages);
    }
    Ok(Report {
        run_id: template.run_id,
        target: cfg.target.clone(),
        messages: cfg.messages,
        size: cfg.size,
        concurrency: sessions,
        pipelining,
        bytes,
        submit_secs: (submit_end - t0).as_secs_f64(),
        delivered,
        e2e_secs: e2e,
        e2e_observed_secs: observed,
        latency: stats::percentiles(&mut latencies),
    })
}
