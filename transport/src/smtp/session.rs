//! The server session as a sans-IO state machine: one [`SessionState`]
//! enum, moved by one `match` per command, that answers every input with a
//! [`Reply`] and an [`Action`] for the I/O layer. Policy comes in as data
//! ([`SessionConfig`]) and as a hook ([`RecipientPolicy`]).
//!
//! The I/O layer's side of the contract:
//! 1. send [`Session::greeting`] on connect;
//! 2. feed bytes to a [`LineReader`](crate::smtp::LineReader) and every line
//!    (or [`LineError`]) to the session, writing replies in order. Clients
//!    that PIPELINE (RFC 2920) send batches; the I/O layer may buffer
//!    replies while complete lines remain, but must flush them before it
//!    blocks waiting for more input, or both sides deadlock;
//! 3. on [`Action::ReceiveData`], flush the 354, then feed the line reader's
//!    leftover bytes and later reads to the [`DataReceiver`]; bytes after the
//!    final dot go back to the line reader; then call [`Session::data_end`];
//! 4. on [`Action::Queue`], make the message durable, then send
//!    [`Session::queued`] (or [`Session::queue_failed`]) before reading on;
//! 5. on [`Action::StartTls`], flush the 220, **discard everything already
//!    buffered** ([`LineReader::clear`](crate::smtp::LineReader::clear)):
//!    plain text pipelined behind STARTTLS must never be read as if it came
//!    over TLS (CVE-2011-0411); then handshake, and close if it fails;
//! 6. on [`Action::Close`], flush and close; on an idle timeout send
//!    [`Session::timeout`].

use std::fmt;

use crate::queue::RelayOrigin;
use crate::smtp::address::{ForwardPath, HeloName, ReversePath};
use crate::smtp::command::{BodyType, Command, CommandError, MailParams, ONCE_KEYWORD};
use crate::smtp::data::{DataEnd, DataReceiver, DataViolation};
use crate::smtp::line::LineError;
use crate::smtp::policy::{RecipientContext, RecipientPolicy, RecipientVerdict, SessionConfig};
use crate::smtp::reply::Reply;

/// How the client introduced itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helo {
    /// The name it gave.
    pub name: HeloName,
    /// True for EHLO (extensions may be used), false for HELO.
    pub extended: bool,
}

/// A message ready to queue: everything the transaction established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The client's EHLO/HELO name, for the `Received:` header.
    pub helo: HeloName,
    /// The sender.
    pub from: ReversePath,
    /// The accepted recipients, in order.
    pub recipients: Vec<ForwardPath>,
    /// The declared body type.
    pub body: Option<BodyType>,
    /// The size the client declared with `SIZE=`.
    pub declared_size: Option<u64>,
    /// Whether the message arrived over TLS.
    pub tls: bool,
    /// `MAIL FROM … REQUIRETLS` (RFC 8689).
    pub require_tls: bool,
    /// The sending node's name for the message, when a node of the
    /// organisation relays it (`X-POSTERN-ONCE`).
    pub origin: Option<RelayOrigin>,
}

/// Where the session is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No EHLO/HELO yet (also right after STARTTLS).
    Connected,
    /// Introduced, no transaction.
    Greeted {
        /// The client's introduction.
        helo: Helo,
    },
    /// MAIL accepted, no recipient yet.
    Mail {
        /// The client's introduction.
        helo: Helo,
        /// The sender.
        from: ReversePath,
        /// Its parameters.
        params: MailParams,
    },
    /// At least one recipient accepted.
    Rcpt {
        /// The transaction so far.
        envelope: Envelope,
        /// The client's introduction.
        helo: Helo,
    },
    /// 354 sent; the I/O layer is receiving the message.
    Data {
        /// The transaction.
        envelope: Envelope,
        /// The client's introduction.
        helo: Helo,
    },
    /// The message is being made durable; waiting for [`Session::queued`].
    Queuing {
        /// The client's introduction.
        helo: Helo,
    },
    /// QUIT or a fatal error; the connection is closing.
    Closed,
}

