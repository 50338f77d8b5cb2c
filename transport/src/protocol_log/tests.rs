//! Tests of the whole log over temporary directories, with a clock the
//! tests move.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::*;

#[derive(Debug)]
struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    fn at(t: OffsetDateTime) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t)))
    }
    fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

const START: OffsetDateTime = datetime!(2026-11-23 09:00:00 UTC);

fn config(clock: &Arc<TestClock>) -> LogConfig {
    LogConfig {
        clock: clock.clone(),
        ..LogConfig::default()
    }
}

fn endpoints() -> Endpoints {
    Endpoints {
        local: "10.0.0.1:25".parse().unwrap(),
        remote: "203.0.113.5:41234".parse().unwrap(),
    }
}

fn session(log: &Arc<ProtocolLog>, id: u64) -> SessionLogger {
    log.session(
        ProtocolLoggingLevel::Verbose,
        "EDGE1\\Internet".into(),
        SessionId::from(id),
        endpoints(),
    )
}

/// File names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The lines of a file that are not headers.
fn events(path: PathBuf) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.ends_with("\r\n"));
    text.split_terminator("\r\n")
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn header_for(log_type: &str, date: &str) -> String {
    format!(
        "#Software: Postern\r\n#Version: {}\r\n#Log-type: {log_type}\r\n#Date: {date}\r\n\
         #Fields: date-time,connector-id,session-id,sequence-number,local-endpoint,remote-endpoint,event,data,context\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

#[test]
fn header_lines_are_exchanges() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let recv = ProtocolLog::open(tmp.path(), Direction::Receive, config(&clock)).unwrap();
    let send = ProtocolLog::open(&tmp.path().join("s"), Direction::Send, config(&clock)).unwrap();
    drop((recv, send));
    assert_eq!(names(tmp.path()), ["RECV20261123-1.LOG", "s"]);
    assert_eq!(
        fs::read_to_string(tmp.path().join("RECV20261123-1.LOG")).unwrap(),
        header_for("SMTP Receive Protocol Log", "2026-11-23T09:00:00.000Z")
    );
    assert_eq!(
        fs::read_to_string(tmp.path().join("s/SEND20261123-1.LOG")).unwrap(),
        header_for("SMTP Send Protocol Log", "2026-11-23T09:00:00.000Z")
    );
}

#[test]
fn a_receive_session_reads_like_exchange() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let log = ProtocolLog::open(tmp.path(), Direction::Receive, config(&clock)).unwrap();
    let mut s = session(&log, 0x08CD_4A1B_2C3D_4E5F);
    clock.advance(Duration::milliseconds(1123));
    s.connect();
    s.send("220 edge1.adatum.com Postern ready");
    s.receive("EHLO mail.northwindtraders.com\r\n");
    s.send("250-edge1.adatum.com Hello, pleased to meet you");
    s.send("250 STARTTLS");
    s.receive("STARTTLS");
    s.send("220 2.0.0 Ready to start TLS");
    s.info(format_args!(
        "TLS negotiated: {} {}",
        "TLSv1.3", "TLS13_AES_256_GCM_SHA384"
    ));
    s.info("Remote certificate: subject CN=mail.northwindtraders.com, issuer CN=\"Root\", thumbprint AB");
    s.receive("MAIL FROM:<a@northwindtraders.com>");
    s.send("250 2.1.0 Sender OK");
    s.receive("DATA");
    s.send("354 Start mail input; end with <CRLF>.<CRLF>");
    s.receive("Subject: not for the log");
    s.receive(".");
    s.send("250 2.6.0 Queued mail for delivery");
    s.receive("AUTH PLAIN AHVzZXIAcGFzcw==");
    s.send("503 5.5.1 Not now");
    s.disconnect();
    log.flush().unwrap();

    let p = "2026-11-23T09:00:01.123Z,EDGE1\\Internet,08CD4A1B2C3D4E5F";
    let e = "10.0.0.1:25,203.0.113.5:41234";
    let want = [
        format!("{p},0,{e},+,,"),
        format!("{p},1,{e},>,220 edge1.adatum.com Postern ready,"),
        format!("{p},2,{e},<,EHLO mail.northwindtraders.com,"),
        format!("{p},3,{e},>,\"250-edge1.adatum.com Hello, pleased to meet you\","),
        format!("{p},4,{e},>,250 STARTTLS,"),
        format!("{p},5,{e},<,STARTTLS,"),
        format!("{p},6,{e},>,220 2.0.0 Ready to start TLS,"),
        format!("{p},7,{e},*,,TLS negotiated: TLSv1.3 TLS13_AES_256_GCM_SHA384"),
        format!(
            "{p},8,{e},*,,\"Remote certificate: subject CN=mail.northwindtraders.com, issuer CN=\"\"Root\"\", thumbprint AB\""
        ),
        format!("{p},9,{e},<,MAIL FROM:<a@northwindtraders.com>,"),
        format!("{p},10,{e},>,250 2.1.0 Sender OK,"),
        format!("{p},11,{e},<,DATA,"),
        format!("{p},12,{e},>,354 Start mail input; end with <CRLF>.<CRLF>,"),
        format!("{p},13,{e},>,250 2.6.0 Queued mail for delivery,"),
        format!("{p},14,{e},<,AUTH <redacted>,"),
        format!("{p},15,{e},>,503 5.5.1 Not now,"),
        format!("{p},16,{e},-,,"),
    ];
    assert_eq!(events(tmp.path().join("RECV20261123-1.LOG")), want);
}

