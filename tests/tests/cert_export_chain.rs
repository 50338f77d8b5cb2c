//! Export and chains (issue 12), against a running node and OpenSSL:
//! PKCS#12 export round-trips through `openssl pkcs12`, a non-exportable
//! key is refused, `--public` writes the certificate alone, exported files
//! are 0600; a `.p7b` from `openssl crl2pkcs7` imports with its chain, and
//! an intermediate imported after its certificate completes the chain that
//! STARTTLS sends (`openssl s_client -showcerts`).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role, openssl_thumbprint, require_tool, sh};
use serde_json::Value;

const FQDN: &str = "edge1.adatum.com";

fn node(dir: &Path) -> (NodeProcess, String) {
    let smtp = free_port().to_string();
    let node =
        NodeProcess::start_with(Role::Edge, &dir.join("edge1"), FQDN, &["--smtp-bind", &smtp]).unwrap();
    (node, smtp)
}

fn cert(node: &NodeProcess, thumbprint: &str) -> Value {
    node.json(&["cert", "get", "--thumbprint", thumbprint])
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A root and an intermediate CA.
fn make_cas(dir: &Path) {
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout root.key -out root.pem -days 30 \
           -subj '/CN=Adatum Test Root' -addext 'basicConstraints=critical,CA:TRUE' \
           -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
         openssl req -newkey rsa:2048 -nodes -keyout inter.key -out inter.csr -subj '/CN=Adatum Issuing CA 1' 2>/dev/null
         printf 'basicConstraints=critical,CA:TRUE\\nkeyUsage=critical,keyCertSign,cRLSign\\n' > inter.ext
         openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -CAcreateserial -days 30 -extfile inter.ext -out inter.pem 2>/dev/null",
    );
}

/// `cert new --generate-request` on the node, signed by the intermediate.
fn issue(dir: &Path, node: &NodeProcess, tag: &str) -> String {
    let csr = dir.join(format!("{tag}.csr"));
    node.ok(&[
        "cert",
        "new",
        "--generate-request",
        "--subject-name",
        &format!("CN={FQDN}"),
        "--domain-name",
        FQDN,
        "--path",
        csr.to_str().unwrap(),
    ]);
    sh(
        dir,
        &format!(
            "printf 'subjectAltName=DNS:{FQDN}\\nextendedKeyUsage=serverAuth,clientAuth\\nbasicConstraints=CA:FALSE\\n' > {tag}.ext
             openssl x509 -req -in {tag}.csr -CA inter.pem -CAkey inter.key -CAcreateserial -days 20 -extfile {tag}.ext -out {tag}.pem 2>/dev/null"
        ),
    );
    openssl_thumbprint(dir, &format!("{tag}.pem"))
}

