//! One client connection: the I/O half of the contract in
//! [`crate::smtp::session`]. Bytes read go to a [`LineReader`]; every
//! complete line goes to the [`Session`]; replies are batched while lines
//! remain (PIPELINING) and flushed before the task blocks for input. After
//! STARTTLS's 220 the buffered plain text is dropped (CVE-2011-0411) and
//! the handshake runs; after 354 bytes go to the [`DataReceiver`]; at the
//! final dot the message gets its `Received:` field, passes the header
//! firewall and is made durable before the 250.
//!
//! Every session counts in the node's [`Metrics`] and, on a connector at
//! level `Verbose`, writes the protocol log: `+`, each command line (`<`,
//! never message data: it bypasses the line reader and the logger), each
//! reply line (`>`), the `*` TLS lines after STARTTLS, a `*` line with the
//! queue id of each accepted message, and `-`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postern_model::QueueId;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::Shared;
use super::admission::Ticket;
use super::firewall::Firewall;
use super::incoming::{Incoming, Problem, Received};
use super::judging::{self, Verdict};
use super::received::ReceivedStamp;
use super::recipients::{RouteBook, RoutingPolicy, SharedOrigin, resolve_mailbox, route};
use super::record::{ConnectionInfo, SessionEnd, SessionId, SessionRecord};
use super::stream::Stream;
use crate::auth::Inbound;
use crate::metrics::{MessageOutcome, Metrics, TlsHandshakeOutcome};
use crate::protocol_log::{self, Direction, Endpoints, SessionLogger};
use crate::queue::spool::SpoolWriter;
use crate::queue::{self, RecipientState, RelayedOutcome};
use crate::routing::Origin;
use crate::smtp::{
    Action, DataReceiver, DataStatus, Envelope, Helo, LineReader, Output, Reply, ReversePath, Session,
    SessionState,
};
use crate::tls::{PeerTrust, TlsInfo, is_certificate_refusal};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// How long closing (TLS close_notify, TCP FIN) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection ended early; logged at debug, recorded as a [`SessionEnd`].
#[derive(Debug, thiserror::Error)]
enum ConnError {
    /// Reading or writing failed (reset, broken pipe).
    #[error("connection I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The STARTTLS handshake failed or took too long.
    #[error("TLS handshake: {0}")]
    Tls(String),
}

impl ConnError {
    fn end(self) -> SessionEnd {
        match self {
            Self::Io(e) => SessionEnd::Io(e.to_string()),
            Self::Tls(why) => SessionEnd::TlsFailed(why),
        }
    }
}

/// What to do after handling input.
enum Flow {
    /// Read on.
    Continue,
    /// Flush and close.
    Close(SessionEnd),
}

/// What waiting for input came to.
enum Wait {
    Bytes(usize),
    Eof,
    Timeout,
    Shutdown,
}

/// Runs one connection to its end and reports it to the connector.
pub(crate) async fn run(
    tcp: TcpStream,
    remote: std::net::SocketAddr,
    local: std::net::SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    ticket: Ticket,
) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%remote, %error, "cannot set TCP_NODELAY");
    }
    let info = ConnectionInfo {
        session_id: SessionId::random(),
        connector: shared.config.name.clone(),
        local,
        remote,
        helo: None,
        tls: None,
        peer_trust: PeerTrust::None,
    };
    tracing::debug!(session = %info.session_id, %remote, connector = %info.connector, "connection accepted");
    shared
        .ctx
        .metrics
        .smtp_session(Direction::Receive, &shared.config.name);
    let log = session_logger(&shared, Endpoints { local, remote });
    let mut conn = Connection::new(Stream::Plain(tcp), info, shared, stop, log);
    conn.ticket = Some(ticket);
    conn.log.connect();
    let end = match conn.drive().await {
        Ok(end) => end,
        Err(error) => {
            tracing::debug!(session = %conn.info.session_id, %remote, %error, "connection failed");
            error.end()
        }
    };
    conn.close().await;
    conn.log.disconnect();
    tracing::debug!(session = %conn.info.session_id, %remote, ?end, queued = conn.queued.len(), "session ended");
    let Connection {
        info, queued, shared, ..
    } = conn;
    shared.finished(SessionRecord { info, queued, end });
}

