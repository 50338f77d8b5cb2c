//! Partner names as the seed uses them (issue 12): northwindtraders.com's
//! Postfix presents a certificate naming only `mail.northwindtraders.com`
//! — a host under the partner domain, as the seed's Adatum certificate
//! names `mail.adatum.com` — and domain security accepts it both ways
//! (Postern's edge receiving from it, and sending to it). A Postfix whose
//! certificate names `northwindtraders.com.evil.test` and
//! `evilnorthwindtraders.com` is refused both ways: its mail is deferred
//! by the edge with the reason, and mail to it stays queued.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Postfix, mailbox, make_pki, start_org, swaks, wait_or};
use postern_tests::sh;

/// northwindtraders.com's CA and two certificates: one naming a host
/// under the domain, one naming look-alikes.
fn northwind_pki(dir: &Path) {
    sh(
        dir,
        "mkdir -p nw && cd nw
         openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
           -subj '/CN=Northwind Test Root CA' -addext 'basicConstraints=critical,CA:TRUE' \
           -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
         for c in mail:DNS:mail.northwindtraders.com evil:DNS:northwindtraders.com.evil.test,DNS:evilnorthwindtraders.com; do
           n=${c%%:*}; san=${c#*:}
           openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj \"/CN=$n\" 2>/dev/null
           printf \"subjectAltName=$san\\nextendedKeyUsage=serverAuth,clientAuth\\nbasicConstraints=CA:FALSE\\n\" > $n.ext
           openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile $n.ext -out $n.pem 2>/dev/null
         done",
    );
}

/// Postfix as northwindtraders.com's MTA with certificate `cert` (`nw/CERT.pem`).
fn postfix(dir: &Path, cert: &str, edge_port: &str) -> Postfix {
    let (ca, nw) = (dir.join("adatum.com/ca.pem"), dir.join("nw"));
    let (ca, nw) = (ca.display(), nw.display());
    let pf = dir.join(format!("postfix-{cert}"));
    let etc = pf.join("etc");
    Postfix::start(
        &pf,
        "mail.northwindtraders.com",
        &["lee@northwindtraders.com"],
        &format!(
            "smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = {nw}/{cert}.pem
smtpd_tls_key_file = {nw}/{cert}.key
smtpd_tls_CAfile = {ca}
smtpd_tls_ask_ccert = yes
smtpd_tls_req_ccert = yes
smtp_tls_security_level = secure
smtp_tls_CAfile = {ca}
smtp_tls_cert_file = {nw}/{cert}.pem
smtp_tls_key_file = {nw}/{cert}.key
transport_maps = texthash:{etc}/transport
smtp_tls_policy_maps = texthash:{etc}/tls_policy",
            etc = etc.display()
        ),
        &[
            ("transport", format!("adatum.com smtp:[127.0.0.1]:{edge_port}\n")),
            (
                "tls_policy",
                format!("[127.0.0.1]:{edge_port} secure match=adatum.com\n"),
            ),
        ],
    )
}

fn send_from(postfix: &Postfix, subject: &str) {
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
        &format!("Subject: {subject}"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_partner_certificate_naming_a_host_under_the_domain_passes_and_look_alikes_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir, "adatum.com", 1);
    northwind_pki(dir);
    let adatum = start_org(dir, "adatum.com", "kim", 1);
    let edge_port = adatum.edge_smtp.rsplit(':').next().unwrap().to_owned();
    let good = postfix(dir, "mail", &edge_port);

    let nw_ca = dir.join("nw/ca.pem");
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
        &format!("127.0.0.1:{}", good.port),
        "--tls-domain",
        "northwindtraders.com",
        "--domain-secure-enabled",
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

    // mail.northwindtraders.com serves northwindtraders.com, both ways.
    adatum.submit("kim@adatum.com", "lee@northwindtraders.com", "to the mail host");
    send_from(&good, "from the mail host");
    wait_or(
        "domain-secured mail both ways with mail.northwindtraders.com",
        Duration::from_secs(40),
        || {
            !good.mailbox("northwindtraders.com", "lee").is_empty()
                && mailbox(&adatum.hub_dir, "adatum.com", "kim")
                    .iter()
                    .any(|m| m.contains("from the mail host"))
        },
        || format!("{}\n--- postfix:\n{}", adatum.logs(), good.log()),
    );
    let mail = mailbox(&adatum.hub_dir, "adatum.com", "kim")
        .into_iter()
        .find(|m| m.contains("from the mail host"))
        .unwrap();
    assert!(
        mail.contains("X-Postern-Organization-AuthDomain: northwindtraders.com"),
        "{mail}"
    );
    assert!(good.log().contains("Trusted TLS connection established from"));
    let sent_before = adatum.edge_counter("Domain-Secured Messages Sent");
    assert!(sent_before >= 1);
    drop(good);

    // Look-alike names: refused both ways.
    let evil = postfix(dir, "evil", &edge_port);
    adatum.hub.ok(&[
        "send-connector",
        "set",
        "Partner",
        "--smart-hosts",
        &format!("127.0.0.1:{}", evil.port),
    ]);
    adatum.wait_edge_connector("Partner", &format!("127.0.0.1:{}", evil.port));
    let failures_before = adatum.edge_counter("Domain-Secured Outbound Session Failures");
    adatum.submit("kim@adatum.com", "lee@northwindtraders.com", "to the look-alike");
    send_from(&evil, "from the look-alike");
    let ctx = || format!("{}\n--- postfix:\n{}", adatum.logs(), evil.log());
    wait_or(
        "both refusals",
        Duration::from_secs(40),
        || {
            adatum.edge_counter("Domain-Secured Outbound Session Failures") > failures_before
                && evil
                    .log()
                    .contains("Domain security for northwindtraders.com failed")
        },
        ctx,
    );
    let log = evil.log();
    assert!(log.contains("northwindtraders.com.evil.test"), "{log}");
    assert!(evil.mailbox("northwindtraders.com", "lee").is_empty());
    assert!(
        !mailbox(&adatum.hub_dir, "adatum.com", "kim")
            .iter()
            .any(|m| m.contains("from the look-alike"))
    );
    assert_eq!(adatum.edge_counter("Domain-Secured Messages Sent"), sent_before);
}
