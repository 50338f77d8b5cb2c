//! `postern cert …`: New-, Import-, Enable-, Get- and Remove-ExchangeCertificate.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use postern_proto::admin as pb;
use serde_json::json;

use crate::client::{connect, status};
use crate::output::{Record, Reply, records};

/// Certificate verbs.
#[derive(Subcommand)]
pub enum CertCommand {
    /// Create a self-signed certificate, or with --generate-request a PKCS#10 request.
    New(NewArgs),
    /// Import a certificate: PEM (with chain), DER, or PKCS#12 (.pfx/.p12).
    Import(ImportArgs),
    /// Enable a certificate for services (smtp).
    Enable {
        /// The certificate's thumbprint (40 hex digits).
        #[arg(long)]
        thumbprint: String,
        /// Services to enable, e.g. smtp.
        #[arg(long, value_delimiter = ',', required = true)]
        services: Vec<String>,
    },
    /// List certificates and pending requests.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one certificate or pending request.
    Get {
        /// The thumbprint.
        #[arg(long)]
        thumbprint: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a certificate or pending request.
    Remove {
        /// The thumbprint.
        #[arg(long)]
        thumbprint: String,
    },
    /// Export a certificate: PKCS#12 with its key (.pfx/.p12; the key must
    /// be exportable), or with --public the certificate alone (PEM). The
    /// file is written with mode 0600.
    Export(ExportArgs),
}

/// `cert export` flags (Export-ExchangeCertificate).
#[derive(Args)]
pub struct ExportArgs {
    /// The certificate's thumbprint.
    #[arg(long)]
    thumbprint: String,
    /// Where to write the file (refused when it exists).
    #[arg(long)]
    path: PathBuf,
    /// A file holding the PKCS#12 password (first line).
    #[arg(long, required_unless_present = "public", conflicts_with = "public")]
    password_file: Option<PathBuf>,
    /// The certificate alone, PEM, without its key.
    #[arg(long)]
    public: bool,
}

/// `cert new` flags, named as New-ExchangeCertificate names them.
#[derive(Args)]
pub struct NewArgs {
    /// Subject DN, e.g. "C=us, O=Example Corp, CN=mail.example.com".
    #[arg(long)]
    subject_name: String,
    /// DNS names for the certificate (repeat for several).
    #[arg(long = "domain-name", value_delimiter = ',')]
    domain_names: Vec<String>,
    /// A label for the certificate.
    #[arg(long)]
    friendly_name: Option<String>,
    /// RSA key size: 2048 (default), 3072 or 4096.
    #[arg(long, conflicts_with = "key_type")]
    key_size: Option<u32>,
    /// Key type: rsa (default) or ecdsa-p256.
    #[arg(long)]
    key_type: Option<String>,
    /// Keep the key as a pending request and write a PKCS#10 request.
    #[arg(long)]
    generate_request: bool,
    /// Where to write the request (default: standard output).
    #[arg(long, requires = "generate_request")]
    path: Option<PathBuf>,
    /// Services to enable on a self-signed certificate, e.g. smtp.
    #[arg(long, value_delimiter = ',', conflicts_with = "generate_request")]
    services: Vec<String>,
    /// Allow the private key to be exported later (`cert export`).
    #[arg(long)]
    private_key_exportable: bool,
}

/// `cert import` flags.
#[derive(Args)]
pub struct ImportArgs {
    /// The certificate file.
    #[arg(long)]
    path: PathBuf,
    /// A file holding the PKCS#12 password (first line).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Enable the certificate for these services at once (Import | Enable).
    #[arg(long, value_delimiter = ',')]
    enable_services: Vec<String>,
    /// A label for the certificate.
    #[arg(long)]
    friendly_name: Option<String>,
    /// Allow the imported private key to be exported again (`cert export`).
    #[arg(long)]
    private_key_exportable: bool,
}

/// Runs a certificate verb against the node in `node` and prints its reply.
pub async fn run(node: &Path, command: CertCommand) -> anyhow::Result<()> {
    exec(node, command).await?.print()
}

/// Runs a certificate verb against the node in `node` (`postern cert` and
/// the *-ExchangeCertificate cmdlets of `postern ems`).
pub async fn exec(node: &Path, command: CertCommand) -> anyhow::Result<Reply> {
    // Read local files before connecting, so a bad path fails fast.
    let import = match &command {
        CertCommand::Import(a) => Some(read_import(a)?),
        _ => None,
    };
    let mut client = pb::certificates_client::CertificatesClient::new(connect(node).await?);
    match command {
        CertCommand::New(a) => {
            let reply = client
                .new_certificate(pb::NewCertificateRequest {
                    subject_name: a.subject_name,
                    domain_names: a.domain_names,
                    friendly_name: a.friendly_name.unwrap_or_default(),
                    key_type: a.key_type.unwrap_or_default(),
                    key_size: a.key_size.unwrap_or(0),
                    generate_request: a.generate_request,
                    services: a.services,
                    private_key_exportable: a.private_key_exportable,
                })
                .await
                .map_err(status)?
                .into_inner();
            let thumbprint = reply.certificate.map(|c| c.thumbprint).unwrap_or_default();
            if a.generate_request {
                match a.path {
                    Some(path) => {
                        postern_transport::private_files::write_private(&path, reply.request_pem.as_bytes())
                            .with_context(|| format!("cannot write the request to {}", path.display()))?;
                        Ok(Reply::Text(format!("{thumbprint}\n")))
                    }
                    None => Ok(Reply::Text(reply.request_pem)),
                }
            } else {
                Ok(Reply::Text(format!("{thumbprint}\n")))
            }
        }
        CertCommand::Import(_) => {
            let request = import.context("internal: import request not prepared")?;
            let cert = client
                .import_certificate(request)
                .await
                .map_err(status)?
                .into_inner();
            Ok(Reply::Text(format!("{}\n", cert.thumbprint)))
        }
        CertCommand::Enable { thumbprint, services } => {
            client
                .enable_certificate(pb::EnableCertificateRequest { thumbprint, services })
                .await
                .map_err(status)?;
            Ok(Reply::Done)
        }
        CertCommand::List { json } => {
            let list = client
                .list_certificates(pb::ListCertificatesRequest {})
                .await
                .map_err(status)?
                .into_inner();
            Ok(records(
                list.certificates.iter().map(record).collect(),
                json,
                true,
            ))
        }
        CertCommand::Get { thumbprint, json } => {
            let cert = client
                .get_certificate(pb::GetCertificateRequest { thumbprint })
                .await
                .map_err(status)?
                .into_inner();
            Ok(records(vec![record(&cert)], json, false))
        }
        CertCommand::Remove { thumbprint } => {
            client
                .remove_certificate(pb::RemoveCertificateRequest { thumbprint })
                .await
                .map_err(status)?;
            Ok(Reply::Done)
        }
        CertCommand::Export(a) => {
            let password = match &a.password_file {
                Some(p) => first_line(p)?,
                None => String::new(),
            };
            let reply = client
                .export_certificate(pb::ExportCertificateRequest {
                    thumbprint: a.thumbprint,
                    public_only: a.public,
                    password,
                })
                .await
                .map_err(status)?
                .into_inner();
            write_private(&a.path, &reply.data)?;
            Ok(Reply::Done)
        }
    }
}

fn read_import(a: &ImportArgs) -> anyhow::Result<pb::ImportCertificateRequest> {
    let data = std::fs::read(&a.path).with_context(|| format!("cannot read {}", a.path.display()))?;
    let password = match &a.password_file {
        Some(p) => first_line(p)?,
        None => String::new(),
    };
    Ok(pb::ImportCertificateRequest {
        data,
        password,
        enable_services: a.enable_services.clone(),
        friendly_name: a.friendly_name.clone().unwrap_or_default(),
        private_key_exportable: a.private_key_exportable,
    })
}

fn first_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// Writes a new file readable by its owner only (it may hold a key).
fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn record(c: &pb::Certificate) -> Record {
    Record::new()
        .field("Thumbprint", &c.thumbprint, json!(c.thumbprint))
        .field("FriendlyName", &c.friendly_name, json!(c.friendly_name))
        .field("Subject", &c.subject, json!(c.subject))
        .field("Issuer", &c.issuer, json!(c.issuer))
        .keyed(
            "CertificateDomains",
            "domains",
            &c.domains.join(", "),
            json!(c.domains),
        )
        .field("NotBefore", &c.not_before, json!(c.not_before))
        .field("NotAfter", &c.not_after, json!(c.not_after))
        .field("Services", &c.services.join(", "), json!(c.services))
        .keyed(
            "IsSelfSigned",
            "self_signed",
            &c.self_signed.to_string(),
            json!(c.self_signed),
        )
        .field("Status", &c.status, json!(c.status))
        .field(
            "HasPrivateKey",
            &c.has_private_key.to_string(),
            json!(c.has_private_key),
        )
        .field("KeyAlgorithm", &c.key_algorithm, json!(c.key_algorithm))
        .field("ChainLength", &c.chain_length.to_string(), json!(c.chain_length))
        .field("DaysLeft", &c.days_left.to_string(), json!(c.days_left))
        .field("Rotation", &c.rotation, json!(c.rotation))
        .field("RotationNote", &c.rotation_note, json!(c.rotation_note))
        .field("Exportable", &c.exportable.to_string(), json!(c.exportable))
}