/// The session's protocol logger: enabled when the node has a receive log
/// and the connector's level is `Verbose`.
fn session_logger(shared: &Shared, endpoints: Endpoints) -> SessionLogger {
    match &shared.ctx.receive_log {
        Some(log) => log.session(
            shared.config.protocol_logging_level,
            Arc::clone(&shared.connector_id),
            protocol_log::SessionId::next(log.clock()),
            endpoints,
        ),
        None => SessionLogger::disabled(),
    }
}

struct Connection {
    stream: Stream,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    session: Session,
    lines: LineReader,
    routes: RouteBook,
    /// Set between 354 and the final dot.
    receiving: Option<DataReceiver>,
    /// The message being received.
    incoming: Incoming,
    /// Replies not yet written.
    out: Vec<u8>,
    buf: Vec<u8>,
    info: ConnectionInfo,
    queued: Vec<QueueId>,
    /// Messages received in this session (for the `Received:` id).
    transactions: u32,
    /// The protocol log of this session (disabled unless `Verbose`).
    log: SessionLogger,
    /// Who is sending, for routing and domain security.
    origin: SharedOrigin,
    /// The session's place under the connector's connection limits.
    ticket: Option<Ticket>,
    /// When the session must end, however busy (`ConnectionTimeout`).
    deadline: Instant,
    /// When the first byte of the command line being read arrived.
    line_started: Option<Instant>,
    /// When message data began, and how many octets have come since.
    data_progress: Option<(Instant, u64)>,
    /// 5xx replies sent (`MaxProtocolErrors`).
    errors: u64,
}