#[test]
fn on_a_send_connector_our_commands_are_the_filtered_side() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let log = ProtocolLog::open(tmp.path(), Direction::Send, config(&clock)).unwrap();
    let mut s = session(&log, 1);
    s.connect();
    s.send("AUTH LOGIN");
    s.receive("334 VXNlcm5hbWU6");
    s.send("dXNlcg==");
    s.receive("235 2.7.0 OK");
    s.send("DATA");
    s.receive("354 go ahead");
    s.send("secret body");
    s.receive("250 OK");
    drop(s);
    log.flush().unwrap();
    let data: Vec<String> = events(tmp.path().join("SEND20261123-1.LOG"))
        .iter()
        .map(|l| l.splitn(7, ',').nth(6).unwrap().to_owned())
        .collect();
    assert_eq!(
        data,
        [
            "+,,",
            ">,AUTH <redacted>,",
            "<,334 VXNlcm5hbWU6,",
            ">,<redacted>,",
            "<,235 2.7.0 OK,",
            ">,DATA,",
            "<,354 go ahead,",
            "<,250 OK,",
            // Dropped while connected: the `-` line is still written.
            "-,,session ended without a disconnect",
        ]
    );
}

#[test]
fn sequence_numbers_are_per_session() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let log = ProtocolLog::open(tmp.path(), Direction::Receive, config(&clock)).unwrap();
    let mut a = session(&log, 0xA);
    let mut b = session(&log, 0xB);
    a.connect();
    b.connect();
    a.receive("EHLO a");
    b.receive("EHLO b");
    b.disconnect();
    a.disconnect();
    log.flush().unwrap();
    let got: Vec<(String, String)> = events(tmp.path().join("RECV20261123-1.LOG"))
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[2].to_owned(), f[3].to_owned())
        })
        .collect();
    let id = |n: u64| SessionId::from(n).to_string();
    let want = [
        (id(0xA), "0"),
        (id(0xB), "0"),
        (id(0xA), "1"),
        (id(0xB), "1"),
        (id(0xB), "2"),
        (id(0xA), "2"),
    ];
    assert_eq!(got, want.map(|(i, s)| (i, s.to_owned())));
}

#[test]
fn a_disabled_logger_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let log = ProtocolLog::open(tmp.path(), Direction::Receive, config(&clock)).unwrap();
    let mut s = log.session(
        ProtocolLoggingLevel::None,
        "x".into(),
        SessionId::from(1),
        endpoints(),
    );
    assert!(!s.is_enabled());
    s.connect();
    s.receive("EHLO a");
    s.info("nothing");
    drop(s);
    let mut d = SessionLogger::disabled();
    d.connect();
    // Nothing is even formatted.
    struct Boom;
    impl std::fmt::Display for Boom {
        fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            panic!("a disabled logger formatted its text")
        }
    }
    d.info(Boom);
    assert_eq!(d.session_id(), None);
    log.flush().unwrap();
    assert!(events(tmp.path().join("RECV20261123-1.LOG")).is_empty());
}

#[test]
fn files_rotate_by_size() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let header_len = header_for("SMTP Receive Protocol Log", "2026-11-23T09:00:00.000Z").len() as u64;
    let line_len = "2026-11-23T09:00:00.000Z,EDGE1\\Internet,0000000000000007,0,10.0.0.1:25,203.0.113.5:41234,<,NOOP 00000000000000000000,\r\n".len() as u64;
    // A header and two lines fit, three do not.
    let max = header_len + 2 * line_len;
    let cfg = LogConfig {
        max_file_size: max,
        ..config(&clock)
    };
    let log = ProtocolLog::open(tmp.path(), Direction::Receive, cfg).unwrap();
    let mut s = session(&log, 7);
    for i in 0..5 {
        s.receive(&format!("NOOP {i:0>20}"));
    }
    log.flush().unwrap();
    assert_eq!(
        names(tmp.path()),
        ["RECV20261123-1.LOG", "RECV20261123-2.LOG", "RECV20261123-3.LOG"]
    );
    let mut seen = Vec::new();
    for name in names(tmp.path()) {
        let path = tmp.path().join(&name);
        assert!(fs::metadata(&path).unwrap().len() <= max, "{name}");
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("#Software: Postern\r\n")
        );
        seen.extend(
            events(path)
                .into_iter()
                .map(|l| l.split(',').nth(3).unwrap().to_owned()),
        );
    }
    assert_eq!(seen, ["0", "1", "2", "3", "4"]);
}

