//! The last hour of the three Exchange domain-security counters, sampled
//! from the hub's own metrics every ten seconds and kept in memory (a
//! restart starts an empty graph), and their drawing as inline SVG.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use postern_transport::metrics::Metrics;

/// How often a sample is taken.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// How many samples make an hour.
const KEEP: usize = 360;

/// The three counters, in display order.
pub const SERIES: [&str; 3] = [
    "Domain-Secured Messages Received",
    "Domain-Secured Messages Sent",
    "Domain-Secured Outbound Session Failures",
];

/// One sample: when, and the three counters' values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken.
    pub at: SystemTime,
    /// Values in the order of [`SERIES`].
    pub values: [u64; 3],
}

/// The samples of the last hour.
#[derive(Debug, Default)]
pub struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample, forgetting those older than an hour.
    pub fn push(&self, sample: Sample) {
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.push_back(sample);
        while s.len() > KEEP {
            s.pop_front();
        }
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        let s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        s.iter().copied().collect()
    }
}

/// Reads the three counters from `metrics`.
pub fn sample(metrics: &Metrics, at: SystemTime) -> Sample {
    let snapshot = metrics.snapshot();
    let mut values = [0; 3];
    for (i, name) in SERIES.iter().enumerate() {
        values[i] = snapshot
            .iter()
            .filter(|c| c.exchange_name == Some(*name))
            .map(|c| c.value)
            .sum();
    }
    Sample { at, values }
}

/// Samples `metrics` into `history` every [`INTERVAL`] until the task is
/// dropped.
pub fn spawn_sampler(metrics: Arc<Metrics>, history: Arc<History>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        loop {
            tick.tick().await;
            history.push(sample(&metrics, SystemTime::now()));
        }
    })
}

/// A small line graph of series `index` over the samples, as SVG: the
/// counter's value at each sample, scaled to its own maximum.
pub fn graph(samples: &[Sample], index: usize) -> String {
    const W: f64 = 360.0;
    const H: f64 = 60.0;
    let values: Vec<u64> = samples.iter().map(|s| s.values[index]).collect();
    let first = values.first().copied().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    let span = (max - first).max(1) as f64;
    let step = if values.len() > 1 {
        W / (KEEP as f64 - 1.0)
    } else {
        0.0
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i as f64 * step;
            let y = H - ((v - first) as f64 / span) * (H - 4.0) - 2.0;
            format!("{x:.1},{y:.1}")
        })
        .collect();
    format!(
        "<svg class=\"graph\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{} over the last hour\">\
<rect width=\"{W}\" height=\"{H}\" class=\"graph-bg\"/>\
<polyline fill=\"none\" stroke-width=\"2\" class=\"graph-line\" points=\"{}\"/></svg>",
        SERIES[index],
        points.join(" ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn keeps_an_hour_and_reads_the_exchange_counters() {
        let metrics = Metrics::new();
        let history = History::new();
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..400u64 {
            if i % 2 == 0 {
                metrics.domain_secured_message_sent();
            }
            history.push(sample(&metrics, t0 + INTERVAL * i as u32));
        }
        let samples = history.samples();
        assert_eq!(samples.len(), KEEP);
        assert_eq!(samples[0].at, t0 + INTERVAL * 40);
        assert_eq!(samples.last().unwrap().values, [0, 200, 0]);
        let svg = graph(&samples, 1);
        assert!(svg.starts_with("<svg") && svg.contains("Domain-Secured Messages Sent"));
        assert_eq!(svg.matches(',').count(), KEEP);
    }
}