impl Connection {
    fn new(
        stream: Stream,
        info: ConnectionInfo,
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
        log: SessionLogger,
    ) -> Self {
        let routes = RouteBook::default();
        let origin = SharedOrigin::new(Origin {
            connector: shared.config.name.clone(),
            relay_allowed: shared.config.relay_allowed,
            peer: PeerTrust::None,
            tls: false,
            domain_secure_enabled: shared.config.domain_secure_enabled,
        });
        let policy = RoutingPolicy::new(
            Arc::clone(&shared.ctx.router),
            shared.postmaster.clone(),
            routes.clone(),
        )
        .with_origin(origin.clone());
        let config = shared.config.session_config(shared.starttls_available());
        let shared_timeout = shared.config.connection_timeout;
        Self {
            stream,
            session: Session::new(config, Box::new(policy)),
            shared,
            stop,
            lines: LineReader::new(),
            routes,
            receiving: None,
            incoming: Incoming::default(),
            out: Vec::new(),
            buf: vec![0; READ_CHUNK],
            info,
            queued: Vec::new(),
            transactions: 0,
            log,
            origin,
            ticket: None,
            deadline: Instant::now() + shared_timeout,
            line_started: None,
            data_progress: None,
            errors: 0,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.ctx.metrics
    }

    /// The session from greeting to end.
    async fn drive(&mut self) -> Result<SessionEnd, ConnError> {
        let greeting = self.session.greeting();
        self.reply(&greeting);
        loop {
            if let Flow::Close(end) = self.process().await? {
                self.flush().await?;
                return Ok(end);
            }
            // Everything buffered is answered: flush before blocking, or a
            // pipelining client and we would wait for each other.
            self.flush().await?;
            match self.wait().await? {
                Wait::Bytes(n) => self.lines.feed(&self.buf[..n]),
                Wait::Eof => return Ok(SessionEnd::PeerClosed),
                Wait::Timeout => {
                    let output = self.session.timeout();
                    if let Some(reply) = &output.reply {
                        self.reply(reply);
                    }
                    self.flush().await?;
                    return Ok(SessionEnd::Timeout);
                }
                Wait::Shutdown => {
                    self.reply(&Reply::shutting_down(self.shared.config.fqdn.as_str()));
                    self.flush().await?;
                    return Ok(SessionEnd::Shutdown);
                }
            }
        }
    }

    /// Handles everything buffered: message data, then command lines.
    async fn process(&mut self) -> Result<Flow, ConnError> {
        loop {
            if let Some(receiver) = self.receiving.as_mut() {
                let pending = self.lines.take_buffered();
                if let Some((_, octets)) = self.data_progress.as_mut() {
                    *octets += pending.len() as u64;
                }
                let status = receiver.feed(&pending, self.incoming.buffer());
                self.incoming.settle();
                match status {
                    DataStatus::More => return Ok(Flow::Continue),
                    DataStatus::End { consumed, end } => {
                        self.receiving = None;
                        self.data_progress = None;
                        // Bytes after the final dot are pipelined commands.
                        self.lines.feed(pending.get(consumed..).unwrap_or_default());
                        let output = self.session.data_end(end);
                        if !matches!(output.action, Action::Queue(_)) {
                            // Refused at the final dot (too big, bare LF…).
                            self.incoming = Incoming::default();
                            self.message_refused(output.reply.as_ref());
                        }
                        if let Flow::Close(end) = self.act(output).await? {
                            return Ok(Flow::Close(end));
                        }
                        continue;
                    }
                }
            }
            let output = match self.lines.next_line() {
                None => return Ok(Flow::Continue),
                Some(Ok(line)) => {
                    self.line_started = None;
                    self.log.receive(&String::from_utf8_lossy(&line));
                    self.session.command_line(&line)
                }
                Some(Err(error)) => {
                    self.line_started = None;
                    self.log.info(format_args!("Command line refused: {error}"));
                    self.session.line_error(error)
                }
            };
            if let Some(helo) = current_helo(self.session.state())
                && self.info.helo.as_ref() != Some(&helo.name)
            {
                self.info.helo = Some(helo.name.clone());
            }
            if let Flow::Close(end) = self.act(output).await? {
                return Ok(Flow::Close(end));
            }
        }
    }

    /// Sends the session's reply and does what it asks; after too many
    /// errors, 421 4.7.0 and close.
    async fn act(&mut self, output: Output) -> Result<Flow, ConnError> {
        if let Some(reply) = &output.reply {
            if reply.is_permanent() {
                self.before_refusal().await?;
            }
            self.reply(reply);
        }
        let flow = self.perform(output.action).await?;
        if matches!(flow, Flow::Continue) && self.shared.config.max_protocol_errors.reached_by(self.errors) {
            tracing::info!(session = %self.info.session_id, remote = %self.info.remote, errors = self.errors, "too many protocol errors; 421 4.7.0");
            self.reply(&Reply::too_many_errors(self.shared.config.fqdn.as_str()));
            return Ok(Flow::Close(SessionEnd::TooManyErrors));
        }
        Ok(flow)
    }

    /// Before a 5xx reply: counts the error and, for a session whose peer
    /// has not authenticated with a trusted certificate, waits the
    /// connector's tarpit interval (within the session's life).
    async fn before_refusal(&mut self) -> Result<(), ConnError> {
        self.errors += 1;
        let tarpit = self.shared.config.tarpit_interval;
        let authenticated = matches!(self.info.peer_trust, PeerTrust::Direct(_) | PeerTrust::Pki { .. });
        if !tarpit.is_zero() && !authenticated {
            self.flush().await?;
            let until = (Instant::now() + tarpit).min(self.deadline);
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                // A node shutting down does not wait out the tarpit.
                _ = self.stop.wait_for(|stop| *stop) => {}
            }
        }
        Ok(())
    }

