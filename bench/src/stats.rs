//! Latency percentiles (nearest rank) over the recorded samples.

use std::time::Duration;

/// p50/p99/max of a set of latencies, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentiles; zeros for no samples.
pub fn percentiles(samples: &mut [Duration]) -> Percentiles {
    if samples.is_empty() {
        return Percentiles::default();
    }
    samples.sort_unstable();
    let at = |p: f64| {
        let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        ms(samples[rank.clamp(1, samples.len()) - 1])
    };
    Percentiles {
        p50_ms: at(50.0),
        p99_ms: at(99.0),
        max_ms: at(100.0),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let p = percentiles(&mut v);
        assert_eq!((p.p50_ms, p.p99_ms, p.max_ms), (50.0, 99.0, 100.0));
        let mut one = vec![Duration::from_millis(7)];
        assert_eq!(percentiles(&mut one).p99_ms, 7.0);
        assert_eq!(percentiles(&mut []), Percentiles::default());
    }
}
