//! Message authentication, on the `mail-auth` crate rather than
//! hand-written canonicalisation:
//!
//! * [`keys`] — the hub's DKIM keys (`postern dkim …`), private halves
//!   kept in the node's store and never sent anywhere;
//! * [`sign`] — DKIM signing of outbound mail on the hub;
//! * [`verify`] — SPF, DKIM, ARC and DMARC checks of inbound mail on the
//!   edge, through the node's resolver;
//! * [`policy`] — what a DMARC failure does under the connector's
//!   `--dmarc-enforcement` (pure, table-tested);
//! * [`results`] — the `Authentication-Results` field and the removal of
//!   forged ones claiming our authserv-id.
//!
//! [`MessageAuth`] is what the SMTP server calls at the final dot, for
//! messages that do not come from a node of the organisation.

pub mod keys;
pub mod policy;
pub mod results;
pub mod sign;
pub mod verify;

use std::borrow::Cow;
use std::time::Duration;

use postern_model::DmarcEnforcement;

pub use keys::{DkimKeyError, DkimKeyStore, DkimKeyView};
pub use policy::{Disposition, DmarcOutcome, DmarcPolicy};
pub use sign::{Signed, Signer};
pub use verify::{Inbound, Verdict, Verifier};

/// A node's message authentication: a hub signs, an edge verifies.
#[derive(Clone, Debug, Default)]
pub struct MessageAuth {
    /// Signs mail of domains with an enabled DKIM key (hubs).
    pub signer: Option<Signer>,
    /// Verifies mail from outside (edges).
    pub verifier: Option<Verifier>,
}

/// The message after authentication: what to queue, or why not.
#[derive(Debug)]
pub enum Judged<'a> {
    /// Queue `message` with `fields` (each without CRLF) prepended.
    Accept {
        /// The message, forged results of ours removed.
        message: Cow<'a, [u8]>,
        /// `DKIM-Signature`, `Authentication-Results`, quarantine field.
        fields: Vec<String>,
    },
    /// Refuse at the final dot with `550 5.7.1` and this text.
    Reject(String),
}

impl MessageAuth {
    /// Signs and/or verifies a message from outside the organisation.
    /// `other_results` is another `Authentication-Results` field of ours
    /// (domain security), merged into the one stamped.
    pub async fn judge<'a>(
        &self,
        inbound: Inbound<'a>,
        enforcement: DmarcEnforcement,
        limit: Duration,
        other_results: Option<&str>,
    ) -> Judged<'a> {
        let mut message = Cow::Borrowed(inbound.message);
        let mut fields = Vec::new();
        if let Some(verifier) = &self.verifier {
            if let Cow::Owned(stripped) = results::strip_ours(inbound.message, verifier.authserv_id()) {
                tracing::info!(remote = %inbound.remote_ip, "removed Authentication-Results claiming our authserv-id");
                message = Cow::Owned(stripped);
            }
            let verdict = verifier
                .verify(
                    Inbound {
                        message: &message,
                        ..inbound
                    },
                    limit,
                )
                .await;
            let field = match other_results {
                Some(other) => results::merge(&verdict.field, other),
                None => verdict.field,
            };
            match policy::disposition(enforcement, verdict.dmarc) {
                Disposition::Reject => {
                    return Judged::Reject(
                        "Message refused: the sender's domain publishes a DMARC reject policy and this message fails it"
                            .into(),
                    );
                }
                Disposition::Quarantine => {
                    fields.push(field);
                    fields.push(format!("{}: quarantine", results::QUARANTINE_FIELD));
                }
                Disposition::Deliver => fields.push(field),
            }
        }
        if let Some(signer) = &self.signer {
            match signer.sign(&message).await {
                Ok(Signed::Field(field)) => fields.push(field.trim_end().to_owned()),
                Ok(Signed::NoKey | Signed::AlreadySigned) => {}
                Err(error) => tracing::error!(%error, "message sent unsigned"),
            }
        }
        Judged::Accept { message, fields }
    }
}
