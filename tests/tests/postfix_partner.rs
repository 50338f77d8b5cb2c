//! Domain security with a foreign MTA: northwindtraders.com runs Debian's
//! Postfix (configured here in a temp dir, as `bench/postfix-chain.sh`
//! does), demanding a verified client certificate from adatum's CA on
//! receipt and verifying adatum's edge certificate (`secure`, matching
//! adatum.com) on sending; adatum.com runs Postern (hub + edge) with both
//! domain-secure lists set to northwindtraders.com. Mail goes both ways,
//! Postfix logs the verified sessions, and Postern stamps the partner's
//! mail as domain-secured. adatum's hub DKIM-signs the mail it sends, and
//! dkimpy verifies the message as Postfix delivered it against the record
//! `postern dkim list` prints, served by dnsmasq (issue 18).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::dnsmasq::{Dnsmasq, dkim_tool, txt};
use common::{Postfix, mailbox, make_pki, start_org, swaks, wait_or};

#[test]
fn postfix_partner_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir, "adatum.com", 1);
    make_pki(dir, "northwindtraders.com", 1);
    let adatum = start_org(dir, "adatum.com", "kim", 1);

    // Postfix as northwindtraders.com's MTA. Its next hop for adatum.com is
    // the Postern edge, [127.0.0.1]:PORT, so the policy names the domain
    // the edge's certificate must carry.
    let edge_port = adatum.edge_smtp.rsplit(':').next().unwrap().to_owned();
    let (adatum_ca, nw) = (dir.join("adatum.com/ca.pem"), dir.join("northwindtraders.com"));
    let (ca, nw) = (adatum_ca.display(), nw.display());
    let pf_etc = dir.join("postfix/etc");
    let postfix = Postfix::start(
        &dir.join("postfix"),
        "mail.northwindtraders.com",
        &["lee@northwindtraders.com"],
        &format!(
            "smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = {nw}/edge1.pem
smtpd_tls_key_file = {nw}/edge1.key
smtpd_tls_CAfile = {ca}
smtpd_tls_ask_ccert = yes
smtpd_tls_req_ccert = yes
smtp_tls_security_level = secure
smtp_tls_CAfile = {ca}
smtp_tls_cert_file = {nw}/edge1.pem
smtp_tls_key_file = {nw}/edge1.key
transport_maps = texthash:{etc}/transport
smtp_tls_policy_maps = texthash:{etc}/tls_policy",
            etc = pf_etc.display()
        ),
        &[
            ("transport", format!("adatum.com smtp:[127.0.0.1]:{edge_port}\n")),
            (
                "tls_policy",
                format!("[127.0.0.1]:{edge_port} secure match=adatum.com\n"),
            ),
        ],
    );

    // adatum: the partner's CA, both lists, a domain-secured connector to Postfix.
    let nw_ca = dir.join("northwindtraders.com/ca.pem");
    adatum
        .hub
        .ok(&["trusted-root", "add", "--path", nw_ca.to_str().unwrap()]);
    adatum.hub.ok(&[
        "transport-config",
        "set",
        "--tls-send-domain-secure-list",
        "northwindtraders.com",
        "--tls-receive-domain-secure-list",
        "northwindtraders.com",
    ]);
    adatum.hub.ok(&[
        "send-connector",
        "new",
        "Partner",
        "--address-spaces",
        "northwindtraders.com;10",
        "--smart-hosts",
        &format!("127.0.0.1:{}", postfix.port),
        "--tls-domain",
        "northwindtraders.com",
        "--domain-secure-enabled",
        "--protocol-logging-level",
        "verbose",
        "--source-edges",
        "edge1",
    ]);
    adatum.wait_edge_connector("Partner", "\"domain_secure_enabled\": true");
    common::wait_for("the lists on the edge", Duration::from_secs(30), || {
        adatum
            .edge
            .ok(&["transport-config", "get", "--json"])
            .contains("northwindtraders.com")
    });
    let ctx = || format!("{}\n--- postfix:\n{}", adatum.logs(), postfix.log());

    // adatum signs its outbound mail; the record goes to a DNS server.
    adatum
        .hub
        .ok(&["dkim", "new", "--domain", "adatum.com", "--selector", "hub1"]);
    adatum
        .hub
        .ok(&["dkim", "enable", "--domain", "adatum.com", "--selector", "hub1"]);
    let record = adatum.hub.json(&["dkim", "list"])[0]["txt_record"]
        .as_str()
        .unwrap()
        .to_owned();
    let dns = Dnsmasq::start(&dir.join("dns"), &[txt("hub1._domainkey.adatum.com", &record)]);

    // adatum -> northwind: submitted at the hub, out through the edge.
    adatum.submit("kim@adatum.com", "lee@northwindtraders.com", "hello postfix");
    // northwind -> adatum: submitted to Postfix, which relays to the edge.
    let out = swaks(&[
        "--server",
        &format!("127.0.0.1:{}", postfix.submit_port),
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

    wait_or(
        "mail both ways",
        Duration::from_secs(40),
        || {
            !postfix.mailbox("northwindtraders.com", "lee").is_empty()
                && !mailbox(&adatum.hub_dir, "adatum.com", "kim").is_empty()
        },
        ctx,
    );

    // Into Postfix's Maildir, over TLS with Postern's client certificate
    // verified against adatum's CA.
    let mail = &postfix.mailbox("northwindtraders.com", "lee")[0];
    assert!(mail.contains("Subject: hello postfix"), "{mail}");
    assert!(mail.contains("with ESMTPS"), "{mail}");
    // Signed by adatum's hub; dkimpy verifies it as Postfix delivered it.
    assert!(mail.contains("d=adatum.com"), "{mail}");
    let delivered = dir.join("delivered.eml");
    std::fs::write(&delivered, mail).unwrap();
    let port = dns.addr.port().to_string();
    assert_eq!(dkim_tool(&["verify", &port, delivered.to_str().unwrap()]), "pass");
    let log = postfix.log();
    assert!(log.contains("Trusted TLS connection established from"), "{log}");
    // Postfix verified the edge's certificate for adatum.com.
    assert!(log.contains("Verified TLS connection established to"), "{log}");

    // Into the adatum mailbox, stamped as the partner's.
    let mail = &mailbox(&adatum.hub_dir, "adatum.com", "kim")[0];
    assert!(mail.contains("Subject: hello adatum"), "{mail}");
    assert!(mail.contains("X-Postern-Organization-AuthAs: Partner"), "{mail}");
    assert!(
        mail.contains("X-Postern-Organization-AuthDomain: northwindtraders.com"),
        "{mail}"
    );
    assert!(mail.contains("with ESMTPS"), "{mail}");

    assert!(
        adatum.edge_counter("Domain-Secured Messages Received") >= 1,
        "{}",
        ctx()
    );
    assert!(
        adatum.edge_counter("Domain-Secured Messages Sent") >= 1,
        "{}",
        ctx()
    );
}
