//! LMTP to a real mailbox server: Debian's Dovecot (`dovecot-lmtpd`),
//! started by the test on its own loopback port and directory, holds the
//! mailboxes of contoso.com; the hub (a process) has
//! `accepted-domain … --delivery lmtp://…` for it. Mail submitted at the
//! hub is read back from Dovecot's Maildir; a recipient Dovecot does not
//! know bounces alone (the DSN names only it) while the other is
//! delivered once; the hub speaks STARTTLS to Dovecot, reuses the
//! connection for the next message, writes the session to its send
//! protocol log and counts it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::dovecot::Dovecot;
use common::{client_submission, mailbox, read_tree, submit, wait_or};
use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role};

#[test]
fn delivery_to_dovecot_over_lmtp() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let dovecot = Dovecot::start(&dir.join("dovecot"), &["alice@contoso.com"]);

    let hub_dir = dir.join("hub");
    let hub = NodeProcess::start_with(
        Role::Hub,
        &hub_dir,
        "hub1.adatum.com",
        &["--smtp-bind", &free_port().to_string()],
    )
    .unwrap();
    hub.ok(&["accepted-domain", "new", "adatum.com"]);
    hub.ok(&["mailbox", "new", "kim@adatum.com"]);
    // A bad setting is refused with the reason.
    let refused = hub.fails(&[
        "accepted-domain",
        "new",
        "contoso.com",
        "--delivery",
        "lmtp://127.0.0.1:25",
    ]);
    assert!(refused.contains("port 25"), "{refused}");
    hub.ok(&["accepted-domain", "new", "contoso.com"]);
    hub.ok(&[
        "accepted-domain",
        "set",
        "contoso.com",
        "--delivery",
        &dovecot.url(),
    ]);
    hub.ok(&["mailbox", "new", "alice@contoso.com"]);
    // Known to Postern, unknown to the mailbox server.
    hub.ok(&["mailbox", "new", "bob@contoso.com"]);
    let domains = hub.json(&["accepted-domain", "list"]);
    let contoso = domains
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "contoso.com")
        .cloned()
        .unwrap();
    assert_eq!(contoso["delivery"], dovecot.url(), "{domains}");

    let submission = client_submission(&hub);
    let context = || format!("--- hub:\n{}\n--- dovecot:\n{}", hub.log_text(), dovecot.log());

    // Dovecot logs each connection, the start's readiness probe among them.
    let connects = || dovecot.log().matches("Connect from 127.0.0.1").count();
    let probes = connects();

    // One message, two recipients: Dovecot saves alice's copy and refuses
    // bob at RCPT (550 5.1.1 User doesn't exist).
    submit(
        &submission,
        "client.adatum.com",
        "kim@adatum.com",
        "alice@contoso.com,bob@contoso.com",
        "for the mailbox server",
    );
    wait_or(
        "alice's message in Dovecot's Maildir",
        Duration::from_secs(30),
        || !dovecot.mailbox("alice@contoso.com").is_empty(),
        context,
    );
    wait_or(
        "the bounce for bob in kim's Maildir",
        Duration::from_secs(30),
        || !mailbox(&hub_dir, "adatum.com", "kim").is_empty(),
        context,
    );
    let alice = dovecot.mailbox("alice@contoso.com");
    assert_eq!(alice.len(), 1, "delivered once: {alice:?}");
    assert!(
        alice[0].contains("Subject: for the mailbox server"),
        "{}",
        alice[0]
    );
    // Dovecot's trace names the hub by its LHLO.
    assert!(alice[0].contains("from hub1.adatum.com"), "{}", alice[0]);
    let bounces = mailbox(&hub_dir, "adatum.com", "kim");
    assert_eq!(bounces.len(), 1, "{bounces:?}");
    let dsn = &bounces[0];
    assert!(dsn.contains("Final-Recipient: rfc822; bob@contoso.com"), "{dsn}");
    assert!(dsn.contains("Status: 5.1.1"), "{dsn}");
    assert!(
        !dsn.contains("rfc822; alice@contoso.com"),
        "only bob bounces: {dsn}"
    );
    assert!(dovecot.mailbox("bob@contoso.com").is_empty());

    // The next message reuses the connection (Dovecot logs each one).
    submit(
        &submission,
        "client.adatum.com",
        "kim@adatum.com",
        "alice@contoso.com",
        "second",
    );
    wait_or(
        "the second message in Dovecot's Maildir",
        Duration::from_secs(30),
        || dovecot.mailbox("alice@contoso.com").len() == 2,
        context,
    );
    assert_eq!(
        connects() - probes,
        1,
        "one LMTP connection for both messages:\n{}",
        dovecot.log()
    );

    // The session, over STARTTLS, in the hub's send protocol log (no
    // message content), and in its counters by hop.
    let log = read_tree(&hub_dir.join("logs/protocol/send"));
    assert!(log.contains("lmtp:contoso.com"), "{log}");
    assert!(log.contains("LHLO hub1.adatum.com"), "{log}");
    assert!(log.contains("STARTTLS"), "{log}");
    assert!(log.contains("RCPT TO:<bob@contoso.com>"), "{log}");
    assert!(
        !log.contains("for the mailbox server"),
        "no content in the log: {log}"
    );
    let counters = hub.json(&["counters"]);
    let sessions: u64 = counters
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["metric"] == "postern_smtp_sessions_total"
                && c["labels"].to_string().contains("lmtp:contoso.com")
        })
        .filter_map(|c| {
            c["value"]
                .as_u64()
                .or_else(|| c["value"].as_f64().map(|v| v as u64))
        })
        .sum();
    assert_eq!(sessions, 1, "{counters}");

    // Nothing left in the hub's queue.
    let queue = hub.json(&["queue", "list"]);
    assert_eq!(queue.as_array().map(Vec::len), Some(0), "{queue}");
}
