//! Support for Postern's integration tests: the `postern` binary, node
//! processes on their own data directories, and real foreign tools
//! (openssl, swaks, Postfix) that the test script installs.

pub mod etcd;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Path of the `postern` binary, built once per test process.
pub fn postern_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "postern-cli",
                "--bin",
                "postern",
                "--manifest-path",
            ])
            .arg(&manifest)
            .status()
            .expect("cargo build of postern runs");
        assert!(status.success(), "cargo build of postern failed");
        // target/<profile>/deps/<test-binary> → target/<profile>/postern
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target dir");
        let bin = profile_dir.join("postern");
        assert!(bin.exists(), "{} not found after build", bin.display());
        bin
    })
}

/// Fails the test with a clear message when a required tool is missing;
/// `scripts/test.sh` installs them.
pub fn require_tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_default();
    found.unwrap_or_else(|| {
        panic!("{name} is not installed: run the tests with scripts/test.sh, which installs it")
    })
}

/// Which role a node process runs.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// `postern hub run`.
    Hub,
    /// `postern edge run`.
    Edge,
}

/// A `postern <role> run` process, killed when dropped.
pub struct NodeProcess {
    child: Option<Child>,
    /// Its data directory (what `--node` takes).
    pub dir: PathBuf,
    role: Role,
    fqdn: String,
    log: PathBuf,
    extra: Vec<String>,
}

impl NodeProcess {
    /// Starts a node in `dir` with FQDN `fqdn` and waits until its admin API answers.
    pub fn start(role: Role, dir: &Path, fqdn: &str) -> anyhow::Result<Self> {
        Self::start_with(role, dir, fqdn, &[])
    }

    /// Like `start`, with extra `run` flags (later flags win over the defaults).
    pub fn start_with(role: Role, dir: &Path, fqdn: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let mut node = Self {
            child: None,
            dir: dir.to_path_buf(),
            role,
            fqdn: fqdn.to_owned(),
            log: dir.with_extension("log"),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let role = match self.role {
            Role::Hub => "hub",
            Role::Edge => "edge",
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(postern_bin())
            .args([role, "run", "--data-dir"])
            .arg(&self.dir)
            .args(["--fqdn", &self.fqdn])
            .args(defaults_unless_given(&self.extra))
            .args(&self.extra)
            .env_remove("POSTERN_NODE")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn postern")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                bail!("node exited with {status}; log:\n{}", self.log_text());
            }
            if self.dir.join("admin.sock").exists() && self.cli(&["node-info"]).status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("node did not become ready; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `postern --node DIR <args>`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(postern_bin())
            .arg("--node")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run postern cli")
    }

    /// Runs a CLI verb that must succeed and returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "postern {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a CLI verb that must fail and returns its standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "postern {args:?} unexpectedly succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs a read verb with `--json` and parses the output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).expect("valid JSON")
    }

    /// Stops the node with SIGTERM and waits for it.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    child.kill()?;
                    bail!("node did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the node again after `stop` or `kill9`.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.spawn()
    }

    /// Stops (if running) and starts the node again on the same data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }
}

/// Loopback port-0 bindings for the flags `extra` does not set itself.
fn defaults_unless_given(extra: &[String]) -> Vec<String> {
    let mut args = Vec::new();
    for flag in ["--smtp-bind", "--edgesync-bind"] {
        if !extra.iter().any(|e| e == flag) {
            args.push(flag.to_owned());
            args.push("127.0.0.1:0".to_owned());
        }
    }
    args
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a shell command in `dir`, failing the test when it fails.
pub fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SHA-1 fingerprint openssl prints for a PEM certificate, colons removed.
pub fn openssl_thumbprint(dir: &Path, pem: &str) -> String {
    let out = sh(dir, &format!("openssl x509 -in {pem} -noout -fingerprint -sha1"));
    out.trim().rsplit('=').next().unwrap_or_default().replace(':', "")
}

/// Has the openssl CA in `dir` (ca.pem / ca.key) issue `<name>.pem` /
/// `<name>.key` for `cn`, valid only between the two dates
/// (`YYYYMMDDHHMMSSZ`): how tests make expired certificates with
/// openssl 3.0, whose `x509` command cannot backdate.
pub fn openssl_issue_dated(dir: &Path, name: &str, cn: &str, start: &str, end: &str) {
    sh(
        dir,
        &format!(
            "mkdir -p ca-db && touch ca-db/index.txt && [ -f ca-db/serial ] || echo 1000 > ca-db/serial
             cat > ca-db/ca.cnf <<CNF
[ca]
default_ca = CA_default
[CA_default]
database = ca-db/index.txt
new_certs_dir = ca-db
serial = ca-db/serial
default_md = sha256
policy = policy_any
unique_subject = no
x509_extensions = leaf_ext
[leaf_ext]
basicConstraints = CA:FALSE
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = DNS:{cn}
[policy_any]
commonName = supplied
CNF
             openssl req -newkey rsa:2048 -nodes -keyout {name}.key -out {name}.csr -subj '/CN={cn}' 2>/dev/null
             openssl ca -batch -config ca-db/ca.cnf -cert ca.pem -keyfile ca.key -in {name}.csr -out {name}.pem \
                -startdate {start} -enddate {end} -notext 2>/dev/null"
        ),
    );
}

pub mod lab;
