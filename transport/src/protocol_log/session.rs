//! `SessionLogger`: one SMTP session's handle on the protocol log. It
//! carries the session's connector id, session id, endpoints and sequence
//! counter, formats each line on the session's own task and queues it for
//! the writer thread. Content and credentials are filtered here
//! (`content`), whatever the caller passes.
//!
//! A disabled logger is an empty `Option`: every call returns at once,
//! without formatting or allocating.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::protocol_log::content::ContentFilter;
use crate::protocol_log::csv::{Event, Record};
use crate::protocol_log::{Direction, ProtocolLog, SessionId};

/// The two ends of a session's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// Postern's end.
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
}

/// Where the session is in its life, for the automatic `-` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lifecycle {
    New,
    Connected,
    Disconnected,
}

/// The state of an enabled logger.
#[derive(Debug)]
struct Active {
    log: Arc<ProtocolLog>,
    connector_id: Arc<str>,
    session_id: SessionId,
    endpoints: Endpoints,
    sequence: u64,
    filter: ContentFilter,
    lifecycle: Lifecycle,
}

/// One session's protocol logger. Dropping a connected logger writes the
/// `-` line the session did not.
#[derive(Debug, Default)]
pub struct SessionLogger {
    active: Option<Box<Active>>,
}

impl SessionLogger {
    /// A logger that writes nothing (level `None`, or no log configured).
    pub fn disabled() -> Self {
        Self { active: None }
    }

    /// A logger writing to `log`; see also [`ProtocolLog::session`].
    pub fn new(
        log: Arc<ProtocolLog>,
        connector_id: Arc<str>,
        session_id: SessionId,
        endpoints: Endpoints,
    ) -> Self {
        Self {
            active: Some(Box::new(Active {
                log,
                connector_id,
                session_id,
                endpoints,
                sequence: 0,
                filter: ContentFilter::default(),
                lifecycle: Lifecycle::New,
            })),
        }
    }

    /// Whether lines are written; callers may skip costly formatting if not.
    pub fn is_enabled(&self) -> bool {
        self.active.is_some()
    }

    /// The session id, when enabled.
    pub fn session_id(&self) -> Option<SessionId> {
        self.active.as_ref().map(|a| a.session_id)
    }

    /// `+`: the connection opened.
    pub fn connect(&mut self) {
        if let Some(a) = self.active.as_deref_mut() {
            a.lifecycle = Lifecycle::Connected;
            a.write(Event::Connect, "", "");
        }
    }

    /// `-`: the connection closed.
    pub fn disconnect(&mut self) {
        if let Some(a) = self.active.as_deref_mut() {
            a.lifecycle = Lifecycle::Disconnected;
            a.write(Event::Disconnect, "", "");
        }
    }

    /// `>`: a line Postern sent (a command on a send connector, a reply on
    /// a receive connector). Message content and credentials are not logged.
    pub fn send(&mut self, line: &str) {
        if let Some(a) = self.active.as_deref_mut() {
            a.line(Event::Send, line);
        }
    }

    /// `<`: a line Postern received. Message content and credentials are
    /// not logged.
    pub fn receive(&mut self, line: &str) {
        if let Some(a) = self.active.as_deref_mut() {
            a.line(Event::Receive, line);
        }
    }

    /// `*`: information, in the context column as Exchange writes it
    /// (`TLS negotiated: TLSv1.3 TLS13_AES_256_GCM_SHA384`). Formatted only
    /// when enabled, so `format_args!` costs nothing on a disabled logger.
    pub fn info(&mut self, text: impl fmt::Display) {
        if let Some(a) = self.active.as_deref_mut() {
            let mut context = String::new();
            // Writing into a String cannot fail.
            let _ = write!(context, "{text}");
            a.write(Event::Information, "", &context);
        }
    }
}

impl Active {
    fn line(&mut self, event: Event, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        // Which side speaks the commands depends on who is the SMTP client.
        let from_client = matches!(
            (self.log.direction(), event),
            (Direction::Receive, Event::Receive) | (Direction::Send, Event::Send)
        );
        let logged = if from_client {
            self.filter.command(line)
        } else {
            self.filter.reply(line)
        };
        if let Some(text) = logged {
            self.write(event, &text, "");
        }
    }

    fn write(&mut self, event: Event, data: &str, context: &str) {
        let time = self.log.clock().now();
        let line = Record {
            time,
            connector_id: &self.connector_id,
            session_id: self.session_id,
            sequence: self.sequence,
            local: self.endpoints.local,
            remote: self.endpoints.remote,
            event,
            data,
            context,
        }
        .to_line();
        self.sequence += 1;
        self.log.push(time, line);
    }
}

impl Drop for SessionLogger {
    fn drop(&mut self) {
        if let Some(a) = self.active.as_deref_mut()
            && a.lifecycle == Lifecycle::Connected
        {
            a.write(Event::Disconnect, "", "session ended without a disconnect");
        }
    }
}
