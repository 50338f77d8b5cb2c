//! The compiled configuration, seen from outside: settings changed on a
//! hub take effect on the hub and its edges without a restart or a
//! connector change; DSNs name the node that writes them; a hub without
//! edges sends through its own send connector; a receive connector change
//! keeps sessions in progress and the sockets of unchanged bindings.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{SmtpSink, lone_hub, mailbox, make_pki, start_org, swaks, wait_or};
use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role, require_tool};

/// The compiled configuration generation a node reports.
fn generation(node: &NodeProcess) -> u64 {
    let v = node.json(&["node-info"]);
    let v = if v.is_array() { v[0].clone() } else { v };
    v["config_generation"].as_u64().unwrap()
}

/// An SMTP server on loopback that answers every RCPT with `rcpt_reply`
/// (after `greeting_delay`, it greets with `greeting`).
fn scripted_server(greeting: &'static str, greeting_delay: Duration, rcpt_reply: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve_script(stream, greeting, greeting_delay, rcpt_reply);
            });
        }
    });
    addr
}

fn serve_script(
    mut stream: TcpStream,
    greeting: &str,
    delay: Duration,
    rcpt_reply: &str,
) -> std::io::Result<()> {
    std::thread::sleep(delay);
    stream.write_all(format!("{greeting}\r\n").as_bytes())?;
    if !greeting.starts_with("220") {
        return Ok(());
    }
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" | "HELO" => "250 scripted.test",
            "RCPT" => rcpt_reply,
            "QUIT" => {
                stream.write_all(b"221 2.0.0 bye\r\n")?;
                return Ok(());
            }
            "DATA" => "554 5.5.1 no valid recipients",
            _ => "250 2.0.0 ok",
        };
        stream.write_all(format!("{reply}\r\n").as_bytes())?;
    }
}

/// A message of about `size` bytes through `server` (swaks), with its
/// transcript.
fn send_sized(server: &str, from: &str, to: &str, size: usize) -> String {
    let body = "x".repeat(70);
    let lines = size / 72 + 1;
    let body = std::iter::repeat_n(body.as_str(), lines)
        .collect::<Vec<_>>()
        .join("\n");
    let out = swaks(&[
        "--server",
        server,
        "--from",
        from,
        "--to",
        to,
        "--body",
        &body,
        "--helo",
        "client.test",
    ]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn limits_set_on_the_hub_apply_on_hub_and_edge_without_a_restart() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir, "contoso.test", 1);
    let org = start_org(dir, "contoso.test", "kim", 1);
    let kim = "kim@contoso.test";

    // 20 KB passes everywhere under the default 35 MB.
    let before = send_sized(&org.edge_smtp, "someone@example.org", kim, 20_000);
    assert!(before.contains("<-  250 2.0.0"), "{before}");
    for extra in ["kim2@contoso.test", "kim3@contoso.test"] {
        org.hub.ok(&["mailbox", "new", extra]);
    }
    let (hub_gen, edge_gen) = (generation(&org.hub), generation(&org.edge));

    org.hub.ok(&[
        "transport-config",
        "set",
        "--max-message-size",
        "10000",
        "--max-recipients",
        "2",
    ]);
    wait_or(
        "both nodes to compile the new limits",
        Duration::from_secs(30),
        || generation(&org.hub) > hub_gen && generation(&org.edge) > edge_gen,
        || org.logs(),
    );
    // No connector was changed: the connectors took the replicated limits.
    let refused = send_sized(&org.edge_smtp, "someone@example.org", kim, 20_000);
    assert!(refused.contains("552"), "edge: {refused}");
    let refused = send_sized(&org.hub_submission, kim, "someone@example.org", 20_000);
    assert!(refused.contains("552"), "hub: {refused}");
    let three = swaks(&[
        "--server",
        &org.edge_smtp,
        "--from",
        "someone@example.org",
        "--to",
        "kim@contoso.test,kim2@contoso.test,kim3@contoso.test",
    ]);
    let three = String::from_utf8_lossy(&three.stdout).to_string();
    assert!(three.contains("452 4.5.3"), "{three}");
    // Every node stayed up and says no compilation failed.
    for node in [&org.hub, &org.edge] {
        let v = node.json(&["node-info"]);
        let v = if v.is_array() { v[0].clone() } else { v };
        assert_eq!(v["config_failures"], 0, "{v}");
        assert_eq!(v["config_error"], "", "{v}");
    }
}

