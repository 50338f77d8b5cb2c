//! A foreign peer: Postfix's `smtp-sink` (Debian package `postfix`).
//! Several pipelined messages over one pooled connection, checked in the
//! sink's per-message dump files and its session counters.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::*;
use crate::client::Pool;

const SMTP_SINK: &str = "/usr/sbin/smtp-sink";

/// Starts `smtp-sink` on a free loopback port, dumping each message into
/// `dump`; retries when the port was taken in between.
async fn start_sink(dump: &Path) -> (Child, u16) {
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    for _ in 0..5 {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cmd = Command::new(SMTP_SINK);
        if root {
            // smtp-sink refuses to run as root without dropping privileges.
            cmd.args(["-u", "nobody"]);
        }
        let template = format!("{}/%Y%m%d.", dump.display());
        let mut child = cmd
            .args(["-c", "-d", &template, &format!("127.0.0.1:{port}"), "100"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return (child, port);
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill().await;
    }
    panic!("smtp-sink did not start");
}

#[tokio::test]
async fn pipelined_messages_over_one_pooled_connection() {
    if !Path::new(SMTP_SINK).exists() {
        eprintln!("skipped: {SMTP_SINK} is missing (apt-get install postfix)");
        return;
    }
    let dump = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (mut sink, port) = start_sink(dump.path()).await;

    let client = node(HELO);
    let pool = Pool::new(connector(&client, &[]));
    let relay = hop(
        vec![HostPort {
            host: "127.0.0.1".into(),
            port,
        }],
        TlsRequirement::OPPORTUNISTIC,
    );
    let bodies: [&[u8]; 3] = [
        b"Subject: one\r\n\r\nfirst message\r\n",
        b"Subject: two\r\n\r\n.dot-led line\r\nno final line end",
        "Subject: three\r\n\r\nhuit bits: \u{e9}t\u{e9}\r\n".as_bytes(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let to = rcpts(&[&format!("r{i}a@sink.test"), &format!("r{i}b@sink.test")]);
        let outcomes = pool
            .deliver(&relay, Some("sender@client.test"), &to, body)
            .await
            .unwrap();
        assert_eq!(
            kinds(&outcomes).iter().map(|k| k.1).collect::<Vec<_>>(),
            ["delivered", "delivered"]
        );
    }
    assert_eq!(pool.idle_count(&relay_key()), 1);
    pool.close_all().await;

    // One dump file per message, each with its envelope and body.
    let mut dumps = Vec::new();
    for _ in 0..50 {
        dumps = std::fs::read_dir(dump.path())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect::<Vec<_>>();
        if dumps.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dumps.len(), 3, "{dumps:?}");
    let find = |needle: &str| dumps.iter().find(|d| d.contains(needle)).unwrap().clone();
    let one = find("Subject: one");
    assert!(one.contains("X-Rcpt-Args: <r0a@sink.test>") && one.contains("X-Rcpt-Args: <r0b@sink.test>"));
    assert!(
        one.contains("X-Mail-Args: <sender@client.test>\n")
            || one.contains("X-Mail-Args: <sender@client.test>\r\n")
    );
    let two = find("Subject: two");
    assert!(two.contains("\n.dot-led line") && two.contains("no final line end"));
    let three = find("Subject: three");
    assert!(
        three.contains("X-Mail-Args: <sender@client.test> BODY=8BITMIME"),
        "{three}"
    );

    // The counters (updated as sessions end and messages arrive): the
    // start-up probe is one session without QUIT; the three messages all
    // arrived while it was the only one ended, then our QUIT ended ours.
    // Read the counters as they come: our QUIT may reach the sink a moment
    // after the pool has let go of the connection.
    let mut stdout = sink.stdout.take().unwrap();
    let mut out = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !out.contains("sess=2 quit=1 mesg=3") && tokio::time::Instant::now() < deadline {
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), stdout.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    sink.kill().await.unwrap();
    let counters: Vec<&str> = out
        .split(['\r', '\n'])
        .filter(|l| l.starts_with("sess="))
        .collect();
    assert_eq!(counters.last(), Some(&"sess=2 quit=1 mesg=3"), "{out:?}");
    assert!(counters.contains(&"sess=1 quit=0 mesg=3"), "{out:?}");
}
