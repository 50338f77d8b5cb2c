//! The engine both roles stand on: the node's data directory and stores,
//! certificates and TLS trust, the admin server, and the SMTP engine.

pub mod admin;
pub mod auth;
pub mod client;
pub mod connectors;
pub mod delivery;
pub mod dir_sync;
pub mod dns;
pub mod domain_security;
pub mod error_text;
pub mod http;
pub mod internet_tls;
pub mod metrics;
pub mod mta;
pub mod node;
pub mod node_config;
pub mod private_files;
pub mod protocol_log;
pub mod queue;
pub mod receive_connectors;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod smtp;

// TLS and certificates live in the `postern-tls` crate. These names keep the
// engine's own `crate::tls::…` / `crate::certs::…` paths short.
use postern_tls as tls;
use postern_tls::certs;
