//! The operator's surface, from outside the process: `postern queue
//! remove` (Remove-Message) with its non-delivery report; a listing piped
//! into `head -1` ends quietly; the node's log has no ANSI colours when
//! stderr is a file, and is one JSON object per line with
//! `--log-format json`.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{lone_hub, mailbox, swaks, wait_or};
use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role};

/// A hub alone with a mailbox, a client connector and an Internet send
/// connector to a port nobody listens on: outbound mail stays queued.
fn hub_with_a_stuck_message(dir: &std::path::Path) -> (NodeProcess, String) {
    let (hub, submission) = lone_hub(dir, &format!("127.0.0.1:{}", free_port()));
    let mut sent = false;
    wait_or(
        "the client connector to take a message",
        Duration::from_secs(20),
        || {
            let out = swaks(&[
                "--server",
                &submission,
                "--from",
                "kim@contoso.test",
                "--to",
                "lee@fabrikam.test",
                "--header",
                "Subject: stuck",
            ]);
            sent = out.status.success();
            sent
        },
        || hub.log_text(),
    );
    let mut id = String::new();
    wait_or(
        "the message deferred in the queue",
        Duration::from_secs(30),
        || {
            let v = hub.json(&["queue", "list"]);
            let Some(m) = v.as_array().and_then(|a| a.first()) else {
                return false;
            };
            id = m["id"].as_str().unwrap().to_owned();
            m["recipients"][0]["status"] == "deferred"
        },
        || hub.log_text(),
    );
    (hub, id)
}

#[test]
fn queue_remove_drops_a_message_and_reports_to_its_sender() {
    let tmp = tempfile::tempdir().unwrap();
    let (hub, id) = hub_with_a_stuck_message(tmp.path());

    // A listing piped into `head -1` ends quietly: one line, nothing on
    // stderr, and the pipeline succeeds (pipefail sees postern's status).
    // Into `true`, the reader is gone before postern writes at all.
    let node = hub.dir.to_str().unwrap();
    let bin = postern_tests::postern_bin().to_str().unwrap();
    let piped = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -eo pipefail; for i in 1 2 3 4 5; do \
               '{bin}' --node '{node}' queue list --json | head -1; \
               '{bin}' --node '{node}' queue list | true; \
               '{bin}' --node '{node}' counters | true; done"
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&piped.stdout);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{stdout}{stderr}");
    assert_eq!(stderr, "", "a closed pipe printed something");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["["; 5], "{stdout}");

    // An unknown id is refused and names the command that lists ids.
    let refused = hub.fails(&["queue", "remove", "--id", "not-an-id"]);
    assert!(refused.contains("queue list"), "{refused}");

    let out = hub.ok(&["queue", "remove", "--id", &id]);
    assert!(
        out.contains(&format!("message {id} removed: 1 undelivered")),
        "{out}"
    );
    assert!(out.contains("non-delivery report"), "{out}");
    // The report reaches the sender's mailbox on this hub; the message is gone.
    let mut ndr = String::new();
    wait_or(
        "the non-delivery report in kim's mailbox",
        Duration::from_secs(30),
        || {
            ndr = mailbox(&hub.dir, "contoso.test", "kim")
                .into_iter()
                .find(|m| m.contains("Action: failed"))
                .unwrap_or_default();
            !ndr.is_empty()
        },
        || hub.log_text(),
    );
    assert!(ndr.contains("lee@fabrikam.test"), "{ndr}");
    assert!(ndr.contains("5.3.0"), "{ndr}");
    assert!(
        ndr.contains("removed from the queue by an administrator"),
        "{ndr}"
    );
    let v = hub.json(&["queue", "list"]);
    assert!(
        v.as_array().unwrap().iter().all(|m| m["id"] != id.as_str()),
        "{v}"
    );
    let again = hub.fails(&["queue", "remove", "--id", &id]);
    assert!(again.contains("not in the queue"), "{again}");

    // The log went to a file: plain text, no colour escapes.
    let log = hub.log_text();
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file:\n{log}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = NodeProcess::start_with(
        Role::Hub,
        &tmp.path().join("hub"),
        "hub1.contoso.test",
        &["--smtp-bind", &free_port().to_string(), "--log-format", "json"],
    )
    .unwrap();
    let log = hub.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
        assert!(v["fields"].is_object(), "{line}");
    }
}
