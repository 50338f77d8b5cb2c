//! The SMTP protocol log, in Exchange 2010's format: CSV files per
//! direction under `DATA_DIR/logs/protocol/{receive,send}/`, named
//! `RECVyyyymmdd-N.LOG` / `SENDyyyymmdd-N.LOG`, with Exchange's `#` header
//! lines and `#Fields:`, so tools that read Exchange logs read these.
//!
//! A node opens one [`ProtocolLog`] per direction; each session takes a
//! [`SessionLogger`] from it at its connector's [`ProtocolLoggingLevel`].
//! Message content is never logged, and AUTH credentials are redacted.
//!
//! The parts: `clock` (time source, timestamps), `session_id`, `csv` (one
//! line), `content` (what may be logged), `files` (naming, headers,
//! rotation, size cap), `writer` (the shared writer thread), `session`,
//! `smtp` (whole replies, and the `*` lines after STARTTLS, for both
//! directions).

mod clock;
mod content;
mod csv;
mod files;
mod session;
mod session_id;
mod smtp;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};

pub use clock::{Clock, SystemClock};
pub use csv::Event;
pub use postern_model::ProtocolLoggingLevel;
pub use session::{Endpoints, SessionLogger};
pub use session_id::SessionId;
pub use writer::{LogConfig, ProtocolLog};

/// Which way mail flows in the sessions a log records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Sessions on receive connectors (Postern is the SMTP server).
    Receive,
    /// Sessions on send connectors (Postern is the SMTP client).
    Send,
}

impl Direction {
    /// Both directions.
    pub const ALL: [Direction; 2] = [Direction::Receive, Direction::Send];

    /// `receive` or `send`: the directory name and metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Receive => "receive",
            Direction::Send => "send",
        }
    }

    /// `RECV` or `SEND`, the file name prefix.
    pub fn file_prefix(self) -> &'static str {
        match self {
            Direction::Receive => "RECV",
            Direction::Send => "SEND",
        }
    }

    /// The `#Log-type:` header.
    pub fn log_type(self) -> &'static str {
        match self {
            Direction::Receive => "SMTP Receive Protocol Log",
            Direction::Send => "SMTP Send Protocol Log",
        }
    }

    /// This direction's log directory under a node's data directory.
    pub fn dir_in(self, data_dir: &Path) -> PathBuf {
        data_dir.join("logs").join("protocol").join(self.as_str())
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the protocol log could not be opened or written. All are local:
/// the node's configuration or its disk.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolLogError {
    /// The limits make no sense.
    #[error("protocol log configuration: {0}")]
    Config(String),
    /// The log directory could not be created or read.
    #[error("protocol log directory {0}: {1}")]
    Directory(PathBuf, std::io::Error),
    /// A log file could not be created, written or deleted.
    #[error("protocol log file {0}: {1}")]
    File(PathBuf, std::io::Error),
    /// The writer thread could not be started.
    #[error("cannot start the protocol log writer: {0}")]
    Thread(std::io::Error),
    /// The writer thread has stopped.
    #[error("the protocol log writer has stopped")]
    WriterGone,
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
