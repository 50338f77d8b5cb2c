//! A node's data directory: set up on first start (identity, sled store,
//! a self-signed certificate for the FQDN enabled for SMTP, as Exchange
//! Setup does), reused on every later start.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use postern_model::{Domain, KeySpec, NodeIdentity, NodeName, NodeRole, Service, SubjectName};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::certs::{CertError, CertStore, NewCertificate};

/// What the node runner was started with (flags or `POSTERN_*` variables).
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The data directory, created on first start.
    pub data_dir: PathBuf,
    /// Hub or edge.
    pub role: NodeRole,
    /// Name; defaults to the first label of the FQDN.
    pub name: Option<NodeName>,
    /// FQDN; defaults to the machine's hostname.
    pub fqdn: Option<Domain>,
    /// Binding of the default receive connector made at setup.
    pub smtp_bind: String,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory could not be created or read.
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    /// Another process holds the store (sled locks it).
    #[error("cannot open the store in {0}: {1} (is another postern process using this data directory?)")]
    Locked(PathBuf, sled::Error),
    /// The store failed.
    #[error("node store: {0}")]
    Store(#[from] sled::Error),
    /// The hostname is not a usable FQDN.
    #[error("the hostname {0:?} is not a DNS name ({1}); pass --fqdn")]
    BadHostname(String, postern_model::DomainError),
    /// The data directory was set up for the other role.
    #[error("{dir} holds a {found} node; start it with `postern {found} run`")]
    WrongRole {
        /// The data directory.
        dir: PathBuf,
        /// The role it was set up as.
        found: NodeRole,
    },
    /// A flag contradicts the identity fixed at setup.
    #[error(
        "{dir} was set up as {field} {stored:?}; it cannot change to {given:?} (set up a new data directory instead)"
    )]
    IdentityChanged {
        /// The data directory.
        dir: PathBuf,
        /// `name` or `fqdn`.
        field: &'static str,
        /// What setup recorded.
        stored: String,
        /// What this start asked for.
        given: String,
    },
    /// The first certificate could not be made.
    #[error("setup could not create the node certificate: {0}")]
    Certificate(#[from] CertError),
    /// The stored identity cannot be read.
    #[error("node identity record is corrupt: {0}")]
    Corrupt(String),
    /// The data directory is readable by others: refused, with the reason.
    #[error("refusing to start: {0}")]
    Exposed(#[from] crate::private_files::ExposedError),
}

/// An open node: its identity and stores.
#[derive(Clone)]
pub struct Node {
    /// Who the node is.
    pub identity: NodeIdentity,
    /// Where its files live.
    pub data_dir: PathBuf,
    /// The sled database holding every store of the node.
    pub db: sled::Db,
    /// Certificates and pending requests.
    pub certs: CertStore,
}

/// Whether this start set the node up or found it set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Startup {
    /// First start: identity and certificate were created.
    SetUp,
    /// A later start: everything was reused.
    Reused,
}

const IDENTITY_KEY: &[u8] = b"identity";

impl Node {
    /// Opens the node in `opts.data_dir`, setting it up on first start.
    pub fn open_or_setup(opts: &NodeOptions) -> Result<(Self, Startup), NodeError> {
        crate::private_files::use_private_umask();
        create_private_dir(&opts.data_dir)?;
        match crate::private_files::tighten_below(&opts.data_dir) {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(dir = %opts.data_dir.display(), files = n, "made files written by an older version private (0600/0700)")
            }
            Err(e) => return Err(NodeError::DataDir(opts.data_dir.clone(), e)),
        }
        let store_dir = opts.data_dir.join("store");
        let db = sled::Config::new()
            .path(&store_dir)
            .open()
            .map_err(|e| NodeError::Locked(store_dir.clone(), e))?;
        let certs = CertStore::open(&db)?;
        let meta = db.open_tree("node")?;
        if let Some(raw) = meta.get(IDENTITY_KEY)? {
            let identity: NodeIdentity =
                serde_json::from_slice(&raw).map_err(|e| NodeError::Corrupt(e.to_string()))?;
            check_same(opts, &identity)?;
            let node = Self {
                identity,
                data_dir: opts.data_dir.clone(),
                db,
                certs,
            };
            return Ok((node, Startup::Reused));
        }
        let fqdn = match &opts.fqdn {
            Some(f) => f.clone(),
            None => hostname_fqdn()?,
        };
        let name = opts.name.clone().unwrap_or_else(|| NodeName::from_fqdn(&fqdn));
        let identity = NodeIdentity {
            name,
            fqdn: fqdn.clone(),
            role: opts.role,
            created: OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            smtp_bind: opts.smtp_bind.clone(),
        };
        // The certificate first, the identity last: a setup interrupted
        // half-way runs again on the next start.
        if certs.select_smtp(fqdn.as_str())?.is_none() {
            certs.new_self_signed(&NewCertificate {
                subject: SubjectName::common_name_only(fqdn.as_str()),
                domains: vec![fqdn.clone()],
                friendly_name: Some(format!("Postern self-signed ({fqdn})")),
                key: KeySpec::DEFAULT,
                services: BTreeSet::from([Service::Smtp]),
            })?;
        }
        let raw = serde_json::to_vec(&identity).map_err(|e| NodeError::Corrupt(e.to_string()))?;
        meta.insert(IDENTITY_KEY, raw)?;
        db.flush()?;
        let node = Self {
            identity,
            data_dir: opts.data_dir.clone(),
            db,
            certs,
        };
        Ok((node, Startup::SetUp))
    }

    /// Path of the admin API's unix socket.
    pub fn admin_socket(&self) -> PathBuf {
        admin_socket_path(&self.data_dir)
    }
}

