//! The seed's scenario end to end on loopback: adatum.com (hub + two edges) and
//! northwindtraders.com (hub + edge), each with its own test CA and
//! trusting the other's, both domain-secure lists set, domain security on
//! the connectors; mail both ways is delivered and stamped domain-secured,
//! the counters move, and the refusals hold (no client certificate, a
//! certificate for another domain, a spoofed organisation header).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

mod common;

use common::{Org, make_pki, start_org, swaks, wait_for};
use postern_tests::lab::scrape;
use postern_tests::{require_tool, sh};

#[test]
fn domain_secured_mail_both_ways_and_the_refusals() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir, "adatum.com", 2);
    make_pki(dir, "northwindtraders.com", 1);
    let mut adatum = start_org(dir, "adatum.com", "kim", 2);
    let northwind = start_org(dir, "northwindtraders.com", "lee", 1);
    assert_eq!(adatum.more_edges.len(), 1);

    // Each organisation: the partner's CA as a trust anchor, both lists,
    // and a domain-secured connector to the partner's edge.
    for (org, partner) in [(&adatum, &northwind), (&northwind, &adatum)] {
        let ca = dir.join(partner.domain).join("ca.pem");
        org.hub
            .ok(&["trusted-root", "add", "--path", ca.to_str().unwrap()]);
        org.hub.ok(&[
            "transport-config",
            "set",
            "--tls-send-domain-secure-list",
            partner.domain,
            "--tls-receive-domain-secure-list",
            partner.domain,
        ]);
        org.hub.ok(&[
            "send-connector",
            "new",
            "Partner",
            "--address-spaces",
            &format!("{};10", partner.domain),
            "--smart-hosts",
            &partner.edge_smtps.join(","),
            "--tls-domain",
            partner.domain,
            "--source-edges",
            &(1..=org.edge_smtps.len())
                .map(|n| format!("edge{n}"))
                .collect::<Vec<_>>()
                .join(","),
        ]);
        org.hub.ok(&[
            "send-connector",
            "set",
            "Partner",
            "--domain-secure-enabled",
            "--protocol-logging-level",
            "verbose",
        ]);
        let shown = org.hub.json(&["send-connector", "get", "Partner"]);
        assert_eq!(shown["domain_secure_enabled"], true);
    }
    // Contradictions are refused when set.
    let err = adatum
        .hub
        .fails(&["send-connector", "set", "Partner", "--ignore-starttls"]);
    assert!(err.contains("needs STARTTLS"), "{err}");

    // Wait until both edges have the configuration.
    for edge in [&adatum.edge, &adatum.more_edges[0], &northwind.edge] {
        wait_for("edge config", Duration::from_secs(30), || {
            let c = edge.cli(&["send-connector", "get", "Partner", "--json"]);
            c.status.success()
                && String::from_utf8_lossy(&c.stdout).contains("\"domain_secure_enabled\": true")
        });
    }

    // adatum -> northwind, submitted at the adatum hub.
    let out = swaks(&[
        "--server",
        &adatum.hub_submission,
        "--from",
        "kim@adatum.com",
        "--to",
        "lee@northwindtraders.com",
        "--helo",
        "client.adatum.com",
        "--header",
        "Subject: hello northwind",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // northwind -> adatum.
    let out = swaks(&[
        "--server",
        &northwind.hub_submission,
        "--from",
        "lee@northwindtraders.com",
        "--to",
        "kim@adatum.com",
        "--helo",
        "client.northwindtraders.com",
        "--header",
        "Subject: hello adatum",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));

    let log_of = |org: &Org| format!("{}\n{}", org.hub.log_text(), org.edge.log_text());
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::mailbox(&northwind.hub_dir, "northwindtraders.com", "lee").is_empty()
        || common::mailbox(&adatum.hub_dir, "adatum.com", "kim").is_empty()
    {
        if Instant::now() > deadline {
            panic!(
                "mail not delivered.\nadatum:\n{}\nnorthwind:\n{}",
                log_of(&adatum),
                log_of(&northwind)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for (org, user, partner) in [
        (&northwind, "lee", "adatum.com"),
        (&adatum, "kim", "northwindtraders.com"),
    ] {
        let mail = &common::mailbox(&org.hub_dir, org.domain, user)[0];
        assert!(mail.contains("X-Postern-Organization-AuthAs: Partner"), "{mail}");
        assert!(
            mail.contains(&format!("X-Postern-Organization-AuthDomain: {partner}")),
            "{mail}"
        );
        assert!(mail.contains("Authentication-Results:"), "{mail}");
        assert!(mail.contains("with ESMTPS"), "{mail}");
        let metrics = scrape(org.edge_metrics);
        assert!(
            metrics.contains("postern_domain_secured_messages_received_total 1"),
            "{metrics}"
        );
    }

    // Refusals at the northwind edge for a sender on its receive list.
    let base = [
        "--server",
        &northwind.edge_smtp,
        "--from",
        "kim@adatum.com",
        "--to",
        "lee@northwindtraders.com",
        "--helo",
        "x.adatum.com",
    ];
    let out = swaks(&[&base[..], &["--quit-after", "RCPT"]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("451 4.7.5") && text.contains("not TLS"), "{text}");
    let out = swaks(&[&base[..], &["--tls", "--quit-after", "RCPT"]].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("451 4.7.5") && text.contains("no client certificate"),
        "{text}"
    );
    // <Postmaster> has no exception: no 250, so no DSN to a forged sender.
    let out = swaks(
        &[
            &base[..4],
            &[
                "--to",
                "Postmaster",
                "--helo",
                "x.adatum.com",
                "--tls",
                "--quit-after",
                "RCPT",
            ],
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("RCPT TO:<Postmaster>") && text.contains("451 4.7.5"),
        "{text}"
    );
    // A certificate from the trusted CA, but for another domain.
    sh(
        dir,
        "cd adatum.com && openssl req -newkey rsa:2048 -nodes -keyout other.key -out other.csr -subj '/CN=other.example' 2>/dev/null
         printf 'subjectAltName=DNS:other.example\\nextendedKeyUsage=serverAuth,clientAuth\\n' > other.ext
         openssl x509 -req -in other.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile other.ext -out other.pem 2>/dev/null",
    );
    let (cert, key) = (dir.join("adatum.com/other.pem"), dir.join("adatum.com/other.key"));
    let out = swaks(
        &[
            &base[..],
            &[
                "--tls",
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
                "--quit-after",
                "RCPT",
            ],
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("451 4.7.5") && text.contains("names other.example"),
        "{text}"
    );
    // A certificate from an untrusted root (self-signed).
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout self.key -out self.pem -days 2 -subj '/CN=adatum.com' -addext 'subjectAltName=DNS:adatum.com' 2>/dev/null",
    );
    let (cert, key) = (dir.join("self.pem"), dir.join("self.key"));
    let out = swaks(
        &[
            &base[..],
            &[
                "--tls",
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
                "--quit-after",
                "RCPT",
            ],
        ]
        .concat(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("451 4.7.5") && text.contains("not trusted"),
        "{text}"
    );

    // A spoofed organisation header from the Internet is gone on delivery;
    // unknown recipients are refused at RCPT; strangers may not relay.
    let out = swaks(&[
        "--server",
        &northwind.edge_smtp,
        "--from",
        "someone@fabrikam.com",
        "--to",
        "lee@northwindtraders.com",
        "--helo",
        "mx.fabrikam.com",
        "--header",
        "X-Postern-Organization-AuthAs: Partner",
        "--header",
        "Subject: spoof",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    wait_for("spoof delivery", Duration::from_secs(30), || {
        common::mailbox(&northwind.hub_dir, "northwindtraders.com", "lee")
            .iter()
            .any(|m| m.contains("Subject: spoof"))
    });
    let spoof = common::mailbox(&northwind.hub_dir, "northwindtraders.com", "lee")
        .into_iter()
        .find(|m| m.contains("Subject: spoof"))
        .unwrap();
    assert!(!spoof.contains("X-Postern-Organization-AuthAs"), "{spoof}");
    let out = swaks(&[
        "--server",
        &northwind.edge_smtp,
        "--from",
        "a@fabrikam.com",
        "--to",
        "nobody@northwindtraders.com",
        "--quit-after",
        "RCPT",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("550 5.1.1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = swaks(&[
        "--server",
        &northwind.edge_smtp,
        "--from",
        "a@fabrikam.com",
        "--to",
        "x@contoso.com",
        "--quit-after",
        "RCPT",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("550 5.7.1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A dead edge is skipped: with adatum's edge1 gone, mail leaves through edge2.
    adatum.edge.kill9();
    let out = swaks(&[
        "--server",
        &adatum.hub_submission,
        "--from",
        "kim@adatum.com",
        "--to",
        "lee@northwindtraders.com",
        "--helo",
        "client.adatum.com",
        "--header",
        "Subject: via the other edge",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    wait_for("delivery through edge2", Duration::from_secs(60), || {
        common::mailbox(&northwind.hub_dir, "northwindtraders.com", "lee")
            .iter()
            .any(|m| {
                m.contains("Subject: via the other edge")
                    && m.contains("X-Postern-Organization-AuthAs: Partner")
            })
    });
}
