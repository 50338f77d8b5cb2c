//! Dialogue tests: a tiny I/O layer (line reader, DATA receiver, session)
//! driven with bytes, so each test reads like a transcript:
//! `s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0")`.

#![allow(clippy::unwrap_used)]

use postern_model::Domain;

use crate::smtp::{
    AcceptAll, Action, DataReceiver, DataStatus, Envelope, ForwardPath, LineReader, Output, RecipientContext,
    RecipientPolicy, RecipientVerdict, Reply, Session, SessionConfig,
};
use crate::tls::Encryption;

/// Plays the I/O layer as the session's module doc describes it.
struct Client {
    session: Session,
    lines: LineReader,
    receiver: Option<DataReceiver>,
    body: Vec<u8>,
    queued: Vec<(Envelope, Vec<u8>)>,
    handshakes: usize,
    closed: bool,
}

impl Client {
    fn new(config: SessionConfig) -> Self {
        Self::with_policy(config, Box::new(AcceptAll))
    }

    fn with_policy(config: SessionConfig, policy: Box<dyn RecipientPolicy>) -> Self {
        let session = Session::new(config, policy);
        assert_eq!(session.greeting().code(), 220);
        Self {
            session,
            lines: LineReader::new(),
            receiver: None,
            body: Vec::new(),
            queued: Vec::new(),
            handshakes: 0,
            closed: false,
        }
    }

    /// Sends raw bytes; returns every reply the server wrote, in order.
    fn send(&mut self, bytes: &[u8]) -> Vec<Reply> {
        let mut out = Vec::new();
        self.lines.feed(bytes);
        loop {
            if let Some(receiver) = &mut self.receiver {
                let pending = self.lines.take_buffered();
                match receiver.feed(&pending, &mut self.body) {
                    DataStatus::More => break,
                    DataStatus::End { consumed, end } => {
                        self.receiver = None;
                        self.lines.feed(&pending[consumed..]);
                        let output = self.session.data_end(end);
                        self.handle(output, &mut out);
                        continue;
                    }
                }
            }
            let output = match self.lines.next_line() {
                None => break,
                Some(Ok(line)) => self.session.command_line(&line),
                Some(Err(e)) => self.session.line_error(e),
            };
            self.handle(output, &mut out);
        }
        out
    }

    fn handle(&mut self, output: Output, out: &mut Vec<Reply>) {
        out.extend(output.reply);
        match output.action {
            Action::Continue => {}
            Action::Close => self.closed = true,
            Action::StartTls => {
                self.lines.clear(); // CVE-2011-0411
                self.handshakes += 1;
            }
            Action::ReceiveData(receiver) => {
                self.body.clear();
                self.receiver = Some(receiver);
            }
            Action::Queue(envelope) => {
                self.queued.push((envelope, std::mem::take(&mut self.body)));
                out.push(self.session.queued(&format!("Q{}", self.queued.len())));
            }
        }
    }

    /// Sends one line; expects exactly one reply whose last line starts
    /// with `expect` (e.g. `"250 2.1.0"`).
    fn cmd(&mut self, line: &str, expect: &str) -> Reply {
        let replies = self.send(format!("{line}\r\n").as_bytes());
        assert_eq!(replies.len(), 1, "{line:?} got {replies:?}");
        assert_reply(&replies[0], expect, line);
        replies.into_iter().next().unwrap()
    }

    /// Sends a batch; expects these replies in this order.
    fn batch(&mut self, bytes: &str, expect: &[&str]) {
        let replies = self.send(bytes.as_bytes());
        assert_eq!(replies.len(), expect.len(), "{bytes:?} got {replies:?}");
        for (reply, e) in replies.iter().zip(expect) {
            assert_reply(reply, e, bytes);
        }
    }
}

fn assert_reply(reply: &Reply, expect: &str, sent: &str) {
    let wire = reply.to_string();
    let last = wire.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(expect),
        "{sent:?}: expected {expect:?}, got {wire:?}"
    );
}

fn config() -> SessionConfig {
    SessionConfig::new(Domain::parse("mx.contoso.com").unwrap())
}

fn greeted() -> Client {
    let mut s = Client::new(config());
    s.cmd("EHLO client.fabrikam.com", "250");
    s
}

