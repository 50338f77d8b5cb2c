//! The TLS decision of DESIGN §6 as a pure function: given the hop's
//! requirement, whether the server offered STARTTLS, and whether an
//! opportunistic handshake with this host already failed, what the client
//! does next.

use crate::tls::{Encryption, ServerVerification, TlsRequirement};

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
pub fn tls_plan(requirement: &TlsRequirement, offered: bool, handshake_failed: bool) -> TlsPlan {
    let start_tls = |required| TlsPlan::StartTls {
        verification: requirement.verification(),
        client_certificate: requirement.presents_client_certificate(),
        required,
    };
    match requirement.encryption {
        Encryption::DangerNever => TlsPlan::Plain(PlainReason::DangerIgnoreStartTls),
        Encryption::Opportunistic if handshake_failed => TlsPlan::Plain(PlainReason::HandshakeFailed),
        Encryption::Opportunistic if !offered => TlsPlan::Plain(PlainReason::NotOffered),
        Encryption::Opportunistic => start_tls(false),
        Encryption::Required if !offered => TlsPlan::Abort,
        Encryption::Required => start_tls(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ClientCertificate;

    #[test]
    fn decisions() {
        let required = TlsRequirement {
            client_certificate: ClientCertificate::NotAsked,
            ..TlsRequirement::pki(None)
        };
        let opportunistic_tls = TlsPlan::StartTls {
            verification: ServerVerification::DangerEncryptionOnly,
            client_certificate: true,
            required: false,
        };
        let table = [
            // (policy, offered, handshake failed before) → plan
            (TlsRequirement::OPPORTUNISTIC, true, false, opportunistic_tls),
            (
                TlsRequirement::OPPORTUNISTIC,
                false,
                false,
                TlsPlan::Plain(PlainReason::NotOffered),
            ),
            (
                TlsRequirement::OPPORTUNISTIC,
                true,
                true,
                TlsPlan::Plain(PlainReason::HandshakeFailed),
            ),
            (
                TlsRequirement::DANGER_PLAIN_TEXT,
                true,
                false,
                TlsPlan::Plain(PlainReason::DangerIgnoreStartTls),
            ),
            (
                TlsRequirement::DANGER_PLAIN_TEXT,
                false,
                false,
                TlsPlan::Plain(PlainReason::DangerIgnoreStartTls),
            ),
            (required.clone(), false, false, TlsPlan::Abort),
            // A required hop never falls back, even after a failure.
            (required.clone(), false, true, TlsPlan::Abort),
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
                TlsRequirement::ORGANISATION,
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
                tls_plan(&policy, offered, failed),
                plan,
                "{policy:?} offered={offered} failed={failed}"
            );
        }
    }
}
