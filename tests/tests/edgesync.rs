//! EdgeSync with real processes: a hub and two edges subscribed through the
//! CLI, configuration changes pushed to both, read-only refusal on the edge,
//! removal, a hub killed and restarted (no snapshot), an edge offline during
//! three changes, and no hub private key in an edge's files. Each role
//! serves only its own verbs: the other role's fail in one line.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role, require_tool, sh};
use serde_json::Value;

fn edge(tmp: &std::path::Path, name: &str) -> NodeProcess {
    let bind = free_port().to_string();
    NodeProcess::start_with(
        Role::Edge,
        &tmp.join(name),
        &format!("{name}.adatum.com"),
        &["--edgesync-bind", &bind],
    )
    .unwrap()
}

fn subscribe(hub: &NodeProcess, edge: &NodeProcess, tmp: &std::path::Path) {
    let file = tmp.join(format!("{}.sub", edge.dir.file_name().unwrap().to_string_lossy()));
    edge.ok(&["edge-subscription", "new", "--file", file.to_str().unwrap()]);
    // It carries the bootstrap secret: the owner's only.
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "subscription file mode {mode:o}");
    // The nodes' data directories hold nothing others can read.
    for dir in [&hub.dir, &edge.dir] {
        let shared = postern_transport::private_files::shared_entries(dir).unwrap();
        assert!(shared.is_empty(), "readable by others: {shared:?}");
    }
    hub.ok(&[
        "edge-subscription",
        "import",
        "--file",
        file.to_str().unwrap(),
        "--site",
        "Vancouver",
    ]);
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn edge_status(edge: &NodeProcess) -> Value {
    edge.json(&["edgesync", "test"])[0].clone()
}

fn hub_status(hub: &NodeProcess, edge: &str) -> Option<Value> {
    hub.json(&["edgesync", "test"])
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["edge"] == edge)
        .cloned()
}

fn in_sync(hub: &NodeProcess, edge: &str) -> bool {
    hub_status(hub, edge).is_some_and(|s| s["status"] == "in-sync" && s["lag"] == 0)
}

