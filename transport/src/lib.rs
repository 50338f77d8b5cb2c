//! The engine both roles stand on: the node's data directory and stores,
//! certificates and TLS trust, the admin server, and the SMTP engine.

pub mod admin;
pub mod certs;
pub mod client;
pub mod node;
pub mod queue;
pub mod routing;
pub mod smtp;
pub mod tls;