/// Where the admin socket of the node in `data_dir` lives.
pub fn admin_socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// The address peers should use for a binding: the FQDN when the binding
/// is a wildcard address (`0.0.0.0:25` → `mail.adatum.com:25`).
pub fn advertised(bind: &str, fqdn: &str) -> String {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => format!("{fqdn}:{}", addr.port()),
        _ => bind.to_owned(),
    }
}

fn check_same(opts: &NodeOptions, id: &NodeIdentity) -> Result<(), NodeError> {
    if opts.role != id.role {
        return Err(NodeError::WrongRole {
            dir: opts.data_dir.clone(),
            found: id.role,
        });
    }
    let changed = |field, stored: String, given: String| NodeError::IdentityChanged {
        dir: opts.data_dir.clone(),
        field,
        stored,
        given,
    };
    if let Some(name) = opts.name.as_ref().filter(|n| **n != id.name) {
        return Err(changed("name", id.name.to_string(), name.to_string()));
    }
    if let Some(fqdn) = opts.fqdn.as_ref().filter(|f| **f != id.fqdn) {
        return Err(changed("fqdn", id.fqdn.to_string(), fqdn.to_string()));
    }
    Ok(())
}

fn hostname_fqdn() -> Result<Domain, NodeError> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    Domain::parse(&host).map_err(|e| NodeError::BadHostname(host, e))
}

/// Creates the data directory 0700, or checks that an existing one is
/// private: one that others can read is refused (it holds private keys
/// and queued mail), not silently changed.
fn create_private_dir(dir: &Path) -> Result<(), NodeError> {
    let err = |e| NodeError::DataDir(dir.to_path_buf(), e);
    if !dir.exists() {
        crate::private_files::create_private_dir_all(dir).map_err(err)?;
    }
    let meta = std::fs::metadata(dir).map_err(err)?;
    if !meta.is_dir() {
        return Err(err(std::io::Error::other("not a directory")));
    }
    crate::private_files::check_private_dir(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, role: NodeRole) -> NodeOptions {
        NodeOptions {
            data_dir: dir.to_path_buf(),
            role,
            name: None,
            fqdn: Some(Domain::parse("hub1.adatum.com").unwrap()),
            smtp_bind: "127.0.0.1:2525".into(),
        }
    }

    #[test]
    fn setup_then_reuse() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("hub");
        let (node, startup) = Node::open_or_setup(&opts(&dir, NodeRole::Hub)).unwrap();
        assert_eq!(startup, Startup::SetUp);
        assert_eq!(node.identity.name.as_str(), "hub1");
        let certs = node.certs.list().unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].services, vec![Service::Smtp]);
        assert_eq!(certs[0].key_algorithm, "rsa-2048");
        assert!(certs[0].self_signed);
        let first = node.identity.clone();
        drop(node);

        let (node, startup) = Node::open_or_setup(&opts(&dir, NodeRole::Hub)).unwrap();
        assert_eq!(startup, Startup::Reused);
        assert_eq!(node.identity, first);
        assert_eq!(node.certs.list().unwrap(), certs);
        drop(node);

        let err = Node::open_or_setup(&opts(&dir, NodeRole::Edge)).err().unwrap();
        assert!(err.to_string().contains("holds a hub node"), "{err}");
        let shared = crate::private_files::shared_entries(&dir).unwrap();
        assert!(shared.is_empty(), "readable by others after setup: {shared:?}");
        let mut renamed = opts(&dir, NodeRole::Hub);
        renamed.fqdn = Some(Domain::parse("other.adatum.com").unwrap());
        let err = Node::open_or_setup(&renamed).err().unwrap();
        assert!(err.to_string().contains("cannot change"), "{err}");
    }

    #[test]
    fn files_are_private_after_setup_and_certificate_import() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("edge");
        let (node, _) = Node::open_or_setup(&opts(&dir, NodeRole::Edge)).unwrap();
        // An imported key (PEM, made by openssl) goes into the store.
        let pem = tmp.path().join("mail");
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .args(["-subj", "/CN=mail.adatum.com", "-days", "2", "-keyout"])
            .arg(pem.with_extension("key"))
            .arg("-out")
            .arg(pem.with_extension("crt"))
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let mut bundle = std::fs::read(pem.with_extension("crt")).unwrap();
        bundle.extend(std::fs::read(pem.with_extension("key")).unwrap());
        node.certs
            .import(&bundle, "", None, &BTreeSet::from([Service::Smtp]))
            .unwrap();
        node.db.flush().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("store")), 0o700);
        assert_eq!(mode(&dir.join("store").join("db")), 0o600);
        let shared = crate::private_files::shared_entries(&dir).unwrap();
        assert!(shared.is_empty(), "readable by others: {shared:?}");
        drop(node);

        // An older version's loose modes are tightened; a data directory
        // others can read is refused, with the reason.
        std::fs::set_permissions(
            dir.join("store").join("db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        drop(Node::open_or_setup(&opts(&dir, NodeRole::Edge)).unwrap());
        assert_eq!(mode(&dir.join("store").join("db")), 0o600);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = Node::open_or_setup(&opts(&dir, NodeRole::Edge))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("mode 0755") && err.contains("chmod 700"), "{err}");
    }
}
