//! The crash test: a child process (this test binary, re-executed with an
//! environment variable) enqueues in a loop and prints each id once
//! `enqueue` returns; the parent kills it with SIGKILL and checks that every
//! printed id is in the store.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use super::{BODY, envelope, open_db};
use crate::queue::{Queue, QueueConfig, QueueId};

const CRASH_DIR_VAR: &str = "POSTERN_QUEUE_CRASH_DIR";
const CRASH_CHILD: &str = "queue::tests::crash::crash_child_enqueues_until_killed";

/// The child half of `sigkill_loses_no_acknowledged_message`: does nothing
/// unless started by it.
#[test]
fn crash_child_enqueues_until_killed() {
    let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let queue = Queue::open(&open_db(Path::new(&dir)), QueueConfig::default()).unwrap();
        let body = BODY.repeat(200);
        for i in 0..100_000 {
            let rcpt = format!("user{i}@fabrikam.com");
            let id = queue
                .enqueue(envelope(Some("s@adatum.com"), &[&rcpt]), body.clone())
                .await
                .unwrap();
            println!("QUEUED {id}");
        }
    });
}

#[test]
fn sigkill_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CRASH_CHILD, "--nocapture", "--test-threads=1"])
        .env(CRASH_DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("QUEUED ") {
            acknowledged.push(QueueId::parse(id).unwrap());
            if acknowledged.len() == 60 {
                break;
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(acknowledged.len(), 60, "the child stopped early");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let queue = Queue::open(&open_db(dir.path()), QueueConfig::default()).unwrap();
        let present = queue.ids().unwrap();
        for id in &acknowledged {
            assert!(present.contains(id), "{id} was acknowledged but is gone");
            assert!(queue.body(*id).unwrap().is_some(), "{id} lost its body");
        }
        assert!(present.len() >= acknowledged.len());
    });
}
