//! Helpers shared by the TLS-policy and Postfix-partner scenarios: an
//! organisation (hub + subscribed edge) on loopback with its own test CA,
//! Postfix instances configured in a temp dir (as `bench/postfix-chain.sh`
//! does), and Postfix's `smtp-sink` as a peer without STARTTLS.

#![allow(dead_code, clippy::unwrap_used)]

pub mod dnsmasq;
pub mod dovecot;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role, require_tool, sh};

pub struct Org {
    pub domain: &'static str,
    pub hub: NodeProcess,
    pub edge: NodeProcess,
    /// Further edges of the organisation.
    pub more_edges: Vec<NodeProcess>,
    /// SMTP endpoints of every edge, edge1 first.
    pub edge_smtps: Vec<String>,
    pub edge_smtp: String,
    pub hub_submission: String,
    pub edge_metrics: std::net::SocketAddr,
    pub hub_dir: PathBuf,
}

/// An organisation's CA and its edge certificates (naming the domain too,
/// as domain security asks).
pub fn make_pki(dir: &Path, domain: &str, edges: usize) {
    sh(
        dir,
        &format!(
            "mkdir -p {domain} && cd {domain}
             openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
               -subj '/CN={domain} Test Root CA' -addext 'basicConstraints=critical,CA:TRUE' \
               -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null"
        ),
    );
    for n in 1..=edges {
        sh(
            dir,
            &format!(
                "cd {domain}
                 openssl req -newkey rsa:2048 -nodes -keyout edge{n}.key -out edge{n}.csr -subj '/CN=edge{n}.{domain}' 2>/dev/null
                 printf 'subjectAltName=DNS:edge{n}.{domain},DNS:{domain},DNS:mail.{domain}\\nextendedKeyUsage=serverAuth,clientAuth\\nbasicConstraints=CA:FALSE\\n' > edge{n}.ext
                 openssl x509 -req -in edge{n}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile edge{n}.ext -out edge{n}.pem 2>/dev/null
                 cat edge{n}.pem edge{n}.key > edge{n}-bundle.pem"
            ),
        );
    }
}

/// Starts edge `n` of `domain`, imports its CA certificate (before the
/// subscription pins it), subscribes it to `hub` and sets its receive
/// connector as the seed does. Returns it, its SMTP endpoint and metrics address.
pub fn start_edge(
    dir: &Path,
    domain: &str,
    n: usize,
    hub: &NodeProcess,
) -> (NodeProcess, String, std::net::SocketAddr) {
    start_edge_with(dir, domain, n, hub, &[])
}

/// Like `start_edge`, with extra `edge run` flags (`--dns-server`).
pub fn start_edge_with(
    dir: &Path,
    domain: &str,
    n: usize,
    hub: &NodeProcess,
    extra: &[&str],
) -> (NodeProcess, String, std::net::SocketAddr) {
    let smtp = free_port().to_string();
    let sync = free_port().to_string();
    let metrics = free_port();
    let metrics_bind = metrics.to_string();
    let edge = NodeProcess::start_with(
        Role::Edge,
        &dir.join(format!("{domain}-edge{n}")),
        &format!("edge{n}.{domain}"),
        &[
            "--smtp-bind",
            &smtp,
            "--edgesync-bind",
            &sync,
            "--metrics-bind",
            &metrics_bind,
        ]
        .iter()
        .chain(extra)
        .copied()
        .collect::<Vec<_>>(),
    )
    .unwrap();
    let bundle = dir.join(domain).join(format!("edge{n}-bundle.pem"));
    edge.ok(&[
        "cert",
        "import",
        "--path",
        bundle.to_str().unwrap(),
        "--enable-services",
        "smtp",
    ]);
    let sub = dir.join(format!("{domain}-edge{n}.sub"));
    edge.ok(&["edge-subscription", "new", "--file", sub.to_str().unwrap()]);
    hub.ok(&["edge-subscription", "import", "--file", sub.to_str().unwrap()]);
    // The seed: Set-ReceiveConnector Internet -DomainSecureEnabled $true -AuthMechanism TLS
    // and -ProtocolLoggingLevel Verbose, on the edge.
    let connector = format!("Default internal receive connector edge{n}");
    edge.ok(&[
        "receive-connector",
        "set",
        &connector,
        "--domain-secure-enabled",
        "--auth-mechanism",
        "tls",
        "--protocol-logging-level",
        "verbose",
    ]);
    (edge, smtp, metrics)
}

