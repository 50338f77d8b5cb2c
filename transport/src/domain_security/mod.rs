//! Domain security (Exchange's mutual-TLS partner mail), decided in one
//! place for both directions.
//!
//! - **Inbound** ([`inbound`]): which sender domains must arrive
//!   domain-secured (`TransportConfig::tls_receive_domain_secure_list`, on
//!   receive connectors with `domain_secure_enabled`) and whether what the
//!   peer proved in the TLS handshake (a [`PeerTrust`](crate::tls::PeerTrust)
//!   fact, reported by the verifiers) satisfies it. The outcome
//!   ([`InboundDomainSecurity`]) gives the RCPT refusal, the trusted header
//!   fields of the stamp, and the counter.
//! - **Outbound** ([`outbound`]): what a hop through a send connector must
//!   present and check (`tls_send_domain_secure_list`, connector
//!   `domain_secure_enabled`, and the connector's own TLS settings), and the
//!   typed outcome of a delivery attempt over a domain-secured hop
//!   ([`OutboundDomainSecurity`]) that the delivery worker counts and logs.
//!
//! The TLS code reports facts; the routers, the server, the delivery worker
//! and the metrics act on the values decided here.

pub mod inbound;
pub mod outbound;

pub use inbound::{InboundDomainSecurity, InboundFailure, inbound};
pub use outbound::{
    OutboundDomainSecurity, is_domain_secured, is_domain_secured_hop, outbound_outcome, outbound_tls,
};