/// The certificates STARTTLS sends, as `openssl s_client -showcerts` prints them.
fn handshake_chain(smtp: &str) -> usize {
    let out = Command::new(require_tool("openssl"))
        .args([
            "s_client",
            "-starttls",
            "smtp",
            "-showcerts",
            "-servername",
            FQDN,
            "-connect",
            smtp,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("CN={FQDN}")) || text.contains(&format!("CN = {FQDN}")),
        "{text}"
    );
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

#[test]
fn export_round_trips_through_openssl_and_non_exportable_keys_stay() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (node, _) = node(dir);
    std::fs::write(dir.join("pass"), "Secret-Pfx-1\n").unwrap();
    let pass = dir.join("pass");

    let t = node
        .ok(&[
            "cert",
            "new",
            "--subject-name",
            &format!("CN={FQDN}"),
            "--domain-name",
            FQDN,
            "--private-key-exportable",
        ])
        .trim()
        .to_owned();
    assert_eq!(cert(&node, &t)["exportable"], true);
    let pfx = dir.join("out.pfx");
    node.ok(&[
        "cert",
        "export",
        "--thumbprint",
        &t,
        "--path",
        pfx.to_str().unwrap(),
        "--password-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(mode(&pfx), 0o600);
    let info = sh(
        dir,
        "openssl pkcs12 -info -in out.pfx -passin file:pass -noout 2>&1",
    );
    assert!(info.contains("AES-256-CBC"), "{info}");
    sh(
        dir,
        "openssl pkcs12 -in out.pfx -passin file:pass -nodes -out back.pem 2>/dev/null",
    );
    let back = std::fs::read_to_string(dir.join("back.pem")).unwrap();
    assert!(back.contains("PRIVATE KEY"), "{back}");
    assert_eq!(openssl_thumbprint(dir, "back.pem"), t);
    // The key in the file belongs to the certificate.
    let pub_of_key = sh(dir, "openssl pkey -in back.pem -pubout");
    let pub_of_cert = sh(dir, "openssl x509 -in back.pem -noout -pubkey");
    assert_eq!(pub_of_key, pub_of_cert);
    // And the file imports again elsewhere, as Windows would take it.
    let (other, _) = node_in(dir, "other");
    let again = other
        .ok(&[
            "cert",
            "import",
            "--path",
            pfx.to_str().unwrap(),
            "--password-file",
            pass.to_str().unwrap(),
        ])
        .trim()
        .to_owned();
    assert_eq!(again, t);
    assert_eq!(cert(&other, &t)["has_private_key"], true);

    // The public certificate alone, for a partner's trusted roots.
    let public = dir.join("public.pem");
    node.ok(&[
        "cert",
        "export",
        "--thumbprint",
        &t,
        "--path",
        public.to_str().unwrap(),
        "--public",
    ]);
    assert_eq!(mode(&public), 0o600);
    let text = std::fs::read_to_string(&public).unwrap();
    assert!(
        text.contains("BEGIN CERTIFICATE") && !text.contains("PRIVATE KEY"),
        "{text}"
    );
    assert_eq!(openssl_thumbprint(dir, "public.pem"), t);

    // The setup certificate's key was not made exportable: refused, no file.
    let setup = node
        .json(&["cert", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["thumbprint"] != t.as_str())
        .unwrap()["thumbprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(cert(&node, &setup)["exportable"], false);
    let refused = dir.join("refused.pfx");
    let err = node.fails(&[
        "cert",
        "export",
        "--thumbprint",
        &setup,
        "--path",
        refused.to_str().unwrap(),
        "--password-file",
        pass.to_str().unwrap(),
    ]);
    assert!(err.contains("not exportable"), "{err}");
    assert!(!refused.exists());
    // An existing file is never overwritten.
    let err = node.fails(&[
        "cert",
        "export",
        "--thumbprint",
        &t,
        "--path",
        public.to_str().unwrap(),
        "--public",
    ]);
    assert!(err.contains("must not exist"), "{err}");
}

fn node_in(dir: &Path, name: &str) -> (NodeProcess, String) {
    let smtp = free_port().to_string();
    let node = NodeProcess::start_with(Role::Edge, &dir.join(name), FQDN, &["--smtp-bind", &smtp]).unwrap();
    (node, smtp)
}

#[test]
fn pkcs7_bundles_import_and_a_later_intermediate_completes_the_handshake_chain() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_cas(dir);
    let (node, smtp) = node(dir);
    // Before: the self-signed setup certificate, alone.
    assert_eq!(handshake_chain(&smtp), 1);

    // A .p7b as Windows CAs hand it out: leaf and intermediate, any order.
    let a = issue(dir, &node, "a");
    sh(
        dir,
        "openssl crl2pkcs7 -nocrl -certfile inter.pem -certfile a.pem -out a.p7b",
    );
    let imported = node.ok(&[
        "cert",
        "import",
        "--path",
        dir.join("a.p7b").to_str().unwrap(),
        "--enable-services",
        "smtp",
    ]);
    assert_eq!(imported.trim(), a);
    let shown = cert(&node, &a);
    assert_eq!(shown["chain_length"], 1, "{shown}");
    assert_eq!(shown["has_private_key"], true, "{shown}");
    assert_eq!(handshake_chain(&smtp), 2);
    // DER .p7c too (the same bundle, binary).
    sh(dir, "openssl pkcs7 -in a.p7b -outform DER -out a.p7c");
    let err = node.fails(&["cert", "import", "--path", dir.join("a.p7c").to_str().unwrap()]);
    assert!(err.contains("already installed"), "{err}");
    node.ok(&["cert", "remove", "--thumbprint", &a]);

    // The leaf alone first; the intermediate later completes its chain.
    let b = issue(dir, &node, "b");
    node.ok(&[
        "cert",
        "import",
        "--path",
        dir.join("b.pem").to_str().unwrap(),
        "--enable-services",
        "smtp",
    ]);
    assert_eq!(cert(&node, &b)["chain_length"], 0);
    assert_eq!(handshake_chain(&smtp), 1);
    let completed = node.ok(&[
        "cert",
        "import",
        "--path",
        dir.join("inter.pem").to_str().unwrap(),
    ]);
    assert_eq!(completed.trim(), b);
    assert_eq!(cert(&node, &b)["chain_length"], 1);
    assert_eq!(handshake_chain(&smtp), 2);
    // Then the root, which ends it; a second time changes nothing.
    node.ok(&["cert", "import", "--path", dir.join("root.pem").to_str().unwrap()]);
    assert_eq!(cert(&node, &b)["chain_length"], 2);
    let err = node.fails(&["cert", "import", "--path", dir.join("root.pem").to_str().unwrap()]);
    assert!(
        err.contains("no pending request") || err.contains("already"),
        "{err}"
    );
    // The chain verifies with OpenSSL against the root alone.
    let out = Command::new(require_tool("openssl"))
        .args([
            "s_client",
            "-starttls",
            "smtp",
            "-CAfile",
            dir.join("root.pem").to_str().unwrap(),
            "-verify_return_error",
            "-servername",
            FQDN,
            "-connect",
            &smtp,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
}

#[test]
fn expiry_shows_in_days_left_the_metric_and_a_warning() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let metrics = free_port();
    let node = NodeProcess::start_with(
        Role::Edge,
        &dir.join("edge1"),
        FQDN,
        &[
            "--smtp-bind",
            &free_port().to_string(),
            "--metrics-bind",
            &metrics.to_string(),
        ],
    )
    .unwrap();
    sh(
        dir,
        &format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -keyout soon.key -out soon.pem -days 10 \\
               -subj '/CN={FQDN}' -addext 'subjectAltName=DNS:{FQDN}' 2>/dev/null
             cat soon.pem soon.key > soon-bundle.pem"
        ),
    );
    let t = node
        .ok(&[
            "cert",
            "import",
            "--path",
            dir.join("soon-bundle.pem").to_str().unwrap(),
            "--enable-services",
            "smtp",
        ])
        .trim()
        .to_owned();
    let days = cert(&node, &t)["days_left"].as_i64().unwrap();
    assert!((9..=10).contains(&days), "{days}");
    let listed = node.ok(&["cert", "list"]);
    assert!(listed.contains("DaysLeft"), "{listed}");
    let series = format!("postern_certificate_expiry_seconds{{thumbprint=\"{t}\",services=\"smtp\"}} ");
    let mut value = 0u64;
    wait("the expiry metric", || {
        let text = postern_tests::lab::scrape(metrics);
        value = text
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        value > 0
    });
    assert!((8 * 86400..=10 * 86400).contains(&value), "{value}");
    wait("the expiry warning", || {
        let log = node.log_text();
        log.contains("certificate expires within 30 days") && log.contains(&t)
    });
    // The long-lived setup certificate is measured but not warned about.
    let log = node.log_text();
    assert_eq!(
        log.matches("certificate expires within 30 days").count(),
        1,
        "{log}"
    );
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