#[test]
fn a_dsn_from_the_edge_names_the_edge() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_pki(dir, "contoso.test", 1);
    let org = start_org(dir, "contoso.test", "kim", 1);
    let refuser = scripted_server(
        "220 refuser.test ESMTP",
        Duration::ZERO,
        "550 5.1.1 no such user here",
    );
    org.hub.ok(&[
        "send-connector",
        "new",
        "Fabrikam",
        "--address-spaces",
        "fabrikam.test;10",
        "--smart-hosts",
        &refuser.to_string(),
        "--source-edges",
        "edge1",
    ]);
    org.wait_edge_connector("Fabrikam", &refuser.port().to_string());
    org.submit("kim@contoso.test", "nobody@fabrikam.test", "to a refusing host");
    let mut dsn = String::new();
    wait_or(
        "the edge's failure DSN in kim's mailbox",
        Duration::from_secs(60),
        || {
            dsn = mailbox(&org.hub_dir, "contoso.test", "kim")
                .into_iter()
                .find(|m| m.contains("Reporting-MTA"))
                .unwrap_or_default();
            !dsn.is_empty()
        },
        || org.logs(),
    );
    assert!(dsn.contains("Reporting-MTA: dns; edge1.contoso.test"), "{dsn}");
    assert!(
        dsn.contains("From: Mail Delivery System <MAILER-DAEMON@edge1.contoso.test>"),
        "{dsn}"
    );
    assert!(dsn.contains("5.1.1"), "{dsn}");
}

#[test]
fn one_hub_without_edges_sends_from_the_hub() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = SmtpSink::start(&tmp.path().join("sink"));
    let (hub, submission) = lone_hub(tmp.path(), &format!("127.0.0.1:{}", sink.port));
    let out = send_sized(&submission, "kim@contoso.test", "lee@fabrikam.test", 500);
    assert!(out.contains("<-  250 2.0.0"), "{out}");
    wait_or(
        "the message at the Internet host",
        Duration::from_secs(30),
        || sink.received().iter().any(|m| m.contains("lee@fabrikam.test")),
        || hub.log_text(),
    );
}

#[test]
fn delay_notice_and_expiry_changed_on_a_running_hub_apply_to_the_next_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    // Greets with 421 after 1.5 s: every attempt is a temporary failure
    // that ends more than a second after the message was queued.
    let slow = scripted_server("421 4.3.2 busy, try later", Duration::from_millis(1500), "");
    let (hub, submission) = lone_hub(tmp.path(), &slow.to_string());
    let generation_before = generation(&hub);
    hub.ok(&["transport-config", "set", "--delay-notification", "1"]);
    wait_or(
        "the hub to compile the delay notice",
        Duration::from_secs(10),
        || generation(&hub) > generation_before,
        || hub.log_text(),
    );
    let out = send_sized(&submission, "kim@contoso.test", "lee@fabrikam.test", 500);
    assert!(out.contains("<-  250 2.0.0"), "{out}");
    let mut delay = String::new();
    wait_or(
        "the delay notice",
        Duration::from_secs(30),
        || {
            delay = mailbox(&hub.dir, "contoso.test", "kim")
                .into_iter()
                .find(|m| m.contains("Action: delayed"))
                .unwrap_or_default();
            !delay.is_empty()
        },
        || hub.log_text(),
    );
    assert!(delay.contains("Reporting-MTA: dns; hub1.contoso.test"), "{delay}");
    assert!(delay.contains("MAILER-DAEMON@hub1.contoso.test"), "{delay}");

    let generation_before = generation(&hub);
    hub.ok(&["transport-config", "set", "--message-expiration", "1"]);
    wait_or(
        "the hub to compile the expiry",
        Duration::from_secs(10),
        || generation(&hub) > generation_before,
        || hub.log_text(),
    );
    let out = send_sized(&submission, "kim@contoso.test", "max@fabrikam.test", 500);
    assert!(out.contains("<-  250 2.0.0"), "{out}");
    let mut failure = String::new();
    wait_or(
        "the expiry DSN",
        Duration::from_secs(30),
        || {
            failure = mailbox(&hub.dir, "contoso.test", "kim")
                .into_iter()
                .find(|m| m.contains("Action: failed") && m.contains("max@fabrikam.test"))
                .unwrap_or_default();
            !failure.is_empty()
        },
        || hub.log_text(),
    );
    assert!(failure.contains("4.4.7"), "{failure}");
    assert!(
        failure.contains("Reporting-MTA: dns; hub1.contoso.test"),
        "{failure}"
    );
}

