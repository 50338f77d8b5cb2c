//! The SMTP engine as a whole, in real processes on loopback: real peers
//! (swaks, openssl s_client), the two-node mutual-TLS chain, smuggling
//! payloads over a socket, `kill -9` during load, restart and expiry.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_model::Domain;
use postern_tests::lab::{LabConfig, LabProcess, lab_entry, maildir_message_ids, setup_only};
use postern_tests::{require_tool, sh};
use postern_tls::TrustStore;
use postern_tls::certs::CertStore;
use postern_transport::client::{ClientSettings, Connector};
use postern_transport::queue::DeliveryOutcome;
use postern_transport::routing::{HostPort, NextHop, SmtpHop, TlsRequirement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Entry point of lab node child processes (does nothing in a normal run).
#[test]
fn lab_node_entry() {
    lab_entry();
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn swaks(args: &[&str]) -> std::process::Output {
    Command::new(require_tool("swaks")).args(args).output().unwrap()
}

#[test]
fn swaks_and_openssl_plain_starttls_and_client_certificates() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout good.key -out good.pem -days 2 -subj '/CN=edge1.adatum.com' 2>/dev/null
         openssl req -x509 -newkey rsa:2048 -nodes -keyout bad.key -out bad.pem -days 2 -subj '/CN=stranger.example' 2>/dev/null",
    );
    let good_tp = postern_tests::openssl_thumbprint(dir, "good.pem");

    // An open node: plain and STARTTLS.
    let open = LabProcess::start(&LabConfig::new(
        &dir.join("open"),
        "mx.adatum.com",
        &["adatum.com"],
    ))
    .unwrap();
    let server = open.addr.to_string();
    let base = [
        "--server",
        &server,
        "--from",
        "a@example.org",
        "--helo",
        "client.example.org",
    ];
    let out = swaks(
        &[
            &base[..],
            &["--to", "kim@adatum.com", "--header", "Message-Id: <plain@test>"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let out = swaks(
        &[
            &base[..],
            &[
                "--to",
                "kim@adatum.com",
                "--tls",
                "--header",
                "Message-Id: <tls@test>",
            ],
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("TLS started"), "{text}");
    wait_until("two deliveries", Duration::from_secs(20), || {
        maildir_message_ids(&dir.join("open"), "adatum.com", "kim").len() == 2
    });
    let ids = maildir_message_ids(&dir.join("open"), "adatum.com", "kim");
    assert!(
        ids.contains(&"<plain@test>".to_owned()) && ids.contains(&"<tls@test>".to_owned()),
        "{ids:?}"
    );
    // Relaying for strangers is refused.
    let out = swaks(
        &[
            &base[..],
            &["--to", "someone@fabrikam.com", "--quit-after", "RCPT"],
        ]
        .concat(),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("550 5.7.1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // An organisation connector: a client certificate in the direct-trust set is required.
    let mut org = LabConfig::new(&dir.join("org"), "hub1.adatum.com", &["adatum.com"]);
    org.require_client_cert = true;
    org.trust = vec![good_tp];
    let org = LabProcess::start(&org).unwrap();
    let server = org.addr.to_string();
    let base = [
        "--server",
        &server,
        "--from",
        "a@adatum.com",
        "--helo",
        "edge1.adatum.com",
        "--to",
        "kim@adatum.com",
        "--tls",
    ];
    let good_cert = dir.join("good.pem");
    let good_key = dir.join("good.key");
    let out = swaks(
        &[
            &base[..],
            &[
                "--tls-cert",
                good_cert.to_str().unwrap(),
                "--tls-key",
                good_key.to_str().unwrap(),
                "--header",
                "Message-Id: <trusted@test>",
            ],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "trusted certificate refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let bad_cert = dir.join("bad.pem");
    let bad_key = dir.join("bad.key");
    let out = swaks(
        &[
            &base[..],
            &[
                "--tls-cert",
                bad_cert.to_str().unwrap(),
                "--tls-key",
                bad_key.to_str().unwrap(),
                "--header",
                "Message-Id: <untrusted@test>",
            ],
        ]
        .concat(),
    );
    assert!(
        !out.status.success(),
        "untrusted certificate accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = swaks(&[&base[..], &["--header", "Message-Id: <nocert@test>"]].concat());
    assert!(
        !out.status.success(),
        "no certificate accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    wait_until("trusted delivery", Duration::from_secs(20), || {
        !maildir_message_ids(&dir.join("org"), "adatum.com", "kim").is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        maildir_message_ids(&dir.join("org"), "adatum.com", "kim"),
        vec!["<trusted@test>".to_owned()]
    );

    // openssl s_client: the same two certificates.
    let s_client = |cert: &str, key: &str| {
        let script = format!(
            "(printf 'EHLO edge1.adatum.com\\r\\n'; sleep 1; printf 'NOOP\\r\\n'; sleep 1; printf 'QUIT\\r\\n') | \
             openssl s_client -starttls smtp -connect {server} -cert {cert} -key {key} -quiet 2>&1 || true"
        );
        sh(dir, &script)
    };
    let trusted = s_client("good.pem", "good.key");
    assert!(
        trusted.contains("250 2.0.0") || trusted.contains("250-"),
        "{trusted}"
    );
    assert!(trusted.contains("221"), "{trusted}");
    let refused = s_client("bad.pem", "bad.key");
    assert!(!refused.contains("221"), "{refused}");
}

/// Sends raw bytes on a fresh connection and returns everything the server said.
async fn raw_session(addr: std::net::SocketAddr, script: &[&[u8]]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut all = Vec::new();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    all.extend_from_slice(&buf[..n]);
    for chunk in script {
        stream.write_all(chunk).await.unwrap();
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(700), stream.read(&mut buf)).await {
            all.extend_from_slice(&buf[..n]);
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[tokio::test]
async fn smuggling_payloads_never_produce_a_second_message() {
    let tmp = tempfile::tempdir().unwrap();
    let node = LabProcess::start(&LabConfig::new(
        &tmp.path().join("n"),
        "mx.adatum.com",
        &["adatum.com"],
    ))
    .unwrap();
    let endings: [&[u8]; 6] = [
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\r",
        b"\r\n.\r",
        b"\r.\r\n",
        b"\r\n\x00.\r\n",
    ];
    for (i, ending) in endings.iter().enumerate() {
        let mut body = format!("Message-Id: <outer-{i}@test>\r\nSubject: outer\r\n\r\nhello").into_bytes();
        body.extend_from_slice(ending);
        body.extend_from_slice(
            format!(
                "MAIL FROM:<ceo@adatum.com>\r\nRCPT TO:<kim@adatum.com>\r\nDATA\r\nMessage-ID: <smuggled-{i}@test>\r\n\r\nsmuggled\r\n.\r\n"
            )
            .as_bytes(),
        );
        let transcript = raw_session(
            node.addr,
            &[
                b"EHLO attacker.example\r\n",
                b"MAIL FROM:<x@example.org>\r\nRCPT TO:<kim@adatum.com>\r\nDATA\r\n",
                &body,
                b"\r\n.\r\n",
                b"QUIT\r\n",
            ],
        )
        .await;
        assert!(!transcript.contains("503"), "payload {i}: {transcript}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = maildir_message_ids(&tmp.path().join("n"), "adatum.com", "kim");
    assert!(
        ids.iter().all(|id| !id.contains("smuggled")),
        "smuggled message delivered: {ids:?}"
    );
}

fn plain_hop(addr: std::net::SocketAddr) -> SmtpHop {
    SmtpHop {
        connector: None,
        key: NextHop::connector("load", None),
        hosts: vec![HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        }],
        tls: TlsRequirement::DANGER_PLAIN_TEXT,
        helo: Domain::parse("loadgen.example").unwrap(),
        protocol_logging_level: Default::default(),
        mx_domain: None,
    }
}

/// Sends messages with `concurrency` sessions until `stop`; returns the
/// Message-IDs that were answered 250 after DATA.
async fn load(
    addr: std::net::SocketAddr,
    concurrency: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .temporary(true)
        .path(tmp.path())
        .open()
        .unwrap();
    let connector = Arc::new(Connector::new(
        CertStore::open(&db).unwrap(),
        TrustStore::new([], &[]),
        ClientSettings::default(),
    ));
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let connector = connector.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok(mut conn) = connector.connect(&plain_hop(addr)).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    n += 1;
                    let id = format!("<load-{worker}-{n}@test>");
                    let body = format!("Message-ID: {id}\r\nSubject: load\r\n\r\n{}\r\n", "x".repeat(500));
                    match conn
                        .send(
                            Some("load@example.org"),
                            &["kim@adatum.com".to_owned()],
                            body.as_bytes(),
                        )
                        .await
                    {
                        Ok(outcomes) if matches!(outcomes[0].outcome, DeliveryOutcome::Delivered(_)) => {
                            acked.push(id)
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
            acked
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_nine_under_load_loses_no_acknowledged_message() {
    let tmp = tempfile::tempdir().unwrap();
    let config = LabConfig::new(&tmp.path().join("rx"), "mx.adatum.com", &["adatum.com"]);
    let node = LabProcess::start(&config).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = tokio::spawn(load(node.addr, 8, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let acked = sender.await.unwrap();
    assert!(
        acked.len() > 20,
        "the load generator got only {} acknowledgements",
        acked.len()
    );

    let _restarted = LabProcess::start(&config).unwrap();
    let acked_set: BTreeSet<String> = acked.iter().cloned().collect();
    let dir = tmp.path().join("rx");
    let ready = || {
        let ids = maildir_message_ids(&dir, "adatum.com", "kim");
        let set: BTreeSet<String> = ids.iter().cloned().collect();
        acked_set.is_subset(&set)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "acknowledged messages missing after restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ids = maildir_message_ids(&dir, "adatum.com", "kim");
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a message was delivered twice");
    println!(
        "acknowledged {} messages before kill -9; all {} delivered once",
        acked.len(),
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_node_chain_over_mutual_tls_with_restart_and_expiry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = LabConfig::new(&tmp.path().join("b"), "hub1.adatum.com", &["adatum.com"]);
    let mut a = LabConfig::new(&tmp.path().join("a"), "edge1.adatum.com", &["edge1.adatum.com"]);
    let a_tp = setup_only(&a).unwrap();
    let b_tp = setup_only(&b).unwrap();
    b.require_client_cert = true;
    b.trust = vec![a_tp];
    a.trust = vec![b_tp];
    a.relay = Some(b.smtp_bind);
    a.metrics_bind = Some(postern_tests::lab::free_port());

    // B is down: A accepts and queues.
    let node_a = LabProcess::start(&a).unwrap();
    let out = swaks(&[
        "--server",
        &node_a.addr.to_string(),
        "--from",
        "partner@example.org",
        "--to",
        "kim@adatum.com",
        "--helo",
        "mx.example.org",
        "--header",
        "Message-Id: <queued@test>",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    std::thread::sleep(Duration::from_secs(1));
    // A restarts with the message still queued; then B comes up.
    drop(node_a);
    let node_a = LabProcess::start(&a).unwrap();
    let _node_b = LabProcess::start(&b).unwrap();
    let b_dir = tmp.path().join("b");
    let delivered = || maildir_message_ids(&b_dir, "adatum.com", "kim").contains(&"<queued@test>".to_owned());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !delivered() {
        if Instant::now() > deadline {
            let log = |n: &str| {
                std::fs::read_to_string(tmp.path().join(n).with_extension("log")).unwrap_or_default()
            };
            panic!("not relayed; A:\n{}\nB:\n{}", log("a"), log("b"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let file = std::fs::read_dir(b_dir.join("mailboxes/adatum.com/kim/Maildir/new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(file.path()).unwrap();
    assert!(text.contains("with ESMTPS"), "the hop to B was not TLS: {text}");
    // Both ends wrote Exchange-format protocol logs with the TLS details.
    let read_logs = |dir: std::path::PathBuf| -> String {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect()
    };
    let recv = read_logs(b_dir.join("logs/protocol/receive"));
    assert!(recv.contains("#Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context"), "{recv}");
    assert!(recv.contains("TLS negotiated: TLSv1.3"), "{recv}");
    assert!(recv.contains("Direct trust: thumbprint"), "{recv}");
    let send = read_logs(tmp.path().join("a/logs/protocol/send"));
    assert!(send.contains("#Log-type: SMTP Send Protocol Log"), "{send}");
    assert!(send.contains(",>,STARTTLS"), "{send}");
    // And counted it, on A's metrics address (counters restart with the process).
    let metrics = postern_tests::lab::scrape(a.metrics_bind.unwrap());
    assert!(
        metrics.contains("postern_messages_total{direction=\"send\",outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postern_tls_handshakes_total{direction=\"send\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postern_smtp_sessions_total{direction=\"send\""),
        "{metrics}"
    );
    drop(node_a);

    // Expiry: a node whose relay never answers bounces to the local sender.
    let mut c = LabConfig::new(&tmp.path().join("c"), "edge2.adatum.com", &["edge2.adatum.com"]);
    c.relay = Some(postern_tests::lab::free_port());
    c.expiration_secs = 3;
    let node_c = LabProcess::start(&c).unwrap();
    let out = swaks(&[
        "--server",
        &node_c.addr.to_string(),
        "--from",
        "admin@edge2.adatum.com",
        "--to",
        "kim@fabrikam.com",
        "--helo",
        "edge2.adatum.com",
        "--header",
        "Message-Id: <doomed@test>",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let c_dir = tmp.path().join("c");
    let dsn_dir = c_dir.join("mailboxes/edge2.adatum.com/admin/Maildir/new");
    wait_until("expiry DSN", Duration::from_secs(60), || {
        std::fs::read_dir(&dsn_dir)
            .map(|d| d.count() > 0)
            .unwrap_or(false)
    });
    let dsn = std::fs::read_dir(&dsn_dir).unwrap().next().unwrap().unwrap();
    let text = std::fs::read_to_string(dsn.path()).unwrap();
    assert!(text.contains("report-type=delivery-status"), "{text}");
    assert!(text.contains("Action: failed"), "{text}");
    assert!(text.contains("4.4.7"), "{text}");
    assert!(
        text.contains("Return-Path: <>"),
        "a DSN has a null sender: {text}"
    );
    drop(node_c);
}
