//! Internet TLS against real servers: a DNSSEC-signed zone (signed with
//! BIND's `dnssec-signzone`, served by Debian's Knot DNS on a loopback
//! port), hickory validating with the zone's key as trust anchor, Debian's
//! Postfix receiving with a certificate the TLSA records name, and a small
//! HTTPS server (hyper + rustls, a test CA) publishing MTA-STS policies.
//!
//! The client side is Postern's own SMTP client pool with the node's
//! Internet TLS machinery, driven the way the delivery worker drives it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::{Postfix, make_pki, read_tree, wait_or};
use postern_model::{Domain, KeySpec, Service, SubjectName};
use postern_tests::lab::free_port;
use postern_tests::{require_tool, sh};
use postern_tls::TrustStore;
use postern_tls::certs::{CertStore, NewCertificate};
use postern_transport::client::{ClientSettings, Connector, Pool, SendOptions};
use postern_transport::delivery::{self, DeliveryContext, Maildir, WorkerConfig};
use postern_transport::dns::{DnsConfig, MxResolver};
use postern_transport::internet_tls::{
    DaneResolver, FailureKind, InternetTls, PolicyKind, StsFacts, StsSource, TrustAnchor,
};
use postern_transport::queue::{
    DeliveryOutcome, Envelope, Queue, QueueConfig, RecipientState, RecipientStatus,
};
use postern_transport::routing::{
    Destination, HostPort, NextHop, RouteRefusal, Router, SmtpHop, TlsRequirement,
};
use postern_transport::smtp::Mailbox;

const HELO: &str = "client.example";
const ZONE: &str = "dane.test";

