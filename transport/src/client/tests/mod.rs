//! Dialogue tests of the SMTP client over real loopback sockets: against a
//! scripted server ([`server`]) for TLS policy, reply mapping and failure
//! injection (and, in [`lmtp`], as an LMTP server), and against Postfix's
//! `smtp-sink` ([`sink`]) as a foreign peer.

#![allow(clippy::unwrap_used)]

mod lmtp;
mod mx;
mod observe;
mod pool;
mod server;
mod sink;
mod tls;
mod transaction;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use postern_model::{Domain, KeySpec, Service, SubjectName, Thumbprint};

use crate::certs::{CertStore, NewCertificate};
use crate::client::{ClientSettings, Connector};
use crate::queue::{DeliveryOutcome, RecipientOutcome};
use crate::routing::{HostPort, SmtpHop};
use crate::tls::{
    ClientCertificate, Encryption, PeerCheck, ServerCertResolver, TlsRequirement, TrustStore, server_config,
};

/// Our EHLO name, which our client certificate names.
const HELO: &str = "client.test";
/// The scripted server's name, which its certificate names.
const SERVER: &str = "mx.test";

/// A certificate store in a temporary sled directory with one self-signed
/// SMTP certificate for `fqdn`.
struct TestNode {
    _dir: tempfile::TempDir,
    certs: CertStore,
    thumbprint: Thumbprint,
}

fn node(fqdn: &str) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path()).unwrap();
    let certs = CertStore::open(&db).unwrap();
    let view = certs
        .new_self_signed(&NewCertificate {
            subject: SubjectName::common_name_only(fqdn),
            domains: vec![Domain::parse(fqdn).unwrap()],
            friendly_name: None,
            key: KeySpec::EcdsaP256,
            services: BTreeSet::from([Service::Smtp]),
        })
        .unwrap();
    TestNode {
        _dir: dir,
        certs,
        thumbprint: view.thumbprint,
    }
}

/// A server that asks no client certificate.
const NO_CLIENT_CERTIFICATE: TlsRequirement = TlsRequirement {
    encryption: Encryption::Opportunistic,
    peer: PeerCheck::DangerAny,
    client_certificate: ClientCertificate::NotAsked,
};

/// A TLS server config presenting `server`'s certificate; clients are
/// checked as `auth` says against `trusted`.
fn tls_server(server: &TestNode, trusted: &[Thumbprint], auth: TlsRequirement) -> Arc<rustls::ServerConfig> {
    let trust = TrustStore::new(trusted.iter().copied(), &[]);
    server_config(
        ServerCertResolver::new(server.certs.clone(), SERVER),
        &trust,
        &auth,
    )
}

/// Short timeouts so a hung test fails fast.
fn settings() -> ClientSettings {
    ClientSettings {
        connect_timeout: Duration::from_secs(5),
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(10),
        ..ClientSettings::default()
    }
}

fn connector(client: &TestNode, trusted: &[Thumbprint]) -> Connector {
    Connector::new(
        client.certs.clone(),
        TrustStore::new(trusted.iter().copied(), &[]),
        settings(),
    )
}

/// The hop of [`hop`]: a connector named "relay".
fn relay_key() -> crate::routing::NextHop {
    crate::routing::NextHop::connector("relay", None)
}

fn hop(hosts: Vec<HostPort>, tls: TlsRequirement) -> SmtpHop {
    SmtpHop {
        connector: None,
        key: relay_key(),
        hosts,
        tls,
        mx_domain: None,
        helo: Domain::parse(HELO).unwrap(),
        protocol_logging_level: postern_model::ProtocolLoggingLevel::None,
    }
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// `Delivered`/`Transient`/`Permanent` per recipient, to compare briefly.
fn kinds(outcomes: &[RecipientOutcome]) -> Vec<(&str, &'static str)> {
    outcomes
        .iter()
        .map(|o| {
            let kind = match o.outcome {
                DeliveryOutcome::Delivered(_) => "delivered",
                DeliveryOutcome::TransientFailure(_) => "transient",
                DeliveryOutcome::PermanentFailure(_) => "permanent",
            };
            (o.address.as_str(), kind)
        })
        .collect()
}

const BODY: &[u8] = b"Subject: test\r\n\r\nHello.\r\n";
