//! Debian's Dovecot as the mailbox server of a test: `dovecot -F` from a
//! configuration written into the test's own directory (nothing in
//! /etc/dovecot is read), speaking only LMTP on a free loopback port,
//! with STARTTLS (a self-signed certificate made by openssl), users from
//! a passwd-file, and each user's Maildir at `DIR/mail/USER/`. Stopped
//! (SIGTERM) when dropped.
//!
//! Dovecot never writes mail as root: under root (as the test script
//! runs) mail is written as `nobody`, so the mail directory belongs to
//! uid 65534 and the directories above it are made traversable.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::lab::free_port;
use postern_tests::require_tool;

use super::maildir;

/// The uid and gid mail is written as when the test runs as root.
const NOBODY: u32 = 65534;

pub struct Dovecot {
    child: Child,
    pub dir: PathBuf,
    pub addr: SocketAddr,
}

fn program() -> PathBuf {
    ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| require_tool("dovecot"))
}

fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Dovecot {
    /// Starts Dovecot in `dir` knowing the mailboxes `users` (full
    /// addresses) and waits for its LMTP greeting.
    pub fn start(dir: &Path, users: &[&str]) -> Self {
        assert!(
            Path::new("/usr/lib/dovecot/lmtp").is_file(),
            "dovecot-lmtpd is not installed: run the tests with scripts/test.sh, which installs it"
        );
        std::fs::create_dir_all(dir.join("base")).unwrap();
        std::fs::create_dir_all(dir.join("mail")).unwrap();
        let root = std::fs::metadata(dir).unwrap().uid() == 0;
        let (mail_uid, internal_user) = if root {
            // Traversable (not listable) down to the mail directory.
            for d in dir.ancestors().skip(1).take(2) {
                let mode = std::fs::metadata(d).unwrap().permissions().mode();
                if mode & 0o001 == 0 {
                    std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o011)).unwrap();
                }
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
            std::os::unix::fs::chown(dir.join("mail"), Some(NOBODY), Some(NOBODY)).unwrap();
            (NOBODY.to_string(), "root".to_owned())
        } else {
            let uid = std::fs::metadata(dir).unwrap().uid();
            (uid.to_string(), user_name())
        };
        let out = Command::new(require_tool("openssl"))
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=mailstore.test"])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let passwd: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}unused:::::\n"))
            .collect();
        std::fs::write(dir.join("users"), passwd).unwrap();
        for _ in 0..5 {
            let addr = free_port();
            let d = dir.display();
            let conf = format!(
                "base_dir = {d}/base
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = lmtp
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
default_internal_user = {internal_user}
default_internal_group = {internal_user}
default_login_user = {internal_user}
first_valid_uid = 1
mail_uid = {mail_uid}
mail_gid = {mail_uid}
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = {d}/users
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
service lmtp {{
  inet_listener lmtp {{
    address = {ip}
    port = {port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
service anvil {{
  chroot =
}}
",
                ip = addr.ip(),
                port = addr.port(),
            );
            let conf_path = dir.join("dovecot.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let _ = std::fs::remove_dir_all(dir.join("base"));
            std::fs::create_dir_all(dir.join("base")).unwrap();
            let mut child = Command::new(program())
                .arg("-F")
                .arg("-c")
                .arg(&conf_path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Self {
                        child,
                        dir: dir.to_owned(),
                        addr,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "dovecot did not start:\n{}",
            std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
        );
    }

    /// `lmtp://IP:PORT`, for `accepted-domain … --delivery`.
    pub fn url(&self) -> String {
        format!("lmtp://{}", self.addr)
    }

    /// The messages in `user`'s Maildir, as Dovecot stored them.
    pub fn mailbox(&self, user: &str) -> Vec<String> {
        maildir(&self.dir.join("mail").join(user))
    }

    /// Dovecot's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its lmtp and auth children.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
