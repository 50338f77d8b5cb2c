//! `postern up`: one command brings up a hub and an edge, subscribed, and a
//! message from the Internet reaches the mailbox through both; Ctrl-C stops
//! it cleanly; a second run reuses everything.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::{postern_bin, require_tool};

fn base_port() -> u16 {
    // Several ports follow the base (+1, +3, +62, +7400, +7401, +7402): find a base
    // whose whole set is free right now.
    loop {
        let base = 20000 + (std::process::id() as u16 % 97) * 100 + (rand_u16() % 90);
        let all = [0u16, 1, 3, 62, 7400, 7401, 7402];
        if all
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok())
        {
            return base;
        }
    }
}

fn rand_u16() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u16
}

fn up(dir: &std::path::Path, port: u16) -> (std::process::Child, String) {
    let mut child = Command::new(postern_bin())
        .args(["up", "--data-dir"])
        .arg(dir)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !out.contains("Ctrl-C stops") {
        assert!(Instant::now() < deadline, "postern up did not come up: {out}");
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("postern up exited: {out}");
        }
        out.push_str(&line);
    }
    (child, out)
}

fn interrupt(mut child: std::process::Child) {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "postern up exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "postern up did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn up_brings_an_organisation_that_carries_mail() {
    let swaks = require_tool("swaks");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("org");
    let port = base_port();
    let (child, banner) = up(&dir, port);
    assert!(
        banner.contains(&format!("swaks --server 127.0.0.1:{port}")),
        "{banner}"
    );
    let out = Command::new(&swaks)
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--from",
            "someone@example.org",
            "--to",
            "admin@contoso.test",
            "--tls",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let new = dir.join("hub/mailboxes/contoso.test/admin/Maildir/new");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&new).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the first message did not arrive");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new(postern_bin())
        .arg("--node")
        .arg(dir.join("hub"))
        .args(["edgesync", "test", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v[0]["status"], "in-sync", "{v}");
    // The console is on loopback, and its login link works.
    let console = format!("https://127.0.0.1:{}", port + 7402);
    assert!(
        banner.contains(&format!(
            "Web console (HTTPS, the hub's self-signed certificate): {console}"
        )),
        "{banner}"
    );
    let token = Command::new(postern_bin())
        .arg("--node")
        .arg(dir.join("hub"))
        .args(["console", "token"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&token.stdout).trim().to_owned();
    assert!(link.starts_with(&format!("{console}/login?token=")), "{link}");
    let jar = tmp.path().join("cookies");
    let jar = jar.to_str().unwrap();
    let curl = Command::new(require_tool("curl"))
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-c",
            jar,
            "-b",
            jar,
            "-L",
            &link,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "200",
        "the organisation page"
    );
    // Delivered mail has left both queues.
    for node in ["hub", "edge"] {
        let out = Command::new(postern_bin())
            .arg("--node")
            .arg(dir.join(node))
            .args(["queue", "list", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v, serde_json::json!([]), "{node}: {v}");
    }
    interrupt(child);
    // A second run reuses the organisation.
    let (child, _) = up(&dir, port);
    interrupt(child);
}