#[test]
fn a_line_larger_than_a_file_still_gets_written() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let cfg = LogConfig {
        max_file_size: 64,
        ..config(&clock)
    };
    let log = ProtocolLog::open(tmp.path(), Direction::Receive, cfg).unwrap();
    let mut s = session(&log, 7);
    s.receive("EHLO a");
    s.receive("EHLO b");
    log.flush().unwrap();
    // One line per file, never an endless rotation.
    assert_eq!(names(tmp.path()), ["RECV20261123-1.LOG", "RECV20261123-2.LOG"]);
}

#[test]
fn files_rotate_when_the_utc_date_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(datetime!(2026-11-23 23:59:59.900 UTC));
    let log = ProtocolLog::open(tmp.path(), Direction::Send, config(&clock)).unwrap();
    let mut s = session(&log, 9);
    s.connect();
    clock.advance(Duration::milliseconds(200));
    s.send("EHLO edge1.adatum.com");
    log.flush().unwrap();
    assert_eq!(names(tmp.path()), ["SEND20261123-1.LOG", "SEND20261124-1.LOG"]);
    let second = fs::read_to_string(tmp.path().join("SEND20261124-1.LOG")).unwrap();
    assert!(second.starts_with(&header_for("SMTP Send Protocol Log", "2026-11-24T00:00:00.100Z")));
    assert_eq!(events(tmp.path().join("SEND20261124-1.LOG")).len(), 1);
    assert!(events(tmp.path().join("SEND20261124-1.LOG"))[0].contains(",1,"));
}

#[test]
fn a_restart_continues_the_numbering() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    fs::write(tmp.path().join("RECV20261122-7.LOG"), "yesterday").unwrap();
    fs::write(tmp.path().join("notes.txt"), "not ours").unwrap();
    for _ in 0..2 {
        let log = ProtocolLog::open(tmp.path(), Direction::Receive, config(&clock)).unwrap();
        session(&log, 1).connect();
        drop(log);
    }
    fs::write(tmp.path().join("RECV20261123-9.LOG"), "a gap").unwrap();
    drop(ProtocolLog::open(tmp.path(), Direction::Receive, config(&clock)).unwrap());
    assert_eq!(
        names(tmp.path()),
        [
            "RECV20261122-7.LOG",
            "RECV20261123-1.LOG",
            "RECV20261123-10.LOG",
            "RECV20261123-2.LOG",
            "RECV20261123-9.LOG",
            "notes.txt"
        ]
    );
    // The earlier files were not touched by the later runs.
    assert_eq!(events(tmp.path().join("RECV20261123-1.LOG")).len(), 2);
}

#[test]
fn the_directory_cap_deletes_the_oldest_files() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    fs::write(tmp.path().join("RECV20261101-3.LOG"), vec![b'x'; 300]).unwrap();
    fs::write(tmp.path().join("RECV20261122-1.LOG"), vec![b'x'; 300]).unwrap();
    fs::write(tmp.path().join("SEND20261101-1.LOG"), vec![b'x'; 300]).unwrap();
    let cfg = LogConfig {
        max_file_size: 500,
        max_dir_size: 1500,
        ..config(&clock)
    };
    let log = ProtocolLog::open(tmp.path(), Direction::Receive, cfg).unwrap();
    // 300 + 300 closed + a 500-byte allowance for the new file fit in 1500.
    assert_eq!(names(tmp.path()).len(), 4);
    let mut s = session(&log, 3);
    for i in 0..40 {
        s.receive(&format!("NOOP {i}"));
        clock.advance(Duration::seconds(1));
    }
    log.flush().unwrap();
    let left = names(tmp.path());
    // Oldest first: the November 1 and 22 files went; other logs are left.
    assert!(!left.contains(&"RECV20261101-3.LOG".to_owned()), "{left:?}");
    assert!(!left.contains(&"RECV20261122-1.LOG".to_owned()), "{left:?}");
    assert!(left.contains(&"SEND20261101-1.LOG".to_owned()), "{left:?}");
    let recv: Vec<&String> = left.iter().filter(|n| n.starts_with("RECV")).collect();
    let total: u64 = recv
        .iter()
        .map(|n| fs::metadata(tmp.path().join(n)).unwrap().len())
        .sum();
    assert!(total <= 1500, "{total} bytes in {recv:?}");
    // The newest lines survive.
    let newest = recv
        .iter()
        .max_by_key(|n| n[13..n.len() - 4].parse::<u32>().unwrap())
        .unwrap();
    assert!(
        events(tmp.path().join(newest))
            .last()
            .unwrap()
            .contains("NOOP 39")
    );
}

#[test]
fn nonsense_limits_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let cfg = LogConfig {
        max_file_size: 100,
        max_dir_size: 99,
        ..config(&clock)
    };
    let err = ProtocolLog::open(tmp.path(), Direction::Receive, cfg).unwrap_err();
    assert!(matches!(err, ProtocolLogError::Config(_)), "{err}");
}

#[test]
fn the_log_lives_under_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = TestClock::at(START);
    let log = ProtocolLog::open_in_data_dir(tmp.path(), Direction::Send, config(&clock)).unwrap();
    assert_eq!(log.dir(), tmp.path().join("logs/protocol/send"));
    assert_eq!(names(log.dir()), ["SEND20261123-1.LOG"]);
    assert_eq!(log.dropped_lines(), 0);
}
