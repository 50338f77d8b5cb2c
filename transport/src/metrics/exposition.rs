//! The Prometheus text exposition format, version 0.0.4, written by the
//! `prometheus` crate's `TextEncoder`: `# HELP` and `# TYPE` before each
//! metric's samples, label values and HELP text escaped, one sample per
//! line. This module only turns Postern's [`Family`] list into the crate's
//! `MetricFamily` values (label order kept as given; families without a
//! series left out, as the encoder requires).
//!
//! Why `prometheus` and not `prometheus-client`: the latter writes
//! OpenMetrics (`# TYPE postern_smtp_sessions counter` without `_total`,
//! a final `# EOF`), which would change the documented 0.0.4 names.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder as _, TextEncoder};

use crate::metrics::{Family, MetricKind};

/// The `Content-Type` of the output of [`render`]: the encoder's
/// `text/plain; version=0.0.4` with the charset said.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition could not be written (the encoder refused a family).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the Prometheus exposition (a bug in Postern's metric families): {0}")]
pub struct RenderError(#[from] prometheus::Error);

/// Formats the families.
pub(crate) fn render(families: &[Family]) -> Result<String, RenderError> {
    let families: Vec<MetricFamily> = families
        .iter()
        .filter(|f| !f.series.is_empty())
        .map(to_metric_family)
        .collect();
    let encoder = TextEncoder::new();
    debug_assert!(CONTENT_TYPE.starts_with(encoder.format_type()));
    let mut out = String::with_capacity(4096);
    encoder.encode_utf8(&families, &mut out)?;
    Ok(out)
}

fn to_metric_family(f: &Family) -> MetricFamily {
    let mut mf = MetricFamily::default();
    mf.set_name(f.desc.name.to_owned());
    mf.set_help(f.desc.help.to_owned());
    mf.set_field_type(match f.desc.kind {
        MetricKind::Counter => MetricType::COUNTER,
        MetricKind::Gauge => MetricType::GAUGE,
    });
    mf.set_metric(
        f.series
            .iter()
            .map(|(labels, value)| {
                let mut m = Metric::default();
                m.set_label(
                    labels
                        .iter()
                        .map(|(name, value)| {
                            let mut pair = LabelPair::default();
                            pair.set_name((*name).to_owned());
                            pair.set_value(value.clone());
                            pair
                        })
                        .collect(),
                );
                // Counts stay exact up to 2^53, far beyond what a node counts.
                #[allow(clippy::cast_precision_loss)]
                let value = *value as f64;
                match f.desc.kind {
                    MetricKind::Counter => {
                        let mut c = Counter::default();
                        c.set_value(value);
                        m.set_counter(c);
                    }
                    MetricKind::Gauge => {
                        let mut g = Gauge::default();
                        g.set_value(value);
                        m.set_gauge(g);
                    }
                }
                m
            })
            .collect(),
    );
    mf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Desc;

    fn family(help: &'static str, label_value: &str) -> Family {
        Family {
            desc: Desc {
                name: "postern_test_total",
                help,
                kind: MetricKind::Counter,
                exchange_name: None,
            },
            series: vec![(vec![("l", label_value.to_owned())], 3)],
        }
    }

    #[test]
    fn escaping_differs_for_help_and_label_values() {
        let text = render(&[family("a \"b\" \\ c\nd", "a \"b\" \\ c\nd")]).expect("renders");
        assert_eq!(
            text,
            "# HELP postern_test_total a \"b\" \\\\ c\\nd\n\
             # TYPE postern_test_total counter\n\
             postern_test_total{l=\"a \\\"b\\\" \\\\ c\\nd\"} 3\n"
        );
    }

    #[test]
    fn a_family_without_series_is_left_out() {
        let mut empty = family("h", "v");
        empty.series.clear();
        assert_eq!(render(&[empty]).expect("renders"), "");
    }
}