/// Reads one reply (all its lines) from an SMTP server.
fn reply(reader: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

fn command(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str, expect: &str) {
    stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    let got = reply(reader);
    assert!(got.starts_with(expect), "{line}: {got}");
}

#[test]
fn a_connector_change_keeps_sessions_and_unchanged_sockets() {
    let tmp = tempfile::tempdir().unwrap();
    let a = free_port().to_string();
    let hub = NodeProcess::start_with(
        Role::Hub,
        &tmp.path().join("hub"),
        "hub1.contoso.test",
        &["--smtp-bind", &free_port().to_string()],
    )
    .unwrap();
    hub.ok(&["accepted-domain", "new", "contoso.test"]);
    hub.ok(&["mailbox", "new", "kim@contoso.test"]);
    hub.ok(&[
        "receive-connector",
        "new",
        "Client A",
        "--bindings",
        &a,
        "--permission-groups",
        "clients",
        "--remote-ip-ranges",
        "127.0.0.0/8",
    ]);
    let b = free_port().to_string();
    hub.ok(&[
        "receive-connector",
        "new",
        "Client B",
        "--bindings",
        &b,
        "--permission-groups",
        "clients",
        "--remote-ip-ranges",
        "127.0.0.0/8",
    ]);

    // A session on A, stopped in the middle of DATA.
    let mut stream = connect_when_listening(&a);
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert!(reply(&mut reader).starts_with("220"));
    command(&mut stream, &mut reader, "EHLO client.test", "250");
    command(&mut stream, &mut reader, "MAIL FROM:<lee@fabrikam.test>", "250");
    command(&mut stream, &mut reader, "RCPT TO:<kim@contoso.test>", "250");
    command(&mut stream, &mut reader, "DATA", "354");
    stream
        .write_all(b"Subject: mid-change\r\nMessage-ID: <mid-change@test>\r\n\r\nfirst half\r\n")
        .unwrap();

    // B changes (a limit) and A too (its logging): A's binding is unchanged,
    // so its socket is handed over; the session in progress finishes.
    let gen_before = generation(&hub);
    hub.ok(&[
        "receive-connector",
        "set",
        "Client B",
        "--max-message-size",
        "4096",
    ]);
    hub.ok(&[
        "receive-connector",
        "set",
        "Client A",
        "--protocol-logging-level",
        "verbose",
    ]);
    wait_or(
        "the connector changes to apply",
        Duration::from_secs(10),
        || generation(&hub) >= gen_before + 2,
        || hub.log_text(),
    );
    // The port never closed: a new session on A is greeted at once.
    let mut probe = TcpStream::connect(&a).unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 3];
    probe.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"220");

    stream.write_all(b"second half\r\n.\r\n").unwrap();
    let done = reply(&mut reader);
    assert!(done.starts_with("250"), "{done}");
    // The connector it came in on was replaced: QUIT may hear 421 4.3.2
    // (the old connector closing its idle sessions) instead of 221.
    stream.write_all(b"QUIT\r\n").unwrap();
    let bye = reply(&mut reader);
    assert!(bye.starts_with("221") || bye.starts_with("421 4.3.2"), "{bye}");
    wait_or(
        "the message delivered",
        Duration::from_secs(30),
        || {
            mailbox(&hub.dir, "contoso.test", "kim")
                .iter()
                .any(|m| m.contains("first half") && m.contains("second half"))
        },
        || hub.log_text(),
    );
    // B has its new limit.
    let big = send_sized(&b, "lee@fabrikam.test", "kim@contoso.test", 8000);
    assert!(big.contains("552"), "{big}");
}

/// Connects to `addr` once the node listens there: a new connector's
/// listener starts when the node has compiled the change, a moment after
/// the admin command returns.
fn connect_when_listening(addr: &str) -> TcpStream {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => return stream,
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "nothing listens on {addr}: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn a_handed_over_connector_keeps_counting_the_sessions_it_inherits() {
    let tmp = tempfile::tempdir().unwrap();
    let c = free_port().to_string();
    let hub = NodeProcess::start_with(
        Role::Hub,
        &tmp.path().join("hub"),
        "hub1.contoso.test",
        &["--smtp-bind", &free_port().to_string()],
    )
    .unwrap();
    hub.ok(&[
        "receive-connector",
        "new",
        "Client C",
        "--bindings",
        &c,
        "--permission-groups",
        "clients",
        "--remote-ip-ranges",
        "127.0.0.0/8",
        "--max-inbound-connection-per-source",
        "1",
    ]);
    // One session from 127.0.0.1, inside a transaction (so it outlives
    // the connector it started on).
    let mut stream = connect_when_listening(&c);
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    assert!(reply(&mut reader).starts_with("220"));
    command(&mut stream, &mut reader, "EHLO client.test", "250");
    command(&mut stream, &mut reader, "MAIL FROM:<lee@fabrikam.test>", "250");

    let gen_before = generation(&hub);
    hub.ok(&[
        "receive-connector",
        "set",
        "Client C",
        "--protocol-logging-level",
        "verbose",
    ]);
    wait_or(
        "the connector change to apply",
        Duration::from_secs(10),
        || generation(&hub) > gen_before,
        || hub.log_text(),
    );
    // The successor counts the inherited session: a second one from the
    // same address is over the limit.
    let probe = TcpStream::connect(&c).unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut busy = BufReader::new(probe);
    let refused = reply(&mut busy);
    assert!(refused.starts_with("421 4.3.2"), "{refused}");

    // Once it ends, its place is given back to the successor.
    stream.write_all(b"QUIT\r\n").unwrap();
    let _ = reply(&mut reader);
    drop((stream, reader));
    wait_or(
        "the place to be given back",
        Duration::from_secs(10),
        || {
            let Ok(probe) = TcpStream::connect(&c) else {
                return false;
            };
            let _ = probe.set_read_timeout(Some(Duration::from_secs(10)));
            reply(&mut BufReader::new(probe)).starts_with("220")
        },
        || hub.log_text(),
    );
}
