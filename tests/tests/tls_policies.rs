//! The TLS policies of an edge's send connectors against real peers: mail
//! submitted at adatum.com's hub goes hub → edge → send connector → a
//! Postfix smtpd offering STARTTLS, or Postfix's `smtp-sink` offering none.
//! Opportunistic TLS uses TLS when offered and plain text otherwise;
//! `--require-tls` holds mail for a peer without STARTTLS; `--ignore-starttls`
//! sends in plain to a TLS peer; domain security holds mail for a partner
//! whose next hop strips STARTTLS or presents an untrusted certificate and
//! counts the failures. And an expired partner client certificate is
//! refused with 451 4.7.5.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Org, Postfix, SmtpSink, make_pki, start_org, swaks, wait_for, wait_or};
use postern_tests::{openssl_issue_dated, sh};

/// A connector to be made on the hub: name, domain, peer, extra flags.
struct Case {
    name: &'static str,
    domain: &'static str,
    tls_peer: bool,
    flags: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "OppTls",
        domain: "opp-tls.test",
        tls_peer: true,
        flags: &[],
    },
    Case {
        name: "OppPlain",
        domain: "opp-plain.test",
        tls_peer: false,
        flags: &[],
    },
    Case {
        name: "ReqPlain",
        domain: "req-plain.test",
        tls_peer: false,
        flags: &["--require-tls"],
    },
    Case {
        name: "ReqTls",
        domain: "req-tls.test",
        tls_peer: true,
        flags: &["--require-tls"],
    },
    Case {
        name: "IgnTls",
        domain: "ign-tls.test",
        tls_peer: true,
        flags: &["--ignore-starttls"],
    },
    Case {
        name: "SecurePlain",
        domain: "partner-plain.test",
        tls_peer: false,
        flags: &["--domain-secure-enabled", "--tls-domain", "partner-plain.test"],
    },
    Case {
        name: "SecureUntrusted",
        domain: "partner-untrusted.test",
        tls_peer: true,
        flags: &[
            "--domain-secure-enabled",
            "--tls-domain",
            "partner-untrusted.test",
        ],
    },
];

/// The peer's own Received header (the first one), where it says whether
/// the edge's session was ESMTPS or ESMTP.
fn far_received(mail: &str) -> &str {
    let start = mail.find("Received:").expect("a Received header");
    let rest = &mail[start + 1..];
    let end = rest.find("Received:").map_or(mail.len(), |e| start + 1 + e);
    &mail[start..end]
}

fn context(org: &Org, postfix: &Postfix, sink: &SmtpSink) -> String {
    format!(
        "{}\n--- postfix:\n{}\n--- smtp-sink:\n{:?}",
        org.logs(),
        postfix.log(),
        sink.received()
    )
}

