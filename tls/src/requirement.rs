//! What one hop demands of TLS, in either direction: [`TlsRequirement`].
//!
//! The same value describes a send hop (what the client does after EHLO)
//! and a receive connector (what the server offers and asks). It says
//! whether the session must be encrypted, how the other end's certificate
//! is checked, and what is asked of the client's certificate. It is a
//! requirement, not an outcome: what the peer actually proved is a
//! [`PeerTrust`](crate::PeerTrust), and the per-host STARTTLS step is the
//! transport's `TlsPlan`. Mapping stored settings (connector flags,
//! partner lists) to a requirement is the transport's domain-security
//! module's job, not this crate's.

use postern_model::Domain;

use crate::ServerVerification;

/// Whether the session must be encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// STARTTLS or no mail: a client gives up on a server that does not
    /// offer it; a server refuses MAIL with 530 5.7.0 until it.
    Required,
    /// STARTTLS when both ends can; plain text otherwise.
    Opportunistic,
    /// No STARTTLS: a client ignores the server's offer (IgnoreSTARTTLS,
    /// logged at warn when used); a server does not offer it.
    DangerNever,
}

/// How the other end's certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerCheck {
    /// Any certificate: encryption only.
    DangerAny,
    /// A chain to a trusted root and a name match: `name` when set (a
    /// partner domain, a connector's TLS domain), else the host name.
    Pki {
        /// The name the certificate must carry; `None` checks the host.
        name: Option<Domain>,
    },
    /// The certificate's thumbprint is in the direct-trust set
    /// (the organisation's own nodes).
    DirectTrust,
}

/// What is asked of the client's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertificate {
    /// None is asked for; a client presents none.
    NotAsked,
    /// The server asks but does not insist; a client presents ours when
    /// asked. Whatever arrives is classified after the handshake.
    Asked,
    /// Mutual TLS: the server insists and the client must present one.
    Demanded,
}

/// What one hop demands of TLS (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRequirement {
    /// Whether the session must be encrypted.
    pub encryption: Encryption,
    /// How the other end's certificate is checked.
    pub peer: PeerCheck,
    /// What is asked of the client's certificate.
    pub client_certificate: ClientCertificate,
}

impl TlsRequirement {
    /// STARTTLS when offered, any certificate, the client's certificate
    /// asked for (and ours presented when asked).
    pub const OPPORTUNISTIC: TlsRequirement = TlsRequirement {
        encryption: Encryption::Opportunistic,
        peer: PeerCheck::DangerAny,
        client_certificate: ClientCertificate::Asked,
    };

    /// Between the organisation's nodes: mutual TLS with direct trust,
    /// always.
    pub const ORGANISATION: TlsRequirement = TlsRequirement {
        encryption: Encryption::Required,
        peer: PeerCheck::DirectTrust,
        client_certificate: ClientCertificate::Demanded,
    };

    /// No STARTTLS at all (a send connector's IgnoreSTARTTLS, a receive
    /// connector without TLS).
    pub const DANGER_PLAIN_TEXT: TlsRequirement = TlsRequirement {
        encryption: Encryption::DangerNever,
        peer: PeerCheck::DangerAny,
        client_certificate: ClientCertificate::NotAsked,
    };

    /// TLS always, no certificate asked of the client and none checked:
    /// an HTTPS listener (the console, the MTA-STS policy host).
    pub const ENCRYPTION_ONLY: TlsRequirement = TlsRequirement {
        encryption: Encryption::Required,
        peer: PeerCheck::DangerAny,
        client_certificate: ClientCertificate::NotAsked,
    };

    /// Required TLS with the server checked by PKI under `name` (or the
    /// host name) and our certificate presented when asked.
    pub fn pki(name: Option<Domain>) -> Self {
        Self {
            encryption: Encryption::Required,
            peer: PeerCheck::Pki { name },
            client_certificate: ClientCertificate::Asked,
        }
    }

    /// Which verifier family checks the other end's certificate.
    pub fn verification(&self) -> ServerVerification {
        match self.peer {
            PeerCheck::DangerAny => ServerVerification::DangerEncryptionOnly,
            PeerCheck::Pki { .. } => ServerVerification::Pki,
            PeerCheck::DirectTrust => ServerVerification::DirectTrust,
        }
    }

    /// The name a PKI check wants in the certificate (and the client
    /// sends as SNI); `None`: the host name.
    pub fn pki_name(&self) -> Option<&Domain> {
        match &self.peer {
            PeerCheck::Pki { name } => name.as_ref(),
            PeerCheck::DangerAny | PeerCheck::DirectTrust => None,
        }
    }

    /// Whether a client presents its certificate (when the server asks).
    pub fn presents_client_certificate(&self) -> bool {
        self.client_certificate != ClientCertificate::NotAsked
    }

    /// Whether mail under this requirement only travels over TLS whose
    /// server was authenticated (PKI or direct trust).
    pub fn authenticates_server(&self) -> bool {
        self.encryption == Encryption::Required
            && matches!(self.peer, PeerCheck::Pki { .. } | PeerCheck::DirectTrust)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn derived_facts() {
        let partner = Domain::parse("fabrikam.com").unwrap();
        let pki = TlsRequirement::pki(Some(partner.clone()));
        assert_eq!(pki.verification(), ServerVerification::Pki);
        assert_eq!(pki.pki_name(), Some(&partner));
        assert!(pki.presents_client_certificate());
        assert!(pki.authenticates_server());

        let org = TlsRequirement::ORGANISATION;
        assert_eq!(org.verification(), ServerVerification::DirectTrust);
        assert_eq!(org.pki_name(), None);
        assert!(org.authenticates_server());

        let opportunistic = TlsRequirement::OPPORTUNISTIC;
        assert_eq!(
            opportunistic.verification(),
            ServerVerification::DangerEncryptionOnly
        );
        assert!(opportunistic.presents_client_certificate());
        assert!(!opportunistic.authenticates_server());

        // Checked by PKI but not required: a plain-text fallback is not
        // authenticated.
        let may = TlsRequirement {
            encryption: Encryption::Opportunistic,
            ..TlsRequirement::pki(None)
        };
        assert!(!may.authenticates_server());
        assert!(!TlsRequirement::DANGER_PLAIN_TEXT.presents_client_certificate());
        assert!(!TlsRequirement::ENCRYPTION_ONLY.authenticates_server());
    }
}
