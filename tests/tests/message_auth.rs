//! Message authentication against verifiers and signers nobody here wrote
//! (issue 18): dkimpy (Debian's python3-dkim) and DNS records served by
//! Debian's dnsmasq.
//!
//! * Outbound: a DKIM key made with `postern dkim new` on adatum.com's hub
//!   signs mail submitted there; the message as received by a sink after
//!   hub → edge → send connector verifies with dkimpy against the TXT
//!   record printed by `postern dkim list`, and fails once its body changes.
//! * Inbound: the edge (`--dns-server` = dnsmasq) judges mail from
//!   outside: dkimpy-signed (pass), tampered (fail), signed with a key not
//!   in DNS (permerror, RFC 6376 §6.1.2); SPF pass / fail / softfail /
//!   none from 127.0.0.1 and 127.0.0.2; DMARC p=reject failing with
//!   `--dmarc-enforcement none` (delivered, stamped dmarc=fail) and with
//!   `honour` (550 5.7.1), p=quarantine with `honour` (marked); an
//!   ARC-sealed forwarded message (arc=pass); a forged
//!   `Authentication-Results` claiming the edge's authserv-id removed.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::dnsmasq::{Dnsmasq, dkim_tool, txt};
use common::{SmtpSink, mailbox, make_pki, start_org, start_org_with, swaks, wait_for, wait_or};
use postern_tests::sh;

#[test]
fn outbound_mail_is_signed_and_dkimpy_verifies_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir, "adatum.com", 1);
    let org = start_org(dir, "adatum.com", "kim", 1);

    // Keys are made only for accepted domains.
    let refused = org
        .hub
        .fails(&["dkim", "new", "--domain", "fabrikam.com", "--selector", "s1"]);
    assert!(refused.contains("not an accepted domain"), "{refused}");
    let printed = org
        .hub
        .ok(&["dkim", "new", "--domain", "adatum.com", "--selector", "hub1"]);
    assert!(
        printed.starts_with("hub1._domainkey.adatum.com. IN TXT"),
        "{printed}"
    );
    let keys = org.hub.json(&["dkim", "list"]);
    let key = &keys.as_array().unwrap()[0];
    assert_eq!(key["enabled"], false, "{keys}");
    let record = key["txt_record"].as_str().unwrap().to_owned();
    assert!(record.starts_with("v=DKIM1; k=rsa; p=MII"), "{record}");
    org.hub
        .ok(&["dkim", "enable", "--domain", "adatum.com", "--selector", "hub1"]);
    assert_eq!(org.hub.json(&["dkim", "list"])[0]["enabled"], true);
    let dns = Dnsmasq::start(&dir.join("dns"), &[txt("hub1._domainkey.adatum.com", &record)]);

    let sink = SmtpSink::start(&dir.join("sink"));
    org.hub.ok(&[
        "send-connector",
        "new",
        "Internet",
        "--address-spaces",
        "sink.test;5",
        "--smart-hosts",
        &format!("127.0.0.1:{}", sink.port),
        "--source-edges",
        "edge1",
    ]);
    org.wait_edge_connector("Internet", "\"name\"");
    org.submit("kim@adatum.com", "lee@sink.test", "signed at the hub");
    wait_or(
        "the signed message at the sink",
        Duration::from_secs(30),
        || !sink.received().is_empty(),
        || org.logs(),
    );
    let mail = sink.received().remove(0);
    assert!(mail.contains("Subject: signed at the hub"), "{mail}");
    let signature = header(&mail, "DKIM-Signature");
    for tag in ["d=adatum.com", "s=hub1", "c=relaxed/relaxed", "a=rsa-sha256"] {
        assert!(signature.contains(tag), "{tag} in {signature}");
    }
    // From is oversigned: listed once more than it occurs.
    let h = signature.split("h=").nth(1).unwrap().split(';').next().unwrap();
    let froms = h
        .split(':')
        .filter(|n| n.trim().eq_ignore_ascii_case("from"))
        .count();
    assert_eq!(froms, 2, "h={h}");

    let port = dns.addr.port().to_string();
    let as_sent = dir.join("as-sent.eml");
    std::fs::write(&as_sent, &mail).unwrap();
    assert_eq!(dkim_tool(&["verify", &port, as_sent.to_str().unwrap()]), "pass");
    let tampered = dir.join("tampered.eml");
    std::fs::write(
        &tampered,
        mail.replace("This is a test mailing", "This is a changed mailing"),
    )
    .unwrap();
    assert_ne!(
        std::fs::read(&tampered).unwrap(),
        mail.as_bytes(),
        "the body changed"
    );
    assert_eq!(dkim_tool(&["verify", &port, tampered.to_str().unwrap()]), "fail");
}