/// A hub with `edges` subscribed edges for `domain` (PKI made by
/// `make_pki`), a mailbox `user@domain`, client submission on the hub, and
/// each edge's default receive connector domain-secure-enabled.
pub fn start_org(dir: &Path, domain: &'static str, user: &str, edges: usize) -> Org {
    start_org_with(dir, domain, user, edges, &[])
}

/// Like `start_org`, with extra flags for every edge (`--dns-server`).
pub fn start_org_with(
    dir: &Path,
    domain: &'static str,
    user: &str,
    edges: usize,
    edge_extra: &[&str],
) -> Org {
    let hub_smtp = free_port().to_string();
    let hub_dir = dir.join(format!("{domain}-hub"));
    let hub = NodeProcess::start_with(
        Role::Hub,
        &hub_dir,
        &format!("hub1.{domain}"),
        &["--smtp-bind", &hub_smtp],
    )
    .unwrap();
    hub.ok(&["accepted-domain", "new", domain]);
    hub.ok(&["mailbox", "new", &format!("{user}@{domain}")]);
    let (edge, edge_smtp, edge_metrics) = start_edge_with(dir, domain, 1, &hub, edge_extra);
    let mut more_edges = Vec::new();
    let mut edge_smtps = vec![edge_smtp.clone()];
    for n in 2..=edges {
        let (e, smtp, _) = start_edge_with(dir, domain, n, &hub, edge_extra);
        more_edges.push(e);
        edge_smtps.push(smtp);
    }
    // Client submission on the hub, for loopback clients.
    let hub_submission = client_submission(&hub);
    Org {
        domain,
        hub,
        edge,
        more_edges,
        edge_smtps,
        edge_smtp,
        hub_submission,
        edge_metrics,
        hub_dir,
    }
}

impl Org {
    /// Both nodes' logs.
    pub fn logs(&self) -> String {
        format!(
            "--- hub:\n{}\n--- edge:\n{}",
            self.hub.log_text(),
            self.edge.log_text()
        )
    }

    /// Waits until the edge has send connector `name` (by EdgeSync), its
    /// JSON containing `expect`.
    pub fn wait_edge_connector(&self, name: &str, expect: &str) {
        wait_for(
            &format!("send connector {name} on the edge"),
            Duration::from_secs(30),
            || {
                let c = self.edge.cli(&["send-connector", "get", name, "--json"]);
                c.status.success() && String::from_utf8_lossy(&c.stdout).contains(expect)
            },
        );
    }

    /// Submits a message at the hub's client connector.
    pub fn submit(&self, from: &str, to: &str, subject: &str) {
        submit(
            &self.hub_submission,
            &format!("client.{}", self.domain),
            from,
            to,
            subject,
        );
    }

    /// A counter of the edge by its Exchange name (or metric name when it
    /// has none), summed over its labels (`postern counters --json`).
    pub fn edge_counter(&self, name: &str) -> u64 {
        let all = self.edge.json(&["counters"]);
        let list = all.as_array().cloned().unwrap_or_default();
        let found: Vec<&serde_json::Value> = list.iter().filter(|c| c["counter"] == name).collect();
        assert!(!found.is_empty(), "no counter {name:?} in {all}");
        found
            .iter()
            .map(|c| {
                c["value"]
                    .as_u64()
                    .or_else(|| c["value"].as_f64().map(|v| v as u64))
                    .unwrap_or(0)
            })
            .sum()
    }
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Like `wait_for`, but calls `context` for the panic message.
pub fn wait_or(what: &str, timeout: Duration, mut f: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The messages in a Maildir's `new` and `cur`.
pub fn maildir(path: &Path) -> Vec<String> {
    ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(path.join(sub)).into_iter().flatten().flatten())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// Every file under `dir`, concatenated (protocol logs).
pub fn read_tree(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&read_tree(&path));
        } else {
            text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
        }
    }
    text
}