    /// Does what the session asked after its reply.
    async fn perform(&mut self, action: Action) -> Result<Flow, ConnError> {
        match action {
            Action::Continue => Ok(Flow::Continue),
            Action::Close => Ok(Flow::Close(SessionEnd::Quit)),
            Action::StartTls => {
                self.flush().await?;
                // CVE-2011-0411: nothing sent in plain text behind
                // STARTTLS may be read as if it came over TLS.
                self.lines.clear();
                self.start_tls().await?;
                Ok(Flow::Continue)
            }
            Action::ReceiveData(receiver) => {
                self.incoming = Incoming::new(self.shared.ctx.spool_dir.as_deref());
                self.receiving = Some(receiver);
                self.data_progress = Some((Instant::now(), 0));
                self.flush().await?;
                Ok(Flow::Continue)
            }
            Action::Queue(envelope) => {
                let reply = self.enqueue(envelope).await;
                if reply.is_permanent() {
                    self.before_refusal().await?;
                }
                self.reply(&reply);
                Ok(Flow::Continue)
            }
        }
    }

    fn reply(&mut self, reply: &Reply) {
        self.log.send_reply(reply);
        self.out.extend(reply.to_bytes());
    }

    /// Counts a message refused after its data: deferred on 4xx, rejected
    /// otherwise.
    fn message_refused(&self, reply: Option<&Reply>) {
        let outcome = match reply {
            Some(r) if r.is_transient() => MessageOutcome::Deferred,
            _ => MessageOutcome::Rejected,
        };
        self.metrics().message(Direction::Receive, outcome);
    }

    /// Counts and logs a failed handshake.
    fn handshake_failed(&mut self, outcome: TlsHandshakeOutcome, why: String) -> ConnError {
        self.metrics().tls_handshake(Direction::Receive, outcome);
        self.log.tls_failed(&why);
        ConnError::Tls(why)
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Waits for input, as long as the session's state allows. Idle
    /// sessions also wake for shutdown.
    async fn wait(&mut self) -> Result<Wait, ConnError> {
        let config = &self.shared.config;
        let idle = self.receiving.is_none()
            && self.lines.buffered().is_empty()
            && matches!(
                self.session.state(),
                SessionState::Connected | SessionState::Greeted { .. }
            );
        let limit = if self.receiving.is_some() {
            config.data_timeout
        } else if idle {
            config.idle_timeout
        } else {
            config.command_timeout
        };
        let now = Instant::now();
        let mut until = (now + limit).min(self.deadline);
        if let Some((started, octets)) = self.data_progress {
            // Trickling message data: the allowance grows only with what arrives.
            // (A rate of zero: no such limit.)
            let allowed = octets
                .checked_div(config.min_data_rate)
                .and_then(|earned| started.checked_add(config.line_timeout + Duration::from_secs(earned)));
            if let Some(allowed) = allowed {
                until = until.min(allowed);
            }
        } else if !self.lines.buffered().is_empty() {
            let started = *self.line_started.get_or_insert(now);
            until = until.min(started + config.line_timeout);
        }
        let read = tokio::time::timeout_at(until, self.stream.read(&mut self.buf));
        let result = if idle {
            tokio::select! {
                result = read => result,
                // Also when the connector is gone: stop either way.
                _ = self.stop.wait_for(|stop| *stop) => return Ok(Wait::Shutdown),
            }
        } else {
            read.await
        };
        match result {
            Err(_) => Ok(Wait::Timeout),
            Ok(Ok(0)) => Ok(Wait::Eof),
            Ok(Ok(n)) => Ok(Wait::Bytes(n)),
            Ok(Err(error)) => Err(error.into()),
        }
    }

    /// The TLS handshake after 220; the session has already reset itself.
    async fn start_tls(&mut self) -> Result<(), ConnError> {
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            return Err(ConnError::Tls(
                "STARTTLS on a connection that is not plain TCP".into(),
            ));
        };
        let acceptor = TlsAcceptor::from(Arc::clone(&self.shared.tls));
        let until = (Instant::now() + self.shared.config.command_timeout).min(self.deadline);
        let tls = match tokio::time::timeout_at(until, acceptor.accept(tcp)).await {
            Err(_) => {
                let why = "handshake timed out".to_owned();
                return Err(self.handshake_failed(TlsHandshakeOutcome::Failed, why));
            }
            Ok(Err(error)) => {
                // A client certificate the direct-trust verifier refused.
                let outcome = if is_certificate_refusal(&error) {
                    TlsHandshakeOutcome::Untrusted
                } else {
                    TlsHandshakeOutcome::Failed
                };
                return Err(self.handshake_failed(outcome, error.to_string()));
            }
            Ok(Ok(tls)) => tls,
        };
        let tls_info = TlsInfo::from_connection(tls.get_ref().1);
        self.info.peer_trust = self.shared.ctx.trust.classify(&tls_info.peer_chain);
        let outcome = match self.info.peer_trust {
            PeerTrust::Untrusted(_) => TlsHandshakeOutcome::Untrusted,
            _ => TlsHandshakeOutcome::Ok,
        };
        self.metrics().tls_handshake(Direction::Receive, outcome);
        if tls_info.resumed {
            self.metrics().tls_resumed(Direction::Receive);
        }
        self.log.tls_established(&tls_info, &self.info.peer_trust);
        tracing::debug!(
            session = %self.info.session_id,
            version = %tls_info.version,
            cipher = %tls_info.cipher,
            peer_trust = ?self.info.peer_trust,
            "TLS established"
        );
        self.info.tls = Some(tls_info);
        self.stream = Stream::Tls(Box::new(tls));
        let org = self.shared.config.trusted_org && self.info.is_direct_trust();
        if org {
            self.session.set_organisation_peer();
        }
        let peer = self.info.peer_trust.clone();
        self.origin.update(|o| {
            o.tls = true;
            o.peer = peer;
            o.relay_allowed |= org;
        });
        Ok(())
    }

