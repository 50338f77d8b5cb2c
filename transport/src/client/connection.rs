//! An open, introduced (and, per the hop's policy, encrypted) connection
//! that runs mail transactions: pipelined when the server offers
//! PIPELINING (RFC 2920), one command at a time otherwise. Each message
//! counts in the node's [`Metrics`] by its outcome.
//!
//! Over LMTP (RFC 2033) the server answers once per accepted recipient
//! after the message. Those replies are read one by one; when the
//! connection fails among them, the recipients already answered keep
//! their outcome (a delivered one is not sent again) and only the rest
//! are tried again.

use std::sync::Arc;

use crate::client::connect::quit_quietly;
use crate::client::error::reply_text;
use crate::client::plan::PlainReason;
use crate::client::transaction::{
    dot_stuff, every, is_safe_path, is_success, lmtp_outcomes, mail_command, outcomes, rcpt_command,
    size_limit, too_big_outcomes,
};
use crate::client::wire::Wire;
use crate::client::{ClientError, ClientSettings, Dialect};
use crate::metrics::{MessageOutcome, Metrics};
use crate::protocol_log::Direction;
use crate::queue::{DeliveryOutcome, RecipientOutcome, RelayOrigin};
use crate::routing::HostPort;
use crate::smtp::{EhloCapabilities, Reply};
use crate::tls::TlsInfo;

/// Where the connection stands between transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkState {
    /// No transaction open: MAIL may follow.
    Ready,
    /// A transaction ran; RSET before the next one (sent in the same
    /// write as the next transaction's commands when the server pipelines).
    NeedsReset,
    /// The connection failed or the server said 421; it must not be used.
    Broken,
}

/// A connection to one host of a next hop.
pub struct ClientConnection {
    wire: Wire,
    dialect: Dialect,
    peer: HostPort,
    caps: EhloCapabilities,
    tls: Option<TlsInfo>,
    plain: Option<PlainReason>,
    settings: ClientSettings,
    state: LinkState,
    messages: u32,
    metrics: Option<Arc<Metrics>>,
    policy: Option<crate::internet_tls::PolicySource>,
    require_tls: bool,
    /// The last transaction failed before the server answered the RSET
    /// that opened it: the connection had died while idle, and nothing of
    /// the message reached the server.
    stale: bool,
}

impl std::fmt::Debug for ClientConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnection")
            .field("dialect", &self.dialect)
            .field("peer", &self.peer)
            .field("tls", &self.tls.as_ref().map(|t| &t.version))
            .field("plain", &self.plain)
            .field("state", &self.state)
            .field("messages", &self.messages)
            .finish()
    }
}