#[test]
fn send_connector_tls_policies_against_real_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir, "adatum.com", 1);
    // The TLS peer's certificate: self-signed, naming every domain it
    // serves (fine for opportunistic and encryption-only TLS, untrusted
    // for domain security).
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout peer.key -out peer.pem -days 2 \
           -subj '/CN=peer.test' -addext 'subjectAltName=DNS:peer.test,DNS:partner-untrusted.test' 2>/dev/null
         chmod 644 peer.pem",
    );
    let tls_mailboxes: Vec<String> = CASES
        .iter()
        .filter(|c| c.tls_peer)
        .map(|c| format!("user@{}", c.domain))
        .collect();
    let tls_mailboxes: Vec<&str> = tls_mailboxes.iter().map(String::as_str).collect();
    let d = dir.display();
    let postfix = Postfix::start(
        &dir.join("postfix"),
        "peer.test",
        &tls_mailboxes,
        &format!(
            "smtpd_tls_security_level = may
smtpd_tls_cert_file = {d}/peer.pem
smtpd_tls_key_file = {d}/peer.key"
        ),
        &[],
    );
    let sink = SmtpSink::start(&dir.join("sink"));

    let org = start_org(dir, "adatum.com", "kim", 1);
    org.hub.ok(&[
        "transport-config",
        "set",
        "--tls-send-domain-secure-list",
        "partner-plain.test,partner-untrusted.test",
    ]);
    for case in CASES {
        let port = if case.tls_peer { postfix.port } else { sink.port };
        let (space, host) = (format!("{};5", case.domain), format!("127.0.0.1:{port}"));
        let args = [
            &[
                "send-connector",
                "new",
                case.name,
                "--address-spaces",
                &space,
                "--smart-hosts",
                &host,
                "--source-edges",
                "edge1",
            ][..],
            case.flags,
        ]
        .concat();
        org.hub.ok(&args);
    }
    // The last connector on the edge means the others are there too, but
    // check each (EdgeSync pushes on commit).
    for case in CASES {
        org.wait_edge_connector(case.name, "\"name\"");
    }
    wait_for("the send list on the edge", Duration::from_secs(30), || {
        org.edge
            .ok(&["transport-config", "get", "--json"])
            .contains("partner-untrusted.test")
    });
    let failures_before = org.edge_counter("Domain-Secured Outbound Session Failures");

    for case in CASES {
        org.submit(
            "kim@adatum.com",
            &format!("user@{}", case.domain),
            &format!("policy {}", case.name),
        );
    }

    let ctx = || context(&org, &postfix, &sink);
    let subject = |case: &str| format!("Subject: policy {case}");

    // (a) Opportunistic: TLS when offered, plain otherwise.
    wait_or(
        "opportunistic deliveries",
        Duration::from_secs(30),
        || {
            !postfix.mailbox("opp-tls.test", "user").is_empty()
                && sink.received().iter().any(|m| m.contains(&subject("OppPlain")))
        },
        ctx,
    );
    let mail = &postfix.mailbox("opp-tls.test", "user")[0];
    assert!(far_received(mail).contains("with ESMTPS"), "{mail}");
    let plain = sink
        .received()
        .into_iter()
        .find(|m| m.contains(&subject("OppPlain")))
        .unwrap();
    assert!(plain.contains("user@opp-plain.test"), "{plain}");

    // (b) Required TLS: delivered over TLS to the TLS peer.
    wait_or(
        "required-TLS delivery",
        Duration::from_secs(30),
        || !postfix.mailbox("req-tls.test", "user").is_empty(),
        ctx,
    );
    let mail = &postfix.mailbox("req-tls.test", "user")[0];
    assert!(far_received(mail).contains("with ESMTPS"), "{mail}");

    // (c) STARTTLS ignored: plain text to the TLS peer.
    wait_or(
        "ignore-STARTTLS delivery",
        Duration::from_secs(30),
        || !postfix.mailbox("ign-tls.test", "user").is_empty(),
        ctx,
    );
    let mail = &postfix.mailbox("ign-tls.test", "user")[0];
    assert!(
        far_received(mail).contains("with ESMTP id") && !far_received(mail).contains("ESMTPS"),
        "{mail}"
    );

    // (b) and (d): the held messages. Each hop has failed at least once,
    // and domain security counted its two failures.
    wait_or(
        "the held messages' failed attempts",
        Duration::from_secs(30),
        || {
            let log = org.edge.log_text();
            ["reqplain", "secureplain", "secureuntrusted"].iter().all(|name| {
                log.lines()
                    .any(|l| l.contains("relay attempt failed") && l.contains(&format!("connector:{name}")))
            })
        },
        ctx,
    );
    wait_or(
        "Domain-Secured Outbound Session Failures to rise",
        Duration::from_secs(20),
        || org.edge_counter("Domain-Secured Outbound Session Failures") >= failures_before + 2,
        ctx,
    );
    let log = org.edge.log_text();
    assert!(log.contains("domain-secured session failed"), "{}", ctx());
    // Never delivered, in plain or otherwise: give a retry a moment.
    std::thread::sleep(Duration::from_secs(2));
    let received = sink.received();
    for case in ["ReqPlain", "SecurePlain"] {
        assert!(
            !received.iter().any(|m| m.contains(&subject(case))),
            "{case} was delivered in plain text\n{}",
            ctx()
        );
    }
    assert!(
        postfix.mailbox("partner-untrusted.test", "user").is_empty(),
        "delivered to an untrusted partner certificate\n{}",
        ctx()
    );
    // Still queued on the edge.
    let queued = org.edge_counter("postern_queue_length");
    assert!(queued >= 3, "queue length {queued}\n{}", ctx());
}

#[test]
fn an_expired_partner_certificate_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir, "adatum.com", 1);
    make_pki(dir, "northwindtraders.com", 1);
    let org = start_org(dir, "adatum.com", "kim", 1);
    let ca = dir.join("northwindtraders.com/ca.pem");
    org.hub
        .ok(&["trusted-root", "add", "--path", ca.to_str().unwrap()]);
    org.hub.ok(&[
        "transport-config",
        "set",
        "--tls-send-domain-secure-list",
        "northwindtraders.com",
        "--tls-receive-domain-secure-list",
        "northwindtraders.com",
    ]);
    // Issued by the partner's CA, valid only in 2020.
    let partner = dir.join("northwindtraders.com");
    openssl_issue_dated(
        &partner,
        "expired",
        "northwindtraders.com",
        "20200101000000Z",
        "20210101000000Z",
    );
    let (cert, key) = (partner.join("expired.pem"), partner.join("expired.key"));
    let session = || {
        let out = swaks(&[
            "--server",
            &org.edge_smtp,
            "--from",
            "lee@northwindtraders.com",
            "--to",
            "kim@adatum.com",
            "--helo",
            "edge1.northwindtraders.com",
            "--tls",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--quit-after",
            "RCPT",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Until the receive list reaches the edge the sender is not checked.
    let mut text = String::new();
    wait_or(
        "the partner check on the edge",
        Duration::from_secs(30),
        || {
            text = session();
            text.contains("4.7.5")
        },
        || org.logs(),
    );
    assert!(
        text.contains("451 4.7.5") && text.contains("not trusted"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("expired"), "{text}");
}
