//! Mail delivered once whichever hub receives it (issue 16): two hubs of
//! one organisation on a real etcd (processes, as in `several_hubs.rs`)
//! and one edge. lee@adatum.com is homed on hub2 though created on hub1:
//!
//! 1. `mailbox get`/`list` show each mailbox's home;
//! 2. mail submitted at hub1 for lee lands in hub2's Maildir, once, and
//!    never in hub1's;
//! 3. with hub2 stopped, the next message waits in hub1's queue (hop
//!    `hub:hub2`) and is delivered once when hub2 is back;
//! 4. mail entering through the edge goes from the edge to hub2 directly
//!    (its trace has no hub1 in it);
//! 5. `mailbox set lee --hub hub1` moves the home: new mail lands in hub1's
//!    Maildir, what hub2 holds stays there.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{client_submission, etcd_hub, mailbox, submit, wait_or};
use postern_tests::etcd::EtcdCluster;
use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role, require_tool};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

/// The messages of `user` on a hub whose Subject is `subject`.
fn with_subject(hub: &NodeProcess, user: &str, subject: &str) -> usize {
    mailbox(&hub.dir, "adatum.com", user)
        .iter()
        .filter(|m| {
            m.contains(&format!("Subject: {subject}\r\n")) || m.contains(&format!("Subject: {subject}\n"))
        })
        .count()
}

