//! Hostile clients over real sockets, each limit set short on the
//! connector: connection limits (421 4.3.2), the session's whole life,
//! a command line and message data that trickle (421 4.4.2), the error
//! limit (421 4.7.0), the tarpit, and the header firewall's refusals.

use postern_model::CountLimit;
use tokio::net::TcpSocket;

use super::*;

/// A connection from `ip` (any 127.0.0.0/8 address is local on Linux).
async fn connect_from(node: &Node, ip: &str) -> Client<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    Client::new(socket.connect(node.addr).await.unwrap())
}

fn limited(f: impl FnOnce(&mut ReceiveConnectorConfig)) -> Setup {
    let mut connector = connector();
    f(&mut connector);
    Setup {
        connector,
        ..Setup::new()
    }
}

#[tokio::test]
async fn connections_over_the_per_source_limit_get_421_and_are_closed() {
    let node = limited(|c| c.max_inbound_connection_per_source = CountLimit::At(2))
        .start()
        .await;
    let mut first = connect_from(&node, "127.0.0.1").await;
    first.expect("220").await;
    let mut second = connect_from(&node, "127.0.0.1").await;
    second.expect("220").await;
    let mut third = connect_from(&node, "127.0.0.1").await;
    third.expect("421 4.3.2").await;
    assert!(third.closed().await);
    // Another address is not affected.
    let mut other = connect_from(&node, "127.0.0.2").await;
    other.expect("220").await;
    // A place given back is available again.
    first.cmd("QUIT", "221").await;
    assert!(first.closed().await);
    node.records(1).await;
    let mut again = connect_from(&node, "127.0.0.1").await;
    again.expect("220").await;
    second.cmd("QUIT", "221").await;
    node.shut_down().await;
}

#[tokio::test]
async fn connections_over_the_total_limit_get_421() {
    let node = limited(|c| {
        c.max_inbound_connection = CountLimit::At(2);
        c.max_inbound_connection_percentage_per_source = 100;
    })
    .start()
    .await;
    let mut a = connect_from(&node, "127.0.0.3").await;
    a.expect("220").await;
    let mut b = connect_from(&node, "127.0.0.4").await;
    b.expect("220").await;
    let mut c = connect_from(&node, "127.0.0.5").await;
    c.expect("421 4.3.2").await;
    assert!(c.closed().await);
    node.shut_down().await;
}

#[tokio::test]
async fn one_source_gets_only_its_percentage_of_the_free_places() {
    // 10 places, 20 % each: the first session from an address leaves 9
    // free, whose 20 % is one: the address has it.
    let node = limited(|c| {
        c.max_inbound_connection = CountLimit::At(10);
        c.max_inbound_connection_percentage_per_source = 20;
    })
    .start()
    .await;
    let mut a = connect_from(&node, "127.0.0.6").await;
    a.expect("220").await;
    let mut again = connect_from(&node, "127.0.0.6").await;
    again.expect("421 4.3.2").await;
    let mut b = connect_from(&node, "127.0.0.7").await;
    b.expect("220").await;
    node.shut_down().await;
}

#[tokio::test]
async fn a_busy_session_ends_at_the_connection_timeout() {
    let node = limited(|c| c.connection_timeout = Duration::from_millis(500))
        .start()
        .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    // Never idle: a NOOP every 50 ms, until the session is ended.
    let mut answered = 0;
    let last = loop {
        c.send("NOOP\r\n").await;
        let reply = c.reply().await;
        if reply.code() != 250 {
            break reply;
        }
        answered += 1;
        assert!(answered < 1000, "the session never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(last.code(), 421, "{last}");
    assert!(last.to_string().contains("4.4.2"), "{last}");
    assert!(c.closed().await);
    assert_eq!(node.records(1).await[0].end, SessionEnd::Timeout);
    node.shut_down().await;
}

#[tokio::test]
async fn a_command_line_that_trickles_is_cut_off() {
    let node = limited(|c| c.line_timeout = Duration::from_millis(400))
        .start()
        .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    // One byte every 50 ms: each read is prompt, the line never ends.
    let line = "NOOP and a very long argument that keeps coming ".repeat(20);
    let mut cut = false;
    for byte in line.as_bytes() {
        if c.stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(50), c.stream.read(&mut buf)).await {
            c.parser.feed(&buf[..n]);
            cut = true;
            break;
        }
    }
    assert!(cut, "the whole line trickled in without the session ending");
    c.expect("421 4.4.2").await;
    assert!(c.closed().await);
    node.shut_down().await;
}

#[tokio::test]
async fn message_data_below_the_minimum_rate_is_cut_off_and_not_queued() {
    let node = limited(|c| {
        c.line_timeout = Duration::from_millis(300);
        c.min_data_rate = 1000;
    })
    .start()
    .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250").await;
    c.cmd("RCPT TO:<bob@local.test>", "250").await;
    c.cmd("DATA", "354").await;
    c.send("Subject: slow\r\n\r\n").await;
    // 20 octets a second against 1000 required.
    let mut cut = false;
    for _ in 0..200 {
        if c.stream.write_all(b"x").await.is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(50), c.stream.read(&mut buf)).await {
            c.parser.feed(&buf[..n]);
            cut = true;
            break;
        }
    }
    assert!(cut, "trickled data was accepted for 10 seconds");
    c.expect("421 4.4.2").await;
    assert!(c.closed().await);
    assert!(node.queue.ids().unwrap().is_empty());
    node.shut_down().await;
}

