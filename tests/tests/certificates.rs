//! Certificate management against a running node, checked with openssl:
//! requests verify and come back signed, thumbprints agree, PKCS#12 in both
//! encodings imports, bad input is refused and changes nothing, and a
//! restarted node keeps its identity, certificates and pending requests.

use postern_tests::{NodeProcess, Role, openssl_thumbprint, require_tool, sh};
use serde_json::Value;

fn hub(tmp: &tempfile::TempDir) -> NodeProcess {
    NodeProcess::start(Role::Hub, &tmp.path().join("hub"), "van-ex1.adatum.com").expect("hub starts")
}

/// A throw-away CA made by openssl in `dir`: ca.pem / ca.key.
fn make_ca(dir: &std::path::Path) {
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
         -subj '/CN=Adatum Test Root CA' 2>/dev/null",
    );
}

fn find<'a>(list: &'a Value, thumbprint: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|c| c["thumbprint"] == thumbprint)
}

#[test]
fn setup_makes_a_self_signed_smtp_certificate_for_the_fqdn() {
    let tmp = tempfile::tempdir().unwrap();
    let node = hub(&tmp);
    let id = node.json(&["node-info"]);
    assert_eq!(id["name"], "van-ex1");
    assert_eq!(id["fqdn"], "van-ex1.adatum.com");
    assert_eq!(id["role"], "hub");
    let list = node.json(&["cert", "list"]);
    let certs = list.as_array().unwrap();
    assert_eq!(certs.len(), 1);
    let c = &certs[0];
    assert_eq!(c["domains"], serde_json::json!(["van-ex1.adatum.com"]));
    assert_eq!(c["services"], serde_json::json!(["smtp"]));
    assert_eq!(c["self_signed"], true);
    assert_eq!(c["status"], "valid");
    assert_eq!(c["key_algorithm"], "rsa-2048");
    // Five years, as Exchange Setup makes it.
    let not_after = c["not_after"].as_str().unwrap();
    let year: i32 = not_after[..4].parse().unwrap();
    let created: i32 = id["created"].as_str().unwrap()[..4].parse().unwrap();
    assert_eq!(year - created, 5, "{not_after}");
    // The admin socket is private to the node's user.
    let mode = std::fs::metadata(node.dir.join("admin.sock")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}

#[test]
fn request_verifies_with_openssl_and_the_issued_certificate_binds_to_its_key() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let node = hub(&tmp);
    make_ca(dir);

    // The seed's request on VAN-EX2, both DN spellings.
    let req_path = dir.join("van-ex2.req");
    let pending_tp = node
        .ok(&[
            "cert",
            "new",
            "--generate-request",
            "--friendly-name",
            "Internet certificate for VAN-EX2",
            "--subject-name",
            "DC=com,DC=Adatum,CN=VAN-EX2.adatum.com",
            "--domain-name",
            "mail.adatum.com",
            "--path",
            req_path.to_str().unwrap(),
        ])
        .trim()
        .to_owned();
    let stdout_pem = node.ok(&[
        "cert",
        "new",
        "--generate-request",
        "--subject-name",
        "c=us, o=Example Corp, CN=mail.example.com",
        "--domain-name",
        "mail.example.com",
    ]);
    assert!(
        stdout_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{stdout_pem}"
    );
    std::fs::write(dir.join("example.req"), &stdout_pem).unwrap();

    let text = sh(dir, "openssl req -in van-ex2.req -verify -noout -text 2>&1");
    assert!(
        text.contains("verify OK") || text.contains("self-signature ok"),
        "{text}"
    );
    assert!(
        text.contains("DC = com, DC = Adatum, CN = VAN-EX2.adatum.com"),
        "{text}"
    );
    assert!(text.contains("DNS:mail.adatum.com"), "{text}");
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    let text = sh(dir, "openssl req -in example.req -verify -noout -subject 2>&1");
    assert!(
        text.contains("C = us, O = Example Corp, CN = mail.example.com"),
        "{text}"
    );

    let list = node.json(&["cert", "list"]);
    let pending = find(&list, &pending_tp).expect("pending request listed");
    assert_eq!(pending["status"], "pending-request");
    assert_eq!(pending["friendly_name"], "Internet certificate for VAN-EX2");

    // The CA signs it (copying the requested SAN), and it imports back.
    sh(
        dir,
        "openssl x509 -req -in van-ex2.req -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
         -copy_extensions copy -out van-ex2.pem 2>/dev/null",
    );
    let tp = node.ok(&[
        "cert",
        "import",
        "--path",
        dir.join("van-ex2.pem").to_str().unwrap(),
    ]);
    let tp = tp.trim();
    assert_eq!(tp, openssl_thumbprint(dir, "van-ex2.pem"));
    assert_eq!(tp.len(), 40);
    assert!(tp.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));

    let cert = node.json(&["cert", "get", "--thumbprint", tp]);
    assert_eq!(cert["status"], "valid");
    assert_eq!(cert["has_private_key"], true);
    assert_eq!(cert["self_signed"], false);
    assert_eq!(cert["friendly_name"], "Internet certificate for VAN-EX2");
    assert_eq!(cert["issuer"], "CN=Adatum Test Root CA");
    assert_eq!(cert["domains"], serde_json::json!(["mail.adatum.com"]));
    let list = node.json(&["cert", "list"]);
    assert!(
        find(&list, &pending_tp).is_none(),
        "the pending request is consumed by the import"
    );

    // Enable-ExchangeCertificate -Services SMTP.
    node.ok(&["cert", "enable", "--thumbprint", tp, "--services", "smtp"]);
    let cert = node.json(&["cert", "get", "--thumbprint", tp]);
    assert_eq!(cert["services"], serde_json::json!(["smtp"]));

    // The same certificate as DER imports only once.
    sh(dir, "openssl x509 -in van-ex2.pem -outform der -out van-ex2.der");
    let err = node.fails(&[
        "cert",
        "import",
        "--path",
        dir.join("van-ex2.der").to_str().unwrap(),
    ]);
    assert!(err.contains("already installed"), "{err}");
}

