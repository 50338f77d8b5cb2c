//! Certificates that change under a running organisation (issue 12), as
//! processes on loopback: the seed's order (subscribe first, then request,
//! have a CA sign, import and enable on the edge) rotates the edge's
//! identity over EdgeSync with no re-subscription; a hub's new certificate
//! reaches its edges before it is presented; after restarts every hop makes
//! a fresh handshake and mail flows both ways; the replaced certificate is
//! refused after the grace period. And an offer that cannot be delivered
//! leaves the edge on its old identity, saying why, with mail flowing.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

mod common;

use common::{SmtpSink, mailbox, swaks, wait_or};
use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role, require_tool, sh};
use serde_json::Value;

const DOMAIN: &str = "adatum.com";
/// The hub's grace period in these tests, seconds.
const GRACE: &str = "4";

/// A test CA, and an existing certificate + key for edge1 (its identity
/// when it subscribes).
fn make_ca(dir: &Path) {
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
           -subj '/CN=Adatum Test Root CA' -addext 'basicConstraints=critical,CA:TRUE' \
           -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
         openssl req -x509 -newkey rsa:2048 -nodes -keyout old.key -out old.pem -days 3650 \
           -subj '/CN=edge1.adatum.com' -addext 'subjectAltName=DNS:edge1.adatum.com' 2>/dev/null
         cat old.pem old.key > old-bundle.pem",
    );
}

/// Has the CA sign `csr` into `pem` for `name`.
fn ca_sign(dir: &Path, csr: &str, pem: &str, name: &str) {
    sh(
        dir,
        &format!(
            "printf 'subjectAltName=DNS:{name}\\nextendedKeyUsage=serverAuth,clientAuth\\nbasicConstraints=CA:FALSE\\n' > {pem}.ext
             openssl x509 -req -in {csr} -CA ca.pem -CAkey ca.key -CAcreateserial -days 20 -extfile {pem}.ext -out {pem} 2>/dev/null"
        ),
    );
}

struct Site {
    hub: NodeProcess,
    edges: Vec<NodeProcess>,
    edge_smtps: Vec<String>,
    edge_syncs: Vec<String>,
    hub_smtp: String,
    hub_submission: String,
    hub_dir: std::path::PathBuf,
}

impl Site {
    fn logs(&self) -> String {
        let mut text = format!("--- hub:\n{}", self.hub.log_text());
        for (i, e) in self.edges.iter().enumerate() {
            text.push_str(&format!("\n--- edge{}:\n{}", i + 1, e.log_text()));
        }
        text
    }
}

fn start_edge(dir: &Path, n: usize) -> (NodeProcess, String, String) {
    let smtp = free_port().to_string();
    let sync = free_port().to_string();
    let edge = NodeProcess::start_with(
        Role::Edge,
        &dir.join(format!("edge{n}")),
        &format!("edge{n}.{DOMAIN}"),
        &["--smtp-bind", &smtp, "--edgesync-bind", &sync],
    )
    .unwrap();
    (edge, smtp, sync)
}

fn subscribe(dir: &Path, hub: &NodeProcess, edge: &NodeProcess, n: usize) {
    let sub = dir.join(format!("edge{n}.sub"));
    edge.ok(&["edge-subscription", "new", "--file", sub.to_str().unwrap()]);
    hub.ok(&["edge-subscription", "import", "--file", sub.to_str().unwrap()]);
}

/// A hub (grace period `GRACE`) with `edges` subscribed edges; edge1
/// subscribes with `old.pem` (made by `make_ca`), the others with their
/// setup certificates.
fn start_site(dir: &Path, edges: usize) -> Site {
    let hub_smtp = free_port().to_string();
    let hub_dir = dir.join("hub");
    let hub = NodeProcess::start_with(
        Role::Hub,
        &hub_dir,
        &format!("hub1.{DOMAIN}"),
        &["--smtp-bind", &hub_smtp, "--certificate-grace", GRACE],
    )
    .unwrap();
    hub.ok(&["accepted-domain", "new", DOMAIN]);
    hub.ok(&["mailbox", "new", &format!("kim@{DOMAIN}")]);
    let mut all = Vec::new();
    let mut smtps = Vec::new();
    let mut syncs = Vec::new();
    for n in 1..=edges {
        let (edge, smtp, sync) = start_edge(dir, n);
        syncs.push(sync);
        if n == 1 {
            let old = dir.join("old-bundle.pem");
            edge.ok(&[
                "cert",
                "import",
                "--path",
                old.to_str().unwrap(),
                "--enable-services",
                "smtp",
            ]);
        }
        subscribe(dir, &hub, &edge, n);
        all.push(edge);
        smtps.push(smtp);
    }
    let hub_submission = free_port().to_string();
    hub.ok(&[
        "receive-connector",
        "new",
        "Client Hub",
        "--bindings",
        &hub_submission,
        "--permission-groups",
        "clients",
        "--remote-ip-ranges",
        "127.0.0.0/8",
    ]);
    Site {
        hub,
        edges: all,
        edge_smtps: smtps,
        edge_syncs: syncs,
        hub_smtp,
        hub_submission,
        hub_dir,
    }
}