/// What the I/O layer must do after sending the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the next command.
    Continue,
    /// Discard buffered input, then run the TLS handshake.
    StartTls,
    /// Receive the message with this receiver.
    ReceiveData(DataReceiver),
    /// Make this message durable, then call [`Session::queued`].
    Queue(Envelope),
    /// Close the connection.
    Close,
}

/// The session's answer to one input. `reply` is `None` only with
/// [`Action::Queue`]: the answer waits until the message is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// The reply to send.
    pub reply: Option<Reply>,
    /// What to do next.
    pub action: Action,
}

impl Output {
    fn reply(reply: Reply) -> Self {
        Self {
            reply: Some(reply),
            action: Action::Continue,
        }
    }

    fn then(reply: Reply, action: Action) -> Self {
        Self {
            reply: Some(reply),
            action,
        }
    }
}

/// One server-side SMTP session.
pub struct Session {
    config: SessionConfig,
    policy: Box<dyn RecipientPolicy>,
    tls: bool,
    /// The client proved over TLS that it is a node of the organisation.
    organisation_peer: bool,
    state: SessionState,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("tls", &self.tls)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A new session for a client that just connected.
    pub fn new(config: SessionConfig, policy: Box<dyn RecipientPolicy>) -> Self {
        let tls = config.implicit_tls;
        Self {
            config,
            policy,
            tls,
            organisation_peer: false,
            state: SessionState::Connected,
        }
    }

    /// The 220 greeting to send first.
    pub fn greeting(&self) -> Reply {
        Reply::greeting(self.config.hostname.as_str())
    }

    /// Where the session is.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// Whether the session runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The TLS handshake proved the client a node of the organisation
    /// (direct trust on an organisation connector): from the next EHLO on,
    /// [`ONCE_KEYWORD`] is offered and accepted. Never call it for any
    /// other client: the parameter lets the sender suppress mail.
    pub fn set_organisation_peer(&mut self) {
        if self.tls {
            self.organisation_peer = true;
        }
    }

    /// Parses and handles one command line (without CRLF).
    pub fn command_line(&mut self, line: &[u8]) -> Output {
        match Command::parse(line) {
            Ok(cmd) => self.command(cmd),
            Err(e) => Output::reply(e.reply()),
        }
    }

    /// Answers a line the [`LineReader`](crate::smtp::LineReader) refused.
    pub fn line_error(&mut self, error: LineError) -> Output {
        Output::reply(match error {
            LineError::TooLong => Reply::line_too_long(),
            LineError::BareLineEnding => Reply::bare_line_ending_in_command(),
        })
    }

    /// The client was idle too long: 421 4.4.2 and close.
    pub fn timeout(&mut self) -> Output {
        self.state = SessionState::Closed;
        Output::then(Reply::timeout(self.config.hostname.as_str()), Action::Close)
    }