/// A field's value with its continuation lines.
fn header(mail: &str, name: &str) -> String {
    let mut lines = mail.lines().skip_while(|l| {
        !l.to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
    });
    let mut value = lines
        .next()
        .unwrap_or_else(|| panic!("no {name} in {mail}"))
        .to_owned();
    for l in lines.take_while(|l| l.starts_with(' ') || l.starts_with('\t')) {
        value.push_str(l);
    }
    value
}

/// An RSA key pair for a foreign domain: the PEM path and the DKIM record.
fn foreign_key(dir: &Path, name: &str) -> (String, String) {
    sh(dir, &format!("openssl genrsa -out {name}.pem 2048 2>/dev/null"));
    let p = sh(
        dir,
        &format!("openssl rsa -in {name}.pem -pubout -outform DER 2>/dev/null | base64 -w0"),
    );
    (
        dir.join(format!("{name}.pem")).display().to_string(),
        format!("v=DKIM1; k=rsa; p={}", p.trim()),
    )
}

/// A message from `from` with `subject` (CRLF line ends).
fn message(dir: &Path, file: &str, from: &str, subject: &str, extra: &str) -> String {
    let text = format!(
        "{extra}From: <{from}>\r\nTo: <kim@adatum.com>\r\nSubject: {subject}\r\nDate: Fri, 27 Nov 2026 17:00:00 +0000\r\nMessage-ID: <{file}@test>\r\n\r\nHello from {from}.\r\n"
    );
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn inbound_mail_is_judged_by_spf_dkim_dmarc_and_arc() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (good_key, good_record) = foreign_key(dir, "good");
    let (fwd_key, fwd_record) = foreign_key(dir, "fwd");
    let only_127_1 = "v=spf1 ip4:127.0.0.1 -all";
    let dns = Dnsmasq::start(
        &dir.join("dns"),
        &[
            // Everything under .example not listed here does not exist.
            "--address=/example/".to_owned(),
            txt("s1._domainkey.good.example", &good_record),
            txt("good.example", only_127_1),
            txt("_dmarc.good.example", "v=DMARC1; p=reject"),
            txt("soft.example", "v=spf1 ip4:127.0.0.1 ~all"),
            txt("strict.example", only_127_1),
            txt("_dmarc.strict.example", "v=DMARC1; p=reject"),
            txt("quar.example", only_127_1),
            txt("_dmarc.quar.example", "v=DMARC1; p=quarantine"),
            txt("a1._domainkey.fwd.example", &fwd_record),
            txt("fwd.example", only_127_1),
        ],
    );
    make_pki(dir, "adatum.com", 1);
    let dns_server = dns.addr.to_string();
    let org = start_org_with(dir, "adatum.com", "kim", 1, &["--dns-server", &dns_server]);
    let edge = org.edge_smtp.clone();
    let send = |from_ip: &str, mail_from: &str, data: &str| {
        swaks(&[
            "--server",
            &edge,
            "--local-interface",
            from_ip,
            "--helo",
            "relay.example",
            "--from",
            mail_from,
            "--to",
            "kim@adatum.com",
            "--data",
            data,
        ])
    };
    let sent = |from_ip: &str, mail_from: &str, data: &str| {
        let out = send(from_ip, mail_from, data);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    };
    let path = |p: &str| dir.join(p).display().to_string();

    // DKIM: signed by dkimpy; tampered; signed with a key not in DNS.
    let plain = message(dir, "signed.eml", "a@good.example", "dkim signed", "");
    dkim_tool(&[
        "sign",
        "good.example",
        "s1",
        &good_key,
        &plain,
        &path("signed.out"),
    ]);
    sent("127.0.0.1", "a@good.example", &path("signed.out"));
    let plain = message(dir, "tampered.eml", "a@good.example", "dkim tampered", "");
    dkim_tool(&[
        "sign",
        "good.example",
        "s1",
        &good_key,
        &plain,
        &path("tampered.out"),
    ]);
    let text = std::fs::read_to_string(path("tampered.out")).unwrap();
    std::fs::write(path("tampered.out"), text.replace("Hello from", "Goodbye from")).unwrap();
    sent("127.0.0.1", "a@good.example", &path("tampered.out"));
    let plain = message(dir, "nokey.eml", "a@good.example", "dkim no key", "");
    dkim_tool(&[
        "sign",
        "good.example",
        "s2",
        &good_key,
        &plain,
        &path("nokey.out"),
    ]);
    sent("127.0.0.1", "a@good.example", &path("nokey.out"));

    // SPF from two loopback addresses; a forged result of ours on the way.
    let forged = "Authentication-Results: edge1.adatum.com; spf=pass; dkim=pass; dmarc=pass (forged)\r\n";
    sent(
        "127.0.0.2",
        "b@soft.example",
        &message(dir, "soft.eml", "b@soft.example", "spf softfail", ""),
    );
    sent(
        "127.0.0.1",
        "b@soft.example",
        &message(dir, "soft-pass.eml", "b@soft.example", "spf pass", ""),
    );
    sent(
        "127.0.0.1",
        "c@none.example",
        &message(dir, "none.eml", "c@none.example", "spf none", forged),
    );
    // SPF fail, and DMARC p=reject failing, under enforcement none.
    sent(
        "127.0.0.2",
        "a@good.example",
        &message(dir, "fail.eml", "a@good.example", "spf fail", ""),
    );

    // ARC: good.example's message, forwarded by fwd.example, which adds a
    // footer (breaking the DKIM signature) and seals the chain.
    let plain = message(dir, "list.eml", "a@good.example", "arc forwarded", "");
    dkim_tool(&[
        "sign",
        "good.example",
        "s1",
        &good_key,
        &plain,
        &path("list.signed"),
    ]);
    let text = std::fs::read_to_string(path("list.signed")).unwrap();
    let forwarded = format!(
        "Authentication-Results: fwd.example; dkim=pass header.d=good.example; spf=pass smtp.mailfrom=good.example\r\n{text}-- \r\nThe list footer\r\n"
    );
    std::fs::write(path("list.fwd"), forwarded).unwrap();
    dkim_tool(&[
        "arcsign",
        "fwd.example",
        "a1",
        &fwd_key,
        "fwd.example",
        &path("list.fwd"),
        &path("list.arc"),
    ]);
    sent("127.0.0.1", "bounce@fwd.example", &path("list.arc"));

    let subjects = [
        "dkim signed",
        "dkim tampered",
        "dkim no key",
        "spf softfail",
        "spf pass",
        "spf none",
        "spf fail",
        "arc forwarded",
    ];
    let mails = || mailbox(&org.hub_dir, "adatum.com", "kim");
    wait_or(
        "every message in kim's mailbox",
        Duration::from_secs(40),
        || {
            subjects.iter().all(|s| {
                mails().iter().any(|m| {
                    m.contains(&format!("Subject: {s}\n")) || m.contains(&format!("Subject: {s}\r\n"))
                })
            })
        },
        || org.logs(),
    );
    let results = |subject: &str| {
        let mail = mails()
            .into_iter()
            .find(|m| {
                m.contains(&format!("Subject: {subject}\r\n")) || m.contains(&format!("Subject: {subject}\n"))
            })
            .unwrap();
        let fields: Vec<String> = mail
            .lines()
            .take_while(|l| !l.is_empty() && *l != "\r")
            .filter(|l| {
                l.to_ascii_lowercase()
                    .starts_with("authentication-results: edge1.adatum.com")
            })
            .map(|_| header(&mail, "Authentication-Results"))
            .collect();
        assert_eq!(
            fields.len(),
            1,
            "one Authentication-Results of the edge in {mail}"
        );
        let field = fields[0].clone();
        assert!(
            field.starts_with("Authentication-Results: edge1.adatum.com;"),
            "{field}"
        );
        (field, mail)
    };
    let expect = |subject: &str, wanted: &[&str]| {
        let (field, mail) = results(subject);
        for w in wanted {
            assert!(field.contains(w), "{subject}: {w:?} in {field}\n{mail}");
        }
        mail
    };
    expect(
        "dkim signed",
        &[
            "dkim=pass header.i=@good.example header.s=s1",
            "spf=pass",
            "dmarc=pass",
        ],
    );
    expect("dkim tampered", &["dkim=fail", "spf=pass", "dmarc=pass"]);
    expect("dkim no key", &["dkim=permerror"]);
    expect("spf softfail", &["spf=softfail", "smtp.mailfrom=b@soft.example"]);
    expect("spf pass", &["spf=pass", "smtp.mailfrom=b@soft.example"]);
    let none = expect("spf none", &["spf=none", "dkim=none"]);
    assert!(
        !none.contains("(forged)"),
        "the forged result is removed:\n{none}"
    );
    let failed = expect("spf fail", &["spf=fail", "dmarc=fail", "policy.dmarc=reject"]);
    assert!(!failed.contains("X-Postern-Organization-DMARC"), "{failed}");
    expect("arc forwarded", &["arc=pass", "dkim=fail", "spf=pass"]);

    // With enforcement honour: p=reject failures are refused, p=quarantine
    // failures are marked; passing mail still flows.
    org.edge.ok(&[
        "receive-connector",
        "set",
        "Default internal receive connector edge1",
        "--dmarc-enforcement",
        "honour",
    ]);
    let reject = message(dir, "reject.eml", "x@strict.example", "dmarc reject", "");
    let mut refused = None;
    wait_for("the connector to honour DMARC", Duration::from_secs(20), || {
        let out = send("127.0.0.2", "x@strict.example", &reject);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let done = text.contains("550 5.7.1");
        if done {
            refused = Some(text);
        }
        done
    });
    let refused = refused.unwrap();
    assert!(refused.contains("DMARC"), "{refused}");
    sent(
        "127.0.0.2",
        "q@quar.example",
        &message(dir, "quar.eml", "q@quar.example", "dmarc quarantine", ""),
    );
    sent(
        "127.0.0.1",
        "x@strict.example",
        &message(dir, "ok.eml", "x@strict.example", "dmarc honoured pass", ""),
    );
    wait_or(
        "the quarantined and the passing message",
        Duration::from_secs(30),
        || {
            let all = mails();
            all.iter().any(|m| m.contains("Subject: dmarc quarantine"))
                && all.iter().any(|m| m.contains("Subject: dmarc honoured pass"))
        },
        || org.logs(),
    );
    let quarantined = expect("dmarc quarantine", &["dmarc=fail", "policy.dmarc=quarantine"]);
    assert!(
        quarantined.contains("X-Postern-Organization-DMARC: quarantine"),
        "{quarantined}"
    );
    expect("dmarc honoured pass", &["spf=pass", "dmarc=pass"]);
    assert!(
        !mails().iter().any(|m| m.contains("Subject: dmarc reject")),
        "the refused message was not delivered"
    );
}