    /// Stamps, filters and queues the received message; the reply is 250
    /// only once the queue says it is durable.
    async fn enqueue(&mut self, envelope: Envelope) -> Reply {
        let Received {
            head: received,
            spool,
            len: received_len,
            problem,
        } = std::mem::take(&mut self.incoming).finish();
        match problem {
            None => {}
            Some(Problem::HeaderTooLong) => {
                self.metrics()
                    .message(Direction::Receive, MessageOutcome::Rejected);
                return self
                    .session
                    .refused_after_data(Reply::malformed_headers("the header section is over 1 MiB"));
            }
            Some(Problem::Spool(error)) => {
                tracing::warn!(session = %self.info.session_id, %error, "message data could not be spooled (451)");
                self.metrics()
                    .message(Direction::Receive, MessageOutcome::Deferred);
                return self.session.queue_failed();
            }
        }
        let recipients = match self.recipient_states(&envelope) {
            Ok(recipients) => recipients,
            Err(address) => {
                tracing::warn!(session = %self.info.session_id, address = %postern_model::peer_text(&address), "recipient no longer routes; message refused (451)");
                self.metrics()
                    .message(Direction::Receive, MessageOutcome::Deferred);
                return self.session.queue_failed();
            }
        };
        let org_node = self.shared.config.trusted_org && self.info.is_direct_trust();
        let authserv_ids = self.authserv_ids();
        let firewall = Firewall {
            allowed: org_node,
            authserv_ids: &authserv_ids,
        };
        let body = match firewall.screen(&received) {
            Ok(body) => body,
            Err(error) => {
                tracing::info!(session = %self.info.session_id, remote = %self.info.remote, %error, "message refused: its header section does not parse (550 5.6.0)");
                self.metrics()
                    .message(Direction::Receive, MessageOutcome::Rejected);
                return self
                    .session
                    .refused_after_data(Reply::malformed_headers(&error.to_string()));
            }
        };
        if body.len() != received.len() {
            tracing::info!(
                session = %self.info.session_id,
                remote = %self.info.remote,
                "removed the organisation's header fields (X-Postern-Organization-*, its Authentication-Results) from a peer that is not an organisation node"
            );
        }
        let sender_mailbox = match &envelope.from {
            ReversePath::Mailbox(m) => Some(m),
            ReversePath::Null => None,
        };
        let trust_stamp = self.shared.ctx.router.stamp(sender_mailbox, &self.origin.get());
        if trust_stamp.domain_secured {
            self.metrics().domain_secured_message_received();
            if let Some(m) = sender_mailbox {
                self.metrics()
                    .partner_success(crate::protocol_log::Direction::Receive, &m.domain().to_string());
            }
            self.log
                .info(format_args!("Domain secured: {}", trust_stamp.headers.join("; ")));
        }
        let mut headers = trust_stamp.headers;
        let body = if org_node {
            body
        } else {
            match self
                .authenticate(&envelope, body, spool.as_ref(), &mut headers)
                .await
            {
                Ok(judged) => judged,
                Err(reply) => {
                    let outcome = if reply.is_transient() {
                        MessageOutcome::Deferred
                    } else {
                        MessageOutcome::Rejected
                    };
                    self.metrics().message(Direction::Receive, outcome);
                    return self.session.refused_after_data(reply);
                }
            }
        };
        self.transactions += 1;
        let id = format!("{}.{}", self.info.session_id, self.transactions);
        let extended = current_helo(self.session.state()).is_none_or(|h| h.extended);
        let stamp = ReceivedStamp {
            helo: &envelope.helo,
            extended,
            remote: self.info.remote.ip(),
            rdns: None,
            by: &self.shared.config.fqdn,
            id: &id,
            tls: self.info.tls.as_ref(),
            date: OffsetDateTime::now_utc(),
        };
        let mut message = stamp.to_field().into_bytes();
        for header in &headers {
            message.extend_from_slice(header.as_bytes());
            message.extend_from_slice(b"\r\n");
        }
        message.extend_from_slice(&body);
        let sender = match &envelope.from {
            ReversePath::Null => None,
            ReversePath::Mailbox(m) => Some(m.to_string()),
        };
        let mut queued = queue::Envelope::new(sender, recipients, SystemTime::now());
        queued.require_tls = envelope.require_tls;
        let queue = &self.shared.ctx.queue;
        let accepted = match (spool, &envelope.origin) {
            (Some(spool), origin) => {
                queue
                    .enqueue_spooled(queued, message, spool, origin.as_ref())
                    .await
            }
            (None, Some(origin)) => queue.enqueue_relayed(queued, message, origin).await,
            (None, None) => queue.enqueue(queued, message).await.map(|id| RelayedOutcome {
                id: Some(id),
                suppressed: Vec::new(),
            }),
        };
        if let (Ok(outcome), Some(origin)) = (&accepted, &envelope.origin)
            && !outcome.suppressed.is_empty()
        {
            tracing::info!(
                session = %self.info.session_id,
                sender_node = %origin.node,
                sender_queue_id = %origin.id,
                recipients = outcome.suppressed.len(),
                queued = outcome.id.is_some(),
                "duplicate suppressed: the node relayed this message here before"
            );
            self.log.info(format_args!(
                "Duplicate suppressed: {} recipient(s) of {}:{} were queued before",
                outcome.suppressed.len(),
                origin.node,
                origin.id
            ));
            self.metrics()
                .duplicates_suppressed(outcome.suppressed.len() as u64);
        }
        match accepted.map(|outcome| outcome.id) {
            Ok(None) => {
                self.metrics()
                    .message(Direction::Receive, MessageOutcome::Accepted);
                self.session.duplicate_suppressed()
            }
            Ok(Some(queue_id)) => {
                tracing::info!(session = %self.info.session_id, received_id = %id, %queue_id, "message queued");
                let metrics = self.metrics();
                metrics.message(Direction::Receive, MessageOutcome::Accepted);
                metrics.bytes(Direction::Receive, received_len);
                metrics.set_queue_length(queue.stats().queue_length);
                self.log
                    .info(format_args!("Queued mail for delivery: {queue_id}"));
                self.queued.push(queue_id);
                self.session.queued(&queue_id)
            }
            Err(error) => {
                tracing::warn!(session = %self.info.session_id, %error, "message could not be queued (451)");
                self.metrics()
                    .message(Direction::Receive, MessageOutcome::Deferred);
                self.session.queue_failed()
            }
        }
    }