#[test]
fn der_certificate_binds_to_a_pending_ecdsa_request() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let node = hub(&tmp);
    make_ca(dir);
    let req = dir.join("ec.req");
    node.ok(&[
        "cert",
        "new",
        "--generate-request",
        "--key-type",
        "ecdsa-p256",
        "--subject-name",
        "CN=ec.adatum.com",
        "--path",
        req.to_str().unwrap(),
    ]);
    sh(
        dir,
        "openssl req -in ec.req -verify -noout 2>/dev/null && \
         openssl x509 -req -in ec.req -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
         -copy_extensions copy -outform der -out ec.der 2>/dev/null",
    );
    let tp = node.ok(&[
        "cert",
        "import",
        "--path",
        dir.join("ec.der").to_str().unwrap(),
        "--enable-services",
        "smtp",
    ]);
    let cert = node.json(&["cert", "get", "--thumbprint", tp.trim()]);
    assert_eq!(cert["has_private_key"], true);
    assert_eq!(cert["key_algorithm"], "ecdsa-256");
    assert_eq!(cert["services"], serde_json::json!(["smtp"]));
    assert_eq!(cert["domains"], serde_json::json!(["ec.adatum.com"]));
}

#[test]
fn pkcs12_in_modern_and_legacy_encodings_imports() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let node = hub(&tmp);
    make_ca(dir);
    sh(
        dir,
        "openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj '/CN=van-ex2.adatum.com' 2>/dev/null
         printf 'subjectAltName=DNS:mail.adatum.com,DNS:van-ex2.adatum.com\\n' > san.cnf
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile san.cnf -out leaf.pem 2>/dev/null
         printf 'P@ss word\\n' > pw.txt
         openssl pkcs12 -export -in leaf.pem -inkey leaf.key -certfile ca.pem -out modern.pfx -passout 'pass:P@ss word'
         openssl pkcs12 -export -legacy -descert -in leaf.pem -inkey leaf.key -out legacy.pfx -passout 'pass:P@ss word'
         openssl pkcs12 -export -legacy -in leaf.pem -inkey leaf.key -out rc2.pfx -passout 'pass:P@ss word'
         openssl pkcs12 -export -in leaf.pem -inkey leaf.key -out empty.pfx -passout pass:
         printf 'wrong\\n' > wrong.txt",
    );
    let expected = openssl_thumbprint(dir, "leaf.pem");
    let pw = dir.join("pw.txt");
    for file in ["modern.pfx", "legacy.pfx", "rc2.pfx"] {
        let tp = node.ok(&[
            "cert",
            "import",
            "--path",
            dir.join(file).to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
            "--enable-services",
            "smtp",
        ]);
        assert_eq!(tp.trim(), expected, "{file}");
        let cert = node.json(&["cert", "get", "--thumbprint", &expected]);
        assert_eq!(cert["has_private_key"], true, "{file}");
        assert_eq!(cert["services"], serde_json::json!(["smtp"]), "{file}");
        let chain = if file == "modern.pfx" { 1 } else { 0 };
        assert_eq!(cert["chain_length"], chain, "{file}");
        node.ok(&["cert", "remove", "--thumbprint", &expected]);
    }
    let tp = node.ok(&[
        "cert",
        "import",
        "--path",
        dir.join("empty.pfx").to_str().unwrap(),
    ]);
    assert_eq!(tp.trim(), expected);
    // PEM with the key inline.
    sh(dir, "cat leaf.pem leaf.key ca.pem > bundle.pem");
    node.ok(&["cert", "remove", "--thumbprint", &expected]);
    let tp = node.ok(&[
        "cert",
        "import",
        "--path",
        dir.join("bundle.pem").to_str().unwrap(),
    ]);
    assert_eq!(tp.trim(), expected);
    assert_eq!(
        node.json(&["cert", "get", "--thumbprint", &expected])["chain_length"],
        1
    );
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let node = hub(&tmp);
    make_ca(dir);
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -days 30 -subj '/CN=x.adatum.com' 2>/dev/null
         openssl pkcs12 -export -in c.pem -inkey k.pem -out x.pfx -passout pass:right
         printf 'wrong\\n' > wrong.txt
         echo 'this is not a certificate' > notes.txt
         openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out lonely.pem -days 30 -subj '/CN=lonely' 2>/dev/null
         cat c.pem other.key > mismatch.pem",
    );
    postern_tests::openssl_issue_dated(
        dir,
        "expired",
        "old.adatum.com",
        "20200101000000Z",
        "20210101000000Z",
    );
    sh(dir, "cat expired.pem expired.key > expired-bundle.pem");
    let before = node.json(&["cert", "list"]);
    let p = |f: &str| dir.join(f).to_str().unwrap().to_owned();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "cert".into(),
                "import".into(),
                "--path".into(),
                p("x.pfx"),
                "--password-file".into(),
                p("wrong.txt"),
            ],
            "wrong password",
        ),
        (
            vec!["cert".into(), "import".into(), "--path".into(), p("notes.txt")],
            "not a certificate",
        ),
        (
            vec!["cert".into(), "import".into(), "--path".into(), p("lonely.pem")],
            "matches no pending request",
        ),
        (
            vec!["cert".into(), "import".into(), "--path".into(), p("mismatch.pem")],
            "does not belong",
        ),
        (
            vec![
                "cert".into(),
                "import".into(),
                "--path".into(),
                p("expired-bundle.pem"),
                "--enable-services".into(),
                "smtp".into(),
            ],
            "expired",
        ),
        (
            vec!["cert".into(), "import".into(), "--path".into(), p("missing.pem")],
            "cannot read",
        ),
        (
            vec![
                "cert".into(),
                "get".into(),
                "--thumbprint".into(),
                "00".repeat(20),
            ],
            "no certificate or pending request has thumbprint",
        ),
        (
            vec![
                "cert".into(),
                "enable".into(),
                "--thumbprint".into(),
                "AB".repeat(20),
                "--services".into(),
                "smtp".into(),
            ],
            "no certificate or pending request has thumbprint",
        ),
        (
            vec!["cert".into(), "get".into(), "--thumbprint".into(), "xyz".into()],
            "not a thumbprint",
        ),
        (
            vec![
                "cert".into(),
                "new".into(),
                "--subject-name".into(),
                "CN mail.example.com".into(),
            ],
            "not of the form TYPE=value",
        ),
        (
            vec![
                "cert".into(),
                "new".into(),
                "--subject-name".into(),
                "Q=1, CN=a.example.com".into(),
            ],
            "not supported",
        ),
        (
            vec![
                "cert".into(),
                "new".into(),
                "--generate-request".into(),
                "--key-size".into(),
                "1024".into(),
                "--subject-name".into(),
                "c=us, o=Example Corp, CN=mail.example.com".into(),
            ],
            "minimum is 2048",
        ),
        (
            vec![
                "cert".into(),
                "new".into(),
                "--subject-name".into(),
                "CN=a.example.com".into(),
                "--services".into(),
                "iis".into(),
            ],
            "unknown service",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = node.fails(&args);
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err:?}"
        );
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one-line error for {args:?}: {err:?}"
        );
        assert!(err.starts_with("error: "), "{err}");
    }
    assert_eq!(node.json(&["cert", "list"]), before, "the store is unchanged");
}

