//! Where each certificate stands in a rotation towards the organisation's
//! peers (DESIGN §10, "Certificates that change"): a newly enabled SMTP
//! certificate of a node whose peers pin it (a subscribed edge, a hub with
//! edges) is *offered* first and not presented until the peers confirm;
//! the certificate it replaces is then *retiring* (no longer presented,
//! still trusted by the peers until the grace period ends) and finally
//! *retired*. A certificate without a record is presented normally.
//!
//! Records live in the `cert_rotation` tree (thumbprint → JSON), apart from
//! the certificates themselves, so a rotation never rewrites a key.

use postern_model::Thumbprint;
use serde::{Deserialize, Serialize};

/// A certificate's place in a rotation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Rotation {
    /// Enabled, waiting for the peers to confirm they trust it; not
    /// presented yet. `note` says what it waits for (or why it failed).
    Offered {
        /// When it was enabled (RFC 3339).
        since: String,
        /// What the offer waits for, or why it was not delivered.
        note: String,
    },
    /// Replaced by `successor`: no longer presented; the peers trust it
    /// until `until` (RFC 3339).
    Retiring {
        /// The certificate presented instead.
        successor: Thumbprint,
        /// End of the grace period.
        until: String,
    },
    /// Past its grace period: the peers refuse it.
    Retired {
        /// The certificate presented instead.
        successor: Thumbprint,
        /// When it was retired.
        since: String,
    },
}

impl Rotation {
    /// The short state word `cert list` prints.
    pub fn word(&self) -> &'static str {
        match self {
            Rotation::Offered { .. } => "offered",
            Rotation::Retiring { .. } => "retiring",
            Rotation::Retired { .. } => "retired",
        }
    }

    /// The detail `cert list` prints beside the word.
    pub fn note(&self) -> String {
        match self {
            Rotation::Offered { since, note } => format!("enabled {since}; {note}"),
            Rotation::Retiring { successor, until } => {
                format!("replaced by {successor}; peers trust it until {until}")
            }
            Rotation::Retired { successor, since } => {
                format!("replaced by {successor}; retired {since}")
            }
        }
    }

    /// Whether the certificate is presented in handshakes (only when no
    /// certificate without a record is available: see `CertStore::select_smtp`).
    pub fn is_offered(&self) -> bool {
        matches!(self, Rotation::Offered { .. })
    }
}