    /// Signs or verifies a message from outside the organisation
    /// ([`crate::auth`]) whose first part is `head` and whose rest is in
    /// `spool`: the first part to queue, with the fields to stamp added
    /// to `headers`, or the reply refusing the message.
    async fn authenticate<'h>(
        &mut self,
        envelope: &Envelope,
        head: Cow<'h, [u8]>,
        spool: Option<&SpoolWriter>,
        headers: &mut Vec<String>,
    ) -> Result<Cow<'h, [u8]>, Reply> {
        let auth = &self.shared.ctx.message_auth;
        if auth.signer.is_none() && auth.verifier.is_none() {
            return Ok(head);
        }
        let helo = envelope.helo.to_string();
        let mail_from = match &envelope.from {
            ReversePath::Mailbox(m) => m.to_string(),
            ReversePath::Null => String::new(),
        };
        // Domain security's result joins the one field stamped.
        let other = headers
            .iter()
            .position(|h| h.starts_with("Authentication-Results:"))
            .filter(|_| auth.verifier.is_some())
            .map(|i| headers.remove(i));
        let inbound = Inbound {
            remote_ip: self.info.remote.ip(),
            helo: helo.trim_start_matches('[').trim_end_matches(']'),
            mail_from: &mail_from,
            message: &head,
        };
        let config = &self.shared.config;
        let verdict = judging::judge(
            auth,
            inbound,
            spool,
            config.dmarc_enforcement,
            config.command_timeout,
            other.as_deref(),
        )
        .await;
        match verdict {
            Ok(Verdict::Accept {
                head: changed,
                fields,
            }) => {
                headers.extend(fields);
                Ok(changed.map_or(head, Cow::Owned))
            }
            Ok(Verdict::Reject(text)) => {
                tracing::info!(session = %self.info.session_id, remote = %self.info.remote, "message refused: DMARC reject policy honoured");
                self.log.info(format_args!("DMARC reject policy honoured"));
                Err(Reply::simple(550, (5, 7, 1), text))
            }
            Err(error) => {
                tracing::warn!(session = %self.info.session_id, %error, "message could not be judged (451)");
                Err(Reply::queue_failed())
            }
        }
    }

    /// The organisation's authserv-ids, lower case: the router's, the
    /// node's and the connector's names.
    fn authserv_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .shared
            .ctx
            .router
            .authserv_ids()
            .iter()
            .chain([&self.shared.ctx.node_fqdn, &self.shared.config.fqdn])
            .map(|d| d.as_str().to_ascii_lowercase())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The queue's recipients with the next-hop keys chosen at RCPT (or,
    /// failing that, now); `Err` names a recipient that no longer routes.
    fn recipient_states(&self, envelope: &Envelope) -> Result<Vec<RecipientState>, String> {
        let postmaster = &self.shared.postmaster;
        envelope
            .recipients
            .iter()
            .map(|path| {
                let address = resolve_mailbox(path, postmaster).to_string();
                let key = match self.routes.get(&address) {
                    Some(key) => key,
                    None => route(self.shared.ctx.router.as_ref(), path, postmaster)
                        .map_err(|_| address.clone())?,
                };
                Ok(RecipientState::new(address, key))
            })
            .collect()
    }

    /// Sends what is left and closes (TLS close_notify, then FIN).
    async fn close(&mut self) {
        let closing = async {
            if !self.out.is_empty() {
                let _ = self.stream.write_all(&self.out).await;
            }
            let _ = self.stream.shutdown().await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
}

/// The client's introduction, in any state that has one.
fn current_helo(state: &SessionState) -> Option<&Helo> {
    match state {
        SessionState::Greeted { helo }
        | SessionState::Mail { helo, .. }
        | SessionState::Rcpt { helo, .. }
        | SessionState::Data { helo, .. }
        | SessionState::Queuing { helo } => Some(helo),
        SessionState::Connected | SessionState::Closed => None,
    }
}