#[test]
fn normal_flow() {
    let mut s = Client::new(config());
    let ehlo = s.cmd("EHLO client.fabrikam.com", "250 ENHANCEDSTATUSCODES");
    assert_eq!(ehlo.lines()[0], "mx.contoso.com Hello client.fabrikam.com");
    assert_eq!(
        ehlo.lines()[1..],
        [
            "PIPELINING",
            "SIZE 36700160",
            "STARTTLS",
            "8BITMIME",
            "ENHANCEDSTATUSCODES"
        ]
    );
    s.cmd(
        "MAIL FROM:<alice@fabrikam.com> SIZE=100 BODY=8BITMIME",
        "250 2.1.0",
    );
    s.cmd("RCPT TO:<bob@contoso.com>", "250 2.1.5");
    s.cmd("RCPT TO:<Postmaster>", "250 2.1.5");
    s.cmd("DATA", "354");
    s.batch("Subject: hi\r\n\r\n..dot\r\n", &[]);
    s.batch(".\r\n", &["250 2.0.0 Queued mail for delivery as Q1"]);
    let (envelope, body) = &s.queued[0];
    assert_eq!(body, b"Subject: hi\r\n\r\n.dot\r\n");
    assert_eq!(envelope.from.to_string(), "<alice@fabrikam.com>");
    assert_eq!(envelope.recipients.len(), 2);
    assert_eq!((envelope.declared_size, envelope.tls), (Some(100), false));
    s.cmd("NOOP", "250 2.0.0");
    s.cmd("VRFY bob", "252 2.5.0");
    s.cmd("QUIT", "221 2.0.0");
    assert!(s.closed);
}

#[test]
fn bad_sequence() {
    let mut s = Client::new(config());
    s.cmd("MAIL FROM:<a@b.com>", "503 5.5.1");
    s.cmd("HELO client.fabrikam.com", "250 mx.contoso.com");
    s.cmd("RCPT TO:<bob@contoso.com>", "503 5.5.1");
    s.cmd("DATA", "503 5.5.1");
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("MAIL FROM:<a@b.com>", "503 5.5.1");
    s.cmd("DATA", "503 5.5.1");
    s.cmd("MAIL FROM:<a@b.com> SIZE=10", "503 5.5.1");
}

#[test]
fn rset_and_second_ehlo_reset_the_transaction() {
    let mut s = greeted();
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("RSET", "250 2.0.0");
    s.cmd("RCPT TO:<bob@contoso.com>", "503 5.5.1");
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("RCPT TO:<bob@contoso.com>", "250 2.1.5");
    s.cmd("EHLO again.fabrikam.com", "250");
    s.cmd("DATA", "503 5.5.1");
    s.cmd("MAIL FROM:<>", "250 2.1.0");
}

#[test]
fn too_many_recipients() {
    let mut s = Client::new(SessionConfig {
        max_recipients: 2,
        ..config()
    });
    s.cmd("EHLO client.fabrikam.com", "250");
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("RCPT TO:<r1@contoso.com>", "250 2.1.5");
    s.cmd("RCPT TO:<r2@contoso.com>", "250 2.1.5");
    s.cmd("RCPT TO:<r3@contoso.com>", "452 4.5.3");
    s.cmd("DATA", "354");
    s.batch("hi\r\n.\r\n", &["250 2.0.0"]);
    assert_eq!(s.queued[0].0.recipients.len(), 2);
}

#[test]
fn size_limits() {
    let mut s = Client::new(SessionConfig {
        max_message_size: 100,
        ..config()
    });
    s.cmd("EHLO client.fabrikam.com", "250 ENHANCEDSTATUSCODES");
    s.cmd("MAIL FROM:<a@b.com> SIZE=101", "552 5.3.4");
    s.cmd("MAIL FROM:<a@b.com> SIZE=100", "250 2.1.0");
    s.cmd("RCPT TO:<bob@contoso.com>", "250 2.1.5");
    s.cmd("DATA", "354");
    let big = format!("{}\r\n{}\r\n.\r\n", "x".repeat(80), "y".repeat(80));
    s.batch(&big, &["552 5.3.4"]);
    assert!(s.queued.is_empty());
    s.cmd("RCPT TO:<bob@contoso.com>", "503 5.5.1");
}

#[test]
fn parameters_we_do_not_offer() {
    let mut s = greeted();
    s.cmd("MAIL FROM:<a@b.com> SMTPUTF8", "555 5.5.4");
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("RCPT TO:<b@contoso.com> NOTIFY=NEVER", "555 5.5.4");
    let mut helo = Client::new(config());
    helo.cmd("HELO client.fabrikam.com", "250");
    helo.cmd("MAIL FROM:<a@b.com> BODY=8BITMIME", "555 5.5.4");
}

