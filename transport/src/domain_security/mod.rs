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
//! - **Outbound** ([`outbound`]): which mail and which hops are
//!   domain-secured (`tls_send_domain_secure_list`, connector
//!   `domain_secure_enabled`), and the typed outcome of a delivery attempt
//!   over a domain-secured hop ([`OutboundDomainSecurity`]) that the
//!   delivery worker counts and logs.
//! - **Requirements** ([`requirement`]): the one mapping from stored
//!   settings (send connector TLS flags and `TlsAuthLevel`, the send list,
//!   receive connector auth mechanisms and permission groups) to the
//!   [`TlsRequirement`](crate::tls::TlsRequirement) a hop or a receive
//!   connector carries.
//!
//! The TLS code reports facts; the routers, the server, the delivery worker
//! and the metrics act on the values decided here.

pub mod inbound;
pub mod outbound;
pub mod requirement;

pub use inbound::{InboundDomainSecurity, InboundFailure, inbound};
pub use outbound::{OutboundDomainSecurity, is_domain_secured, is_domain_secured_hop, outbound_outcome};
pub use requirement::{domain_secured, receive_requirement, send_requirement};
