//! The client's side of replies: [`ReplyParser`] accumulates bytes from the
//! server and yields whole (possibly multi-line) [`Reply`] values, and
//! [`EhloCapabilities`] reads the extension keywords of an EHLO answer.
//! Servers in the wild are sloppy, so the parser tolerates a bare LF as line
//! end; it bounds line length and line count so a hostile server cannot
//! make it grow without limit.

use crate::smtp::reply::{EnhancedCode, Reply};

/// The longest reply line accepted (RFC 5321 allows 512; we are lenient).
pub const MAX_REPLY_LINE: usize = 4096;
/// The most lines one reply may have.
pub const MAX_REPLY_LINES: usize = 256;

/// Why the server's bytes are not a reply. The server is at fault; the
/// client should drop the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line does not start with a three-digit code and `-`, ` ` or end.
    #[error("malformed reply line {0:?}")]
    Malformed(String),
    /// The lines of one multi-line reply carry different codes.
    #[error("reply lines carry different codes ({0} then {1})")]
    InconsistentCode(u16, u16),
    /// A line exceeds [`MAX_REPLY_LINE`].
    #[error("reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    /// A reply exceeds [`MAX_REPLY_LINES`].
    #[error("reply longer than {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// Accumulates server bytes into replies.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    /// An empty parser.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        while let Some(lf) = self.buf.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buf.drain(..=lf).collect();
            let line = raw.strip_suffix(b"\n").unwrap_or(&raw);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            let line = String::from_utf8_lossy(line).into_owned();
            let (code, last, text) = split_line(&line)?;
            match self.code {
                Some(c) if c != code => return Err(ReplyError::InconsistentCode(c, code)),
                _ => self.code = Some(code),
            }
            if self.lines.len() >= MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
            self.lines.push(text.to_string());
            if last {
                self.code = None;
                return Ok(Some(build(code, std::mem::take(&mut self.lines))));
            }
        }
        if self.buf.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        Ok(None)
    }
}

/// `250-text` → (250, false, "text"); `250 text` or `250` → last line.
fn split_line(line: &str) -> Result<(u16, bool, &str), ReplyError> {
    let malformed = || ReplyError::Malformed(line.chars().take(80).collect());
    let digits = line.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
    let code: u16 = digits.and_then(|d| d.parse().ok()).ok_or_else(malformed)?;
    if !(200..600).contains(&code) {
        return Err(malformed());
    }
    match line.as_bytes().get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(malformed()),
    }
}

/// Builds the reply, lifting an enhanced code common to the first line
/// (and stripping it from the lines that repeat it).
fn build(code: u16, mut lines: Vec<String>) -> Reply {
    let enhanced = lines.first().and_then(|l| enhanced_prefix(code, l));
    if let Some((e, _)) = enhanced {
        for line in &mut lines {
            if let Some((found, len)) = enhanced_prefix(code, line)
                && found == e
            {
                line.drain(..len);
            }
        }
    }
    Reply::new(code, enhanced.map(|(e, _)| e), lines)
}

/// `2.1.0 text` → the code and the length of `2.1.0 `; its class must
/// match the reply's first digit (RFC 3463 section 2).
fn enhanced_prefix(code: u16, line: &str) -> Option<(EnhancedCode, usize)> {
    let token = line.split(' ').next()?;
    let mut parts = token.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || u16::from(class) != code / 100 || !matches!(class, 2 | 4 | 5) {
        return None;
    }
    let len = (token.len() + 1).min(line.len());
    Some((EnhancedCode(class, subject, detail), len))
}

