//! A session's life around the protocol: timeouts, shutdown, and a
//! connector whose certificate comes and goes.

use super::*;

#[tokio::test]
async fn idle_client_gets_421_timeout_and_is_closed() {
    let node = Setup {
        connector: ReceiveConnectorConfig {
            idle_timeout: Duration::from_millis(200),
            ..connector()
        },
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.expect("421 4.4.2").await;
    assert!(c.closed().await);
    assert_eq!(node.records(1).await[0].end, SessionEnd::Timeout);
    node.shut_down().await;
}

#[tokio::test]
async fn shutdown_tells_idle_sessions_and_lets_transactions_finish() {
    let node = Setup::new().start().await;
    let mut idle = node.connect().await;
    idle.cmd("EHLO idle.fabrikam.test", "250").await;
    let mut busy = node.connect().await;
    busy.cmd("EHLO busy.fabrikam.test", "250").await;
    busy.cmd("MAIL FROM:<a@fabrikam.test>", "250 2.1.0").await;
    let Node {
        _dir,
        queue,
        addr,
        certs: _,
        records,
        mut stop,
        served,
        ..
    } = node;
    let _ = stop.take().unwrap().send(());
    idle.expect("421 4.3.2").await;
    assert!(idle.closed().await);
    // The transaction in progress completes, then the session is told.
    busy.cmd("RCPT TO:<bob@local.test>", "250 2.1.5").await;
    busy.cmd("DATA", "354").await;
    busy.send(&format!("{BODY}.\r\n")).await;
    busy.expect("250 2.0.0").await;
    busy.expect("421 4.3.2").await;
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(queue.ids().unwrap().len(), 1);
    assert!(TcpStream::connect(addr).await.is_err());
    let ends: Vec<SessionEnd> = records.lock().unwrap().iter().map(|r| r.end.clone()).collect();
    assert_eq!(ends, [SessionEnd::Shutdown, SessionEnd::Shutdown]);
}

#[tokio::test]
async fn silent_client_mid_data_gets_421_and_nothing_is_queued() {
    let node = Setup {
        connector: ReceiveConnectorConfig {
            data_timeout: Duration::from_millis(200),
            ..connector()
        },
        ..Setup::new()
    }
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250 2.1.0").await;
    c.cmd("RCPT TO:<bob@local.test>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.send("Subject: slow\r\n\r\nand then nothing").await;
    c.expect("421 4.4.2").await;
    assert!(c.closed().await);
    assert_eq!(node.records(1).await[0].end, SessionEnd::Timeout);
    assert!(node.queue.ids().unwrap().is_empty());
    node.shut_down().await;
}

/// Log lines captured from the current thread's tracing events.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn missing_certificate_is_loud_and_a_new_one_brings_starttls_back() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The test runtime is single-threaded: the server's tasks log here too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let node = Setup {
        server_cert: false,
        ..Setup::new()
    }
    .start()
    .await;
    let warnings = logs.lines_with("STARTTLS is not offered");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("WARN") && warnings[0].contains(FQDN),
        "{warnings:?}"
    );

    let mut c = node.connect().await;
    assert!(!has_starttls(&c.cmd("EHLO client.fabrikam.test", "250").await));
    c.cmd("QUIT", "221").await;
    // Said once, not once per session.
    assert_eq!(logs.lines_with("STARTTLS is not offered").len(), 1);

    // Enabling a certificate takes effect for the next session.
    self_signed(&node.certs, FQDN);
    let mut c = node.connect().await;
    assert!(has_starttls(&c.cmd("EHLO client.fabrikam.test", "250").await));
    assert_eq!(logs.lines_with("STARTTLS is offered again").len(), 1);
    node.shut_down().await;
}