fn statuses(hub: &NodeProcess) -> Vec<Value> {
    hub.json(&["edgesync", "test"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn status_of(hub: &NodeProcess, edge: &str) -> Option<Value> {
    statuses(hub).into_iter().find(|s| s["edge"] == edge)
}

fn in_sync(hub: &NodeProcess, edge: &str) -> bool {
    status_of(hub, edge).is_some_and(|s| s["status"] == "in-sync" && s["lag"] == 0)
}

fn cert(node: &NodeProcess, thumbprint: &str) -> Value {
    node.json(&["cert", "get", "--thumbprint", thumbprint])
}

fn thumbprint_of(dir: &Path, pem: &str) -> String {
    postern_tests::openssl_thumbprint(dir, pem)
}

/// The seed's order on one edge: request, CA signs, import and enable.
/// Returns the new certificate's thumbprint.
fn replace_edge_certificate(dir: &Path, edge: &NodeProcess, n: usize, tag: &str) -> String {
    let csr = format!("edge{n}-{tag}.csr");
    let pem = format!("edge{n}-{tag}.pem");
    edge.ok(&[
        "cert",
        "new",
        "--generate-request",
        "--subject-name",
        &format!("CN=edge{n}.{DOMAIN}"),
        "--domain-name",
        &format!("edge{n}.{DOMAIN}"),
        "--path",
        dir.join(&csr).to_str().unwrap(),
    ]);
    ca_sign(dir, &csr, &pem, &format!("edge{n}.{DOMAIN}"));
    edge.ok(&[
        "cert",
        "import",
        "--path",
        dir.join(&pem).to_str().unwrap(),
        "--enable-services",
        "smtp",
    ])
    .trim()
    .to_owned()
}

/// Inbound (Internet → edge → hub) and outbound (hub → edge → sink) mail,
/// each must arrive.
fn mail_both_ways(site: &Site, sink: &SmtpSink, edge: usize, tag: &str) {
    let inbound = format!("inbound {tag}");
    let out = swaks(&[
        "--server",
        &site.edge_smtps[edge],
        "--from",
        "someone@contoso.com",
        "--to",
        &format!("kim@{DOMAIN}"),
        "--header",
        &format!("Subject: {inbound}"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let outbound = format!("outbound {tag}");
    let out = swaks(&[
        "--server",
        &site.hub_submission,
        "--from",
        &format!("kim@{DOMAIN}"),
        "--to",
        "user@contoso.com",
        "--helo",
        &format!("client.{DOMAIN}"),
        "--header",
        &format!("Subject: {outbound}"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    wait_or(
        &format!("mail both ways ({tag})"),
        Duration::from_secs(60),
        || {
            mailbox(&site.hub_dir, DOMAIN, "kim")
                .iter()
                .any(|m| m.contains(&inbound))
                && sink.received().iter().any(|m| m.contains(&outbound))
        },
        || site.logs(),
    );
}

fn outbound_connector(site: &Site, sink: &SmtpSink, source_edges: &str) {
    site.hub.ok(&[
        "send-connector",
        "new",
        "Contoso",
        "--address-spaces",
        "contoso.com;10",
        "--smart-hosts",
        &format!("127.0.0.1:{}", sink.port),
        "--source-edges",
        source_edges,
    ]);
}

#[test]
fn seed_order_rotation_of_edge_and_hub_certificates_without_resubscription() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_ca(dir);
    let sink = SmtpSink::start(&dir.join("sink"));
    let mut site = start_site(dir, 2);
    outbound_connector(&site, &sink, "edge1,edge2");
    for edge in ["edge1", "edge2"] {
        wait_or(
            "edges in sync",
            Duration::from_secs(30),
            || in_sync(&site.hub, edge),
            || site.logs(),
        );
    }
    let old = thumbprint_of(dir, "old.pem");
    let subs = site.hub.json(&["edge-subscription", "list"]);
    assert!(subs.to_string().contains(&old), "{subs}");

    // Before: the hub takes mail from a client presenting edge1's identity.
    let old_cert = dir.join("old.pem");
    let old_key = dir.join("old.key");
    let with_old_identity = |subject: &str| {
        swaks(&[
            "--server",
            &site.hub_smtp,
            "--tls",
            "--tls-cert",
            old_cert.to_str().unwrap(),
            "--tls-key",
            old_key.to_str().unwrap(),
            "--helo",
            &format!("edge1.{DOMAIN}"),
            "--from",
            "someone@contoso.com",
            "--to",
            &format!("kim@{DOMAIN}"),
            "--header",
            &format!("Subject: {subject}"),
        ])
    };
    let before = with_old_identity("old identity before");
    assert!(
        before.status.success(),
        "{}",
        String::from_utf8_lossy(&before.stdout)
    );

    // The seed's order on a subscribed edge.
    let new = replace_edge_certificate(dir, &site.edges[0], 1, "ca");
    assert_eq!(new, thumbprint_of(dir, "edge1-ca.pem"));
    wait_or(
        "the hub to confirm edge1's new certificate",
        Duration::from_secs(30),
        || cert(&site.edges[0], &new)["rotation"] == "" && cert(&site.edges[0], &old)["rotation"] != "",
        || format!("{}\n{}", site.edges[0].ok(&["cert", "list"]), site.logs()),
    );
    let subs = site.hub.json(&["edge-subscription", "list"]);
    let edge1 = subs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "edge1")
        .unwrap()
        .clone();
    assert_eq!(edge1["thumbprint"], new.as_str(), "{subs}");

    // A hub's new certificate: held until both edges have it, then presented.
    let hub_old = site.hub.json(&["cert", "list"]).as_array().unwrap()[0]["thumbprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let hub_new = site
        .hub
        .ok(&[
            "cert",
            "new",
            "--subject-name",
            &format!("CN=hub1.{DOMAIN}"),
            "--domain-name",
            &format!("hub1.{DOMAIN}"),
            "--services",
            "smtp",
        ])
        .trim()
        .to_owned();
    wait_or(
        "the hub to present its new certificate",
        Duration::from_secs(30),
        || cert(&site.hub, &hub_new)["rotation"] == "" && cert(&site.hub, &hub_old)["rotation"] != "",
        || format!("{}\n{}", site.hub.ok(&["cert", "list"]), site.logs()),
    );

    // Restart every node, so every hop makes a fresh handshake.
    site.hub.restart().unwrap();
    for edge in &mut site.edges {
        edge.restart().unwrap();
    }
    for edge in ["edge1", "edge2"] {
        wait_or(
            "edges in sync after restart",
            Duration::from_secs(30),
            || in_sync(&site.hub, edge),
            || site.logs(),
        );
    }
    mail_both_ways(&site, &sink, 0, "after rotation");
    // EdgeSync keeps applying: a new connector reaches both edges.
    site.hub.ok(&["accepted-domain", "new", "fabrikam.com"]);
    for edge in &site.edges {
        wait_or(
            "the new accepted domain on the edge",
            Duration::from_secs(30),
            || {
                edge.ok(&["accepted-domain", "list", "--json"])
                    .contains("fabrikam.com")
            },
            || site.logs(),
        );
    }
    let status = status_of(&site.hub, "edge1").unwrap();
    assert_eq!(status["trust"], "ok", "{status}");
    assert_eq!(status["edge_certificate"], new.as_str(), "{status}");
    assert!(
        status["edge_certificate_days_left"].as_i64().unwrap() >= 18,
        "{status}"
    );

    // After the grace period the replaced edge certificate is refused.
    wait_or(
        "edge1's old certificate to be retired",
        Duration::from_secs(30),
        || cert(&site.edges[0], &old)["rotation"] == "retired",
        || site.logs(),
    );
    wait_or(
        "the hub to retire edge1's old certificate",
        Duration::from_secs(30),
        || {
            site.hub
                .log_text()
                .contains("edge certificate retired after its grace period")
        },
        || site.logs(),
    );
    let after = with_old_identity("old identity after grace");
    assert!(
        !after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
    assert!(
        !mailbox(&site.hub_dir, DOMAIN, "kim")
            .iter()
            .any(|m| m.contains("old identity after grace"))
    );
    // The hub's replaced certificate is retired too, and mail still flows.
    wait_or(
        "the hub's old certificate to be retired",
        Duration::from_secs(30),
        || cert(&site.hub, &hub_old)["rotation"] == "retired",
        || site.logs(),
    );
    mail_both_ways(&site, &sink, 0, "after grace");
    assert!(!site.logs().contains("re-subscri"));
}

#[test]
fn an_offer_that_cannot_be_delivered_keeps_the_old_identity_and_says_why() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_ca(dir);
    let sink = SmtpSink::start(&dir.join("sink"));
    let mut site = start_site(dir, 1);
    outbound_connector(&site, &sink, "edge1");
    wait_or(
        "edge1 in sync",
        Duration::from_secs(30),
        || in_sync(&site.hub, "edge1"),
        || site.logs(),
    );
    let old = thumbprint_of(dir, "old.pem");

    // The hub can no longer reach the edge's EdgeSync endpoint: the edge
    // comes back listening elsewhere (its SMTP stays where it was).
    let smtp = site.edge_smtps[0].clone();
    site.edges[0].stop().unwrap();
    let moved = free_port().to_string();
    let mut edge = NodeProcess::start_with(
        Role::Edge,
        &dir.join("edge1"),
        &format!("edge1.{DOMAIN}"),
        &["--smtp-bind", &smtp, "--edgesync-bind", &moved],
    )
    .unwrap();
    let new = replace_edge_certificate(dir, &edge, 1, "ca");
    let shown = cert(&edge, &new);
    assert_eq!(shown["rotation"], "offered", "{shown}");
    assert!(
        shown["rotation_note"]
            .as_str()
            .unwrap()
            .contains("waiting for a hub"),
        "{shown}"
    );
    let status = edge.json(&["edgesync", "test"])[0].clone();
    assert_eq!(status["trust"], "rotation-pending", "{status}");
    assert!(
        status["trust_detail"].as_str().unwrap().contains(&new),
        "{status}"
    );
    assert_eq!(status["edge_certificate"], old.as_str(), "{status}");
    assert!(
        edge.log_text()
            .contains("offered to the organisation's peers before it is presented")
    );
    // The certificate the hubs trust cannot be removed while the offer waits.
    let err = edge.fails(&["cert", "remove", "--thumbprint", &old]);
    assert!(err.contains("the organisation's peers trust"), "{err}");

    // Mail keeps flowing both ways on the old identity.
    site.edges[0] = edge;
    mail_both_ways(&site, &sink, 0, "while the offer waits");
    assert_eq!(cert(&site.edges[0], &new)["rotation"], "offered");
    let hub_view = status_of(&site.hub, "edge1").unwrap();
    assert_ne!(hub_view["status"], "in-sync", "{hub_view}");

    // Reachable again: the offer goes through and the edge switches.
    site.edges[0].stop().unwrap();
    edge = NodeProcess::start_with(
        Role::Edge,
        &dir.join("edge1"),
        &format!("edge1.{DOMAIN}"),
        &["--smtp-bind", &smtp, "--edgesync-bind", &site.edge_syncs[0]],
    )
    .unwrap();
    site.edges[0] = edge;
    wait_or(
        "the offer to go through",
        Duration::from_secs(40),
        || cert(&site.edges[0], &new)["rotation"] == "",
        || site.logs(),
    );
    mail_both_ways(&site, &sink, 0, "after the offer");
}

#[test]
fn subscription_files_are_private_single_use_and_of_one_organisation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (edge, _, _) = start_edge(dir, 1);
    let adatum = NodeProcess::start(Role::Hub, &dir.join("hub"), &format!("hub1.{DOMAIN}")).unwrap();
    let other = NodeProcess::start(Role::Hub, &dir.join("other-hub"), "hub1.northwindtraders.com").unwrap();
    let file = dir.join("edge1.sub");
    edge.ok(&["edge-subscription", "new", "--file", file.to_str().unwrap()]);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    adatum.ok(&["edge-subscription", "import", "--file", file.to_str().unwrap()]);
    wait_or(
        "edge1 in sync",
        Duration::from_secs(30),
        || in_sync(&adatum, "edge1"),
        || adatum.log_text(),
    );
    // The same file again, after the subscription was removed: spent.
    adatum.ok(&["edge-subscription", "remove", "edge1"]);
    let err = adatum.fails(&["edge-subscription", "import", "--file", file.to_str().unwrap()]);
    assert!(err.contains("already imported"), "{err}");
    // A new file from an edge that holds adatum's configuration, at
    // another organisation's hub.
    let again = dir.join("edge1-again.sub");
    edge.ok(&["edge-subscription", "new", "--file", again.to_str().unwrap()]);
    let err = other.fails(&["edge-subscription", "import", "--file", again.to_str().unwrap()]);
    assert!(err.contains("another organisation"), "{err}");
    // Its own organisation takes it back.
    adatum.ok(&["edge-subscription", "import", "--file", again.to_str().unwrap()]);
}