#[test]
fn require_tls_then_starttls_resets_everything() {
    let mut s = Client::new(SessionConfig {
        encryption: Encryption::Required,
        ..config()
    });
    s.cmd("EHLO client.fabrikam.com", "250");
    s.cmd("MAIL FROM:<a@b.com>", "530 5.7.0");
    s.cmd("STARTTLS", "220 2.0.0");
    assert_eq!(s.handshakes, 1);
    s.cmd("MAIL FROM:<a@b.com>", "503 5.5.1");
    let ehlo = s.cmd("EHLO client.fabrikam.com", "250");
    assert!(!ehlo.lines().iter().any(|l| l == "STARTTLS"));
    s.cmd("STARTTLS", "503 5.5.1");
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("RCPT TO:<bob@contoso.com>", "250 2.1.5");
    s.cmd("DATA", "354");
    s.batch("hi\r\n.\r\n", &["250 2.0.0"]);
    assert!(s.queued[0].0.tls);
}

#[test]
fn requiretls_is_offered_over_tls_by_connectors_that_require_it() {
    // A connector that does not require TLS neither offers nor accepts it.
    let mut open = greeted();
    let ehlo = open.cmd("EHLO client.fabrikam.com", "250");
    assert!(!ehlo.lines().iter().any(|l| l == "REQUIRETLS"));
    open.cmd("MAIL FROM:<a@b.com> REQUIRETLS", "555 5.5.4");
    let mut s = Client::new(SessionConfig {
        encryption: Encryption::Required,
        ..config()
    });
    let ehlo = s.cmd("EHLO client.fabrikam.com", "250");
    assert!(!ehlo.lines().iter().any(|l| l == "REQUIRETLS"), "not before TLS");
    s.cmd("STARTTLS", "220 2.0.0");
    let ehlo = s.cmd("EHLO client.fabrikam.com", "250");
    assert!(ehlo.lines().iter().any(|l| l == "REQUIRETLS"), "{ehlo:?}");
    s.cmd("MAIL FROM:<a@b.com> REQUIRETLS=yes", "501");
    s.cmd("MAIL FROM:<a@b.com> REQUIRETLS REQUIRETLS", "501");
    s.cmd("MAIL FROM:<a@b.com> REQUIRETLS", "250 2.1.0");
    s.cmd("RCPT TO:<bob@contoso.com>", "250 2.1.5");
    s.cmd("DATA", "354");
    s.batch("hi\r\n.\r\n", &["250 2.0.0"]);
    assert!(s.queued[0].0.require_tls);
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("RCPT TO:<bob@contoso.com>", "250 2.1.5");
    s.cmd("DATA", "354");
    s.batch("hi\r\n.\r\n", &["250 2.0.0"]);
    assert!(!s.queued[1].0.require_tls);
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut s = greeted();
    s.batch(
        "STARTTLS\r\nMAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<v@contoso.com>\r\n",
        &["220 2.0.0"],
    );
    s.cmd("MAIL FROM:<a@b.com>", "503 5.5.1");
}

#[test]
fn starttls_when_not_offered_or_mid_transaction() {
    let mut s = Client::new(SessionConfig {
        encryption: Encryption::DangerNever,
        ..config()
    });
    let ehlo = s.cmd("EHLO client.fabrikam.com", "250");
    assert!(!ehlo.lines().iter().any(|l| l == "STARTTLS"));
    s.cmd("STARTTLS", "502 5.5.1");
    let mut s = Client::new(config());
    s.cmd("STARTTLS", "503 5.5.1");
    s.cmd("EHLO client.fabrikam.com", "250");
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("STARTTLS", "503 5.5.1");
    let mut implicit = Client::new(SessionConfig {
        implicit_tls: true,
        encryption: Encryption::Required,
        ..config()
    });
    let ehlo = implicit.cmd("EHLO client.fabrikam.com", "250");
    assert!(!ehlo.lines().iter().any(|l| l == "STARTTLS"));
    implicit.cmd("STARTTLS", "503 5.5.1");
    implicit.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
}

#[test]
fn pipelined_transaction_answers_in_order() {
    let mut s = greeted();
    s.batch(
        "MAIL FROM:<a@b.com>\r\nRCPT TO:<r1@contoso.com>\r\nRCPT TO:<bad address>\r\nRCPT TO:<r2@contoso.com>\r\nDATA\r\n",
        &["250 2.1.0", "250 2.1.5", "501 5.1.3", "250 2.1.5", "354"],
    );
    s.batch(
        "Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<c@d.com>\r\nQUIT\r\n",
        &["250 2.0.0", "250 2.1.0", "221 2.0.0"],
    );
    assert_eq!(s.queued.len(), 1);
    assert_eq!(s.queued[0].1, b"Subject: x\r\n\r\nbody\r\n");
}

#[test]
fn unknown_and_malformed_commands() {
    let mut s = greeted();
    s.cmd("EXPN staff", "500 5.5.2");
    s.cmd("XYZZY", "500 5.5.2");
    s.cmd("MAIL TO:<a@b.com>", "501 5.5.2");
    s.cmd("", "500 5.5.2");
    s.cmd("HELP", "214 2.0.0");
}