#[test]
fn hub_and_two_edges_subscribe_sync_and_survive_restarts() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let metrics_addr = free_port();
    let metrics_bind = metrics_addr.to_string();
    let mut hub = NodeProcess::start_with(
        Role::Hub,
        &dir.join("hub"),
        "van-ex1.adatum.com",
        &["--metrics-bind", &metrics_bind],
    )
    .unwrap();
    // The hub's SMTP certificate comes from openssl, so the test knows its
    // private key and can look for it in the edges' files.
    sh(
        dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout hubkey.pem -out hubcert.pem -days 30 \
           -subj '/CN=van-ex1.adatum.com' -addext 'subjectAltName=DNS:van-ex1.adatum.com' 2>/dev/null
         openssl pkcs8 -topk8 -nocrypt -in hubkey.pem -outform der -out hubkey.der
         cat hubcert.pem hubkey.pem > hub-bundle.pem",
    );
    hub.ok(&[
        "cert",
        "import",
        "--path",
        dir.join("hub-bundle.pem").to_str().unwrap(),
        "--enable-services",
        "smtp",
    ]);
    let mut edge1 = edge(dir, "edge1");
    let edge2 = edge(dir, "edge2");
    hub.ok(&["accepted-domain", "new", "adatum.com"]);
    hub.ok(&["mailbox", "new", "Kim@adatum.com"]);
    // A standalone edge may have local objects; subscribing replaces them.
    edge1.ok(&[
        "send-connector",
        "new",
        "Local",
        "--address-spaces",
        "*;1",
        "--smart-hosts",
        "relay.example",
    ]);
    assert!(edge1.cli(&["send-connector", "get", "Local"]).status.success());
    // A subscription file changed on the way is refused.
    let file = dir.join("edge2.sub");
    edge2.ok(&["edge-subscription", "new", "--file", file.to_str().unwrap()]);
    let forged = std::fs::read_to_string(&file)
        .unwrap()
        .replace("edge2.adatum.com", "evil.adatum.com");
    std::fs::write(dir.join("forged.sub"), forged).unwrap();
    let err = hub.fails(&[
        "edge-subscription",
        "import",
        "--file",
        dir.join("forged.sub").to_str().unwrap(),
    ]);
    assert!(err.contains("signature does not verify"), "{err}");
    let err = edge1.fails(&["edge-subscription", "import", "--file", file.to_str().unwrap()]);
    assert!(
        err.contains("`postern edge-subscription import` is served by hubs; edge1 is an edge"),
        "{err}"
    );
    subscribe(&hub, &edge1, dir);
    subscribe(&hub, &edge2, dir);
    wait_for("both edges in sync", || {
        in_sync(&hub, "edge1") && in_sync(&hub, "edge2")
    });
    // The same figures as Prometheus metrics on the hub's metrics address.
    wait_for("edgesync metrics", || {
        let text = scrape(metrics_addr);
        text.contains("postern_edgesync_lag{edge=\"edge1\"} 0")
            && text.contains("postern_edgesync_in_sync{edge=\"edge2\"} 1")
    });

    let err = edge1.fails(&["send-connector", "get", "Local"]);
    assert!(err.contains("no send-connector"), "{err}");
    // The subscription made the site's two EdgeSync connectors, on the edges too.
    let internet = edge1.json(&["send-connector", "get", "EdgeSync - Vancouver to Internet"]);
    assert_eq!(internet["address_spaces"], serde_json::json!(["*;100"]));
    assert_eq!(internet["domain_secure_enabled"], true);
    assert_eq!(internet["source_edges"], serde_json::json!(["edge1", "edge2"]));
    let inbound = edge2.json(&["send-connector", "get", "EdgeSync - Inbound to Vancouver"]);
    assert_eq!(inbound["address_spaces"], serde_json::json!(["adatum.com;1"]));
    assert_eq!(inbound["dns_routing_enabled"], false);
    // Mailboxes reach edges as hashes only.
    let boxes = edge1.json(&["mailbox", "list"]);
    assert_eq!(boxes.as_array().unwrap().len(), 1);
    assert!(!boxes.to_string().contains("kim"), "{boxes}");

    // The seed's domain security settings, changed on the hub, reach both edges.
    hub.ok(&[
        "transport-config",
        "set",
        "--tls-send-domain-secure-list",
        "northwindtraders.com",
        "--tls-receive-domain-secure-list",
        "northwindtraders.com",
    ]);
    hub.ok(&[
        "send-connector",
        "new",
        "Internet",
        "--address-spaces",
        "*;100",
        "--dns-routing-enabled",
    ]);
    hub.ok(&[
        "send-connector",
        "set",
        "Internet",
        "--domain-secure-enabled",
        "--protocol-logging-level",
        "verbose",
    ]);
    for e in [&edge1, &edge2] {
        wait_for("config on the edge", || {
            let t = e.json(&["transport-config", "get"]);
            let c = e.cli(&["send-connector", "get", "Internet", "--json"]);
            t["tls_send_domain_secure_list"] == serde_json::json!(["northwindtraders.com"])
                && t["tls_receive_domain_secure_list"] == serde_json::json!(["northwindtraders.com"])
                && c.status.success()
                && serde_json::from_slice::<Value>(&c.stdout).unwrap()["domain_secure_enabled"] == true
        });
    }
    let shown = edge1.ok(&["send-connector", "get", "Internet"]);
    for field in ["Name", "DNSRoutingEnabled", "Fqdn", "DomainSecureEnabled"] {
        assert!(shown.contains(field), "{field} missing from:\n{shown}");
    }

    // Replicated objects are read-only on a subscribed edge.
    let err = edge1.fails(&["send-connector", "set", "Internet", "--require-tls"]);
    assert!(err.contains("managed by EdgeSync; change it on a hub"), "{err}");
    let err = edge1.fails(&["transport-config", "set", "--max-recipients", "5"]);
    assert!(err.contains("managed by EdgeSync"), "{err}");

    // Hub killed mid-stream and restarted: the edges resume without a snapshot.
    let snapshots_before = edge_status(&edge1)["snapshots_applied"].as_u64().unwrap();
    hub.kill9();
    hub.start_again().unwrap();
    hub.ok(&[
        "accepted-domain",
        "new",
        "contoso.com",
        "--type",
        "internal-relay",
    ]);
    wait_for("resume after hub restart", || {
        in_sync(&hub, "edge1") && in_sync(&hub, "edge2")
    });
    assert_eq!(
        hub_status(&hub, "edge1").unwrap()["snapshots_sent"],
        0,
        "the restarted hub sent a snapshot"
    );
    assert_eq!(
        edge_status(&edge1)["snapshots_applied"].as_u64().unwrap(),
        snapshots_before
    );
    let version = hub_status(&hub, "edge1").unwrap()["hub_version"]
        .as_u64()
        .unwrap();
    assert_eq!(edge_status(&edge2)["edge_version"].as_u64().unwrap(), version);

    // An edge offline during three changes catches up when it returns.
    edge1.stop().unwrap();
    hub.ok(&["accepted-domain", "new", "fabrikam.com"]);
    hub.ok(&["mailbox", "new", "lee@adatum.com"]);
    hub.ok(&["send-connector", "set", "Internet", "--port", "2525"]);
    wait_for("hub sees edge1 down", || {
        hub_status(&hub, "edge1").is_some_and(|s| s["status"] != "in-sync")
    });
    edge1.start_again().unwrap();
    wait_for("edge1 catches up", || in_sync(&hub, "edge1"));
    assert_eq!(edge1.json(&["send-connector", "get", "Internet"])["port"], 2525);
    assert_eq!(edge1.json(&["mailbox", "list"]).as_array().unwrap().len(), 2);
    assert_eq!(
        edge_status(&edge1)["snapshots_applied"].as_u64().unwrap(),
        snapshots_before,
        "caught up by deltas"
    );

    // Removal: the hub stops syncing the edge and drops it from the connectors.
    hub.ok(&["edge-subscription", "remove", "edge2"]);
    assert!(hub_status(&hub, "edge2").is_none());
    wait_for("edge2 out of the connectors on edge1", || {
        edge1.json(&["send-connector", "get", "EdgeSync - Vancouver to Internet"])["source_edges"]
            == serde_json::json!(["edge1"])
    });
    let edge2_version = edge_status(&edge2)["edge_version"].as_u64().unwrap();
    hub.ok(&["accepted-domain", "new", "tailspintoys.com"]);
    wait_for("edge1 follows", || in_sync(&hub, "edge1"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        edge_status(&edge2)["edge_version"].as_u64().unwrap(),
        edge2_version,
        "a removed edge still syncs"
    );
    let subs = hub.json(&["edge-subscription", "list"]);
    assert_eq!(subs.as_array().unwrap().len(), 1);

    // No hub private key in any edge file (the hub's own store has it, so
    // the search can find it).
    let key = std::fs::read(dir.join("hubkey.der")).unwrap();
    let needle_raw = &key[key.len() / 2..key.len() / 2 + 48];
    let needle_json = needle_raw
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let contains = |root: &std::path::Path| -> bool {
        walk(root).iter().any(|f| {
            let data = std::fs::read(f).unwrap_or_default();
            data.windows(needle_raw.len()).any(|w| w == needle_raw)
                || String::from_utf8_lossy(&data).contains(&needle_json)
        })
    };
    hub.stop().unwrap();
    assert!(
        contains(&dir.join("hub")),
        "the search cannot find the key where it is"
    );
    for name in ["edge1", "edge2"] {
        assert!(
            !contains(&dir.join(name)),
            "{name}'s files hold hub private-key bytes"
        );
    }
}