fn queued_for(hub: &NodeProcess, hop: &str) -> usize {
    hub.json(&["queue", "list"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m.to_string().contains(hop))
        .count()
}

#[test]
fn mail_reaches_each_mailbox_at_its_home_hub_once() {
    require_tool("etcd");
    require_tool("etcdctl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let etcd = EtcdCluster::start(dir, 1).unwrap();
    let endpoints = etcd.endpoints();
    let mut hubs = [etcd_hub(dir, 1, &endpoints), etcd_hub(dir, 2, &endpoints)];
    let logs = |hubs: &[NodeProcess; 2]| {
        format!(
            "--- hub1:\n{}\n--- hub2:\n{}",
            hubs[0].log_text(),
            hubs[1].log_text()
        )
    };

    hubs[0].ok(&["accepted-domain", "new", "adatum.com"]);
    // Homes: the creating hub by default, or --hub (once hub2 has
    // published itself).
    hubs[0].ok(&["mailbox", "new", "kim@adatum.com"]);
    wait_or(
        "lee homed on hub2",
        LONG,
        || {
            hubs[0]
                .cli(&["mailbox", "new", "lee@adatum.com", "--hub", "hub2"])
                .status
                .success()
        },
        || logs(&hubs),
    );
    let refused = hubs[0].fails(&["mailbox", "new", "max@adatum.com", "--hub", "hub9"]);
    assert!(refused.contains("no hub named \"hub9\""), "{refused}");
    let lee: Value = hubs[0].json(&["mailbox", "get", "lee@adatum.com"]);
    assert_eq!(lee["home"], "hub2", "{lee}");
    let list = hubs[1].json(&["mailbox", "list"]);
    let homes: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["address"].as_str().unwrap().to_owned(),
                m["home"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        homes,
        [
            ("kim@adatum.com".to_owned(), "hub1".to_owned()),
            ("lee@adatum.com".to_owned(), "hub2".to_owned())
        ],
        "{list}"
    );

    // Submitted at hub1, delivered at lee's home, hub2, once.
    let submission1 = client_submission(&hubs[0]);
    submit(
        &submission1,
        "client.fabrikam.com",
        "someone@fabrikam.com",
        "lee@adatum.com",
        "first",
    );
    wait_or(
        "the first message in hub2's Maildir",
        LONG,
        || with_subject(&hubs[1], "lee", "first") == 1,
        || logs(&hubs),
    );
    submit(
        &submission1,
        "client.fabrikam.com",
        "someone@fabrikam.com",
        "kim@adatum.com",
        "for kim",
    );
    wait_or(
        "kim's message in hub1's Maildir",
        LONG,
        || with_subject(&hubs[0], "kim", "for kim") == 1,
        || logs(&hubs),
    );
    assert_eq!(
        mailbox(&hubs[0].dir, "adatum.com", "lee").len(),
        0,
        "nothing for lee on hub1"
    );
    assert_eq!(
        mailbox(&hubs[1].dir, "adatum.com", "kim").len(),
        0,
        "nothing for kim on hub2"
    );

    // hub2 down: the message waits in hub1's queue, then arrives once.
    hubs[1].stop().unwrap();
    submit(
        &submission1,
        "client.fabrikam.com",
        "someone@fabrikam.com",
        "lee@adatum.com",
        "while hub2 was down",
    );
    wait_or(
        "the message queued on hub1 for hub2",
        LONG,
        || queued_for(&hubs[0], "hub:hub2") == 1,
        || logs(&hubs),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(queued_for(&hubs[0], "hub:hub2"), 1, "still waiting");
    hubs[1].start_again().unwrap();
    // As an administrator would after the outage (else the next retry,
    // a minute later, delivers it).
    hubs[0].ok(&["queue", "retry", "--hop", "hub:hub2"]);
    wait_or(
        "the held message in hub2's Maildir",
        LONG,
        || with_subject(&hubs[1], "lee", "while hub2 was down") == 1,
        || logs(&hubs),
    );
    wait_or(
        "hub1's queue empty",
        LONG,
        || queued_for(&hubs[0], "hub:hub2") == 0,
        || logs(&hubs),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        with_subject(&hubs[1], "lee", "while hub2 was down"),
        1,
        "delivered once"
    );
    assert_eq!(with_subject(&hubs[1], "lee", "first"), 1, "delivered once");

    // Through an edge (subscribed on hub1): straight to hub2.
    let edge_smtp = free_port().to_string();
    let edge = NodeProcess::start_with(
        Role::Edge,
        &dir.join("edge1"),
        "edge1.adatum.com",
        &[
            "--edgesync-bind",
            &free_port().to_string(),
            "--smtp-bind",
            &edge_smtp,
        ],
    )
    .unwrap();
    let file = dir.join("edge1.sub");
    edge.ok(&["edge-subscription", "new", "--file", file.to_str().unwrap()]);
    hubs[0].ok(&["edge-subscription", "import", "--file", file.to_str().unwrap()]);
    wait_or(
        "lee's mailbox (with its home) on the edge",
        LONG,
        || edge.ok(&["mailbox", "list"]).contains("hub2"),
        || format!("{}\n--- edge:\n{}", logs(&hubs), edge.log_text()),
    );
    submit(
        &edge_smtp,
        "client.fabrikam.com",
        "someone@fabrikam.com",
        "lee@adatum.com",
        "through the edge",
    );
    wait_or(
        "the edge's message in hub2's Maildir",
        LONG,
        || with_subject(&hubs[1], "lee", "through the edge") == 1,
        || format!("{}\n--- edge:\n{}", logs(&hubs), edge.log_text()),
    );
    let via_edge = mailbox(&hubs[1].dir, "adatum.com", "lee")
        .into_iter()
        .find(|m| m.contains("through the edge"))
        .unwrap();
    assert!(via_edge.contains("by hub2.adatum.com"), "{via_edge}");
    assert!(via_edge.contains("by edge1.adatum.com"), "{via_edge}");
    assert!(
        !via_edge.contains("by hub1.adatum.com"),
        "not through hub1: {via_edge}"
    );

    // The home moves: new mail goes to hub1; hub2 keeps what it has.
    hubs[1].ok(&["mailbox", "set", "lee@adatum.com", "--hub", "hub1"]);
    wait_or(
        "the new home on hub1",
        LONG,
        || hubs[0].json(&["mailbox", "get", "lee@adatum.com"])["home"] == "hub1",
        || logs(&hubs),
    );
    submit(
        &submission1,
        "client.fabrikam.com",
        "someone@fabrikam.com",
        "lee@adatum.com",
        "after the move",
    );
    wait_or(
        "the message in hub1's Maildir",
        LONG,
        || with_subject(&hubs[0], "lee", "after the move") == 1,
        || logs(&hubs),
    );
    assert_eq!(
        mailbox(&hubs[1].dir, "adatum.com", "lee").len(),
        3,
        "hub2 keeps what it had"
    );
    assert_eq!(with_subject(&hubs[1], "lee", "after the move"), 0);
}
