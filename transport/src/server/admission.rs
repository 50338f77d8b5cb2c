//! Who may open another session: a receive connector counts its sessions,
//! in all and per client address, and admits a new one only under
//! `MaxInboundConnection`, `MaxInboundConnectionPerSource` and
//! `MaxInboundConnectionPercentagePerSource`. A session holds a
//! [`Ticket`] for its life; dropping it gives the place back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::ReceiveConnectorConfig;

#[derive(Default)]
struct Counts {
    total: u64,
    by_source: HashMap<IpAddr, u64>,
}

/// The connector's open sessions.
#[derive(Clone, Default)]
pub(crate) struct Admission(Arc<Mutex<Counts>>);

impl Admission {
    /// A ticket for a session from `ip`, or `None` when a limit of
    /// `config` is reached.
    pub(crate) fn admit(&self, config: &ReceiveConnectorConfig, ip: IpAddr) -> Option<Ticket> {
        let ip = canonical(ip);
        let mut counts = self.lock();
        let from_source = counts.by_source.get(&ip).copied().unwrap_or(0);
        if !config.admits(counts.total, from_source) {
            return None;
        }
        counts.total += 1;
        *counts.by_source.entry(ip).or_insert(0) += 1;
        Some(Ticket {
            admission: self.clone(),
            ip,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One admitted session's place; given back on drop.
pub(crate) struct Ticket {
    admission: Admission,
    ip: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_source.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_source.remove(&self.ip);
            }
        }
    }
}

/// IPv4-mapped IPv6 counts as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use postern_model::{CountLimit, Domain};

    use super::*;

    fn config(total: CountLimit, per_source: CountLimit, percent: u8) -> ReceiveConnectorConfig {
        let mut c = ReceiveConnectorConfig::new(
            "T",
            "127.0.0.1:0".parse().unwrap(),
            Domain::parse("mx.test").unwrap(),
        );
        c.max_inbound_connection = total;
        c.max_inbound_connection_per_source = per_source;
        c.max_inbound_connection_percentage_per_source = percent;
        c
    }

    #[test]
    fn per_source_total_and_percentage() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let admission = Admission::default();
        let c = config(CountLimit::Unlimited, CountLimit::At(2), 100);
        let t1 = admission.admit(&c, a).unwrap();
        let _t2 = admission.admit(&c, a).unwrap();
        assert!(admission.admit(&c, a).is_none(), "per source");
        let _t3 = admission.admit(&c, b).unwrap();
        drop(t1);
        let _t4 = admission.admit(&c, "::ffff:192.0.2.1".parse().unwrap()).unwrap();
        assert!(admission.admit(&c, a).is_none(), "mapped IPv6 is the same source");
        let admission = Admission::default();
        let c = config(CountLimit::At(3), CountLimit::Unlimited, 100);
        let held: Vec<_> = ["192.0.2.7", "192.0.2.8", "192.0.2.9"]
            .iter()
            .map(|ip| admission.admit(&c, ip.parse().unwrap()).unwrap())
            .collect();
        assert!(admission.admit(&c, b).is_none(), "total");
        drop(held);
        assert!(admission.admit(&c, b).is_some(), "places given back");
        // 50 % of what remains: one source's share shrinks as it takes
        // places (10 free: 5; 7 free: 3), another source still gets in.
        let admission = Admission::default();
        let c = config(CountLimit::At(10), CountLimit::Unlimited, 50);
        let held: Vec<_> = (0..3).map(|_| admission.admit(&c, a).unwrap()).collect();
        assert!(admission.admit(&c, a).is_none(), "3 of 10 taken by one source");
        assert!(admission.admit(&c, b).is_some());
        assert_eq!(held.len(), 3);
    }
}