    /// Handles one parsed command.
    pub fn command(&mut self, cmd: Command) -> Output {
        let host = self.config.hostname.as_str();
        match cmd {
            Command::Quit => {
                self.state = SessionState::Closed;
                Output::then(Reply::closing(host), Action::Close)
            }
            _ if matches!(
                self.state,
                SessionState::Data { .. } | SessionState::Queuing { .. } | SessionState::Closed
            ) =>
            {
                Output::reply(Reply::bad_sequence("Command out of sequence"))
            }
            Command::Noop => Output::reply(Reply::ok()),
            Command::Vrfy(_) => Output::reply(Reply::cannot_verify()),
            Command::Help(_) => Output::reply(Reply::help()),
            Command::Unknown(_) => Output::reply(Reply::unknown_command()),
            Command::Ehlo(name) => {
                let reply = Reply::ehlo(host, &name.to_string(), &self.keywords());
                self.state = SessionState::Greeted {
                    helo: Helo { name, extended: true },
                };
                Output::reply(reply)
            }
            Command::Helo(name) => {
                let reply = Reply::helo(host, &name.to_string());
                self.state = SessionState::Greeted {
                    helo: Helo {
                        name,
                        extended: false,
                    },
                };
                Output::reply(reply)
            }
            Command::Rset => {
                self.reset_transaction();
                Output::reply(Reply::ok())
            }
            Command::StartTls => self.start_tls(),
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, !params.is_empty()),
            Command::Data => self.data(),
        }
    }

    /// The message has been received; `end` is the receiver's report.
    pub fn data_end(&mut self, end: DataEnd) -> Output {
        let SessionState::Data { envelope, helo } = std::mem::replace(&mut self.state, SessionState::Closed)
        else {
            self.state = SessionState::Closed;
            return Output::then(Reply::bad_sequence("No message in progress"), Action::Close);
        };
        let violation = end
            .violation
            .or((end.size > self.config.max_message_size).then_some(DataViolation::TooBig));
        if let Some(v) = violation {
            self.state = SessionState::Greeted { helo };
            return Output::reply(v.reply(self.config.max_message_size));
        }
        self.state = SessionState::Queuing { helo };
        Output {
            reply: None,
            action: Action::Queue(envelope),
        }
    }

    /// The message queued by [`Action::Queue`] is durable under `id`.
    pub fn queued(&mut self, id: &dyn fmt::Display) -> Reply {
        self.finish_queuing();
        Reply::queued(id)
    }

    /// The message of [`Action::Queue`] was queued here before (a node of
    /// the organisation relayed it again): 250, nothing queued.
    pub fn duplicate_suppressed(&mut self) -> Reply {
        self.finish_queuing();
        Reply::duplicate_suppressed()
    }

    /// The message queued by [`Action::Queue`] could not be stored.
    pub fn queue_failed(&mut self) -> Reply {
        self.finish_queuing();
        Reply::queue_failed()
    }

    /// The message queued by [`Action::Queue`] was refused after its data
    /// (a DMARC reject policy, a header section that does not parse): the
    /// transaction ends with `reply` (a 5xx); the session goes on.
    pub fn refused_after_data(&mut self, reply: Reply) -> Reply {
        self.finish_queuing();
        reply
    }

    fn finish_queuing(&mut self) {
        if let SessionState::Queuing { helo } = std::mem::replace(&mut self.state, SessionState::Connected) {
            self.state = SessionState::Greeted { helo };
        } else {
            self.state = SessionState::Closed;
        }
    }

    /// The EHLO keywords for the session's current TLS state.
    pub fn keywords(&self) -> Vec<String> {
        let mut words = vec![
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
        ];
        if self.config.offers_starttls() && !self.tls {
            words.push("STARTTLS".into());
        }
        words.extend(["8BITMIME".into(), "ENHANCEDSTATUSCODES".into()]);
        if self.offers_requiretls() {
            words.push("REQUIRETLS".into());
        }
        if self.organisation_peer {
            words.push(ONCE_KEYWORD.into());
        }
        words
    }

    /// REQUIRETLS (RFC 8689) is offered by connectors that require TLS,
    /// once the session is TLS.
    fn offers_requiretls(&self) -> bool {
        self.config.requires_tls() && self.tls
    }

    fn reset_transaction(&mut self) {
        self.state = match std::mem::replace(&mut self.state, SessionState::Connected) {
            SessionState::Greeted { helo }
            | SessionState::Mail { helo, .. }
            | SessionState::Rcpt { helo, .. }
            | SessionState::Data { helo, .. }
            | SessionState::Queuing { helo } => SessionState::Greeted { helo },
            other => other,
        };
    }

    fn start_tls(&mut self) -> Output {
        if self.tls {
            return Output::reply(Reply::bad_sequence("TLS already active"));
        }
        if !self.config.offers_starttls() {
            return Output::reply(Reply::starttls_not_offered());
        }
        match self.state {
            SessionState::Greeted { .. } => {
                // RFC 3207 section 4.2: forget everything learnt before TLS.
                self.state = SessionState::Connected;
                self.tls = true;
                Output::then(Reply::ready_for_tls(), Action::StartTls)
            }
            SessionState::Connected => Output::reply(Reply::bad_sequence("Send EHLO first")),
            _ => Output::reply(Reply::bad_sequence(
                "STARTTLS not allowed during a mail transaction",
            )),
        }
    }

    fn mail(&mut self, from: ReversePath, params: MailParams) -> Output {
        let helo = match &self.state {
            SessionState::Connected => {
                return Output::reply(Reply::bad_sequence("Send EHLO/HELO first"));
            }
            SessionState::Greeted { helo } => helo.clone(),
            _ => return Output::reply(Reply::bad_sequence("Sender already specified")),
        };
        if self.config.requires_tls() && !self.tls {
            return Output::reply(Reply::tls_required());
        }
        if params.require_tls && !self.offers_requiretls() {
            return Output::reply(CommandError::UnsupportedParameter("REQUIRETLS".into()).reply());
        }
        let has_extensions =
            params.size.is_some() || params.body.is_some() || params.require_tls || params.once.is_some();
        if let Some(p) = params.other.first() {
            return Output::reply(CommandError::UnsupportedParameter(p.keyword.clone()).reply());
        }
        if params.once.is_some() && !self.organisation_peer {
            return Output::reply(CommandError::UnsupportedParameter(ONCE_KEYWORD.into()).reply());
        }
        if has_extensions && !helo.extended {
            return Output::reply(CommandError::UnsupportedParameter("after HELO".into()).reply());
        }
        if params.size.is_some_and(|s| s > self.config.max_message_size) {
            return Output::reply(Reply::too_big(self.config.max_message_size));
        }
        self.state = SessionState::Mail { helo, from, params };
        Output::reply(Reply::sender_ok())
    }

    fn rcpt(&mut self, to: ForwardPath, has_params: bool) -> Output {
        let tls = self.tls;
        let (helo, from, accepted) = match &self.state {
            SessionState::Mail { helo, from, .. } => (helo, from, &[][..]),
            SessionState::Rcpt { helo, envelope } => (helo, &envelope.from, &envelope.recipients[..]),
            _ => return Output::reply(Reply::bad_sequence("Need MAIL before RCPT")),
        };
        if has_params {
            return Output::reply(CommandError::UnsupportedParameter("on RCPT".into()).reply());
        }
        if accepted.len() >= self.config.max_recipients {
            return Output::reply(Reply::too_many_recipients());
        }
        let ctx = RecipientContext {
            helo: &helo.name,
            from,
            accepted,
            tls,
        };
        if let RecipientVerdict::Reject(reply) = self.policy.check(ctx, &to) {
            return Output::reply(reply);
        }
        self.state = match std::mem::replace(&mut self.state, SessionState::Closed) {
            SessionState::Mail { helo, from, params } => {
                let envelope = Envelope {
                    helo: helo.name.clone(),
                    from,
                    recipients: vec![to],
                    body: params.body,
                    declared_size: params.size,
                    tls,
                    require_tls: params.require_tls,
                    origin: params.once,
                };
                SessionState::Rcpt { envelope, helo }
            }
            SessionState::Rcpt { mut envelope, helo } => {
                envelope.recipients.push(to);
                SessionState::Rcpt { envelope, helo }
            }
            other => other,
        };
        Output::reply(Reply::recipient_ok())
    }

    fn data(&mut self) -> Output {
        match std::mem::replace(&mut self.state, SessionState::Closed) {
            SessionState::Rcpt { envelope, helo } => {
                self.state = SessionState::Data { envelope, helo };
                let receiver = DataReceiver::new(self.config.max_message_size);
                Output::then(Reply::start_data(), Action::ReceiveData(receiver))
            }
            other => {
                let text = if matches!(other, SessionState::Mail { .. }) {
                    "Need RCPT before DATA"
                } else {
                    "Need MAIL before DATA"
                };
                self.state = other;
                Output::reply(Reply::bad_sequence(text))
            }
        }
    }
}