impl ClientConnection {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        wire: Wire,
        dialect: Dialect,
        peer: HostPort,
        caps: EhloCapabilities,
        tls: Option<TlsInfo>,
        plain: Option<PlainReason>,
        settings: ClientSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            wire,
            dialect,
            peer,
            caps,
            tls,
            plain,
            settings,
            state: LinkState::Ready,
            messages: 0,
            metrics,
            policy: None,
            require_tls: false,
            stale: false,
        }
    }

    /// Whether the next `MAIL FROM` carries `REQUIRETLS`.
    pub(crate) fn set_require_tls(&mut self, require_tls: bool) {
        self.require_tls = require_tls;
    }

    /// Records the TLS policy the connection was opened under (hops whose
    /// policy was resolved by [`crate::internet_tls`]).
    pub(crate) fn set_policy(&mut self, policy: crate::internet_tls::PolicySource) {
        self.policy = Some(policy);
    }

    /// The TLS policy the connection was opened under; `None` when only
    /// the connector's settings were consulted (no Internet TLS lookup).
    pub fn policy(&self) -> Option<crate::internet_tls::PolicySource> {
        self.policy
    }

    /// The protocol this connection speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The host this connection reached.
    pub fn peer(&self) -> &HostPort {
        &self.peer
    }

    /// What the server announced in its (last) EHLO answer; empty after HELO.
    pub fn capabilities(&self) -> &EhloCapabilities {
        &self.caps
    }

    /// What the TLS handshake negotiated; `None` on a plain connection.
    pub fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// Why the connection is plain text; `None` when it is TLS.
    pub fn plain_reason(&self) -> Option<PlainReason> {
        self.plain
    }

    /// Transactions started on this connection.
    pub fn messages_sent(&self) -> u32 {
        self.messages
    }

    /// Whether another message may be sent here: the connection is sound
    /// and below `max_messages_per_connection`.
    pub fn is_reusable(&self) -> bool {
        self.state != LinkState::Broken && self.messages < self.settings.max_messages_per_connection
    }

    /// Whether the last send failed before the server answered the RSET
    /// that began it: the connection had died while it was idle, and the
    /// message was not sent, so it may go at once on another connection.
    pub fn failed_at_reset(&self) -> bool {
        self.stale
    }

    /// RSET: ends any transaction, and proves the connection is alive.
    pub async fn reset(&mut self) -> Result<(), ClientError> {
        let reply = self.command("RSET\r\n", "reply to RSET").await?;
        self.check_reset(&reply)?;
        self.state = LinkState::Ready;
        Ok(())
    }

    /// The server's reply to RSET: fine, or the connection is unusable.
    fn check_reset(&mut self, reply: &Reply) -> Result<(), ClientError> {
        if is_success(reply) {
            Ok(())
        } else {
            self.state = LinkState::Broken;
            Err(ClientError::Refused {
                host: self.wire.host().to_owned(),
                stage: "RSET",
                reply: reply_text(reply),
            })
        }
    }

    /// Sends one message to `recipients` (`sender` `None` is `<>`) and says
    /// what became of each recipient. `body` is the message with CRLF line
    /// ends, not dot-stuffed. `Err` means the connection failed during the
    /// transaction: every recipient is to be tried again later.
    ///
    /// The message counts as accepted (and its bytes as sent) when the
    /// server took at least one recipient, else as deferred when one may be
    /// retried (or on `Err`), else as rejected.
    pub async fn send(
        &mut self,
        sender: Option<&str>,
        recipients: &[String],
        body: &[u8],
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        self.send_relayed(sender, recipients, body, None).await
    }

    /// Like [`ClientConnection::send`], naming the message by `origin`
    /// (`X-POSTERN-ONCE`) when the server offers that, so a node of the
    /// organisation drops it if it already has it. Give `origin` only to
    /// a server proved to be a node of the organisation.
    pub async fn send_relayed(
        &mut self,
        sender: Option<&str>,
        recipients: &[String],
        body: &[u8],
        origin: Option<&RelayOrigin>,
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        self.stale = false;
        let result = self.send_message(sender, recipients, body, origin).await;
        // A connection found dead at RSET sent nothing: the message goes
        // on another connection and counts there.
        if let Some(metrics) = self.metrics.as_ref().filter(|_| !self.stale) {
            let outcome = match &result {
                Ok(outcomes) => message_outcome(outcomes),
                Err(_) => Some(MessageOutcome::Deferred),
            };
            if let Some(outcome) = outcome {
                metrics.message(Direction::Send, outcome);
                if outcome == MessageOutcome::Accepted {
                    metrics.bytes(Direction::Send, body.len() as u64);
                }
            }
        }
        result
    }

    async fn send_message(
        &mut self,
        sender: Option<&str>,
        recipients: &[String],
        body: &[u8],
        origin: Option<&RelayOrigin>,
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        if self.state == LinkState::Broken {
            return Err(ClientError::Closed {
                host: self.wire.host().to_owned(),
                stage: "the start of a transaction (the connection was already broken)",
            });
        }
        if sender.is_some_and(|s| !is_safe_path(s)) {
            let text = "501 5.1.7 Bad sender address syntax".to_owned();
            return Ok(every(recipients, DeliveryOutcome::PermanentFailure(text)));
        }
        if let Some(limit) = size_limit(&self.caps)
            && body.len() as u64 > limit
        {
            return Ok(too_big_outcomes(recipients, body.len(), limit));
        }
        let sendable: Vec<String> = recipients.iter().filter(|r| is_safe_path(r)).cloned().collect();
        if sendable.is_empty() {
            return Ok(with_unsafe(recipients, Vec::new()));
        }
        // With PIPELINING the RSET goes in the same write as MAIL, RCPT
        // and DATA (RFC 2920 §3.1 lets RSET be pipelined): a reused
        // connection costs no round trip of its own.
        let reset = match (self.state, self.caps.pipelining) {
            (LinkState::NeedsReset, true) => Reset::Pipelined,
            (LinkState::NeedsReset, false) => {
                if let Err(e) = self.reset().await {
                    self.state = LinkState::Broken;
                    self.stale = true;
                    return Err(e);
                }
                Reset::Done
            }
            _ => Reset::Done,
        };
        self.messages += 1;
        self.state = LinkState::NeedsReset;
        match self.transaction(sender, &sendable, body, origin, reset).await {
            Ok(sent) => Ok(with_unsafe(recipients, sent)),
            Err(e) => {
                self.state = LinkState::Broken;
                Err(e)
            }
        }
    }

    /// QUIT and close.
    pub async fn quit(mut self) {
        quit_quietly(&mut self.wire).await;
    }

    async fn transaction(
        &mut self,
        sender: Option<&str>,
        recipients: &[String],
        body: &[u8],
        origin: Option<&RelayOrigin>,
        reset: Reset,
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        let mut mail = mail_command(sender, &self.caps, body, origin);
        if self.require_tls {
            mail.truncate(mail.len() - 2);
            mail.push_str(" REQUIRETLS\r\n");
        }
        let mut rcpts = Vec::with_capacity(recipients.len());
        let data = if self.caps.pipelining {
            let mut batch = String::with_capacity(mail.len() + 64 * (recipients.len() + 1));
            if reset == Reset::Pipelined {
                batch.push_str("RSET\r\n");
            }
            batch.push_str(&mail);
            for r in recipients {
                batch.push_str(&rcpt_command(r));
            }
            batch.push_str("DATA\r\n");
            let limit = self.settings.command_timeout;
            if reset == Reset::Pipelined {
                self.pipelined_reset(&batch, limit).await?;
            } else {
                self.wire
                    .write(&batch, "pipelined MAIL, RCPT and DATA", limit)
                    .await?;
            }
            let mail = self.read("reply to MAIL").await?;
            for _ in recipients {
                rcpts.push(self.read("reply to RCPT").await?);
            }
            let data = self.read("reply to DATA").await?;
            if !accepted_any(&mail, &rcpts) {
                if data.code() == 354 && self.dialect == Dialect::Lmtp {
                    // An LMTP server must refuse DATA without recipients
                    // (RFC 2033 §4.2); one that did not would answer the
                    // end of an empty message zero times. Don't use it.
                    self.state = LinkState::Broken;
                    return Ok(outcomes(recipients, &mail, &rcpts, None));
                }
                if data.code() == 354 {
                    // RFC 2920 §3.1: DATA was accepted though no recipient
                    // was; an empty message ends it (the server refuses it).
                    self.wire.write(".\r\n", "empty message", limit).await?;
                    self.read("reply to end of data").await?;
                }
                self.reset_after_refusal().await;
                return Ok(outcomes(recipients, &mail, &rcpts, None));
            }
            (mail, data)
        } else {
            let mail = self.command(&mail, "reply to MAIL").await?;
            if is_success(&mail) {
                for r in recipients {
                    rcpts.push(self.command(&rcpt_command(r), "reply to RCPT").await?);
                }
            }
            if !accepted_any(&mail, &rcpts) {
                self.reset_after_refusal().await;
                return Ok(outcomes(recipients, &mail, &rcpts, None));
            }
            let data = self.command("DATA\r\n", "reply to DATA").await?;
            (mail, data)
        };
        let (mail, data) = data;
        if data.code() != 354 {
            return Ok(outcomes(recipients, &mail, &rcpts, Some(&data)));
        }
        let limit = self.settings.data_timeout;
        self.wire
            .write_message(&dot_stuff(body), "writing the message", limit)
            .await?;
        if self.dialect == Dialect::Lmtp {
            return Ok(self.lmtp_replies(recipients, &mail, &rcpts).await);
        }
        let end = self.wire.read_reply("reply to end of data", limit).await?;
        self.note(&end);
        Ok(outcomes(recipients, &mail, &rcpts, Some(&end)))
    }

    /// The LMTP replies after the message, one per recipient accepted at
    /// RCPT, mapped to outcomes. A failure among them breaks the
    /// connection; the recipients not answered yet are tried again.
    async fn lmtp_replies(
        &mut self,
        recipients: &[String],
        mail: &Reply,
        rcpts: &[Reply],
    ) -> Vec<RecipientOutcome> {
        let expected = rcpts.iter().filter(|r| is_success(r)).count();
        let mut ends = Vec::with_capacity(expected);
        while ends.len() < expected {
            match self
                .wire
                .read_reply("LMTP reply after the message", self.settings.data_timeout)
                .await
            {
                Ok(reply) => {
                    self.note(&reply);
                    ends.push(reply);
                }
                Err(e) => {
                    tracing::info!(
                        host = %self.peer, error = %e, answered = ends.len(), expected,
                        "LMTP connection failed among the per-recipient replies; the unanswered recipients are retried"
                    );
                    self.state = LinkState::Broken;
                    break;
                }
            }
        }
        lmtp_outcomes(recipients, mail, rcpts, &ends)
    }

    /// Writes `batch` (RSET, MAIL, RCPT…, DATA) and reads the reply to its
    /// RSET. A failure up to here means the connection died while idle:
    /// the server answered none of the transaction, so it is marked stale
    /// and the message may go on another connection at once.
    async fn pipelined_reset(&mut self, batch: &str, limit: std::time::Duration) -> Result<(), ClientError> {
        let reset = async {
            self.wire
                .write(batch, "pipelined RSET, MAIL, RCPT and DATA", limit)
                .await?;
            let reply = self.read("reply to RSET").await?;
            self.check_reset(&reply)
        };
        let result = reset.await;
        if result.is_err() {
            self.stale = true;
        }
        result
    }

    /// RSET after a transaction that sent no message; the outcomes are
    /// known already, so a failure only marks the connection unusable.
    async fn reset_after_refusal(&mut self) {
        if self.state == LinkState::Broken {
            return;
        }
        if let Err(e) = self.reset().await {
            tracing::debug!(host = %self.peer, error = %e, "RSET after a refused transaction failed");
            self.state = LinkState::Broken;
        }
    }

    async fn command(&mut self, line: &str, stage: &'static str) -> Result<Reply, ClientError> {
        let reply = self
            .wire
            .command(line, stage, self.settings.command_timeout)
            .await?;
        self.note(&reply);
        Ok(reply)
    }

    async fn read(&mut self, stage: &'static str) -> Result<Reply, ClientError> {
        let reply = self.wire.read_reply(stage, self.settings.command_timeout).await?;
        self.note(&reply);
        Ok(reply)
    }

    /// 421: the server is closing the connection (RFC 5321 §3.8).
    fn note(&mut self, reply: &Reply) {
        if reply.code() == 421 {
            self.state = LinkState::Broken;
        }
    }
}

