//! A real DNS server for tests: `dnsmasq` as a child process on a free
//! loopback port, answering only from the records it is started with.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where dnsmasq is installed, if it is (`dnsmasq-base`; scripts/test.sh
/// installs it).
fn dnsmasq_path() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter().map(|d| d.join("dnsmasq")).find(|p| p.is_file())
}

/// A running dnsmasq; killed when dropped.
pub(crate) struct Dnsmasq {
    child: Child,
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dnsmasq {
    /// Starts dnsmasq with `records` (options such as `--mx-host=…`,
    /// `--host-record=…`, `--address=/nx.test/`); `None`, with a note on
    /// stderr, when dnsmasq is not installed, so the caller skips.
    pub(crate) fn start(records: &[&str]) -> Option<Self> {
        let Some(program) = dnsmasq_path() else {
            eprintln!("SKIPPED: dnsmasq is not installed (apt-get install dnsmasq-base)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // A port found free may be taken before dnsmasq binds it: retry.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let mut child = Command::new(&program)
                .args([
                    "--no-daemon",
                    "--conf-file=/dev/null",
                    "--no-resolv",
                    "--no-hosts",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                    "--log-facility=-",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--pid-file={}", dir.path().join("pid").display()))
                .args(records)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("dnsmasq on port {port} exited at start ({status}); retrying");
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Some(Self {
                        child,
                        addr,
                        _dir: dir,
                    });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("dnsmasq did not start");
    }
}