/// Runs a verb the node's role does not serve: exit status 1 and one line
/// naming the role that serves it and what the node is.
fn refused_by_role(node: &NodeProcess, args: &[&str], expected: &str) {
    let out = node.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "postern {args:?}: {stderr}");
    assert_eq!(stderr, format!("error: {expected}\n"), "postern {args:?}");
    assert!(
        out.stdout.is_empty(),
        "postern {args:?} printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn each_role_refuses_the_other_roles_verbs_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hub = NodeProcess::start(Role::Hub, &dir.join("hub"), "van-ex1.adatum.com").unwrap();
    let edge = edge(dir, "edge1");
    let hub_name = hub.json(&["node-info"])["name"].as_str().unwrap().to_owned();
    let edge_name = edge.json(&["node-info"])["name"].as_str().unwrap().to_owned();
    let file = dir.join("edge1.sub");
    let file = file.to_str().unwrap();

    // The hubs' verbs on an edge.
    std::fs::write(file, "{}").unwrap();
    for (args, verb) in [
        (
            &["edge-subscription", "import", "--file", file][..],
            "edge-subscription import",
        ),
        (&["edge-subscription", "list"][..], "edge-subscription list"),
        (
            &["edge-subscription", "remove", "edge1"][..],
            "edge-subscription remove",
        ),
        (&["edgesync", "start"][..], "edgesync start"),
        (&["dkim", "list"][..], "dkim list"),
        (&["console", "token"][..], "console token"),
    ] {
        refused_by_role(
            &edge,
            args,
            &format!("`postern {verb}` is served by hubs; {edge_name} is an edge"),
        );
    }

    // The edge's verb on a hub; it writes no file.
    std::fs::remove_file(file).unwrap();
    refused_by_role(
        &hub,
        &["edge-subscription", "new", "--file", file],
        &format!("`postern edge-subscription new` is served by edges; {hub_name} is a hub"),
    );
    assert!(!std::path::Path::new(file).exists());

    // What both roles serve still answers on both, and each role's own
    // verbs work: the edge writes its file, the hub imports and lists it.
    assert_eq!(edge_status(&edge)["status"], "not-subscribed");
    assert!(hub.json(&["edgesync", "test"]).as_array().unwrap().is_empty());
    edge.ok(&["edge-subscription", "new", "--file", file]);
    hub.ok(&["edge-subscription", "import", "--file", file]);
    let subscribed = hub.json(&["edge-subscription", "list"]);
    assert_eq!(subscribed[0]["name"], edge_name.as_str(), "{subscribed}");
    hub.ok(&["edgesync", "start"]);
}

fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
