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
/// node's metrics are gone: at once, whenever the certificate store changes
/// (its generation's watch, no polling), and every 30 seconds for the
/// seconds left.
pub fn spawn_expiry_watch(certs: CertStore, metrics: Arc<Metrics>) {
    let metrics = Arc::downgrade(&metrics);
    tokio::spawn(async move {
        let mut warned: HashMap<Thumbprint, Instant> = HashMap::new();
        let mut changes = certs.watch();
        // Ends with the node's metrics.
        while let Some(live) = metrics.upgrade() {
            check(&certs, &live, &mut warned, OffsetDateTime::now_utc());
            drop(live);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        break; // the certificate store is gone
                    }
                }
                () = tokio::time::sleep(REFRESH) => {}
            }
        }
    });
}

fn check(
    certs: &CertStore,
    metrics: &Metrics,
    warned: &mut HashMap<Thumbprint, Instant>,
    now: OffsetDateTime,
) {
    let list = match certs.list() {
        Ok(list) => list,
        Err(e) => {
            // The figures in force stay; the next change or refresh tries again.
            tracing::error!(error = %e, "cannot read the certificate store to refresh certificate expiry");
            return;
        }
    };
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::collections::BTreeSet;

    use postern_model::{Domain, KeySpec, Service, SubjectName};
    use postern_tls::certs::NewCertificate;

    use super::*;

    /// A certificate created after the watch started is in the gauge long
    /// before the 30-second refresh: the watch wakes on the store's change.
    #[tokio::test]
    async fn a_new_certificate_shows_without_waiting_for_the_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let certs = CertStore::open(&db).unwrap();
        let metrics = Arc::new(Metrics::new());
        spawn_expiry_watch(certs.clone(), Arc::clone(&metrics));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !metrics
                .render()
                .unwrap()
                .contains("postern_certificate_expiry_seconds{"),
            "no certificate yet"
        );
        let view = certs
            .new_self_signed(&NewCertificate {
                subject: SubjectName::common_name_only("edge1.contoso.com"),
                domains: vec![Domain::parse("edge1.contoso.com").unwrap()],
                friendly_name: None,
                key: KeySpec::EcdsaP256,
                services: BTreeSet::from([Service::Smtp]),
            })
            .unwrap();
        // Bounded wait, well under REFRESH (30 s): polling never gets it.
        let mut shown = false;
        for _ in 0..100 {
            let text = metrics.render().unwrap();
            if text.contains(&view.thumbprint.to_string()) {
                shown = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(shown, "the new certificate is not in the expiry gauge after 5 s");
    }
}
