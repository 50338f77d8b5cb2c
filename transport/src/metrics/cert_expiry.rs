//! Certificate expiry as administrators and monitoring see it: the
//! `postern_certificate_expiry_seconds{thumbprint,services}` gauge, and a
//! warning in the log for a certificate enabled for a service that expires
//! within 30 days — when first seen and then once a day.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_model::Thumbprint;
use postern_tls::certs::CertStore;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::metrics::{CertificateExpirySample, Metrics};

/// Warn when an enabled certificate has this little left.
pub const WARN_WITHIN_DAYS: i64 = 30;
/// How often the warning repeats.
const WARN_EVERY: Duration = Duration::from_secs(24 * 3600);
/// How often the figures are refreshed.
const REFRESH: Duration = Duration::from_secs(30);

/// Keeps `metrics` current and warns about expiring certificates until the
/// runtime stops.
pub fn spawn_expiry_watch(certs: CertStore, metrics: Arc<Metrics>) {
    let metrics = Arc::downgrade(&metrics);
    tokio::spawn(async move {
        let mut warned: HashMap<Thumbprint, Instant> = HashMap::new();
        let mut seen_generation = u64::MAX;
        let mut refreshed = Instant::now();
        // Ends with the node's metrics.
        while let Some(metrics) = metrics.upgrade() {
            let generation = certs.generation();
            if generation != seen_generation || refreshed.elapsed() >= REFRESH {
                seen_generation = generation;
                refreshed = Instant::now();
                check(&certs, &metrics, &mut warned, OffsetDateTime::now_utc());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

fn check(
    certs: &CertStore,
    metrics: &Metrics,
    warned: &mut HashMap<Thumbprint, Instant>,
    now: OffsetDateTime,
) {
    let Ok(list) = certs.list() else { return };
    let mut samples = Vec::new();
    for c in list {
        let Ok(not_after) = OffsetDateTime::parse(&c.not_after, &Rfc3339) else {
            continue; // a pending request
        };
        let left = (not_after - now).whole_seconds();
        let services: Vec<String> = c.services.iter().map(ToString::to_string).collect();
        samples.push(CertificateExpirySample {
            thumbprint: c.thumbprint.to_string(),
            services: services.join(","),
            seconds: u64::try_from(left).unwrap_or(0),
        });
        let due = !services.is_empty()
            && c.days_left <= WARN_WITHIN_DAYS
            && warned
                .get(&c.thumbprint)
                .is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if due {
            warned.insert(c.thumbprint, Instant::now());
            tracing::warn!(
                thumbprint = %c.thumbprint,
                services = %services.join(","),
                not_after = %c.not_after,
                days_left = c.days_left,
                "certificate expires within {WARN_WITHIN_DAYS} days: request or create a new one, import it and enable it"
            );
        }
    }
    metrics.set_certificates(samples);
}
