//! Session policy as data and hooks: [`SessionConfig`] carries a receive
//! connector's protocol knobs (limits, STARTTLS offered or required), and
//! [`RecipientPolicy`] is where recipient filtering and relay control plug
//! into the session, one value per session so it can know the peer.

use postern_model::Domain;

use crate::smtp::address::{ForwardPath, HeloName, ReversePath};
use crate::smtp::reply::Reply;
use crate::tls::Encryption;

/// Default recipient limit per message (Exchange's receive connectors also
/// default to 200).
pub const DEFAULT_MAX_RECIPIENTS: usize = 200;
/// Default message size limit: 35 MB (36,700,160 octets). Exchange's
/// default maximum message size is 35 MB, so mail that an Exchange
/// organisation accepts by default fits here too.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 35 * 1024 * 1024;

/// The knobs of one receive connector that the protocol needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our FQDN, announced in the greeting and the EHLO answer.
    pub hostname: Domain,
    /// Recipients accepted per message; more get 452 4.5.3.
    pub max_recipients: usize,
    /// Largest message in octets, announced as `SIZE`; larger gets 552 5.3.4.
    pub max_message_size: u64,
    /// The connector's demand: STARTTLS offered unless `DangerNever`;
    /// with `Required`, MAIL refused with 530 5.7.0 until TLS is up.
    pub encryption: Encryption,
    /// Whether a certificate for the hostname is available now (STARTTLS
    /// is offered only then; a `Required` connector without one refuses
    /// all mail).
    pub certificate_available: bool,
    /// Whether the connection is TLS from the start (implicit TLS port).
    pub implicit_tls: bool,
}

impl SessionConfig {
    /// Defaults: 200 recipients, 35 MB, STARTTLS offered, TLS not required.
    pub fn new(hostname: Domain) -> Self {
        Self {
            hostname,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            encryption: Encryption::Opportunistic,
            certificate_available: true,
            implicit_tls: false,
        }
    }

    /// Whether STARTTLS is offered (before TLS is up): the connector
    /// encrypts and a certificate is available.
    pub fn offers_starttls(&self) -> bool {
        self.encryption != Encryption::DangerNever && self.certificate_available
    }

    /// Whether MAIL is refused with 530 5.7.0 until TLS is up.
    pub fn requires_tls(&self) -> bool {
        self.encryption == Encryption::Required
    }
}

/// What the recipient hook is told about the transaction.
#[derive(Clone, Copy, Debug)]
pub struct RecipientContext<'a> {
    /// The client's EHLO/HELO name.
    pub helo: &'a HeloName,
    /// The sender of this transaction.
    pub from: &'a ReversePath,
    /// Recipients already accepted.
    pub accepted: &'a [ForwardPath],
    /// Whether the session runs over TLS.
    pub tls: bool,
}

/// The recipient hook's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientVerdict {
    /// Take the recipient (250 2.1.5).
    Accept,
    /// Refuse it with this reply (e.g. 550 5.1.1, or 550 5.7.1 for relaying).
    Reject(Reply),
}

/// Recipient filtering and relay control, consulted for every RCPT.
/// One value serves one session, so it may hold the peer's address.
pub trait RecipientPolicy: Send {
    /// Decides on one recipient.
    fn check(&mut self, ctx: RecipientContext<'_>, to: &ForwardPath) -> RecipientVerdict;
}

/// A policy that accepts every recipient.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl RecipientPolicy for AcceptAll {
    fn check(&mut self, _: RecipientContext<'_>, _: &ForwardPath) -> RecipientVerdict {
        RecipientVerdict::Accept
    }
}