/// A hub of a several-hub organisation on etcd at `endpoints`:
/// `hub{n}.adatum.com` in `dir/hub{n}`.
pub fn etcd_hub(dir: &Path, n: usize, endpoints: &str) -> NodeProcess {
    let smtp = free_port().to_string();
    NodeProcess::start_with(
        Role::Hub,
        &dir.join(format!("hub{n}")),
        &format!("hub{n}.adatum.com"),
        &[
            "--store",
            "etcd",
            "--etcd-endpoints",
            endpoints,
            "--smtp-bind",
            &smtp,
        ],
    )
    .unwrap()
}

/// Client submission on `hub` for loopback clients; returns its port.
pub fn client_submission(hub: &NodeProcess) -> String {
    let port = free_port().to_string();
    hub.ok(&[
        "receive-connector",
        "new",
        "Client Hub",
        "--bindings",
        &port,
        "--permission-groups",
        "clients",
        "--remote-ip-ranges",
        "127.0.0.0/8",
    ]);
    port
}

/// The messages delivered to a hub mailbox.
pub fn mailbox(hub_dir: &Path, domain: &str, user: &str) -> Vec<String> {
    maildir(&hub_dir.join("mailboxes").join(domain).join(user).join("Maildir"))
}

/// Submits a message with swaks at `server` (`ip:port`), saying `helo`;
/// `to` may list several recipients, comma-separated.
pub fn submit(server: &str, helo: &str, from: &str, to: &str, subject: &str) {
    let out = swaks(&[
        "--server",
        server,
        "--from",
        from,
        "--to",
        to,
        "--helo",
        helo,
        "--header",
        &format!("Subject: {subject}"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

pub fn swaks(args: &[&str]) -> std::process::Output {
    Command::new(require_tool("swaks")).args(args).output().unwrap()
}

/// A Postfix instance of Debian's package, running from its own config,
/// queue and data directories under `dir` (nothing in /etc/postfix is
/// changed), delivering its virtual mailboxes to `dir/mail/DOMAIN/USER/`.
/// Stopped when dropped.
pub struct Postfix {
    pub dir: PathBuf,
    pub port: u16,
    /// A second listener without any TLS demands, for test submissions.
    pub submit_port: u16,
}

impl Postfix {
    /// `mailboxes` are addresses delivered locally; `main_cf` is appended
    /// to main.cf (TLS, routing); `files` are written into the config
    /// directory first (maps).
    pub fn start(
        dir: &Path,
        name: &str,
        mailboxes: &[&str],
        main_cf: &str,
        files: &[(&str, String)],
    ) -> Self {
        require_tool("postfix");
        let port = free_port().port();
        let submit_port = free_port().port();
        let dir = dir.to_path_buf();
        let etc = dir.join("etc");
        for d in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let domains: std::collections::BTreeSet<&str> = mailboxes
            .iter()
            .filter_map(|m| m.split_once('@'))
            .map(|(_, d)| d)
            .collect();
        let vmailbox: String = mailboxes
            .iter()
            .map(|m| {
                let (user, domain) = m.split_once('@').unwrap();
                format!("{m} {domain}/{user}/\n")
            })
            .collect();
        std::fs::write(etc.join("vmailbox"), vmailbox).unwrap();
        for (file, text) in files {
            std::fs::write(etc.join(file), text).unwrap();
        }
        let d = dir.display().to_string();
        let main = format!(
            "compatibility_level = 3.6
config_directory = {d}/etc
queue_directory = {d}/queue
data_directory = {d}/data
myhostname = {name}
mydomain = {name}
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
syslog_name = postfix-test
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_banner = $myhostname ESMTP
smtpd_tls_loglevel = 1
smtp_tls_loglevel = 1
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {d}/mail
virtual_mailbox_maps = texthash:{d}/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 1
{main_cf}
",
            domains = domains.into_iter().collect::<Vec<_>>().join(" "),
        );
        std::fs::write(etc.join("main.cf"), main).unwrap();
        let submit = format!(
            "127.0.0.1:{submit_port} inet n - n - - smtpd -o smtpd_tls_security_level=none -o smtpd_tls_ask_ccert=no -o smtpd_tls_req_ccert=no"
        );
        // The guard first, so a failed start is stopped too.
        let pf = Self {
            dir,
            port,
            submit_port,
        };
        sh(
            &pf.dir,
            &format!(
                "chmod 755 {d} {d}/..
                 chown postfix {d}/data
                 chown nobody {d}/mail
                 cp /etc/postfix/master.cf etc/master.cf
                 cp /etc/postfix/dynamicmaps.cf etc/ 2>/dev/null || true
                 [ -d /etc/postfix/dynamicmaps.cf.d ] && cp -r /etc/postfix/dynamicmaps.cf.d etc/ || true
                 postconf -c etc -F '*/*/chroot = n'
                 postconf -c etc -MX smtp/inet
                 postconf -c etc -M '127.0.0.1:{port}/inet = 127.0.0.1:{port} inet n - n - - smtpd'
                 postconf -c etc -M '127.0.0.1:{submit_port}/inet = {submit}'
                 postfix -c {d}/etc check
                 postfix -c {d}/etc start 2>&1"
            ),
        );
        wait_or(
            "Postfix to listen",
            Duration::from_secs(20),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && std::net::TcpStream::connect(("127.0.0.1", submit_port)).is_ok()
            },
            || pf.log(),
        );
        pf
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }

    /// Messages delivered to `user@domain`.
    pub fn mailbox(&self, domain: &str, user: &str) -> Vec<String> {
        maildir(&self.dir.join("mail").join(domain).join(user))
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let etc = self.dir.join("etc");
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&etc)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // master exits asynchronously.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && Command::new("postfix")
                .arg("-c")
                .arg(&etc)
                .arg("status")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Postfix's `smtp-sink` (no STARTTLS), dumping every transaction into
/// `dir/msg.*`. Killed when dropped.
pub struct SmtpSink {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
}

impl SmtpSink {
    pub fn start(dir: &Path) -> Self {
        let bin = require_tool("smtp-sink");
        std::fs::create_dir_all(dir).unwrap();
        sh(dir, "chmod 777 .");
        let port = free_port().port();
        let child = Command::new(bin)
            .args(["-u", "nobody", "-d"])
            .arg(dir.join("msg."))
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("smtp-sink to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Self {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// The transactions received so far.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("msg."))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A hub alone (the seed's one-server organisation): a mailbox, client
/// submission and an Internet send connector.
pub fn lone_hub(dir: &Path, smart_host: &str) -> (NodeProcess, String) {
    let hub = NodeProcess::start_with(
        Role::Hub,
        &dir.join("hub"),
        "hub1.contoso.test",
        &["--smtp-bind", &free_port().to_string()],
    )
    .unwrap();
    hub.ok(&["accepted-domain", "new", "contoso.test"]);
    hub.ok(&["mailbox", "new", "kim@contoso.test"]);
    let submission = free_port().to_string();
    hub.ok(&[
        "receive-connector",
        "new",
        "Client Hub",
        "--bindings",
        &submission,
        "--permission-groups",
        "clients",
        "--remote-ip-ranges",
        "127.0.0.0/8",
    ]);
    hub.ok(&[
        "send-connector",
        "new",
        "Internet",
        "--address-spaces",
        "*;100",
        "--smart-hosts",
        smart_host,
    ]);
    (hub, submission)
}