#[test]
fn the_only_smtp_certificate_cannot_be_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let node = hub(&tmp);
    let list = node.json(&["cert", "list"]);
    let setup_tp = list[0]["thumbprint"].as_str().unwrap().to_owned();
    let err = node.fails(&["cert", "remove", "--thumbprint", &setup_tp]);
    assert!(err.contains("only valid certificate enabled for SMTP"), "{err}");

    let new_tp = node.ok(&[
        "cert",
        "new",
        "--subject-name",
        "CN=mail.adatum.com",
        "--key-type",
        "ecdsa-p256",
    ]);
    let new_tp = new_tp.trim();
    assert_eq!(
        node.json(&["cert", "get", "--thumbprint", new_tp])["services"],
        serde_json::json!([])
    );
    node.ok(&["cert", "enable", "--thumbprint", new_tp, "--services", "smtp"]);
    node.ok(&["cert", "remove", "--thumbprint", &setup_tp]);
    let err = node.fails(&["cert", "remove", "--thumbprint", new_tp]);
    assert!(err.contains("only valid certificate"), "{err}");
    assert_eq!(node.json(&["cert", "list"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_restarted_node_keeps_identity_certificates_and_pending_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = hub(&tmp);
    node.ok(&[
        "cert",
        "new",
        "--generate-request",
        "--subject-name",
        "CN=mail.adatum.com",
    ]);
    node.ok(&[
        "cert",
        "new",
        "--subject-name",
        "CN=other.adatum.com",
        "--key-size",
        "3072",
    ]);
    // The node's identity; how often its configuration was compiled
    // (`config_generation`) counts this run only and is not compared.
    let identity = |info: serde_json::Value| {
        ["name", "fqdn", "role", "created", "data_dir"].map(|field| info[field].clone())
    };
    let id = identity(node.json(&["node-info"]));
    let certs = node.json(&["cert", "list"]);
    assert_eq!(certs.as_array().unwrap().len(), 3);

    node.restart().unwrap();
    assert_eq!(identity(node.json(&["node-info"])), id);
    assert_eq!(node.json(&["cert", "list"]), certs);
    assert!(node.log_text().contains("hub node opened"), "{}", node.log_text());

    // A second node cannot open the same data directory while the first runs.
    let second = std::process::Command::new(postern_tests::postern_bin())
        .args(["hub", "run", "--data-dir"])
        .arg(&node.dir)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("another postern process"), "{err}");
    assert_eq!(
        identity(node.json(&["node-info"])),
        id,
        "the first node still serves"
    );
}

#[test]
fn the_cli_says_where_no_node_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(postern_tests::postern_bin())
        .args(["--node"])
        .arg(tmp.path().join("nothing"))
        .args(["cert", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no node is running in"), "{err}");
}
