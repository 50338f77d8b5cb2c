//! The SMTP protocol without I/O: bytes in, commands, events and replies
//! out. Nothing here knows about sockets or tokio, so every piece can be
//! driven byte by byte in unit tests and fuzzed.
//!
//! * [`line`](mod@line) frames command lines (CRLF only, 512 octets);
//! * [`command`] parses a line into a [`Command`], with [`address`] for paths;
//! * [`data`] receives a message after 354 and finds its real end;
//! * [`reply`] writes replies, [`client`] reads them back;
//! * [`policy`] holds the connector's knobs and the recipient hook;
//! * [`session`] is the server's state machine that ties them together.

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod line;
pub mod policy;
pub mod reply;
pub mod session;

pub use address::{AddressError, ForwardPath, HeloName, Mailbox, ReversePath};
pub use client::{EhloCapabilities, ReplyError, ReplyParser};
pub use command::{BodyType, Command, CommandError, EsmtpParam, MailParams, ONCE_KEYWORD};
pub use data::{DataEnd, DataReceiver, DataStatus, DataViolation};
pub use line::{LineError, LineReader};
pub use policy::{
    AcceptAll, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_RECIPIENTS, RecipientContext, RecipientPolicy,
    RecipientVerdict, SessionConfig,
};
pub use reply::{EnhancedCode, Reply};
pub use session::{Action, Envelope, Helo, Output, Session, SessionState};

#[cfg(test)]
mod dialogue_tests;
#[cfg(test)]
mod property_tests;