/// Knot DNS serving `dir/signed.zone` (`dane.test`); stopped when dropped.
struct Knot {
    child: Child,
    addr: std::net::SocketAddr,
    conf: PathBuf,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Knot {
    fn start(dir: &Path) -> Self {
        let knotd = require_tool("knotd");
        let addr = free_port();
        let d = dir.display();
        let conf = dir.join("knot.conf");
        std::fs::create_dir_all(dir.join("knot-db")).unwrap();
        std::fs::write(
            &conf,
            format!(
                "server:
    listen: {addr_ip}@{port}
    rundir: {d}
log:
  - target: stderr
    any: warning
database:
    storage: {d}/knot-db
control:
    listen: {d}/knot.sock
template:
  - id: default
    storage: {d}
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
  - domain: {ZONE}
    file: {d}/signed.zone
",
                addr_ip = addr.ip(),
                port = addr.port()
            ),
        )
        .unwrap();
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let knot = Self { child, addr, conf };
        wait_or(
            "knotd to answer",
            Duration::from_secs(20),
            || {
                Command::new("kdig")
                    .args([format!("@{}", addr.ip()), "-p".into(), addr.port().to_string()])
                    .args(["+short", "+time=1", "SOA", ZONE])
                    .output()
                    .is_ok_and(|o| !o.stdout.is_empty())
            },
            || "knotd did not answer".into(),
        );
        knot
    }

    /// Reloads `zone` from its file.
    fn reload(&self, zone: &str) {
        let out = Command::new("knotc")
            .arg("-c")
            .arg(&self.conf)
            .args(["-b", "zone-reload", zone])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// `openssl`: the SHA-256 of a certificate's public key (a `x 1 1` TLSA).
fn spki_sha256(cert: &Path) -> String {
    sh(
        cert.parent().unwrap(),
        &format!(
            "openssl x509 -in {} -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r | cut -d' ' -f1",
            cert.display()
        ),
    )
    .trim()
    .to_owned()
}

/// Writes and signs `dane.test`; returns the trust anchor file (its DNSKEY).
/// `_PORT._tcp` TLSA names use Postfix's port. The record of `mx-bogus`
/// is altered after signing, so its signature no longer validates.
fn signed_zone(dir: &Path, port: u16, leaf: &str, ca: &str, sts_id: u32) -> PathBuf {
    require_tool("dnssec-signzone");
    let other = "00".repeat(32);
    let zone = format!(
        "$TTL 300
@ IN SOA ns.{ZONE}. admin.{ZONE}. {sts_id} 3600 600 86400 300
@ IN NS ns.{ZONE}.
ns IN A 127.0.0.1
; DANE-EE: the leaf's key.
ee IN MX 10 mx-ee.{ZONE}.
mx-ee IN A 127.0.0.1
_{port}._tcp.mx-ee IN TLSA 3 1 1 {leaf}
; DANE-TA: the CA's key; the leaf must name mail.{ZONE}.
ta IN MX 10 mail.{ZONE}.
mail IN A 127.0.0.1
_{port}._tcp.mail IN TLSA 2 1 1 {ca}
; A TLSA record that matches nothing Postfix presents.
bad IN MX 10 mx-bad.{ZONE}.
mx-bad IN A 127.0.0.1
_{port}._tcp.mx-bad IN TLSA 3 1 1 {other}
; Tampered after signing.
bogus IN MX 10 mx-bogus.{ZONE}.
mx-bogus IN A 127.0.0.1
_{port}._tcp.mx-bogus IN TLSA 3 1 1 {leaf}
; No TLSA (validated absence): MTA-STS or the connector decide.
none IN MX 10 mx-none.{ZONE}.
mx-none IN A 127.0.0.1
; MTA-STS domains (in the signed zone, without TLSA).
enf IN MX 10 mx-enf.{ZONE}.
mx-enf IN A 127.0.0.1
_mta-sts.enf IN TXT \"v=STSv1; id={sts_id}\"
mta-sts.enf IN A 127.0.0.1
good IN MX 10 edge1.{ZONE}.
edge1 IN A 127.0.0.1
_mta-sts.good IN TXT \"v=STSv1; id=1\"
mta-sts.good IN A 127.0.0.1
_smtp._tls.ee IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@none.{ZONE}\"
_smtp._tls.bad IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@none.{ZONE}\"
_smtp._tls.enf IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@none.{ZONE}\"
tst IN MX 10 mx-tst.{ZONE}.
mx-tst IN A 127.0.0.1
_mta-sts.tst IN TXT \"v=STSv1; id=1\"
mta-sts.tst IN A 127.0.0.1
"
    );
    std::fs::write(dir.join("zone.db"), zone).unwrap();
    if !dir.join("anchor.key").exists() {
        let key = sh(
            dir,
            &format!("dnssec-keygen -q -K . -a ECDSAP256SHA256 -f KSK -n ZONE {ZONE}"),
        );
        sh(dir, &format!("cp {}.key anchor.key", key.trim()));
    }
    sh(
        dir,
        &format!("dnssec-signzone -q -K . -S -z -O full -o {ZONE} -f signed.zone zone.db"),
    );
    let signed = std::fs::read_to_string(dir.join("signed.zone")).unwrap();
    // `-O full` writes one record per line; the data may hold spaces.
    let mut altered = 0;
    let tampered: String = signed
        .lines()
        .map(|line| match line.find("IN TLSA\t3 1 1 ") {
            Some(at) if line.starts_with(&format!("_{port}._tcp.mx-bogus.")) => {
                altered += 1;
                format!("{}{}", &line[..at + "IN TLSA\t3 1 1 ".len()], "11".repeat(32))
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(altered, 1, "the bogus record was not found:\n{signed}");
    std::fs::write(dir.join("signed.zone"), tampered + "\n").unwrap();
    dir.join("anchor.key")
}

/// Routes every domain by its own MX, opportunistically (the connector
/// setting of a default Internet send connector).
struct MxRouter {
    port: u16,
}

impl Router for MxRouter {
    fn next_hop(&self, rcpt: &Mailbox) -> Result<NextHop, RouteRefusal> {
        Ok(NextHop::Mx(rcpt.domain().clone()))
    }

    fn destination(&self, hop: &NextHop) -> Option<Destination> {
        let NextHop::Mx(domain) = hop else {
            return None;
        };
        Some(Destination::Smtp(mx_hop(domain, self.port)))
    }
}

fn mx_hop(domain: &Domain, port: u16) -> SmtpHop {
    SmtpHop {
        connector: None,
        key: NextHop::Mx(domain.clone()),
        hosts: vec![HostPort {
            host: domain.to_string(),
            port,
        }],
        mx_domain: Some(domain.clone()),
        tls: TlsRequirement::OPPORTUNISTIC,
        helo: Domain::parse(HELO).unwrap(),
        protocol_logging_level: Default::default(),
    }
}

/// The sending node: a certificate store, the CA of the test PKI as an
/// organisation trusted root, and a pool with Internet TLS.
struct Sender {
    _db: sled::Db,
    pool: Pool,
    internet: Arc<InternetTls>,
    dns: Arc<MxResolver>,
    queue: Queue,
    port: u16,
}

impl Sender {
    fn new(db: &sled::Db, knot: &Knot, anchor: &Path, ca: &Path, https_port: u16, postfix_port: u16) -> Self {
        let db = db.clone();
        let certs = CertStore::open(&db).unwrap();
        if certs.list().unwrap().is_empty() {
            certs
                .new_self_signed(&NewCertificate {
                    subject: SubjectName::common_name_only(HELO),
                    domains: vec![Domain::parse(HELO).unwrap()],
                    friendly_name: None,
                    key: KeySpec::EcdsaP256,
                    services: BTreeSet::from([Service::Smtp]),
                })
                .unwrap();
        }
        let ca_der = pem_der(ca);
        let trust = TrustStore::new([], &[ca_der]);
        let config = DnsConfig {
            servers: vec![knot.addr],
            timeout: Duration::from_secs(2),
            dane_trust_anchor: Some(TrustAnchor::File(anchor.to_owned())),
            mta_sts_port: Some(https_port),
        };
        let dns = Arc::new(MxResolver::new(&config).unwrap());
        let internet = Arc::new(InternetTls {
            dane: Some(DaneResolver::new(&config, &TrustAnchor::File(anchor.to_owned())).unwrap()),
            sts: Some(StsSource::new(&config, trust.clone(), &db, https_port).unwrap()),
            counters: Arc::default(),
        });
        let settings = ClientSettings {
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(20),
            data_timeout: Duration::from_secs(20),
            ..ClientSettings::default()
        };
        let connector = Connector::new(certs, trust, settings)
            .with_resolver(dns.clone())
            .with_internet_tls(internet.clone());
        let queue = Queue::open(&db, QueueConfig::default()).unwrap();
        Self {
            _db: db,
            pool: Pool::new(connector),
            internet,
            dns,
            queue,
            port: postfix_port,
        }
    }

    /// One delivery to `rcpt` the way the worker makes it: MX lookup, then
    /// the pool. `Err`: the whole attempt failed (the text the queue keeps).
    async fn deliver(&self, rcpt: &str) -> Result<DeliveryOutcome, String> {
        let domain = Domain::parse(rcpt.split_once('@').unwrap().1).unwrap();
        let hosts = self
            .dns
            .next_hosts(&domain, self.port)
            .await
            .map_err(|e| e.to_string())?;
        let hop = SmtpHop {
            connector: None,
            hosts,
            ..mx_hop(&domain, self.port)
        };
        let body = format!("From: a@{HELO}\r\nTo: {rcpt}\r\nSubject: to {rcpt}\r\n\r\nHello.\r\n");
        let outcomes = self
            .pool
            .deliver(
                &hop,
                Some(&format!("a@{HELO}")),
                &[rcpt.to_owned()],
                body.as_bytes(),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(outcomes.into_iter().next().unwrap().outcome)
    }
}

fn pem_der(path: &Path) -> rustls_pki_types::CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(path).unwrap()
}

#[track_caller]
fn delivered(outcome: &Result<DeliveryOutcome, String>) -> &str {
    match outcome {
        Ok(DeliveryOutcome::Delivered(reply)) => reply,
        other => panic!("not delivered: {other:?}"),
    }
}

#[track_caller]
fn deferred(outcome: &Result<DeliveryOutcome, String>) -> &str {
    match outcome {
        Err(reason) => reason,
        other => panic!("not deferred: {other:?}"),
    }
}

/// A small HTTPS server presenting `cert`/`key` and serving `policies`
/// (host → policy text) at `/.well-known/mta-sts.txt`.
struct PolicyServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl PolicyServer {
    async fn start(cert: &Path, key: &Path, policies: Vec<(String, String)>) -> Self {
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let chain = vec![pem_der(cert)];
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(postern_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let policies = Arc::new(policies);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let policies = policies.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let policies = policies.clone();
                            async move {
                                let host = req
                                    .headers()
                                    .get(hyper::header::HOST)
                                    .and_then(|h| h.to_str().ok())
                                    .unwrap_or_default()
                                    .to_owned();
                                let found = policies.iter().find(|(h, _)| *h == host).map(|(_, p)| p.clone());
                                let (status, body) = match (req.uri().path(), found) {
                                    ("/.well-known/mta-sts.txt", Some(p)) => (200, p),
                                    _ => (404, String::new()),
                                };
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "text/plain")
                                    .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self { port, task }
    }

    fn stop(&self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dane_and_mta_sts_against_knot_postfix_and_https() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The receiving side's PKI: a CA and a leaf naming edge1/mail.dane.test.
    make_pki(dir, ZONE, 1);
    let pki = dir.join(ZONE);
    sh(&pki, "cat edge1.pem ca.pem > chain.pem");
    let leaf = spki_sha256(&pki.join("edge1.pem"));
    let ca = spki_sha256(&pki.join("ca.pem"));
    // MTA-STS's web server: a certificate for the three mta-sts names.
    sh(
        &pki,
        &format!(
            "openssl req -newkey rsa:2048 -nodes -keyout web.key -out web.csr -subj '/CN=mta-sts' 2>/dev/null
             printf 'subjectAltName=DNS:mta-sts.enf.{ZONE},DNS:mta-sts.good.{ZONE},DNS:mta-sts.tst.{ZONE}\\nextendedKeyUsage=serverAuth\\n' > web.ext
             openssl x509 -req -in web.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile web.ext -out web.pem 2>/dev/null"
        ),
    );
    let mailboxes: Vec<String> = ["ee", "ta", "bad", "bogus", "none", "enf", "good", "tst"]
        .iter()
        .map(|d| format!("kim@{d}.{ZONE}"))
        .collect();
    let mut mailbox_refs: Vec<&str> = mailboxes.iter().map(String::as_str).collect();
    let rua = format!("tlsrpt@none.{ZONE}");
    mailbox_refs.push(&rua);
    let postfix = Postfix::start(
        &dir.join("postfix"),
        &format!("mail.{ZONE}"),
        &mailbox_refs,
        &format!(
            "smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {}/edge1.key, {}/chain.pem",
            pki.display(),
            pki.display()
        ),
        &[],
    );
    let anchor = signed_zone(dir, postfix.port, &leaf, &ca, 1);
    let knot = Knot::start(dir);
    let policy = |mode: &str, mx: &str| format!("version: STSv1\nmode: {mode}\nmx: {mx}\nmax_age: 86400\n");
    let web = PolicyServer::start(
        &pki.join("web.pem"),
        &pki.join("web.key"),
        vec![
            (
                format!("mta-sts.enf.{ZONE}"),
                policy("enforce", &format!("mx-enf.{ZONE}")),
            ),
            (
                format!("mta-sts.good.{ZONE}"),
                policy("enforce", &format!("*.{ZONE}")),
            ),
            (
                format!("mta-sts.tst.{ZONE}"),
                policy("testing", &format!("mx-tst.{ZONE}")),
            ),
        ],
    )
    .await;
    // The sender's store (a second `Sender` over it is a restarted node).
    let db = sled::open(dir.join("sender-db")).unwrap();
    let sender = Sender::new(&db, &knot, &anchor, &pki.join("ca.pem"), web.port, postfix.port);
    let ctx = || format!("--- postfix:\n{}", postfix.log());

    // DANE-EE 3 1 1 matching Postfix's certificate: delivered, verified.
    let ee = sender.deliver(&format!("kim@ee.{ZONE}")).await;
    assert!(delivered(&ee).contains("[TLS policy dane]"), "{ee:?}\n{}", ctx());
    // DANE-TA 2 1 1 naming the CA; the leaf names mail.dane.test.
    let ta = sender.deliver(&format!("kim@ta.{ZONE}")).await;
    assert!(delivered(&ta).contains("[TLS policy dane]"), "{ta:?}\n{}", ctx());
    // A TLSA record matching nothing: deferred, never plain text.
    let bad = sender.deliver(&format!("kim@bad.{ZONE}")).await;
    let why = deferred(&bad);
    assert!(why.contains("TLS policy dane"), "{why}");
    assert!(why.contains("TLS with"), "{why}");
    // A bogus signature: deferred before connecting.
    let bogus = sender.deliver(&format!("kim@bogus.{ZONE}")).await;
    let why = deferred(&bogus);
    assert!(why.contains("TLS policy dane") && why.contains("bogus"), "{why}");
    // Validated absence of TLSA, no MTA-STS: the connector's opportunistic TLS.
    let none = sender.deliver(&format!("kim@none.{ZONE}")).await;
    assert!(delivered(&none).contains("[TLS policy connector]"), "{none:?}");

    // MTA-STS enforce, MX listed and named by the certificate: delivered.
    let good = sender.deliver(&format!("kim@good.{ZONE}")).await;
    assert!(
        delivered(&good).contains("[TLS policy mta-sts-enforce]"),
        "{good:?}\n{}",
        ctx()
    );
    // enforce, the certificate does not name mx-enf: deferred and counted.
    let enf = sender.deliver(&format!("kim@enf.{ZONE}")).await;
    let why = deferred(&enf);
    assert!(why.contains("TLS policy mta-sts-enforce"), "{why}");
    let counters = &sender.internet.counters;
    assert_eq!(
        counters.failures_of(&format!("enf.{ZONE}"), FailureKind::CertificateHostMismatch),
        1
    );
    // testing: delivered anyway, the failure reported.
    let tst = sender.deliver(&format!("kim@tst.{ZONE}")).await;
    assert!(
        delivered(&tst).contains("[TLS policy mta-sts-testing]"),
        "{tst:?}"
    );
    assert_eq!(
        counters.failures_of(&format!("tst.{ZONE}"), FailureKind::CertificateHostMismatch),
        1
    );
    assert_eq!(counters.successes_of(&format!("good.{ZONE}"), PolicyKind::Sts), 1);
    assert_eq!(counters.successes_of(&format!("ee.{ZONE}"), PolicyKind::Tlsa), 1);
    assert_eq!(
        counters.failures_of(&format!("bad.{ZONE}"), FailureKind::TlsaInvalid),
        1
    );
    assert_eq!(
        counters.failures_of(&format!("bogus.{ZONE}"), FailureKind::DnssecInvalid),
        1
    );

    // Postfix received the five delivered messages over TLS.
    wait_or(
        "Postfix to store the delivered messages",
        Duration::from_secs(30),
        || {
            ["ee", "ta", "none", "good", "tst"]
                .iter()
                .all(|d| !postfix.mailbox(&format!("{d}.{ZONE}"), "kim").is_empty())
        },
        ctx,
    );
    for d in ["ee", "ta", "good"] {
        let mail = &postfix.mailbox(&format!("{d}.{ZONE}"), "kim")[0];
        assert!(mail.contains("with ESMTPS"), "{mail}");
    }
    for d in ["bad", "bogus", "enf"] {
        assert!(
            postfix.mailbox(&format!("{d}.{ZONE}"), "kim").is_empty(),
            "{d} got mail"
        );
    }

    requiretls(dir, &pki, &sender, &postfix).await;
    tls_reports(dir, &sender, &postfix).await;

    // The HTTPS server goes down and the policy id changes: the fetch
    // fails, and a node restarted over the same store still enforces the
    // cached policy (so the mismatching host stays refused).
    web.stop();
    signed_zone(dir, postfix.port, &leaf, &ca, 2);
    knot.reload(ZONE);
    let fetch_errors = |s: &Sender| {
        s.internet
            .counters
            .failures_of(&format!("enf.{ZONE}"), FailureKind::StsPolicyFetchError)
    };
    drop(sender);
    let restarted = Sender::new(&db, &knot, &anchor, &pki.join("ca.pem"), web.port, postfix.port);
    let sts = restarted.internet.sts.as_ref().unwrap();
    let facts = sts
        .facts(
            &Domain::parse(&format!("enf.{ZONE}")).unwrap(),
            &restarted.internet.counters,
        )
        .await;
    let StsFacts::Policy(cached) = facts else {
        panic!("no cached policy: {facts:?}")
    };
    assert!(cached.mx_matches(&format!("mx-enf.{ZONE}")));
    assert_eq!(fetch_errors(&restarted), 1, "the new id was fetched and failed");
    let enf = restarted.deliver(&format!("kim@enf.{ZONE}")).await;
    assert!(deferred(&enf).contains("TLS policy mta-sts-enforce"), "{enf:?}");

    // Through the queue: the deferred recipient's entry names the policy.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ctx_worker = DeliveryContext {
        queue: restarted.queue.clone(),
        router: Arc::new(MxRouter { port: postfix.port }),
        maildir: Maildir::new(dir.join("mailboxes"), HELO),
        relay: Arc::new(restarted.pool.clone()),
        dns: Some(restarted.dns.clone()),
        metrics: None,
    };
    let worker = tokio::spawn(delivery::run(ctx_worker, WorkerConfig::default(), async {
        let _ = stop_rx.await;
    }));
    let id = restarted
        .queue
        .enqueue(
            Envelope::new(
                Some(format!("a@{HELO}")),
                vec![RecipientState::new(
                    format!("kim@bad.{ZONE}"),
                    NextHop::Mx(Domain::parse(&format!("bad.{ZONE}")).unwrap()),
                )],
                SystemTime::now(),
            ),
            b"Subject: queued\r\n\r\nHello.\r\n".to_vec(),
        )
        .await
        .unwrap();
    let last_error = || match restarted
        .queue
        .get(id)
        .unwrap()
        .map(|m| m.envelope.recipients[0].status.clone())
    {
        Some(RecipientStatus::Deferred { last_error, .. }) => Some(last_error),
        _ => None,
    };
    wait_or(
        "the attempt to be recorded",
        Duration::from_secs(30),
        || last_error().is_some(),
        ctx,
    );
    let entry = last_error().unwrap();
    assert!(entry.contains("[TLS policy dane]"), "{entry}");
    stop_tx.send(()).unwrap();
    worker.await.unwrap();
}

/// REQUIRETLS (RFC 8689): honoured over verified TLS to a Postern node
/// whose TLS-requiring connector offers it; refused downgrades bounce with
/// 5.7.10 (no verified TLS) or 5.7.30 (Postfix does not offer REQUIRETLS);
/// `TLS-Required: No` sets the recipient's DANE aside.
async fn requiretls(dir: &Path, pki: &Path, sender: &Sender, postfix: &Postfix) {
    use postern_transport::mta::{Mta, MtaConfig};
    use postern_transport::node::{Node, NodeOptions};
    use postern_transport::routing::StaticRouter;
    use postern_transport::server::ReceiveConnectorConfig;

    let fqdn = Domain::parse(&format!("mail.{ZONE}")).unwrap();
    let bind = free_port();
    let data_dir = dir.join("receiver");
    let (node, _) = Node::open_or_setup(&NodeOptions {
        data_dir: data_dir.clone(),
        role: postern_model::NodeRole::Hub,
        name: None,
        fqdn: Some(fqdn.clone()),
        smtp_bind: bind.to_string(),
    })
    .unwrap();
    let bundle = std::fs::read(pki.join("edge1-bundle.pem")).unwrap();
    node.certs
        .import(&bundle, "", None, &BTreeSet::from([Service::Smtp]))
        .unwrap();
    let mut connector = ReceiveConnectorConfig::new("Secure", bind, fqdn.clone());
    connector.tls.encryption = postern_tls::Encryption::Required;
    connector.protocol_logging_level = postern_model::ProtocolLoggingLevel::Verbose;
    let router = StaticRouter {
        local_domains: vec![Domain::parse(&format!("rt.{ZONE}")).unwrap()],
        relay: None,
    };
    let mta = Mta::start(
        &node,
        TrustStore::new([], &[]),
        MtaConfig::new(vec![connector], Arc::new(router)),
    )
    .await
    .unwrap();
    let port = mta.receive_addrs()[0].1.port();
    let hop = |tls| SmtpHop {
        connector: None,
        key: NextHop::connector("receiver", None),
        hosts: vec![HostPort {
            host: "127.0.0.1".into(),
            port,
        }],
        mx_domain: None,
        tls,
        helo: Domain::parse(HELO).unwrap(),
        protocol_logging_level: Default::default(),
    };
    let require = SendOptions {
        require_tls: true,
        tls_optional: false,
    };
    let from = format!("a@{HELO}");
    let body = b"Message-ID: <rt1@client.example>\r\nSubject: secret\r\n\r\nHello.\r\n";
    let rcpt = vec![format!("kim@rt.{ZONE}")];

    // PKI with the name, the server offers REQUIRETLS: relayed with it.
    let verified = TlsRequirement::pki(Some(fqdn.clone()));
    let out = sender
        .pool
        .deliver_with(&hop(verified), Some(&from), &rcpt, body, require)
        .await
        .unwrap();
    assert!(matches!(out[0].outcome, DeliveryOutcome::Delivered(_)), "{out:?}");
    wait_or(
        "the REQUIRETLS message in the receiver's mailbox",
        Duration::from_secs(20),
        || !postern_tests::lab::maildir_message_ids(&data_dir, &format!("rt.{ZONE}"), "kim").is_empty(),
        || "not delivered".into(),
    );
    let log = read_tree(&data_dir.join("logs/protocol/receive"));
    assert!(
        log.lines()
            .any(|l| l.contains(&format!(",<,MAIL FROM:<{from}> ")) && l.ends_with(" REQUIRETLS,")),
        "{log}"
    );
    assert!(log.contains(",>,250 REQUIRETLS,"), "{log}");

    // The same hop with opportunistic TLS: a downgrade, bounced.
    let out = sender
        .pool
        .deliver_with(
            &hop(TlsRequirement::OPPORTUNISTIC),
            Some(&from),
            &rcpt,
            body,
            require,
        )
        .await
        .unwrap();
    let DeliveryOutcome::PermanentFailure(reply) = &out[0].outcome else {
        panic!("{out:?}")
    };
    assert!(reply.starts_with("550 5.7.10 "), "{reply}");
    // MX without DANE or MTA-STS: no verified TLS, bounced.
    let none = format!("kim@none.{ZONE}");
    let hosts = sender
        .dns
        .next_hosts(&Domain::parse(&format!("none.{ZONE}")).unwrap(), sender.port)
        .await
        .unwrap();
    let mx = |d: &str, hosts| SmtpHop {
        connector: None,
        hosts,
        ..mx_hop(&Domain::parse(d).unwrap(), sender.port)
    };
    let out = sender
        .pool
        .deliver_with(
            &mx(&format!("none.{ZONE}"), hosts),
            Some(&from),
            &[none],
            body,
            require,
        )
        .await
        .unwrap();
    let DeliveryOutcome::PermanentFailure(reply) = &out[0].outcome else {
        panic!("{out:?}")
    };
    assert!(reply.starts_with("550 5.7.10 "), "{reply}");
    // DANE verifies Postfix, which does not offer REQUIRETLS: 5.7.30.
    let hosts = sender
        .dns
        .next_hosts(&Domain::parse(&format!("ee.{ZONE}")).unwrap(), sender.port)
        .await
        .unwrap();
    let out = sender
        .pool
        .deliver_with(
            &mx(&format!("ee.{ZONE}"), hosts),
            Some(&from),
            &[format!("kim@ee.{ZONE}")],
            body,
            require,
        )
        .await
        .unwrap();
    let DeliveryOutcome::PermanentFailure(reply) = &out[0].outcome else {
        panic!("{out:?}")
    };
    assert!(reply.starts_with("550 5.7.30 "), "{reply}");

    // TLS-Required: No: the mismatching TLSA of bad.dane.test is set aside.
    let hosts = sender
        .dns
        .next_hosts(&Domain::parse(&format!("bad.{ZONE}")).unwrap(), sender.port)
        .await
        .unwrap();
    let optional = SendOptions {
        require_tls: false,
        tls_optional: true,
    };
    let out = sender
        .pool
        .deliver_with(
            &mx(&format!("bad.{ZONE}"), hosts),
            Some(&from),
            &[format!("kim@bad.{ZONE}")],
            b"TLS-Required: No\r\nSubject: not secret\r\n\r\nHello.\r\n",
            optional,
        )
        .await
        .unwrap();
    assert!(matches!(out[0].outcome, DeliveryOutcome::Delivered(_)), "{out:?}");
    wait_or(
        "Postfix to store the TLS-Required: No message",
        Duration::from_secs(20),
        || !postfix.mailbox(&format!("bad.{ZONE}"), "kim").is_empty(),
        || postfix.log(),
    );
    mta.shutdown().await;
}

/// TLS-RPT: the day's mixed outcomes above, reported through the admin
/// call that runs the daily job, queued through the sender's own routing,
/// delivered to Postfix, and read back: gzip, then JSON that parses into
/// RFC 8460's report structure (unknown or missing fields refused).
async fn tls_reports(dir: &Path, sender: &Sender, postfix: &Postfix) {
    use base64::Engine;
    use postern_proto::admin as pb;
    use postern_proto::admin::tls_reports_server::TlsReports;
    use postern_transport::internet_tls::rpt::{Report, Submitter};
    use postern_transport::mta::TlsReporter;
    use std::io::Read;

    let router = Arc::new(MxRouter { port: sender.port });
    let reporter = Arc::new(TlsReporter::new(
        sender.internet.clone(),
        Some(sender.dns.clone()),
        sender.queue.clone(),
        router.clone(),
        Submitter {
            organization: "client.example".into(),
            host: HELO.into(),
            contact: format!("postmaster@{HELO}"),
        },
    ));
    // The admin service `postern tls-report show|send` calls.
    let admin =
        postern_transport::internet_tls::admin::TlsReportService::new(reporter, Arc::new(|| Ok(Vec::new())));
    let shown = admin
        .show_tls_report(tonic::Request::new(pb::ShowTlsReportRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(
        shown
            .rows
            .iter()
            .any(|r| r.domain == format!("enf.{ZONE}") && r.result_type == "certificate-host-mismatch"),
        "{shown:?}"
    );
    let sent = admin
        .send_tls_reports(tonic::Request::new(pb::SendTlsReportsRequest {}))
        .await
        .unwrap()
        .into_inner();
    // ee, bad and enf publish _smtp._tls; the others are not reported.
    assert_eq!(sent.queued, 3);
    let after = admin
        .show_tls_report(tonic::Request::new(pb::ShowTlsReportRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(after.rows.is_empty(), "the figures start again: {after:?}");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ctx = DeliveryContext {
        queue: sender.queue.clone(),
        router,
        maildir: Maildir::new(dir.join("sender-mailboxes"), HELO),
        relay: Arc::new(sender.pool.clone()),
        dns: Some(sender.dns.clone()),
        metrics: None,
    };
    let worker = tokio::spawn(delivery::run(ctx, WorkerConfig::default(), async {
        let _ = stop_rx.await;
    }));
    wait_or(
        "three reports in the rua mailbox",
        Duration::from_secs(30),
        || postfix.mailbox(&format!("none.{ZONE}"), "tlsrpt").len() == 3,
        || postfix.log(),
    );
    stop_tx.send(()).unwrap();
    worker.await.unwrap();

    let mut reports = std::collections::BTreeMap::new();
    for mail in postfix.mailbox(&format!("none.{ZONE}"), "tlsrpt") {
        assert!(
            mail.contains("Content-Type: multipart/report; report-type=\"tlsrpt\""),
            "{mail}"
        );
        let domain = mail
            .lines()
            .find_map(|l| l.strip_prefix("TLS-Report-Domain: "))
            .unwrap()
            .trim()
            .to_owned();
        let start = mail.find("Content-Type: application/tlsrpt+gzip").unwrap();
        let body_at = start
            + mail[start..]
                .find("\n\n")
                .or_else(|| mail[start..].find("\r\n\r\n"))
                .unwrap();
        let encoded: String = mail[body_at..]
            .lines()
            .map(str::trim)
            .skip_while(|l| l.is_empty())
            .take_while(|l| !l.is_empty() && !l.starts_with("--"))
            .collect();
        let gz = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
        let mut json = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut json)
            .unwrap();
        let report: Report = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert!(report.report_id.contains(&domain), "{json}");
        assert!(report.date_range.end_datetime.ends_with('Z'), "{json}");
        reports.insert(domain, report);
    }
    let policy = |domain: &str| reports[&format!("{domain}.{ZONE}")].policies.clone();
    let enf = policy("enf");
    assert_eq!(enf[0].policy.policy_type, "sts");
    assert_eq!(enf[0].summary.total_failure_session_count, 1);
    assert_eq!(enf[0].failure_details[0].result_type, "certificate-host-mismatch");
    assert_eq!(
        enf[0].failure_details[0].receiving_mx_hostname.as_deref(),
        Some(format!("mx-enf.{ZONE}").as_str())
    );
    let ee = policy("ee");
    assert!(
        ee.iter()
            .any(|p| p.policy.policy_type == "tlsa" && p.summary.total_successful_session_count >= 1)
    );
    let bad = policy("bad");
    assert!(
        bad.iter()
            .any(|p| p.failure_details.iter().any(|f| f.result_type == "tlsa-invalid"))
    );
}
