//! MX lookups against a real DNS server (dnsmasq on loopback), and the
//! ordering and error mapping on their own.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::SeedableRng;

use super::testing::Dnsmasq;
use super::*;

fn domain(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

/// The zone every test asks about.
const RECORDS: &[&str] = &[
    // Answer .test from the records below only: NODATA for a missing
    // type, not REFUSED for want of an upstream server.
    "--local=/test/",
    // Preferences out of order in the server's answer.
    "--mx-host=pref.test,mx-b.pref.test,20",
    "--mx-host=pref.test,mx-c.pref.test,30",
    "--mx-host=pref.test,mx-a.pref.test,10",
    "--host-record=mx-a.pref.test,127.0.0.1",
    "--host-record=mx-b.pref.test,127.0.0.2,::1",
    // Two exchangers of equal preference behind a preferred one.
    "--mx-host=eq.test,first.eq.test,5",
    "--mx-host=eq.test,one.eq.test,10",
    "--mx-host=eq.test,two.eq.test,10",
    // No MX, an address: the implicit MX.
    "--host-record=implicit.test,127.0.0.3",
    // Null MX (RFC 7505): preference 0, exchange the root (one zero byte).
    "--dns-rr=null.test,15,000000",
    // Neither MX nor address.
    "--txt-record=bare.test,no mail here",
    // NXDOMAIN.
    "--address=/nx.test/",
];

fn resolver(server: &Dnsmasq) -> MxResolver {
    MxResolver::new(&DnsConfig {
        servers: vec![server.addr],
        timeout: Duration::from_secs(2),
        ..DnsConfig::default()
    })
    .unwrap()
}

fn names(hosts: &[HostPort]) -> Vec<&str> {
    hosts.iter().map(|h| h.host.as_str()).collect()
}

#[tokio::test]
async fn mx_hosts_come_in_preference_order_on_the_given_port() {
    let Some(server) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let hosts = resolver(&server)
        .next_hosts(&domain("pref.test"), 2525)
        .await
        .unwrap();
    assert_eq!(
        names(&hosts),
        ["mx-a.pref.test", "mx-b.pref.test", "mx-c.pref.test"]
    );
    assert!(hosts.iter().all(|h| h.port == 2525));
}

#[tokio::test]
async fn equal_preferences_are_shuffled_behind_better_ones() {
    let Some(server) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let dns = resolver(&server);
    let mut seconds = BTreeSet::new();
    for _ in 0..64 {
        let hosts = dns.next_hosts(&domain("eq.test"), 25).await.unwrap();
        assert_eq!(hosts.len(), 3);
        assert_eq!(hosts[0].host, "first.eq.test");
        seconds.insert(hosts[1].host.clone());
    }
    // Both orders of the equal pair occur (chance of failing: 2^-63).
    assert_eq!(
        seconds,
        BTreeSet::from(["one.eq.test".to_owned(), "two.eq.test".to_owned()])
    );
}

#[tokio::test]
async fn a_domain_without_mx_is_its_own_mail_host() {
    let Some(server) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let hosts = resolver(&server)
        .next_hosts(&domain("implicit.test"), 25)
        .await
        .unwrap();
    assert_eq!(
        hosts,
        [HostPort {
            host: "implicit.test".into(),
            port: 25
        }]
    );
}

#[tokio::test]
async fn null_mx_fails_permanently_with_5_1_10() {
    let Some(server) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let e = resolver(&server)
        .next_hosts(&domain("null.test"), 25)
        .await
        .unwrap_err();
    assert_eq!(e, DnsError::NullMx(domain("null.test")));
    assert!(e.is_permanent());
    let DeliveryOutcome::PermanentFailure(reply) = e.outcome() else {
        panic!("{:?}", e.outcome())
    };
    assert!(reply.starts_with("556 5.1.10 "), "{reply}");
}

#[tokio::test]
async fn nxdomain_fails_permanently() {
    let Some(server) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let e = resolver(&server)
        .next_hosts(&domain("nx.test"), 25)
        .await
        .unwrap_err();
    assert_eq!(e, DnsError::NoSuchDomain(domain("nx.test")));
    let DeliveryOutcome::PermanentFailure(reply) = e.outcome() else {
        panic!("{:?}", e.outcome())
    };
    assert!(reply.starts_with("550 5.1.2 "), "{reply}");
}

#[tokio::test]
async fn no_mx_and_no_address_fails_permanently() {
    let Some(server) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let e = resolver(&server)
        .next_hosts(&domain("bare.test"), 25)
        .await
        .unwrap_err();
    assert_eq!(e, DnsError::NoMailHost(domain("bare.test")));
    assert!(matches!(e.outcome(), DeliveryOutcome::PermanentFailure(_)));
}

#[tokio::test]
async fn an_unreachable_name_server_is_a_transient_failure() {
    // A port nobody listens on (bound, read, released).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dns = MxResolver::new(&DnsConfig {
        servers: vec![SocketAddr::from(([127, 0, 0, 1], port))],
        timeout: Duration::from_millis(300),
        ..DnsConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let e = dns.next_hosts(&domain("pref.test"), 25).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(!e.is_permanent(), "{e:?}");
    let DeliveryOutcome::TransientFailure(reply) = e.outcome() else {
        panic!("{:?}", e.outcome())
    };
    assert!(reply.starts_with("451 4.4.3 "), "{reply}");
}

#[tokio::test]
async fn host_addresses_come_from_the_configured_server() {
    let Some(server) = Dnsmasq::start(RECORDS) else {
        return;
    };
    let dns = resolver(&server);
    let mut addrs = dns.lookup_addrs("mx-b.pref.test", 2525).await.unwrap();
    addrs.sort();
    assert_eq!(
        addrs,
        [
            "127.0.0.2:2525".parse::<SocketAddr>().unwrap(),
            "[::1]:2525".parse().unwrap()
        ]
    );
    assert_eq!(
        dns.lookup_addrs("192.0.2.7", 25).await.unwrap(),
        ["192.0.2.7:25".parse::<SocketAddr>().unwrap()]
    );
    assert!(dns.lookup_addrs("mx-c.pref.test", 25).await.is_err());
}

#[test]
fn order_sorts_by_preference_and_keeps_every_host() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mx = vec![
        (20, "c".to_owned()),
        (10, "b".to_owned()),
        (0, "a".to_owned()),
        (10, "d".to_owned()),
    ];
    let ordered = order(mx, &mut rng);
    assert_eq!(ordered[0], "a");
    assert_eq!(ordered[3], "c");
    assert_eq!(
        ordered[1..3].iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"b".to_owned(), &"d".to_owned()])
    );
}

#[test]
fn errors_map_to_outcomes_in_one_place() {
    let d = domain("example.test");
    for (e, permanent) in [
        (DnsError::NullMx(d.clone()), true),
        (DnsError::NoSuchDomain(d.clone()), true),
        (DnsError::NoMailHost(d.clone()), true),
        (DnsError::Timeout(d.clone()), false),
        (
            DnsError::Failed {
                domain: d.clone(),
                reason: "SERVFAIL".into(),
            },
            false,
        ),
        (DnsError::Unavailable("no resolv.conf".into()), false),
    ] {
        assert_eq!(e.is_permanent(), permanent, "{e:?}");
        match e.outcome() {
            DeliveryOutcome::PermanentFailure(r) => assert!(permanent && r.starts_with('5'), "{r}"),
            DeliveryOutcome::TransientFailure(r) => assert!(!permanent && r.starts_with('4'), "{r}"),
            other => panic!("{other:?}"),
        }
    }
}
