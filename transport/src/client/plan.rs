//! The TLS decision of DESIGN §6 as a pure function: given the hop's
//! policy, whether the server offered STARTTLS, and whether an
//! opportunistic handshake with this host already failed, what the client
//! does next.

use crate::routing::OutboundTls;
use crate::tls::ServerVerification;

/// Why a connection carries mail in plain text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainReason {
    /// Opportunistic TLS and the server does not offer STARTTLS.
    NotOffered,
    /// The hop ignores STARTTLS (`DangerIgnoreStartTls`).
    DangerIgnoreStartTls,
    /// Opportunistic TLS and the server refused our STARTTLS command.
    StartTlsRefused,
    /// Opportunistic TLS and the handshake failed, so the client reconnected
    /// without TLS (Postfix's `may` level does the same).
    HandshakeFailed,
}

/// What to do about TLS after the server's EHLO answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsPlan {
    /// Send STARTTLS and handshake.
    StartTls {
        /// How the server's certificate is checked.
        verification: ServerVerification,
        /// Whether our certificate is offered when the server asks.
        client_certificate: bool,
        /// Whether a failure ends the attempt (else: plain-text fallback).
        required: bool,
    },
    /// Carry on without TLS.
    Plain(PlainReason),
    /// TLS is required and not offered: give up on this host, sending
    /// nothing in plain text.
    Abort,
}

/// Decides the TLS step for a host. `handshake_failed` is true on the
/// plain-text reconnection after an opportunistic handshake failed.
pub fn tls_plan(policy: OutboundTls, offered: bool, handshake_failed: bool) -> TlsPlan {
    match policy {
        OutboundTls::DangerIgnoreStartTls => TlsPlan::Plain(PlainReason::DangerIgnoreStartTls),
        OutboundTls::Opportunistic if handshake_failed => TlsPlan::Plain(PlainReason::HandshakeFailed),
        OutboundTls::Opportunistic if !offered => TlsPlan::Plain(PlainReason::NotOffered),
        OutboundTls::Opportunistic => TlsPlan::StartTls {
            verification: ServerVerification::DangerEncryptionOnly,
            client_certificate: true,
            required: false,
        },
        OutboundTls::Required { .. } if !offered => TlsPlan::Abort,
        OutboundTls::Required {
            verification,
            client_certificate,
        } => TlsPlan::StartTls {
            verification,
            client_certificate,
            required: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let required = OutboundTls::Required {
            verification: ServerVerification::Pki,
            client_certificate: false,
        };
        let opportunistic_tls = TlsPlan::StartTls {
            verification: ServerVerification::DangerEncryptionOnly,
            client_certificate: true,
            required: false,
        };
        let table = [
            // (policy, offered, handshake failed before) → plan
            (OutboundTls::Opportunistic, true, false, opportunistic_tls),
            (
                OutboundTls::Opportunistic,
                false,
                false,
                TlsPlan::Plain(PlainReason::NotOffered),
            ),
            (
                OutboundTls::Opportunistic,
                true,
                true,
                TlsPlan::Plain(PlainReason::HandshakeFailed),
            ),
            (
                OutboundTls::DangerIgnoreStartTls,
                true,
                false,
                TlsPlan::Plain(PlainReason::DangerIgnoreStartTls),
            ),
            (
                OutboundTls::DangerIgnoreStartTls,
                false,
                false,
                TlsPlan::Plain(PlainReason::DangerIgnoreStartTls),
            ),
            (required, false, false, TlsPlan::Abort),
            // A required hop never falls back, even after a failure.
            (required, false, true, TlsPlan::Abort),
            (
                required,
                true,
                true,
                TlsPlan::StartTls {
                    verification: ServerVerification::Pki,
                    client_certificate: false,
                    required: true,
                },
            ),
            (
                OutboundTls::ORGANISATION,
                true,
                false,
                TlsPlan::StartTls {
                    verification: ServerVerification::DirectTrust,
                    client_certificate: true,
                    required: true,
                },
            ),
        ];
        for (policy, offered, failed, plan) in table {
            assert_eq!(
                tls_plan(policy, offered, failed),
                plan,
                "{policy:?} offered={offered} failed={failed}"
            );
        }
    }
}
