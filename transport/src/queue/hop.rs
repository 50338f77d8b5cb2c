//! [`QueuedHop`]: a recipient's next hop as the queue holds it. The record
//! stores the hop's text, exactly as earlier versions wrote it; the text is
//! parsed once, when the record is read. A text that is no [`NextHop`]
//! (written by something else, or by a version that knew other forms) is
//! kept as it was, never dropped: the worker routes such a recipient again
//! by its address, or defers it ("no route for next hop …") until it
//! routes or the message expires, as earlier versions did, and the record
//! is written back with the same text.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::routing::NextHop;

/// A queued recipient's next hop.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum QueuedHop {
    /// The hop routing chose.
    Known(NextHop),
    /// A stored text that is no next hop, kept as it was.
    Unreadable(String),
}

impl QueuedHop {
    /// The hop a stored `text` names, or the text kept as it is.
    pub fn read(text: String) -> Self {
        match text.parse() {
            Ok(hop) => Self::Known(hop),
            Err(_) => Self::Unreadable(text),
        }
    }

    /// The hop, when the text named one.
    pub fn known(&self) -> Option<&NextHop> {
        match self {
            Self::Known(hop) => Some(hop),
            Self::Unreadable(_) => None,
        }
    }

    /// The hop of a recipient routed to the domain of its `address`, as
    /// DSNs are queued (they skip routing). When there is no domain, the
    /// text earlier versions stored is kept: the lower-cased text after the
    /// last `@`, or nothing for an address without one.
    pub fn domain_of(address: &str) -> Self {
        let Some((_, domain)) = address.rsplit_once('@') else {
            return Self::Unreadable(String::new());
        };
        let domain = domain.to_ascii_lowercase();
        match postern_model::Domain::parse(&domain) {
            Ok(domain) => Self::Known(NextHop::Domain(domain)),
            Err(_) => Self::Unreadable(domain),
        }
    }
}

impl From<NextHop> for QueuedHop {
    fn from(hop: NextHop) -> Self {
        Self::Known(hop)
    }
}

/// How a JSON record of an earlier version holds the hop.
impl From<String> for QueuedHop {
    fn from(text: String) -> Self {
        Self::read(text)
    }
}

/// How a record stores the hop: its text.
impl From<QueuedHop> for String {
    fn from(hop: QueuedHop) -> Self {
        hop.to_string()
    }
}

impl fmt::Display for QueuedHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(hop) => hop.fmt(f),
            Self::Unreadable(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_stored_text_reads_back_as_it_was_written() {
        for text in [
            "local",
            "hub:hub2",
            "connector:internet|fabrikam.com",
            "fabrikam.com",
        ] {
            let hop = QueuedHop::read(text.to_owned());
            assert!(hop.known().is_some(), "{text}");
            assert_eq!(hop.to_string(), text);
        }
        for text in ["relay:127.0.0.1:2525", "Outbound to contoso", ""] {
            let hop = QueuedHop::read(text.to_owned());
            assert_eq!(hop, QueuedHop::Unreadable(text.to_owned()));
            assert_eq!(hop.to_string(), text, "kept unchanged");
        }
    }

    #[test]
    fn a_dsn_goes_to_the_domain_of_its_recipient() {
        assert_eq!(QueuedHop::domain_of("Kim@Adatum.COM").to_string(), "adatum.com");
        assert!(matches!(
            QueuedHop::domain_of("Kim@Adatum.COM"),
            QueuedHop::Known(NextHop::Domain(_))
        ));
        assert_eq!(
            QueuedHop::domain_of("no-domain"),
            QueuedHop::Unreadable(String::new())
        );
    }
}
