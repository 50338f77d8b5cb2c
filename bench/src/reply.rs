//! SMTP replies as the client reads them, without I/O: bytes in, a complete
//! (possibly multi-line) reply and the number of bytes it used out.

use std::fmt;

/// Longest reply we accept before calling the server broken.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// One complete SMTP reply: the code and the text of each line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// Whether an EHLO reply advertises `keyword` (case-insensitive; the
    /// first line is the greeting, not a keyword).
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.lines.iter().skip(1).any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// The server sent something that is not an SMTP reply.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line without a three-digit code and a separator.
    Malformed(String),
    /// Continuation lines with different codes.
    MixedCodes { first: u16, then: u16 },
    /// No end of reply within `MAX_REPLY_BYTES`.
    TooLong,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(line) => write!(f, "peer sent a malformed reply line: {line:?}"),
            Self::MixedCodes { first, then } => {
                write!(f, "peer mixed reply codes {first} and {then} in one reply")
            }
            Self::TooLong => write!(f, "peer sent a reply longer than {MAX_REPLY_BYTES} bytes"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Parses the first complete reply in `buf`. `Ok(None)` means more bytes are
/// needed; `Ok(Some((reply, used)))` consumed `used` bytes. Accepts LF as
/// well as CRLF line ends.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut pos = 0;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let end = pos + nl;
        let raw = &buf[pos..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos = end + 1;
        let text = String::from_utf8_lossy(raw);
        let (this_code, last, rest) = split_line(&text)?;
        match code {
            None => code = Some(this_code),
            Some(first) if first != this_code => {
                return Err(ReplyError::MixedCodes {
                    first,
                    then: this_code,
                });
            }
            Some(_) => {}
        }
        lines.push(rest.to_string());
        if last {
            return Ok(Some((
                Reply {
                    code: this_code,
                    lines,
                },
                pos,
            )));
        }
    }
    if buf.len() > MAX_REPLY_BYTES {
        return Err(ReplyError::TooLong);
    }
    Ok(None)
}

/// `"250-PIPELINING"` → `(250, false, "PIPELINING")`.
fn split_line(line: &str) -> Result<(u16, bool, &str), ReplyError> {
    let malformed = || ReplyError::Malformed(line.to_string());
    let digits = line.get(..3).ok_or_else(malformed)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let code: u16 = digits.parse().map_err(|_| malformed())?;
    match line.as_bytes().get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, &line[4..])),
        Some(b'-') => Ok((code, false, &line[4..])),
        Some(_) => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        let (r, used) = parse(b"220 a.bench.test ESMTP\r\nrest").unwrap().unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(r.lines, vec!["a.bench.test ESMTP"]);
        assert_eq!(used, 24);
    }

    #[test]
    fn multi_line_ehlo_and_keywords() {
        let buf = b"250-a.bench.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n";
        let (r, used) = parse(buf).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert!(r.has_keyword("pipelining"));
        assert!(r.has_keyword("STARTTLS"));
        assert!(r.has_keyword("size"));
        assert!(
            !r.has_keyword("a.bench.test"),
            "the greeting line is not a keyword"
        );
        assert!(!r.has_keyword("CHUNKING"));
    }

    #[test]
    fn incomplete_needs_more() {
        assert_eq!(parse(b"250-a\r\n250-b\r\n25").unwrap(), None);
        assert_eq!(parse(b"").unwrap(), None);
    }

    #[test]
    fn pipelined_replies_come_one_at_a_time() {
        let buf = b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data\r\n";
        let (a, n1) = parse(buf).unwrap().unwrap();
        let (b, n2) = parse(&buf[n1..]).unwrap().unwrap();
        let (c, _) = parse(&buf[n1 + n2..]).unwrap().unwrap();
        assert_eq!((a.code, b.code, c.code), (250, 250, 354));
    }

    #[test]
    fn bare_code_and_lf_only() {
        let (r, _) = parse(b"250\n").unwrap().unwrap();
        assert_eq!(r.code, 250);
        assert!(r.is_completion());
    }

    #[test]
    fn garbage_and_mixed_codes_are_errors() {
        assert!(matches!(parse(b"hello\r\n"), Err(ReplyError::Malformed(_))));
        assert!(matches!(parse(b"250xok\r\n"), Err(ReplyError::Malformed(_))));
        assert_eq!(
            parse(b"250-a\r\n251 b\r\n"),
            Err(ReplyError::MixedCodes {
                first: 250,
                then: 251
            })
        );
        let long = vec![b'2'; MAX_REPLY_BYTES + 1];
        assert_eq!(parse(&long), Err(ReplyError::TooLong));
    }
}