#[tokio::test]
async fn too_many_protocol_errors_end_the_session_with_421_470() {
    let node = limited(|c| c.max_protocol_errors = CountLimit::At(3))
        .start()
        .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("XYZZY", "500").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250").await;
    c.cmd("RCPT TO:<x@elsewhere.test>", "550 5.7.1").await;
    // Pipelined probes: the third error is answered, then 421.
    c.send("RCPT TO:<y@elsewhere.test>\r\nRCPT TO:<z@elsewhere.test>\r\nRCPT TO:<w@elsewhere.test>\r\n")
        .await;
    c.expect("550 5.7.1").await;
    c.expect("421 4.7.0").await;
    assert!(c.closed().await);
    assert_eq!(node.records(1).await[0].end, SessionEnd::TooManyErrors);
    node.shut_down().await;
}

#[tokio::test]
async fn refusals_to_unauthenticated_sessions_are_held_back_by_the_tarpit() {
    // A tarpit far longer than the wait below: the refusal cannot come
    // early however slow the machine, while acceptances come at once.
    let node = limited(|c| c.tarpit_interval = Duration::from_secs(60))
        .start()
        .await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250").await;
    c.cmd("RCPT TO:<bob@local.test>", "250").await;
    c.send("RCPT TO:<x@elsewhere.test>\r\n").await;
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(700), c.stream.read(&mut buf)).await;
    assert!(early.is_err(), "the 550 came without the tarpit: {early:?}");
    drop(c);
    node.shut_down().await;
}

#[tokio::test]
async fn without_a_tarpit_refusals_come_at_once() {
    let node = limited(|c| c.tarpit_interval = Duration::ZERO).start().await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250").await;
    c.cmd("RCPT TO:<x@elsewhere.test>", "550 5.7.1").await;
    c.cmd("QUIT", "221").await;
    node.shut_down().await;
}

#[tokio::test]
async fn forged_authentication_results_are_removed_and_bad_headers_refused() {
    let node = Setup::new().start().await;
    let mut c = node.connect().await;
    c.cmd("EHLO client.fabrikam.test", "250").await;
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250").await;
    c.cmd("RCPT TO:<bob@local.test>", "250").await;
    c.cmd("DATA", "354").await;
    c.send(
        "Authentication-Results: mx.local.test; tls=pass (domain-secured: mutual TLS)\r\n\
         Authentication-Results: node.local.test; dkim=pass\r\n\
         Authentication-Results: mx.google.com; spf=pass\r\n\
         From: a@fabrikam.test\r\n\r\nHi.\r\n.\r\n",
    )
    .await;
    c.expect("250 2.0.0").await;
    // A line that is not a field ends nothing: the message is refused.
    c.cmd("MAIL FROM:<a@fabrikam.test>", "250").await;
    c.cmd("RCPT TO:<bob@local.test>", "250").await;
    c.cmd("DATA", "354").await;
    c.send(
        "From: a@fabrikam.test\r\nX Odd Name: v\r\nX-Postern-Organization-AuthAs: Partner\r\n\r\nHi.\r\n.\r\n",
    )
    .await;
    c.expect("550 5.6.0").await;
    // The session goes on.
    c.cmd("NOOP", "250").await;
    c.cmd("QUIT", "221").await;
    let (_, body) = node.only_message();
    assert!(!body.contains("mx.local.test; tls=pass"), "{body}");
    assert!(!body.contains("node.local.test; dkim"), "{body}");
    assert!(
        body.contains("Authentication-Results: mx.google.com; spf=pass"),
        "{body}"
    );
    node.shut_down().await;
}

/// The process's resident set and its peak so far, in KiB (/proc).
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_30_mb_messages_keep_memory_bounded() {
    const SIZE: usize = 30 * 1024 * 1024;
    let node = Setup::new().start().await;
    let (before, _) = rss_kib();
    let mut sessions = Vec::new();
    for n in 0..8 {
        let addr = node.addr;
        sessions.push(tokio::spawn(async move {
            let mut c = Client::new(TcpStream::connect(addr).await.unwrap());
            c.expect("220").await;
            c.cmd("EHLO big.fabrikam.test", "250").await;
            c.cmd("MAIL FROM:<a@fabrikam.test>", "250").await;
            c.cmd("RCPT TO:<bob@local.test>", "250").await;
            c.cmd("DATA", "354").await;
            c.send(&format!("Subject: big {n}\r\n\r\n")).await;
            // One 64 KiB buffer, written again and again: the client side
            // of this process stays small.
            let line = format!("{}\r\n", "x".repeat(998));
            let chunk = line.repeat(64);
            let mut sent = 0;
            while sent < SIZE {
                c.stream.write_all(chunk.as_bytes()).await.unwrap();
                sent += chunk.len();
            }
            c.send(".\r\n").await;
            let reply = tokio::time::timeout(Duration::from_secs(120), c.reply())
                .await
                .unwrap();
            assert_eq!(reply.code(), 250, "{reply}");
            c.cmd("QUIT", "221").await;
            sent
        }));
    }
    let mut total = 0;
    for s in sessions {
        total += s.await.unwrap();
    }
    let (_, peak) = rss_kib();
    let growth = peak.saturating_sub(before);
    eprintln!("8 x 30 MB: RSS {before} KiB before, peak {peak} KiB, growth {growth} KiB");
    assert!(total >= 8 * SIZE);
    assert!(growth < 64 * 1024, "RSS grew {growth} KiB receiving 8 x 30 MB");
    // Every message is whole in the queue.
    let ids = node.queue.ids().unwrap();
    assert_eq!(ids.len(), 8);
    let body = node.queue.body(ids[0]).unwrap().unwrap();
    assert!(body.len() > SIZE, "{}", body.len());
    node.shut_down().await;
}
