//! A real etcd cluster for tests and benchmarks: Debian's `etcd` binary,
//! `members` processes on loopback ports picked at run time, each with its
//! own data directory; members can be stopped and started again, the
//! history compacted with `etcdctl`, and everything is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::lab::free_port;

struct Member {
    name: String,
    client: String,
    peer: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster on loopback.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial: String,
}

impl EtcdCluster {
    /// Starts `members` members under `dir` and waits until the cluster is healthy.
    pub fn start(dir: &Path, members: usize) -> anyhow::Result<Self> {
        let members: Vec<Member> = (1..=members)
            .map(|n| Member {
                name: format!("etcd{n}"),
                client: format!("http://{}", free_port()),
                peer: format!("http://{}", free_port()),
                dir: dir.join(format!("etcd{n}")),
                log: dir.join(format!("etcd{n}.log")),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self { members, initial };
        for i in 0..cluster.members.len() {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy()?;
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let initial = self.initial.clone();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.dir)
            .args([
                "--listen-client-urls",
                &m.client,
                "--advertise-client-urls",
                &m.client,
            ])
            .args([
                "--listen-peer-urls",
                &m.peer,
                "--initial-advertise-peer-urls",
                &m.peer,
            ])
            .args(["--initial-cluster", &initial, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "postern-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn etcd (apt-get install etcd-server)")?;
        m.child = Some(child);
        Ok(())
    }

    /// The client endpoints, comma-separated (what `--etcd-endpoints` takes).
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The client endpoints of running members.
    fn running(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until every running member answers and the cluster can write.
    pub fn wait_healthy(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .etcdctl(&["put", "/postern-test/health", "ok"])
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("etcd did not become healthy; logs:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `etcdctl` against the running members.
    pub fn etcdctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.running(), "--command-timeout", "5s"])
            .args(args)
            .output()
            .context("run etcdctl (apt-get install etcd-client)")
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> anyhow::Result<i64> {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        v.as_array()
            .and_then(|a| a.first())
            .and_then(|m| m["Status"]["header"]["revision"].as_i64())
            .context("no revision in etcdctl endpoint status")
    }

    /// Compacts the history up to the current revision.
    pub fn compact(&self) -> anyhow::Result<()> {
        let revision = self.revision()?.to_string();
        let out = self.etcdctl(&["compact", &revision, "--physical"])?;
        if !out.status.success() {
            bail!("etcdctl compact: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops member `i` with SIGSTOP: its sockets stay open and answer
    /// nothing, like a member whose machine vanished.
    pub fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-STOP")
    }

    /// Lets a paused member `i` run again (SIGCONT).
    pub fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-CONT")
    }

    fn signal(&mut self, i: usize, signal: &str) -> anyhow::Result<()> {
        let Some(child) = self.members[i].child.as_ref() else {
            bail!("etcd member {i} is not running");
        };
        let status = std::process::Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} of etcd member {i} failed");
        }
        Ok(())
    }

    /// Starts member `i` again on its data directory.
    pub fn start_member(&mut self, i: usize) -> anyhow::Result<()> {
        if self.members[i].child.is_none() {
            self.spawn(i)?;
        }
        Ok(())
    }

    /// Every member's log.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {}:\n{}",
                    m.name,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            let _ = self.resume(i);
            self.kill(i);
        }
    }
}