#[test]
fn overlong_and_bare_lf_command_lines() {
    let mut s = greeted();
    s.cmd(&format!("NOOP {}", "a".repeat(600)), "500 5.5.2 Line too long");
    s.cmd("NOOP", "250 2.0.0");
    s.batch(
        "MAIL FROM:<a@b.com>\nRSET\r\nNOOP\r\n",
        &["500 5.5.2 Bare", "250 2.0.0"],
    );
    s.cmd("RCPT TO:<bob@contoso.com>", "503 5.5.1");
}

#[test]
fn smuggled_end_of_data_is_refused_as_one_message() {
    let mut s = greeted();
    s.batch(
        "MAIL FROM:<a@b.com>\r\nRCPT TO:<r@contoso.com>\r\nDATA\r\n",
        &["250 2.1.0", "250 2.1.5", "354"],
    );
    let payload =
        "hi\n.\nMAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<v@contoso.com>\r\nDATA\r\nwire money\r\n.\r\n";
    s.batch(payload, &["550 5.6.11"]);
    assert!(s.queued.is_empty());
    s.cmd("RCPT TO:<r@contoso.com>", "503 5.5.1");
}

struct OnlyContoso;

impl RecipientPolicy for OnlyContoso {
    fn check(&mut self, ctx: RecipientContext<'_>, to: &ForwardPath) -> RecipientVerdict {
        match to {
            ForwardPath::Mailbox(m) if m.domain().as_str() != "contoso.com" => {
                RecipientVerdict::Reject(Reply::relay_denied())
            }
            _ if ctx.accepted.len() > 5 => RecipientVerdict::Reject(Reply::too_many_recipients()),
            _ => RecipientVerdict::Accept,
        }
    }
}

#[test]
fn recipient_policy_decides() {
    let mut s = Client::with_policy(config(), Box::new(OnlyContoso));
    s.cmd("EHLO client.fabrikam.com", "250");
    s.cmd("MAIL FROM:<a@b.com>", "250 2.1.0");
    s.cmd("RCPT TO:<x@elsewhere.com>", "550 5.7.1");
    s.cmd("DATA", "503 5.5.1");
    s.cmd("RCPT TO:<bob@contoso.com>", "250 2.1.5");
    s.cmd("DATA", "354");
}

#[test]
fn timeout_closes() {
    let mut s = greeted();
    let out = s.session.timeout();
    assert_reply(out.reply.as_ref().unwrap(), "421 4.4.2", "(idle)");
    assert_eq!(out.action, Action::Close);
}

#[test]
fn once_parameter_only_from_a_node_of_the_organisation() {
    let value = "edge1.adatum.com:0000000000000000000000000000002A:1800000000";
    let mail = format!("MAIL FROM:<a@fabrikam.com> X-POSTERN-ONCE={value}");
    // Anyone else: not offered, refused before and after TLS.
    let mut s = greeted();
    s.cmd(&mail, "555 5.5.4");
    s.cmd("STARTTLS", "220 2.0.0");
    let ehlo = s.cmd("EHLO client.fabrikam.com", "250");
    assert!(!ehlo.lines().iter().any(|l| l == "X-POSTERN-ONCE"));
    s.cmd(&mail, "555 5.5.4");

    // A node of the organisation (proved by the TLS handshake).
    let mut s = greeted();
    s.session.set_organisation_peer();
    let ehlo = s.cmd("EHLO edge1.adatum.com", "250");
    assert!(
        !ehlo.lines().iter().any(|l| l == "X-POSTERN-ONCE"),
        "not before TLS"
    );
    s.cmd("STARTTLS", "220 2.0.0");
    s.session.set_organisation_peer();
    let ehlo = s.cmd("EHLO edge1.adatum.com", "250");
    assert!(ehlo.lines().iter().any(|l| l == "X-POSTERN-ONCE"));
    s.cmd("MAIL FROM:<a@fabrikam.com> X-POSTERN-ONCE=junk", "501 5.5.4");
    s.cmd(&format!("{mail} X-POSTERN-ONCE={value}"), "501 5.5.4");
    s.cmd(&mail, "250 2.1.0");
    s.cmd("RCPT TO:<kim@adatum.com>", "250 2.1.5");
    s.cmd("DATA", "354");
    s.batch("Subject: hi\r\n\r\nhello\r\n.\r\n", &["250 2.0.0"]);
    let (envelope, _) = &s.queued[0];
    assert_eq!(
        envelope.origin.as_ref().map(ToString::to_string).as_deref(),
        Some(value)
    );
}
