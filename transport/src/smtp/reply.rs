//! SMTP replies: a three-digit code, an optional enhanced status code
//! (RFC 3463, registry of RFC 5248) and one or more lines of text, written
//! on the wire as `250-first` … `250 last`. The constructors below are the
//! replies the server session sends, so their wording lives in one place.

use std::fmt;

/// An enhanced status code such as `5.7.0`: class, subject, detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode(pub u8, pub u16, pub u16);

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// One SMTP reply, possibly spanning several lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    lines: Vec<String>,
}

impl Reply {
    /// A reply; CR and LF inside `lines` are replaced by spaces so the text
    /// can never end the reply early or forge another one.
    pub fn new<I, S>(code: u16, enhanced: Option<EnhancedCode>, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut lines: Vec<String> = lines
            .into_iter()
            .map(|l| l.into().replace(['\r', '\n'], " "))
            .collect();
        if lines.is_empty() {
            lines.push(String::new());
        }
        Self {
            code,
            enhanced,
            lines,
        }
    }

    /// A one-line reply with an enhanced status code.
    pub fn simple(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Self {
        let (c, s, d) = enhanced;
        Self::new(code, Some(EnhancedCode(c, s, d)), [text.into()])
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, if the reply carries one.
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    /// The lines of text, without code or enhanced code.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// True for 2xx and 3xx replies.
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// True for 4xx replies (try again later).
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// True for 5xx replies (do not retry).
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The reply as it goes on the wire, CRLF after every line.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    /// `220 <host> …`: the greeting sent when a client connects.
    pub fn greeting(host: &str) -> Self {
        Self::new(220, None, [format!("{host} Postern ESMTP service ready")])
    }

    /// The answer to `EHLO`: our name, then one extension keyword a line.
    /// Like the greeting it carries no enhanced code (RFC 2034 section 3).
    pub fn ehlo(host: &str, client: &str, keywords: &[String]) -> Self {
        let first = format!("{host} Hello {client}");
        Self::new(250, None, std::iter::once(first).chain(keywords.iter().cloned()))
    }

    /// The answer to `HELO`.
    pub fn helo(host: &str, client: &str) -> Self {
        Self::new(250, None, [format!("{host} Hello {client}")])
    }

    /// `250 2.0.0 OK`, for NOOP and RSET.
    pub fn ok() -> Self {
        Self::simple(250, (2, 0, 0), "OK")
    }

    /// `250 2.1.0`: MAIL FROM accepted.
    pub fn sender_ok() -> Self {
        Self::simple(250, (2, 1, 0), "Sender OK")
    }

    /// `250 2.1.5`: RCPT TO accepted.
    pub fn recipient_ok() -> Self {
        Self::simple(250, (2, 1, 5), "Recipient OK")
    }

    /// `354`: go ahead with the message (no enhanced code: RFC 2034 uses
    /// them on 2xx, 4xx and 5xx replies only).
    pub fn start_data() -> Self {
        Self::new(354, None, ["Start mail input; end with <CRLF>.<CRLF>"])
    }

    /// `250 2.0.0 Queued as <id>`: the message is durable.
    pub fn queued(id: &dyn fmt::Display) -> Self {
        Self::simple(250, (2, 0, 0), format!("Queued mail for delivery as {id}"))
    }

    /// `250 2.0.0` for a message a node of the organisation relayed again
    /// after it was queued here: nothing more is queued.
    pub fn duplicate_suppressed() -> Self {
        Self::simple(250, (2, 0, 0), "Already queued here; duplicate suppressed")
    }

    /// `451 4.3.0`: the message could not be stored; the client retries.
    pub fn queue_failed() -> Self {
        Self::simple(
            451,
            (4, 3, 0),
            "Local error while queuing the message, try again later",
        )
    }

    /// `221 2.0.0`: answer to QUIT.
    pub fn closing(host: &str) -> Self {
        Self::simple(
            221,
            (2, 0, 0),
            format!("{host} Service closing transmission channel"),
        )
    }

    /// `421 4.4.2`: the client was idle too long; the connection is closed.
    pub fn timeout(host: &str) -> Self {
        Self::simple(421, (4, 4, 2), format!("{host} Timeout waiting for client input"))
    }

    /// `421 4.3.2`: the connector serves as many sessions as it may (in
    /// all or from this address); the connection is closed.
    pub fn too_many_connections(host: &str) -> Self {
        Self::simple(
            421,
            (4, 3, 2),
            format!("{host} Too many connections, try again later"),
        )
    }

    /// `421 4.7.0`: the session made too many errors; the connection is closed.
    pub fn too_many_errors(host: &str) -> Self {
        Self::simple(
            421,
            (4, 7, 0),
            format!("{host} Too many errors, closing connection"),
        )
    }

    /// `550 5.6.0`: the message's header section does not parse.
    pub fn malformed_headers(why: &str) -> Self {
        Self::simple(550, (5, 6, 0), format!("Malformed message header: {why}"))
    }

    /// `421 4.3.2`: the server is shutting down.
    pub fn shutting_down(host: &str) -> Self {
        Self::simple(421, (4, 3, 2), format!("{host} Service shutting down"))
    }

    /// `452 4.5.3`: no more recipients in this transaction.
    pub fn too_many_recipients() -> Self {
        Self::simple(452, (4, 5, 3), "Too many recipients")
    }

    /// `552 5.3.4`: the message (declared or received) exceeds the limit.
    pub fn too_big(max: u64) -> Self {
        Self::simple(
            552,
            (5, 3, 4),
            format!("Message size exceeds fixed maximum of {max} bytes"),
        )
    }

    /// `530 5.7.0`: this connector requires TLS before mail.
    pub fn tls_required() -> Self {
        Self::simple(530, (5, 7, 0), "Must issue a STARTTLS command first")
    }

    /// `220 2.0.0`: answer to STARTTLS; the handshake follows.
    pub fn ready_for_tls() -> Self {
        Self::simple(220, (2, 0, 0), "Ready to start TLS")
    }

    /// `503 5.5.1`: the command is not valid now.
    pub fn bad_sequence(text: &str) -> Self {
        Self::simple(503, (5, 5, 1), text)
    }

    /// `500 5.5.2`: the command line exceeded 512 octets.
    pub fn line_too_long() -> Self {
        Self::simple(500, (5, 5, 2), "Line too long")
    }

    /// `500 5.5.2`: a bare CR or LF inside a command line.
    pub fn bare_line_ending_in_command() -> Self {
        Self::simple(500, (5, 5, 2), "Bare CR or LF in command line")
    }

    /// `500 5.5.2`: a verb we do not know or do not offer.
    pub fn unknown_command() -> Self {
        Self::simple(500, (5, 5, 2), "Command not recognized")
    }

    /// `502 5.5.1`: STARTTLS is not offered on this connector.
    pub fn starttls_not_offered() -> Self {
        Self::simple(502, (5, 5, 1), "STARTTLS not available")
    }

    /// `252 2.5.0`: VRFY is answered without disclosing anything.
    pub fn cannot_verify() -> Self {
        Self::simple(
            252,
            (2, 5, 0),
            "Cannot VRFY user, but will accept message and attempt delivery",
        )
    }

    /// `214 2.0.0`: answer to HELP.
    pub fn help() -> Self {
        Self::simple(214, (2, 0, 0), "See RFC 5321")
    }

    /// `550 5.6.11`: the message contained a bare CR or LF (Exchange Online
    /// uses this code for the same refusal; it guards against SMTP smuggling).
    pub fn bare_line_ending_in_data() -> Self {
        Self::simple(550, (5, 6, 11), "Bare CR or LF in message data is not allowed")
    }

    /// `554 5.6.0`: a message line was longer than 1000 octets.
    pub fn data_line_too_long() -> Self {
        Self::simple(554, (5, 6, 0), "Message line longer than 1000 octets")
    }

    /// `550 5.7.1`: a policy refused the recipient (e.g. relaying denied).
    pub fn relay_denied() -> Self {
        Self::simple(550, (5, 7, 1), "Unable to relay")
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{}{sep}", self.code)?;
            if let Some(e) = self.enhanced {
                write!(f, "{e} ")?;
            }
            write!(f, "{line}\r\n")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line() {
        assert_eq!(Reply::sender_ok().to_string(), "250 2.1.0 Sender OK\r\n");
        let ehlo = Reply::ehlo("mx.x.com", "c.y.com", &["PIPELINING".into(), "SIZE 10".into()]);
        assert_eq!(
            ehlo.to_string(),
            "250-mx.x.com Hello c.y.com\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
        let multi = Reply::new(550, Some(EnhancedCode(5, 7, 1)), ["a", "b"]);
        assert_eq!(multi.to_string(), "550-5.7.1 a\r\n550 5.7.1 b\r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(250, None, ["a\r\n250 forged"]);
        assert_eq!(r.to_string(), "250 a  250 forged\r\n");
        assert_eq!(
            Reply::new(250, None, Vec::<String>::new()).to_string(),
            "250 \r\n"
        );
    }

    #[test]
    fn classes() {
        assert!(Reply::start_data().is_positive());
        assert!(Reply::too_many_recipients().is_transient());
        assert!(Reply::too_big(1).is_permanent());
    }
}