/// The extensions a server announced in its EHLO answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EhloCapabilities {
    /// STARTTLS (RFC 3207).
    pub starttls: bool,
    /// SIZE (RFC 1870): the limit in octets; `Some(0)` when announced
    /// without a fixed maximum.
    pub size: Option<u64>,
    /// PIPELINING (RFC 2920).
    pub pipelining: bool,
    /// 8BITMIME (RFC 6152).
    pub eight_bit_mime: bool,
    /// ENHANCEDSTATUSCODES (RFC 2034).
    pub enhanced_status_codes: bool,
    /// [`ONCE_KEYWORD`](crate::smtp::ONCE_KEYWORD): a node of our
    /// organisation that takes our queue id with `MAIL FROM`.
    pub once: bool,
    /// Every other extension line, as sent (e.g. `AUTH LOGIN PLAIN`).
    pub other: Vec<String>,
}

impl EhloCapabilities {
    /// Whether the server offers REQUIRETLS (RFC 8689).
    pub fn requiretls(&self) -> bool {
        self.other
            .iter()
            .any(|l| l.trim().eq_ignore_ascii_case("REQUIRETLS"))
    }

    /// Reads the keywords from an EHLO reply (the first line is the
    /// server's name and is skipped). Keywords are case-insensitive.
    pub fn from_reply(reply: &Reply) -> Self {
        let mut caps = Self::default();
        for line in reply.lines().iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "STARTTLS" => caps.starttls = true,
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                crate::smtp::ONCE_KEYWORD => caps.once = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                _ => caps.other.push(line.clone()),
            }
        }
        caps
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_across_chunks() {
        let mut p = ReplyParser::new();
        p.feed(b"250-mx.x.com Hello\r\n250-PIPE");
        assert_eq!(p.next_reply(), Ok(None));
        p.feed(b"LINING\r\n250 SIZE 1000\r\n220 2.0.0 go\r\n");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!(r.lines(), ["mx.x.com Hello", "PIPELINING", "SIZE 1000"]);
        assert_eq!(r.enhanced(), None);
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!((r.code(), r.enhanced()), (220, Some(EnhancedCode(2, 0, 0))));
        assert_eq!(r.lines(), ["go"]);
        assert_eq!(p.next_reply(), Ok(None));
    }

    #[test]
    fn round_trips_our_replies() {
        for reply in [
            Reply::too_big(5),
            Reply::new(550, Some(EnhancedCode(5, 7, 1)), ["a", "b"]),
        ] {
            let mut p = ReplyParser::new();
            p.feed(&reply.to_bytes());
            assert_eq!(p.next_reply().unwrap(), Some(reply));
        }
    }

    #[test]
    fn refuses_garbage() {
        let mut p = ReplyParser::new();
        p.feed(b"hello\r\n");
        assert!(matches!(p.next_reply(), Err(ReplyError::Malformed(_))));
        let mut p = ReplyParser::new();
        p.feed(b"250-a\r\n251 b\r\n");
        assert_eq!(p.next_reply(), Err(ReplyError::InconsistentCode(250, 251)));
        let mut p = ReplyParser::new();
        p.feed(&[b'2'; MAX_REPLY_LINE + 1]);
        assert_eq!(p.next_reply(), Err(ReplyError::LineTooLong));
        let mut p = ReplyParser::new();
        p.feed(b"250\n");
        assert_eq!(p.next_reply().unwrap().unwrap().code(), 250);
    }

    #[test]
    fn ehlo_keywords() {
        let r = Reply::new(
            250,
            None,
            [
                "mx Hello",
                "starttls",
                "SIZE 35882577",
                "PIPELINING",
                "8BITMIME",
                "ENHANCEDSTATUSCODES",
                "AUTH PLAIN",
            ],
        );
        let caps = EhloCapabilities::from_reply(&r);
        assert!(caps.starttls && caps.pipelining && caps.eight_bit_mime && caps.enhanced_status_codes);
        assert_eq!(caps.size, Some(35_882_577));
        assert_eq!(caps.other, ["AUTH PLAIN"]);
        let bare = EhloCapabilities::from_reply(&Reply::new(250, None, ["mx", "SIZE"]));
        assert_eq!(bare.size, Some(0));
        assert!(!bare.starttls);
    }
}