/// Whether a transaction begins with a pipelined RSET.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reset {
    /// The connection is ready for MAIL.
    Done,
    /// RSET goes first in the pipelined batch.
    Pipelined,
}

/// How a message went, from its recipients' outcomes: accepted when any
/// was delivered, deferred when any may be retried, rejected otherwise;
/// `None` without recipients.
fn message_outcome(outcomes: &[RecipientOutcome]) -> Option<MessageOutcome> {
    let any = |f: fn(&DeliveryOutcome) -> bool| outcomes.iter().any(|o| f(&o.outcome));
    if outcomes.is_empty() {
        None
    } else if any(|o| matches!(o, DeliveryOutcome::Delivered(_))) {
        Some(MessageOutcome::Accepted)
    } else if any(|o| matches!(o, DeliveryOutcome::TransientFailure(_))) {
        Some(MessageOutcome::Deferred)
    } else {
        Some(MessageOutcome::Rejected)
    }
}

/// MAIL accepted and at least one RCPT accepted.
fn accepted_any(mail: &Reply, rcpts: &[Reply]) -> bool {
    is_success(mail) && rcpts.iter().any(is_success)
}

/// The outcomes of all `recipients`: those of the ones sent (`sent`, in
/// order) and a permanent syntax failure for those never sent because
/// their address could not be put on a command line safely.
fn with_unsafe(recipients: &[String], sent: Vec<RecipientOutcome>) -> Vec<RecipientOutcome> {
    let mut sent = sent.into_iter();
    recipients
        .iter()
        .map(|r| {
            let outcome = if is_safe_path(r) {
                // `transaction` returns one outcome per recipient sent.
                sent.next().map(|o| o.outcome).unwrap_or_else(|| {
                    DeliveryOutcome::TransientFailure("no outcome for this recipient".to_owned())
                })
            } else {
                DeliveryOutcome::PermanentFailure("501 5.1.3 Bad recipient address syntax".to_owned())
            };
            RecipientOutcome::new(r.clone(), outcome)
        })
        .collect()
}
