//! The SMTP protocol without I/O: bytes in, commands, events and replies
//! out. Nothing here knows about sockets or tokio, so every piece can be
//! driven byte by byte in unit tests and fuzzed.
//!
//! * [`line`] frames command lines (CRLF only, 512 octets);
//! * [`command`] parses a line into a [`Command`], with [`address`] for paths;
//! * [`data`] receives a message after 354 and finds its real end;
//! * [`reply`] writes replies, [`client`] reads them back;
//! * [`session`] is the server's state machine that ties them together.

pub mod address;
pub mod client;
pub mod command;
pub mod data;
pub mod line;
pub mod reply;
pub mod session;

pub use address::{AddressError, ForwardPath, HeloName, Mailbox, ReversePath};
pub use client::{EhloCapabilities, ReplyError, ReplyParser};
pub use command::{BodyType, Command, CommandError, EsmtpParam, MailParams};
pub use data::{DataEnd, DataReceiver, DataStatus, DataViolation};
pub use line::{LineError, LineReader};
pub use reply::{EnhancedCode, Reply};
pub use session::{
    AcceptAll, Action, Envelope, Helo, Output, RecipientContext, RecipientPolicy, RecipientVerdict,
    Session, SessionConfig, SessionState,
};

#[cfg(test)]
mod dialogue_tests;
