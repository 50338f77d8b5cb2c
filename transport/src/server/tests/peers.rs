//! Real foreign peers against the server: swaks (mail over STARTTLS) and
//! openssl s_client (the STARTTLS handshake). Each test is skipped, with a
//! note, when its tool is not installed.

use std::process::Stdio;

use tokio::process::Command;

use super::*;

/// Whether `tool` is on PATH; prints why the test is skipped when not.
fn installed(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found {
        println!("skipped: {tool} is not on PATH");
    }
    found
}

#[tokio::test]
async fn swaks_sends_over_starttls() {
    if !installed("swaks") {
        return;
    }
    let node = Setup::new().start().await;
    let output = Command::new("swaks")
        .args([
            "--server",
            &node.addr.to_string(),
            "--to",
            "a@local.test",
            "--tls",
        ])
        .args(["--from", "swaks@fabrikam.test", "--helo", "swaks.fabrikam.test"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), output)
        .await
        .unwrap()
        .unwrap();
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{transcript}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        transcript.contains("<~  250 2.0.0 Queued mail for delivery as"),
        "{transcript}"
    );
    let (message, body) = node.only_message();
    assert_eq!(message.envelope.recipients[0].address, "a@local.test");
    assert!(body.contains("with ESMTPS id"), "{body}");
    node.shut_down().await;
}

#[tokio::test]
async fn openssl_s_client_completes_the_starttls_handshake() {
    if !installed("openssl") {
        return;
    }
    let node = Setup::new().start().await;
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-starttls",
            "smtp",
            "-connect",
            &node.addr.to_string(),
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"EHLO x\r\nQUIT\r\n").await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains("250 ENHANCEDSTATUSCODES"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("221 2.0.0"), "stdout: {stdout}\nstderr: {stderr}");
    let record = node.records(1).await.remove(0);
    assert_eq!(record.end, SessionEnd::Quit);
    assert!(record.info.tls.is_some());
    node.shut_down().await;
}
