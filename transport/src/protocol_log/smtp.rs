//! SMTP-shaped helpers over [`SessionLogger`]: a whole reply, one log line
//! per reply line (so the content filter sees each line's code), and the
//! `*` lines a session writes once STARTTLS is through: what was
//! negotiated, the peer's certificate (read with x509-parser) and how far
//! it is trusted, or why the handshake failed. Shared by the server and
//! the client, so both directions read alike.

use std::fmt;

use postern_model::Thumbprint;
use rustls_pki_types::CertificateDer;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::protocol_log::SessionLogger;
use crate::smtp::Reply;
use crate::tls::{PeerTrust, TlsInfo};

impl SessionLogger {
    /// `>` for each line of a reply Postern sent (receive connectors), as
    /// it is on the wire: `250-first` … `250 last`.
    pub fn send_reply(&mut self, reply: &Reply) {
        if self.is_enabled() {
            for line in reply.to_string().split_terminator("\r\n") {
                self.send(line);
            }
        }
    }

    /// `<` for each line of a reply Postern received (send connectors).
    pub fn receive_reply(&mut self, reply: &Reply) {
        if self.is_enabled() {
            for line in reply.to_string().split_terminator("\r\n") {
                self.receive(line);
            }
        }
    }

    /// `*` lines after a completed handshake: `TLS negotiated: <version>
    /// <cipher>`, the peer certificate (subject, issuer, thumbprint,
    /// not-after) and the [`PeerTrust`] classification.
    pub fn tls_established(&mut self, info: &TlsInfo, trust: &PeerTrust) {
        if !self.is_enabled() {
            return;
        }
        self.info(format_args!("TLS negotiated: {} {}", info.version, info.cipher));
        match info.peer_chain.first() {
            Some(leaf) => self.info(CertLine(leaf)),
            None => self.info("Peer certificate: none"),
        }
        self.info(TrustLine(trust));
    }

    /// `*` line for a handshake that failed, with the reason.
    pub fn tls_failed(&mut self, reason: impl fmt::Display) {
        self.info(format_args!("TLS negotiation failed: {reason}"));
    }
}

/// `Peer certificate: subject=…; issuer=…; thumbprint=…; not-after=…`.
struct CertLine<'a>(&'a CertificateDer<'static>);

impl fmt::Display for CertLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let der = self.0.as_ref();
        let thumbprint = Thumbprint::of_der(der);
        match X509Certificate::from_der(der) {
            Ok((_, cert)) => {
                let not_after = cert.validity().not_after.to_datetime();
                let not_after = not_after
                    .format(&Rfc3339)
                    .unwrap_or_else(|_| not_after.to_string());
                write!(
                    f,
                    "Peer certificate: subject={}; issuer={}; thumbprint={thumbprint}; not-after={not_after}",
                    cert.subject(),
                    cert.issuer()
                )
            }
            Err(e) => write!(
                f,
                "Peer certificate: thumbprint={thumbprint}; cannot be parsed: {e}"
            ),
        }
    }
}

/// `Direct trust: thumbprint …`, `PKI: names …`, `Untrusted: …`.
struct TrustLine<'a>(&'a PeerTrust);

impl fmt::Display for TrustLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            PeerTrust::None => f.write_str("Peer trust: none (no certificate presented)"),
            PeerTrust::Direct(thumbprint) => write!(f, "Direct trust: thumbprint {thumbprint}"),
            PeerTrust::Pki { thumbprint, names } => {
                write!(f, "PKI: names {}; thumbprint {thumbprint}", names.join(" "))
            }
            PeerTrust::Untrusted(why) => write!(f, "Untrusted: {why}"),
        }
    }
}
